//! Modbus polling: one task per device, coalesced reads, exceptions kept apart from
//! transport failures (only the latter reconnect), capped exponential backoff with jitter.

pub mod config;
pub mod decode;
pub mod plan;
pub mod rtu;

use super::metrics::{ErrorKind, SourceMetrics};
use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, ModbusLink, ModbusSource, SensorInput, Table};
use crate::detect::{FaultKind, Reading, Sample};
use plan::Read;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("read of {count} {table} registers at {start} timed out after {after:?}")]
    ReadTimeout {
        table: &'static str,
        start: u16,
        count: u16,
        after: Duration,
    },
    #[error("write of {count} {table} item(s) at {start} timed out after {after:?}")]
    WriteTimeout {
        table: &'static str,
        start: u16,
        count: u16,
        after: Duration,
    },
    #[error("transport error: {0}")]
    Transport(String),
    #[error("cannot open serial port {path}: {message}")]
    Serial { path: String, message: String },
}

/// One physical link (a serial line or a TCP endpoint) and its connection, shared by
/// every device (unit id) behind it.
///
/// Design: requests on one link are serialised by a mutex held for one read at a time,
/// with the read's own timeout inside it, so a dead unit delays its neighbours by at most
/// one bounded timeout per read, never indefinitely; devices on other links never wait.
pub struct Link {
    pub link: ModbusLink,
    conn: tokio::sync::Mutex<Option<Context>>,
}

impl Link {
    pub fn new(link: ModbusLink) -> Self {
        Link {
            link,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// One request to `unit` on the link's connection, under its lock: connects first
    /// when there is no connection, and drops the connection after a transport error and,
    /// on TCP, after a timeout. `Ok(Err(code))` is the device's exception (the connection
    /// stays). A read returns its words (bits as words of 0 or 1), a write nothing.
    pub async fn call(
        &self,
        unit: u8,
        timeout: Duration,
        request: Request<'_>,
    ) -> Result<Result<Vec<u16>, ExceptionCode>, ModbusError> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(connect(&self.link, unit, timeout).await?);
        }
        let Some(ctx) = conn.as_mut() else {
            unreachable!("connected just above")
        };
        ctx.set_slave(Slave(unit));
        let result = tokio::time::timeout(timeout, request.send(ctx)).await;
        let drop_conn = match &result {
            Ok(Ok(_)) => false,
            Ok(Err(_)) => true,
            // TCP: a late answer could be taken for the next request's, so start
            // afresh. RTU: a silent unit is normal on a shared line, and the client
            // checks the unit id and CRC of every answer; reopening the port would
            // only disturb the other units.
            Err(_) => matches!(self.link, ModbusLink::Tcp { .. }),
        };
        if drop_conn {
            *conn = None;
        }
        match result {
            Err(_) => Err(request.timeout_error(timeout)),
            Ok(Err(e)) => Err(ModbusError::Transport(e.to_string())),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Closes the connection (the next request opens a new one).
    pub async fn close(&self) {
        *self.conn.lock().await = None;
    }
}

/// One Modbus request.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Read {
        table: Table,
        start: u16,
        count: u16,
    },
    /// Function 5 for one coil, 15 for several.
    WriteCoils { start: u16, bits: &'a [bool] },
    /// Function 6 for one holding register, 16 for several.
    WriteRegisters { start: u16, words: &'a [u16] },
}

impl Request<'_> {
    async fn send(self, ctx: &mut Context) -> tokio_modbus::Result<Vec<u16>> {
        fn written(r: tokio_modbus::Result<()>) -> tokio_modbus::Result<Vec<u16>> {
            r.map(|r| r.map(|()| Vec::new()))
        }
        match self {
            Request::Read {
                table,
                start,
                count,
            } => read_table(ctx, table, start, count).await,
            Request::WriteCoils { start, bits: [bit] } => {
                written(ctx.write_single_coil(start, *bit).await)
            }
            Request::WriteCoils { start, bits } => {
                written(ctx.write_multiple_coils(start, bits).await)
            }
            Request::WriteRegisters {
                start,
                words: [word],
            } => written(ctx.write_single_register(start, *word).await),
            Request::WriteRegisters { start, words } => {
                written(ctx.write_multiple_registers(start, words).await)
            }
        }
    }

    fn timeout_error(self, after: Duration) -> ModbusError {
        match self {
            Request::Read {
                table,
                start,
                count,
            } => ModbusError::ReadTimeout {
                table: table.as_str(),
                start,
                count,
                after,
            },
            Request::WriteCoils { start, bits } => ModbusError::WriteTimeout {
                table: Table::Coil.as_str(),
                start,
                count: bits.len() as u16,
                after,
            },
            Request::WriteRegisters { start, words } => ModbusError::WriteTimeout {
                table: Table::Holding.as_str(),
                start,
                count: words.len() as u16,
                after,
            },
        }
    }
}

/// The links of the running sources, by endpoint, for the runbook steps that write to a
/// device through the connection its source polls on (a device that accepts one client
/// is not given a second). Swapped whole when a config reload restarts the sources.
///
/// Design: keyed by endpoint, not by source index: an endpoint is what a connection is
/// to, and a runbook started before a reload (its config's indices) still finds the
/// connection of the sources running now.
#[derive(Default)]
pub struct Links {
    by_endpoint: std::sync::RwLock<HashMap<ModbusLink, Arc<Link>>>,
}

impl Links {
    /// The running link to `endpoint`, if a source has one.
    pub fn get(&self, endpoint: &ModbusLink) -> Option<Arc<Link>> {
        self.by_endpoint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(endpoint)
            .cloned()
    }

