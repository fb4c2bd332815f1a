//! Plays a scenario in real time × speed: binds every device, then rewrites each device's
//! register image every [`TICK`] of wall time from the (pure) timelines.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use crate::modbus::{self, ChargeControl, DeviceImage, DeviceStats, ModbusDevice, ModbusError};
use crate::mqtt::{self, MqttError, Publisher};
pub use crate::overrides::{Override, Overrides};
use crate::registers::Table;
use crate::room::{LiveRoom, Role};
use crate::scenario::{Device, MqttDevice, Protocol, Scenario};
use crate::timeline::{DeviceTimeline, Fault, GoneMode, Presence, SegmentKind, Timeline};

/// Wall time between two recomputations of every register.
pub const TICK: Duration = Duration::from_millis(20);
/// Events waiting for a reader. When full, new events are dropped (and counted): playback
/// never waits for a slow reader.
pub const EVENT_QUEUE: usize = 1024;
/// Above this the clock arithmetic stops meaning anything useful.
pub const MAX_SPEED: f64 = 1e6;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("speed must be a number in (0, {MAX_SPEED}], got {0}")]
    InvalidSpeed(f64),
    #[error("device {device}: {source}")]
    Bind {
        device: String,
        #[source]
        source: ModbusError,
    },
    #[error("device {device}: cannot open serial device {path}: {source}")]
    Serial {
        device: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "device {device} publishes over MQTT but no broker was given (--mqtt mqtt://HOST:PORT)"
    )]
    NoBroker { device: String },
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// Options beyond [`PlayOptions`], kept apart so that existing callers of [`play`] and
/// struct literals of `PlayOptions` stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayExtras {
    /// `mqtt://HOST[:PORT]` for the scenario's MQTT devices; required if it has any.
    pub mqtt_broker: Option<String>,
    /// Serve the values of sim time 0 until [`PlayHandle::start`] (so that a client can
    /// connect before anything happens).
    pub start_paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// Sim seconds per wall second.
    pub speed: f64,
    /// Replaces the IP of every device's `listen` address (the port is kept).
    pub host: Option<IpAddr>,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            speed: 1.0,
            host: None,
        }
    }
}

/// What the runner reports, one JSON object per line on the CLI's stdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PlayEvent {
    Listening {
        device: String,
        protocol: &'static str,
        addr: SocketAddr,
        unit: u8,
    },
    /// A Modbus RTU device serves on the serial device `path` (before `ready`).
    Serial {
        device: String,
        path: String,
        unit: u8,
    },
    /// An MQTT device publishes to `topic` on `broker` (one per MQTT device, before `ready`).
    Publishing {
        device: String,
        topic: String,
        broker: String,
    },
    Ready,
    /// A register's timeline segment started at sim time `t_ms`.
    Segment {
        t_ms: u64,
        device: String,
        signal: String,
        what: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<&'static str>,
    },
    /// A device went away or came back at sim time `t_ms`.
    Device {
        t_ms: u64,
        device: String,
        what: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<&'static str>,
    },
    /// A client stopped (`charging: false`) or resumed the battery's charge by writing
    /// `device`'s charge-enable coil, at sim time `t_ms` (closed-loop scenarios).
    Charge {
        t_ms: u64,
        device: String,
        charging: bool,
    },
    /// Sim time reached the scenario's duration; last values are held from now on.
    Finished,
}

/// A device the runner is serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundDevice {
    pub name: String,
    pub protocol: &'static str,
    pub addr: SocketAddr,
    pub unit: u8,
}

#[derive(Debug, Default)]
struct ClockState {
    /// Running since this instant; `None` while paused (or not started yet).
    since: Option<Instant>,
    /// Wall time played before the last pause.
    banked: Duration,
    /// Wall-clock time of the first start.
    started_wall: Option<SystemTime>,
}

#[derive(Debug)]
struct SimClock {
    state: std::sync::Mutex<ClockState>,
    speed: f64,
    duration: Duration,
}

