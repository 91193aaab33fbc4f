//! starburst's worker runtime: the loop that runs inside a local worker process or a Fargate
//! task. It takes assignments from its inbox in the object store, fetches and verifies the blobs
//! a task needs (cached on disk), hands the payload to a persistent, supervised R process (the
//! [`Evaluator`]), relays immediate conditions as events while the task runs, commits the
//! result exactly once (put-if-absent), beats a heartbeat, honours cancellation, and exits on a
//! stop message, an idle timeout or the loss of its parent. It also follows its client's
//! session heartbeat ([`wire::ClientBeat`]): a worker whose client is gone (the beat stopped moving
//! for `orphan_timeout`), whose session closed, or whose hard deadline passed stops at once,
//! with its R process, whatever it is doing — so no worker outlives its client or its budget.
//!
//! The worker knows the object store only through the [`ObjectStore`] port: no AWS, no file
//! layout beyond [`SessionLayout`], and no R beyond the evaluator's pipe protocol.

#![deny(missing_docs)]

pub mod environment;
mod error;
pub mod evaluator;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{Clock, ObjectPath, ObjectStore, ObjectStoreExt};
use starburst_serialization::{
    self as wire, BlobRef, EncodeOptions, EventMeta, Failure, FailureKind, Heartbeat, InboxMeta,
    Limits, Outcome, ResultMeta, SessionLayout, TaskMeta, Timing, WorkerActivity, unix_ms,
};
use tokio::sync::{Mutex, Notify, mpsc};

pub use error::{Error, Result};
pub use evaluator::{Evaluation, Evaluator, RCommand, RProcess, TaskBlob};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The session.
    pub session_id: String,
    /// This worker's id.
    pub worker_id: String,
    /// Exit after this long without work.
    pub idle_timeout: Duration,
    /// Rewrite the heartbeat this often while starting or running a task.
    pub heartbeat: Duration,
    /// Rewrite the heartbeat this often while idle. The client reads only busy workers'
    /// beats (a worker that takes a task beats at once), so an idle worker's beat is for
    /// people and tools looking at the session, and each one is a billed PUT.
    pub idle_heartbeat: Duration,
    /// After a task wrote events, beat again this soon (at most one extra beat per this
    /// interval), so the client, which learns of new events from beats, relays them promptly.
    pub event_beat: Duration,
    /// Shortest wait between inbox polls (stores without notifications); also the first wait
    /// after a task when no next assignment was waiting.
    pub poll_min: Duration,
    /// Longest wait between inbox polls of an idle worker (the backoff doubles up to this).
    pub poll_max: Duration,
    /// Longest wait between inbox polls of a worker idle for longer than a minute: new work
    /// after a pause waits at most this long for it, and an idle worker costs a fifth of the
    /// polls.
    pub idle_poll_max: Duration,
    /// How often a running task checks for cancellation at first (one `head` each time); a
    /// task that runs on checks every eighth of its run time so far, up to five times this, so
    /// long tasks do not dominate the request count.
    pub cancel_poll: Duration,
    /// Where verified blobs are cached on disk; `None` for no disk cache, when the store is
    /// itself on this machine's disk (a second copy would only cost a write).
    pub blob_cache: Option<PathBuf>,
    /// Compression of results and events.
    pub encode: EncodeOptions,
    /// Exit when this process is no longer our parent (local workers).
    pub parent_pid: Option<u32>,
    /// Exit when the client's session heartbeat has not moved for this long (on this worker's
    /// clock); `None` does not follow the client.
    pub orphan_timeout: Option<Duration>,
    /// How often the client's session heartbeat is read (one GET each time).
    pub client_check: Duration,
    /// Stop by this moment whatever happens (the session's spending cap); later client beats
    /// replace it. `None` for no deadline until a beat brings one.
    pub deadline: Option<std::time::SystemTime>,
}