    /// Puts the links of newly started sources in place of the old ones.
    pub fn replace(&self, links: HashMap<ModbusLink, Arc<Link>>) {
        *self
            .by_endpoint
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = links;
    }
}

/// Everything one device's poller needs.
pub struct Device {
    pub name: String,
    pub cfg: ModbusSource,
    pub reads: Vec<Read>,
    pub metrics: Arc<SourceMetrics>,
    pub link: Arc<Link>,
    /// The `sentinels` of the sensors that have them, by sensor index.
    pub sentinels: HashMap<u32, Vec<f64>>,
}

/// Builds the poll plan of every Modbus source that has sensors; sources with the same
/// URL share one link.
pub fn devices(config: &Config) -> Vec<Device> {
    plan_links(config).0
}

/// [`devices`], and the link of every Modbus source, polled or not (a source that only
/// runbook steps write to has a link too, so that its steps share one connection).
pub fn plan_links(config: &Config) -> (Vec<Device>, HashMap<ModbusLink, Arc<Link>>) {
    let mut links: HashMap<ModbusLink, Arc<Link>> = HashMap::new();
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let crate::config::SourceSpec::Modbus(m) = &source.spec else {
            continue;
        };
        let link = links
            .entry(m.link.clone())
            .or_insert_with(|| Arc::new(Link::new(m.link.clone())))
            .clone();
        let regs: Vec<_> = config
            .sensors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.source == si)
            .filter_map(|(i, s)| match &s.input {
                SensorInput::Register(r) => Some((i as u32, *r)),
                _ => None,
            })
            .collect();
        if regs.is_empty() {
            continue;
        }
        let sentinels = regs
            .iter()
            .map(|(i, _)| (*i, &config.sensors[*i as usize].sentinels))
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| (i, v.clone()))
            .collect();
        out.push(Device {
            name: source.name.clone(),
            cfg: m.clone(),
            reads: plan::plan(regs, m.max_registers_per_read, m.max_gap),
            metrics: Arc::new(SourceMetrics::new(source.name.clone())),
            link,
            sentinels,
        });
    }
    (out, links)
}

pub fn spawn(
    device: Device,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Sample>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = poll_forever(&device, clock, tx) => {}
        }
        device.metrics.set_connected(false);
        tracing::debug!(source = %device.name, "Modbus poller stopped");
    })
}

/// Opens a link (TCP connection or serial port) talking to `unit`.
pub async fn connect(
    link: &ModbusLink,
    unit: u8,
    timeout: Duration,
) -> Result<Context, ModbusError> {
    match link {
        ModbusLink::Tcp { host, port } => connect_tcp(host, *port, unit, timeout).await,
        ModbusLink::Rtu {
            path,
            baud,
            parity,
            stop_bits,
            data_bits,
        } => rtu::open(path, *baud, *parity, *stop_bits, *data_bits, unit),
    }
}

async fn connect_tcp(
    host: &str,
    port: u16,
    unit: u8,
    timeout: Duration,
) -> Result<Context, ModbusError> {
    let addr_text = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(&addr_text)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ModbusError::Resolve(addr_text.clone()))?;
    match tokio::time::timeout(
        timeout,
        tokio_modbus::client::tcp::connect_slave(addr, Slave(unit)),
    )
    .await
    {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(source)) => Err(ModbusError::Connect {
            addr: addr_text,
            source,
        }),
        Err(_) => Err(ModbusError::ConnectTimeout {
            addr: addr_text,
            after: timeout,
        }),
    }
}

