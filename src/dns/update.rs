//! Sending one RRset replacement (RFC 2136 UPDATE), optionally fenced.

use super::*;

// Update

/// Send ONE RFC 2136 UPDATE that replaces the whole RRset `spec.record`/`spec.kind`
/// with `spec.values` (TTL `spec.ttl`), signed with TSIG when `spec.key` is set.
///
/// `prerequisite`: `Some(values)` makes the update apply only if the current RRset equals
/// exactly `values` (RFC 2136 §2.4.2, "RRset exists (value dependent)"); `Some(&[])`
/// requires that the RRset does not exist (§2.4.3). The server answers NXRRSET/YXRRSET
/// otherwise, reported as [`DnsError::PrerequisiteFailed`]. Note that a value-dependent
/// prerequisite compares RDATA only, not TTLs.
pub async fn send_update(
    spec: &UpdateSpec,
    prerequisite: Option<&[String]>,
) -> Result<UpdateOutcome, DnsError> {
    send_update_fenced(spec, prerequisite, None).await
}
/// As [`send_update`]; with `fence`, the same message also requires the fencing TXT
/// RRset to be exactly `fence.current` (or absent) and replaces it with `fence.new`: a
/// compare-and-swap in the server, so of two leaders racing, the one whose view of the
/// fence is stale gets NXRRSET/YXRRSET and changes nothing.
pub async fn send_update_fenced(
    spec: &UpdateSpec,
    prerequisite: Option<&[String]>,
    fence: Option<&Fence>,
) -> Result<UpdateOutcome, DnsError> {
    let started = crate::clock::now();
    let plan = plan(spec)?;
    let prereq_rdatas = prerequisite
        .map(|vals| {
            vals.iter()
                .map(|v| {
                    parse_value(spec.kind, v).map_err(|e| match e {
                        DnsError::InvalidSpec(m) => {
                            DnsError::InvalidSpec(format!("prerequisite value: {m}"))
                        }
                        other => other,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    // Zone section + "delete RRset" (class ANY, type, ttl 0, empty rdata); random id.
    let mut msg = update_message::delete_rrset(
        Record::update0(plan.record.clone(), 0, plan.rtype),
        plan.zone.clone(),
        false,
    );
    if let Some(prereqs) = prereq_rdatas {
        if prereqs.is_empty() {
            // RRset does not exist: class NONE, type, ttl 0, empty rdata.
            let mut r = Record::update0(plan.record.clone(), 0, plan.rtype);
            r.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(r);
        } else {
            for data in prereqs {
                // RRset exists (value dependent): class = zone class, ttl 0, full rdata.
                msg.add_pre_requisite(Record::from_rdata(plan.record.clone(), 0, data));
            }
        }
    }
    for data in plan.rdatas {
        msg.add_update(Record::from_rdata(plan.record.clone(), spec.ttl, data));
    }
    if let Some(f) = fence {
        fence::add_to_update(&mut msg, &plan.zone, &spec.zone, spec.ttl, f)?;
    }
    let id = msg.id;

    let signer = match &spec.key {
        Some(key) => Some(make_signer(key)?),
        None => None,
    };
    let mut request_mac = Vec::new();
    if let Some(signer) = &signer {
        msg.finalize(signer, unix_now()).map_err(|e| {
            DnsError::InvalidSpec(format!("could not sign the update with TSIG: {e}"))
        })?;
        request_mac = msg.signature().map(|t| t.data.mac.clone()).ok_or_else(|| {
            DnsError::InvalidSpec("signing produced no TSIG record (hickory-proto bug?)".into())
        })?;
    }
    let request = msg
        .to_vec()
        .map_err(|e| DnsError::InvalidSpec(format!("could not encode the update: {e}")))?;

    tracing::debug!(
        server = %spec.server, zone = %spec.zone, record = %spec.record, kind = %spec.kind,
        id, bytes = request.len(), signed = signer.is_some(), "sending DNS UPDATE"
    );
    let reply = exchange(spec.server, &request, id, spec.timeout).await?;
    let judged = judge_update_reply(
        &reply.message,
        &reply.bytes,
        id,
        signer.as_ref(),
        &request_mac,
        &spec.zone,
    );
    tracing::debug!(server = %spec.server, id, outcome = ?judged.as_ref().map(|(rcode, _)| rcode), rtt = ?reply.rtt, transport = %reply.transport, "DNS UPDATE answered");
    let (rcode, tsig_verified) = judged?;
    Ok(UpdateOutcome {
        rcode,
        rtt: reply.rtt,
        elapsed: started.elapsed(),
        transport: reply.transport,
        message_id: id,
        tsig_verified,
    })
}
