//! The cluster's decisions, without I/O: what etcd answered (a campaign, the zone's
//! incident as etcd holds it, a fenced write), whether this process holds the lease, the
//! `on_cluster_loss` policy and the local journal come in as plain data; what the agent
//! does next comes out. `mod.rs` asks etcd and carries the decisions out.

use crate::config::OnClusterLoss;
use crate::incident::Reopen;
use crate::journal::{Incident, StepStatus};

pub use crate::events::Role;

/// Why etcd gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No member answered, or etcd refused the request: `on_cluster_loss` applies.
    Unreachable,
    /// etcd answered no to a fenced write: another agent leads the zone now.
    Deposed,
    /// The zone's incident in etcd cannot be read (no agent wrote that).
    Corrupt,
}

/// What a campaign for the zone's leadership found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Campaigned<'a> {
    Won,
    Lost { leader: &'a str },
    Unreachable,
}

/// What the agent does while etcd is lost for a zone that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// `act`: the runbook runs here from the local journal, without coordination.
    Act,
    /// `hold`: nothing runs; the agent campaigns again after a pause.
    Hold,
}

impl Loss {
    pub fn role(self) -> Role {
        match self {
            Loss::Act => Role::Alone,
            Loss::Hold => Role::Holding,
        }
    }
}

pub fn on_loss(policy: OnClusterLoss) -> Loss {
    match policy {
        OnClusterLoss::Act => Loss::Act,
        OnClusterLoss::Hold => Loss::Hold,
    }
}

/// What the leader key held when this agent campaigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderKey<'a> {
    Absent,
    /// Held by `node` (maybe this agent's own name); `ours`: the fencing revision, when
    /// the key is under the lease and revision this process keeps alive.
    Held {
        node: &'a str,
        ours: Option<i64>,
    },
}

/// The first move of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// Another agent leads the zone.
    Lost { leader: &'a str },
    /// This process already leads it (won for the zone's prepare, now its failover): the
    /// same leadership goes on, with its fencing revision.
    Keep { rev: i64 },
    /// Try to create the key. `revoke_stale`: it holds this agent's name under a lease
    /// this process does not keep (a leadership from before a restart, or a campaign whose
    /// answer was lost); revoking that lease frees the key first.
    Create { revoke_stale: bool },
}

pub fn claim<'a>(key: LeaderKey<'a>, me: &str) -> Claim<'a> {
    match key {
        LeaderKey::Absent => Claim::Create {
            revoke_stale: false,
        },
        LeaderKey::Held { node, .. } if node != me => Claim::Lost { leader: node },
        LeaderKey::Held {
            ours: Some(rev), ..
        } => Claim::Keep { rev },
        LeaderKey::Held { ours: None, .. } => Claim::Create { revoke_stale: true },
    }
}

/// Whether `stored` (etcd's incident) is the finished, unsafe run a manual failover
/// reopens (`candidate` has its failed steps pending again). Only the run that finished
/// at `reopen.finished_at` is: once any agent has re-run it, the others adopt that result.
pub fn reopens(reopen: Option<&Reopen>, stored: &Incident, candidate: &Incident) -> bool {
    reopen.is_some_and(|r| {
        stored.finished
            && stored.incident == candidate.incident
            && stored.finished_at == r.finished_at
            && stored.safe_to_cut_power != Some(true)
    })
}

/// What a failover run does after losing the campaign, given etcd's incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsFollower {
    /// The incident has finished on a peer: record its result here, run nothing.
    Adopt(Incident),
    /// Follow the leader and campaign again after a pause (it may die).
    Follow,
}

pub fn as_follower(
    stored: Result<Option<Incident>, Fault>,
    reopen: Option<&Reopen>,
    candidate: &Incident,
) -> AsFollower {
    match stored {
        // A peer leads while the run to reopen is still the last one: it may be
        // reopening it itself; wait and see.
        Ok(Some(inc)) if inc.finished && !reopens(reopen, &inc, candidate) => {
            AsFollower::Adopt(inc)
        }
        // The leader is alive: follow it, whatever etcd's incident says or not.
        _ => AsFollower::Follow,
    }
}

/// What a failover run does after winning the campaign, given etcd's incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsLeader {
    /// The incident has finished (on a peer, or here before): record its result, give the
    /// leadership up, run nothing.
    Adopt(Incident),
    /// A leader (a peer, or this agent before its lease ran out) opened and announced
    /// the incident: run etcd's record from its first unfinished step.
    Resume(Incident),
    /// Write the candidate to etcd (fenced), then run it: `opens` when etcd has no
    /// incident (this leadership opens it), else the finished run a manual failover
    /// reopens.
    Write { opens: bool },
}

