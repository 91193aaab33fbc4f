//! The scheduler's core ([`Core`]): the session's tasks, workers, spend and troubles, and the
//! synchronous decisions the driver acts on. Its parts: [`dispatch`] (assignments, cancels,
//! reads and what they return), [`workers`] (launches, status, heartbeats, lost workers),
//! [`trouble`] (requests that keep failing, and the failure bound), [`budget`] (the cost
//! meter and the spending caps).

pub(crate) mod budget;
pub(crate) mod dispatch;
pub(crate) mod trouble;
pub(crate) mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{TaskId, WorkerId, WorkerPhase};
use starburst_cost::{Budget, Meter};
use starburst_serialization::{BlobHash, BlobRef};

use crate::timeline::Journal;
use crate::{FailureCause, SchedulerConfig, TaskFailure, TaskState};
use trouble::{Path, Trouble};

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) completed: u64,
    pub(crate) roundtrip: Duration,
    pub(crate) worker_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) label: Option<String>,
    pub(crate) payload: Bytes,
    pub(crate) blobs: Vec<BlobRef>,
    pub(crate) attempt: u32,
    pub(crate) state: TaskState,
    pub(crate) submitted_unix_ms: u64,
    pub(crate) events: Vec<Bytes>,
    /// The next event of `attempt` to read.
    pub(crate) next_event: u32,
    /// Events of `attempt` known to be written (from heartbeats): read without probing.
    pub(crate) known_events: u32,
    pub(crate) value: Option<Bytes>,
    pub(crate) failure: Option<TaskFailure>,
    pub(crate) worker: Option<WorkerId>,
    /// Once final: the worker of the last attempt.
    pub(crate) ran_on: Option<WorkerId>,
    /// Where in its worker's inbox the current assignment is.
    pub(crate) inbox_seq: u64,
    /// A cancellation marker (and an inbox `Skip`) is still to be written.
    pub(crate) cancel: bool,
    /// Cancellation was asked for; a lost worker's task then ends cancelled, not re-run.
    pub(crate) cancelled: bool,
    /// Runs lost to worker failures (a clean exit before the task started does not count).
    pub(crate) losses: u32,
    /// When the task reached the head of its worker's inbox (is running, as far as the client
    /// knows).
    pub(crate) started_at: Duration,
    /// Stores that cannot notify: when to read its result next (head of an inbox only).
    pub(crate) next_poll: Duration,
    /// The store keeps failing for this task's own objects (its assignment, cancel or result).
    pub(crate) trouble: Option<Trouble>,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) next_seq: u64,
    /// Tasks assigned to the worker, in inbox order; the first one runs (or is about to), the
    /// others are prefetched.
    pub(crate) tasks: VecDeque<TaskId>,
    pub(crate) launched_at: Duration,
    pub(crate) beat: Option<(u64, Duration)>,
    /// When the task at the head of `tasks` started, as the client learned it.
    pub(crate) busy_since: Duration,
    /// The platform's phase, from the last describe.
    pub(crate) phase: WorkerPhase,
    /// True once the worker showed it runs tasks (a heartbeat, or a result).
    pub(crate) ready: bool,
}

/// What the meter needs to know about a billed worker beyond the meter's own record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Billing {
    /// When the platform last reported it not stopped (or when it was launched).
    pub(crate) last_alive: Duration,
    /// When a stop was asked for.
    pub(crate) stop_requested: Option<Duration>,
    /// The stop request reached the compute port.
    pub(crate) stop_sent: bool,
}

