//! The `modbus_write` step: one write (function 5/15 for coils, 6/16 for holding
//! registers) through the connection the step's source polls on, then a read that shows
//! the write took. A drill or dry run only reads.
//!
//! "Could not talk" (connect refused, timeout, a broken link) is retryable; an exception
//! is the device saying no and is named, not retried, except the few that mean "not now"
//! or "the gateway could not reach the unit".

use super::{ModbusWriteStep, Verify};
use crate::config::{ModbusSource, SourceSpec, Step, Table};
use crate::runbook::{StepContext, StepError, StepOutcome};
use crate::sources::modbus::{decode, Link, ModbusError, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio_modbus::ExceptionCode;

/// How long a verify read may take to show the write: a BMS's state input follows its
/// command coil once the contactor has moved, not in the same instant.
const SETTLE: Duration = Duration::from_secs(1);
/// Pause between two verify reads while the state settles.
const SETTLE_EVERY: Duration = Duration::from_millis(100);

/// The name of a Modbus exception code (Modbus application protocol v1.1b3, 7).
pub fn exception_name(code: ExceptionCode) -> &'static str {
    match code {
        ExceptionCode::IllegalFunction => "illegal function",
        ExceptionCode::IllegalDataAddress => "illegal data address",
        ExceptionCode::IllegalDataValue => "illegal data value",
        ExceptionCode::ServerDeviceFailure => "server device failure",
        ExceptionCode::Acknowledge => "acknowledge",
        ExceptionCode::ServerDeviceBusy => "server device busy",
        ExceptionCode::MemoryParityError => "memory parity error",
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond",
        ExceptionCode::Custom(_) => "unknown exception",
    }
}

/// Whether trying again may help after this exception.
///
/// Design: the exceptions that say "not now" (busy, acknowledge: still working on it) or
/// "the gateway could not reach the unit" are the device's way of saying "could not
/// talk"; a write is idempotent, so it is retried like a timeout. Every other exception is
/// a refusal that the same request will meet again.
fn exception_is_retryable(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::Acknowledge
            | ExceptionCode::ServerDeviceBusy
            | ExceptionCode::GatewayPathUnavailable
            | ExceptionCode::GatewayTargetDevice
    )
}

fn refused(source: &str, request: String, code: ExceptionCode) -> StepError {
    StepError::ModbusException {
        device: source.to_string(),
        request,
        code: u8::from(code),
        name: exception_name(code),
        retryable: exception_is_retryable(code),
    }
}

fn unreachable_device(source: &str, e: ModbusError) -> StepError {
    StepError::Modbus(format!("{source}: {e}"))
}

/// "coil 12", "holding 40-41", "discrete 12".
fn items(table: Table, address: u16, count: usize) -> String {
    if count > 1 {
        format!(
            "{} {address}-{}",
            table.as_str(),
            u32::from(address) + count as u32 - 1
        )
    } else {
        format!("{} {address}", table.as_str())
    }
}

/// The step engine's entry: writes through the source's running connection when the agent
/// has one, else through a connection of its own for this step.
pub async fn execute(
    w: &ModbusWriteStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    let SourceSpec::Modbus(source) = &ctx.config.sources[w.source].spec else {
        return Err(StepError::Failed {
            message: "the step's source is not a Modbus source".into(),
            retryable: false,
        });
    };
    let (link, shared) = match ctx.modbus.and_then(|links| links.get(&source.link)) {
        Some(link) => (link, true),
        None => (Arc::new(Link::new(source.link.clone())), false),
    };
    let device = Device {
        step: w,
        source,
        link: &link,
    };
    let via = if shared {
        "over the source's connection"
    } else {
        "over a connection of its own"
    };
    if ctx.dry_run {
        let detail = device.rehearse().await?;
        return Ok(StepOutcome {
            verified: false,
            detail: format!("dry run, nothing written ({via}): {detail}"),
        });
    }
    let settle = SETTLE.min(step.timeout / 4);
    device.write().await?;
    let read = device.verify(settle).await?;
    Ok(StepOutcome {
        verified: true,
        detail: format!(
            "wrote {} := {} on {} unit {} ({via}); {read}",
            items(w.register.table, w.register.address, w.words.len()),
            w.value,
            w.source_name,
            source.unit
        ),
    })
}

