//! starburst's client-side brain. A [`Scheduler`] owns one session: it queues submitted tasks
//! without blocking, uploads each blob once, starts workers on demand up to the session's
//! limit, writes assignments to idle workers' inboxes, learns about events and results from the
//! object store (woken by store notifications where the store has them, adaptive polling
//! otherwise), watches workers through the compute port and their heartbeats, re-queues the
//! task of a lost worker up to a retry limit, and fails it with a classed cause and the worker's
//! log tail after that. Callers wait for results on a condition variable, never by sleeping.
//!
//! It also keeps the session's live cost meter ([`Scheduler::cost`]) from its workers' launch
//! and stop times, and enforces the hard spending caps of [`BudgetConfig`] with the decisions
//! of [`starburst_cost::Budget`]: a launch that could push the projected spend past `max_cost`
//! (or the hourly price past `max_hourly_cost`) does not happen, workers are stopped before the
//! spend can pass the cap, and the futures the session can no longer afford fail with the class
//! `starburst_budget_exceeded`.
//!
//! Every timed decision goes through the [`Clock`] port, so tests drive time by hand. The
//! scheduler knows ports only: no AWS, no file system, no R.

#![deny(missing_docs)]

mod error;
mod requests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{
    Clock, Compute, LogQuery, Logs, ObjectPath, ObjectStore, ObjectStoreExt, SessionId, StopCause,
    TaskId, WorkerId, WorkerPhase, WorkerSpec, WorkerStatus,
};
use starburst_cost::{Budget, Meter};
use starburst_serialization::{
    self as wire, BlobHash, BlobRef, EncodeOptions, FailureKind, InboxMeta, Limits, Outcome,
    SessionLayout, TaskMeta, unix_ms,
};

pub use error::{Error, Result};
pub use requests::RequestLimits;
pub use starburst_cost::{Catalog, MeterReport};

/// The R condition class of futures that fail because the session reached a spending cap.
pub const BUDGET_EXCEEDED: &str = "starburst_budget_exceeded";

/// A session's prices and hard spending caps.
///
/// The guarantee (see [`starburst_cost::Budget`]): the session's billed spend never passes
/// `max_cost` as long as `check_interval` and `stop_latency` are true upper bounds. The
/// scheduler checks the caps every [`SchedulerConfig::health_interval`] and uses the larger of
/// that and `check_interval` as the bound, so `check_interval` is the margin for a slow round
/// of the scheduler (a store or compute call that hangs).
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// The prices.
    pub catalog: Catalog,
    /// The region whose prices apply (`us-east-1`). A local session is priced as if its workers
    /// ran on Fargate in this region.
    pub region: String,
    /// USD per session, a hard cap; `None` for no cap.
    pub max_cost: Option<f64>,
    /// USD per hour summed over the billed workers, a hard cap; `None` for no cap.
    pub max_hourly_cost: Option<f64>,
    /// The longest time between two checks of the caps the guarantee may assume. Default 30 s.
    pub check_interval: Duration,
    /// The longest time from a stop request to the end of a worker's billing, the stop call
    /// itself included. Default 60 s, safe for Fargate: ECS sends SIGTERM, waits the task's stop
    /// timeout (30 s by default) before SIGKILL, and then needs a few seconds to end the task.
    /// Local workers stop within 5 s (a 3 s grace period, then SIGKILL).
    pub stop_latency: Duration,
}

impl BudgetConfig {
    /// No caps, `catalog`'s prices for `region`, and the default timing bounds.
    pub fn new(catalog: Catalog, region: impl Into<String>) -> Self {
        Self {
            catalog,
            region: region.into(),
            max_cost: None,
            max_hourly_cost: None,
            check_interval: Duration::from_secs(30),
            stop_latency: Duration::from_secs(60),
        }
    }

    /// The same with the caps `max_cost` (USD per session) and `max_hourly_cost` (USD per hour).
    pub fn with_caps(mut self, max_cost: Option<f64>, max_hourly_cost: Option<f64>) -> Self {
        self.max_cost = max_cost;
        self.max_hourly_cost = max_hourly_cost;
        self
    }

    /// The USD per hour of one worker of `spec`; fails when the caps are impossible or the
    /// catalog cannot price `spec` in the region (the error says what to do).
    pub fn validate(&self, spec: &WorkerSpec) -> starburst_cost::Result<f64> {
        self.budget(Duration::ZERO)?;
        Meter::new(&self.catalog, &self.region)?.hourly(spec.size, spec.arch, spec.capacity)
    }

    fn budget(&self, health_interval: Duration) -> starburst_cost::Result<Budget> {
        Budget::new(
            self.max_cost,
            self.max_hourly_cost,
            self.check_interval.max(health_interval),
            self.stop_latency,
        )
    }
}

/// A session's spend so far ([`Scheduler::cost`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CostReport {
    /// The region whose prices apply.
    pub region: String,
    /// The session cap, USD.
    pub max_cost: Option<f64>,
    /// The hourly cap, USD per hour.
    pub max_hourly_cost: Option<f64>,
    /// USD per hour of one worker of the session's size, architecture and capacity.
    pub worker_hourly: f64,
    /// Workers, billed vCPU- and GB-seconds, USD (at the workers' capacity and on-demand) and
    /// the current hourly rate, from the workers' launch and stop times.
    pub meter: MeterReport,
    /// True once the session reached a cap: its pending futures failed with
    /// [`BUDGET_EXCEEDED`] and new ones fail at once.
    pub exceeded: bool,
    /// When the caps were last checked, on the session clock.
    pub last_check: Option<Duration>,
}

/// How a session schedules.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The session.
    pub session_id: SessionId,
    /// At most this many workers at once.
    pub max_workers: u32,
    /// What each worker is.
    pub spec: WorkerSpec,
    /// How often a task whose worker was lost is re-run before it fails.
    pub max_retries: u32,
    /// Shortest wait between reads of a running task's result (stores that cannot notify).
    pub poll_min: Duration,
    /// Longest wait between reads of a running task's result, and the safety-net wait of a
    /// store that notifies.
    pub poll_max: Duration,
    /// At most this many assignments written to a busy worker's inbox ahead of the task it
    /// runs, so it goes on without waiting for the client. Only while more tasks wait than
    /// the session has workers: the last tasks of a queue never wait behind a busy worker
    /// while another one could take them. 0 turns prefetching off.
    pub prefetch: u32,
    /// How often worker status and heartbeats are checked.
    pub health_interval: Duration,
    /// A busy worker whose heartbeat has not moved for this long is lost.
    pub lease: Duration,
    /// A worker that has not sent its first heartbeat within this long is lost.
    pub start_timeout: Duration,
    /// At most this many workers per launch call (Fargate's RunTask takes 10).
    pub launch_batch: u32,
    /// Compression of what the scheduler writes.
    pub encode: EncodeOptions,
    /// Prices of the cost meter and spending caps; `None` for a session whose workers cannot
    /// be priced (no meter, no caps).
    pub budget: Option<BudgetConfig>,
    /// How often the client's session heartbeat ([`wire::ClientBeat`]) is rewritten. Workers
    /// stop when it has not moved for their orphan timeout, so this must be well below it (a
    /// fifth, say). `None` writes none (workers that follow it then stop after their orphan
    /// timeout).
    pub client_beat: Option<Duration>,
    /// The workers' orphan timeout: how long a worker goes on without seeing the session
    /// heartbeat move. With a `max_cost`, a worker is launched only while the budget leaves
    /// at least this plus two heartbeat periods, so that the cap holds even if this client
    /// dies right after (see [`starburst_cost::Budget::unattended_launches`]).
    pub orphan_timeout: Duration,
    /// The longest a kind of request (the store, launches, worker status) may keep failing
    /// with errors that may pass before the futures waiting on it fail with a classed error
    /// that names the cause. Failures that waiting cannot fix (access denied, no usable
    /// credentials) fail them at once.
    pub failure_timeout: Duration,
    /// How many requests the session keeps in flight (see [`RequestLimits`]).
    pub requests: RequestLimits,
}

impl SchedulerConfig {
    /// Defaults for a session of `max_workers` workers of `spec`.
    pub fn new(session_id: SessionId, max_workers: u32, spec: WorkerSpec) -> Self {
        Self {
            session_id,
            max_workers: max_workers.max(1),
            spec,
            max_retries: 2,
            poll_min: Duration::from_millis(5),
            poll_max: Duration::from_secs(1),
            prefetch: 1,
            health_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            start_timeout: Duration::from_secs(600),
            launch_batch: 10,
            encode: EncodeOptions::PLAIN,
            budget: Some(BudgetConfig::new(Catalog::builtin(), "us-east-1")),
            client_beat: Some(Duration::from_secs(30)),
            orphan_timeout: Duration::from_secs(300),
            failure_timeout: Duration::from_secs(180),
            requests: RequestLimits::S3,
        }
    }
}

/// The ports a scheduler works through.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The session's data plane.
    pub store: Arc<dyn ObjectStore>,
    /// Where workers run.
    pub compute: Arc<dyn Compute>,
    /// Worker logs, for failure reports.
    pub logs: Arc<dyn Logs>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Assigned to a worker.
    Running,
    /// Finished with a value.
    Done,
    /// Finished without a value; see [`TaskFailure`].
    Failed,
    /// Cancelled.
    Cancelled,
}

impl TaskState {
    /// The state's name as the R binding reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// Why a task failed, for the user: an R condition class, a message that says what happened
/// and what to do, and the worker's last log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// R condition class, e.g. `starburst_worker_lost`.
    pub class: String,
    /// What happened and what to do.
    pub message: String,
    /// The worker's last log lines.
    pub log_tail: Vec<String>,
}

/// What [`Scheduler::collect`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The task's state.
    pub state: TaskState,
    /// Events since the previous call, in order.
    pub events: Vec<Bytes>,
    /// The result payload, once `Done`.
    pub value: Option<Bytes>,
    /// The failure, once `Failed`.
    pub failure: Option<TaskFailure>,
    /// Once final: the worker that ran the task's last attempt, if one did.
    pub worker: Option<WorkerId>,
}

/// Live workers by start-up state ([`SessionInfo::starting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartPhases {
    /// Asked for, not yet placed.
    pub provisioning: u32,
    /// Placed, fetching the image.
    pub pulling: u32,
    /// Running, not yet seen working (starting R).
    pub starting: u32,
    /// Seen working: a heartbeat or a result.
    pub ready: u32,
}