impl SimClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts or resumes the clock.
    fn start(&self) {
        let mut s = self.lock();
        if s.since.is_none() {
            s.since = Some(Instant::now());
            s.started_wall.get_or_insert_with(SystemTime::now);
        }
    }

    /// Stops the clock; sim time holds until the next start.
    fn pause(&self) {
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            s.banked += since.elapsed();
        }
    }

    fn is_paused(&self) -> bool {
        self.lock().since.is_none()
    }

    fn started_wall(&self) -> Option<SystemTime> {
        self.lock().started_wall
    }

    /// Sim time now, capped at the scenario's duration.
    fn now(&self) -> Duration {
        let wall = {
            let s = self.lock();
            s.banked + s.since.map_or(Duration::ZERO, |t| t.elapsed())
        };
        let secs = wall.as_secs_f64() * self.speed;
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .min(self.duration)
    }
}

/// A running scenario. Dropping it stops the servers too; [`PlayHandle::shutdown`] also
/// waits for them.
#[derive(Debug)]
pub struct PlayHandle {
    devices: Vec<BoundDevice>,
    /// The live room of a closed-loop scenario.
    live: Option<Arc<LiveRoom>>,
    modbus: Vec<Arc<ModbusDevice>>,
    events: Option<mpsc::Receiver<PlayEvent>>,
    dropped_events: Arc<AtomicU64>,
    finished: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    clock: Arc<SimClock>,
    control: Control,
    tasks: Vec<JoinHandle<()>>,
}

impl PlayHandle {
    /// A handle to start, pause, set values and inject faults (see [`Control`]).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Starts the clock of a scenario played with `start_paused` (no effect otherwise).
    pub fn start(&self) {
        self.clock.start();
    }

    /// Wall-clock time of sim time 0 (to line an agent's event log up with the scenario);
    /// `None` while paused.
    pub fn started_wall(&self) -> Option<SystemTime> {
        self.clock.started_wall()
    }

    /// Sim seconds per wall second.
    pub fn speed(&self) -> f64 {
        self.clock.speed
    }

    /// Every device with the address it actually listens on, in scenario order.
    pub fn devices(&self) -> &[BoundDevice] {
        &self.devices
    }

    pub fn addr(&self, device: &str) -> Option<SocketAddr> {
        self.devices
            .iter()
            .find(|d| d.name == device)
            .map(|d| d.addr)
    }

    /// The event stream (`listening`..., `ready`, then segments as they start). Can be
    /// taken once.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<PlayEvent>> {
        self.events.take()
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// Current sim time (capped at the scenario's duration).
    pub fn sim_time(&self) -> Duration {
        self.clock.now()
    }

    pub fn is_finished(&self) -> bool {
        *self.finished.borrow()
    }

    /// Waits until sim time reaches the scenario's duration.
    pub async fn finished(&self) {
        let mut rx = self.finished.clone();
        // An error means the clock task ended without finishing: shut down, so return.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether the battery charges now, in a closed-loop scenario (`None`: the scenario
    /// has no charge a client can switch).
    pub fn charging(&self) -> Option<bool> {
        self.live.as_ref().map(|l| l.charging())
    }

    /// The charge commands clients have written that changed the charge, with their sim
    /// time (closed-loop scenarios; empty otherwise).
    pub fn charge_commands(&self) -> Vec<(Duration, bool)> {
        self.live.as_ref().map_or_else(Vec::new, |l| l.commands())
    }

    pub fn stats(&self, device: &str) -> Option<DeviceStats> {
        self.modbus
            .iter()
            .find(|d| d.name() == device)
            .map(|d| d.stats())
    }

    /// Stops the clock and every server, closing their ports and connections.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for PlayHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Clone)]
struct EventSink {
    tx: mpsc::Sender<PlayEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    fn send(&self, event: PlayEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn!(capacity = EVENT_QUEUE, "event queue full; dropping events");
                }
            }
            // Nobody listens: that is the embedder's choice.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("no signal `{signal}` on device `{device}`")]
    UnknownSignal { device: String, signal: String },
    #[error("value must be a finite number")]
    NotFinite,
}

/// Controls a running scenario from outside (tests, the HTTP control API): start, pause,
/// set a value, inject a fault. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    clock: Arc<SimClock>,
    overrides: Arc<Overrides>,
    signals: Arc<Vec<(String, String)>>,
    finished: watch::Receiver<bool>,
}

