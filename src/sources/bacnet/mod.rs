//! BACnet/IP: one task per device (a fire alarm panel's interface, a building management
//! system). Every poll reads all of the source's objects (present-value or the named
//! property, status-flags, reliability, out-of-service) in ReadPropertyMultiple requests,
//! or one ReadProperty at a time from a device that does not do that service. With
//! `cov = true` each object is also subscribed to (SubscribeCOV), so a change reaches the
//! detection core when the device reports it rather than at the next poll; the poll goes on
//! as the liveness check and the backstop for a lost notification.
//!
//! The device's own judgement is trusted: an object whose status-flags say fault or
//! out-of-service, or whose reliability is not no-fault-detected, gives a fault
//! (`fault:bacnet_fault`, `fault:bacnet_out_of_service`), never a reading. An object the
//! device does not have is `fault:no_such_object`; any other error the device answers for
//! a property or the whole request is `fault:bacnet_error` (the class and code are logged).
//! A device that does not answer fails the poll and is retried with capped exponential
//! backoff; its sensors go stale.
//!
//! Design: confirmed COV notifications. The device retransmits one we do not acknowledge,
//! so a lost datagram announcing a fire is sent again within the device's APDU timeout
//! instead of waiting for the next poll; the cost is one SimpleACK per change. A
//! subscription is renewed at half its lifetime (a device that lost it on a restart has it
//! back by then at the latest), and at once when the device answers again after a poll
//! that got no answer (it may have restarted and forgotten every subscription).

pub mod client;
/// The wire format, in its own crate (src/bacnet-wire) so the simulator's panel speaks it too.
pub use bacnet_wire as codec;
pub mod config;

use super::metrics::{ErrorKind, SourceMetrics};
use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, SensorInput, SourceSpec};
use crate::detect::rise::Nanos;
use crate::detect::{FaultKind, Reading, Sample};
use client::{BacnetError, Client, ReadMode};
use codec::{prop, AccessResult, CovNotification, ErrorCode, ObjectId, StatusFlags, Value};
use config::{BacnetInput, BacnetSource, Cov};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BACKOFF_START: Duration = Duration::from_millis(250);

/// How long a foreign-device registration lasts; renewed at half of it.
const FOREIGN_DEVICE_TTL: u16 = 60;

/// One sensor read from the device.
#[derive(Debug, Clone)]
pub struct SensorRead {
    pub sensor: u32,
    pub input: BacnetInput,
    /// Index of the sensor's (object, property) in [`Poller::points`].
    pub point: usize,
    /// The sensor's `sentinels`: raw values meaning "no data".
    pub sentinels: Vec<f64>,
}

/// Everything one device's poller needs.
pub struct Poller {
    pub name: String,
    pub cfg: BacnetSource,
    /// Every (object, property) the sensors read, once each.
    pub points: Vec<(ObjectId, u32)>,
    pub sensors: Vec<SensorRead>,
    pub metrics: Arc<SourceMetrics>,
}

impl Poller {
    /// The distinct objects, for subscriptions.
    fn objects(&self) -> Vec<ObjectId> {
        let mut seen = HashSet::new();
        self.points
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| seen.insert(*o))
            .collect()
    }

    /// What one poll asks for: each point's property and the object's state.
    fn specs(&self) -> Vec<(ObjectId, Vec<u32>)> {
        self.points
            .iter()
            .map(|(o, p)| {
                let mut props = vec![*p];
                for extra in [prop::STATUS_FLAGS, prop::RELIABILITY, prop::OUT_OF_SERVICE] {
                    if extra != *p {
                        props.push(extra);
                    }
                }
                (*o, props)
            })
            .collect()
    }

    /// The subscriber process identifier: stable per source name, so that a restarted
    /// agent renews its own earlier subscriptions instead of adding more.
    fn process_id(&self) -> u32 {
        let h = self.name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        h & 0x3f_ffff
    }
}