/// Counts for `nbrOfWorkers()`, `nbrOfFreeWorkers()` and status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// The session.
    pub session_id: SessionId,
    /// The worker limit.
    pub max_workers: u32,
    /// Workers started and not known to be stopped.
    pub live: u32,
    /// Of those, the ones running a task.
    pub busy: u32,
    /// Live workers by start-up state: asked for and not yet placed, fetching their image,
    /// running but not yet seen working (R starting), and ready (seen working).
    pub starting: StartPhases,
    /// Tasks waiting for a worker.
    pub queued: u32,
    /// Tasks completed with a value so far.
    pub completed: u64,
    /// Mean time from a task reaching the head of its worker's inbox (its assignment being
    /// written, or, when it was prefetched, the previous task's result being seen) to its
    /// result being seen by the client.
    pub mean_roundtrip: Duration,
    /// Mean time the worker spent per task, from reading the assignment to committing the
    /// result (millisecond resolution, from the worker's clock).
    pub mean_worker_ms: f64,
}

#[derive(Debug, Default)]
struct Stats {
    completed: u64,
    roundtrip: Duration,
    worker_ms: u64,
}

#[derive(Debug)]
struct Task {
    label: Option<String>,
    payload: Bytes,
    blobs: Vec<BlobRef>,
    attempt: u32,
    state: TaskState,
    submitted_unix_ms: u64,
    events: Vec<Bytes>,
    /// The next event of `attempt` to read.
    next_event: u32,
    /// Events of `attempt` known to be written (from heartbeats): read without probing.
    known_events: u32,
    value: Option<Bytes>,
    failure: Option<TaskFailure>,
    worker: Option<WorkerId>,
    /// Once final: the worker of the last attempt.
    ran_on: Option<WorkerId>,
    /// Where in its worker's inbox the current assignment is.
    inbox_seq: u64,
    /// A cancellation marker (and an inbox `Skip`) is still to be written.
    cancel: bool,
    /// Cancellation was asked for; a lost worker's task then ends cancelled, not re-run.
    cancelled: bool,
    /// Runs lost to worker failures (a clean exit before the task started does not count).
    losses: u32,
    /// When the task reached the head of its worker's inbox (is running, as far as the client
    /// knows).
    started_at: Duration,
    /// Stores that cannot notify: when to read its result next (head of an inbox only).
    next_poll: Duration,
    /// The store keeps failing for this task's own objects (its assignment, cancel or result).
    trouble: Option<Trouble>,
}

#[derive(Debug)]
struct Slot {
    next_seq: u64,
    /// Tasks assigned to the worker, in inbox order; the first one runs (or is about to), the
    /// others are prefetched.
    tasks: VecDeque<TaskId>,
    launched_at: Duration,
    beat: Option<(u64, Duration)>,
    /// When the task at the head of `tasks` started, as the client learned it.
    busy_since: Duration,
    /// The platform's phase, from the last describe.
    phase: WorkerPhase,
    /// True once the worker showed it runs tasks (a heartbeat, or a result).
    ready: bool,
}

/// What the meter needs to know about a billed worker beyond the meter's own record.
#[derive(Debug, Clone, Copy)]
struct Billing {
    /// When the platform last reported it not stopped (or when it was launched).
    last_alive: Duration,
    /// When a stop was asked for.
    stop_requested: Option<Duration>,
    /// The stop request reached the compute port.
    stop_sent: bool,
}

#[derive(Debug, Default)]
struct State {
    next_task: u64,
    tasks: HashMap<TaskId, Task>,
    queue: VecDeque<TaskId>,
    workers: BTreeMap<WorkerId, Slot>,
    blobs: HashSet<BlobHash>,
    closed: bool,
    fatal: Option<TaskFailure>,
    dirty: bool,
    stats: Stats,
    /// Every worker launched, in launch order.
    launched: Vec<WorkerId>,
    /// Moving average of how long tasks take on a worker (from their results' timing), for the
    /// first read of a running task's result on stores that cannot notify.
    estimate: Option<Duration>,
    /// The cost meter (`None` when the session cannot be priced).
    meter: Option<Meter>,
    /// Workers the meter counts as billed.
    billing: BTreeMap<WorkerId, Billing>,
    /// When the caps were last checked.
    last_budget_check: Option<Duration>,
    /// The session reached a cap; `fatal` holds the failure of every future it cannot run.
    budget_exceeded: bool,
    /// The last client beat's number.
    client_seq: u64,
    /// Kinds of requests failing now, and since when.
    trouble: BTreeMap<Path, Trouble>,
    /// Messages for the user that the caller has not taken yet ([`Scheduler::notices`]).
    notices: Vec<String>,
}

/// A kind of request the session depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Path {
    /// Reads and writes of the session's objects (assignments, results, heartbeats).
    Store,
    /// Starting workers.
    Launch,
    /// Watching workers (their status on the platform).
    Watch,
}

impl Path {
    fn what(self) -> &'static str {
        match self {
            Self::Store => "reading and writing the session's data in the object store",
            Self::Launch => "starting workers",
            Self::Watch => "watching the session's workers",
        }
    }
}

/// A kind of request that keeps failing.
#[derive(Debug, Clone)]
struct Trouble {
    /// When it began to fail (since the last success).
    since: Duration,
    /// The last error.
    error: String,
    /// Waiting cannot fix it (access denied, no usable credentials).
    needs_user: bool,
    /// The R class its futures fail with.
    class: &'static str,
    /// The user was told it persists.
    noticed: bool,
}

