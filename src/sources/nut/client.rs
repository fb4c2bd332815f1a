//! An async client of upsd's network protocol (TCP 3493, NUT's `docs/net-protocol.txt`):
//! connect with a deadline, optional `STARTTLS`, `USERNAME`/`PASSWORD`, `LIST VAR`, `GET VAR`,
//! `PRIMARY` (or `MASTER`) and `FSD`, `LOGOUT`. Every request has the same time limit.
//!
//! Design: written here rather than taken from crates.io. The one async NUT client there,
//! `rups` (0.6, last released in 2022), brings rustls 0.20 with its `dangerous_configuration`
//! and the unmaintained `webpki` crate beside the rustls 0.23 + ring the agent already
//! builds, has no `PRIMARY`/`FSD`, and reports upsd's refusals as text. The protocol is a
//! few line-based commands; its grammar is in `proto.rs` (pure, unit-tested), this file only
//! moves lines with deadlines.
//!
//! Protocol facts this client relies on (checked against upsd 2.8.0):
//! - It never sends `LOGIN <ups>`. `LOGIN` registers the connection as a system powered by
//!   the UPS: upsd counts it in `NUMLOGINS`, and a primary `upsmon` shutting down waits
//!   (up to `HOSTSYNC`) for every such client to log out before it cuts the power. A
//!   monitoring source is not powered by the UPS it reads.
//! - upsd checks the password only on privileged commands (`PRIMARY`, `FSD`, `SET`,
//!   `INSTCMD`, `LOGIN`). `PASSWORD` answers `OK` to a wrong password, and reads (`LIST`,
//!   `GET`) need no credentials at all, so a wrong password shows up only as
//!   `ERR ACCESS-DENIED` on the first privileged command.
//! - `PRIMARY` without `LOGIN` changes nothing on the server: it only asks whether the user
//!   may act as the UPS's primary (`upsmon primary` in upsd.users). `FSD` needs the `FSD`
//!   action, which `upsmon primary` users have and others get with `actions = FSD`.

use super::config::Upsd;
use super::proto::{self, ErrAnswer, NutCode, ParseError, MAX_LINE, MAX_LIST};
use crate::sources::metrics::ErrorKind;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum NutError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect to upsd {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to upsd {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("TLS with upsd {addr}: {message}")]
    Tls { addr: String, message: String },
    #[error(transparent)]
    TlsSetup(#[from] crate::sources::tls::TlsError),
    #[error("upsd {addr}: connection lost: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("upsd {addr} closed the connection")]
    Closed { addr: String },
    #[error("upsd {addr}: `{command}` got no answer within {after:?}")]
    Timeout {
        addr: String,
        command: String,
        after: Duration,
    },
    #[error("upsd {addr}: unexpected answer to `{command}`: {detail}")]
    Protocol {
        addr: String,
        command: String,
        detail: String,
    },
    /// upsd understood and said no: `ERR <code>`.
    #[error("upsd {addr}: `{command}` refused: {}{}", code.as_str(), hint(*code))]
    Server {
        addr: String,
        command: String,
        code: NutCode,
        /// The answer as received (for codes this client does not know).
        line: String,
    },
}

/// What an operator can do about a refusal, after its code.
fn hint(code: NutCode) -> &'static str {
    match code {
        NutCode::AccessDenied => {
            " (wrong password, or the user lacks `upsmon primary` / `actions = FSD` in upsd.users)"
        }
        NutCode::UnknownUps => " (upsd serves no UPS of that name: see `upsc -l`)",
        NutCode::DataStale => " (the driver has not updated the UPS's data within upsd's MAXAGE)",
        NutCode::DriverNotConnected => " (upsd has lost the UPS's driver)",
        NutCode::FeatureNotConfigured => {
            " (this upsd has no certificate for STARTTLS: set one in upsd.conf or use nut://)"
        }
        _ => "",
    }
}