/// What the control API reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlStatus {
    pub sim_ms: u64,
    pub paused: bool,
    pub speed: f64,
    pub finished: bool,
}

impl Control {
    pub fn start(&self) {
        self.clock.start();
    }

    pub fn pause(&self) {
        self.clock.pause();
    }

    pub fn status(&self) -> ControlStatus {
        ControlStatus {
            sim_ms: millis(self.clock.now()),
            paused: self.clock.is_paused(),
            speed: self.clock.speed,
            finished: *self.finished.borrow(),
        }
    }

    fn check(&self, device: &str, signal: &str) -> Result<(), ControlError> {
        if self.signals.iter().any(|(d, s)| d == device && s == signal) {
            Ok(())
        } else {
            Err(ControlError::UnknownSignal {
                device: device.to_string(),
                signal: signal.to_string(),
            })
        }
    }

    /// Holds `signal` at `value` (engineering units); `None` gives it back to the timeline.
    pub fn set_value(
        &self,
        device: &str,
        signal: &str,
        value: Option<f64>,
    ) -> Result<(), ControlError> {
        self.check(device, signal)?;
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(ControlError::NotFinite);
        }
        self.overrides.update(device, signal, |o| o.value = value);
        Ok(())
    }

    /// Answers reads of `signal` with `fault`; `None` gives it back to the timeline.
    pub fn set_fault(
        &self,
        device: &str,
        signal: &str,
        fault: Option<Fault>,
    ) -> Result<(), ControlError> {
        self.check(device, signal)?;
        self.overrides.update(device, signal, |o| o.fault = fault);
        Ok(())
    }
}

/// Applies one device's timelines to its image.
struct DevicePlayer {
    spec: Device,
    overrides: Arc<Overrides>,
    modbus: Arc<ModbusDevice>,
    /// Per register: segments already reported.
    reported: Vec<usize>,
    events_reported: usize,
    /// The live room of a closed-loop scenario: registers that follow the room read it.
    live: Option<Arc<LiveRoom>>,
    /// A UPS in that room: whether its loss has been reported.
    room_loss_reported: bool,
}

impl DevicePlayer {
    fn new(
        spec: Device,
        modbus: Arc<ModbusDevice>,
        overrides: Arc<Overrides>,
        live: Option<Arc<LiveRoom>>,
    ) -> Self {
        let reported = vec![0; spec.registers.len()];
        if let Some(room) = &live {
            let follows = |r: &crate::scenario::Register| r.room == Some(Role::Charging);
            let commands: Vec<usize> = (0..spec.registers.len())
                .filter(|&i| follows(&spec.registers[i]) && spec.registers[i].table == Table::Coil)
                .collect();
            if !commands.is_empty() {
                modbus.control_charge(ChargeControl {
                    room: Arc::clone(room),
                    commands,
                    shows: (0..spec.registers.len())
                        .filter(|&i| follows(&spec.registers[i]))
                        .collect(),
                });
            }
        }
        DevicePlayer {
            spec,
            overrides,
            modbus,
            reported,
            events_reported: 0,
            live,
            room_loss_reported: false,
        }
    }