const BACKOFF_START: Duration = Duration::from_millis(250);

async fn poll_forever(device: &Device, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let cfg = &device.cfg;
    let mut jitter = Jitter::new(clock.mono() ^ u64::from(cfg.unit) << 32);
    let mut backoff = BACKOFF_START;
    let mut up: Option<bool> = None; // logged state, to log once per change
    let mut ticker = tokio::time::interval(cfg.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = clock.mono();
        let result = poll_once(device, clock.as_ref(), &tx).await;
        device
            .metrics
            .observe_poll(clock.mono().saturating_sub(started) as f64 * 1e-9);
        match result {
            Ok(()) => {
                if up != Some(true) {
                    tracing::info!(source = %device.name, "Modbus device answering");
                }
                up = Some(true);
                device.metrics.set_connected(true);
                backoff = BACKOFF_START;
            }
            Err(e) => {
                if up != Some(false) {
                    tracing::warn!(source = %device.name, error = %e, "Modbus device unreachable; retrying with backoff");
                }
                let kind = match e {
                    ModbusError::Resolve(_)
                    | ModbusError::Connect { .. }
                    | ModbusError::ConnectTimeout { .. }
                    | ModbusError::Serial { .. } => ErrorKind::Connect,
                    _ => ErrorKind::Transport,
                };
                device.metrics.error(kind);
                device.metrics.set_connected(false);
                up = Some(false);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(cfg.reconnect_max);
                ticker.reset();
            }
        }
    }
}

/// One pass over the device's reads. A Modbus exception marks that read's sensors as
/// faulty and goes on; a transport failure drops the link's connection and ends the pass
/// (the next user of the link reconnects).
async fn poll_once(
    device: &Device,
    clock: &dyn Clock,
    tx: &mpsc::Sender<Sample>,
) -> Result<(), ModbusError> {
    let cfg = &device.cfg;
    for read in &device.reads {
        let request = Request::Read {
            table: read.table,
            start: read.start,
            count: read.count,
        };
        let result = device.link.call(cfg.unit, cfg.timeout, request).await?;
        device.metrics.set_connected(true);
        let at = clock.mono();
        match result {
            Err(exception) => {
                tracing::debug!(source = %device.name, ?exception, start = read.start, "Modbus exception");
                device.metrics.error(ErrorKind::Exception);
                for (sensor, _, _) in &read.sensors {
                    device.metrics.sample();
                    send(
                        tx,
                        Sample {
                            sensor: *sensor,
                            at,
                            reading: Reading::Fault(FaultKind::ModbusException),
                        },
                    )
                    .await;
                }
            }
            Ok(words) => {
                for (sensor, spec, offset) in &read.sensors {
                    let from = *offset as usize;
                    let to = from + spec.kind.width() as usize;
                    let reading = match words.get(from..to) {
                        Some(w)
                            if decode::is_no_data(w, spec)
                                || device
                                    .sentinels
                                    .get(sensor)
                                    .is_some_and(|v| v.contains(&decode::raw(w, spec))) =>
                        {
                            device.metrics.error(ErrorKind::BadValue);
                            Reading::Fault(FaultKind::OutOfRange)
                        }
                        Some(w) => Reading::Value(decode::decode(w, spec)),
                        None => Reading::Fault(FaultKind::NoData),
                    };
                    device.metrics.sample();
                    send(
                        tx,
                        Sample {
                            sensor: *sensor,
                            at,
                            reading,
                        },
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

/// One read of any table. Bits come back as words of 0 or 1, so one decode path serves
/// every table. Sources only read; writes are the `modbus_write` step's ([`Request`]).
pub async fn read_table(
    ctx: &mut Context,
    table: Table,
    start: u16,
    count: u16,
) -> tokio_modbus::Result<Vec<u16>> {
    fn words(bits: tokio_modbus::Result<Vec<bool>>, count: u16) -> tokio_modbus::Result<Vec<u16>> {
        // The reply is padded to whole bytes; the padding bits are not ours.
        bits.map(|r| r.map(|b| b.into_iter().take(count.into()).map(u16::from).collect()))
    }
    match table {
        Table::Holding => ctx.read_holding_registers(start, count).await,
        Table::Input => ctx.read_input_registers(start, count).await,
        Table::Coil => words(ctx.read_coils(start, count).await, count),
        Table::Discrete => words(ctx.read_discrete_inputs(start, count).await, count),
    }
}

async fn send(tx: &mpsc::Sender<Sample>, s: Sample) {
    // Only fails when the agent is shutting down; nothing to do then.
    let _ = tx.send(s).await;
}