impl State {
    fn idle(&self) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, s)| s.tasks.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// `id` reaches the head of its worker's inbox at `now`: it runs from now on, as far as
    /// the client knows, and its result is first read once a typical task would be done.
    fn start(&mut self, id: &TaskId, now: Duration, config: &SchedulerConfig) {
        let first = self
            .estimate
            .unwrap_or(Duration::ZERO)
            .clamp(config.poll_min, config.poll_max.max(config.poll_min));
        if let Some(t) = self.tasks.get_mut(id) {
            t.started_at = now;
            // A cancelled task was probably skipped by the worker: its result is there.
            t.next_poll = if t.cancelled { now } else { now + first };
        }
        if let Some(slot) = t_worker(&self.tasks, id).and_then(|w| self.workers.get_mut(&w)) {
            slot.busy_since = now;
        }
    }

    /// Removes `id` from its worker's assignments; the next one, if any, starts.
    fn unassign(&mut self, id: &TaskId, now: Duration, config: &SchedulerConfig) {
        let mut next = None;
        for slot in self.workers.values_mut() {
            if let Some(pos) = slot.tasks.iter().position(|t| t == id) {
                slot.tasks.remove(pos);
                if pos == 0 {
                    next = slot.tasks.front().cloned();
                }
            }
        }
        if let Some(next) = next {
            self.start(&next, now, config);
        }
    }

    /// Records that a stop of `ids` is asked for at `now` (the meter bills them until the
    /// platform reports them stopped).
    fn stopping(&mut self, ids: &[WorkerId], now: Duration, sent: bool) {
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
    fn head(&self, worker: &WorkerId) -> Option<&TaskId> {
        self.workers.get(worker).and_then(|s| s.tasks.front())
    }

    fn finish(
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
            t.state = state;
            t.value = value;
            t.failure = failure;
            t.payload = Bytes::new();
            t.ran_on = t.worker.take().or(t.ran_on.take());
            self.dirty = true;
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    wake: tokio::sync::Notify,
    ports: Ports,
    config: SchedulerConfig,
    layout: SessionLayout,
    /// The caps (`None` when the session cannot be priced).
    budget: Option<Budget>,
    /// USD per hour of one worker of the session's spec.
    worker_hourly: f64,
    /// The bound on requests in flight.
    inflight: requests::InFlight,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify_waiters(&self, st: &mut State) {
        if st.dirty {
            st.dirty = false;
            self.cv.notify_all();
        }
    }
}

fn t_worker(tasks: &HashMap<TaskId, Task>, id: &TaskId) -> Option<WorkerId> {
    tasks.get(id).and_then(|t| t.worker.clone())
}

fn key(s: String) -> Result<ObjectPath> {
    Ok(ObjectPath::parse(s)?)
}

/// The largest payload or blob: what R's pipe frames can carry (`i32` lengths).
const MAX_PIECE: usize = i32::MAX as usize;
/// At most this many blobs per task (keeps a task's metadata far below the frame limit).
const MAX_BLOBS: usize = 10_000;
/// Labels longer than this many characters are cut.
const MAX_LABEL: usize = 1_000;

/// One session's scheduler. Submitting, collecting and cancelling are synchronous calls that
/// never wait for a worker; the I/O runs on a background task of the given tokio runtime.
#[derive(Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Scheduler {
    /// Starts the scheduler's driver on `runtime`, which must be a multi-thread runtime: the
    /// synchronous calls wait for work that runs on it.
    pub fn start(config: SchedulerConfig, ports: Ports, runtime: tokio::runtime::Handle) -> Self {
        let layout = SessionLayout::new(config.session_id.as_str());
        let mut state = State::default();
        let mut budget = None;
        let mut worker_hourly = 0.0;
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
                    budget = Some(caps);
                    state.meter = Some(meter);
                    worker_hourly = hourly;
                }
                // Caps that cannot be enforced: run nothing rather than run unbounded.
                Err(e) if b.max_cost.is_some() || b.max_hourly_cost.is_some() => {
                    state.fatal = Some(TaskFailure {
                        class: "starburst_invalid_argument".into(),
                        message: format!(
                            "the session's spending caps cannot be enforced: {e}; no future runs in this session"
                        ),
                        log_tail: vec![],
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the session's workers cannot be priced; no cost meter")
                }
            }
        }
        let inflight = requests::InFlight::new(config.requests);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cv: Condvar::new(),
            wake: tokio::sync::Notify::new(),
            ports,
            config,
            layout,
            budget,
            worker_hourly,
            inflight,
        });
        let driver = runtime.spawn(supervise(shared.clone()));
        Self {
            shared,
            runtime,
            driver: Mutex::new(Some(driver)),
        }
    }

    /// Queues a task: uploads its blobs that this session has not stored yet and returns its id
    /// at once; a worker picks it up when one is free. In a session that can run nothing more
    /// (it reached a spending cap, or its workers cannot start) the task is accepted and ends
    /// failed at once, with the failure of the futures before it (class [`BUDGET_EXCEEDED`]
    /// at a cap), so the caller learns why through [`Scheduler::collect`] as for any future.
    pub fn submit(
        &self,
        payload: Bytes,
        blobs: Vec<Bytes>,
        label: Option<String>,
    ) -> Result<TaskId> {
        // Worker and R exchange pieces of at most 2^31 - 1 bytes (R's integer lengths).
        if let Some(size) = std::iter::once(payload.len())
            .chain(blobs.iter().map(Bytes::len))
            .find(|&n| n > MAX_PIECE)
        {
            return Err(Error::InvalidTask(format!(
                "a piece of this future (its expression or one global) is {:.2} GB serialized, more than the {:.2} GB starburst carries; pass large data as several smaller objects, or read it from storage (S3, a file) inside the future",
                size as f64 / 1e9,
                MAX_PIECE as f64 / 1e9
            )));
        }
        if blobs.len() > MAX_BLOBS {
            return Err(Error::InvalidTask(format!(
                "{} blobs in one task; at most {MAX_BLOBS} are supported",
                blobs.len()
            )));
        }
        // Labels are for logs; a huge one must not bloat (or overflow) every frame.
        let label = label.map(|l| match l.char_indices().nth(MAX_LABEL) {
            Some((cut, _)) => format!("{}...", &l[..cut]),
            None => l,
        });
        let sh = &self.shared;
        let id = {
            let mut st = sh.lock();
            if st.closed {
                return Err(Error::Closed);
            }
            st.next_task += 1;
            TaskId::new(format!("t{:07}", st.next_task))?
        };
        let refs: Vec<BlobRef> = blobs.iter().map(|b| BlobRef::of(b)).collect();
        let missing: Vec<(BlobRef, Bytes)> = {
            let st = sh.lock();
            refs.iter()
                .zip(blobs)
                .filter(|(r, _)| !st.blobs.contains(&r.hash))
                .map(|(r, b)| (*r, b))
                .collect()
        };
        if !missing.is_empty() {
            let store = sh.ports.store.clone();
            let layout = sh.layout.clone();
            let encode = sh.config.encode;
            self.block_on(async {
                for (r, b) in &missing {
                    let k = key(layout.blob(&r.hash))?;
                    if store.head(&k).await.is_err() {
                        store
                            .put_large(&k, Bytes::from(wire::encode_blob(b, encode)))
                            .await?;
                    }
                }
                Ok::<_, Error>(())
            })?;
            sh.lock().blobs.extend(missing.iter().map(|(r, _)| r.hash));
        }
        let mut st = sh.lock();
        // Checked again after the upload: the session may have closed (its driver is gone, so a
        // task queued now would never end) or failed for good in the meantime.
        if st.closed {
            return Err(Error::Closed);
        }
        let fatal = st.fatal.clone();
        let mut task = Task {
            label,
            payload,
            blobs: refs,
            attempt: 1,
            state: TaskState::Queued,
            submitted_unix_ms: unix_ms(sh.ports.clock.wall()),
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
        if let Some(f) = fatal {
            task.state = TaskState::Failed;
            task.failure = Some(f);
        } else {
            st.queue.push_back(id.clone());
        }
        st.tasks.insert(id.clone(), task);
        drop(st);
        sh.wake.notify_one();
        Ok(id)
    }

    /// The task's state and new events, waiting up to `timeout` for it to finish or for new
    /// events. Events are reported once. A final state and its value or failure are reported
    /// by every call until [`Scheduler::release`] forgets the task: a caller interrupted
    /// between receiving the outcome and recording it (R's Ctrl-C or `setTimeLimit()`) asks
    /// again and loses nothing.
    pub fn collect(&self, id: &TaskId, timeout: Duration) -> Result<Collected> {
        let sh = &self.shared;
        if self.engine_stopped() {
            return Err(Error::EngineStopped);
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut st = sh.lock();
        loop {
            let t = st
                .tasks
                .get_mut(id)
                .ok_or_else(|| Error::UnknownTask(id.to_string()))?;
            let now = std::time::Instant::now();
            if t.state.is_final() || !t.events.is_empty() || now >= deadline {
                let out = Collected {
                    state: t.state,
                    events: std::mem::take(&mut t.events),
                    value: t.value.clone(),
                    failure: t.failure.clone(),
                    worker: if t.state.is_final() {
                        t.ran_on.clone()
                    } else {
                        None
                    },
                };
                return Ok(out);
            }
            if self.engine_stopped() {
                return Err(Error::EngineStopped);
            }
            // Bounded waits: a driver that died notifies no one.
            st = sh
                .cv
                .wait_timeout(st, (deadline - now).min(Duration::from_secs(1)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Forgets finished tasks once their outcome is recorded (see [`Scheduler::collect`]);
    /// tasks that are not finished, or unknown, are left alone.
    pub fn release(&self, ids: &[TaskId]) {
        let mut st = self.shared.lock();
        for id in ids {
            if st.tasks.get(id).is_some_and(|t| t.state.is_final()) {
                st.tasks.remove(id);
            }
        }
    }

    /// Every worker this session launched, oldest first (including stopped ones).
    pub fn workers(&self) -> Vec<WorkerId> {
        self.shared.lock().launched.clone()
    }

    /// Cancels tasks: queued ones end at once, running ones are interrupted on their worker.
    pub fn cancel(&self, ids: &[TaskId]) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock();
        for id in ids {
            let Some(t) = st.tasks.get_mut(id) else {
                continue;
            };
            match t.state {
                TaskState::Queued => st.finish(id, TaskState::Cancelled, None, None),
                TaskState::Running => {
                    t.cancel = true;
                    t.cancelled = true;
                }
                _ => {}
            }
        }
        sh.notify_waiters(&mut st);
        drop(st);
        sh.wake.notify_one();
        Ok(())
    }

    /// Messages for the user since the last call: a kind of request that keeps failing (and is
    /// retried up to [`SchedulerConfig::failure_timeout`]), and when it works again. Callers
    /// show them while they wait, so nothing is only in a log nobody reads.
    pub fn notices(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().notices)
    }

    /// Worker and queue counts.
    pub fn info(&self) -> SessionInfo {
        let st = self.shared.lock();
        let n = st.stats.completed.max(1);
        SessionInfo {
            completed: st.stats.completed,
            mean_roundtrip: st.stats.roundtrip / n as u32,
            mean_worker_ms: st.stats.worker_ms as f64 / n as f64,
            session_id: self.shared.config.session_id.clone(),
            max_workers: self.shared.config.max_workers,
            live: st.workers.len() as u32,
            busy: st.workers.values().filter(|s| !s.tasks.is_empty()).count() as u32,
            starting: st
                .workers
                .values()
                .fold(StartPhases::default(), |mut p, s| {
                    match (s.ready, s.phase) {
                        (true, _) => p.ready += 1,
                        (false, WorkerPhase::Provisioning) => p.provisioning += 1,
                        (false, WorkerPhase::Pulling) => p.pulling += 1,
                        (false, _) => p.starting += 1,
                    }
                    p
                }),
            queued: st.queue.len() as u32,
        }
    }

    /// The session's spend so far from its workers' launch and stop times, and its caps;
    /// `None` when the session's workers cannot be priced (see [`SchedulerConfig::budget`]).
    /// It stays available after [`Scheduler::close`]; workers the platform had not reported
    /// stopped by then are counted until their stop request plus the stop-latency bound.
    pub fn cost(&self) -> Option<CostReport> {
        let sh = &self.shared;
        let b = sh.config.budget.as_ref()?;
        let now = sh.ports.clock.now();
        let st = sh.lock();
        let meter = st.meter.as_ref()?;
        Some(CostReport {
            region: b.region.clone(),
            max_cost: b.max_cost,
            max_hourly_cost: b.max_hourly_cost,
            worker_hourly: sh.worker_hourly,
            meter: meter.report(now),
            exceeded: st.budget_exceeded,
            last_check: st.last_budget_check,
        })
    }

    /// Stops every worker and ends the session; pending tasks end cancelled. Idempotent.
    pub fn close(&self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
        }
        self.shared.wake.notify_one();
        let driver = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(d) = driver {
            let _ = self.block_on(d);
        }
    }
}

impl Scheduler {
    /// True when the driver ended without `close()` (it panicked).
    fn engine_stopped(&self) -> bool {
        let driver = self.driver.lock().unwrap_or_else(|e| e.into_inner());
        driver.as_ref().is_some_and(|d| d.is_finished())
    }

    /// Runs `f` to completion on the scheduler's runtime from synchronous code. Called from
    /// inside a runtime (a Rust caller in async code), it waits on a helper thread instead of
    /// panicking as a nested `block_on` would.
    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.runtime.block_on(f);
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.runtime.block_on(f))
                .join()
                .expect("the scheduler's blocking call does not panic")
        })
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let running = self.driver.lock().map(|d| d.is_some()).unwrap_or(false);
        if running {
            self.close();
        }
    }
}

/// A request of `path` succeeded: its trouble, if any, is over.
fn succeeded(sh: &Shared, path: Path) {
    let mut st = sh.lock();
    if st.trouble.remove(&path).is_some_and(|t| t.noticed) {
        st.notices
            .push(format!("starburst: {} works again", path.what()));
    }
}

/// Whether waiting can fix `e`, and the R class of the futures it fails, for `path`.
fn classify_failure(path: Path, e: &Error) -> (bool, &'static str) {
    use starburst_cloud::Error as Port;
    match e {
        Error::Cloud(Port::Credentials { .. }) => (true, "starburst_credentials"),
        Error::Cloud(Port::AccessDenied { .. }) => (true, "starburst_access_denied"),
        _ => (
            false,
            match path {
                Path::Store => "starburst_store_unreachable",
                Path::Launch => "starburst_launch_failed",
                Path::Watch => "starburst_compute_unreachable",
            },
        ),
    }
}

/// Starts or continues `trouble` with `e` at `now`.
fn note_trouble(trouble: &mut Option<Trouble>, path: Path, e: &Error, now: Duration) {
    let (needs_user, class) = classify_failure(path, e);
    let t = trouble.get_or_insert(Trouble {
        since: now,
        error: String::new(),
        needs_user,
        class,
        noticed: false,
    });
    t.error = e.to_string();
    t.needs_user = needs_user;
    t.class = class;
}

/// A request of `path` failed with `e`: its trouble starts or goes on.
fn failed(sh: &Shared, path: Path, e: &Error) {
    let now = sh.ports.clock.now();
    let mut st = sh.lock();
    let mut t = st.trouble.remove(&path);
    note_trouble(&mut t, path, e, now);
    st.trouble.insert(path, t.expect("just noted"));
}

/// A request for task `id`'s own objects failed with `e` (one bad key must not hold up the
/// others, nor be hidden by their successes).
fn task_failed(sh: &Shared, id: &TaskId, e: &Error) {
    let now = sh.ports.clock.now();
    if let Some(t) = sh.lock().tasks.get_mut(id) {
        note_trouble(&mut t.trouble, Path::Store, e, now);
    }
}

/// A request for task `id`'s own objects succeeded.
fn task_succeeded(sh: &Shared, id: &TaskId) {
    if let Some(t) = sh.lock().tasks.get_mut(id) {
        t.trouble = None;
    }
}

