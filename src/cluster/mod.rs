//! Redundant agents (`[cluster]`): two or more agents watch the same zones and act as one.
//!
//! Every agent detects on its own (detection needs no coordination). When a zone turns
//! critical, each agent campaigns for the zone's leadership in etcd: a key
//! `<namespace>/zones/<zone>/leader` created in a transaction only if absent, attached to
//! a lease the winner keeps alive. The leader runs the zone's failover runbook; the
//! others follow. The incident journal lives in etcd (`<namespace>/zones/<zone>/incident`)
//! and each write of it is a transaction that succeeds only while the writer still holds
//! the leadership it won (compare on the leader key's create revision), so a deposed
//! leader can no longer record progress and stops. When the leader dies, its lease
//! expires, a follower wins the next campaign and resumes the incident at the first
//! unfinished step (the same rules as a local restart: an interrupted step runs again
//! only when it is idempotent).
//!
//! The leader key's create revision is the leadership's fencing token: HTTP steps send it
//! in `Firebreak-Fence`.
//!
//! When etcd cannot be reached, `on_cluster_loss` decides: `act` runs the runbook alone
//! (a duplicate, idempotent failover beats none while the room burns), `hold` runs
//! nothing until etcd is back. Either way a `cluster_lost` event and a metric say so.
//!
//! Without `[cluster]` none of this exists and the agent runs alone as before.
//!
//! etcd is spoken to through its JSON gateway (`etcd.rs`). The decisions (adopt, resume,
//! open, act or hold) are pure functions of what etcd answered (`decide.rs`); this file
//! asks etcd and carries them out, as the `Coordinator` the engine and the runbook runs
//! hold.

pub mod decide;
pub mod etcd;

use crate::config::{Cluster as ClusterConfig, OnClusterLoss};
use crate::detect::Cause;
use crate::events::Event;
use crate::incident::{self, BoxFuture, Coordinator, Dispatched, Reopen, Shared, Stage};
use crate::journal::Incident;
pub use decide::Role;
use decide::{
    AsFollower, AsLeader, Campaigned, Claim, Fault, LeaderKey, Loss, Unreadable, Unwritten,
};
use etcd::{Compare, Op, Txn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer (down, partitioned, timed out): the `on_cluster_loss` case.
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// etcd answered no: this agent's leadership is gone (another agent leads now).
    #[error("no longer the zone's leader: another agent has taken it over")]
    Deposed,
    #[error("cluster.{key}: cannot read {path}: {source}")]
    Secret {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cluster: {0}")]
    Client(String),
    #[error("the incident journal in etcd is corrupt: {0}")]
    Corrupt(serde_json::Error),
}

impl ClusterError {
    /// What the decisions need to know of it.
    fn fault(&self) -> Fault {
        match self {
            ClusterError::Deposed => Fault::Deposed,
            ClusterError::Corrupt(_) => Fault::Corrupt,
            _ => Fault::Unreachable,
        }
    }
}

/// Any failed etcd request is a lost etcd for the caller (`on_cluster_loss`), whether no
/// member answered or etcd refused it; only a client that cannot be built is not.
fn unreachable(e: etcd::Error) -> ClusterError {
    match e {
        etcd::Error::Config(e) => ClusterError::Client(e),
        e => ClusterError::Unreachable(e.to_string()),
    }
}

/// How often a follower (or a holding agent) tries for the leadership again.
const POLL: Duration = Duration::from_millis(500);
/// Bound on one etcd request, so that a lost etcd is noticed and the policy applied.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a finished, unsafe incident is compared with etcd's (`spawn_sync`).
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Pause before an etcd request that found no member is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Lead {
    /// Create revision of the leader key: the fencing token.
    rev: i64,
    lease: i64,
    keepalive: CancellationToken,
}

#[derive(Debug)]
struct ZoneState {
    role: Role,
    leader: Option<String>,
    lead: Option<Lead>,
    /// A `cluster_lost` has been written since etcd was last reachable for this zone.
    lost_reported: bool,
}

/// What a campaign for a zone found.
#[derive(Debug, PartialEq, Eq)]
pub enum Campaign {
    /// This agent leads the zone; the fencing revision.
    Won(i64),
    /// `leader` leads it.
    Lost { leader: String },
}

/// The etcd coordinator shared by the engine and the runbook tasks.
pub struct Cluster {
    cfg: ClusterConfig,
    /// Authenticates by itself (before its first request, and again when the token is
    /// rejected) when `username` is set.
    client: etcd::Client,
    zones: Vec<String>,
    state: Mutex<Vec<ZoneState>>,
    peers: Mutex<Vec<String>>,
    reachable: AtomicBool,
    metrics: ClusterMetrics,
    /// One campaign at a time per zone: a prepare and a failover of one zone decided
    /// together must not both try for the key (the second would take the first's win for
    /// a stale leadership and revoke it).
    campaigning: Vec<tokio::sync::Mutex<()>>,
}

struct ClusterMetrics {
    leader: prometheus::IntGaugeVec,
    reachable: prometheus::IntGauge,
    peers: prometheus::IntGauge,
    lost: prometheus::IntCounterVec,
}

impl ClusterMetrics {
    fn new(r: &prometheus::Registry) -> Self {
        let leader = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "firebreak_cluster_leader",
                "1 while this agent leads the zone's response ([cluster])",
            ),
            &["zone", "role"],
        )
        .expect("valid metric");
        let reachable = prometheus::IntGauge::new(
            "firebreak_cluster_reachable",
            "1 while etcd answers this agent ([cluster])",
        )
        .expect("valid metric");
        let peers = prometheus::IntGauge::new(
            "firebreak_cluster_peers",
            "Agents registered in etcd, this one included ([cluster])",
        )
        .expect("valid metric");
        let lost = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "firebreak_cluster_lost_total",
                "Times a critical zone found etcd unreachable, by the policy applied",
            ),
            &["policy"],
        )
        .expect("valid metric");
        for m in [
            Box::new(leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reachable.clone()),
            Box::new(peers.clone()),
            Box::new(lost.clone()),
        ] {
            // A reload keeps the registry: the second registration is the same metric.
            let _ = r.register(m);
        }
        ClusterMetrics {
            leader,
            reachable,
            peers,
            lost,
        }
    }
}

