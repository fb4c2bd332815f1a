//! The seam between a zone's response and the agents that share it: `Alone` (this agent
//! answers for the zone by itself; its local journal is all there is) or the etcd
//! coordinator of `[cluster]` (`crate::cluster`), which campaigns for the zone and runs
//! the runbooks only as its leader. The engine and the runbook runs hold an
//! `Arc<dyn Coordinator>` and never ask which one they have.
//!
//! Design: the trait lives here, below `cluster`, because it speaks the incident's types
//! (`Shared`, `Dispatched`, `Incident`); `cluster` implements it and points down to it,
//! and nothing here points up to `cluster`.

use super::{announce, dispatch_stage, run_stage, Dispatched, Shared, Stage};
use crate::detect::Cause;
use crate::journal::Incident;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A manual failover of a finished incident that was not safe to cut power: the steps
/// that did not succeed run again (the incident handed over has them pending). Only the
/// run that finished at `finished_at` is reopened: once any agent has re-run it, the
/// others adopt that result instead of running the steps a second time.
#[derive(Debug, Clone)]
pub struct Reopen {
    pub finished_at: Option<String>,
}

/// Where and when a zone's runbooks run, and what else hears of its incident.
pub trait Coordinator: Send + Sync + 'static {
    /// Background work for as long as the agent runs, until `stop`.
    fn start(self: Arc<Self>, shared: Arc<Shared>, stop: CancellationToken);

    /// Starts the zone's prepare runbook (a new incident) where it is to run; `ran` is set
    /// when it runs on this agent (its undo runs here too).
    fn dispatch_prepare(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        ran: Arc<AtomicBool>,
    ) -> Dispatched;

    /// Starts the zone's failover runbook: `id` continues an incident (the prepare's),
    /// `wait_for` is the prepare's end when the failover waits for it.
    fn dispatch_failover(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        id: Option<String>,
        wait_for: Option<watch::Receiver<bool>>,
    ) -> Dispatched;

    /// Runs a journaled failover again: resumed at start, or the failed steps of a
    /// finished one (`reopen`, a manual failover). Returns whether it is safe to cut power.
    fn resume(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        inc: Incident,
        reopen: Option<Reopen>,
    ) -> JoinHandle<bool>;

    /// The zone's prepare is over here without a failover (undone after the cooldown or a
    /// reset).
    fn prepare_over<'a>(&'a self, shared: &'a Shared, zone: usize) -> BoxFuture<'a, ()>;

    /// Operator reset: the zone's incident, closed in the local journal, ends for every
    /// agent.
    fn close(self: Arc<Self>, zone: usize, inc: Incident);

    /// Whether `journaled`, the zone's incident in the local journal, is the zone's open
    /// incident, which this agent knows as `open`.
    fn is_zone_incident(&self, journaled: &Incident, open: &str) -> bool;

    /// The fencing token the failover's steps carry, while this agent leads the zone.
    fn fence(&self, zone: usize) -> Option<i64>;

    /// A failover's journal write beyond the local file (already written). Returns
    /// whether the run may go on.
    fn persist<'a>(
        &'a self,
        shared: &'a Shared,
        zone: usize,
        inc: &'a Incident,
    ) -> BoxFuture<'a, bool>;

    /// Shutdown: gives up what this agent holds (the caller bounds it).
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// `/api/v1/status`'s `cluster` object (`null` alone).
    fn status(&self) -> Option<serde_json::Value>;
}

/// An agent that answers for its zones by itself: every runbook runs here, the local
/// journal is the incident's only record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Coordinator for Alone {
    fn start(self: Arc<Self>, _shared: Arc<Shared>, _stop: CancellationToken) {}

    fn dispatch_prepare(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        ran: Arc<AtomicBool>,
    ) -> Dispatched {
        ran.store(true, Ordering::Relaxed);
        dispatch_stage(shared, zone, cause, seq, Stage::Prepare, None, None)
    }

    fn dispatch_failover(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        id: Option<String>,
        wait_for: Option<watch::Receiver<bool>>,
    ) -> Dispatched {
        dispatch_stage(shared, zone, cause, seq, Stage::Failover, id, wait_for)
    }

    fn resume(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        inc: Incident,
        _reopen: Option<Reopen>,
    ) -> JoinHandle<bool> {
        announce(&shared, &inc, Stage::Failover, true);
        tokio::spawn(run_stage(shared, zone, inc, Stage::Failover))
    }

    fn prepare_over<'a>(&'a self, _shared: &'a Shared, _zone: usize) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    fn close(self: Arc<Self>, _zone: usize, _inc: Incident) {}

    fn is_zone_incident(&self, journaled: &Incident, open: &str) -> bool {
        journaled.incident == open
    }

    fn fence(&self, _zone: usize) -> Option<i64> {
        None
    }

    fn persist<'a>(
        &'a self,
        _shared: &'a Shared,
        _zone: usize,
        _inc: &'a Incident,
    ) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn status(&self) -> Option<serde_json::Value> {
        None
    }
}
