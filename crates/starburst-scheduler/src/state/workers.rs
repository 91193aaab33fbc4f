//! Workers: how many to launch, what a launch report, a status or a heartbeat says about
//! them, and what becomes of the tasks of a worker that was lost.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use starburst_cloud::{
    LaunchReport, StopCause, StopInfo, TaskId, WorkerId, WorkerPhase, WorkerStatus,
};

use super::{Billing, Core, Slot};
use crate::timeline::session_time;
use crate::{FailureCause, TaskFailure, TaskState};

/// A worker the session lost: why, and the platform's words.
pub(crate) type Lost = (WorkerId, StopCause, String);

/// A busy worker whose heartbeat is to be read: when it was launched, the last beat seen
/// (its number, and when), and since when it is busy.
pub(crate) type Busy = (WorkerId, Duration, Option<(u64, Duration)>, Duration);

/// What reading a busy worker's heartbeat means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// It moved: the worker lives.
    Moved,
    /// It did not move, within the lease (or the start timeout).
    Quiet,
    /// It did not move for too long: the worker is to be stopped as lost.
    Expired(StopCause, String),
}

/// The cause and advice of a task that failed because its worker was lost for `cause`.
pub(crate) fn lost_cause(cause: StopCause) -> (FailureCause, &'static str) {
    match cause {
        StopCause::ImagePullFailed => (
            FailureCause::WorkerStartFailed,
            "workers cannot start until the worker image can be pulled; check that it exists and that the execution role may pull it",
        ),
        StopCause::EvaluatorStartFailed => (
            FailureCause::WorkerStartFailed,
            "workers cannot start R, or (sync mode) could not install the environment's packages; the worker log below says why (is the starburst R package installed in the library paths the workers use? do the pinned versions exist as binaries?)",
        ),
        StopCause::StartTimedOut => (
            FailureCause::WorkerStartFailed,
            "no worker got going within the start limit: on Fargate, check capacity in the region, the image size, and that the subnets reach ECR and S3 (a public IP, or a NAT gateway or VPC endpoints)",
        ),
        StopCause::OutOfMemory => (
            FailureCause::WorkerLost,
            "give workers more memory (plan(starburst, memory = ...))",
        ),
        StopCause::Killed => (
            FailureCause::WorkerLost,
            "the worker process was killed (SIGKILL) without the platform saying why; if it recurs, check the worker log below and give workers more memory",
        ),
        StopCause::PlatformStopped | StopCause::HostRetired => (
            FailureCause::WorkerLost,
            "the platform took the worker away (maintenance or a host retirement); this is not caused by the future, and it was re-run as often as max_retries allows",
        ),
        StopCause::SpotInterruption => (
            FailureCause::WorkerLost,
            "Spot capacity was taken back; use spot = FALSE for futures that must not be interrupted, or raise max_retries",
        ),
        _ => (
            FailureCause::WorkerLost,
            "check the worker log below; the task was not re-run again",
        ),
    }
}

/// The failure of a task whose worker was lost for `cause` after `attempts` runs.
pub(crate) fn lost_failure(
    id: &WorkerId,
    cause: StopCause,
    message: &str,
    attempts: u32,
    log_tail: Vec<String>,
) -> TaskFailure {
    let (failure, advice) = lost_cause(cause);
    TaskFailure {
        cause: failure,
        message: format!("{cause} (worker {id}: {message}) after {attempts} attempt(s); {advice}"),
        log_tail,
    }
}

impl Core {
    /// How many workers to launch now: for the tasks no idle worker can take, within the
    /// worker limit, one launch call's batch, and what the caps allow.
    pub(crate) fn launch_wanted(&self, now: Duration) -> u32 {
        let idle = self.idle().len();
        let need = self.queue.len().saturating_sub(idle) as u32;
        let room = self
            .config
            .max_workers
            .saturating_sub(self.workers.len() as u32);
        let want = need.min(room).min(self.config.launch_batch);
        if want > 0 {
            self.affordable(want, now)
        } else {
            0
        }
    }