impl Cluster {
    /// Builds the client. Connecting is lazy: no request is sent here (with `username`,
    /// the client authenticates before its first request), so an etcd that is away at
    /// start is an `on_cluster_loss` case like any other.
    pub async fn connect(
        cfg: &ClusterConfig,
        zones: Vec<String>,
        registry: &prometheus::Registry,
    ) -> Result<Cluster, ClusterError> {
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| ClusterError::Secret {
                key,
                path: path.display().to_string(),
                source,
            })
        };
        let ca_pem = cfg
            .ca_file
            .as_deref()
            .map(|ca| read("ca_file", ca))
            .transpose()?;
        let identity_pem = match (&cfg.cert_file, &cfg.key_file) {
            (Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
            _ => None,
        };
        let credentials = match (&cfg.username, &cfg.password_file) {
            (Some(user), Some(file)) => Some(etcd::Credentials {
                user: user.clone(),
                password: String::from_utf8_lossy(&read("password_file", file)?)
                    .trim()
                    .to_string(),
            }),
            _ => None,
        };
        let client = etcd::Client::new(etcd::Options {
            endpoints: cfg.etcd.clone(),
            timeout: REQUEST_TIMEOUT,
            ca_pem,
            identity_pem,
            credentials,
        })
        .map_err(|e| ClusterError::Client(e.to_string()))?;
        let state = zones
            .iter()
            .map(|_| ZoneState {
                role: Role::Idle,
                leader: None,
                lead: None,
                lost_reported: false,
            })
            .collect();
        let campaigning = zones.iter().map(|_| tokio::sync::Mutex::new(())).collect();
        Ok(Cluster {
            cfg: cfg.clone(),
            client,
            zones,
            state: Mutex::new(state),
            peers: Mutex::new(Vec::new()),
            reachable: AtomicBool::new(false),
            metrics: ClusterMetrics::new(registry),
            campaigning,
        })
    }

    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    pub fn policy(&self) -> OnClusterLoss {
        self.cfg.on_cluster_loss
    }

    fn key(&self, zone: usize, what: &str) -> String {
        format!("{}/zones/{}/{what}", self.cfg.namespace, self.zones[zone])
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Vec<ZoneState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_reachable(&self, yes: bool) {
        self.reachable.store(yes, Ordering::Relaxed);
        self.metrics.reachable.set(i64::from(yes));
        if yes {
            for z in self.state().iter_mut() {
                z.lost_reported = false;
            }
        }
    }

    /// The fencing revision while this agent leads the zone.
    pub fn fence(&self, zone: usize) -> Option<i64> {
        self.state().get(zone)?.lead.as_ref().map(|l| l.rev)
    }

    /// Sets the zone's role; writes `cluster_role` when it changed.
    fn set_role(&self, shared: &Shared, zone: usize, role: Role, leader: Option<String>) {
        let changed = {
            let mut st = self.state();
            let z = &mut st[zone];
            let changed = z.role != role || z.leader != leader;
            z.role = role;
            z.leader = leader.clone();
            changed
        };
        for r in [
            Role::Leader,
            Role::Follower,
            Role::Alone,
            Role::Holding,
            Role::Done,
        ] {
            let _ = self
                .metrics
                .leader
                .remove_label_values(&[&self.zones[zone], r.as_str()]);
        }
        self.metrics
            .leader
            .with_label_values(&[&self.zones[zone], role.as_str()])
            .set(i64::from(matches!(role, Role::Leader | Role::Alone)));
        if changed {
            tracing::warn!(zone = %self.zones[zone], node = %self.cfg.node, role = role.as_str(), leader = ?leader, "cluster role");
            shared.write(&Event::ClusterRole {
                zone: self.zones[zone].clone(),
                node: self.cfg.node.clone(),
                role,
                leader,
            });
        }
    }

    /// etcd is lost for a zone that needs it: the policy, logged once per loss. Returns
    /// what the policy does.
    fn lost(&self, shared: &Shared, zone: usize, error: &ClusterError) -> Loss {
        self.set_reachable(false);
        let policy = self.cfg.on_cluster_loss;
        let first = {
            let mut st = self.state();
            !std::mem::replace(&mut st[zone].lost_reported, true)
        };
        if first {
            self.metrics
                .lost
                .with_label_values(&[policy.as_str()])
                .inc();
            tracing::error!(zone = %self.zones[zone], node = %self.cfg.node, policy = policy.as_str(), error = %error, "etcd unreachable: applying on_cluster_loss");
            shared.write(&Event::ClusterLost {
                zone: self.zones[zone].clone(),
                node: self.cfg.node.clone(),
                policy,
                error: error.to_string(),
            });
        }
        let loss = decide::on_loss(policy);
        self.drop_lead(zone);
        self.set_role(shared, zone, loss.role(), None);
        loss
    }

    fn drop_lead(&self, zone: usize) -> Option<Lead> {
        let lead = self.state()[zone].lead.take();
        if let Some(l) = &lead {
            l.keepalive.cancel();
        }
        lead
    }

    /// One try for the zone's leadership.
    async fn campaign_once(&self, zone: usize) -> Result<Campaign, ClusterError> {
        let key = self.key(zone, "leader");
        let current = self.client.get(&key).await.map_err(unreachable)?;
        // The leadership this process keeps alive, when the key is still under it.
        let ours = current.as_ref().and_then(|kv| {
            self.state()[zone]
                .lead
                .as_ref()
                .filter(|l| l.lease == kv.lease && l.rev == kv.create_revision)
                .map(|l| l.rev)
        });
        let seen = match &current {
            None => LeaderKey::Absent,
            Some(kv) => LeaderKey::Held {
                node: kv.value_str().unwrap_or("?"),
                ours,
            },
        };
        match (decide::claim(seen, &self.cfg.node), &current) {
            (Claim::Lost { leader }, _) => {
                return Ok(Campaign::Lost {
                    leader: leader.to_string(),
                })
            }
            (Claim::Keep { rev }, _) => {
                self.set_reachable(true);
                return Ok(Campaign::Won(rev));
            }
            (Claim::Create { revoke_stale: true }, Some(kv)) => {
                // The journal in etcd keeps the incident's progress.
                let _ = self.client.lease_revoke(kv.lease).await;
            }
            (Claim::Create { .. }, _) => {}
        }
        let ttl = self.cfg.lease_ttl.as_secs() as i64;
        let lease = self.client.lease_grant(ttl).await.map_err(unreachable)?;
        let txn = Txn::new()
            .when([Compare::create_revision_is(&key, 0)])
            .and_then([Op::put(&key, &self.cfg.node, lease)])
            .or_else([Op::get(&key)]);
        let resp = self.client.txn(&txn).await.map_err(unreachable)?;
        if !resp.succeeded {
            let _ = self.client.lease_revoke(lease).await;
            let leader = resp
                .kvs()
                .next()
                .map(|kv| kv.value_str().unwrap_or("?").to_string())
                .unwrap_or_else(|| "?".into());
            return Ok(Campaign::Lost { leader });
        }
        // The revision of the txn that created the key: the key's create revision.
        let rev = resp
            .header
            .map(|h| h.revision)
            .filter(|r| *r > 0)
            .ok_or_else(|| ClusterError::Client("txn answer without a header".into()))?;
        let keepalive = CancellationToken::new();
        tokio::spawn(keep_alive(
            self.client.clone(),
            lease,
            self.cfg.lease_ttl,
            keepalive.clone(),
            self.zones[zone].clone(),
        ));
        if let Some(old) = self.state()[zone].lead.replace(Lead {
            rev,
            lease,
            keepalive,
        }) {
            old.keepalive.cancel();
        }
        self.set_reachable(true);
        Ok(Campaign::Won(rev))
    }

    /// Gives the zone's leadership up (the runbook has finished): the key goes at once,
    /// so a follower need not wait for the lease to expire.
    pub async fn resign(&self, zone: usize) {
        let Some(lead) = self.drop_lead(zone) else {
            return;
        };
        let key = self.key(zone, "leader");
        let txn = Txn::new()
            .when([Compare::create_revision_is(&key, lead.rev)])
            .and_then([Op::delete(&key)]);
        let _ = self.client.txn(&txn).await;
        let _ = self.client.lease_revoke(lead.lease).await;
    }

    /// Runs `op` again while etcd is unreachable, a few times: with several endpoints, a
    /// request may have gone to a member that is down while the others answer.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let tries = 2 * self.cfg.etcd.len() + 1;
        let mut n = 1;
        loop {
            match op().await {
                Err(ClusterError::Unreachable(e)) if n < tries => {
                    tracing::debug!(error = %e, attempt = n, "etcd request failed; trying again");
                    n += 1;
                    crate::clock::sleep(RETRY_PAUSE).await;
                }
                r => return r,
            }
        }
    }

    /// One try for the zone's leadership (retried over the endpoints).
    pub async fn campaign(&self, zone: usize) -> Result<Campaign, ClusterError> {
        let _one = self.campaigning[zone].lock().await;
        self.retry(|| self.campaign_once(zone)).await
    }

    /// The zone's prepare is over here and no failover followed (undone after the
    /// cooldown or a reset): its leadership is given up.
    pub async fn prepare_over(&self, shared: &Shared, zone: usize) {
        let leading = self.state()[zone].lead.is_some();
        self.resign(zone).await;
        if leading {
            self.set_role(shared, zone, Role::Idle, None);
        }
    }

    /// The zone's incident as the cluster knows it.
    pub async fn load(&self, zone: usize) -> Result<Option<Incident>, ClusterError> {
        self.retry(|| self.load_once(zone)).await
    }

    /// Writes the zone's incident, only while this agent still holds the leadership it
    /// won at revision `rev` (the same write again is harmless, so it is retried).
    pub async fn save_fenced(
        &self,
        zone: usize,
        rev: i64,
        inc: &Incident,
    ) -> Result<(), ClusterError> {
        self.retry(|| self.save_fenced_once(zone, rev, inc)).await
    }

    /// Closes the zone's incident in etcd (operator reset).
    pub async fn close(&self, zone: usize, inc: &Incident) -> Result<(), ClusterError> {
        self.retry(|| self.close_once(zone, inc)).await
    }

    /// Gives up every zone this agent leads (shutdown): a peer takes over at once
    /// instead of after `lease_ttl`.
    pub async fn resign_all(&self) {
        for zone in 0..self.zones.len() {
            self.resign(zone).await;
        }
    }

    /// The zone's incident as the cluster knows it.
    async fn load_once(&self, zone: usize) -> Result<Option<Incident>, ClusterError> {
        let kv = self
            .client
            .get(self.key(zone, "incident"))
            .await
            .map_err(unreachable)?;
        self.set_reachable(true);
        kv.map(|kv| serde_json::from_slice(&kv.value).map_err(ClusterError::Corrupt))
            .transpose()
    }

    /// Writes the zone's incident, only while this agent still holds the leadership it
    /// won at revision `rev`.
    async fn save_fenced_once(
        &self,
        zone: usize,
        rev: i64,
        inc: &Incident,
    ) -> Result<(), ClusterError> {
        let bytes = serde_json::to_vec(inc).map_err(ClusterError::Corrupt)?;
        let txn = Txn::new()
            .when([Compare::create_revision_is(self.key(zone, "leader"), rev)])
            .and_then([Op::put(self.key(zone, "incident"), bytes, 0)]);
        let resp = self.client.txn(&txn).await.map_err(unreachable)?;
        self.set_reachable(true);
        if resp.succeeded {
            Ok(())
        } else {
            Err(ClusterError::Deposed)
        }
    }

    /// Closes the zone's incident in etcd (operator reset): it moves to
    /// `<namespace>/closed/<incident>`, so the next fire opens a new one.
    async fn close_once(&self, zone: usize, inc: &Incident) -> Result<(), ClusterError> {
        let bytes = serde_json::to_vec(inc).map_err(ClusterError::Corrupt)?;
        let txn = Txn::new().and_then([
            Op::put(
                format!("{}/closed/{}", self.cfg.namespace, inc.incident),
                bytes,
                0,
            ),
            Op::delete(self.key(zone, "incident")),
        ]);
        self.client.txn(&txn).await.map_err(unreachable)?;
        self.state()[zone].role = Role::Idle;
        Ok(())
    }

    /// A failover journal write (see `Shared::persist`).
    async fn persist_fenced(&self, shared: &Shared, zone: usize, inc: &Incident) -> bool {
        let Some(rev) = self.fence(zone) else {
            // Running alone (etcd lost, `act`): the local journal is all there is.
            return true;
        };
        let Err(e) = self.save_fenced(zone, rev, inc).await else {
            return true;
        };
        let unwritten = decide::unwritten(e.fault(), self.cfg.on_cluster_loss);
        match unwritten {
            Unwritten::Deposed => {
                tracing::error!(zone = %self.zones[zone], node = %self.cfg.node, incident = %inc.incident, "deposed: another agent leads the zone; stopping this runbook");
                self.drop_lead(zone);
                self.set_role(shared, zone, Role::Follower, None);
            }
            Unwritten::Lost(_) => {
                self.lost(shared, zone, &e);
            }
        }
        unwritten.goes_on()
    }

    /// Keeps finished-but-unsafe incidents of the local journal in line with etcd, until
    /// `stop`: when a peer has re-run the failed steps (a manual failover asked of it),
    /// its newer result is recorded here too, so this agent's status page, metrics and
    /// MQTT status do not go on saying "not safe". An incident that is running or safe
    /// here is left alone.
    pub fn spawn_sync(
        self: &Arc<Self>,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let journal = shared.journal.clone();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = crate::clock::sleep(SYNC_EVERY) => {}
                }
                for zone in 0..me.zones.len() {
                    let Ok(Some(local)) = journal.load(&me.zones[zone]) else {
                        continue;
                    };
                    if !local.finished || local.safe_to_cut_power == Some(true) {
                        continue;
                    }
                    let Ok(Some(remote)) = me.load_once(zone).await else {
                        continue;
                    };
                    if let Some(newer) = decide::newer_result(&local, remote) {
                        tracing::warn!(zone = %me.zones[zone], incident = %newer.incident, safe_to_cut_power = ?newer.safe_to_cut_power, "a peer re-ran the zone's failed steps; its result is recorded here");
                        shared.adopt(&newer);
                    }
                }
            }
        })
    }

    /// Registers this agent under `<namespace>/nodes/` (with a lease) and keeps the list
    /// of peers and etcd's reachability current, until `stop`.
    pub fn spawn_presence(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let every = me.cfg.lease_ttl / 3;
            loop {
                let r = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = me.presence_once(every) => r,
                };
                if let Err(e) = r {
                    // Said once per loss, not at every retry.
                    if me.reachable.load(Ordering::Relaxed) {
                        tracing::warn!(node = %me.cfg.node, error = %e, "etcd lost: cluster presence retrying");
                    } else {
                        tracing::debug!(node = %me.cfg.node, error = %e, "etcd still unreachable");
                    }
                    me.set_reachable(false);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = crate::clock::sleep(POLL) => {}
                }
            }
        })
    }

    /// Registers, then refreshes the lease and the peers until an error.
    async fn presence_once(&self, every: Duration) -> Result<(), ClusterError> {
        let ttl = self.cfg.lease_ttl.as_secs() as i64;
        let lease = self.client.lease_grant(ttl).await.map_err(unreachable)?;
        self.client
            .put(
                format!("{}/nodes/{}", self.cfg.namespace, self.cfg.node),
                &self.cfg.node,
                lease,
            )
            .await
            .map_err(unreachable)?;
        loop {
            let kvs = self
                .client
                .get_prefix(format!("{}/nodes/", self.cfg.namespace))
                .await
                .map_err(unreachable)?;
            let peers: Vec<String> = kvs
                .iter()
                .filter_map(|kv| kv.value_str().map(str::to_string))
                .collect();
            self.metrics.peers.set(peers.len() as i64);
            *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
            self.set_reachable(true);
            crate::clock::sleep(every).await;
            if self
                .client
                .lease_keep_alive(lease)
                .await
                .map_err(unreachable)?
                <= 0
            {
                return Err(ClusterError::Unreachable("presence lease expired".into()));
            }
        }
    }

    /// `/api/v1/status`'s `cluster` object.
    pub fn status(&self) -> serde_json::Value {
        let st = self.state();
        let zones: serde_json::Map<String, serde_json::Value> = self
            .zones
            .iter()
            .zip(st.iter())
            .map(|(id, z)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "role": z.role.as_str(),
                        "leader": z.leader,
                        "fence": z.lead.as_ref().map(|l| l.rev),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "node": self.cfg.node,
            "etcd": self.cfg.etcd,
            "namespace": self.cfg.namespace,
            "reachable": self.reachable.load(Ordering::Relaxed),
            "on_cluster_loss": self.cfg.on_cluster_loss.as_str(),
            "peers": *self.peers.lock().unwrap_or_else(|e| e.into_inner()),
            "zones": zones,
        })
    }
}