impl WorkerConfig {
    /// Defaults for a worker of `session_id` named `worker_id`.
    pub fn new(session_id: &str, worker_id: &str, blob_cache: PathBuf) -> Self {
        Self {
            session_id: session_id.into(),
            worker_id: worker_id.into(),
            idle_timeout: Duration::from_secs(600),
            heartbeat: Duration::from_secs(10),
            idle_heartbeat: Duration::from_secs(60),
            event_beat: Duration::from_millis(200),
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_secs(1),
            idle_poll_max: Duration::from_secs(5),
            cancel_poll: Duration::from_secs(1),
            blob_cache: Some(blob_cache),
            encode: EncodeOptions::PLAIN,
            parent_pid: None,
            orphan_timeout: Some(Duration::from_secs(300)),
            client_check: Duration::from_secs(30),
            deadline: None,
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A stop message arrived.
    Stopped(String),
    /// No work came within the idle timeout.
    Idle,
    /// The parent process is gone.
    Orphaned,
    /// The client's session heartbeat stopped moving for the orphan timeout: the client is
    /// gone (killed, crashed, asleep, offline).
    ClientGone,
    /// The session's hard deadline passed (its spending cap).
    Deadline,
}

/// One worker.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    evaluator: Box<dyn Evaluator>,
    config: WorkerConfig,
    layout: SessionLayout,
    activity: Arc<Mutex<WorkerActivity>>,
    done: Arc<AtomicU64>,
    /// Wakes the heartbeat loop when the running task wrote events.
    beat_now: Arc<Notify>,
}

/// A worker idle for this long polls its inbox at most every [`WorkerConfig::idle_poll_max`].
const LONG_IDLE: Duration = Duration::from_secs(60);

fn path(s: String) -> Result<ObjectPath> {
    Ok(ObjectPath::parse(s)?)
}

impl Worker {
    /// A worker that reads `store` and evaluates with `evaluator`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
        evaluator: Box<dyn Evaluator>,
        config: WorkerConfig,
    ) -> Self {
        let layout = SessionLayout::new(&config.session_id);
        Self {
            store,
            clock,
            evaluator,
            config,
            layout,
            activity: Arc::new(Mutex::new(WorkerActivity::Starting)),
            done: Arc::default(),
            beat_now: Arc::default(),
        }
    }

    /// Runs until stopped, idle or orphaned.
    pub async fn run(mut self) -> Result<Exit> {
        tracing::info!(session = %self.config.session_id, worker = %self.config.worker_id, "worker starting");
        // Aborted when `run()` ends or its future is dropped, so a worker that is gone stops
        // beating and its lease can expire.
        let beat = AbortOnDrop(tokio::spawn(heartbeat_loop(
            self.store.clone(),
            self.clock.clone(),
            path(self.layout.beat(&self.config.worker_id))?,
            self.config.clone(),
            self.activity.clone(),
            self.done.clone(),
            self.beat_now.clone(),
        )));
        let started = self.evaluator.start().await;
        let parent = self.config.parent_pid;
        let clock = self.clock.clone();
        let client = follow_client(
            self.store.clone(),
            self.clock.clone(),
            path(self.layout.client())?,
            self.config.clone(),
        );
        let exit = match started {
            // A lost parent or client, or the deadline, ends the worker even in the middle of
            // a task: dropping `serve` drops the running evaluation, which kills its R process.
            Ok(()) => tokio::select! {
                exit = self.serve() => exit,
                () = orphaned(parent, &*clock) => Ok(Exit::Orphaned),
                exit = client => Ok(exit),
            },
            Err(e) => Err(e),
        };
        drop(beat);
        *self.activity.lock().await = WorkerActivity::Exiting;
        let _ = write_beat(
            &*self.store,
            &*self.clock,
            &path(self.layout.beat(&self.config.worker_id))?,
            &self.config,
            WorkerActivity::Exiting,
            self.done.load(Ordering::Relaxed),
            u64::MAX,
        )
        .await;
        self.evaluator.kill().await;
        tracing::info!(?exit, "worker exiting");
        exit
    }

