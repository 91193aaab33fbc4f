//! starburst's client-side brain. A [`Scheduler`] owns one session: it queues submitted tasks
//! without blocking, uploads each blob once, starts workers on demand up to the session's
//! limit, writes assignments to idle workers' inboxes, learns about events and results from the
//! object store (woken by store notifications where the store has them, adaptive polling
//! otherwise), watches workers through the compute port and their heartbeats, re-queues the
//! task of a lost worker up to a retry limit, and fails it with a classed cause and the worker's
//! log tail after that. Callers wait for results on a condition variable, never by sleeping.
//!
//! Every timed decision goes through the [`Clock`] port, so tests drive time by hand. The
//! scheduler knows ports only: no AWS, no file system, no R.

#![deny(missing_docs)]

mod error;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{
    Clock, Compute, LogQuery, Logs, ObjectPath, ObjectStore, ObjectStoreExt, SessionId, StopCause,
    TaskId, WorkerId, WorkerPhase, WorkerSpec,
};
use starburst_serialization::{
    self as wire, BlobHash, BlobRef, EncodeOptions, FailureKind, InboxMeta, Limits, Outcome,
    SessionLayout, TaskMeta, unix_ms,
};

pub use error::{Error, Result};

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
    /// Shortest wait between polls of the store (when it cannot notify).
    pub poll_min: Duration,
    /// Longest wait between polls.
    pub poll_max: Duration,
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
            poll_max: Duration::from_millis(500),
            health_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            start_timeout: Duration::from_secs(600),
            launch_batch: 10,
            encode: EncodeOptions::PLAIN,
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
    /// Tasks waiting for a worker.
    pub queued: u32,
    /// Tasks completed with a value so far.
    pub completed: u64,
    /// Mean time from the assignment being written to the result being seen by the client.
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
    next_event: u32,
    value: Option<Bytes>,
    failure: Option<TaskFailure>,
    worker: Option<WorkerId>,
    cancel: bool,
    /// Cancellation was asked for; a lost worker's task then ends cancelled, not re-run.
    cancelled: bool,
    /// Runs lost to worker failures (a clean exit before the task started does not count).
    losses: u32,
    dispatched_at: Duration,
}

#[derive(Debug)]
struct Slot {
    next_seq: u64,
    task: Option<TaskId>,
    launched_at: Duration,
    beat: Option<(u64, Duration)>,
    busy_since: Duration,
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
}

impl State {
    fn idle(&self) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, s)| s.task.is_none())
            .map(|(id, _)| id.clone())
            .collect()
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
            t.worker = None;
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

fn key(s: String) -> Result<ObjectPath> {
    Ok(ObjectPath::parse(s)?)
}

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
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            cv: Condvar::new(),
            wake: tokio::sync::Notify::new(),
            ports,
            config,
            layout,
        });
        let driver = runtime.spawn(drive(shared.clone()));
        Self {
            shared,
            runtime,
            driver: Mutex::new(Some(driver)),
        }
    }

    /// Queues a task: uploads its blobs that this session has not stored yet and returns its id
    /// at once; a worker picks it up when one is free.
    pub fn submit(
        &self,
        payload: Bytes,
        blobs: Vec<Bytes>,
        label: Option<String>,
    ) -> Result<TaskId> {
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
            value: None,
            failure: None,
            worker: None,
            cancel: false,
            cancelled: false,
            losses: 0,
            dispatched_at: Duration::ZERO,
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
    /// events. A final state is reported once; the task is forgotten after that.
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
                    value: t.value.take(),
                    failure: t.failure.take(),
                };
                if out.state.is_final() {
                    st.tasks.remove(id);
                }
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
            busy: st.workers.values().filter(|s| s.task.is_some()).count() as u32,
            queued: st.queue.len() as u32,
        }
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