/// What the user can do about a failing kind of request.
fn advice(class: &str) -> &'static str {
    match class {
        "starburst_access_denied" => {
            "The AWS identity in use lacks the permission named above: ask an administrator for it (the README lists the policy starburst needs), or use a profile that has it (AWS_PROFILE)"
        }
        "starburst_store_unreachable" => {
            "Check the network connection to AWS and the set-up's bucket (starburst_status()); workers stop by themselves once they cannot hear from this R session"
        }
        "starburst_compute_unreachable" => {
            "Check the network connection to AWS and the set-up's ECS cluster (starburst_status()); workers stop by themselves once they cannot hear from this R session"
        }
        "starburst_launch_failed" => {
            "Check the ECS cluster and Fargate capacity in the region (starburst_status()), or try Spot/on-demand or another architecture"
        }
        _ => "",
    }
}

/// Why the futures waiting on `path` fail: the error, for how long it lasted (unless waiting
/// could not help), and what to do.
fn bound_message(path: Path, t: &Trouble, failing_for: Duration, bound: Duration) -> String {
    if t.needs_user {
        format!("{} failed: {}. {}", path.what(), t.error, advice(t.class))
    } else {
        format!(
            "{} has failed for {:.0} s, longer than the session's failure bound of {:.0} s: {}. {}",
            path.what(),
            failing_for.as_secs_f64(),
            bound.as_secs_f64(),
            t.error,
            advice(t.class)
        )
    }
}

/// Enforces the failure bound: the futures that wait on a kind of request failing for longer
/// than [`SchedulerConfig::failure_timeout`] (at once when waiting cannot help) fail with a
/// classed error naming the cause; a failure that persists for a sixth of the bound is told
/// to the user once. True when it failed futures.
fn enforce_failure_bound(sh: &Shared) -> bool {
    let now = sh.ports.clock.now();
    let bound = sh.config.failure_timeout;
    let mut st = sh.lock();
    let mut changed = false;
    let paths: Vec<Path> = st.trouble.keys().copied().collect();
    for path in paths {
        let t = st.trouble[&path].clone();
        let failing_for = now.saturating_sub(t.since);
        if !t.needs_user && failing_for < bound {
            if !t.noticed && failing_for >= (bound / 6).max(Duration::from_secs(5)) {
                let notice = format!(
                    "starburst: {} has failed for {:.0} s ({}); retrying for up to {:.0} s before the futures waiting on it fail",
                    path.what(),
                    failing_for.as_secs_f64(),
                    t.error,
                    bound.as_secs_f64()
                );
                tracing::warn!("{notice}");
                st.notices.push(notice);
                if let Some(t) = st.trouble.get_mut(&path) {
                    t.noticed = true;
                }
            }
            continue;
        }
        let victims: Vec<TaskId> = match path {
            // Nothing moves without the store; nothing is known of workers nobody can watch.
            Path::Store | Path::Watch => st
                .tasks
                .iter()
                .filter(|(_, t)| !t.state.is_final())
                .map(|(id, _)| id.clone())
                .collect(),
            // Workers that run still take the queue; ones still starting may fail as well.
            Path::Launch if !st.workers.values().any(|w| w.ready) => {
                st.queue.iter().cloned().collect()
            }
            Path::Launch => Vec::new(),
        };
        if victims.is_empty() {
            continue;
        }
        let message = bound_message(path, &t, failing_for, bound);
        tracing::warn!(futures = victims.len(), "{message}");
        let failure = TaskFailure {
            class: t.class.into(),
            message,
            log_tail: vec![],
        };
        for id in victims {
            st.unassign(&id, now, &sh.config);
            st.finish(&id, TaskState::Failed, None, Some(failure.clone()));
        }
        // The futures submitted from now on get a bound of their own.
        if let Some(t) = st.trouble.get_mut(&path) {
            t.since = now;
        }
        changed = true;
    }
    // Tasks whose own objects keep failing.
    let troubled: Vec<(TaskId, Trouble)> = st
        .tasks
        .iter()
        .filter(|(_, t)| !t.state.is_final())
        .filter_map(|(id, t)| t.trouble.clone().map(|tr| (id.clone(), tr)))
        .collect();
    let mut persisting = Vec::new();
    for (id, t) in troubled {
        let failing_for = now.saturating_sub(t.since);
        if !t.needs_user && failing_for < bound {
            if !t.noticed && failing_for >= (bound / 6).max(Duration::from_secs(5)) {
                persisting.push((id, t));
            }
            continue;
        }
        let message = bound_message(Path::Store, &t, failing_for, bound);
        tracing::warn!(task = %id, "{message}");
        st.unassign(&id, now, &sh.config);
        st.finish(
            &id,
            TaskState::Failed,
            None,
            Some(TaskFailure {
                class: t.class.into(),
                message,
                log_tail: vec![],
            }),
        );
        changed = true;
    }
    if let Some((_, first)) = persisting.first() {
        let notice = format!(
            "starburst: {} has failed for {} future(s) for {:.0} s ({}); retrying for up to {:.0} s before they fail",
            Path::Store.what(),
            persisting.len(),
            now.saturating_sub(first.since).as_secs_f64(),
            first.error,
            bound.as_secs_f64()
        );
        tracing::warn!("{notice}");
        st.notices.push(notice);
        for (id, _) in &persisting {
            if let Some(tr) = st.tasks.get_mut(id).and_then(|t| t.trouble.as_mut()) {
                tr.noticed = true;
            }
        }
    }
    if changed {
        sh.notify_waiters(&mut st);
    }
    changed
}

/// Runs the driver; if it panics (a bug), the session's futures fail with an engine error and
/// every worker it started is stopped, so that none runs on without a client.
async fn supervise(sh: Arc<Shared>) {
    let Err(e) = tokio::spawn(drive(sh.clone())).await else {
        return;
    };
    let why = match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %why, "the scheduler's driver failed; stopping the session's workers");
    {
        let mut st = sh.lock();
        st.closed = true;
        let failure = TaskFailure {
            class: "starburst_engine_error".into(),
            message: format!(
                "the starburst engine failed ({why}); this is a bug, please report it. The session's workers were stopped; start a new session (plan(starburst, ...)) to go on"
            ),
            log_tail: vec![],
        };
        st.fatal = Some(failure.clone());
        let pending: Vec<TaskId> = st
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_final())
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            st.finish(&id, TaskState::Failed, None, Some(failure.clone()));
        }
        sh.notify_waiters(&mut st);
    }
    let cleanup = {
        let sh = sh.clone();
        tokio::spawn(async move { shutdown(&sh).await })
    };
    if cleanup.await.is_err() {
        // The clean-up failed as well: at least every worker ever launched is told to stop.
        let ids = sh.lock().launched.clone();
        if let Err(e) = sh.ports.compute.stop(&ids, "session engine failed").await {
            tracing::error!(error = %e, "stopping the session's workers failed");
        }
    }
}

async fn drive(sh: Arc<Shared>) {
    let out = ObjectPath::parse(sh.layout.out()).ok();
    let mut watch = out.and_then(|p| sh.ports.store.watch(&p));
    let watching = watch.is_some();
    let clock = sh.ports.clock.clone();
    let mut next_health = clock.now();
    // The first beat precedes every launch: a worker's orphan clock starts at its own start.
    let mut next_client_beat = clock.now();
    loop {
        if sh.lock().closed {
            shutdown(&sh).await;
            return;
        }
        if let Some(every) = sh.config.client_beat
            && clock.now() >= next_client_beat
        {
            match write_client_beat(&sh, false).await {
                Ok(()) => succeeded(&sh, Path::Store),
                Err(e) => {
                    tracing::warn!(error = %e, "writing the session heartbeat failed; retrying");
                    failed(&sh, Path::Store, &e);
                }
            }
            next_client_beat = clock.now() + every;
        }
        let mut progressed = false;
        match step(&sh, watching).await {
            Ok(p) => progressed |= p,
            // The requests that failed marked their tasks (see `task_failed`).
            Err(e) => tracing::warn!(error = %e, "scheduler step failed; retrying"),
        }
        if clock.now() >= next_health {
            match health(&sh).await {
                Ok(p) => progressed |= p,
                Err(e) => tracing::warn!(error = %e, "worker health check failed; retrying"),
            }
            progressed |= enforce_failure_bound(&sh);
            // The caps are checked as often as health, whether or not that succeeded.
            progressed |= budget_check(&sh).await;
            next_health = clock.now() + sh.config.health_interval;
        }
        {
            let mut st = sh.lock();
            sh.notify_waiters(&mut st);
        }
        if progressed {
            continue;
        }
        let now = clock.now();
        let until_health = next_health.saturating_sub(now);
        match watch.as_mut() {
            // Notifications wake us for every write under out/; the timer is only a safety net.
            Some(w) => {
                let wait = until_health.min(sh.config.poll_max);
                tokio::select! {
                    () = sh.wake.notified() => {}
                    _ = w.changed(wait) => {}
                }
            }
            // Sleep until the next result is due (or a health check, or a call wakes us).
            None => {
                let due = next_due(&sh.lock()).map(|d| d.saturating_sub(now));
                let wait = due
                    .map_or(until_health, |d| d.min(until_health))
                    .max(Duration::from_millis(1));
                tokio::select! {
                    () = sh.wake.notified() => {}
                    () = clock.sleep(wait) => {}
                }
            }
        }
    }
}

/// When the earliest result read of a running task is due.
fn next_due(st: &State) -> Option<Duration> {
    st.workers
        .values()
        .filter_map(|s| s.tasks.front())
        .filter_map(|id| st.tasks.get(id))
        .filter(|t| t.state == TaskState::Running)
        .map(|t| t.next_poll)
        .min()
}

/// An assignment decided under the state lock, to be written to its worker's inbox.
struct Assignment {
    worker: WorkerId,
    task: TaskId,
    seq: u64,
    frame: Vec<u8>,
}

/// Takes queued tasks for workers: one for every idle worker, then, while more tasks wait
/// than the session has workers, one ahead for busy ones (prefetch), so they go on without
/// waiting for the client to see a result. The last `max_workers` tasks stay queued for
/// whichever worker frees up first, and so does one task for every worker still to be
/// launched.
///
/// At most one new assignment per worker per round: a write that fails is then the last of
/// its inbox and can be undone without leaving a gap the worker would wait at. The tasks are
/// marked running under the same lock as they leave the queue, so a cancel finds each either
/// queued (it ends cancelled and is never assigned) or running (its marker follows next round).
fn take_assignments(sh: &Shared) -> Vec<Assignment> {
    let mut st = sh.lock();
    let now = sh.ports.clock.now();
    let mut out = Vec::new();
    let mut chosen: HashSet<WorkerId> = HashSet::new();
    for worker in st.idle() {
        let Some(task) = st.queue.pop_front() else {
            break;
        };
        chosen.insert(worker.clone());
        out.extend(assign_locked(sh, &mut st, worker, task, now));
    }
    loop {
        let live = st.workers.len();
        let max = (sh.config.max_workers as usize).max(live);
        if st.queue.len() <= max + (max - live) {
            break;
        }
        let worker = st
            .workers
            .iter()
            .filter(|(id, s)| {
                !chosen.contains(*id)
                    && !s.tasks.is_empty()
                    && s.tasks.len() <= sh.config.prefetch as usize
            })
            .min_by_key(|(_, s)| (s.tasks.len(), s.busy_since))
            .map(|(id, _)| id.clone());
        let Some(worker) = worker else {
            break;
        };
        let Some(task) = st.queue.pop_front() else {
            break;
        };
        chosen.insert(worker.clone());
        out.extend(assign_locked(sh, &mut st, worker, task, now));
    }
    if !out.is_empty() {
        st.dirty = true;
    }
    out
}