    async fn serve(&mut self) -> Result<Exit> {
        let inbox_dir = path(self.layout.inbox_dir(&self.config.worker_id))?;
        let mut watch = self.store.watch(&inbox_dir);
        let mut seq = 0u64;
        *self.activity.lock().await = WorkerActivity::Idle;
        let mut idle_since = self.clock.now();
        let mut backoff = self.config.poll_min;
        // The next inbox message, read while the last result was being committed.
        let mut ahead = None;
        loop {
            let key = path(self.layout.inbox(&self.config.worker_id, seq))?;
            let read = match ahead.take() {
                Some(read) => read,
                None => self.store.get_opt(&key).await,
            };
            let message = match read {
                Ok(m) => m,
                // A throttled or failed poll (S3 503/500) is no reason to end the worker: try
                // again after the usual wait.
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "reading the inbox failed; will retry");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(buf) = message {
                let (meta, payload) =
                    wire::decode_inbox(&buf, Limits::default()).map_err(|source| Error::Inbox {
                        key: key.to_string(),
                        source,
                    })?;
                seq += 1;
                let next = path(self.layout.inbox(&self.config.worker_id, seq))?;
                ahead = match meta {
                    InboxMeta::Stop { reason } => return Ok(Exit::Stopped(reason)),
                    InboxMeta::Run(task) => Some(self.run_task(task, payload, &next).await?),
                    InboxMeta::Skip { task_id, attempt } => {
                        self.skip_task(task_id, attempt).await?;
                        None
                    }
                };
                idle_since = self.clock.now();
                backoff = self.config.poll_min;
                continue;
            }
            if self.clock.now().saturating_sub(idle_since) >= self.config.idle_timeout {
                return Ok(Exit::Idle);
            }
            // Wait for the next message: woken by the store where it can notify, else a backoff
            // that doubles up to `poll_max` (fast right after a task, when the client is about
            // to write the next assignment; cheap when idle). The parent check runs beside this
            // loop, and the idle timeout is checked after every wait.
            match watch.as_mut() {
                Some(w) => {
                    w.changed(Duration::from_secs(1)).await;
                }
                None => {
                    self.clock.sleep(backoff).await;
                    let idle_for = self.clock.now().saturating_sub(idle_since);
                    let max = match idle_for >= LONG_IDLE {
                        true => self.config.idle_poll_max.max(self.config.poll_max),
                        false => self.config.poll_max,
                    };
                    backoff = (backoff * 2).min(max.max(self.config.poll_min));
                }
            }
        }
    }