/// The pollers of every BACnet source that has sensors.
pub fn pollers(config: &Config) -> Vec<Poller> {
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let SourceSpec::Bacnet(cfg) = &source.spec else {
            continue;
        };
        let mut points: Vec<(ObjectId, u32)> = Vec::new();
        let mut sensors = Vec::new();
        for (i, s) in config.sensors.iter().enumerate() {
            if s.source != si {
                continue;
            }
            let SensorInput::Bacnet(input) = &s.input else {
                continue;
            };
            let key = (input.object, input.property);
            let point = match points.iter().position(|p| *p == key) {
                Some(k) => k,
                None => {
                    points.push(key);
                    points.len() - 1
                }
            };
            sensors.push(SensorRead {
                sensor: i as u32,
                input: input.clone(),
                point,
                sentinels: s.sentinels.clone(),
            });
        }
        if sensors.is_empty() {
            continue;
        }
        out.push(Poller {
            name: source.name.clone(),
            cfg: cfg.clone(),
            points,
            sensors,
            metrics: Arc::new(SourceMetrics::new(source.name.clone())),
        });
    }
    out
}

pub fn spawn(
    poller: Poller,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Sample>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(&poller, clock, tx) => {}
        }
        poller.metrics.set_connected(false);
        tracing::debug!(source = %poller.name, "BACnet source stopped");
    })
}

/// Why a point has no reading.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PointFault {
    /// The device says the object is faulty (status-flags fault, or reliability).
    Fault,
    OutOfService,
    /// No such object or property.
    Unknown(ErrorCode),
    /// Another error for the property.
    Error(ErrorCode),
    /// A value that is no number (the type's name).
    NotNumeric(&'static str),
}

impl PointFault {
    fn fault(self) -> FaultKind {
        match self {
            PointFault::Fault => FaultKind::BacnetFault,
            PointFault::OutOfService => FaultKind::BacnetOutOfService,
            PointFault::Unknown(_) => FaultKind::NoSuchObject,
            PointFault::Error(_) => FaultKind::BacnetError,
            PointFault::NotNumeric(_) => FaultKind::NotNumeric,
        }
    }

    fn kind(self) -> Option<ErrorKind> {
        match self {
            // The device's judgement of its own object: reported as the sensor's fault,
            // not counted as the source's error.
            PointFault::Fault | PointFault::OutOfService => None,
            PointFault::Unknown(_) => Some(ErrorKind::NoSuchObject),
            PointFault::Error(_) => Some(ErrorKind::Exception),
            PointFault::NotNumeric(_) => Some(ErrorKind::BadValue),
        }
    }
}

/// A point's reading from what the device said of its object.
fn judge(
    value: Option<&Result<Vec<Value>, ErrorCode>>,
    status: Option<&Value>,
    reliability: Option<&Value>,
    out_of_service: Option<&Value>,
) -> Result<f64, PointFault> {
    let values = match value {
        Some(Ok(v)) => v,
        Some(Err(e)) if e.is_unknown() => return Err(PointFault::Unknown(*e)),
        Some(Err(e)) => return Err(PointFault::Error(*e)),
        None => return Err(PointFault::NotNumeric("nothing")),
    };
    let flags = status.and_then(StatusFlags::from_value).unwrap_or_default();
    let unreliable = matches!(reliability, Some(Value::Enumerated(r)) if *r != 0);
    if flags.fault || unreliable {
        return Err(PointFault::Fault);
    }
    if flags.out_of_service || matches!(out_of_service, Some(Value::Boolean(true))) {
        return Err(PointFault::OutOfService);
    }
    match values.first() {
        Some(v) => v.number().ok_or(PointFault::NotNumeric(v.type_name())),
        None => Err(PointFault::NotNumeric("an empty list")),
    }
}

/// A point's reading from a poll's result for its object.
fn judge_result(property: u32, r: &AccessResult) -> Result<f64, PointFault> {
    let get = |p: u32| r.results.iter().find(|x| x.property == p).map(|x| &x.value);
    // A property the object lacks (reliability is optional) says nothing.
    let ok = |p: u32| get(p).and_then(|v| v.as_ref().ok()).and_then(|v| v.first());
    judge(
        get(property),
        ok(prop::STATUS_FLAGS),
        ok(prop::RELIABILITY),
        ok(prop::OUT_OF_SERVICE),
    )
}

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// To (re)subscribe at the next chance.
    Due,
    /// Renew at this time.
    Active(Instant),
    /// The device refused it: the object is polled only (asked again after the device
    /// comes back from silence).
    Refused,
}

