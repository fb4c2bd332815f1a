//! Modbus TCP server for one simulated device: a tokio-modbus [`Service`] reading a shared
//! register image that the runner rewrites every tick.
//!
//! Answers, in order of precedence:
//! - device gone (silent): no answer at all; the client times out.
//! - unit id other than the device's: exception 0x0B (gateway target device failed to
//!   respond), the answer a Modbus TCP gateway gives for a unit that is not there.
//! - function other than 1, 2, 3, 4, 5, 6, 15, 16: exception 0x01 (illegal function).
//! - quantity 0 or above the protocol maximum (125 registers or 2000 bits read, 123
//!   registers or 1968 coils written): exception 0x03.
//! - no requested address mapped: exception 0x02 (illegal data address); partly mapped:
//!   zeros for the unmapped words.
//! - any requested register in an `exception`/`busy` fault: exception 0x04 / 0x06 for the
//!   whole request.
//! - writes (6, 16) to holding registers and (5, 15) to coils: accepted only if every
//!   written address is mapped in that table (else 0x02); the written words or bits
//!   override the timeline's until that register's next segment boundary.
//! - a write to a coil that follows the room's `charging` (a BMS's charge-enable coil)
//!   stops or resumes the charge of the live room at once: the device's `charging` state
//!   registers show it in the same instant, the room's physics from then on.

use std::future::{ready, Future, Ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::{debug, info, trace, warn};

use crate::registers::Table;
use crate::room::LiveRoom;
use crate::timeline::{Fault, GoneMode, Presence};

/// Protocol limits on one request (Modbus application protocol v1.1b3, 6.3 / 6.12).
const MAX_READ: u16 = 125;
const MAX_READ_BITS: u16 = 2000;
const MAX_WRITE: u16 = 123;
const MAX_WRITE_BITS: u16 = 1968;
/// How long to wait between attempts to take a port back after a `refuse` outage.
const REBIND_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// One mapped register: `width` words from `address`, fed by signal `signal`.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    address: u16,
    width: u16,
    signal: usize,
}

impl Mapped {
    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.width)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SignalState {
    words: [u16; 2],
    overrides: [Option<u16>; 2],
    fault: Fault,
    started: usize,
}

impl SignalState {
    fn word(&self, k: usize) -> u16 {
        match self.fault {
            Fault::AllOnes => 0xFFFF,
            Fault::Zeros => 0,
            _ => self.overrides[k].unwrap_or(self.words[k]),
        }
    }

    fn refusal(&self) -> Option<ExceptionCode> {
        match self.fault {
            Fault::Exception => Some(ExceptionCode::ServerDeviceFailure),
            Fault::Busy => Some(ExceptionCode::ServerDeviceBusy),
            Fault::None | Fault::AllOnes | Fault::Zeros | Fault::Timeout => None,
        }
    }
}

/// The registers one device serves. Pure data: no I/O, no clock.
#[derive(Debug, Clone, Default)]
pub struct DeviceImage {
    holding: Vec<Mapped>,
    input: Vec<Mapped>,
    coil: Vec<Mapped>,
    discrete: Vec<Mapped>,
    signals: Vec<SignalState>,
}

impl DeviceImage {
    /// One entry per signal, in signal order: (table, address, width in registers).
    /// Layouts must not overlap (the scenario validation guarantees it).
    pub fn new(layout: impl IntoIterator<Item = (Table, u16, u16)>) -> Self {
        let mut image = DeviceImage::default();
        for (signal, (table, address, width)) in layout.into_iter().enumerate() {
            let mapped = Mapped {
                address,
                width,
                signal,
            };
            match table {
                Table::Holding => image.holding.push(mapped),
                Table::Input => image.input.push(mapped),
                Table::Coil => image.coil.push(mapped),
                Table::Discrete => image.discrete.push(mapped),
            }
            image.signals.push(SignalState::default());
        }
        image.holding.sort_by_key(|m| m.address);
        image.input.sort_by_key(|m| m.address);
        image.coil.sort_by_key(|m| m.address);
        image.discrete.sort_by_key(|m| m.address);
        image
    }