    // `&mut self`, not `&self`: a `&Worker` held across an await needs `Worker: Sync`, which
    // `Box<dyn Evaluator>` is not, and would make `run()` a future that cannot be spawned.
    async fn blobs(&mut self, refs: &[BlobRef]) -> std::result::Result<Vec<TaskBlob>, String> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            // Kept in memory by the evaluator since an earlier task: nothing to move.
            if self.evaluator.holds(&r.hash) {
                out.push(TaskBlob {
                    blob: *r,
                    content: None,
                });
                continue;
            }
            let cache = self.config.blob_cache.as_ref();
            let cached = cache.map(|dir| dir.join(r.hash.to_hex()));
            if let Some(Ok(b)) = cached.as_ref().map(std::fs::read) {
                let b = Bytes::from(b);
                if BlobRef::of(&b) == *r {
                    out.push(TaskBlob {
                        blob: *r,
                        content: Some(b),
                    });
                    continue;
                }
            }
            let key = path(self.layout.blob(&r.hash)).map_err(|e| e.to_string())?;
            let buf = self.store.get(&key).await.map_err(|e| e.to_string())?;
            let content = wire::decode_blob(&buf, r, Limits::default())
                .map_err(|e| format!("blob {}: {e}", r.hash))?;
            if let (Some(dir), Some(cached)) = (cache, cached) {
                // Workers may share a cache directory: each writes its own temporary file and
                // renames it into place atomically. Off the task's path: the evaluation starts
                // at once (a task that needs the blob before it is in place reads the store).
                let tmp = dir.join(format!(
                    ".{}.{}.tmp",
                    r.hash.to_hex(),
                    self.config.worker_id
                ));
                let dir = dir.clone();
                let copy = content.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = std::fs::create_dir_all(&dir);
                    if std::fs::write(&tmp, &copy).is_ok() {
                        let _ = std::fs::rename(&tmp, &cached);
                    }
                });
            }
            out.push(TaskBlob {
                blob: *r,
                content: Some(content),
            });
        }
        Ok(out)
    }

    /// Runs a task and commits its result; returns the read of the inbox message at `next`,
    /// made while the result was being committed (a prefetched assignment is then there
    /// without another round trip to the store).
    async fn run_task(
        &mut self,
        task: TaskMeta,
        payload: Bytes,
        next: &ObjectPath,
    ) -> Result<starburst_cloud::Result<Option<Bytes>>> {
        let received = unix_ms(self.clock.wall());
        tracing::info!(task = %task.task_id, attempt = task.attempt, label = ?task.label, "task received");
        let cancel_key = path(self.layout.cancel(&task.task_id))?;
        *self.activity.lock().await = WorkerActivity::Busy {
            task_id: task.task_id.clone(),
            attempt: task.attempt,
            events: 0,
        };
        // The client watches busy workers' beats: a worker that was idle beats now (within
        // `event_beat` of its last beat), not at the end of its long idle period.
        self.beat_now.notify_one();
        let mut events = 0;
        let mut timing = Timing {
            received_unix_ms: received,
            ..Timing::default()
        };

        let (outcome, value) = match self.blobs(&task.blobs).await {
            Err(message) => (
                Outcome::Failed(Failure {
                    kind: FailureKind::BlobUnavailable,
                    message,
                    log_tail: vec![],
                }),
                Bytes::new(),
            ),
            Ok(blobs) => {
                timing.started_unix_ms = unix_ms(self.clock.wall());
                let (tx, rx) = mpsc::unbounded_channel();
                let relay = tokio::spawn(relay_events(
                    Relay {
                        store: self.store.clone(),
                        layout: self.layout.clone(),
                        clock: self.clock.clone(),
                        task_id: task.task_id.clone(),
                        attempt: task.attempt,
                        encode: self.config.encode,
                        activity: self.activity.clone(),
                        beat_now: self.beat_now.clone(),
                    },
                    rx,
                ));
                let cancelled = watch_cancel(
                    &*self.store,
                    &*self.clock,
                    &cancel_key,
                    self.config.cancel_poll,
                );
                let evaluation = tokio::select! {
                    e = self.evaluator.eval(payload, blobs, tx) => Some(e),
                    () = cancelled => None,
                };
                if evaluation.is_none() {
                    self.evaluator.kill().await;
                }
                // All events are written before the result, so the client sees them first; the
                // result says how many there are.
                events = relay.await.unwrap_or(0);
                timing.finished_unix_ms = unix_ms(self.clock.wall());
                match evaluation {
                    Some(Evaluation::Value(v)) => (Outcome::Value, v),
                    Some(Evaluation::Died { message, log_tail }) => {
                        tracing::warn!(task = %task.task_id, %message, "evaluator died; restarting it");
                        (
                            Outcome::Failed(Failure {
                                kind: FailureKind::EvaluatorDied,
                                message,
                                log_tail,
                            }),
                            Bytes::new(),
                        )
                    }
                    None => (
                        Outcome::Failed(Failure {
                            kind: FailureKind::Cancelled,
                            message: "the future was cancelled".into(),
                            log_tail: vec![],
                        }),
                        Bytes::new(),
                    ),
                }
            }
        };
        let meta = ResultMeta {
            task_id: task.task_id.clone(),
            worker_id: self.config.worker_id.clone(),
            attempt: task.attempt,
            outcome,
            timing,
            events,
        };
        let (committed, ahead) = tokio::join!(
            commit(
                &*self.store,
                &*self.clock,
                &self.layout,
                self.config.encode,
                &meta,
                &value
            ),
            self.store.get_opt(next)
        );
        committed?;
        self.done.fetch_add(1, Ordering::Relaxed);
        *self.activity.lock().await = WorkerActivity::Idle;
        // The client learns from the beat that the task is done (it reads long tasks' results
        // rarely); a next task read ahead replaces this before the beat goes out.
        self.beat_now.notify_one();
        tracing::info!(task = %task.task_id, ms = meta.timing.finished_unix_ms.saturating_sub(received), "task done");
        Ok(ahead)
    }

    /// A prefetched task cancelled before it started: report it cancelled without running it.
    async fn skip_task(&mut self, task_id: String, attempt: u32) -> Result<()> {
        let now = unix_ms(self.clock.wall());
        tracing::info!(task = %task_id, attempt, "task cancelled before it started");
        let meta = ResultMeta {
            task_id,
            worker_id: self.config.worker_id.clone(),
            attempt,
            outcome: Outcome::Failed(Failure {
                kind: FailureKind::Cancelled,
                message: "the future was cancelled before it started".into(),
                log_tail: vec![],
            }),
            timing: Timing {
                received_unix_ms: now,
                started_unix_ms: now,
                finished_unix_ms: now,
            },
            events: 0,
        };
        commit(
            &*self.store,
            &*self.clock,
            &self.layout,
            self.config.encode,
            &meta,
            &[],
        )
        .await
    }
}