/// Keeps a leadership lease alive until `stop` or until etcd says it has expired: a
/// keep-alive every `ttl / 3`. A failed one (a member went away) is tried again after
/// `RETRY_PAUSE` (on the next endpoint, when the client has several); whether the
/// leadership survived, the next fenced write finds out.
async fn keep_alive(
    client: etcd::Client,
    lease: i64,
    ttl: Duration,
    stop: CancellationToken,
    zone: String,
) {
    loop {
        let pause = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.lease_keep_alive(lease) => match r {
                Ok(left) if left > 0 => ttl / 3,
                Ok(_) => {
                    tracing::error!(zone = %zone, lease, "leadership lease expired");
                    return;
                }
                Err(e) => {
                    tracing::warn!(zone = %zone, lease, error = %e, "leadership keep-alive failed; trying again");
                    RETRY_PAUSE
                }
            },
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = crate::clock::sleep(pause) => {}
        }
    }
}

impl Coordinator for Cluster {
    /// Registers this agent with its peers and keeps finished-but-unsafe incidents in line
    /// with etcd (`spawn_presence`, `spawn_sync`).
    fn start(self: Arc<Self>, shared: Arc<Shared>, stop: CancellationToken) {
        self.spawn_presence(stop.clone());
        self.spawn_sync(shared, stop);
    }

