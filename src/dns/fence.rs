//! Fencing: the TXT RRset a clustered leader's UPDATE compares and replaces.

use super::*;

/// The fencing TXT RRset a clustered leader's UPDATE compares and replaces (`[cluster]`):
/// `_firebreak-fence.<record>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Owner name of the fencing TXT RRset, inside the zone.
    pub name: String,
    /// Its value when read before the update (`None`: no fencing record yet).
    pub current: Option<String>,
    /// This leader's fencing revision, written by the same UPDATE.
    pub new: String,
}

/// The fencing record's name for `record`.
pub fn fence_name(record: &str) -> String {
    format!("_firebreak-fence.{}", record.trim_end_matches('.'))
}

/// Adds the fence to an UPDATE: the prerequisite that the fencing TXT RRset is exactly
/// `fence.current` (absent when `None`), and its replacement by `fence.new`.
pub(super) fn add_to_update(
    msg: &mut Message,
    zone: &Name,
    zone_text: &str,
    ttl: u32,
    f: &Fence,
) -> Result<(), DnsError> {
    let name = parse_name("fence", &f.name)?;
    if !zone.zone_of(&name) {
        return Err(DnsError::InvalidSpec(format!(
            "fencing record '{}' is not inside zone '{}'",
            f.name, zone_text
        )));
    }
    let txt = |v: &str| RData::TXT(TXT::new(vec![v.to_string()]));
    match &f.current {
        None => {
            let mut r = Record::update0(name.clone(), 0, RecordType::TXT);
            r.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(r);
        }
        Some(v) => msg.add_pre_requisite(Record::from_rdata(name.clone(), 0, txt(v))),
    }
    let mut delete = Record::update0(name.clone(), 0, RecordType::TXT);
    delete.dns_class = DNSClass::ANY;
    msg.add_update(delete);
    msg.add_update(Record::from_rdata(name, ttl, txt(&f.new)));
    Ok(())
}