/// Commits a result once (put-if-absent).
async fn commit(
    store: &dyn ObjectStore,
    clock: &dyn Clock,
    layout: &SessionLayout,
    encode: wire::EncodeOptions,
    meta: &ResultMeta,
    value: &[u8],
) -> Result<()> {
    let result_key = path(layout.result(&meta.task_id))?;
    let frame = Bytes::from(wire::encode_result(meta, value, encode));
    // Retry a commit that failed transiently; put-if-absent keeps a retry from writing twice (a
    // first attempt that did land makes the retry report "already committed").
    let mut retries = 0u32;
    let created = loop {
        match store.create(&result_key, frame.clone()).await {
            Err(e) if e.is_retryable() && retries < 5 => {
                retries += 1;
                tracing::warn!(error = %e, retries, "committing the result failed; will retry");
                clock.sleep(Duration::from_millis(100 << retries)).await;
            }
            r => break r?,
        }
    };
    if !created {
        tracing::warn!(task = %meta.task_id, "a result was already committed; this one is dropped");
    }
    Ok(())
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes once `parent` is no longer this process's parent (never when `parent` is `None`).
async fn orphaned(parent: Option<u32>, clock: &dyn Clock) {
    let Some(parent) = parent else {
        return std::future::pending().await;
    };
    while std::os::unix::process::parent_id() == parent {
        clock.sleep(Duration::from_secs(1)).await;
    }
}

/// Follows the client's session heartbeat until the worker must stop: the session closed,
/// the beat did not move for `orphan_timeout`, or the deadline passed. Never completes when
/// neither an orphan timeout nor a deadline applies.
///
/// Clocks need not agree: the beat's progress is judged on this worker's clock, and a beat's
/// deadline is relative to when it was written, which lies after the previous read that saw an
/// older beat. Until the worker has seen the beat move once, the deadline it was launched with
/// (wall clock) applies.
async fn follow_client(
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    key: ObjectPath,
    config: WorkerConfig,
) -> Exit {
    let start = clock.now();
    let mut deadline = config
        .deadline
        .map(|d| start + d.duration_since(clock.wall()).unwrap_or(Duration::ZERO));
    if config.orphan_timeout.is_none() && deadline.is_none() {
        // Nothing to enforce but a closed session, which the stop message also conveys.
        return std::future::pending().await;
    }
    let check = config.client_check.max(Duration::from_millis(1));
    // The last beat read (its seq) and when that read happened.
    let mut last: Option<(u64, Duration)> = None;
    let mut moved_at = start;
    loop {
        let now = clock.now();
        if deadline.is_some_and(|d| now >= d) {
            tracing::warn!("the session's deadline passed (its spending cap): stopping");
            return Exit::Deadline;
        }
        if let Some(t) = config.orphan_timeout
            && now.saturating_sub(moved_at) >= t
        {
            tracing::warn!(
                timeout = ?t,
                "the client's session heartbeat has not moved for the orphan timeout: the client is gone; stopping"
            );
            return Exit::ClientGone;
        }
        let mut wait = check;
        if let Some(d) = deadline {
            wait = wait.min(d - now);
        }
        if let Some(t) = config.orphan_timeout {
            wait = wait.min((moved_at + t).saturating_sub(now));
        }
        clock.sleep(wait.max(Duration::from_millis(1))).await;
        let read_at = clock.now();
        let beat = match store.get_opt(&key).await {
            Ok(Some(buf)) => match wire::decode_client_beat(&buf) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "the client's session heartbeat is unreadable");
                    continue;
                }
            },
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the client's session heartbeat failed");
                continue;
            }
        };
        if beat.closed {
            return Exit::Stopped("session closed".into());
        }
        match last {
            Some((seq, _)) if seq == beat.seq => {}
            Some((_, previous_read)) => {
                // Written after the previous read, which saw an older beat.
                moved_at = read_at;
                deadline = beat
                    .deadline_after_ms
                    .map(|ms| previous_read + Duration::from_millis(ms));
            }
            None => {}
        }
        last = Some((beat.seq, read_at));
    }
}

/// What the event relay of one task needs.
struct Relay {
    store: Arc<dyn ObjectStore>,
    layout: SessionLayout,
    clock: Arc<dyn Clock>,
    task_id: String,
    attempt: u32,
    encode: EncodeOptions,
    activity: Arc<Mutex<WorkerActivity>>,
    beat_now: Arc<Notify>,
}

