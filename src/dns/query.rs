//! Asking a server for an RRset and verifying an update by reading it back.

use super::*;

/// Query `server` (RD=0) for `record`/`kind` and return the answered values, normalised
/// like [`normalise_values`] (sorted, de-duplicated). NXDOMAIN or no data gives an empty
/// list. Only answers owned by `record` with type `kind` are returned (a CNAME found
/// when asking for A is not).
pub async fn query_rrset(
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
    timeout: Duration,
) -> Result<Vec<String>, DnsError> {
    Ok(query_rrset_ttl(server, record, kind, timeout).await?.0)
}

/// [`query_rrset`] and the RRset's TTL (the lowest of its records; `None` when empty).
pub async fn query_rrset_ttl(
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
    timeout: Duration,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    if timeout.is_zero() {
        return Err(DnsError::InvalidSpec(
            "timeout must be greater than zero".into(),
        ));
    }
    let name = parse_name("record", record)?;
    let rtype = kind.record_type();
    let id = random_id();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    msg.set_edns(edns);
    let request = msg
        .to_vec()
        .map_err(|e| DnsError::InvalidSpec(format!("could not encode the query: {e}")))?;

    let reply = exchange(server, &request, id, timeout).await?;
    judge_query_reply(&reply.message, server, &name, kind)
}

/// The checks on a query reply that parsed and carries our id: the question matches,
/// the rcode is NOERROR or NXDOMAIN; then the answers owned by `name` of type `kind`.
pub(super) fn judge_query_reply(
    resp: &Message,
    server: SocketAddr,
    name: &Name,
    kind: RecordKind,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    let rtype = kind.record_type();
    if let Some(q) = resp.queries.first() {
        if q.name() != name || q.query_type() != rtype {
            return Err(DnsError::BadResponse(format!(
                "reply question {} {} does not match our query {} {}",
                q.name(),
                q.query_type(),
                name,
                rtype
            )));
        }
    }
    match resp.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        rcode => {
            return Err(DnsError::QueryFailed {
                server,
                name: name_text(name),
                kind,
                rcode: rcode_name(rcode),
            })
        }
    }
    // Only records that carry a value count, for the TTL too: an answer with empty RDATA
    // (RDLENGTH 0, which hickory reads as an update-style "no data" record) has none
    // (found by the cargo-fuzz `dns_response` target: it gave a TTL with no values).
    let answered: Vec<(String, u32)> = resp
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && &r.name == name)
        .filter_map(|r| Some((rdata_text(&r.data)?, r.ttl)))
        .collect();
    let ttl = answered.iter().map(|(_, ttl)| *ttl).min();
    let set: BTreeSet<String> = answered.into_iter().map(|(v, _)| v).collect();
    Ok((set.into_iter().collect(), ttl))
}

/// What [`query_rrset_ttl`] does with the bytes of a reply to its query for `record`/`kind`
/// with `id`, without a socket. Public for the fuzz targets (tests/fuzz).
pub fn check_query_reply(
    bytes: &[u8],
    id: u16,
    server: SocketAddr,
    record: &str,
    kind: RecordKind,
) -> Result<(Vec<String>, Option<u32>), DnsError> {
    let name = parse_name("record", record)?;
    let resp = check_reply(bytes, id).map_err(DnsError::BadResponse)?;
    judge_query_reply(&resp, server, &name, kind)
}

/// True when the server answers exactly `spec.values` (as a set, normalised) for
/// `spec.record`/`spec.kind`.
pub async fn verify(spec: &UpdateSpec) -> Result<bool, DnsError> {
    validate(spec)?;
    let want = normalise_values(spec.kind, &spec.values)?;
    let (got, ttl) = query_rrset_ttl(spec.server, &spec.record, spec.kind, spec.timeout).await?;
    // The TTL counts too: lowering TTLs ahead of a failover is an update of its own.
    let same = got == want && (got.is_empty() || ttl == Some(spec.ttl));
    if !same {
        tracing::debug!(server = %spec.server, record = %spec.record, kind = %spec.kind, ?want, ?got, ?ttl, want_ttl = spec.ttl, "DNS verify mismatch");
    }
    Ok(same)
}

pub(super) fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        crate::clock::wall_now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}