struct State<'a> {
    p: &'a Poller,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Sample>,
    /// Points whose fault was logged, to log each once per episode.
    faulted: HashSet<usize>,
    subs: HashMap<ObjectId, Sub>,
    /// Logged: the device does not do ReadPropertyMultiple.
    said_single: bool,
}

impl State<'_> {
    /// When the next active subscription is due for renewal.
    fn next_renewal(&self) -> Option<Instant> {
        self.subs
            .values()
            .filter_map(|s| match s {
                Sub::Active(at) => Some(*at),
                _ => None,
            })
            .min()
    }

    async fn send(&self, sensor: u32, at: Nanos, reading: Reading) {
        self.p.metrics.sample();
        // Fails only when the agent is shutting down; nothing to do then.
        let _ = self
            .tx
            .send(Sample {
                sensor,
                at,
                reading,
            })
            .await;
    }

    /// Sends each sensor of `point` its reading.
    async fn deliver(&mut self, point: usize, result: Result<f64, PointFault>, at: Nanos) {
        let p = self.p;
        match result {
            Ok(_) => {
                self.faulted.remove(&point);
            }
            Err(f) => {
                if let Some(kind) = f.kind() {
                    p.metrics.error(kind);
                }
                if self.faulted.insert(point) {
                    let (object, property) = p.points[point];
                    let property = codec::property_name(property);
                    match f {
                        PointFault::Fault => {
                            tracing::warn!(source = %p.name, %object, "BACnet object reports a fault (status-flags or reliability)")
                        }
                        PointFault::OutOfService => {
                            tracing::warn!(source = %p.name, %object, "BACnet object is out of service")
                        }
                        PointFault::Unknown(e) | PointFault::Error(e) => {
                            tracing::warn!(source = %p.name, %object, %property, error = %e, "BACnet device answered an error for the property")
                        }
                        PointFault::NotNumeric(t) => {
                            tracing::warn!(source = %p.name, %object, %property, value_type = t, "BACnet property holds no number")
                        }
                    }
                }
            }
        }
        for s in p.sensors.iter().filter(|s| s.point == point) {
            let reading = match result {
                Ok(raw) if s.sentinels.contains(&raw) => {
                    p.metrics.error(ErrorKind::BadValue);
                    Reading::Fault(FaultKind::OutOfRange)
                }
                Ok(raw) => Reading::Value(s.input.reading(raw)),
                Err(f) => Reading::Fault(f.fault()),
            };
            self.send(s.sensor, at, reading).await;
        }
    }

    /// A notification for one of our objects: its points' readings as the device
    /// reported them.
    async fn notified(&mut self, n: CovNotification) {
        let p = self.p;
        if n.process_id != p.process_id() {
            return;
        }
        let at = self.clock.mono();
        let status = n.value_of(prop::STATUS_FLAGS);
        for point in 0..p.points.len() {
            let (object, property) = p.points[point];
            if object != n.object {
                continue;
            }
            let Some(v) = n.values.iter().find(|(q, _)| *q == property) else {
                continue;
            };
            let result = judge(Some(&Ok(v.1.clone())), status, None, None);
            self.deliver(point, result, at).await;
        }
    }
}

async fn connect(p: &Poller, jitter: &mut Jitter, up: &mut Option<bool>) -> Client {
    let cfg = &p.cfg;
    let mut backoff = BACKOFF_START;
    loop {
        match Client::connect(&cfg.target(), cfg.local, cfg.bbmd, cfg.timeout, cfg.retries).await {
            Ok(c) => return c,
            Err(e) => {
                if *up != Some(false) {
                    tracing::warn!(source = %p.name, error = %e, "BACnet source cannot open its socket; retrying");
                    *up = Some(false);
                }
                p.metrics.error(e.kind());
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(cfg.reconnect_max);
            }
        }
    }
}