    fn apply(&mut self, t: Duration, out: &mut Vec<PlayEvent>) {
        let live = self.live.as_deref();
        let samples: Vec<_> = self
            .spec
            .registers
            .iter()
            .map(|r| {
                let mut s = match (r.room, live) {
                    (Some(role), Some(live)) => r.timeline.sample_with(t, &|x| live.value(role, x)),
                    _ => r.timeline.sample(t),
                };
                let o = self.overrides.get(&self.spec.name, &r.signal);
                s.value = o.value.unwrap_or(s.value);
                s.fault = o.fault.unwrap_or(s.fault);
                (r.words(s.value), s)
            })
            .collect();
        self.modbus.with_image(|img: &mut DeviceImage| {
            for (i, (words, s)) in samples.iter().enumerate() {
                img.update(i, words.as_slice(), s.fault, s.started);
            }
        });
        for (i, reg) in self.spec.registers.iter().enumerate() {
            self.reported[i] = report_segments(
                &self.spec.name,
                &reg.signal,
                &reg.timeline,
                self.reported[i],
                t,
                out,
            );
        }
        self.events_reported = report_presence(
            &self.spec.name,
            &self.spec.events,
            self.events_reported,
            t,
            out,
        );
        let lost = lost_with_the_room(&self.spec, live, t);
        if let Some(at) = lost.filter(|_| !self.room_loss_reported) {
            self.room_loss_reported = true;
            info!(device = %self.spec.name, t_ms = millis(at), "UPS lost with the room");
            out.push(PlayEvent::Device {
                t_ms: millis(at),
                device: self.spec.name.clone(),
                what: "gone",
                mode: Some("silent"),
            });
        }
        let presence = match lost {
            Some(_) => Presence::Gone(GoneMode::Silent),
            None => self.spec.events.presence_at(t),
        };
        self.modbus.set_presence(presence);
    }
}

/// When a UPS in the live room was lost with it, if it has been by `t`.
fn lost_with_the_room(spec: &Device, live: Option<&LiveRoom>, t: Duration) -> Option<Duration> {
    if !spec.room_ups {
        return None;
    }
    live?.ups_lost_at().filter(|at| *at <= t)
}

/// Reports segments of `timeline` started since `reported`; returns the new count.
fn report_segments(
    device: &str,
    signal: &str,
    timeline: &Timeline,
    reported: usize,
    t: Duration,
    out: &mut Vec<PlayEvent>,
) -> usize {
    let started = timeline.started_at(t);
    for seg in &timeline.segments()[reported.min(started)..started] {
        out.push(PlayEvent::Segment {
            t_ms: millis(seg.at),
            device: device.to_string(),
            signal: signal.to_string(),
            what: seg.kind.name(),
            fault: match seg.kind {
                SegmentKind::Fault(f) => Some(f.as_str()),
                _ => None,
            },
        });
    }
    started
}

/// Reports device presence events started since `reported`; returns the new count.
fn report_presence(
    device: &str,
    events: &DeviceTimeline,
    reported: usize,
    t: Duration,
    out: &mut Vec<PlayEvent>,
) -> usize {
    let started = events.started_at(t);
    for ev in &events.events()[reported.min(started)..started] {
        let (what, mode) = match ev.presence {
            Presence::Present => ("back", None),
            Presence::Gone(GoneMode::Silent) => ("gone", Some("silent")),
            Presence::Gone(GoneMode::Refuse) => ("gone", Some("refuse")),
        };
        info!(
            device,
            t_ms = millis(ev.at),
            what,
            mode,
            "device presence changes"
        );
        out.push(PlayEvent::Device {
            t_ms: millis(ev.at),
            device: device.to_string(),
            what,
            mode,
        });
    }
    started
}

/// Publishes one MQTT device's payload on its period.
struct MqttPlayer {
    name: String,
    overrides: Arc<Overrides>,
    spec: MqttDevice,
    events: DeviceTimeline,
    publisher: Publisher,
    next: Duration,
    reported: Vec<usize>,
    events_reported: usize,
    live: Option<Arc<LiveRoom>>,
}