/// Writes a task's events in order; returns how many were written. After each write the
/// heartbeat's event count moves and the heartbeat loop is asked for an early beat.
async fn relay_events(relay: Relay, mut rx: mpsc::UnboundedReceiver<Bytes>) -> u32 {
    let Relay {
        store,
        layout,
        clock,
        task_id,
        attempt,
        encode,
        activity,
        beat_now,
    } = relay;
    let mut seq = 0u32;
    while let Some(ev) = rx.recv().await {
        let meta = EventMeta {
            task_id: task_id.clone(),
            seq,
        };
        let Ok(key) = ObjectPath::parse(layout.event(&task_id, attempt, seq)) else {
            return seq;
        };
        let frame = Bytes::from(wire::encode_event(&meta, &ev, encode));
        // The client reads events in sequence and stops at a gap, so a failed write is retried
        // rather than skipped; an event that still cannot be written ends the relay.
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            match store.put(&key, frame.clone()).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && tries < 5 => {
                    tracing::warn!(error = %e, "writing an event failed; will retry");
                    clock.sleep(delay).await;
                    delay *= 2;
                    tries += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not write an event; later events of this task are dropped");
                    while rx.recv().await.is_some() {}
                    return seq;
                }
            }
        }
        seq += 1;
        if let WorkerActivity::Busy { events, .. } = &mut *activity.lock().await {
            *events = seq;
        }
        beat_now.notify_one();
    }
    seq
}

/// Returns once the task's cancel marker exists. Checks every `every` at first, then less often
/// as the task runs on: an eighth of its run time so far, up to five times `every` (a future
/// that runs for minutes costs 12 checks a minute instead of 60, and a cancel still stops it
/// within 5 s).
async fn watch_cancel(
    store: &dyn ObjectStore,
    clock: &dyn Clock,
    key: &ObjectPath,
    every: Duration,
) {
    let started = clock.now();
    loop {
        let ran = clock.now().saturating_sub(started);
        clock.sleep((ran / 8).clamp(every, every * 5)).await;
        if store.head(key).await.is_ok() {
            return;
        }
    }
}

async fn write_beat(
    store: &dyn ObjectStore,
    clock: &dyn Clock,
    key: &ObjectPath,
    config: &WorkerConfig,
    activity: WorkerActivity,
    tasks_done: u64,
    seq: u64,
) -> Result<()> {
    let beat = Heartbeat {
        worker_id: config.worker_id.clone(),
        seq,
        unix_ms: unix_ms(clock.wall()),
        activity,
        tasks_done,
    };
    store
        .put(key, Bytes::from(wire::encode_heartbeat(&beat)))
        .await?;
    Ok(())
}

/// `current` is just the next task of a worker whose last beat reported it busy.
fn next_task(written: &WorkerActivity, current: &WorkerActivity) -> bool {
    matches!(
        (written, current),
        (
            WorkerActivity::Busy { .. },
            WorkerActivity::Busy { events: 0, .. }
        )
    )
}

/// Beats every `heartbeat`, and once more `event_beat` after the last beat when the running
/// task wrote events the last beat did not report (so at most one extra beat per
/// `event_beat`, however many events a task writes).
async fn heartbeat_loop(
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    key: ObjectPath,
    config: WorkerConfig,
    activity: Arc<Mutex<WorkerActivity>>,
    done: Arc<AtomicU64>,
    beat_now: Arc<Notify>,
) {
    let mut seq = 0;
    loop {
        let written = activity.lock().await.clone();
        if let Err(e) = write_beat(
            &*store,
            &*clock,
            &key,
            &config,
            written.clone(),
            done.load(Ordering::Relaxed),
            seq,
        )
        .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        seq += 1;
        let written_at = clock.now();
        let period = match written {
            WorkerActivity::Idle => config.idle_heartbeat.max(config.heartbeat),
            _ => config.heartbeat,
        };
        let deadline = written_at + period;
        loop {
            let now = clock.now();
            if now >= deadline {
                break;
            }
            tokio::select! {
                () = clock.sleep(deadline - now) => break,
                () = beat_now.notified() => {
                    let current = activity.lock().await.clone();
                    // Already reported (the wake-up raced the last beat), or the next task of
                    // a busy worker, which the periodic beat reports: only new events and the
                    // end of idleness are worth a beat of their own.
                    if current == written || next_task(&written, &current) {
                        continue;
                    }
                    let since = clock.now().saturating_sub(written_at);
                    if since < config.event_beat {
                        clock.sleep(config.event_beat - since).await;
                    }
                    // A worker that finished a task and took its next one meanwhile has nothing
                    // new to say: back-to-back tasks cost no beat each.
                    if next_task(&written, &*activity.lock().await) {
                        continue;
                    }
                    break;
                }
            }
        }
    }
}