async fn run(p: &Poller, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let cfg = &p.cfg;
    let mut jitter = Jitter::new(clock.mono() ^ u64::from(cfg.port) << 32);
    let mut up: Option<bool> = None; // logged state, to log once per change
    let mut client = connect(p, &mut jitter, &mut up).await;
    let mut st = State {
        p,
        clock: clock.clone(),
        tx,
        faulted: HashSet::new(),
        subs: HashMap::new(),
        said_single: false,
    };
    if let Cov::Subscribe { .. } = cfg.cov {
        st.subs = p.objects().into_iter().map(|o| (o, Sub::Due)).collect();
    }
    let specs = p.specs();
    let device = ObjectId::new(codec::object_type::DEVICE, cfg.device_instance);
    let mut checked_device = false;
    let mut registered_until: Option<Instant> = None;
    let mut backoff = BACKOFF_START;
    let mut ticker = tokio::time::interval(cfg.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Renewals run on their own time: a poll_interval longer than half the lifetime
        // must not let a subscription lapse.
        let renewal = st.next_renewal();
        tokio::select! {
            _ = ticker.tick() => {}
            _ = async {
                match renewal {
                    Some(at) => crate::clock::sleep(at.saturating_duration_since(crate::clock::now())).await,
                    None => std::future::pending().await,
                }
            } => {
                maintain_subscriptions(&mut st, &mut client).await;
                continue;
            }
            n = client.next_notification() => {
                match n {
                    Ok(n) => st.notified(n).await,
                    Err(e) => {
                        tracing::warn!(source = %p.name, error = %e, "BACnet socket failed; opening another");
                        p.metrics.error(e.kind());
                        client = connect(p, &mut jitter, &mut up).await;
                    }
                }
                continue;
            }
        }
        if cfg.bbmd.is_some() && registered_until.is_none_or(|t| crate::clock::now() >= t) {
            match client.register_foreign_device(FOREIGN_DEVICE_TTL).await {
                Ok(()) => {
                    registered_until = Some(
                        crate::clock::now()
                            + Duration::from_secs(u64::from(FOREIGN_DEVICE_TTL) / 2),
                    );
                }
                Err(e) => {
                    tracing::warn!(source = %p.name, error = %e, "BBMD foreign-device registration failed");
                    p.metrics.error(e.kind());
                }
            }
        }
        let started = clock.mono();
        let result = client.read_objects(&specs).await;
        p.metrics
            .observe_poll(clock.mono().saturating_sub(started) as f64 * 1e-9);
        let at = clock.mono();
        if client.read_mode() == ReadMode::Single && !st.said_single {
            tracing::warn!(source = %p.name, device = %client.device(), "BACnet device does not do ReadPropertyMultiple; reading one property per request");
            st.said_single = true;
        }
        match result {
            Ok(results) => {
                if up != Some(true) {
                    tracing::info!(source = %p.name, device = %client.device(), local = ?client.local_addr(), "BACnet device answering");
                    if up == Some(false) {
                        // It was silent: it may have restarted and forgotten every
                        // subscription.
                        for s in st.subs.values_mut() {
                            *s = Sub::Due;
                        }
                    }
                }
                up = Some(true);
                p.metrics.set_connected(true);
                backoff = BACKOFF_START;
                for (point, r) in results.iter().enumerate() {
                    let (_, property) = p.points[point];
                    st.deliver(point, judge_result(property, r), at).await;
                }
                if !checked_device {
                    checked_device = true;
                    check_device(p, &mut client, device).await;
                }
                maintain_subscriptions(&mut st, &mut client).await;
            }
            Err(e) if e.device_answered() => {
                // The device is there and refused the whole request: every sensor
                // faults, and the next poll asks again.
                if up != Some(true) {
                    tracing::warn!(source = %p.name, error = %e, "BACnet device refused the request");
                }
                up = Some(true);
                p.metrics.set_connected(true);
                p.metrics.error(e.kind());
                let fault = if e.kind() == ErrorKind::NoSuchObject {
                    FaultKind::NoSuchObject
                } else {
                    FaultKind::BacnetError
                };
                for s in &p.sensors {
                    st.send(s.sensor, at, Reading::Fault(fault)).await;
                }
            }
            Err(e) => {
                if up != Some(false) {
                    tracing::warn!(source = %p.name, error = %e, "BACnet device not answering; retrying with backoff");
                }
                up = Some(false);
                checked_device = false;
                registered_until = None;
                p.metrics.error(e.kind());
                p.metrics.set_connected(false);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(cfg.reconnect_max);
                ticker.reset();
            }
        }
    }
}