    /// Workers were launched (asked for at `requested_at`, answered at `now`): the meter bills
    /// them from the request. When nothing runs and nothing could start, what waits fails
    /// instead of hanging. True when something changed.
    pub(crate) fn launched(
        &mut self,
        report: &LaunchReport,
        requested_at: Duration,
        now: Duration,
    ) -> bool {
        self.launched.extend(report.launched.iter().cloned());
        for id in &report.launched {
            self.journal.launched(id, requested_at);
        }
        let spec = self.config.spec.clone();
        for id in &report.launched {
            if let Some(m) = self.meter.as_mut() {
                if let Err(e) = m.worker_started(
                    id.clone(),
                    spec.size,
                    spec.arch,
                    spec.capacity,
                    requested_at,
                ) {
                    tracing::warn!(worker = %id, error = %e, "the cost meter cannot price a worker");
                    continue;
                }
                self.billing.insert(
                    id.clone(),
                    Billing {
                        last_alive: requested_at,
                        stop_requested: None,
                        stop_sent: false,
                    },
                );
            }
        }
        for id in &report.launched {
            self.workers.insert(
                id.clone(),
                Slot {
                    next_seq: 0,
                    tasks: VecDeque::new(),
                    launched_at: now,
                    beat: None,
                    busy_since: now,
                    phase: WorkerPhase::Provisioning,
                    ready: false,
                },
            );
        }
        if report.launched.is_empty() && self.workers.is_empty() && !report.failures.is_empty() {
            let failure = TaskFailure::new(
                FailureCause::LaunchFailed,
                format!("no worker could be started: {}", report.failures.join("; ")),
            );
            self.fail_queued(&failure);
            return true;
        }
        !report.launched.is_empty()
    }