impl MqttPlayer {
    fn apply(&mut self, t: Duration, out: &mut Vec<PlayEvent>) {
        for (i, f) in self.spec.fields.iter().enumerate() {
            self.reported[i] =
                report_segments(&self.name, &f.signal, &f.timeline, self.reported[i], t, out);
        }
        self.events_reported =
            report_presence(&self.name, &self.events, self.events_reported, t, out);
        if t < self.next {
            return;
        }
        // At high speed several periods may pass in one tick: publish once, the latest.
        self.next = mqtt::next_publish(t, self.spec.every);
        if self.events.presence_at(t) != Presence::Present {
            return;
        }
        let over = |signal: &str| self.overrides.get(&self.name, signal);
        if let Some(payload) = mqtt::payload_live(&self.spec, t, &over, self.live.as_deref()) {
            self.publisher.publish(&payload);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Binds every device, sets the values at sim time 0, starts serving and starts the clock.
/// A scenario with MQTT devices needs [`play_with`] and a broker.
pub async fn play(scenario: Scenario, opts: PlayOptions) -> Result<PlayHandle, RunnerError> {
    play_with(scenario, opts, PlayExtras::default()).await
}

/// [`play`] with MQTT devices publishing to `extras.mqtt_broker`.
pub async fn play_with(
    scenario: Scenario,
    opts: PlayOptions,
    extras: PlayExtras,
) -> Result<PlayHandle, RunnerError> {
    if !(opts.speed.is_finite() && opts.speed > 0.0 && opts.speed <= MAX_SPEED) {
        return Err(RunnerError::InvalidSpeed(opts.speed));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (finished_tx, finished_rx) = watch::channel(false);
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let sink = EventSink {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };

    let duration = scenario.duration;
    let clock = Arc::new(SimClock {
        state: std::sync::Mutex::new(ClockState::default()),
        speed: opts.speed,
        duration,
    });
    let live = match (&scenario.room, scenario.is_closed_loop()) {
        (Some(room), true) => {
            let now = Arc::clone(&clock);
            Some(Arc::new(LiveRoom::new(room.clone(), move || now.now())))
        }
        _ => None,
    };
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    let mut players = Vec::new();
    let mut mqtt_players = Vec::new();
    let mut rtu_devices = Vec::new();
    let mut publishing = Vec::new();
    let mut tasks = Vec::new();
    let overrides = Arc::new(Overrides::default());
    let signals: Vec<(String, String)> = scenario
        .devices
        .iter()
        .flat_map(|d| {
            let regs = d.registers.iter().map(|r| r.signal.clone());
            let fields = d
                .mqtt
                .iter()
                .flat_map(|m| m.fields.iter().map(|f| f.signal.clone()));
            regs.chain(fields).map(|s| (d.name.clone(), s))
        })
        .collect();
    let mqtt_devices: Vec<&Device> = scenario
        .devices
        .iter()
        .filter(|d| d.protocol == Protocol::Mqtt)
        .collect();
    let broker = match (&extras.mqtt_broker, mqtt_devices.first()) {
        (_, None) => None,
        (Some(url), Some(_)) => Some((url.clone(), mqtt::parse_broker(url)?)),
        (None, Some(d)) => {
            return Err(RunnerError::NoBroker {
                device: d.name.clone(),
            })
        }
    };
    for mut device in scenario.devices {
        if let (Some(spec), Some((url, (host, port)))) = (device.mqtt.take(), &broker) {
            let (publisher, task) =
                Publisher::start(&device.name, &spec.topic, host, *port, shutdown_rx.clone());
            tasks.push(task);
            publishing.push(PlayEvent::Publishing {
                device: device.name.clone(),
                topic: spec.topic.clone(),
                broker: url.clone(),
            });
            mqtt_players.push(MqttPlayer {
                overrides: Arc::clone(&overrides),
                name: device.name,
                reported: vec![0; spec.fields.len()],
                spec,
                events: device.events,
                publisher,
                next: Duration::ZERO,
                events_reported: 0,
                live: live.clone(),
            });
            continue;
        }
        if let Some((path, baud)) = device.serial.clone() {
            let server = tokio_modbus::server::rtu::Server::new_from_path(&path, baud).map_err(
                |source| RunnerError::Serial {
                    device: device.name.clone(),
                    path: path.clone(),
                    source,
                },
            )?;
            let image = DeviceImage::new(
                device
                    .registers
                    .iter()
                    .map(|r| (r.table, r.address, r.encoding.width())),
            );
            let modbus = ModbusDevice::new_on_bus(device.name.clone(), device.unit, image);
            let service = modbus::DeviceService(Arc::clone(&modbus));
            let mut stop = shutdown_rx.clone();
            let name = device.name.clone();
            tasks.push(tokio::spawn(async move {
                let abort = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = server.serve_until(service, abort).await {
                    warn!(device = %name, error = %e, "serial line closed");
                }
            }));
            publishing.push(PlayEvent::Serial {
                device: device.name.clone(),
                path: path.display().to_string(),
                unit: device.unit,
            });
            rtu_devices.push(Arc::clone(&modbus));
            players.push(DevicePlayer::new(
                device,
                modbus,
                Arc::clone(&overrides),
                live.clone(),
            ));
            continue;
        }
        let mut addr = device.listen;
        if let Some(host) = opts.host {
            addr.set_ip(host);
        }
        let (listener, local) = modbus::bind(addr)
            .await
            .map_err(|source| RunnerError::Bind {
                device: device.name.clone(),
                source,
            })?;
        let image = DeviceImage::new(
            device
                .registers
                .iter()
                .map(|r| (r.table, r.address, r.encoding.width())),
        );
        let modbus = ModbusDevice::new(device.name.clone(), device.unit, image);
        bound.push(BoundDevice {
            name: device.name.clone(),
            protocol: device.protocol.as_str(),
            addr: local,
            unit: device.unit,
        });
        listeners.push((listener, Arc::clone(&modbus)));
        players.push(DevicePlayer::new(
            device,
            modbus,
            Arc::clone(&overrides),
            live.clone(),
        ));
    }

    // Values for sim time 0 are in place before the first client can be served.
    let mut initial = Vec::new();
    for p in &mut players {
        p.apply(Duration::ZERO, &mut initial);
    }
    for p in &mut mqtt_players {
        p.apply(Duration::ZERO, &mut initial);
    }
    let mut modbus_devices: Vec<_> = listeners.iter().map(|(_, d)| Arc::clone(d)).collect();
    modbus_devices.extend(rtu_devices);
    for (listener, device) in listeners {
        tasks.push(tokio::spawn(modbus::serve(
            listener,
            device,
            shutdown_rx.clone(),
        )));
    }
    for d in &bound {
        info!(device = %d.name, addr = %d.addr, unit = d.unit, "listening");
        sink.send(PlayEvent::Listening {
            device: d.name.clone(),
            protocol: d.protocol,
            addr: d.addr,
            unit: d.unit,
        });
    }
    for e in publishing {
        sink.send(e);
    }
    sink.send(PlayEvent::Ready);
    for e in initial {
        sink.send(e);
    }

    if !extras.start_paused {
        clock.start();
    }
    let dropped_events = Arc::clone(&sink.dropped);
    tasks.push(tokio::spawn(run_clock(
        players,
        mqtt_players,
        Arc::clone(&clock),
        live.clone(),
        sink,
        finished_tx,
        shutdown_rx,
    )));

    Ok(PlayHandle {
        devices: bound,
        live,
        modbus: modbus_devices,
        events: Some(rx),
        dropped_events,
        finished: finished_rx.clone(),
        shutdown: shutdown_tx,
        control: Control {
            clock: Arc::clone(&clock),
            overrides,
            signals: Arc::new(signals),
            finished: finished_rx.clone(),
        },
        clock,
        tasks,
    })
}

async fn run_clock(
    mut players: Vec<DevicePlayer>,
    mut mqtt_players: Vec<MqttPlayer>,
    clock: Arc<SimClock>,
    live: Option<Arc<LiveRoom>>,
    sink: EventSink,
    finished: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut out = Vec::new();
    let mut commands_reported = 0;
    // The devices whose coils command the charge, for the `charge` events.
    let charge_devices: Vec<String> = players
        .iter()
        .filter(|p| {
            p.spec
                .registers
                .iter()
                .any(|r| r.table == Table::Coil && r.room == Some(Role::Charging))
        })
        .map(|p| p.spec.name.clone())
        .collect();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let t = clock.now();
        if let Some(live) = &live {
            let commands = live.commands();
            for (at, on) in &commands[commands_reported.min(commands.len())..] {
                out.push(PlayEvent::Charge {
                    t_ms: millis(*at),
                    device: charge_devices.join(","),
                    charging: *on,
                });
            }
            commands_reported = commands.len();
        }
        for p in &mut players {
            p.apply(t, &mut out);
        }
        for p in &mut mqtt_players {
            p.apply(t, &mut out);
        }
        for e in out.drain(..) {
            sink.send(e);
        }
        if t >= clock.duration {
            info!(
                t_ms = millis(t),
                "scenario finished; holding the last values"
            );
            sink.send(PlayEvent::Finished);
            finished.send_replace(true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_documented_json_lines() {
        let listening = PlayEvent::Listening {
            device: "env-b3".into(),
            protocol: "modbus-tcp",
            addr: "127.0.0.1:40123".parse().unwrap(),
            unit: 1,
        };
        assert_eq!(
            serde_json::to_string(&listening).unwrap(),
            r#"{"event":"listening","device":"env-b3","protocol":"modbus-tcp","addr":"127.0.0.1:40123","unit":1}"#
        );
        assert_eq!(
            serde_json::to_string(&PlayEvent::Ready).unwrap(),
            r#"{"event":"ready"}"#
        );
        let segment = PlayEvent::Segment {
            t_ms: 10000,
            device: "env-b3".into(),
            signal: "temp.row1".into(),
            what: "ramp",
            fault: None,
        };
        assert_eq!(
            serde_json::to_string(&segment).unwrap(),
            r#"{"event":"segment","t_ms":10000,"device":"env-b3","signal":"temp.row1","what":"ramp"}"#
        );
        let fault = PlayEvent::Segment {
            t_ms: 45000,
            device: "env-b3".into(),
            signal: "temp.row1".into(),
            what: "fault",
            fault: Some("exception"),
        };
        assert_eq!(
            serde_json::to_string(&fault).unwrap(),
            r#"{"event":"segment","t_ms":45000,"device":"env-b3","signal":"temp.row1","what":"fault","fault":"exception"}"#
        );
        let gone = PlayEvent::Device {
            t_ms: 20000,
            device: "ups-b3-1".into(),
            what: "gone",
            mode: Some("silent"),
        };
        assert_eq!(
            serde_json::to_string(&gone).unwrap(),
            r#"{"event":"device","t_ms":20000,"device":"ups-b3-1","what":"gone","mode":"silent"}"#
        );
        let charge = PlayEvent::Charge {
            t_ms: 181200,
            device: "bms-b3".into(),
            charging: false,
        };
        assert_eq!(
            serde_json::to_string(&charge).unwrap(),
            r#"{"event":"charge","t_ms":181200,"device":"bms-b3","charging":false}"#
        );
        assert_eq!(
            serde_json::to_string(&PlayEvent::Finished).unwrap(),
            r#"{"event":"finished"}"#
        );
    }

    #[tokio::test]
    async fn speed_must_be_positive_and_finite() {
        let scenario = Scenario::from_toml_str(
            r#"
[scenario]
name = "x"
duration = "1s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0s", set = 1 }]
"#,
        )
        .unwrap();
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let opts = PlayOptions { speed, host: None };
            assert!(matches!(
                play(scenario.clone(), opts).await,
                Err(RunnerError::InvalidSpeed(_))
            ));
        }
    }
}
