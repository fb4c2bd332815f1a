//! Message building and checking, no I/O: names and values validated, an UPDATE planned, replies judged (opcode, TSIG, rcode).

use super::*;

// Validation

/// Parse and check a domain name written by an operator. Always treated as absolute.
pub(super) fn parse_name(what: &str, s: &str) -> Result<Name, DnsError> {
    let invalid = |why: String| DnsError::InvalidSpec(format!("{what} '{s}' {why}"));
    let t = s.trim();
    if t.is_empty() {
        return Err(DnsError::InvalidSpec(format!("{what} is empty")));
    }
    if t == "." {
        return Err(invalid("is the root; give a full domain name".into()));
    }
    let t = t.strip_suffix('.').unwrap_or(t);
    if !t.is_ascii() {
        return Err(invalid(
            "contains non-ASCII characters; write internationalised names in punycode (xn--...)"
                .into(),
        ));
    }
    if t.len() > 253 {
        return Err(invalid("is longer than 253 characters".into()));
    }
    for (i, label) in t.split('.').enumerate() {
        if label.is_empty() {
            return Err(invalid("has an empty label (two dots in a row?)".into()));
        }
        if label.len() > 63 {
            return Err(invalid(format!(
                "has a label longer than 63 characters ('{label}')"
            )));
        }
        if label == "*" && i == 0 {
            continue;
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(invalid(format!(
                "contains '{c}'; only letters, digits, '-' and '_' are allowed in labels"
            )));
        }
    }
    Name::from_ascii(format!("{t}.")).map_err(|e| invalid(format!("is not a valid name: {e}")))
}

/// Normalised text of a name: lowercase, no trailing dot.
pub(super) fn name_text(name: &Name) -> String {
    let s = name.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some(x) if !x.is_empty() => x.to_string(),
        _ => s,
    }
}

/// Parse one value for `kind` into record data.
/// Checks one record value for `kind` (what `validate` does for each of `spec.values`).
pub fn validate_value(kind: RecordKind, value: &str) -> Result<(), DnsError> {
    parse_value(kind, value).map(|_| ())
}

pub(super) fn parse_value(kind: RecordKind, value: &str) -> Result<RData, DnsError> {
    match kind {
        RecordKind::A => value
            .trim()
            .parse::<Ipv4Addr>()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| {
                DnsError::InvalidSpec(format!(
                    "'{value}' is not an IPv4 address (A records need e.g. 192.0.2.10)"
                ))
            }),
        RecordKind::Aaaa => value
            .trim()
            .parse::<Ipv6Addr>()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| {
                DnsError::InvalidSpec(format!(
                    "'{value}' is not an IPv6 address (AAAA records need e.g. 2001:db8::10)"
                ))
            }),
        RecordKind::Cname => parse_name("CNAME target", value).map(|n| RData::CNAME(CNAME(n))),
        RecordKind::Txt => {
            if value.len() > MAX_TXT_LEN {
                return Err(DnsError::InvalidSpec(format!(
                    "TXT value is {} bytes; at most {MAX_TXT_LEN} fit in one record",
                    value.len()
                )));
            }
            let bytes = value.as_bytes();
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(255).collect()
            };
            Ok(RData::TXT(TXT::from_bytes(chunks)))
        }
    }
}

/// Normalised text of one answered record data (same form as [`normalise_values`]).
pub(super) fn rdata_text(data: &RData) -> Option<String> {
    match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::CNAME(c) => Some(name_text(&c.0)),
        RData::TXT(t) => {
            let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
            Some(String::from_utf8_lossy(&joined).into_owned())
        }
        _ => None,
    }
}

/// Normalise values for `kind` the way [`query_rrset`] prints answers: addresses in
/// canonical form, CNAME targets lowercase without trailing dot, TXT unchanged.
/// Sorted and de-duplicated.
pub fn normalise_values(kind: RecordKind, values: &[String]) -> Result<Vec<String>, DnsError> {
    let mut set = BTreeSet::new();
    for v in values {
        let data = parse_value(kind, v)?;
        if let Some(t) = rdata_text(&data) {
            set.insert(t);
        }
    }
    Ok(set.into_iter().collect())
}