/// Assigns `task_id` (just taken off the queue) to `worker`: the task runs from now on as far
/// as the client knows. `None` for a task that is no longer queued (and, kept queued, for a
/// worker the session no longer has).
fn assign_locked(
    sh: &Shared,
    st: &mut State,
    worker: WorkerId,
    task_id: TaskId,
    now: Duration,
) -> Option<Assignment> {
    if !st.workers.contains_key(&worker) {
        st.queue.push_front(task_id);
        return None;
    }
    let t = st
        .tasks
        .get_mut(&task_id)
        .filter(|t| t.state == TaskState::Queued)?;
    t.state = TaskState::Running;
    t.worker = Some(worker.clone());
    t.next_event = 0;
    t.known_events = 0;
    let meta = TaskMeta {
        session_id: sh.config.session_id.to_string(),
        task_id: task_id.to_string(),
        attempt: t.attempt,
        label: t.label.clone(),
        blobs: t.blobs.clone(),
        submitted_unix_ms: t.submitted_unix_ms,
    };
    let frame = wire::encode_inbox(&InboxMeta::Run(meta), &t.payload, sh.config.encode);
    let slot = st.workers.get_mut(&worker)?;
    let seq = slot.next_seq;
    slot.next_seq += 1;
    slot.tasks.push_back(task_id.clone());
    let head = slot.tasks.len() == 1;
    if let Some(t) = st.tasks.get_mut(&task_id) {
        t.inbox_seq = seq;
    }
    if head {
        st.start(&task_id, now, &sh.config);
    }
    Some(Assignment {
        worker,
        task: task_id,
        seq,
        frame,
    })
}