async fn drive(sh: Arc<Shared>) {
    let out = ObjectPath::parse(sh.layout.out()).ok();
    let mut watch = out.and_then(|p| sh.ports.store.watch(&p));
    let clock = sh.ports.clock.clone();
    let mut next_health = clock.now();
    let mut backoff = sh.config.poll_min;
    loop {
        if sh.lock().closed {
            shutdown(&sh).await;
            return;
        }
        let mut progressed = false;
        match step(&sh).await {
            Ok(p) => progressed |= p,
            Err(e) => tracing::warn!(error = %e, "scheduler step failed; retrying"),
        }
        if clock.now() >= next_health {
            if let Err(e) = health(&sh).await {
                tracing::warn!(error = %e, "worker health check failed; retrying");
            }
            next_health = clock.now() + sh.config.health_interval;
        }
        {
            let mut st = sh.lock();
            sh.notify_waiters(&mut st);
        }
        if progressed {
            backoff = sh.config.poll_min;
            continue;
        }
        let until_health = next_health.saturating_sub(clock.now());
        match watch.as_mut() {
            // Notifications wake us for every write under out/; the timer is only a safety net.
            Some(w) => {
                let wait = until_health.min(sh.config.poll_max);
                tokio::select! {
                    () = sh.wake.notified() => {}
                    _ = w.changed(wait) => {}
                }
            }
            None => {
                let wait = backoff.min(until_health.max(sh.config.poll_min));
                tokio::select! {
                    () = sh.wake.notified() => {}
                    () = clock.sleep(wait) => {}
                }
                backoff = (backoff * 2).min(sh.config.poll_max);
            }
        }
    }
}

/// One round: cancellations, dispatch, scaling, results. True when something changed.
async fn step(sh: &Shared) -> Result<bool> {
    let mut progressed = false;
    let store = &sh.ports.store;

    // Cancellation markers for running tasks.
    let to_cancel: Vec<TaskId> = {
        let mut st = sh.lock();
        st.tasks
            .iter_mut()
            .filter(|(_, t)| t.cancel && t.state == TaskState::Running)
            .map(|(id, t)| {
                t.cancel = false;
                id.clone()
            })
            .collect()
    };
    for (i, id) in to_cancel.iter().enumerate() {
        let written = store
            .put(&key(sh.layout.cancel(id.as_str()))?, Bytes::new())
            .await;
        if let Err(e) = written {
            // Keep the requests not yet written for the next round, or they are lost.
            let mut st = sh.lock();
            for id in &to_cancel[i..] {
                if let Some(t) = st.tasks.get_mut(id) {
                    t.cancel = true;
                }
            }
            return Err(e.into());
        }
    }

    // Dispatch queued tasks to idle workers.
    loop {
        let assignment = {
            let mut st = sh.lock();
            let Some(worker) = st.idle().into_iter().next() else {
                break;
            };
            let Some(task_id) = st.queue.pop_front() else {
                break;
            };
            let now = sh.ports.clock.now();
            let t = st.tasks.get_mut(&task_id).expect("queued tasks exist");
            t.state = TaskState::Running;
            t.worker = Some(worker.clone());
            t.dispatched_at = now;
            let meta = TaskMeta {
                session_id: sh.config.session_id.to_string(),
                task_id: task_id.to_string(),
                attempt: t.attempt,
                label: t.label.clone(),
                blobs: t.blobs.clone(),
                submitted_unix_ms: t.submitted_unix_ms,
            };
            let frame = wire::encode_inbox(&InboxMeta::Run(meta), &t.payload, sh.config.encode);
            let slot = st.workers.get_mut(&worker).expect("idle worker exists");
            slot.task = Some(task_id.clone());
            slot.busy_since = now;
            let seq = slot.next_seq;
            slot.next_seq += 1;
            st.dirty = true;
            (worker, seq, frame, task_id)
        };
        let (worker, seq, frame, task_id) = assignment;
        let sent = store
            .put(
                &key(sh.layout.inbox(worker.as_str(), seq))?,
                Bytes::from(frame),
            )
            .await;
        if let Err(e) = sent {
            // Undo the assignment: the worker reads its inbox in sequence, so a message that was
            // never written would leave a gap it waits at forever, with the task stuck running
            // on a worker that beats as if all were well.
            let mut st = sh.lock();
            if let Some(slot) = st.workers.get_mut(&worker) {
                slot.task = None;
                slot.next_seq = seq;
            }
            let cancelled = st.tasks.get_mut(&task_id).is_some_and(|t| {
                t.state = TaskState::Queued;
                t.worker = None;
                t.cancel
            });
            if cancelled {
                st.finish(&task_id, TaskState::Cancelled, None, None);
            } else {
                st.queue.push_front(task_id);
            }
            return Err(e.into());
        }
        progressed = true;
    }

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
    if want > 0 {
        progressed |= launch(sh, want).await?;
    }

    // Results and events of running tasks.
    let running: Vec<(TaskId, u32, u32)> = {
        let st = sh.lock();
        st.tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Running)
            .map(|(id, t)| (id.clone(), t.attempt, t.next_event))
            .collect()
    };
    for (id, attempt, next_event) in running {
        // One unreadable key must not keep the other tasks' results from being read.
        match poll_task(sh, &id, attempt, next_event).await {
            Ok(p) => progressed |= p,
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "reading the task's result failed; retrying")
            }
        }
    }
    Ok(progressed)
}

