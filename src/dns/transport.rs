//! Transport: UDP first, TCP when truncated or too large; one exchange bounded by a timeout.

use super::*;

// Transport

pub(super) struct Reply {
    pub(super) bytes: Vec<u8>,
    pub(super) message: Message,
    pub(super) transport: Transport,
    pub(super) rtt: Duration,
}

/// UDP first (unless the request is too big), TCP when the UDP reply is truncated.
/// The TCP try gets its own `timeout`.
pub(super) async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    if request.len() <= UDP_REQUEST_LIMIT {
        if let Some(reply) = udp_exchange(server, request, id, timeout).await? {
            return Ok(reply);
        }
        tracing::debug!(%server, id, "UDP reply truncated, retrying over TCP");
    } else {
        tracing::debug!(%server, id, bytes = request.len(), "request too big for UDP, using TCP");
    }
    tcp_exchange(server, request, id, timeout).await
}

pub(super) fn io_err(
    server: SocketAddr,
    context: &str,
) -> impl FnOnce(std::io::Error) -> DnsError + '_ {
    move |source| DnsError::Io {
        server,
        context: context.to_string(),
        source,
    }
}

/// Check a raw reply: long enough, our id, parses, is a response.
pub(super) fn check_reply(bytes: &[u8], id: u16) -> Result<Message, String> {
    if bytes.len() < 12 {
        return Err(format!(
            "reply of {} bytes is shorter than a DNS header",
            bytes.len()
        ));
    }
    let rid = u16::from_be_bytes([bytes[0], bytes[1]]);
    if rid != id {
        return Err(format!("reply id {rid} does not match request id {id}"));
    }
    let msg = Message::from_vec(bytes).map_err(|e| format!("malformed reply: {e}"))?;
    if msg.message_type != MessageType::Response {
        return Err("reply is not a response (QR bit clear)".into());
    }
    Ok(msg)
}

pub(super) async fn udp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Option<Reply>, DnsError> {
    let local: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(io_err(server, "binding a UDP socket"))?;
    let started = crate::clock::now();
    let deadline = crate::clock::now() + timeout;
    let timed_out = || DnsError::Timeout {
        server,
        after: timeout,
    };
    match tokio::time::timeout_at(deadline, sock.send_to(request, server)).await {
        Err(_) => return Err(timed_out()),
        Ok(r) => r.map_err(io_err(server, "sending UDP request"))?,
    };
    let mut buf = vec![0u8; 65_535];
    // A garbled reply carrying our id is remembered; we keep waiting for a good one
    // (it may be spoofed) and report it instead of a bare timeout.
    let mut garbled: Option<String> = None;
    loop {
        let (n, from) = match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => {
                return Err(match garbled {
                    Some(why) => DnsError::BadResponse(why),
                    None => timed_out(),
                })
            }
            Ok(r) => r.map_err(io_err(server, "receiving UDP reply"))?,
        };
        if from.ip() != server.ip() || from.port() != server.port() {
            tracing::debug!(%server, %from, "ignoring UDP datagram from another address");
            continue;
        }
        let bytes = &buf[..n];
        // Our id, QR and TC set: go to TCP even if the truncated body does not parse.
        if n >= 12 && u16::from_be_bytes([bytes[0], bytes[1]]) == id && bytes[2] & 0x82 == 0x82 {
            return Ok(None);
        }
        match check_reply(bytes, id) {
            Ok(message) => {
                return Ok(Some(Reply {
                    bytes: bytes.to_vec(),
                    message,
                    transport: Transport::Udp,
                    rtt: started.elapsed(),
                }))
            }
            Err(why) => {
                tracing::debug!(%server, id, %why, "ignoring UDP datagram");
                if n >= 2 && u16::from_be_bytes([bytes[0], bytes[1]]) == id {
                    garbled = Some(why);
                }
            }
        }
    }
}

pub(super) async fn tcp_exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Reply, DnsError> {
    let len = u16::try_from(request.len()).map_err(|_| {
        DnsError::InvalidSpec(format!(
            "request of {} bytes does not fit in a DNS message",
            request.len()
        ))
    })?;
    let started = crate::clock::now();
    let work = async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(io_err(server, "connecting over TCP"))?;
        let _ = stream.set_nodelay(true);
        let mut out = Vec::with_capacity(request.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(request);
        stream
            .write_all(&out)
            .await
            .map_err(io_err(server, "sending TCP request"))?;
        let mut len_buf = [0u8; 2];
        stream
            .read_exact(&mut len_buf)
            .await
            .map_err(io_err(server, "reading TCP reply length"))?;
        let mut body = vec![0u8; u16::from_be_bytes(len_buf) as usize];
        stream
            .read_exact(&mut body)
            .await
            .map_err(io_err(server, "reading TCP reply"))?;
        Ok::<_, DnsError>(body)
    };
    let bytes = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DnsError::Timeout {
            server,
            after: timeout,
        })??;
    let message = check_reply(&bytes, id).map_err(DnsError::BadResponse)?;
    Ok(Reply {
        bytes,
        message,
        transport: Transport::Tcp,
        rtt: started.elapsed(),
    })
}