/// Reads the Device object's name once the device answers: a device without the
/// configured instance is logged (the wrong device_instance, or the wrong address).
async fn check_device(p: &Poller, client: &mut Client, device: ObjectId) {
    match client.read_property(device, prop::OBJECT_NAME, None).await {
        Ok(v) => {
            let name = v.first().map(ToString::to_string).unwrap_or_default();
            tracing::info!(source = %p.name, %device, name = %name, "BACnet device identified");
        }
        Err(BacnetError::Error(e)) if e.is_unknown() => {
            p.metrics.error(ErrorKind::NoSuchObject);
            tracing::error!(source = %p.name, %device, device_address = %client.device(), "the BACnet device at this address has no such Device object: check device_instance (`firebreak probe bacnet` lists it)");
        }
        Err(e) => {
            tracing::debug!(source = %p.name, %device, error = %e, "BACnet device name not read");
        }
    }
}

/// Subscribes what is due: new, lapsing at half their lifetime, or lost with a device
/// that went silent.
async fn maintain_subscriptions(st: &mut State<'_>, client: &mut Client) {
    let p = st.p;
    let Cov::Subscribe { lifetime } = p.cfg.cov else {
        return;
    };
    let now = crate::clock::now();
    let due: Vec<ObjectId> = st
        .subs
        .iter()
        .filter(|(_, s)| match s {
            Sub::Due => true,
            Sub::Active(at) => *at <= now,
            Sub::Refused => false,
        })
        .map(|(o, _)| *o)
        .collect();
    let seconds = lifetime.as_secs().min(u64::from(u32::MAX)) as u32;
    for object in due {
        let renewing = matches!(st.subs.get(&object), Some(Sub::Active(_)));
        match client
            .subscribe_cov(p.process_id(), object, true, Some(seconds))
            .await
        {
            Ok(()) => {
                if !renewing {
                    tracing::info!(source = %p.name, %object, lifetime = seconds, "BACnet COV subscription active (confirmed notifications)");
                }
                st.subs
                    .insert(object, Sub::Active(crate::clock::now() + lifetime / 2));
            }
            Err(e) if e.device_answered() => {
                p.metrics.error(ErrorKind::CovRefused);
                tracing::warn!(source = %p.name, %object, error = %e, "BACnet device refused the COV subscription; polling this object every poll_interval instead");
                st.subs.insert(object, Sub::Refused);
            }
            Err(e) => {
                // No answer: keep it due; the poll decides whether the device is gone.
                tracing::debug!(source = %p.name, %object, error = %e, "BACnet COV subscription not answered; trying again");
                p.metrics.error(e.kind());
                st.subs.insert(object, Sub::Due);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(fault: bool, oos: bool) -> Value {
        Value::BitString(vec![false, fault, false, oos])
    }

    #[test]
    fn the_device_judgement_of_its_object_wins_over_the_value() {
        let pv = Ok(vec![Value::Real(0.2)]);
        let ok = judge(Some(&pv), Some(&flags(false, false)), None, None);
        assert_eq!(ok, Ok(f64::from(0.2f32)));
        assert_eq!(
            judge(Some(&pv), Some(&flags(true, false)), None, None),
            Err(PointFault::Fault)
        );
        assert_eq!(
            judge(Some(&pv), Some(&flags(false, true)), None, None),
            Err(PointFault::OutOfService)
        );
        assert_eq!(
            judge(
                Some(&pv),
                Some(&flags(false, false)),
                Some(&Value::Enumerated(7)),
                None
            ),
            Err(PointFault::Fault)
        );
        assert_eq!(
            judge(
                Some(&pv),
                None,
                Some(&Value::Enumerated(0)),
                Some(&Value::Boolean(true))
            ),
            Err(PointFault::OutOfService)
        );
        let unknown = ErrorCode { class: 1, code: 31 };
        assert_eq!(
            judge(Some(&Err(unknown)), None, None, None),
            Err(PointFault::Unknown(unknown))
        );
        assert_eq!(
            judge(
                Some(&Ok(vec![Value::CharacterString("x".into())])),
                None,
                None,
                None
            ),
            Err(PointFault::NotNumeric("CharacterString"))
        );
        // binary: active = 1
        assert_eq!(
            judge(Some(&Ok(vec![Value::Enumerated(1)])), None, None, None),
            Ok(1.0)
        );
    }
}