impl NutError {
    /// The source's error class for the errors-by-kind metric.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NutError::Resolve(_)
            | NutError::Connect { .. }
            | NutError::ConnectTimeout { .. }
            | NutError::Tls { .. }
            | NutError::TlsSetup(_) => ErrorKind::Connect,
            NutError::Io { .. }
            | NutError::Closed { .. }
            | NutError::Timeout { .. }
            | NutError::Protocol { .. } => ErrorKind::Transport,
            NutError::Server { .. } => ErrorKind::Exception,
        }
    }

    /// upsd's error code, when upsd refused.
    pub fn code(&self) -> Option<NutCode> {
        match self {
            NutError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the connection is unusable after this error (anything but a refusal: a
    /// late or garbled answer would be taken for the next request's).
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, NutError::Server { .. })
    }

    /// Whether trying again may help: failures to reach or hear upsd, and a UPS whose data
    /// is momentarily missing; not a refusal, nor a TLS or file problem.
    pub fn is_retryable(&self) -> bool {
        match self {
            NutError::Server { code, .. } => code.is_no_data(),
            NutError::Tls { .. } | NutError::TlsSetup(_) => false,
            _ => true,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to upsd.
pub struct Client {
    conn: BufReader<Box<dyn Stream>>,
    addr: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).finish()
    }
}

impl Client {
    /// Connects (resolve, TCP, and `STARTTLS` + TLS for `nuts://`), all within `timeout`;
    /// each later request has `timeout` too.
    pub async fn connect(upsd: &Upsd, timeout: Duration) -> Result<Client, NutError> {
        let addr = format!("{}:{}", upsd.host, upsd.port);
        let work = Client::open(upsd, addr.clone(), timeout);
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(NutError::ConnectTimeout {
                addr,
                after: timeout,
            }))
    }

    async fn open(upsd: &Upsd, addr: String, timeout: Duration) -> Result<Client, NutError> {
        let target = tokio::net::lookup_host((upsd.host.as_str(), upsd.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| NutError::Resolve(addr.clone()))?;
        let tcp = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|source| NutError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut client = Client {
            conn: BufReader::new(Box::new(tcp) as Box<dyn Stream>),
            addr,
            timeout,
        };
        if let Some(tls) = &upsd.tls {
            client = client.start_tls(&upsd.host, tls.ca_file.as_deref()).await?;
        }
        Ok(client)
    }

    /// `STARTTLS` (answered `OK STARTTLS`), then the TLS handshake on the same socket,
    /// checking upsd's certificate against `ca_file` (else the system roots) and `host`.
    async fn start_tls(
        mut self,
        host: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, NutError> {
        let config = crate::sources::tls::client_config(ca_file, None)?;
        let words = self.exchange("STARTTLS", "STARTTLS").await?;
        if words != ["OK", "STARTTLS"] {
            return Err(self.unexpected("STARTTLS", &words.join(" ")));
        }
        // Nothing may follow `OK STARTTLS` before the handshake: bytes already buffered
        // would be lost to the TLS layer.
        if !self.conn.buffer().is_empty() {
            return Err(self.unexpected("STARTTLS", "data after OK STARTTLS"));
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            NutError::Tls {
                addr: self.addr.clone(),
                message: format!("`{host}` is not a server name: {e}"),
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(name, self.conn.into_inner())
            .await
            .map_err(|e| NutError::Tls {
                addr: self.addr.clone(),
                message: e.to_string(),
            })?;
        Ok(Client {
            conn: BufReader::new(Box::new(tls) as Box<dyn Stream>),
            addr: self.addr,
            timeout: self.timeout,
        })
    }

    /// `USERNAME` and `PASSWORD`. upsd accepts any password here; it is checked by the
    /// privileged commands (see the module's notes).
    pub async fn authenticate(&mut self, username: &str, password: &str) -> Result<(), NutError> {
        self.expect_ok(&format!("USERNAME {}", proto::quote(username)), "USERNAME")
            .await?;
        self.expect_ok(&format!("PASSWORD {}", proto::quote(password)), "PASSWORD")
            .await
    }

    /// Every variable of `ups`, with its value (`LIST VAR`), in upsd's order.
    pub async fn list_vars(&mut self, ups: &str) -> Result<Vec<(String, String)>, NutError> {
        let command = format!("LIST VAR {ups}");
        let (addr, timeout) = (self.addr.clone(), self.timeout);
        let work = async {
            self.send(&command).await?;
            let begin = self.read_words(&command).await?;
            self.refused(&command, &begin)?;
            if begin != ["BEGIN", "LIST", "VAR", ups] {
                return Err(self.unexpected(&command, &begin.join(" ")));
            }
            let mut vars = Vec::new();
            loop {
                let words = self.read_words(&command).await?;
                if let Some((name, value)) = proto::var_of(&words, ups) {
                    if vars.len() == MAX_LIST {
                        return Err(
                            self.unexpected(&command, &format!("more than {MAX_LIST} variables"))
                        );
                    }
                    vars.push((name.to_string(), value.to_string()));
                } else if words == ["END", "LIST", "VAR", ups] {
                    return Ok(vars);
                } else {
                    return Err(self.unexpected(&command, &words.join(" ")));
                }
            }
        };
        deadline(addr, &command, timeout, work).await
    }

    /// One variable of `ups` (`GET VAR`).
    pub async fn get_var(&mut self, ups: &str, var: &str) -> Result<String, NutError> {
        let command = format!("GET VAR {ups} {var}");
        let words = self.exchange(&command, &command).await?;
        match words.as_slice() {
            [tag, u, name, value] if tag == "VAR" && u == ups && name == var => Ok(value.clone()),
            _ => Err(self.unexpected(&command, &words.join(" "))),
        }
    }

    /// Asks to act as `ups`'s primary: `PRIMARY`, or `MASTER` for upsd before 2.8 (which
    /// answers `PRIMARY` with `ERR UNKNOWN-COMMAND`). Without `LOGIN` this is only a
    /// permission check (see the module's notes).
    pub async fn primary(&mut self, ups: &str) -> Result<(), NutError> {
        let command = format!("PRIMARY {ups}");
        match self.exchange(&command, &command).await {
            Ok(words) if words.first().is_some_and(|w| w == "OK") => Ok(()),
            Ok(words) => Err(self.unexpected(&command, &words.join(" "))),
            Err(e) if e.code() == Some(NutCode::UnknownCommand) => {
                let command = format!("MASTER {ups}");
                let words = self.exchange(&command, &command).await?;
                if words.first().is_some_and(|w| w == "OK") {
                    Ok(())
                } else {
                    Err(self.unexpected(&command, &words.join(" ")))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Sets forced shutdown on `ups` (`FSD`, answered `OK FSD-SET`): every `upsmon` it
    /// powers shuts its system down.
    pub async fn fsd(&mut self, ups: &str) -> Result<(), NutError> {
        let command = format!("FSD {ups}");
        let words = self.exchange(&command, &command).await?;
        if words == ["OK", "FSD-SET"] {
            Ok(())
        } else {
            Err(self.unexpected(&command, &words.join(" ")))
        }
    }

    /// `LOGOUT` and close; best effort (upsd drops idle clients anyway).
    pub async fn logout(mut self) {
        let _ = self.exchange("LOGOUT", "LOGOUT").await;
        let _ = tokio::time::timeout(self.timeout, self.conn.get_mut().shutdown()).await;
    }

    /// Sends a command whose answer is `OK` (with or without more words).
    async fn expect_ok(&mut self, line: &str, label: &str) -> Result<(), NutError> {
        let words = self.exchange(line, label).await?;
        if words.first().is_some_and(|w| w == "OK") {
            Ok(())
        } else {
            Err(self.unexpected(label, &words.join(" ")))
        }
    }

    /// Sends `line` and reads the one-line answer within the time limit; an `ERR` answer
    /// is an error. `label` names the command in errors (never the password).
    async fn exchange(&mut self, line: &str, label: &str) -> Result<Vec<String>, NutError> {
        let (addr, timeout) = (self.addr.clone(), self.timeout);
        let work = async {
            self.send(line).await?;
            let words = self.read_words(label).await?;
            self.refused(label, &words)?;
            Ok(words)
        };
        deadline(addr, label, timeout, work).await
    }

    async fn send(&mut self, line: &str) -> Result<(), NutError> {
        let io = |source| NutError::Io {
            addr: self.addr.clone(),
            source,
        };
        let s = self.conn.get_mut();
        s.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(io)?;
        s.flush().await.map_err(io)
    }

    /// One line's words; at most [`MAX_LINE`] bytes.
    async fn read_words(&mut self, label: &str) -> Result<Vec<String>, NutError> {
        let mut buf = Vec::new();
        let n = (&mut self.conn)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|source| NutError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        if n == 0 {
            return Err(NutError::Closed {
                addr: self.addr.clone(),
            });
        }
        if buf.last() != Some(&b'\n') {
            return Err(if buf.len() > MAX_LINE {
                self.unexpected(label, &format!("a line longer than {MAX_LINE} bytes"))
            } else {
                NutError::Closed {
                    addr: self.addr.clone(),
                }
            });
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf);
        proto::split_words(&line).map_err(|e: ParseError| {
            self.unexpected(label, &format!("{e}: {}", line.escape_debug()))
        })
    }

    fn refused(&self, label: &str, words: &[String]) -> Result<(), NutError> {
        match proto::err_of(words) {
            Some(ErrAnswer { code, line }) => Err(NutError::Server {
                addr: self.addr.clone(),
                command: label.to_string(),
                code,
                line,
            }),
            None => Ok(()),
        }
    }

    fn unexpected(&self, label: &str, detail: &str) -> NutError {
        NutError::Protocol {
            addr: self.addr.clone(),
            command: label.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// `work` within `after`, else [`NutError::Timeout`] for `label`.
async fn deadline<T>(
    addr: String,
    label: &str,
    after: Duration,
    work: impl std::future::Future<Output = Result<T, NutError>>,
) -> Result<T, NutError> {
    tokio::time::timeout(after, work).await.unwrap_or_else(|_| {
        Err(NutError::Timeout {
            addr,
            command: label.to_string(),
            after,
        })
    })
}