pub(super) struct Plan {
    pub(super) zone: Name,
    pub(super) record: Name,
    pub(super) rtype: RecordType,
    pub(super) rdatas: Vec<RData>,
}

pub(super) fn plan(spec: &UpdateSpec) -> Result<Plan, DnsError> {
    if spec.server.port() == 0 {
        return Err(DnsError::InvalidSpec(format!(
            "server address {} has port 0; DNS servers listen on port 53",
            spec.server
        )));
    }
    if spec.server.ip().is_unspecified() {
        return Err(DnsError::InvalidSpec(format!(
            "server address {} is unspecified; give the DNS server's address",
            spec.server
        )));
    }
    if spec.timeout.is_zero() {
        return Err(DnsError::InvalidSpec(
            "timeout must be greater than zero".into(),
        ));
    }
    let zone = parse_name("zone", &spec.zone)?;
    let record = parse_name("record", &spec.record)?;
    if !zone.zone_of(&record) {
        return Err(DnsError::InvalidSpec(format!(
            "record '{}' is not inside zone '{}' (record names must be absolute, e.g. 'app.{}')",
            spec.record,
            spec.zone,
            name_text(&zone)
        )));
    }
    if spec.kind == RecordKind::Cname && record == zone {
        return Err(DnsError::InvalidSpec(format!(
            "a CNAME cannot be placed at the zone apex '{}'",
            spec.zone
        )));
    }
    if spec.ttl > MAX_TTL {
        return Err(DnsError::InvalidSpec(format!(
            "ttl {} is too large (max {MAX_TTL})",
            spec.ttl
        )));
    }
    if spec.values.is_empty() {
        return Err(DnsError::InvalidSpec(format!(
            "no values given for {} {}; an update must name the new value(s)",
            spec.record, spec.kind
        )));
    }
    if spec.kind == RecordKind::Cname && spec.values.len() != 1 {
        return Err(DnsError::InvalidSpec(format!(
            "a CNAME must have exactly one value, got {}",
            spec.values.len()
        )));
    }
    let rdatas = spec
        .values
        .iter()
        .map(|v| parse_value(spec.kind, v))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(key) = &spec.key {
        parse_name("TSIG key name", &key.name)?;
        if key.secret.is_empty() {
            return Err(DnsError::BadSecret(format!(
                "TSIG key '{}' has an empty secret",
                key.name
            )));
        }
    }
    Ok(Plan {
        zone,
        record,
        rtype: spec.kind.record_type(),
        rdatas,
    })
}

/// Validate the spec without network: names, record inside zone, values for the kind,
/// TTL, timeout, key name and secret.
pub fn validate(spec: &UpdateSpec) -> Result<(), DnsError> {
    plan(spec).map(|_| ())
}