    /// Sets a signal's words and fault. A change of `started` is a segment boundary and
    /// clears words written by clients.
    pub fn update(&mut self, signal: usize, words: &[u16], fault: Fault, started: usize) {
        let Some(state) = self.signals.get_mut(signal) else {
            return;
        };
        for (slot, w) in state.words.iter_mut().zip(words) {
            *slot = *w;
        }
        state.fault = fault;
        if state.started != started {
            state.started = started;
            state.overrides = [None; 2];
        }
    }

    fn table(&self, table: Table) -> &[Mapped] {
        match table {
            Table::Holding => &self.holding,
            Table::Input => &self.input,
            Table::Coil => &self.coil,
            Table::Discrete => &self.discrete,
        }
    }

    /// Mapped registers overlapping `[start, end)`.
    fn overlapping(&self, table: Table, start: u32, end: u32) -> &[Mapped] {
        let map = self.table(table);
        let first = map.partition_point(|m| m.end() <= start);
        let count = map[first..]
            .iter()
            .take_while(|m| u32::from(m.address) < end)
            .count();
        &map[first..first + count]
    }

    /// Whether a read of `quantity` from `address` covers a register that answers nothing.
    pub fn is_silent(&self, table: Table, address: u16, quantity: u16) -> bool {
        let start = u32::from(address);
        let end = start + u32::from(quantity);
        self.overlapping(table, start, end)
            .iter()
            .any(|m| self.signals[m.signal].fault == Fault::Timeout)
    }

    pub fn read(
        &self,
        table: Table,
        address: u16,
        quantity: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        let max = if table.is_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ
        };
        if quantity == 0 || quantity > max {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let start = u32::from(address);
        let end = start + u32::from(quantity);
        if end > 0x1_0000 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let hits = self.overlapping(table, start, end);
        if hits.is_empty() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut out = vec![0u16; usize::from(quantity)];
        for m in hits {
            let state = &self.signals[m.signal];
            if let Some(code) = state.refusal() {
                return Err(code);
            }
            for k in 0..m.width {
                let a = u32::from(m.address) + u32::from(k);
                if (start..end).contains(&a) {
                    out[(a - start) as usize] = state.word(usize::from(k));
                }
            }
        }
        Ok(out)
    }