    /// The agent campaigns for the zone, and only its leader runs the prepare runbook (the
    /// same leadership then runs the failover, so `failover_waits_for_prepare` waits for
    /// the run that matters). A follower runs nothing; etcd lost: `act` runs it here,
    /// `hold` skips it.
    fn dispatch_prepare(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        ran: Arc<AtomicBool>,
    ) -> Dispatched {
        dispatch_prepare(shared, self, zone, cause, seq, ran)
    }

    /// The engine's view (incident id, task, done) is the alone one's; the task campaigns
    /// first and runs the runbook only as the zone's leader (or alone, when etcd is lost
    /// and the policy is `act`).
    fn dispatch_failover(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        cause: Cause,
        seq: u32,
        id: Option<String>,
        wait_for: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Dispatched {
        let candidate =
            incident::new_stage_incident(&shared, zone, cause, seq, Stage::Failover, id);
        let incident = candidate.incident.clone();
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            if let Some(mut prepared) = wait_for {
                let _ = prepared.wait_for(|d| *d).await;
            }
            let ok = run_failover(shared, self, zone, candidate, None).await;
            let _ = done_tx.send(true);
            ok
        });
        Dispatched {
            incident,
            task,
            done,
        }
    }

    /// The zone's leader resumes it: this agent, or a peer that took over; a reopened run
    /// (manual failover) once for the cluster, however many agents were asked.
    fn resume(
        self: Arc<Self>,
        shared: Arc<Shared>,
        zone: usize,
        inc: Incident,
        reopen: Option<Reopen>,
    ) -> tokio::task::JoinHandle<bool> {
        tokio::spawn(run_failover(shared, self, zone, inc, reopen))
    }

    /// Once undone, the zone's leadership (won for the prepare) is free.
    fn prepare_over<'a>(&'a self, shared: &'a Shared, zone: usize) -> BoxFuture<'a, ()> {
        Box::pin(Cluster::prepare_over(self, shared, zone))
    }

    fn close(self: Arc<Self>, zone: usize, inc: Incident) {
        tokio::spawn(async move {
            if let Err(e) = Cluster::close(&self, zone, &inc).await {
                tracing::error!(error = %e, incident = %inc.incident, "cannot close the incident in etcd; reset again when etcd is back");
            }
        });
    }

    /// The local journal holds the incident the zone's leader opened, which is the zone's
    /// incident for every agent.
    fn is_zone_incident(&self, _journaled: &Incident, _open: &str) -> bool {
        true
    }

    fn fence(&self, zone: usize) -> Option<i64> {
        Cluster::fence(self, zone)
    }

    fn persist<'a>(
        &'a self,
        shared: &'a Shared,
        zone: usize,
        inc: &'a Incident,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.persist_fenced(shared, zone, inc))
    }

    /// A peer takes over at once instead of after `lease_ttl`.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.resign_all())
    }

    fn status(&self) -> Option<serde_json::Value> {
        Some(Cluster::status(self))
    }
}