pub fn as_leader(
    stored: Option<Incident>,
    reopen: Option<&Reopen>,
    candidate: &Incident,
) -> AsLeader {
    match stored {
        Some(inc) if reopens(reopen, &inc, candidate) => AsLeader::Write { opens: false },
        Some(inc) if inc.finished => AsLeader::Adopt(inc),
        Some(inc) => AsLeader::Resume(inc),
        None => AsLeader::Write { opens: true },
    }
}

/// What a leader does when it cannot read the zone's incident from etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The record is corrupt: give the leadership up and leave the zone to an operator
    /// reset.
    GiveUp,
    Lost(Loss),
}

pub fn unreadable(fault: Fault, policy: OnClusterLoss) -> Unreadable {
    match fault {
        Fault::Corrupt => Unreadable::GiveUp,
        Fault::Unreachable | Fault::Deposed => Unreadable::Lost(on_loss(policy)),
    }
}

/// What a leader does when a fenced write of the zone's incident to etcd failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritten {
    /// Another agent leads the zone now: a running runbook stops there, a run about to
    /// start campaigns again; this agent follows.
    Deposed,
    Lost(Loss),
}

impl Unwritten {
    /// Whether a runbook that was running goes on.
    pub fn goes_on(self) -> bool {
        self == Unwritten::Lost(Loss::Act)
    }
}

pub fn unwritten(fault: Fault, policy: OnClusterLoss) -> Unwritten {
    match fault {
        Fault::Deposed => Unwritten::Deposed,
        Fault::Unreachable | Fault::Corrupt => Unwritten::Lost(on_loss(policy)),
    }
}

/// Whether etcd's incident was started with the runbook the zone has now (`runbook`,
/// with `steps` steps): only then can its steps' state be resumed.
pub fn same_runbook(inc: &Incident, runbook: &str, steps: usize) -> bool {
    inc.runbook == runbook && inc.steps.len() == steps
}

/// Whether a leader's run is announced as resumed: it did not open the incident (another
/// leadership did and announced it), or some step has already been tried.
pub fn resumed(opened: bool, inc: &Incident) -> bool {
    !opened || inc.steps.iter().any(|s| s.status != StepStatus::Pending)
}

/// Where a zone's prepare runbook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare<'a> {
    /// This agent won the zone: it runs the prepare (and its undo), as leader.
    Lead,
    /// The leader runs it; not here.
    Follow {
        leader: &'a str,
    },
    Lost(Loss),
}

pub fn prepare(campaign: Campaigned<'_>, policy: OnClusterLoss) -> Prepare<'_> {
    match campaign {
        Campaigned::Won => Prepare::Lead,
        Campaigned::Lost { leader } => Prepare::Follow { leader },
        // A prepare is worth its time only now: under `hold` it is skipped, not delayed.
        Campaigned::Unreachable => Prepare::Lost(on_loss(policy)),
    }
}

/// A failover run alone (etcd lost under `act`), from the local journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAlone {
    /// The incident has finished here already: its verdict, nothing run.
    Finished { safe: bool },
    /// Run `inc`: the journal's record of this incident (announced when it was saved
    /// there, so a resume), or else the candidate.
    Run { inc: Incident, resumed: bool },
}

/// `local`: the zone's incident in the local journal, if any.
pub fn run_alone(local: Option<Incident>, candidate: &Incident) -> RunAlone {
    let local = local.filter(|i| i.incident == candidate.incident);
    let known = local.is_some();
    let inc = local.unwrap_or_else(|| candidate.clone());
    if inc.finished {
        return RunAlone::Finished {
            safe: inc.safe_to_cut_power == Some(true),
        };
    }
    let resumed = known || inc.steps.iter().any(|s| s.status != StepStatus::Pending);
    RunAlone::Run { inc, resumed }
}

