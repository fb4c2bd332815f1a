//! A client for BIRD 2's control socket: the text protocol `birdc` speaks.
//!
//! Design: written by hand (about a hundred lines) rather than running `birdc` or taking a
//! crate. Running `birdc` would make the agent depend on a program being installed where
//! BIRD's socket is, and its output is made for people (it strips the reply codes this
//! step decides on); the protocol itself is small and stable: a Unix stream socket, a
//! greeting (`0001 BIRD 2.0.12 ready.`), one command per line, and replies of lines that
//! start with a four-digit code followed by `-` (more follows) or a space (the last line).
//! A line starting with a space continues the previous code; a line starting with `+` is
//! an asynchronous notice (only sent after `echo`), skipped. Codes: 0xxx done, 1xxx table
//! entries, 2xxx table headings, 8xxx run-time errors, 9xxx parse errors.

use super::Prefix;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The most a reply may hold; a larger one is refused rather than read into memory.
const MAX_REPLY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error(
        "no BIRD control socket at {socket} (is BIRD running, started with `-s {socket}`?)"
    )]
    SocketMissing { socket: String },
    #[error(
        "permission denied on BIRD's control socket {socket}: the agent's user needs write \
         access to it (BIRD's `-g GROUP` option sets the socket's group)"
    )]
    PermissionDenied { socket: String },
    #[error("cannot connect to BIRD's control socket {socket}: {source}")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("{socket} is not a BIRD control socket: it greeted with `{greeting}`")]
    NotBird { socket: String, greeting: String },
    #[error("BIRD control socket {socket}: {source}")]
    Io {
        socket: String,
        source: std::io::Error,
    },
    #[error("BIRD at {socket} did not answer `{command}` within {timeout:?}")]
    Timeout {
        socket: String,
        command: String,
        timeout: Duration,
    },
    #[error("BIRD at {socket} sent a reply line that is not BIRD's protocol: `{line}`")]
    Garbled { socket: String, line: String },
    #[error(
        "BIRD at {socket} has no protocol named `{protocol}` (`birdc -s {socket} show \
         protocols` lists them)"
    )]
    UnknownProtocol { socket: String, protocol: String },
    #[error("BIRD at {socket} refused `{command}`: {code} {message}")]
    Refused {
        socket: String,
        command: String,
        code: u16,
        message: String,
    },
}

impl BirdError {
    /// Whether trying again may help: BIRD not (yet) there or slow, yes; BIRD saying no,
    /// a wrong name or a permission, no.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BirdError::SocketMissing { .. }
                | BirdError::Connect { .. }
                | BirdError::Io { .. }
                | BirdError::Timeout { .. }
        )
    }
}

/// One reply line: its code (continuation lines carry the code of the line they continue)
/// and its text without the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub code: u16,
    pub text: String,
}

/// A whole reply: its lines, the last one carrying the reply's own code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub lines: Vec<Line>,
}

impl Reply {
    /// The code of the last line: what the reply as a whole says.
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.code)
    }

    pub fn is_error(&self) -> bool {
        self.code() >= 8000
    }

    /// The last line's text (an error's message).
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |l| l.text.as_str())
    }

    /// The texts of the lines with `code`.
    pub fn texts(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.code == code)
            .map(|l| l.text.as_str())
    }
}

/// How a received line reads: part of the reply (and whether it is the last), or a notice.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Line { line: Line, last: bool },
    Notice,
}

/// Reads one line of a reply; `prev` is the code of the line before (for continuations).
pub fn parse_line(raw: &str, prev: Option<u16>) -> Option<Parsed> {
    let raw = raw.trim_end_matches(['\n', '\r']);
    if raw.starts_with('+') {
        return Some(Parsed::Notice);
    }
    if let Some(rest) = raw.strip_prefix(' ') {
        return Some(Parsed::Line {
            line: Line {
                code: prev?,
                text: rest.to_string(),
            },
            last: false,
        });
    }
    let code = raw.get(..4)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match raw.as_bytes().get(4) {
        Some(b'-') => false,
        Some(b' ') | None => true,
        Some(_) => return None,
    };
    Some(Parsed::Line {
        line: Line {
            code: code.parse().ok()?,
            text: raw.get(5..).unwrap_or("").to_string(),
        },
        last,
    })
}