struct Device<'a> {
    step: &'a ModbusWriteStep,
    source: &'a ModbusSource,
    link: &'a Link,
}

impl Device<'_> {
    async fn read(&self, table: Table, address: u16, count: u16) -> Result<Vec<u16>, StepError> {
        let request = Request::Read {
            table,
            start: address,
            count,
        };
        let name = &self.step.source_name;
        match self
            .link
            .call(self.source.unit, self.source.timeout, request)
            .await
        {
            Ok(Ok(words)) => Ok(words),
            Ok(Err(code)) => Err(refused(
                name,
                format!("read of {}", items(table, address, count.into())),
                code,
            )),
            Err(e) => Err(unreachable_device(name, e)),
        }
    }

    async fn write(&self) -> Result<(), StepError> {
        let r = &self.step.register;
        let bits: Vec<bool> = self.step.words.iter().map(|w| *w != 0).collect();
        let request = if r.table.is_bits() {
            Request::WriteCoils {
                start: r.address,
                bits: &bits,
            }
        } else {
            Request::WriteRegisters {
                start: r.address,
                words: &self.step.words,
            }
        };
        let name = &self.step.source_name;
        match self
            .link
            .call(self.source.unit, self.source.timeout, request)
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(code)) => Err(refused(
                name,
                format!(
                    "write of {}",
                    items(r.table, r.address, self.step.words.len())
                ),
                code,
            )),
            Err(e) => Err(unreachable_device(name, e)),
        }
    }

    /// Reads the verify address until it holds what it should, for at most `settle`.
    async fn verify(&self, settle: Duration) -> Result<String, StepError> {
        let v = &self.step.verify;
        let started = crate::clock::now();
        loop {
            let got = self.read(v.table, v.address, v.equals.len() as u16).await?;
            let what = items(v.table, v.address, v.equals.len());
            if got == v.equals {
                return Ok(format!("{what} reads {}", self.shown(v, &got)));
            }
            if started.elapsed() + SETTLE_EVERY > settle {
                return Err(StepError::NotVerified(format!(
                    "{what} on {} reads {}, expected {}",
                    self.step.source_name,
                    self.shown(v, &got),
                    self.shown(v, &v.equals)
                )));
            }
            crate::clock::sleep(SETTLE_EVERY).await;
        }
    }

    /// Words as the operator wrote them: the engineering value when the verify read is
    /// the written register, else the raw word(s).
    fn shown(&self, v: &Verify, words: &[u16]) -> String {
        let r = &self.step.register;
        if !v.explicit && !r.table.is_bits() {
            format!("{} (raw {words:?})", decode::decode(words, r))
        } else if words.len() == 1 {
            words[0].to_string()
        } else {
            format!("{words:?}")
        }
    }

    /// A drill: reads the target and the verify address, writes nothing.
    async fn rehearse(&self) -> Result<String, StepError> {
        let r = &self.step.register;
        let count = self.step.words.len() as u16;
        let now = self.read(r.table, r.address, count).await?;
        let value = if r.table.is_bits() {
            now[0].to_string()
        } else {
            decode::decode(&now, r).to_string()
        };
        let mut detail = format!(
            "{} on {} reads {value} (would write {})",
            items(r.table, r.address, count.into()),
            self.step.source_name,
            self.step.value
        );
        let v = &self.step.verify;
        if v.explicit {
            let got = self.read(v.table, v.address, 1).await?;
            detail.push_str(&format!(
                "; {} reads {} (verify expects {})",
                items(v.table, v.address, 1),
                got[0],
                v.equals[0]
            ));
        }
        Ok(detail)
    }
}