    /// The workers to describe: the session's, and the stopping ones the meter still bills.
    pub(crate) fn watched(&self) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self.workers.keys().cloned().collect();
        ids.extend(
            self.billing
                .keys()
                .filter(|id| !self.workers.contains_key(*id))
                .cloned(),
        );
        ids
    }

    /// What the platform reports at `now` (`wall` on the platform's clock): the meter takes
    /// stop times, workers their phase; returns the session's workers that stopped.
    pub(crate) fn statuses(
        &mut self,
        statuses: &[WorkerStatus],
        now: Duration,
        wall: SystemTime,
    ) -> Vec<Lost> {
        self.meter_statuses(statuses, now, wall);
        let mut lost = Vec::new();
        for s in statuses {
            let Some(slot) = self.workers.get_mut(&s.id) else {
                continue;
            };
            slot.phase = s.phase;
            if s.phase == WorkerPhase::Stopped {
                let stop = s.stop.clone().unwrap_or(StopInfo {
                    cause: StopCause::Other,
                    exit_code: None,
                    message: "stopped".into(),
                });
                lost.push((s.id.clone(), stop.cause, stop.message));
            }
        }
        lost
    }

    /// Busy workers whose heartbeat is to be read (not those in `lost`).
    pub(crate) fn busy(&self, lost: &[Lost]) -> Vec<Busy> {
        self.workers
            .iter()
            .filter(|(id, s)| !s.tasks.is_empty() && !lost.iter().any(|(l, _, _)| l == *id))
            .map(|(id, s)| (id.clone(), s.launched_at, s.beat, s.busy_since))
            .collect()
    }

    /// A busy worker's heartbeat was read at `now` (`seen`: its number, `None` when there is
    /// none yet): whether it moved, or for how long it has not.
    pub(crate) fn beat(&mut self, busy: &Busy, seen: Option<u64>, now: Duration) -> Beat {
        let (id, launched_at, beat, busy_since) = busy;
        let moved = match (seen, beat) {
            (Some(s), Some((old, _))) => s != *old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved {
            if let Some(slot) = self.workers.get_mut(id) {
                slot.beat = Some((seen.unwrap_or_default(), now));
                slot.ready = true;
            }
            self.journal.beat(id, now);
            self.succeeded(super::trouble::Path::Launch);
            return Beat::Moved;
        }
        let late = match beat {
            Some((_, at)) => now.saturating_sub((*at).max(*busy_since)) > self.config.lease,
            None => now.saturating_sub(*launched_at) > self.config.start_timeout,
        };
        match (late, beat) {
            (false, _) => Beat::Quiet,
            (true, Some(_)) => Beat::Expired(
                StopCause::Other,
                format!(
                    "its heartbeat stopped for more than {:?}",
                    self.config.lease
                ),
            ),
            (true, None) => Beat::Expired(
                StopCause::StartTimedOut,
                format!("it did not start within {:?}", self.config.start_timeout),
            ),
        }
    }

    /// Takes a lost worker out of the session; returns its tasks (`None` if it was gone).
    pub(crate) fn remove_worker(&mut self, id: &WorkerId) -> Option<Vec<TaskId>> {
        self.workers.remove(id).map(|slot| slot.tasks.into())
    }

    /// Whether losing a worker for `cause` fails one of its `tasks` (or, for a cause no
    /// worker of the session can overcome, the queue): the driver then reads the worker's log
    /// tail for the failure before [`Core::worker_lost`].
    pub(crate) fn lost_fails(&self, tasks: &[TaskId], cause: StopCause) -> bool {
        if cause.is_fatal_for_spec() {
            return true;
        }
        // The first unfinished assignment is the one that ran.
        let ran = tasks
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .find(|t| t.state == TaskState::Running);
        ran.is_some_and(|t| !t.cancelled && self.lost_run_fails(t.losses, cause))
    }

    /// Whether a run lost for `cause` fails a task lost `losses` times before it.
    fn lost_run_fails(&self, losses: u32, cause: StopCause) -> bool {
        // A worker that exited cleanly (idle timeout racing an assignment) or never got to run
        // (a start failure that may pass) did not fail the task; it does not use up a retry.
        let losses = losses + u32::from(!cause.never_ran());
        cause.is_fatal_for_spec() || !cause.is_retryable() || losses > self.config.max_retries
    }

    /// The tasks of `worker`, lost for `cause` (`message`: the platform's words), after its
    /// committed results were read: the first unfinished assignment is the one that ran and
    /// counts as a lost run (it fails with `log_tail` once it may not run again); the ones
    /// prefetched behind it never started and are re-queued as they are. Every re-run is a
    /// new attempt, so its events are kept apart from a lost run's. A cause no worker of the
    /// session can overcome (an image that cannot be pulled) also fails the queue and every
    /// later future. Returns the re-queued tasks.
    pub(crate) fn worker_lost(
        &mut self,
        worker: &WorkerId,
        tasks: Vec<TaskId>,
        cause: StopCause,
        message: &str,
        log_tail: &[String],
    ) -> Vec<TaskId> {
        let mut ran = true;
        let mut requeued = Vec::new();
        for task_id in tasks {
            let Some(t) = self
                .tasks
                .get(&task_id)
                .filter(|t| t.state == TaskState::Running)
            else {
                continue;
            };
            let started = std::mem::replace(&mut ran, false);
            if t.cancelled {
                self.finish(&task_id, TaskState::Cancelled, None, None);
                continue;
            }
            if started {
                let fails = self.lost_run_fails(t.losses, cause);
                let t = self.tasks.get_mut(&task_id).expect("checked above");
                if !cause.never_ran() {
                    t.losses += 1;
                }
                if fails {
                    let failure =
                        lost_failure(worker, cause, message, t.losses.max(1), log_tail.to_vec());
                    self.finish(&task_id, TaskState::Failed, None, Some(failure));
                    continue;
                }
            }
            let t = self.tasks.get_mut(&task_id).expect("checked above");
            t.attempt += 1;
            t.next_event = 0;
            t.known_events = 0;
            t.state = TaskState::Queued;
            t.worker = None;
            self.journal.requeued(&task_id);
            requeued.push(task_id);
        }
        for task_id in requeued.iter().rev() {
            self.queue.push_front(task_id.clone());
        }
        if cause.is_fatal_for_spec() {
            let failure = lost_failure(worker, cause, message, 1, log_tail.to_vec());
            self.fatal = Some(failure.clone());
            self.fail_queued(&failure);
        }
        self.dirty = true;
        requeued
    }

    /// Feeds the platform's view of workers to the journal (phases, stops) and of billed
    /// workers to the meter: a stopped worker's stop time
    /// (the platform's, clamped into the window the scheduler observed: not before it was last
    /// seen alive or asked to stop, not after now, so a skewed clock cannot move it), and for
    /// one the platform no longer reports that was asked to stop, the stop-latency bound.
    pub(crate) fn meter_statuses(
        &mut self,
        statuses: &[WorkerStatus],
        now: Duration,
        wall: SystemTime,
    ) {
        self.journal.observed(statuses, now, wall);
        let latency = self.budget.map_or(Duration::ZERO, |b| b.stop_latency);
        let Self { meter, billing, .. } = self;
        let Some(meter) = meter.as_mut() else {
            return;
        };
        for s in statuses {
            let Some(b) = billing.get_mut(&s.id) else {
                continue;
            };
            if s.phase == WorkerPhase::Stopped {
                let lo = b
                    .last_alive
                    .max(b.stop_requested.unwrap_or_default())
                    .min(now);
                let at = s
                    .stopped_at
                    .map_or(now, |t| session_time(now, wall, t))
                    .clamp(lo, now);
                meter.worker_stopped(&s.id, at);
                billing.remove(&s.id);
            } else {
                b.last_alive = now;
            }
        }
        let reported: HashSet<&WorkerId> = statuses.iter().map(|s| &s.id).collect();
        let gone: Vec<(WorkerId, Duration)> = billing
            .iter()
            .filter(|(id, _)| !reported.contains(id))
            .filter_map(|(id, b)| {
                b.stop_requested
                    .map(|r| (id.clone(), r + latency))
                    .filter(|(_, end)| *end <= now)
            })
            .collect();
        for (id, end) in gone {
            meter.worker_stopped(&id, end);
            billing.remove(&id);
        }
    }

    /// The session closes at `now`: pending tasks end cancelled; returns the session's workers
    /// with the next free place in their inbox (for a stop message), and every billed worker
    /// (all of which are to be stopped), recorded as stopping.
    pub(crate) fn close_all(&mut self, now: Duration) -> (Vec<(WorkerId, u64)>, Vec<WorkerId>) {
        self.finish_pending(None);
        let inboxes: Vec<(WorkerId, u64)> = self
            .workers
            .iter()
            .map(|(id, s)| (id.clone(), s.next_seq))
            .collect();
        let mut billed: Vec<WorkerId> = inboxes.iter().map(|(id, _)| id.clone()).collect();
        billed.extend(
            self.billing
                .keys()
                .filter(|id| !self.workers.contains_key(*id))
                .cloned(),
        );
        self.stopping(&billed, now, false);
        (inboxes, billed)
    }

    /// The engine stops watching workers: those still billed are counted until their stop
    /// request plus the stop-latency bound.
    pub(crate) fn close_meter(&mut self) {
        let latency = self.budget.map_or(Duration::ZERO, |b| b.stop_latency);
        let Self { meter, billing, .. } = self;
        if let Some(meter) = meter.as_mut() {
            for (id, b) in std::mem::take(billing) {
                let end = b.stop_requested.map_or(b.last_alive, |r| r + latency);
                meter.worker_stopped(&id, end);
            }
        }
    }
}