/// A connection to BIRD's control socket (one command at a time).
pub struct Birdc {
    stream: BufReader<UnixStream>,
    socket: String,
    timeout: Duration,
}

impl Birdc {
    /// Connects and reads BIRD's greeting; each exchange then gets `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Birdc, BirdError> {
        let socket = path.display().to_string();
        let stream = match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
            Err(_) => {
                return Err(BirdError::Timeout {
                    socket,
                    command: "connect".into(),
                    timeout,
                })
            }
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => BirdError::SocketMissing { socket },
                    std::io::ErrorKind::PermissionDenied => BirdError::PermissionDenied { socket },
                    _ => BirdError::Connect { socket, source: e },
                })
            }
        };
        let mut c = Birdc {
            stream: BufReader::new(stream),
            socket,
            timeout,
        };
        let greeting = c.read_reply("(greeting)").await?;
        if greeting.code() != 1 {
            return Err(BirdError::NotBird {
                socket: c.socket,
                greeting: greeting
                    .lines
                    .last()
                    .map(|l| format!("{:04} {}", l.code, l.text))
                    .unwrap_or_default(),
            });
        }
        Ok(c)
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Sends one command and reads its whole reply (error replies included: the caller
    /// knows what an error means for its command).
    pub async fn command(&mut self, command: &str) -> Result<Reply, BirdError> {
        let write = async {
            let s = self.stream.get_mut();
            s.write_all(command.as_bytes()).await?;
            s.write_all(b"\n").await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => return Err(self.timed_out(command)),
            Ok(Err(source)) => {
                return Err(BirdError::Io {
                    socket: self.socket.clone(),
                    source,
                })
            }
            Ok(Ok(())) => {}
        }
        self.read_reply(command).await
    }

    fn timed_out(&self, command: &str) -> BirdError {
        BirdError::Timeout {
            socket: self.socket.clone(),
            command: command.to_string(),
            timeout: self.timeout,
        }
    }

    async fn read_reply(&mut self, command: &str) -> Result<Reply, BirdError> {
        match tokio::time::timeout(self.timeout, self.read_lines()).await {
            Err(_) => Err(self.timed_out(command)),
            Ok(r) => r,
        }
    }

    async fn read_lines(&mut self) -> Result<Reply, BirdError> {
        let mut reply = Reply::default();
        let mut size = 0;
        let mut raw = String::new();
        loop {
            raw.clear();
            let n = self
                .stream
                .read_line(&mut raw)
                .await
                .map_err(|source| BirdError::Io {
                    socket: self.socket.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(BirdError::Io {
                    socket: self.socket.clone(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            size += n;
            if size > MAX_REPLY_BYTES {
                return Err(BirdError::Garbled {
                    socket: self.socket.clone(),
                    line: format!("(a reply of more than {MAX_REPLY_BYTES} bytes)"),
                });
            }
            let prev = reply.lines.last().map(|l| l.code);
            match parse_line(&raw, prev) {
                Some(Parsed::Notice) => {}
                Some(Parsed::Line { line, last }) => {
                    reply.lines.push(line);
                    if last {
                        return Ok(reply);
                    }
                }
                None => {
                    return Err(BirdError::Garbled {
                        socket: self.socket.clone(),
                        line: raw.trim_end().chars().take(200).collect(),
                    })
                }
            }
        }
    }

    /// The state BIRD reports for `protocol` (`up`, `down`, `start`, ...) and its info
    /// column (`Established`, ...).
    pub async fn protocol_state(&mut self, protocol: &str) -> Result<ProtocolState, BirdError> {
        // Design: the name is sent as a quoted pattern (validated to hold no `*` or `?`):
        // BIRD answers an unknown pattern with `8003 No protocols match`, where an unknown
        // bare name is a parse error (`9001 syntax error, unexpected CF_SYM_UNDEFINED`).
        let command = format!("show protocols \"{protocol}\"");
        let reply = self.command(&command).await?;
        self.check(&reply, &command, protocol)?;
        parse_protocol_state(&reply, protocol).ok_or_else(|| BirdError::Refused {
            socket: self.socket.clone(),
            command,
            code: reply.code(),
            message: format!("no line for protocol {protocol} in the reply"),
        })
    }

    /// `enable` or `disable` the protocol: `Ok(true)` when BIRD changed it, `Ok(false)`
    /// when it already was (`already disabled` is success).
    pub async fn set_enabled(&mut self, protocol: &str, enable: bool) -> Result<bool, BirdError> {
        let verb = if enable { "enable" } else { "disable" };
        let command = format!("{verb} \"{protocol}\"");
        let reply = self.command(&command).await?;
        self.check(&reply, &command, protocol)?;
        // 0009 disabled, 0008 already disabled, 0011 enabled, 0010 already enabled.
        let (changed, already) = if enable { (11, 10) } else { (9, 8) };
        if reply.lines.iter().any(|l| l.code == changed) {
            Ok(true)
        } else if reply.lines.iter().any(|l| l.code == already) {
            Ok(false)
        } else {
            Err(BirdError::Refused {
                socket: self.socket.clone(),
                command,
                code: reply.code(),
                message: reply
                    .lines
                    .iter()
                    .map(|l| format!("{:04} {}", l.code, l.text))
                    .collect::<Vec<_>>()
                    .join(" / "),
            })
        }
    }

    /// The routes BIRD holds for exactly `prefix` (only those learned from `from`, when
    /// given), one line each as `show route` prints them; empty when it holds none.
    pub async fn routes(
        &mut self,
        prefix: Prefix,
        from: Option<IpAddr>,
    ) -> Result<Vec<String>, BirdError> {
        // Design: `show route <prefix>` asks for that network exactly; `show route for
        // <prefix>` is a longest-match lookup, so a default route or an aggregate covering
        // the prefix would count as still holding it.
        let command = match from {
            Some(a) => format!("show route {prefix} where from = {a}"),
            None => format!("show route {prefix}"),
        };
        let reply = self.command(&command).await?;
        // 8001 Network not found: no route at all for it.
        if reply.code() == 8001 {
            return Ok(Vec::new());
        }
        if reply.is_error() {
            return Err(BirdError::Refused {
                socket: self.socket.clone(),
                command,
                code: reply.code(),
                message: reply.message().to_string(),
            });
        }
        Ok(route_lines(&reply))
    }

    /// An error reply as the caller's error: an unknown protocol by name, others as BIRD
    /// said them.
    fn check(&self, reply: &Reply, command: &str, protocol: &str) -> Result<(), BirdError> {
        if !reply.is_error() {
            return Ok(());
        }
        // 8003 No protocols match.
        if reply.code() == 8003 {
            return Err(BirdError::UnknownProtocol {
                socket: self.socket.clone(),
                protocol: protocol.to_string(),
            });
        }
        Err(BirdError::Refused {
            socket: self.socket.clone(),
            command: command.to_string(),
            code: reply.code(),
            message: reply.message().to_string(),
        })
    }
}

/// A protocol's line of `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolState {
    /// `up`, `down`, `start`, `stop`, ...
    pub state: String,
    /// The info column (`Established`, `Active`, ...), possibly empty.
    pub info: String,
}

impl std::fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.info.is_empty() {
            f.write_str(&self.state)
        } else {
            write!(f, "{} ({})", self.state, self.info)
        }
    }
}

/// The protocol's row of `show protocols` (code 1002: Name Proto Table State Since Info).
pub fn parse_protocol_state(reply: &Reply, protocol: &str) -> Option<ProtocolState> {
    reply.texts(1002).find_map(|text| {
        let cols: Vec<&str> = text.split_whitespace().collect();
        if cols.first() != Some(&protocol) || cols.len() < 4 {
            return None;
        }
        // Since is one column (`05:10:22.412`) or two (`2024-01-01 05:10:22`, with
        // `timeformat protocol iso long`); the info column follows it.
        let date = |c: &&str| c.len() == 10 && c.as_bytes()[4] == b'-';
        let info_at = if cols.get(4).is_some_and(date) { 6 } else { 5 };
        Some(ProtocolState {
            state: cols[3].to_string(),
            info: cols.get(info_at..).unwrap_or(&[]).join(" "),
        })
    })
}

/// `Table master4:`, the heading `show route` prints before a table's routes.
fn is_heading(text: &str) -> bool {
    text.starts_with("Table ") && text.ends_with(':')
}

/// The route lines of a `show route` reply (code 1007, without the `Table ...:` headings).
pub fn route_lines(reply: &Reply) -> Vec<String> {
    reply
        .texts(1007)
        .map(str::trim)
        .filter(|t| !t.is_empty() && !is_heading(t))
        // BIRD pads the columns: one space is enough in a message.
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The path as `unix://...`, for messages.
pub fn url(path: &Path) -> String {
    format!("unix://{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Reply {
        let mut r = Reply::default();
        for raw in text.lines() {
            match parse_line(raw, r.lines.last().map(|l| l.code)).expect(raw) {
                Parsed::Line { line, last } => {
                    r.lines.push(line);
                    if last {
                        break;
                    }
                }
                Parsed::Notice => {}
            }
        }
        r
    }

    // Replies as BIRD 2.0.12 sent them.
    const PROTOCOLS: &str = "2002-Name       Proto      Table      State  Since         Info\n\
        1002-device1    Device     ---        up     05:10:21.622  \n \
        static_a   Static     master4    up     05:10:21.622  \n \
        to_b       BGP        ---        start  05:10:22.412  Active        Socket: Connection refused\n\
        0000 \n";

    #[test]
    fn continuation_lines_carry_the_code_they_continue_and_the_space_ends_the_reply() {
        let r = reply(PROTOCOLS);
        assert_eq!(r.code(), 0);
        assert!(!r.is_error());
        assert_eq!(r.texts(1002).count(), 3);
        assert_eq!(
            parse_protocol_state(&r, "static_a"),
            Some(ProtocolState {
                state: "up".into(),
                info: String::new()
            })
        );
        let bgp = parse_protocol_state(&r, "to_b").unwrap();
        assert_eq!(bgp.state, "start");
        assert_eq!(bgp.info, "Active Socket: Connection refused");
        assert_eq!(parse_protocol_state(&r, "to_c"), None);
    }

    #[test]
    fn an_iso_long_since_column_is_not_taken_for_the_info() {
        let r = reply("2002-Name Proto Table State Since Info\n1002-to_b BGP --- up 2024-01-01 05:10:22 Established\n0000 \n");
        let s = parse_protocol_state(&r, "to_b").unwrap();
        assert_eq!((s.state.as_str(), s.info.as_str()), ("up", "Established"));
    }

    #[test]
    fn route_lines_leave_out_the_table_heading() {
        let r = reply(
            "1007-Table master4:\n 203.0.113.0/24       unreachable [to_a 05:10:24.259 from 127.0.0.1] * (100) [AS65001i]\n                      unreachable [to_c 05:10:25.001 from 127.0.0.3] (100) [AS65003i]\n0000 \n",
        );
        assert_eq!(route_lines(&r).len(), 2);
        assert!(route_lines(&r)[0].starts_with("203.0.113.0/24"));
        assert!(route_lines(&reply("0000 \n")).is_empty());
    }

    #[test]
    fn errors_notices_and_garbage_are_told_apart() {
        let r = reply("9001 syntax error, unexpected CF_SYM_UNDEFINED\n");
        assert!(r.is_error());
        assert_eq!(r.code(), 9001);
        assert_eq!(r.message(), "syntax error, unexpected CF_SYM_UNDEFINED");
        assert_eq!(parse_line("+0000 echo", None), Some(Parsed::Notice));
        assert_eq!(parse_line("HTTP/1.1 400 Bad Request", None), None);
        assert_eq!(parse_line(" orphan continuation", None), None);
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready.\n", None),
            Some(Parsed::Line {
                line: Line {
                    code: 1,
                    text: "BIRD 2.0.12 ready.".into()
                },
                last: true
            })
        );
    }
}