/// Writes an assignment to its worker's inbox; a write that fails is undone.
async fn write_assignment(sh: &Shared, a: Assignment) -> Result<()> {
    let sent = match key(sh.layout.inbox(a.worker.as_str(), a.seq)) {
        Ok(k) => sh
            .ports
            .store
            .put(&k, Bytes::from(a.frame))
            .await
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    let Err(e) = sent else {
        task_succeeded(sh, &a.task);
        return Ok(());
    };
    // Undo the assignment: the worker reads its inbox in sequence, so a message that was never
    // written would leave a gap it waits at forever, with the task stuck running on a worker
    // that beats as if all were well. It is the inbox's last one (one per worker per round).
    let mut st = sh.lock();
    if let Some(slot) = st.workers.get_mut(&a.worker) {
        slot.tasks.retain(|t| *t != a.task);
        if slot.next_seq == a.seq + 1 {
            slot.next_seq = a.seq;
        }
    }
    let cancelled = st
        .tasks
        .get_mut(&a.task)
        .filter(|t| t.state == TaskState::Running)
        .is_some_and(|t| {
            t.state = TaskState::Queued;
            t.worker = None;
            t.cancel = false;
            t.cancelled
        });
    if cancelled {
        st.finish(&a.task, TaskState::Cancelled, None, None);
    } else if st
        .tasks
        .get(&a.task)
        .is_some_and(|t| t.state == TaskState::Queued)
    {
        st.queue.push_front(a.task.clone());
    }
    st.dirty = true;
    drop(st);
    task_failed(sh, &a.task, &e);
    Err(e)
}

/// A cancel to write: the task, its attempt, and where its assignment is.
type Cancel = (TaskId, u32, Option<(WorkerId, u64)>);

/// Cancellations of running tasks still to be written.
fn take_cancels(sh: &Shared) -> Vec<Cancel> {
    let mut st = sh.lock();
    st.tasks
        .iter_mut()
        .filter(|(_, t)| t.cancel && t.state == TaskState::Running)
        .map(|(id, t)| {
            t.cancel = false;
            let at = t.worker.clone().map(|w| (w, t.inbox_seq));
            (id.clone(), t.attempt, at)
        })
        .collect()
}

/// The marker stops a task that runs; a `Skip` over its assignment withdraws it if the worker
/// has not read it yet (a prefetched task). A cancel that fails is tried again next round.
async fn write_cancel(sh: &Shared, (id, attempt, at): Cancel) -> Result<()> {
    let store = &sh.ports.store;
    let mut written = match key(sh.layout.cancel(id.as_str())) {
        Ok(k) => store.put(&k, Bytes::new()).await.map_err(Error::from),
        Err(e) => Err(e),
    };
    if let (Ok(()), Some((worker, seq))) = (&written, at) {
        let skip = InboxMeta::Skip {
            task_id: id.to_string(),
            attempt,
        };
        let frame = wire::encode_inbox(&skip, &[], sh.config.encode);
        written = match key(sh.layout.inbox(worker.as_str(), seq)) {
            Ok(k) => store.put(&k, Bytes::from(frame)).await.map_err(Error::from),
            Err(e) => Err(e),
        };
    }
    match written {
        Ok(()) => {
            task_succeeded(sh, &id);
            Ok(())
        }
        Err(e) => {
            task_failed(sh, &id, &e);
            if let Some(t) = sh.lock().tasks.get_mut(&id) {
                t.cancel = t.state == TaskState::Running;
            }
            Err(e)
        }
    }
}

/// Running tasks whose result (`true`) or new events are to be read now. A store that
/// notifies is cheap to read: every assigned task's result and next events are read at every
/// wake. Otherwise only the result of a task at the head of its worker's inbox is read, when
/// due, and events only when a heartbeat said there are new ones (a result says how many
/// there are in all).
fn due_reads(sh: &Shared, watching: bool) -> Vec<(TaskId, bool)> {
    let now = sh.ports.clock.now();
    let st = sh.lock();
    let heads: HashSet<&TaskId> = st
        .workers
        .values()
        .filter_map(|s| s.tasks.front())
        .collect();
    st.tasks
        .iter()
        .filter(|(_, t)| t.state == TaskState::Running)
        .filter_map(|(id, t)| {
            let result = watching || (heads.contains(id) && t.next_poll <= now);
            (result || t.known_events > t.next_event).then(|| (id.clone(), result))
        })
        .collect()
}

/// Reads a task's result and events; a failure is retried after `poll_min`. True when there
/// was something new.
async fn read_task(sh: &Shared, id: TaskId, read_result: bool, eager: bool) -> bool {
    match poll_task(sh, &id, read_result, eager).await {
        Ok(p) => {
            task_succeeded(sh, &id);
            p
        }
        Err(e) => {
            // One unreadable key must not keep the other tasks' results from being read.
            tracing::warn!(task = %id, error = %e, "reading the task's result failed; retrying");
            task_failed(sh, &id, &e);
            if let Some(t) = sh.lock().tasks.get_mut(&id) {
                t.next_poll = sh.ports.clock.now() + sh.config.poll_min;
            }
            false
        }
    }
}

/// One round: cancellations, assignments and reads of results and events, all in flight
/// together; then launches for what no worker can take. True when something changed.
async fn step(sh: &Shared, watching: bool) -> Result<bool> {
    // Decided before anything is sent: a cancel only ever targets an assignment already
    // written (those of this round are not taken yet), and a read a task whose assignment is.
    let cancels = take_cancels(sh);
    let reads = due_reads(sh, watching);
    let assignments = take_assignments(sh);
    let mut progressed = !assignments.is_empty();
    let (cancelled, assigned, read) = tokio::join!(
        sh.inflight.fan_out(cancels, |c| write_cancel(sh, c)),
        sh.inflight
            .fan_out(assignments, |a| write_assignment(sh, a)),
        sh.inflight
            .fan_out(reads, |(id, result)| read_task(sh, id, result, watching)),
    );
    progressed |= read.into_iter().any(|p| p);
    let failed = cancelled.into_iter().chain(assigned).find_map(Result::err);

    // Start workers for the tasks no idle worker can take.
    let want = {
        let st = sh.lock();
        let idle = st.idle().len();
        let need = st.queue.len().saturating_sub(idle) as u32;
        let room = sh
            .config
            .max_workers
            .saturating_sub(st.workers.len() as u32);
        need.min(room).min(sh.config.launch_batch)
    };
    let want = if want > 0 { affordable(sh, want) } else { 0 };
    if want > 0 {
        progressed |= launch(sh, want).await?;
    }
    match failed {
        // The requests that failed marked their tasks (see `task_failed`).
        Some(e) => Err(e),
        None => Ok(progressed),
    }
}

/// Reads a running task's result (when `read_result`) and its new events: those a heartbeat
/// or the result reported, or, with `eager`, every event written so far (probing the next
/// key). True when there was something new.
async fn poll_task(sh: &Shared, id: &TaskId, read_result: bool, eager: bool) -> Result<bool> {
    let Some((attempt, from, known)) = sh
        .lock()
        .tasks
        .get(id)
        .filter(|t| t.state == TaskState::Running)
        .map(|t| (t.attempt, t.next_event, t.known_events))
    else {
        return Ok(false);
    };
    let result = match read_result {
        true => sh
            .ports
            .store
            .get_opt(&key(sh.layout.result(id.as_str()))?)
            .await?
            .map(|buf| wire::decode_result(&buf, Limits::default())),
        false => None,
    };
    // Events are written before the result, so after seeing the result all events are in.
    let upto = match &result {
        Some(Ok((meta, _))) if meta.attempt == attempt => Some(meta.events),
        // Another attempt's result (a lost run that committed after all) or an unreadable one.
        Some(_) => Some(from),
        None if eager => None,
        None => Some(known),
    };
    let (events, next_event) = match upto {
        Some(n) if n <= from => (Vec::new(), from),
        _ => read_events(sh, id, attempt, from, upto).await?,
    };
    let mut st = sh.lock();
    if events.is_empty() && result.is_none() {
        if read_result {
            // Not done yet: read again after a quarter of the time it has run so far.
            let now = sh.ports.clock.now();
            if let Some(t) = st.tasks.get_mut(id) {
                let ran = now.saturating_sub(t.started_at);
                t.next_poll = now
                    + (ran / 4)
                        .max(sh.config.poll_min)
                        .min(sh.config.poll_max.max(sh.config.poll_min));
            }
        }
        return Ok(false);
    }
    if let Some(t) = st.tasks.get_mut(id).filter(|t| t.attempt == attempt) {
        t.next_event = next_event;
        t.known_events = t.known_events.max(next_event);
        t.events.extend(events);
        st.dirty = true;
    }
    if let Some(result) = result {
        complete(sh, &mut st, id, result);
    }
    Ok(true)
}

/// The events of a task's attempt from `next` up to `upto` (or up to the first missing one),
/// and the number of the next one.
async fn read_events(
    sh: &Shared,
    id: &TaskId,
    attempt: u32,
    mut next: u32,
    upto: Option<u32>,
) -> Result<(Vec<Bytes>, u32)> {
    let mut events = Vec::new();
    while upto.is_none_or(|n| next < n) {
        let Some(buf) = sh
            .ports
            .store
            .get_opt(&key(sh.layout.event(id.as_str(), attempt, next))?)
            .await?
        else {
            if upto.is_some() {
                tracing::warn!(task = %id, event = next, "a reported event is missing");
            }
            break;
        };
        match wire::decode_event(&buf, Limits::default()) {
            Ok((_, payload)) => events.push(payload),
            Err(e) => tracing::warn!(task = %id, error = %e, "dropping an unreadable event"),
        }
        next += 1;
    }
    Ok((events, next))
}

fn complete(
    sh: &Shared,
    st: &mut State,
    id: &TaskId,
    result: wire::Result<(wire::ResultMeta, Bytes)>,
) {
    let now = sh.ports.clock.now();
    if result.is_ok()
        && let Some(slot) = st
            .workers
            .values_mut()
            .find(|w| w.tasks.front() == Some(id))
    {
        slot.ready = true;
        // (`complete` holds the lock: `succeeded` would take it again.)
        st.trouble.remove(&Path::Launch);
    }
    st.unassign(id, now, &sh.config);
    match result {
        Ok((meta, payload)) => match meta.outcome {
            Outcome::Value => {
                if let Some(t) = st.tasks.get(id) {
                    let roundtrip = now.saturating_sub(t.started_at);
                    let worker_ms = meta
                        .timing
                        .finished_unix_ms
                        .saturating_sub(meta.timing.received_unix_ms);
                    st.stats.completed += 1;
                    st.stats.roundtrip += roundtrip;
                    st.stats.worker_ms += worker_ms;
                    // Exponential moving average (weight 1/4) of the time on the worker.
                    let took = Duration::from_millis(worker_ms);
                    st.estimate = Some(match st.estimate {
                        Some(e) => (e * 3 + took) / 4,
                        None => took,
                    });
                }
                st.finish(id, TaskState::Done, Some(payload), None)
            }
            Outcome::Failed(f) => {
                let (state, class, hint) = match f.kind {
                    FailureKind::Cancelled => (TaskState::Cancelled, "starburst_cancelled", ""),
                    FailureKind::EvaluatorDied => (
                        TaskState::Failed,
                        "starburst_evaluator_died",
                        "; the worker restarted R. Look for code that ends R (quit(), a crash in compiled code) or needs more memory",
                    ),
                    FailureKind::BlobUnavailable => {
                        // The store lost it (a lifecycle rule, a deletion): the futures
                        // submitted from now on upload it again instead of failing too.
                        let hashes: Vec<BlobHash> = st
                            .tasks
                            .get(id)
                            .map(|t| t.blobs.iter().map(|b| b.hash).collect())
                            .unwrap_or_default();
                        for h in &hashes {
                            st.blobs.remove(h);
                        }
                        (
                            TaskState::Failed,
                            "starburst_blob_unavailable",
                            "; the session's data in the object store was removed or damaged (a lifecycle rule or a deletion). Futures created from now on upload it again: run this one again",
                        )
                    }
                    FailureKind::Protocol => (TaskState::Failed, "starburst_worker_error", ""),
                };
                let failure = TaskFailure {
                    class: class.into(),
                    message: format!("{} (worker {}){hint}", f.message, meta.worker_id),
                    log_tail: f.log_tail,
                };
                st.finish(
                    id,
                    state,
                    None,
                    (state == TaskState::Failed).then_some(failure),
                );
            }
        },
        Err(e) => {
            let failure = TaskFailure {
                class: "starburst_corrupt_result".into(),
                message: format!("the result of this future could not be read: {e}"),
                log_tail: vec![],
            };
            st.finish(id, TaskState::Failed, None, Some(failure));
        }
    }
}

/// How long a worker may go on after this client died before it must have stopped: its
/// orphan timeout plus two heartbeat periods (it may not have read the newest beat). A worker
/// is launched only while the budget lasts at least this long with it running.
fn unattended_horizon(config: &SchedulerConfig) -> Duration {
    config.orphan_timeout
        + 2 * config.client_beat.unwrap_or(Duration::ZERO)
        + Duration::from_secs(1)
}

/// How many of `want` workers the caps allow to launch now.
fn affordable(sh: &Shared, want: u32) -> u32 {
    let st = sh.lock();
    if st.budget_exceeded {
        return 0;
    }
    let (Some(budget), Some(meter)) = (&sh.budget, &st.meter) else {
        return want;
    };
    let spec = &sh.config.spec;
    let now = sh.ports.clock.now();
    // Within the cap while this client watches, and within it if the client died right after.
    let horizon = unattended_horizon(&sh.config);
    let allowed = budget
        .may_launch(meter, now, want, spec.size, spec.arch, spec.capacity)
        .and_then(|n| {
            budget.unattended_launches(meter, now, n, horizon, spec.size, spec.arch, spec.capacity)
        });
    match allowed {
        Ok(n) => n,
        // Checked at start: the spec has prices.
        Err(e) => {
            tracing::warn!(error = %e, "pricing a launch failed");
            0
        }
    }
}

/// The session's unattended deadline at `now` with `launching` workers about to start
/// ([`Budget::unattended_deadline`]): when every worker must have stopped by itself for the
/// spend to stay within `max_cost` if the client died now. `None` without a cost cap.
fn unattended_deadline(sh: &Shared, now: Duration, launching: u32) -> Option<Duration> {
    let budget = sh.budget?;
    let st = sh.lock();
    let meter = st.meter.as_ref()?;
    let spec = &sh.config.spec;
    budget
        .unattended_deadline(meter, now, launching, spec.size, spec.arch, spec.capacity)
        // Checked at start: the spec has prices. Were it not so, stopping now is safe.
        .unwrap_or(Some(now))
}

/// Rewrites the client's session heartbeat: it moves (workers know their client lives), and
/// carries the deadline of [`unattended_deadline`]; `closed` tells every worker to stop.
async fn write_client_beat(sh: &Shared, closed: bool) -> Result<()> {
    let now = sh.ports.clock.now();
    let deadline = if closed {
        None
    } else {
        unattended_deadline(sh, now, 0)
    };
    let seq = {
        let mut st = sh.lock();
        st.client_seq += 1;
        st.client_seq
    };
    let beat = wire::ClientBeat {
        session_id: sh.config.session_id.to_string(),
        seq,
        unix_ms: unix_ms(sh.ports.clock.wall()),
        deadline_after_ms: deadline
            .map(|d| u64::try_from(d.saturating_sub(now).as_millis()).unwrap_or(u64::MAX)),
        closed,
        orphan_timeout_ms: u64::try_from(sh.config.orphan_timeout.as_millis()).unwrap_or(u64::MAX),
    };
    sh.ports
        .store
        .put(
            &key(sh.layout.client())?,
            Bytes::from(wire::encode_client_beat(&beat)),
        )
        .await?;
    Ok(())
}

async fn launch(sh: &Shared, count: u32) -> Result<bool> {
    // Billing starts after the launch request: its time is a safe start for the meter. The
    // platform's `started_at` (the container running) is later than Fargate's billing start
    // (the image pull) and would under-count.
    let requested_at = sh.ports.clock.now();
    // Each worker carries its hard deadline from the start: it holds even if this client dies
    // before the worker ever reads a session heartbeat.
    let deadline = unattended_deadline(sh, requested_at, count).map(|d| {
        let wall = sh.ports.clock.wall() + d.saturating_sub(requested_at);
        unix_ms(wall).to_string()
    });
    let spec = match deadline {
        Some(ms) => {
            let mut spec = sh.config.spec.clone();
            spec.env.insert(wire::DEADLINE_ENV.into(), ms);
            std::borrow::Cow::Owned(spec)
        }
        None => std::borrow::Cow::Borrowed(&sh.config.spec),
    };
    let report = match sh.ports.compute.launch(&spec, count).await {
        // Starting workers works again once one is seen working (see `health`), not when the
        // platform merely accepted the request.
        Ok(r) => r,
        Err(e) if e.is_retryable() => {
            // Throttled, or a failure that may pass: the queue waits for a later round instead
            // of failing as if no worker could ever start (up to the failure bound).
            tracing::warn!(error = %e, "launching workers was throttled; will retry");
            failed(sh, Path::Launch, &Error::Cloud(e));
            return Ok(false);
        }
        Err(e) if e.needs_user() => {
            // Access denied, no usable credentials: the failure bound fails the queue at once
            // with a class that says so.
            tracing::warn!(error = %e, "launching workers failed");
            failed(sh, Path::Launch, &Error::Cloud(e));
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "launching workers failed");
            let e = Error::Cloud(e);
            failed(sh, Path::Launch, &e);
            starburst_cloud::LaunchReport {
                launched: vec![],
                failures: vec![e.to_string()],
            }
        }
    };
    let now = sh.ports.clock.now();
    let mut st = sh.lock();
    st.launched.extend(report.launched.iter().cloned());
    let spec = &sh.config.spec;
    for id in &report.launched {
        if let Some(m) = st.meter.as_mut() {
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
            st.billing.insert(
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
        st.workers.insert(
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
    if report.launched.is_empty() && st.workers.is_empty() && !report.failures.is_empty() {
        // Nothing runs and nothing could start: fail what waits instead of hanging.
        let failure = TaskFailure {
            class: "starburst_launch_failed".into(),
            message: format!("no worker could be started: {}", report.failures.join("; ")),
            log_tail: vec![],
        };
        let queued: Vec<TaskId> = st.queue.iter().cloned().collect();
        for id in queued {
            st.finish(&id, TaskState::Failed, None, Some(failure.clone()));
        }
        return Ok(true);
    }
    Ok(!report.launched.is_empty())
}

/// Checks worker status and heartbeats; re-queues or fails the tasks of lost workers. A busy
/// worker's beat also says how many events its task has written and which task it runs: true
/// when that told something new (events to read, a result to read now).
async fn health(sh: &Shared) -> Result<bool> {
    // The session's workers, and the stopping ones the meter still bills.
    let ids: Vec<WorkerId> = {
        let st = sh.lock();
        let mut ids: Vec<WorkerId> = st.workers.keys().cloned().collect();
        ids.extend(
            st.billing
                .keys()
                .filter(|id| !st.workers.contains_key(*id))
                .cloned(),
        );
        ids
    };
    if ids.is_empty() {
        return Ok(false);
    }
    let statuses = match sh.ports.compute.describe(&ids).await {
        Ok(s) => {
            succeeded(sh, Path::Watch);
            s
        }
        Err(e) => {
            let e = Error::Cloud(e);
            failed(sh, Path::Watch, &e);
            return Err(e);
        }
    };
    let now = sh.ports.clock.now();
    meter_statuses(sh, &statuses, now);
    let mut lost = Vec::new();
    let mut learned = false;
    let live: HashSet<WorkerId> = {
        let mut st = sh.lock();
        for s in &statuses {
            if let Some(slot) = st.workers.get_mut(&s.id) {
                slot.phase = s.phase;
            }
        }
        st.workers.keys().cloned().collect()
    };
    for s in statuses {
        if s.phase == WorkerPhase::Stopped && live.contains(&s.id) {
            let stop = s.stop.unwrap_or(starburst_cloud::StopInfo {
                cause: StopCause::Other,
                exit_code: None,
                message: "stopped".into(),
            });
            lost.push((s.id, stop.cause, stop.message));
        }
    }
    // Heartbeats of busy workers: a beat that stops moving means the worker is gone even if the
    // platform has not noticed yet.
    // (worker, launched at, last beat seen (seq, when), busy since)
    type Busy = (WorkerId, Duration, Option<(u64, Duration)>, Duration);
    let busy: Vec<Busy> = sh
        .lock()
        .workers
        .iter()
        .filter(|(id, s)| !s.tasks.is_empty() && !lost.iter().any(|(l, _, _)| l == *id))
        .map(|(id, s)| (id.clone(), s.launched_at, s.beat, s.busy_since))
        .collect();
    let reads = sh
        .inflight
        .fan_out(busy, |b| async move {
            let read = match key(sh.layout.beat(b.0.as_str())) {
                Ok(k) => sh.ports.store.get_opt(&k).await.map_err(Error::Cloud),
                Err(e) => Err(e),
            };
            (b, read)
        })
        .await;
    let mut failure = None;
    let mut expired = Vec::new();
    for ((id, launched_at, beat, busy_since), read) in reads {
        let seen = match read {
            Ok(Some(buf)) => wire::decode_heartbeat(&buf).ok(),
            Ok(None) => None,
            Err(e) => {
                failed(sh, Path::Store, &e);
                failure = Some(e);
                continue;
            }
        };
        succeeded(sh, Path::Store);
        if let Some(b) = &seen {
            learned |= progress(sh, &id, &b.activity);
        }
        let seen = seen.map(|b| b.seq);
        let moved = match (seen, beat) {
            (Some(s), Some((old, _))) => s != old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved {
            if let Some(slot) = sh.lock().workers.get_mut(&id) {
                slot.beat = Some((seen.unwrap_or_default(), now));
                slot.ready = true;
            }
            succeeded(sh, Path::Launch);
            continue;
        }
        let late = match beat {
            Some((_, at)) => now.saturating_sub(at.max(busy_since)) > sh.config.lease,
            None => now.saturating_sub(launched_at) > sh.config.start_timeout,
        };
        if late {
            let (cause, why) = if beat.is_some() {
                (
                    StopCause::Other,
                    format!("its heartbeat stopped for more than {:?}", sh.config.lease),
                )
            } else {
                (
                    StopCause::StartTimedOut,
                    format!("it did not start within {:?}", sh.config.start_timeout),
                )
            };
            expired.push((id, cause, why));
        }
    }
    if !expired.is_empty() {
        let ids: Vec<WorkerId> = expired.iter().map(|(id, _, _)| id.clone()).collect();
        sh.lock().stopping(&ids, now, false);
        match sh.ports.compute.stop(&ids, "heartbeat lease expired").await {
            Ok(()) => {
                sh.lock().stopping(&ids, now, true);
                lost.extend(expired);
            }
            // Still expired at the next check, and stopped then.
            Err(e) => failure = Some(Error::Cloud(e)),
        }
    }
    for (id, cause, message) in lost {
        worker_lost(sh, &id, cause, &message).await;
        learned = true;
    }
    match failure {
        Some(e) if !learned => Err(e),
        _ => Ok(learned),
    }
}

/// A platform time as session time: `at` is `wall - t` before `now` (clamped to the origin;
/// `now` for a time ahead of `wall`).
fn session_time(now: Duration, wall: std::time::SystemTime, t: std::time::SystemTime) -> Duration {
    now.saturating_sub(wall.duration_since(t).unwrap_or(Duration::ZERO))
}

/// Feeds the platform's view of billed workers to the meter: a stopped worker's stop time (the
/// platform's, clamped into the window the scheduler observed: not before it was last seen
/// alive or asked to stop, not after now, so a skewed clock cannot move it), and for one the
/// platform no longer reports that was asked to stop, the stop-latency bound.
fn meter_statuses(sh: &Shared, statuses: &[WorkerStatus], now: Duration) {
    let wall = sh.ports.clock.wall();
    let latency = sh.budget.map_or(Duration::ZERO, |b| b.stop_latency);
    let mut st = sh.lock();
    let State { meter, billing, .. } = &mut *st;
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

/// Enforces the caps now: stops the workers [`Budget::must_stop`] names; once the session
/// reached a cap (or can afford no worker at all), fails what waits and every future that was
/// on a stopped worker with [`BUDGET_EXCEEDED`], fails new futures at once, and stops idle
/// workers. Retries stop requests that did not reach the platform. True when it changed
/// something.
async fn budget_check(sh: &Shared) -> bool {
    let Some(budget) = sh.budget else {
        return false;
    };
    let now = sh.ports.clock.now();
    let decided = budget_decide(sh, &budget, now);
    let Some((stopped, failure)) = decided else {
        return retry_stops(sh, "stop requested earlier").await;
    };
    retry_stops(sh, "budget cap reached").await;
    for (worker, tasks) in &stopped {
        tracing::info!(worker = %worker, tasks = ?tasks, "stopped a worker at the budget cap");
        for t in tasks {
            // A result committed before the stop is kept.
            if let Err(e) = poll_task(sh, t, true, false).await {
                tracing::warn!(task = %t, error = %e, "reading a stopped worker's result failed");
            }
            sh.lock()
                .finish(t, TaskState::Failed, None, Some(failure.clone()));
        }
    }
    let mut st = sh.lock();
    st.dirty = true;
    sh.notify_waiters(&mut st);
    true
}

/// The state changes of [`budget_check`]: the workers to stop (with the tasks they had) and
/// the failure of the futures that cannot run, or `None` when nothing changes.
type BudgetStops = (Vec<(WorkerId, Vec<TaskId>)>, TaskFailure);

fn budget_decide(sh: &Shared, budget: &Budget, now: Duration) -> Option<BudgetStops> {
    let spec = &sh.config.spec;
    {
        let mut st = sh.lock();
        st.last_budget_check = Some(now);
        let meter = st.meter.as_ref()?;
        let mut stop = budget.must_stop(meter, now);
        // Also when no worker may start because it could outlive the cap were this client to
        // die (the last orphan timeout of a budget).
        let horizon = unattended_horizon(&sh.config);
        let exhausted = budget
            .exhausted(meter, now, spec.size, spec.arch, spec.capacity)
            .unwrap_or(true)
            || (meter.running().is_empty()
                && budget
                    .unattended_launches(
                        meter,
                        now,
                        1,
                        horizon,
                        spec.size,
                        spec.arch,
                        spec.capacity,
                    )
                    .unwrap_or(0)
                    == 0);
        let newly = !st.budget_exceeded && (exhausted || !stop.is_empty());
        let failure = match (&st.fatal, newly) {
            (_, true) => budget_failure(sh, budget, meter, now),
            (Some(f), false) if st.budget_exceeded => f.clone(),
            _ => return None,
        };
        if newly {
            tracing::warn!(message = %failure.message, "budget cap reached");
            st.budget_exceeded = true;
            st.fatal = Some(failure.clone());
        }
        // What waits fails, now and at every later check: a worker that stopped by itself
        // (at its deadline) after the cap was reached has its future re-queued.
        let queued: Vec<TaskId> = st.queue.iter().cloned().collect();
        let failed_queued = !queued.is_empty();
        for id in queued {
            st.finish(&id, TaskState::Failed, None, Some(failure.clone()));
        }
        // Nothing new will run: idle workers only cost money.
        for id in st.idle() {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        st.stopping(&stop, now, false);
        let stopped: Vec<(WorkerId, Vec<TaskId>)> = stop
            .into_iter()
            .map(|id| {
                let tasks = st
                    .workers
                    .remove(&id)
                    .map(|s| s.tasks.into())
                    .unwrap_or_default();
                (id, tasks)
            })
            .collect();
        (newly || failed_queued || !stopped.is_empty()).then_some((stopped, failure))
    }
}

/// Sends the stop requests recorded but not yet sent; true when one was sent.
async fn retry_stops(sh: &Shared, reason: &str) -> bool {
    let ids: Vec<WorkerId> = sh
        .lock()
        .billing
        .iter()
        .filter(|(_, b)| b.stop_requested.is_some() && !b.stop_sent)
        .map(|(id, _)| id.clone())
        .collect();
    if ids.is_empty() {
        return false;
    }
    match sh.ports.compute.stop(&ids, reason).await {
        Ok(()) => {
            let mut st = sh.lock();
            for id in &ids {
                if let Some(b) = st.billing.get_mut(id) {
                    b.stop_sent = true;
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, workers = ?ids, "stopping workers failed; retrying");
            false
        }
    }
}

/// The failure of the futures a session at its cap cannot run: the caps, the spend, and what
/// to do.
fn budget_failure(sh: &Shared, budget: &Budget, meter: &Meter, now: Duration) -> TaskFailure {
    // Never "$-0.0000" in messages: `max` keeps a negative zero, adding 0.0 turns it positive.
    let spent = meter.report(now).usd.max(0.0) + 0.0;
    let projected = budget.projected(meter, now).max(spent) + 0.0;
    let hourly = sh.worker_hourly;
    let message = match (budget.max_cost, budget.max_hourly_cost) {
        (_, Some(h)) if hourly > h => format!(
            "the session's max_hourly_cost of ${h:.4} per hour is below the price of one worker (${hourly:.4} per hour); no worker can run. Raise max_hourly_cost (plan(starburst, max_hourly_cost = ...) or starburst_config()) or choose smaller workers"
        ),
        (Some(cap), _) => format!(
            "the session reached its budget cap: max_cost is ${cap:.4}, ${spent:.4} is spent so far (${projected:.4} counting the workers still running or stopping), and every worker is billed at least a minute; this future could not be run within the cap (a worker starts only while the budget leaves it at least the orphan timeout of {:.0} s to run, so that the cap holds even if this R session dies). Raise max_cost (plan(starburst, max_cost = ...) or starburst_config(max_cost = ...)) or run fewer futures",
            sh.config.orphan_timeout.as_secs_f64()
        ),
        (None, h) => format!(
            "the session reached its budget cap: max_hourly_cost is ${:.4} per hour, ${spent:.4} is spent so far; this future could not be run within the cap. Raise max_hourly_cost (plan(starburst, max_hourly_cost = ...) or starburst_config()) or run fewer futures",
            h.unwrap_or_default()
        ),
    };
    TaskFailure {
        class: BUDGET_EXCEEDED.into(),
        message,
        log_tail: vec![],
    }
}

/// What a busy worker's beat says about its assignments: new events of the task it runs, and,
/// when it runs a task prefetched behind the head of its inbox, that the head's result is in.
fn progress(sh: &Shared, worker: &WorkerId, activity: &wire::WorkerActivity) -> bool {
    let wire::WorkerActivity::Busy {
        task_id,
        attempt,
        events,
    } = activity
    else {
        return false;
    };
    let mut st = sh.lock();
    let Some(pos) = st
        .workers
        .get(worker)
        .and_then(|s| s.tasks.iter().position(|t| t.as_str() == task_id))
    else {
        // A task it has finished (an old beat), or one it was never given.
        return false;
    };
    let mut learned = false;
    if pos > 0
        && let Some(head) = st.head(worker).cloned()
        && let Some(t) = st.tasks.get_mut(&head)
    {
        let now = sh.ports.clock.now();
        learned |= t.next_poll > now;
        t.next_poll = t.next_poll.min(now);
    }
    let id = st.workers[worker].tasks[pos].clone();
    if let Some(t) = st.tasks.get_mut(&id).filter(|t| t.attempt == *attempt)
        && *events > t.known_events
    {
        t.known_events = *events;
        learned = true;
    }
    learned
}

async fn worker_lost(sh: &Shared, id: &WorkerId, cause: StopCause, message: &str) {
    let tasks: Vec<TaskId> = {
        let mut st = sh.lock();
        match st.workers.remove(id) {
            Some(slot) => slot.tasks.into(),
            None => return,
        }
    };
    tracing::info!(worker = %id, %cause, message, tasks = ?tasks, "worker stopped");
    let fatal = cause.is_fatal_for_spec();
    if matches!(
        cause,
        StopCause::StartFailedTransient | StopCause::CannotStartContainer
    ) {
        // Another worker is started; if none gets going within the failure bound, the queue
        // fails with starburst_launch_failed and the platform's words.
        failed(
            sh,
            Path::Launch,
            &Error::Cloud(starburst_cloud::Error::Other {
                op: "start worker",
                resource: id.to_string(),
                source: format!("{cause}: {message}").into(),
            }),
        );
    }
    // The worker may have committed results (and their events) just before it went away.
    for t in &tasks {
        if let Err(e) = poll_task(sh, t, true, false).await {
            tracing::warn!(task = %t, error = %e, "reading a lost worker's result failed");
        }
    }
    // The first unfinished assignment is the one that ran: it counts as a lost run. The ones
    // prefetched behind it never started; they are re-queued as they are. Every re-run is a
    // new attempt, so its events are kept apart from a lost run's.
    let (requeued, failed) = {
        let mut st = sh.lock();
        let max = sh.config.max_retries;
        let mut ran = true;
        let mut requeue = Vec::new();
        let mut failed = None;
        for task_id in tasks {
            let Some(t) = st
                .tasks
                .get_mut(&task_id)
                .filter(|t| t.state == TaskState::Running)
            else {
                continue;
            };
            let started = std::mem::replace(&mut ran, false);
            if t.cancelled {
                st.finish(&task_id, TaskState::Cancelled, None, None);
                continue;
            }
            if started {
                // A worker that exited cleanly (idle timeout racing an assignment) or never got
                // to run (a start failure that may pass) did not fail the task; it does not use
                // up a retry.
                if !cause.never_ran() {
                    t.losses += 1;
                }
                if fatal || !cause.is_retryable() || t.losses > max {
                    failed = Some(task_id);
                    continue;
                }
            }
            t.attempt += 1;
            t.next_event = 0;
            t.known_events = 0;
            t.state = TaskState::Queued;
            t.worker = None;
            requeue.push(task_id);
        }
        for task_id in requeue.iter().rev() {
            st.queue.push_front(task_id.clone());
        }
        st.dirty = true;
        (requeue, failed)
    };
    if !requeued.is_empty() {
        tracing::info!(tasks = ?requeued, "re-queued the tasks of a lost worker");
        sh.wake.notify_one();
    }
    if let Some(task_id) = failed {
        let attempts = sh.lock().tasks.get(&task_id).map(|t| t.losses).unwrap_or(1);
        let failure = lost_failure(sh, id, cause, message, attempts.max(1)).await;
        sh.lock()
            .finish(&task_id, TaskState::Failed, None, Some(failure));
    }
    if fatal {
        fail_all_queued(sh, cause, message, id).await;
    }
}

async fn lost_failure(
    sh: &Shared,
    id: &WorkerId,
    cause: StopCause,
    message: &str,
    attempts: u32,
) -> TaskFailure {
    let log_tail = sh
        .ports
        .logs
        .read(
            id,
            &LogQuery {
                tail: Some(20),
                since: None,
            },
        )
        .await
        .map(|l| l.into_iter().map(|l| l.message).collect())
        .unwrap_or_default();
    let (class, advice) = match cause {
        StopCause::ImagePullFailed => (
            "starburst_worker_start_failed",
            "workers cannot start until the worker image can be pulled; check that it exists and that the execution role may pull it",
        ),
        StopCause::EvaluatorStartFailed => (
            "starburst_worker_start_failed",
            "workers cannot start R; the worker log below says why (is the starburst R package installed in the library paths the workers use?)",
        ),
        StopCause::StartTimedOut => (
            "starburst_worker_start_failed",
            "no worker got going within the start limit: on Fargate, check capacity in the region, the image size, and that the subnets reach ECR and S3 (a public IP, or a NAT gateway or VPC endpoints)",
        ),
        StopCause::OutOfMemory => (
            "starburst_worker_lost",
            "give workers more memory (plan(starburst, memory = ...))",
        ),
        StopCause::Killed => (
            "starburst_worker_lost",
            "the worker process was killed (SIGKILL) without the platform saying why; if it recurs, check the worker log below and give workers more memory",
        ),
        StopCause::PlatformStopped | StopCause::HostRetired => (
            "starburst_worker_lost",
            "the platform took the worker away (maintenance or a host retirement); this is not caused by the future, and it was re-run as often as max_retries allows",
        ),
        StopCause::SpotInterruption => (
            "starburst_worker_lost",
            "Spot capacity was taken back; use spot = FALSE for futures that must not be interrupted, or raise max_retries",
        ),
        _ => (
            "starburst_worker_lost",
            "check the worker log below; the task was not re-run again",
        ),
    };
    TaskFailure {
        class: class.into(),
        message: format!("{cause} (worker {id}: {message}) after {attempts} attempt(s); {advice}"),
        log_tail,
    }
}

async fn fail_all_queued(sh: &Shared, cause: StopCause, message: &str, id: &WorkerId) {
    let failure = lost_failure(sh, id, cause, message, 1).await;
    let mut st = sh.lock();
    st.fatal = Some(failure.clone());
    let queued: Vec<TaskId> = st.queue.iter().cloned().collect();
    for t in queued {
        st.finish(&t, TaskState::Failed, None, Some(failure.clone()));
    }
}

async fn shutdown(sh: &Shared) {
    let (ids, seqs): (Vec<WorkerId>, Vec<u64>) = {
        let mut st = sh.lock();
        let pending: Vec<TaskId> = st
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_final())
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            st.finish(&id, TaskState::Cancelled, None, None);
        }
        sh.notify_waiters(&mut st);
        st.workers
            .iter()
            .map(|(id, s)| (id.clone(), s.next_seq))
            .unzip()
    };
    for (id, seq) in ids.iter().zip(seqs) {
        let frame = wire::encode_inbox(
            &InboxMeta::Stop {
                reason: "session closed".into(),
            },
            &[],
            sh.config.encode,
        );
        if let Ok(k) = key(sh.layout.inbox(id.as_str(), seq)) {
            let _ = sh.ports.store.put(&k, Bytes::from(frame)).await;
        }
    }
    // Workers that miss their stop message (or whose stop call fails) stop at their next read
    // of the session heartbeat.
    if sh.config.client_beat.is_some()
        && let Err(e) = write_client_beat(sh, true).await
    {
        tracing::warn!(error = %e, "marking the session closed failed");
    }
    // Every billed worker is stopped, the session's and those still stopping.
    let now = sh.ports.clock.now();
    let billed: Vec<WorkerId> = {
        let mut st = sh.lock();
        let mut all = ids.clone();
        all.extend(st.billing.keys().filter(|id| !ids.contains(id)).cloned());
        st.stopping(&all, now, false);
        all
    };
    if !billed.is_empty()
        && let Err(e) = sh.ports.compute.stop(&billed, "session closed").await
    {
        tracing::warn!(error = %e, "stopping workers failed");
    }
    sh.lock().workers.clear();
    close_meter(sh, &billed).await;
}

/// The engine stops watching workers at close: the meter takes the stop times the platform
/// reports now, and the stop-latency bound for the workers still stopping.
async fn close_meter(sh: &Shared, billed: &[WorkerId]) {
    if billed.is_empty() || sh.budget.is_none() {
        return;
    }
    match sh.ports.compute.describe(billed).await {
        Ok(statuses) => meter_statuses(sh, &statuses, sh.ports.clock.now()),
        Err(e) => tracing::warn!(error = %e, "reading the stopped workers' status failed"),
    }
    let latency = sh.budget.map_or(Duration::ZERO, |b| b.stop_latency);
    let mut st = sh.lock();
    let State { meter, billing, .. } = &mut *st;
    if let Some(meter) = meter.as_mut() {
        for (id, b) in std::mem::take(billing) {
            let end = b.stop_requested.map_or(b.last_alive, |r| r + latency);
            meter.worker_stopped(&id, end);
        }
    }
}