/// The checks on an UPDATE reply that parsed and carries our id: opcode, TSIG (error
/// field, signature over `bytes` against `request_mac`, time window) and rcode. Gives the
/// rcode's name and whether the reply's TSIG verified.
pub(super) fn judge_update_reply(
    resp: &Message,
    bytes: &[u8],
    id: u16,
    signer: Option<&TSigner>,
    request_mac: &[u8],
    zone: &str,
) -> Result<(String, bool), DnsError> {
    if resp.op_code != OpCode::Update {
        return Err(DnsError::BadResponse(format!(
            "reply to UPDATE id {id} has opcode {:?}",
            resp.op_code
        )));
    }

    let mut tsig_verified = false;
    if let Some(signer) = signer {
        match resp.signature().map(|r| &r.data) {
            Some(tsig) => {
                let err = tsig_error_code(tsig).unwrap_or(0);
                if err != 0 {
                    // BADSIG/BADKEY replies are unsigned (empty MAC): nothing to verify.
                    return Err(DnsError::NotAuth {
                        tsig_error: Some(tsig_error_name(err)),
                        signed: true,
                    });
                }
                let (_, _, window) = signer
                    .verify_message_byte(bytes, Some(request_mac), true)
                    .map_err(|e| {
                        DnsError::BadResponse(format!(
                            "the reply's TSIG signature does not verify ({e}); the reply may be \
                             forged or altered in transit"
                        ))
                    })?;
                if !window.contains(&unix_now()) {
                    return Err(DnsError::BadResponse(format!(
                        "the reply's TSIG time is outside ±{TSIG_FUDGE_SECS} s of our clock \
                         (check NTP on this host and the server)"
                    )));
                }
                tsig_verified = true;
            }
            None if resp.response_code == ResponseCode::NoError => {
                return Err(DnsError::BadResponse(
                    "the server answered NOERROR to our signed update without a TSIG \
                     signature; refusing to trust it"
                        .into(),
                ));
            }
            // Unsigned error replies (e.g. NOTAUTH for an unknown key) are reported by rcode.
            None => {}
        }
    }

    let rcode = resp.response_code;
    let name = rcode_name(rcode);
    match rcode {
        ResponseCode::NoError => Ok((name, tsig_verified)),
        ResponseCode::Refused => Err(DnsError::Refused { rcode: name }),
        ResponseCode::NotAuth => Err(DnsError::NotAuth {
            tsig_error: None,
            signed: signer.is_some(),
        }),
        ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME => {
            Err(DnsError::NotAuth {
                tsig_error: Some(name),
                signed: signer.is_some(),
            })
        }
        ResponseCode::NotZone => Err(DnsError::NotZone {
            zone: zone.to_string(),
        }),
        ResponseCode::NXRRSet
        | ResponseCode::YXRRSet
        | ResponseCode::NXDomain
        | ResponseCode::YXDomain => Err(DnsError::PrerequisiteFailed { rcode: name }),
        ResponseCode::ServFail => Err(DnsError::ServerFailure { rcode: name }),
        _ => Err(DnsError::Rejected { rcode: name }),
    }
}

/// What [`send_update`] does with the bytes of a reply, without a socket: [`check_reply`]
/// (length, id, parse, QR) then [`judge_update_reply`], with `key` signing and `request_mac`
/// the MAC of our signed request. Gives the rcode's name and whether the TSIG verified.
/// Public for the fuzz targets (tests/fuzz).
pub fn check_update_reply(
    bytes: &[u8],
    id: u16,
    zone: &str,
    key: Option<&TsigKey>,
    request_mac: &[u8],
) -> Result<(String, bool), DnsError> {
    let signer = key.map(make_signer).transpose()?;
    let resp = check_reply(bytes, id).map_err(DnsError::BadResponse)?;
    judge_update_reply(&resp, bytes, id, signer.as_ref(), request_mac, zone)
}

pub(super) fn make_signer(key: &TsigKey) -> Result<TSigner, DnsError> {
    let name = parse_name("TSIG key name", &key.name)?;
    if key.secret.is_empty() {
        return Err(DnsError::BadSecret(format!(
            "TSIG key '{}' has an empty secret",
            key.name
        )));
    }
    TSigner::new(
        key.secret.clone(),
        key.algorithm.to_hickory(),
        name,
        TSIG_FUDGE_SECS,
    )
    .map_err(|e| DnsError::InvalidSpec(format!("TSIG key '{}': {e}", key.name)))
}

/// The TSIG error field (RFC 8945 section 4.3; 0, no error, when absent).
pub(super) fn tsig_error_code(tsig: &TSIG) -> Option<u16> {
    Some(tsig.error.map_or(0, u16::from))
}

pub(super) fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        19 => "BADMODE".into(),
        20 => "BADNAME".into(),
        21 => "BADALG".into(),
        22 => "BADTRUNC".into(),
        n => format!("TSIG error {n}"),
    }
}

/// DNS mnemonic of a response code (as dig/kdig print it).
pub(super) fn rcode_name(rcode: ResponseCode) -> String {
    let n = u16::from(rcode);
    match n {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS/BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        23 => "BADCOOKIE".into(),
        n => format!("RCODE{n}"),
    }
}

pub(super) fn unix_now() -> u64 {
    crate::clock::wall_now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