/// Reads a running task's new events and its result; true when there was something new.
async fn poll_task(sh: &Shared, id: &TaskId, attempt: u32, next_event: u32) -> Result<bool> {
    let result = sh
        .ports
        .store
        .get_opt(&key(sh.layout.result(id.as_str()))?)
        .await?;
    // Events are written before the result, so after seeing the result all events are in.
    let (events, next_event) = read_events(sh, id, attempt, next_event).await?;
    if events.is_empty() && result.is_none() {
        return Ok(false);
    }
    let mut st = sh.lock();
    if let Some(t) = st.tasks.get_mut(id).filter(|t| t.attempt == attempt) {
        t.next_event = next_event;
        t.events.extend(events);
        st.dirty = true;
    }
    if let Some(buf) = result {
        complete(sh, &mut st, id, &buf);
    }
    Ok(true)
}

/// The events of a task's attempt from `next` on, and the number of the next one.
async fn read_events(
    sh: &Shared,
    id: &TaskId,
    attempt: u32,
    mut next: u32,
) -> Result<(Vec<Bytes>, u32)> {
    let mut events = Vec::new();
    while let Some(buf) = sh
        .ports
        .store
        .get_opt(&key(sh.layout.event(id.as_str(), attempt, next))?)
        .await?
    {
        match wire::decode_event(&buf, Limits::default()) {
            Ok((_, payload)) => events.push(payload),
            Err(e) => tracing::warn!(task = %id, error = %e, "dropping an unreadable event"),
        }
        next += 1;
    }
    Ok((events, next))
}