    pub fn write(&mut self, address: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let quantity = u16::try_from(words.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        if quantity == 0 || quantity > MAX_WRITE {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let start = u32::from(address);
        let end = start + u32::from(quantity);
        if end > 0x1_0000 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let hits = self.overlapping(Table::Holding, start, end).to_vec();
        // Every written address must be mapped: walk the hits and look for gaps.
        let mut cursor = start;
        for m in &hits {
            if u32::from(m.address) > cursor {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            cursor = m.end();
            if let Some(code) = self.signals[m.signal].refusal() {
                return Err(code);
            }
        }
        if cursor < end {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        for m in &hits {
            let state = &mut self.signals[m.signal];
            for k in 0..m.width {
                let a = u32::from(m.address) + u32::from(k);
                if (start..end).contains(&a) {
                    state.overrides[usize::from(k)] = Some(words[(a - start) as usize]);
                }
            }
        }
        Ok(())
    }
}

impl DeviceImage {
    /// Writes coils from `address`: every address must be a mapped coil (else 0x02), none
    /// in an `exception`/`busy` fault. The bits override the timeline's until each coil's
    /// next segment boundary. Returns the signals written with their bits.
    pub fn write_bits(
        &mut self,
        address: u16,
        bits: &[bool],
    ) -> Result<Vec<(usize, bool)>, ExceptionCode> {
        let quantity = u16::try_from(bits.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        if quantity == 0 || quantity > MAX_WRITE_BITS {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let start = u32::from(address);
        if start + u32::from(quantity) > 0x1_0000 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut written = Vec::with_capacity(bits.len());
        for (k, bit) in bits.iter().enumerate() {
            let a = start + k as u32;
            let Some(m) = self.overlapping(Table::Coil, a, a + 1).first() else {
                return Err(ExceptionCode::IllegalDataAddress);
            };
            if let Some(code) = self.signals[m.signal].refusal() {
                return Err(code);
            }
            written.push((m.signal, *bit));
        }
        for (signal, bit) in &written {
            self.signals[*signal].overrides[0] = Some(u16::from(*bit));
        }
        Ok(written)
    }

    /// Serves `word` for `signal` now, until the runner's next update.
    pub fn show(&mut self, signal: usize, word: u16) {
        if let Some(state) = self.signals.get_mut(signal) {
            state.words[0] = word;
            if state.overrides[0].is_some() {
                state.overrides[0] = Some(word);
            }
        }
    }
}

/// A device's part in the live room of a closed-loop scenario: the coils that command the
/// charge and the signals that show it (the coils included), by signal index.
#[derive(Debug)]
pub struct ChargeControl {
    pub room: Arc<LiveRoom>,
    pub commands: Vec<usize>,
    pub shows: Vec<usize>,
}

/// Counters a device keeps about its clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub connections: u64,
    pub requests: u64,
    pub exceptions: u64,
    /// Requests left unanswered because the device was gone.
    pub unanswered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    exceptions: AtomicU64,
    unanswered: AtomicU64,
}

/// Whether the device answers, and a counter bumped each time it goes away: a connection
/// accepted under one epoch is dropped when the epoch changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    presence: Presence,
    epoch: u64,
}

/// One simulated Modbus device, shared by its server, its connections and the runner.
#[derive(Debug)]
pub struct ModbusDevice {
    name: String,
    unit: u8,
    image: RwLock<DeviceImage>,
    link: watch::Sender<Link>,
    counters: Counters,
    /// On a serial bus a request for another unit is not for us: say nothing.
    on_bus: bool,
    /// Set in a closed-loop scenario when the device has a charge-enable coil.
    charge: std::sync::OnceLock<ChargeControl>,
}

impl ModbusDevice {
    /// A device on a Modbus RTU line: requests for other unit ids get no answer.
    pub fn new_on_bus(name: impl Into<String>, unit: u8, image: DeviceImage) -> Arc<Self> {
        Arc::new(ModbusDevice {
            name: name.into(),
            unit,
            image: RwLock::new(image),
            link: watch::Sender::new(Link::default()),
            counters: Counters::default(),
            on_bus: true,
            charge: std::sync::OnceLock::new(),
        })
    }

    pub fn new(name: impl Into<String>, unit: u8, image: DeviceImage) -> Arc<Self> {
        Arc::new(ModbusDevice {
            name: name.into(),
            unit,
            image: RwLock::new(image),
            link: watch::Sender::new(Link::default()),
            counters: Counters::default(),
            on_bus: false,
            charge: std::sync::OnceLock::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects the device's charge-enable coils to the live room (once).
    pub fn control_charge(&self, charge: ChargeControl) {
        let _ = self.charge.set(charge);
    }

    fn write_coils(&self, address: u16, bits: &[bool]) -> Result<(), ExceptionCode> {
        self.with_image(|img| {
            let written = img.write_bits(address, bits)?;
            let Some(charge) = self.charge.get() else {
                return Ok(());
            };
            for (_, on) in written.iter().filter(|(s, _)| charge.commands.contains(s)) {
                if let Some(at) = charge.room.command(*on) {
                    info!(device = %self.name, charging = *on, t_ms = at.as_millis() as u64, "a client switched the charge");
                }
                for signal in &charge.shows {
                    img.show(*signal, u16::from(*on));
                }
            }
            Ok(())
        })
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    /// Runs `f` on the image under the write lock (keep it short: readers wait).
    pub fn with_image<R>(&self, f: impl FnOnce(&mut DeviceImage) -> R) -> R {
        f(&mut self.image.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn presence(&self) -> Presence {
        self.link.borrow().presence
    }

    /// Going away drops every open connection; coming back leaves open ones alone.
    pub fn set_presence(&self, presence: Presence) {
        self.link.send_if_modified(|link| {
            if link.presence == presence {
                return false;
            }
            if matches!(presence, Presence::Gone(_)) {
                link.epoch += 1;
            }
            link.presence = presence;
            true
        });
    }

    pub fn stats(&self) -> DeviceStats {
        DeviceStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            exceptions: self.counters.exceptions.load(Ordering::Relaxed),
            unanswered: self.counters.unanswered.load(Ordering::Relaxed),
        }
    }

    /// Answers one request; `Ok(None)` means "say nothing".
    pub fn handle(&self, req: &SlaveRequest<'_>) -> Result<Option<Response>, ExceptionCode> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if matches!(self.presence(), Presence::Gone(_)) {
            self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
            trace!(device = %self.name, "request ignored: device gone");
            return Ok(None);
        }
        if self.on_bus && req.slave != self.unit {
            trace!(device = %self.name, unit = req.slave, "request for another unit on the bus");
            return Ok(None);
        }
        if self.read_is_silent(req) {
            self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
            trace!(device = %self.name, "request ignored: register dropout");
            return Ok(None);
        }
        let result = self.answer(req);
        if let Err(code) = &result {
            self.counters.exceptions.fetch_add(1, Ordering::Relaxed);
            trace!(device = %self.name, request = ?req.request, exception = %code, "exception");
        }
        result.map(Some)
    }

    fn read_is_silent(&self, req: &SlaveRequest<'_>) -> bool {
        let (table, address, quantity) = match &req.request {
            Request::ReadHoldingRegisters(a, q) => (Table::Holding, *a, *q),
            Request::ReadInputRegisters(a, q) => (Table::Input, *a, *q),
            Request::ReadCoils(a, q) => (Table::Coil, *a, *q),
            Request::ReadDiscreteInputs(a, q) => (Table::Discrete, *a, *q),
            _ => return false,
        };
        req.slave == self.unit
            && self
                .image
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_silent(table, address, quantity)
    }

    fn answer(&self, req: &SlaveRequest<'_>) -> Result<Response, ExceptionCode> {
        if req.slave != self.unit {
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        match &req.request {
            Request::ReadHoldingRegisters(address, quantity) => self
                .image
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .read(Table::Holding, *address, *quantity)
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(address, quantity) => self
                .image
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .read(Table::Input, *address, *quantity)
                .map(Response::ReadInputRegisters),
            // A bit is on while its word is not 0 (a fault that serves all ones sets it).
            Request::ReadCoils(address, quantity) => self
                .image
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .read(Table::Coil, *address, *quantity)
                .map(|w| Response::ReadCoils(w.into_iter().map(|x| x != 0).collect())),
            Request::ReadDiscreteInputs(address, quantity) => self
                .image
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .read(Table::Discrete, *address, *quantity)
                .map(|w| Response::ReadDiscreteInputs(w.into_iter().map(|x| x != 0).collect())),
            Request::WriteSingleRegister(address, word) => {
                self.with_image(|img| img.write(*address, &[*word]))?;
                Ok(Response::WriteSingleRegister(*address, *word))
            }
            Request::WriteMultipleRegisters(address, words) => {
                self.with_image(|img| img.write(*address, words))?;
                // write() rejected anything longer than MAX_WRITE, so this fits.
                let quantity = u16::try_from(words.len()).unwrap_or(MAX_WRITE);
                Ok(Response::WriteMultipleRegisters(*address, quantity))
            }
            Request::WriteSingleCoil(address, bit) => {
                self.write_coils(*address, &[*bit])?;
                Ok(Response::WriteSingleCoil(*address, *bit))
            }
            Request::WriteMultipleCoils(address, bits) => {
                self.write_coils(*address, bits)?;
                // write_bits() rejected anything longer than MAX_WRITE_BITS.
                let quantity = u16::try_from(bits.len()).unwrap_or(MAX_WRITE_BITS);
                Ok(Response::WriteMultipleCoils(*address, quantity))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// The per-connection tokio-modbus service.
#[derive(Debug, Clone)]
pub struct DeviceService(pub Arc<ModbusDevice>);

impl tokio_modbus::server::Service for DeviceService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        ready(self.0.handle(&req))
    }
}

/// A TCP stream that reads as closed once its device goes away.
///
/// Design: tokio-modbus owns the per-connection loop, so the only way to end a connection
/// from outside is through its transport; a read that returns end-of-file makes the loop
/// finish and drop the socket.
struct LinkStream {
    inner: TcpStream,
    gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl LinkStream {
    fn new(inner: TcpStream, mut link: watch::Receiver<Link>) -> Self {
        let epoch = link.borrow_and_update().epoch;
        let gone = Box::pin(async move {
            // An error means the device was dropped: close as well.
            let _ = link.wait_for(|l| l.epoch != epoch).await;
        });
        LinkStream {
            inner,
            gone: Some(gone),
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.gone.as_mut().map(|g| g.as_mut().poll(cx)) {
            Some(Poll::Pending) => Pin::new(&mut this.inner).poll_read(cx, buf),
            // Gone: end of file, now and on every later read.
            Some(Poll::Ready(())) | None => {
                this.gone = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ModbusError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ModbusError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ModbusError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves `device` on `listener` until `shutdown` turns true. While the device is gone in
/// `refuse` mode the port is closed, then bound again on the same address.
pub async fn serve(
    listener: TcpListener,
    device: Arc<ModbusDevice>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            warn!(device = %device.name, error = %e, "listener has no address; not serving");
            return;
        }
    };
    let mut link = device.link.subscribe();
    let mut listener = Some(listener);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => match rebind(addr, &device.name, &mut shutdown).await {
                Some(l) => l,
                None => return,
            },
        };
        let server = Server::new(current);
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let device = Arc::clone(&device);
            async move {
                device.counters.connections.fetch_add(1, Ordering::Relaxed);
                debug!(device = %device.name, %peer, "connection accepted");
                let transport = LinkStream::new(stream, device.link.subscribe());
                Ok::<_, io::Error>(Some((DeviceService(device), transport)))
            }
        };
        let name = device.name.clone();
        let on_process_error = move |e: io::Error| {
            debug!(device = %name, error = %e, "connection ended with an error");
        };
        tokio::select! {
            res = server.serve(&on_connected, on_process_error) => {
                if let Err(e) = res {
                    warn!(device = %device.name, error = %e, "accept failed; listening again");
                }
            }
            res = link.wait_for(|l| l.presence == Presence::Gone(GoneMode::Refuse)) => {
                if res.is_err() {
                    return;
                }
                info!(device = %device.name, %addr, "port closed: device gone (refuse)");
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // Dropping the server closes the port and cancels its connections.
        drop(server);
        tokio::select! {
            res = link.wait_for(|l| l.presence != Presence::Gone(GoneMode::Refuse)) => {
                if res.is_err() {
                    return;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn rebind(
    addr: SocketAddr,
    name: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TcpListener> {
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                info!(device = %name, %addr, "port open again");
                return Some(l);
            }
            Err(e) => {
                if !warned {
                    warn!(device = %name, %addr, error = %e, "cannot take the port back yet; retrying");
                    warned = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REBIND_RETRY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> DeviceImage {
        // signal 0: input 0 (1 word); signal 1: input 1 (1 word);
        // signal 2: holding 10 (1 word); signal 3: holding 0-1 (2 words)
        let mut img = DeviceImage::new([
            (Table::Input, 0, 1),
            (Table::Input, 1, 1),
            (Table::Holding, 10, 1),
            (Table::Holding, 0, 2),
        ]);
        img.update(0, &[230], Fault::None, 1);
        img.update(1, &[231], Fault::None, 1);
        img.update(2, &[60], Fault::None, 1);
        img.update(3, &[0, 2], Fault::None, 1);
        img
    }

    #[test]
    fn reads_return_the_mapped_words() {
        let img = image();
        assert_eq!(img.read(Table::Input, 0, 2), Ok(vec![230, 231]));
        assert_eq!(img.read(Table::Holding, 0, 2), Ok(vec![0, 2]));
        assert_eq!(img.read(Table::Holding, 1, 1), Ok(vec![2]));
    }

    #[test]
    fn partly_mapped_reads_fill_zeros_and_unmapped_reads_are_illegal_addresses() {
        let img = image();
        assert_eq!(img.read(Table::Holding, 8, 4), Ok(vec![0, 0, 60, 0]));
        assert_eq!(
            img.read(Table::Holding, 2, 8),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            img.read(Table::Input, 65535, 1),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            img.read(Table::Input, 65535, 2),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            img.read(Table::Input, 0, 0),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            img.read(Table::Input, 0, 126),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn faults_refuse_reads_covering_the_register_or_replace_its_words() {
        let mut img = image();
        img.update(1, &[231], Fault::Exception, 2);
        assert_eq!(img.read(Table::Input, 0, 1), Ok(vec![230]));
        assert_eq!(
            img.read(Table::Input, 0, 2),
            Err(ExceptionCode::ServerDeviceFailure)
        );
        img.update(1, &[231], Fault::Busy, 3);
        assert_eq!(
            img.read(Table::Input, 1, 1),
            Err(ExceptionCode::ServerDeviceBusy)
        );
        img.update(1, &[231], Fault::AllOnes, 4);
        assert_eq!(img.read(Table::Input, 0, 2), Ok(vec![230, 0xFFFF]));
        img.update(3, &[0, 2], Fault::Zeros, 2);
        assert_eq!(img.read(Table::Holding, 0, 2), Ok(vec![0, 0]));
    }

    #[test]
    fn writes_override_until_the_next_segment_boundary() {
        let mut img = image();
        assert_eq!(img.write(10, &[99]), Ok(()));
        img.update(2, &[61], Fault::None, 1);
        assert_eq!(img.read(Table::Holding, 10, 1), Ok(vec![99]));
        img.update(2, &[62], Fault::None, 2);
        assert_eq!(img.read(Table::Holding, 10, 1), Ok(vec![62]));
        // one word of a 32-bit register
        assert_eq!(img.write(1, &[4]), Ok(()));
        assert_eq!(img.read(Table::Holding, 0, 2), Ok(vec![0, 4]));
    }

    #[test]
    fn writes_to_unmapped_or_faulted_registers_are_rejected_whole() {
        let mut img = image();
        assert_eq!(
            img.write(9, &[1, 2]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            img.write(0, &[1, 2, 3]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            img.read(Table::Holding, 0, 2),
            Ok(vec![0, 2]),
            "nothing written"
        );
        img.update(2, &[60], Fault::Exception, 2);
        assert_eq!(img.write(10, &[1]), Err(ExceptionCode::ServerDeviceFailure));
        assert_eq!(img.write(10, &[]), Err(ExceptionCode::IllegalDataValue));
    }

    #[test]
    fn other_units_get_gateway_target_exception_and_gone_devices_say_nothing() {
        let device = ModbusDevice::new("env", 1, image());
        let req = |slave| SlaveRequest {
            slave,
            request: Request::ReadInputRegisters(0, 1),
        };
        assert_eq!(
            device.handle(&req(1)),
            Ok(Some(Response::ReadInputRegisters(vec![230])))
        );
        assert_eq!(
            device.handle(&req(2)),
            Err(ExceptionCode::GatewayTargetDevice)
        );
        let unsupported = SlaveRequest {
            slave: 1,
            request: Request::MaskWriteRegister(10, 0xFF, 0),
        };
        assert_eq!(
            device.handle(&unsupported),
            Err(ExceptionCode::IllegalFunction)
        );
        device.set_presence(Presence::Gone(GoneMode::Silent));
        assert_eq!(device.handle(&req(1)), Ok(None));
        assert_eq!(
            device.stats(),
            DeviceStats {
                connections: 0,
                requests: 4,
                exceptions: 2,
                unanswered: 1
            }
        );
    }

    #[test]
    fn coils_and_discrete_inputs_serve_one_while_the_signal_is_not_zero() {
        let mut img = DeviceImage::new([
            (Table::Discrete, 3, 1),
            (Table::Coil, 3, 1),
            (Table::Discrete, 4, 1),
        ]);
        img.update(0, &[1], Fault::None, 0);
        img.update(1, &[0], Fault::None, 0);
        img.update(2, &[0], Fault::AllOnes, 0);
        let device = ModbusDevice::new("ups", 1, img);
        let read = |request| device.handle(&SlaveRequest { slave: 1, request });
        assert_eq!(
            read(Request::ReadDiscreteInputs(2, 3)),
            Ok(Some(Response::ReadDiscreteInputs(vec![false, true, true])))
        );
        assert_eq!(
            read(Request::ReadCoils(3, 1)),
            Ok(Some(Response::ReadCoils(vec![false])))
        );
        assert_eq!(
            read(Request::ReadCoils(0, 2001)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            read(Request::ReadCoils(0, 2000))
                .map(|r| matches!(r, Some(Response::ReadCoils(ref b)) if b.len() == 2000)),
            Ok(true)
        );
        assert_eq!(
            read(Request::ReadCoils(100, 1)),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }

    #[test]
    fn coil_writes_override_until_the_next_boundary_and_unmapped_coils_are_refused() {
        let mut img = DeviceImage::new([(Table::Coil, 12, 1), (Table::Discrete, 12, 1)]);
        img.update(0, &[1], Fault::None, 1);
        img.update(1, &[1], Fault::None, 1);
        let device = ModbusDevice::new("bms", 1, img);
        let call = |request| device.handle(&SlaveRequest { slave: 1, request });
        assert_eq!(
            call(Request::WriteSingleCoil(12, false)),
            Ok(Some(Response::WriteSingleCoil(12, false)))
        );
        assert_eq!(
            call(Request::ReadCoils(12, 1)),
            Ok(Some(Response::ReadCoils(vec![false])))
        );
        // No live room: the state input does not follow.
        assert_eq!(
            call(Request::ReadDiscreteInputs(12, 1)),
            Ok(Some(Response::ReadDiscreteInputs(vec![true])))
        );
        assert_eq!(
            call(Request::WriteMultipleCoils(12, vec![true, true].into())),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            call(Request::WriteSingleCoil(11, true)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        device.with_image(|img| img.update(0, &[1], Fault::None, 2));
        assert_eq!(
            call(Request::ReadCoils(12, 1)),
            Ok(Some(Response::ReadCoils(vec![true])))
        );
    }

    #[test]
    fn a_charge_coil_switches_the_live_room_and_its_state_shows_it_at_once() {
        let room = crate::room::Room {
            ambient: 23.0,
            battery_heat: 1.0,
            hvac_fails_at: None,
            hvac_drift: 0.3,
            offgas_at: Some(Duration::from_secs(60)),
            offgas_rate: 10.0,
            venting_at: None,
            runaway_at: Some(Duration::from_secs(420)),
            charging_stops_at: None,
            runaway_air_rise: 13.0,
            ups_in_room: vec![],
            ups_lost_after: Duration::from_secs(180),
        };
        let live = Arc::new(LiveRoom::new(room, || Duration::from_secs(200)));
        let mut img = DeviceImage::new([(Table::Coil, 12, 1), (Table::Discrete, 12, 1)]);
        img.update(0, &[1], Fault::None, 1);
        img.update(1, &[1], Fault::None, 1);
        let device = ModbusDevice::new("bms", 1, img);
        device.control_charge(ChargeControl {
            room: Arc::clone(&live),
            commands: vec![0],
            shows: vec![0, 1],
        });
        let call = |request| device.handle(&SlaveRequest { slave: 1, request });
        assert_eq!(
            call(Request::WriteSingleCoil(12, false)),
            Ok(Some(Response::WriteSingleCoil(12, false)))
        );
        assert_eq!(
            call(Request::ReadDiscreteInputs(12, 1)),
            Ok(Some(Response::ReadDiscreteInputs(vec![false])))
        );
        assert!(!live.charging());
        assert_eq!(live.commands(), [(Duration::from_secs(200), false)]);
        assert_eq!(live.ups_lost_at(), None);
        // Written again: nothing more happens.
        call(Request::WriteSingleCoil(12, false)).unwrap();
        assert_eq!(live.commands().len(), 1);
    }
}