/// The scheduler's core: the whole state of a session and every decision about it, with no
/// I/O, no locks and no runtime. The driver ([`crate::driver`]) asks it what to send, sends
/// it, and tells it what came back; property tests drive it directly.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: Arc<SchedulerConfig>,
    /// The caps (`None` when the session cannot be priced).
    pub(crate) budget: Option<Budget>,
    /// USD per hour of one worker of the session's spec.
    pub(crate) worker_hourly: f64,
    pub(crate) next_task: u64,
    pub(crate) tasks: HashMap<TaskId, Task, foldhash::fast::RandomState>,
    pub(crate) queue: VecDeque<TaskId>,
    pub(crate) workers: BTreeMap<WorkerId, Slot>,
    /// Blobs stored for this session: hash -> raw size.
    pub(crate) blobs: HashMap<BlobHash, u64>,
    /// Blobs this session uploaded (what [`crate::SessionInfo`] reports).
    pub(crate) blob_uploads: crate::report::BlobUploads,
    pub(crate) closed: bool,
    pub(crate) fatal: Option<TaskFailure>,
    pub(crate) dirty: bool,
    /// Some running task may be marked for a cancel still to be written (spares a decision
    /// the scan of every running task when none is).
    pub(crate) cancels_marked: bool,
    pub(crate) stats: Stats,
    /// Every worker launched, in launch order.
    pub(crate) launched: Vec<WorkerId>,
    /// Moving average of how long tasks take on a worker (from their results' timing), for the
    /// first read of a running task's result on stores that cannot notify.
    pub(crate) estimate: Option<Duration>,
    /// Moving average of how long one of this session's writes to the store takes: a result
    /// lands about that long after its worker finished.
    pub(crate) write_latency: Duration,
    /// The cost meter (`None` when the session cannot be priced).
    pub(crate) meter: Option<Meter>,
    /// Workers the meter counts as billed.
    pub(crate) billing: BTreeMap<WorkerId, Billing>,
    /// When the caps were last checked.
    pub(crate) last_budget_check: Option<Duration>,
    /// The session reached a cap; `fatal` holds the failure of every future it cannot run.
    pub(crate) budget_exceeded: bool,
    /// The last client beat's number.
    pub(crate) client_seq: u64,
    /// Kinds of requests failing now, and since when.
    pub(crate) trouble: BTreeMap<Path, Trouble>,
    /// Messages for the user that the caller has not taken yet ([`Scheduler::notices`]).
    pub(crate) notices: Vec<String>,
    /// The session's history ([`crate::Timeline`]).
    pub(crate) journal: Journal,
    /// The session time when the core was last taken (`Shared::lock`): the time of what
    /// calls without a time of their own record in the journal (a task's end).
    pub(crate) now: Duration,
}