/// The clustered prepare (see `Coordinator::dispatch_prepare`). `ran` says whether it ran
/// here (its undo runs here too).
fn dispatch_prepare(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    zone: usize,
    cause: Cause,
    seq: u32,
    ran: Arc<AtomicBool>,
) -> Dispatched {
    let inc = incident::new_stage_incident(&shared, zone, cause, seq, Stage::Prepare, None);
    let incident = inc.incident.clone();
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let zone_id = &shared.config.zones[zone].id;
        let campaign = cluster.campaign(zone).await;
        let seen = match &campaign {
            Ok(Campaign::Won(_)) => Campaigned::Won,
            Ok(Campaign::Lost { leader }) => Campaigned::Lost { leader },
            Err(e) => {
                cluster.lost(&shared, zone, e);
                Campaigned::Unreachable
            }
        };
        let run = match decide::prepare(seen, cluster.policy()) {
            decide::Prepare::Lead => {
                let me = cluster.node().to_string();
                cluster.set_role(&shared, zone, Role::Leader, Some(me));
                true
            }
            decide::Prepare::Follow { leader } => {
                tracing::warn!(zone = %zone_id, leader = %leader, "the zone's prepare runbook runs on its leader, not here");
                cluster.set_role(&shared, zone, Role::Follower, Some(leader.to_string()));
                false
            }
            decide::Prepare::Lost(Loss::Act) => true,
            decide::Prepare::Lost(Loss::Hold) => {
                tracing::warn!(zone = %zone_id, "etcd lost, on_cluster_loss = hold: the prepare runbook is skipped");
                false
            }
        };
        let ok = if run {
            ran.store(true, Ordering::Relaxed);
            incident::announce(&shared, &inc, Stage::Prepare, false);
            incident::run_stage(shared.clone(), zone, inc, Stage::Prepare).await
        } else {
            true
        };
        let _ = done_tx.send(true);
        ok
    });
    Dispatched {
        incident,
        task,
        done,
    }
}