/// etcd's record of the incident, when it is a later finished run of `local` (the same
/// incident, finished at another time): a peer re-ran the failed steps.
pub fn newer_result(local: &Incident, remote: Incident) -> Option<Incident> {
    (remote.incident == local.incident
        && remote.finished
        && remote.finished_at.is_some()
        && remote.finished_at != local.finished_at)
        .then_some(remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::StepRecord;

    fn incident(id: &str, finished_at: Option<&str>, safe: Option<bool>) -> Incident {
        Incident {
            incident: id.into(),
            zone: "b3".into(),
            runbook: "evacuate".into(),
            cause: "fire".into(),
            dry_run: false,
            started_at: "2026-11-25T10:00:00.000Z".into(),
            steps: Vec::new(),
            finished: finished_at.is_some(),
            finished_at: finished_at.map(str::to_string),
            safe_to_cut_power: safe,
            reset_by: None,
            verdict_unannounced: false,
        }
    }

    fn with_steps(mut inc: Incident, statuses: &[StepStatus]) -> Incident {
        inc.steps = statuses
            .iter()
            .enumerate()
            .map(|(i, &status)| StepRecord {
                name: format!("step {i}"),
                status,
                verified: false,
                attempts: 0,
                error: None,
                finished_at: None,
                unannounced: false,
            })
            .collect();
        inc
    }

    const ACT: OnClusterLoss = OnClusterLoss::Act;
    const HOLD: OnClusterLoss = OnClusterLoss::Hold;

    #[test]
    fn the_first_leader_opens_the_incident_in_etcd() {
        let candidate = incident("b3-1", None, None);
        assert_eq!(
            as_leader(None, None, &candidate),
            AsLeader::Write { opens: true }
        );
        assert!(!resumed(
            true,
            &with_steps(candidate, &[StepStatus::Pending])
        ));
    }

    #[test]
    fn a_leader_that_wins_again_resumes_its_own_incident() {
        // This agent opened b3-1, lost its lease half-way, and won the zone back: etcd's
        // record is run from its first unfinished step, announced as resumed.
        let candidate = incident("b3-2", None, None);
        let stored = with_steps(
            incident("b3-1", None, None),
            &[StepStatus::Succeeded, StepStatus::Started],
        );
        assert_eq!(
            as_leader(Some(stored.clone()), None, &candidate),
            AsLeader::Resume(stored.clone())
        );
        assert!(resumed(false, &stored));
    }

    #[test]
    fn a_leader_that_finds_the_incident_finished_adopts_it_and_runs_nothing() {
        let candidate = incident("b3-1", None, None);
        let done = incident("b3-1", Some("10:05"), Some(true));
        assert_eq!(
            as_leader(Some(done.clone()), None, &candidate),
            AsLeader::Adopt(done)
        );
    }

    #[test]
    fn a_follower_adopts_a_finished_incident_and_follows_an_open_one() {
        let candidate = incident("b3-1", None, None);
        let open = incident("b3-1", None, None);
        let done = incident("b3-1", Some("10:05"), Some(false));
        assert_eq!(
            as_follower(Ok(Some(done.clone())), None, &candidate),
            AsFollower::Adopt(done)
        );
        assert_eq!(
            as_follower(Ok(Some(open)), None, &candidate),
            AsFollower::Follow
        );
        assert_eq!(as_follower(Ok(None), None, &candidate), AsFollower::Follow);
        assert_eq!(
            as_follower(Err(Fault::Unreachable), None, &candidate),
            AsFollower::Follow,
            "the leader is alive: follow it even if the incident cannot be read"
        );
    }

    #[test]
    fn a_manual_failover_reopens_only_the_unsafe_run_it_saw_finish() {
        let reopen = Reopen {
            finished_at: Some("10:05".into()),
        };
        let candidate = incident("b3-1", None, None);
        let unsafe_run = incident("b3-1", Some("10:05"), Some(false));
        // The leader writes the candidate (failed steps pending again) and runs it.
        assert_eq!(
            as_leader(Some(unsafe_run.clone()), Some(&reopen), &candidate),
            AsLeader::Write { opens: false }
        );
        // A follower waits: the leader may be reopening it.
        assert_eq!(
            as_follower(Ok(Some(unsafe_run)), Some(&reopen), &candidate),
            AsFollower::Follow
        );
        // Once any agent has re-run it (another finish time), or it was safe, the result
        // is adopted instead of running the steps again.
        for other in [
            incident("b3-1", Some("10:09"), Some(false)),
            incident("b3-1", Some("10:05"), Some(true)),
        ] {
            assert_eq!(
                as_leader(Some(other.clone()), Some(&reopen), &candidate),
                AsLeader::Adopt(other.clone())
            );
            assert_eq!(
                as_follower(Ok(Some(other.clone())), Some(&reopen), &candidate),
                AsFollower::Adopt(other)
            );
        }
        assert!(!reopens(
            Some(&reopen),
            &incident("b3-0", Some("10:05"), Some(false)),
            &candidate
        ));
    }

    #[test]
    fn hold_policy_waits_while_etcd_is_unreachable() {
        assert_eq!(on_loss(HOLD), Loss::Hold);
        assert_eq!(Loss::Hold.role(), Role::Holding);
        assert_eq!(
            unreadable(Fault::Unreachable, HOLD),
            Unreadable::Lost(Loss::Hold)
        );
        let unwritten = unwritten(Fault::Unreachable, HOLD);
        assert_eq!(unwritten, Unwritten::Lost(Loss::Hold));
        assert!(
            !unwritten.goes_on(),
            "a running runbook stops at its next write"
        );
        assert_eq!(
            prepare(Campaigned::Unreachable, HOLD),
            Prepare::Lost(Loss::Hold),
            "and the prepare is skipped"
        );
    }

    #[test]
    fn act_policy_runs_alone_while_etcd_is_unreachable() {
        assert_eq!(on_loss(ACT), Loss::Act);
        assert_eq!(Loss::Act.role(), Role::Alone);
        assert_eq!(
            unreadable(Fault::Unreachable, ACT),
            Unreadable::Lost(Loss::Act)
        );
        let unwritten = unwritten(Fault::Unreachable, ACT);
        assert_eq!(unwritten, Unwritten::Lost(Loss::Act));
        assert!(unwritten.goes_on(), "a running runbook goes on alone");
        assert_eq!(
            prepare(Campaigned::Unreachable, ACT),
            Prepare::Lost(Loss::Act)
        );
    }

    #[test]
    fn a_corrupt_incident_in_etcd_is_left_to_an_operator_reset() {
        for policy in [ACT, HOLD] {
            assert_eq!(unreadable(Fault::Corrupt, policy), Unreadable::GiveUp);
        }
    }

    #[test]
    fn a_deposed_leader_stops_and_follows_whatever_the_policy() {
        for policy in [ACT, HOLD] {
            let unwritten = unwritten(Fault::Deposed, policy);
            assert_eq!(unwritten, Unwritten::Deposed);
            assert!(!unwritten.goes_on());
        }
    }

    #[test]
    fn a_prepare_runs_on_the_zone_leader_only() {
        assert_eq!(prepare(Campaigned::Won, HOLD), Prepare::Lead);
        assert_eq!(
            prepare(Campaigned::Lost { leader: "agent-b" }, ACT),
            Prepare::Follow { leader: "agent-b" }
        );
    }

    #[test]
    fn a_campaign_keeps_a_leadership_this_process_holds_and_revokes_a_stale_one() {
        let me = "agent-a";
        let held = |node, ours| LeaderKey::Held { node, ours };
        assert_eq!(
            claim(LeaderKey::Absent, me),
            Claim::Create {
                revoke_stale: false
            }
        );
        assert_eq!(
            claim(held("agent-b", None), me),
            Claim::Lost { leader: "agent-b" }
        );
        assert_eq!(
            claim(held(me, Some(42)), me),
            Claim::Keep { rev: 42 },
            "won for the prepare, kept for the failover"
        );
        assert_eq!(
            claim(held(me, None), me),
            Claim::Create { revoke_stale: true },
            "this agent's name from before a restart"
        );
    }

    #[test]
    fn an_incident_in_etcd_from_another_runbook_is_not_resumed() {
        let inc = with_steps(
            incident("b3-1", None, None),
            &[StepStatus::Succeeded, StepStatus::Pending],
        );
        assert!(same_runbook(&inc, "evacuate", 2));
        assert!(!same_runbook(&inc, "evacuate", 3));
        assert!(!same_runbook(&inc, "evacuate-v2", 2));
    }

    #[test]
    fn running_alone_resumes_the_local_journal_and_reports_a_finished_incident() {
        let candidate = incident("b3-1", None, None);
        assert_eq!(
            run_alone(None, &candidate),
            RunAlone::Run {
                inc: candidate.clone(),
                resumed: false
            }
        );
        let local = with_steps(incident("b3-1", None, None), &[StepStatus::Pending]);
        assert_eq!(
            run_alone(Some(local.clone()), &candidate),
            RunAlone::Run {
                inc: local,
                resumed: true
            },
            "announced when it was saved: a resume"
        );
        assert_eq!(
            run_alone(
                Some(incident("b3-1", Some("10:05"), Some(true))),
                &candidate
            ),
            RunAlone::Finished { safe: true }
        );
        assert_eq!(
            run_alone(
                Some(incident("b3-0", Some("10:05"), Some(true))),
                &candidate
            ),
            RunAlone::Run {
                inc: candidate.clone(),
                resumed: false
            },
            "another incident in the journal is not this one"
        );
    }

    #[test]
    fn only_a_later_finished_run_of_the_same_incident_replaces_the_local_result() {
        let local = incident("b3-1", Some("10:05"), Some(false));
        let rerun = incident("b3-1", Some("10:09"), Some(true));
        assert_eq!(
            newer_result(&local, rerun.clone()).map(|i| i.finished_at),
            Some(Some("10:09".into()))
        );
        assert!(
            newer_result(&local, local.clone()).is_none(),
            "the same run"
        );
        assert!(
            newer_result(&local, incident("b3-1", None, None)).is_none(),
            "a re-run still going"
        );
        assert!(
            newer_result(&local, incident("b3-2", Some("10:09"), Some(true))).is_none(),
            "another incident"
        );
    }
}