impl Core {
    /// The core of a new session: its meter and caps from `config.budget`. Caps that cannot be
    /// enforced make the session run nothing (every future fails, saying why) rather than run
    /// unbounded.
    pub(crate) fn new(config: Arc<SchedulerConfig>) -> Self {
        let mut core = Self {
            budget: None,
            worker_hourly: 0.0,
            next_task: 0,
            tasks: HashMap::default(),
            queue: VecDeque::new(),
            workers: BTreeMap::new(),
            blobs: HashMap::new(),
            blob_uploads: Default::default(),
            closed: false,
            fatal: None,
            dirty: false,
            cancels_marked: false,
            stats: Stats::default(),
            launched: Vec::new(),
            estimate: None,
            write_latency: Duration::ZERO,
            meter: None,
            billing: BTreeMap::new(),
            last_budget_check: None,
            budget_exceeded: false,
            client_seq: 0,
            trouble: BTreeMap::new(),
            notices: Vec::new(),
            journal: Journal::default(),
            now: Duration::ZERO,
            config: config.clone(),
        };
        if let Some(b) = &config.budget {
            let priced = b.validate(&config.spec).and_then(|hourly| {
                Ok((
                    b.budget(config.health_interval)?,
                    Meter::new(&b.catalog, &b.region)?,
                    hourly,
                ))
            });
            match priced {
                Ok((caps, meter, hourly)) => {
                    core.budget = Some(caps);
                    core.meter = Some(meter);
                    core.worker_hourly = hourly;
                }
                Err(e) if b.max_cost.is_some() || b.max_hourly_cost.is_some() => {
                    core.fatal = Some(TaskFailure::new(
                        FailureCause::InvalidArgument,
                        format!(
                            "the session's spending caps cannot be enforced: {e}; no future runs in this session"
                        ),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the session's workers cannot be priced; no cost meter")
                }
            }
        }
        core
    }

    /// A new task id.
    pub(crate) fn next_id(&mut self) -> TaskId {
        self.next_task += 1;
        TaskId::new(format!("t{:07}", self.next_task)).expect("a valid task id")
    }

    /// Queues a task (or, in a session that can run nothing more, ends it failed at once with
    /// the session's failure).
    pub(crate) fn submit(
        &mut self,
        id: TaskId,
        label: Option<String>,
        payload: Bytes,
        blobs: Vec<BlobRef>,
        submitted_unix_ms: u64,
    ) {
        self.journal.submitted(&id, label.as_deref(), self.now);
        let mut task = Task {
            label,
            payload,
            blobs,
            attempt: 1,
            state: TaskState::Queued,
            submitted_unix_ms,
            events: Vec::new(),
            next_event: 0,
            known_events: 0,
            value: None,
            failure: None,
            worker: None,
            ran_on: None,
            inbox_seq: 0,
            cancel: false,
            cancelled: false,
            losses: 0,
            started_at: Duration::ZERO,
            next_poll: Duration::ZERO,
            trouble: None,
        };
        if let Some(f) = self.fatal.clone() {
            task.state = TaskState::Failed;
            task.failure = Some(f);
        } else {
            self.queue.push_back(id.clone());
        }
        self.tasks.insert(id, task);
    }

    /// Cancels tasks: queued ones end at once, running ones get a marker written next.
    pub(crate) fn cancel(&mut self, ids: &[TaskId]) {
        for id in ids {
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            match t.state {
                TaskState::Queued => self.finish(id, TaskState::Cancelled, None, None),
                TaskState::Running => {
                    t.cancel = true;
                    t.cancelled = true;
                    self.cancels_marked = true;
                }
                _ => {}
            }
        }
    }

    /// Forgets finished tasks (their outcome was recorded by the caller).
    pub(crate) fn release(&mut self, ids: &[TaskId]) {
        for id in ids {
            if self.tasks.get(id).is_some_and(|t| t.state.is_final()) {
                self.tasks.remove(id);
            }
        }
    }

    /// Workers with nothing assigned.
    pub(crate) fn idle(&self) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, s)| s.tasks.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// `id` reaches the head of its worker's inbox at `now`: it runs from now on, as far as
    /// the client knows, and its result is first read once a typical task would be done and
    /// its result written.
    pub(crate) fn start(&mut self, id: &TaskId, now: Duration) {
        let config = &self.config;
        let first = (self.estimate.unwrap_or(Duration::ZERO) + self.write_latency)
            .clamp(config.poll_min, config.poll_max.max(config.poll_min));
        self.journal.began(id, now);
        let worker = self.tasks.get_mut(id).and_then(|t| {
            t.started_at = now;
            // A cancelled task was probably skipped by the worker: its result is there.
            t.next_poll = if t.cancelled { now } else { now + first };
            t.worker.clone()
        });
        if let Some(slot) = worker.and_then(|w| self.workers.get_mut(&w)) {
            slot.busy_since = now;
        }
    }

    /// One of the session's writes to the store took `took`.
    pub(crate) fn wrote(&mut self, took: Duration) {
        // Exponential moving average, weight 1/8.
        self.write_latency = (self.write_latency * 7 + took) / 8;
    }

    /// Removes `id` from its worker's assignments; the next one, if any, starts. A running task
    /// is in its own worker's inbox and nowhere else (a look-up, not a scan of every worker); a
    /// queued one is in none.
    pub(crate) fn unassign(&mut self, id: &TaskId, now: Duration) {
        let Some(slot) = self
            .tasks
            .get(id)
            .and_then(|t| t.worker.clone())
            .and_then(|w| self.workers.get_mut(&w))
        else {
            return;
        };
        let Some(pos) = slot.tasks.iter().position(|t| t == id) else {
            return;
        };
        slot.tasks.remove(pos);
        if pos == 0
            && let Some(next) = slot.tasks.front().cloned()
        {
            self.start(&next, now);
        }
    }

    /// Records that a stop of `ids` is asked for at `now` (the meter bills them until the
    /// platform reports them stopped).
    pub(crate) fn stopping(&mut self, ids: &[WorkerId], now: Duration, sent: bool) {
        for id in ids {
            if let Some(b) = self.billing.get_mut(id) {
                b.stop_requested.get_or_insert(now);
                b.stop_sent |= sent;
            }
            if let Some(m) = self.meter.as_mut() {
                m.worker_stopping(id, now);
            }
        }
    }

    /// The task at the head of `worker`'s inbox.
    pub(crate) fn head(&self, worker: &WorkerId) -> Option<&TaskId> {
        self.workers.get(worker).and_then(|s| s.tasks.front())
    }

    /// Ends a task that is not final yet.
    pub(crate) fn finish(
        &mut self,
        id: &TaskId,
        state: TaskState,
        value: Option<Bytes>,
        failure: Option<TaskFailure>,
    ) {
        if let Some(t) = self.tasks.get_mut(id) {
            if t.state.is_final() {
                return;
            }
            if t.state == TaskState::Queued {
                self.queue.retain(|q| q != id);
            }
            let cause = failure.as_ref().map(|f| f.cause.as_str());
            self.journal.ended(id, state, cause, self.now);
            t.state = state;
            t.value = value;
            t.failure = failure;
            t.payload = Bytes::new();
            t.ran_on = t.worker.take().or(t.ran_on.take());
            self.dirty = true;
        }
    }

    /// Ends every unfinished task with `failure` (or cancelled, without one).
    pub(crate) fn finish_pending(&mut self, failure: Option<TaskFailure>) {
        let pending: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_final())
            .map(|(id, _)| id.clone())
            .collect();
        let state = match failure {
            Some(_) => TaskState::Failed,
            None => TaskState::Cancelled,
        };
        for id in pending {
            self.finish(&id, state, None, failure.clone());
        }
    }

    /// Fails every queued task with `failure`; true when there was one.
    pub(crate) fn fail_queued(&mut self, failure: &TaskFailure) -> bool {
        let queued: Vec<TaskId> = self.queue.iter().cloned().collect();
        for id in &queued {
            self.finish(id, TaskState::Failed, None, Some(failure.clone()));
        }
        !queued.is_empty()
    }
}