/// Campaigns for the zone until the incident has finished (here or on a peer); returns
/// whether it is safe to cut power. `candidate` is the incident this agent would open (or
/// the one its local journal had open at start, or the reopened one of `reopen`).
async fn run_failover(
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    zone: usize,
    candidate: Incident,
    reopen: Option<Reopen>,
) -> bool {
    let zone_id = shared.config.zones[zone].id.clone();
    let policy = cluster.policy();
    loop {
        let leader = match cluster.campaign(zone).await {
            Ok(Campaign::Won(_)) => None,
            Ok(Campaign::Lost { leader }) => Some(leader),
            Err(e) => {
                if cluster.lost(&shared, zone, &e) == Loss::Act {
                    return run_alone(&shared, zone, &candidate).await;
                }
                crate::clock::sleep(POLL).await;
                continue;
            }
        };
        let loaded = cluster.load(zone).await;
        if let Some(leader) = leader {
            let stored = loaded.map_err(|e| e.fault());
            match decide::as_follower(stored, reopen.as_ref(), &candidate) {
                AsFollower::Adopt(inc) => {
                    return adopt_finished(&shared, &cluster, zone, inc, Some(leader));
                }
                AsFollower::Follow => {
                    cluster.set_role(&shared, zone, Role::Follower, Some(leader));
                    crate::clock::sleep(POLL).await;
                    continue;
                }
            }
        }
        let stored = match loaded {
            Ok(stored) => stored,
            Err(e) => {
                match decide::unreadable(e.fault(), policy) {
                    Unreadable::GiveUp => {
                        tracing::error!(zone = %zone_id, error = %e, "the incident in etcd is corrupt; reset the zone");
                        cluster.resign(zone).await;
                        return false;
                    }
                    Unreadable::Lost(_) => {
                        if cluster.lost(&shared, zone, &e) == Loss::Act {
                            return run_alone(&shared, zone, &candidate).await;
                        }
                    }
                }
                crate::clock::sleep(POLL).await;
                continue;
            }
        };
        // `opened`: this leadership opens the incident in etcd. Otherwise a leader (a
        // peer, or this agent before its lease ran out) opened and announced it, and
        // this run is a resume, whatever its steps' state.
        let (inc, opened) = match decide::as_leader(stored, reopen.as_ref(), &candidate) {
            AsLeader::Adopt(inc) => {
                cluster.resign(zone).await;
                return adopt_finished(&shared, &cluster, zone, inc, None);
            }
            AsLeader::Resume(inc) => (inc, false),
            // Nothing in etcd yet (this leadership opens the incident), or the finished
            // run a manual failover reopens: this leader writes `candidate`.
            AsLeader::Write { opens } => {
                let rev = cluster.fence(zone).unwrap_or_default();
                match cluster.save_fenced(zone, rev, &candidate).await {
                    Ok(()) => {
                        if !opens {
                            tracing::warn!(zone = %zone_id, incident = %candidate.incident, "manual failover: this agent leads the zone and runs the steps that did not succeed again");
                        }
                        (candidate.clone(), opens)
                    }
                    Err(e) => match decide::unwritten(e.fault(), policy) {
                        // Taken over in between: campaign again at once.
                        Unwritten::Deposed => continue,
                        Unwritten::Lost(_) => {
                            if cluster.lost(&shared, zone, &e) == Loss::Act {
                                return run_alone(&shared, zone, &candidate).await;
                            }
                            crate::clock::sleep(POLL).await;
                            continue;
                        }
                    },
                }
            }
        };
        let runs_here = incident::stage_steps(&shared.config, zone, Stage::Failover)
            .is_some_and(|(rb, steps)| decide::same_runbook(&inc, &rb.name, steps.len()));
        if !runs_here {
            tracing::error!(zone = %zone_id, incident = %inc.incident, "the incident in etcd was started with another runbook; not resuming it (reset the zone)");
            cluster.resign(zone).await;
            return false;
        }
        cluster.set_role(
            &shared,
            zone,
            Role::Leader,
            Some(cluster.node().to_string()),
        );
        shared.save(&inc);
        incident::announce(
            &shared,
            &inc,
            Stage::Failover,
            decide::resumed(opened, &inc),
        );
        let ok = incident::run_stage(shared.clone(), zone, inc, Stage::Failover).await;
        let finished = shared
            .journal
            .load(&zone_id)
            .ok()
            .flatten()
            .is_some_and(|i| i.finished);
        if finished {
            cluster.resign(zone).await;
            cluster.set_role(&shared, zone, Role::Done, Some(cluster.node().to_string()));
            return ok;
        }
        // Stopped: deposed, or etcd lost under `hold`. Campaign again: the zone's leader
        // (maybe this agent, once etcd is back) finishes the incident.
        crate::clock::sleep(POLL).await;
    }
}

/// etcd lost, policy `act`: the incident runs from the local journal, as without
/// `[cluster]`.
async fn run_alone(shared: &Arc<Shared>, zone: usize, candidate: &Incident) -> bool {
    let local = shared
        .journal
        .load(&shared.config.zones[zone].id)
        .ok()
        .flatten();
    let (inc, resumed) = match decide::run_alone(local, candidate) {
        decide::RunAlone::Finished { safe } => return safe,
        decide::RunAlone::Run { inc, resumed } => (inc, resumed),
    };
    shared.save(&inc);
    incident::announce(shared, &inc, Stage::Failover, resumed);
    incident::run_stage(shared.clone(), zone, inc, Stage::Failover).await
}

/// The zone's incident finished on a peer (or earlier): recorded locally, nothing run.
fn adopt_finished(
    shared: &Shared,
    cluster: &Cluster,
    zone: usize,
    inc: Incident,
    leader: Option<String>,
) -> bool {
    tracing::warn!(zone = %inc.zone, incident = %inc.incident, "the zone's incident has finished in the cluster; nothing to run here");
    let safe = inc.safe_to_cut_power == Some(true);
    shared.adopt(&inc);
    cluster.set_role(shared, zone, Role::Done, leader);
    safe
}
