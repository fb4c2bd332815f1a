//! Modbus polling: one task per device, coalesced reads, exceptions kept apart from
//! transport failures (only the latter reconnect), capped exponential backoff with jitter.

pub mod decode;
pub mod plan;

use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, ModbusLink, ModbusSource, SensorInput, Table};
use crate::detect::{FaultKind, Reading, Sample};
use plan::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::Slave;
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
    #[error("transport error: {0}")]
    Transport(String),
    #[error("Modbus RTU (serial) is not supported by this build yet")]
    RtuUnsupported,
}

/// Everything one device's poller needs.
pub struct Device {
    pub name: String,
    pub cfg: ModbusSource,
    pub reads: Vec<Read>,
}

/// Builds the poll plan of every Modbus source that has sensors.
pub fn devices(config: &Config) -> Vec<Device> {
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let crate::config::SourceSpec::Modbus(m) = &source.spec else {
            continue;
        };
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
        out.push(Device {
            name: source.name.clone(),
            cfg: m.clone(),
            reads: plan::plan(regs, m.max_registers_per_read, m.max_gap),
        });
    }
    out
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
        tracing::debug!(source = %device.name, "Modbus poller stopped");
    })
}

async fn connect(cfg: &ModbusSource) -> Result<Context, ModbusError> {
    let (host, port) = match &cfg.link {
        ModbusLink::Tcp { host, port } => (host.clone(), *port),
        ModbusLink::Rtu { .. } => return Err(ModbusError::RtuUnsupported),
    };
    let addr_text = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(&addr_text)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ModbusError::Resolve(addr_text.clone()))?;
    match tokio::time::timeout(
        cfg.timeout,
        tokio_modbus::client::tcp::connect_slave(addr, Slave(cfg.unit)),
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
            after: cfg.timeout,
        }),
    }
}

const BACKOFF_START: Duration = Duration::from_millis(250);

async fn poll_forever(device: &Device, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let cfg = &device.cfg;
    let mut jitter = Jitter::new(clock.mono());
    let mut backoff = BACKOFF_START;
    let mut ctx: Option<Context> = None;
    let mut up: Option<bool> = None; // logged state, to log once per change
    let mut ticker = tokio::time::interval(cfg.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if ctx.is_none() {
            match connect(cfg).await {
                Ok(c) => {
                    if up != Some(true) {
                        tracing::info!(source = %device.name, "Modbus device connected");
                    }
                    up = Some(true);
                    backoff = BACKOFF_START;
                    ctx = Some(c);
                }
                Err(e) => {
                    if up != Some(false) {
                        tracing::warn!(source = %device.name, error = %e, "Modbus device unreachable; retrying with backoff");
                    }
                    up = Some(false);
                    if matches!(e, ModbusError::RtuUnsupported) {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(backoff.mul_f64(jitter.next_factor())).await;
                    backoff = (backoff * 2).min(cfg.reconnect_max);
                    continue;
                }
            }
        }
        ticker.tick().await;
        let Some(c) = ctx.as_mut() else { continue };
        if let Err(e) = poll_once(c, device, clock.as_ref(), &tx).await {
            tracing::warn!(source = %device.name, error = %e, "Modbus device lost; reconnecting");
            up = Some(false);
            ctx = None;
            tokio::time::sleep(backoff.mul_f64(jitter.next_factor())).await;
            backoff = (backoff * 2).min(cfg.reconnect_max);
        }
    }
}

/// One pass over the device's reads. A Modbus exception marks that read's sensors as
/// faulty and goes on; a transport failure ends the pass (the caller reconnects).
async fn poll_once(
    ctx: &mut Context,
    device: &Device,
    clock: &dyn Clock,
    tx: &mpsc::Sender<Sample>,
) -> Result<(), ModbusError> {
    for read in &device.reads {
        let fut = async {
            match read.table {
                Table::Holding => ctx.read_holding_registers(read.start, read.count).await,
                Table::Input => ctx.read_input_registers(read.start, read.count).await,
            }
        };
        let result = tokio::time::timeout(device.cfg.timeout, fut).await;
        let at = clock.mono();
        match result {
            Err(_) => {
                return Err(ModbusError::ReadTimeout {
                    table: read.table.as_str(),
                    start: read.start,
                    count: read.count,
                    after: device.cfg.timeout,
                })
            }
            Ok(Err(e)) => return Err(ModbusError::Transport(e.to_string())),
            Ok(Ok(Err(exception))) => {
                tracing::debug!(source = %device.name, ?exception, start = read.start, "Modbus exception");
                for (sensor, _, _) in &read.sensors {
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
            Ok(Ok(Ok(words))) => {
                for (sensor, spec, offset) in &read.sensors {
                    let from = *offset as usize;
                    let to = from + spec.kind.width() as usize;
                    let reading = match words.get(from..to) {
                        Some(w) => Reading::Value(decode::decode(w, spec)),
                        None => Reading::Fault(FaultKind::NoData),
                    };
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

async fn send(tx: &mpsc::Sender<Sample>, s: Sample) {
    // Only fails when the agent is shutting down; nothing to do then.
    let _ = tx.send(s).await;
}