fn complete(sh: &Shared, st: &mut State, id: &TaskId, buf: &Bytes) {
    for slot in st.workers.values_mut() {
        if slot.task.as_ref() == Some(id) {
            slot.task = None;
        }
    }
    match wire::decode_result(buf, Limits::default()) {
        Ok((meta, payload)) => match meta.outcome {
            Outcome::Value => {
                if let Some(t) = st.tasks.get(id) {
                    let roundtrip = sh.ports.clock.now().saturating_sub(t.dispatched_at);
                    st.stats.completed += 1;
                    st.stats.roundtrip += roundtrip;
                    st.stats.worker_ms += meta
                        .timing
                        .finished_unix_ms
                        .saturating_sub(meta.timing.received_unix_ms);
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
                    FailureKind::BlobUnavailable => (
                        TaskState::Failed,
                        "starburst_blob_unavailable",
                        "; the session's data in the object store was removed or damaged",
                    ),
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

async fn launch(sh: &Shared, count: u32) -> Result<bool> {
    let report = match sh.ports.compute.launch(&sh.config.spec, count).await {
        Ok(r) => r,
        Err(e) if e.is_retryable() => {
            // Throttled, or a failure that may pass: the queue waits for a later round instead
            // of failing as if no worker could ever start.
            tracing::warn!(error = %e, "launching workers was throttled; will retry");
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "launching workers failed");
            starburst_cloud::LaunchReport {
                launched: vec![],
                failures: vec![e.to_string()],
            }
        }
    };
    let now = sh.ports.clock.now();
    let mut st = sh.lock();
    for id in &report.launched {
        st.workers.insert(
            id.clone(),
            Slot {
                next_seq: 0,
                task: None,
                launched_at: now,
                beat: None,
                busy_since: now,
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

/// Checks worker status and heartbeats; re-queues or fails the tasks of lost workers.
async fn health(sh: &Shared) -> Result<()> {
    let ids: Vec<WorkerId> = sh.lock().workers.keys().cloned().collect();
    if ids.is_empty() {
        return Ok(());
    }
    let statuses = sh.ports.compute.describe(&ids).await?;
    let now = sh.ports.clock.now();
    let mut lost = Vec::new();
    for s in statuses {
        if s.phase == WorkerPhase::Stopped {
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
        .filter(|(id, s)| s.task.is_some() && !lost.iter().any(|(l, _, _)| l == *id))
        .map(|(id, s)| (id.clone(), s.launched_at, s.beat, s.busy_since))
        .collect();
    for (id, launched_at, beat, busy_since) in busy {
        let seen = match sh
            .ports
            .store
            .get_opt(&key(sh.layout.beat(id.as_str()))?)
            .await?
        {
            Some(buf) => wire::decode_heartbeat(&buf).ok().map(|b| b.seq),
            None => None,
        };
        let moved = match (seen, beat) {
            (Some(s), Some((old, _))) => s != old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved {
            if let Some(slot) = sh.lock().workers.get_mut(&id) {
                slot.beat = Some((seen.unwrap_or_default(), now));
            }
            continue;
        }
        let expired = match beat {
            Some((_, at)) => now.saturating_sub(at.max(busy_since)) > sh.config.lease,
            None => now.saturating_sub(launched_at) > sh.config.start_timeout,
        };
        if expired {
            let why = if beat.is_some() {
                format!("its heartbeat stopped for more than {:?}", sh.config.lease)
            } else {
                format!("it did not start within {:?}", sh.config.start_timeout)
            };
            sh.ports
                .compute
                .stop(std::slice::from_ref(&id), "heartbeat lease expired")
                .await?;
            lost.push((id, StopCause::Other, why));
        }
    }
    for (id, cause, message) in lost {
        worker_lost(sh, &id, cause, &message).await;
    }
    Ok(())
}

async fn worker_lost(sh: &Shared, id: &WorkerId, cause: StopCause, message: &str) {
    let task = {
        let mut st = sh.lock();
        match st.workers.remove(id) {
            Some(slot) => slot.task,
            None => return,
        }
    };
    tracing::info!(worker = %id, %cause, message, task = ?task, "worker stopped");
    let fatal = cause.is_fatal_for_spec();
    let Some(task_id) = task else {
        if fatal {
            fail_all_queued(sh, cause, message, id).await;
        }
        return;
    };
    // The worker may have committed the result (and its events) just before it went away.
    let progress = sh
        .lock()
        .tasks
        .get(&task_id)
        .map(|t| (t.attempt, t.next_event));
    if let Some((attempt, next_event)) = progress
        && let Ok(true) = poll_task(sh, &task_id, attempt, next_event).await
        && sh
            .lock()
            .tasks
            .get(&task_id)
            .is_none_or(|t| t.state.is_final())
    {
        return;
    }
    let retry = {
        let mut st = sh.lock();
        let max = sh.config.max_retries;
        match st.tasks.get_mut(&task_id) {
            Some(t) if t.state == TaskState::Running && t.cancelled => {
                st.finish(&task_id, TaskState::Cancelled, None, None);
                return;
            }
            Some(t) if t.state == TaskState::Running && !fatal && cause.is_retryable() => {
                // A worker that exited cleanly (idle timeout racing an assignment) did not fail
                // the task; it does not use up a retry. Every re-run is a new attempt, so its
                // events are kept apart from the lost run's.
                if cause != StopCause::Exited {
                    t.losses += 1;
                }
                if t.losses <= max {
                    t.attempt += 1;
                    t.next_event = 0;
                    t.state = TaskState::Queued;
                    t.worker = None;
                    st.queue.push_front(task_id.clone());
                    st.dirty = true;
                    true
                } else {
                    false
                }
            }
            Some(t) if t.state == TaskState::Running => false,
            _ => return,
        }
    };
    if retry {
        tracing::info!(task = %task_id, "re-queued the task of a lost worker");
        sh.wake.notify_one();
        return;
    }
    let attempts = sh.lock().tasks.get(&task_id).map(|t| t.losses).unwrap_or(1);
    let failure = lost_failure(sh, id, cause, message, attempts).await;
    sh.lock()
        .finish(&task_id, TaskState::Failed, None, Some(failure));
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
        StopCause::OutOfMemory => (
            "starburst_worker_lost",
            "give workers more memory (plan(starburst, memory = ...))",
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
    if !ids.is_empty()
        && let Err(e) = sh.ports.compute.stop(&ids, "session closed").await
    {
        tracing::warn!(error = %e, "stopping workers failed");
    }
    sh.lock().workers.clear();
}
