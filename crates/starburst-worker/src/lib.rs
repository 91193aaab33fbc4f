//! starburst's worker runtime: the loop that runs inside a local worker process or a Fargate
//! task. It takes assignments from its inbox in the object store, fetches and verifies the blobs
//! a task needs (cached on disk), hands the payload to a persistent, supervised R process (the
//! [`Evaluator`]), relays immediate conditions as events while the task runs, commits the
//! result exactly once (put-if-absent), beats a heartbeat, honours cancellation, and exits on a
//! stop message, an idle timeout or the loss of its parent.
//!
//! The worker knows the object store only through the [`ObjectStore`] port: no AWS, no file
//! layout beyond [`SessionLayout`], and no R beyond the evaluator's pipe protocol.

#![deny(missing_docs)]

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
use tokio::sync::{Mutex, mpsc};

pub use error::{Error, Result};
pub use evaluator::{Evaluation, Evaluator, RCommand, RProcess};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The session.
    pub session_id: String,
    /// This worker's id.
    pub worker_id: String,
    /// Exit after this long without work.
    pub idle_timeout: Duration,
    /// Rewrite the heartbeat this often.
    pub heartbeat: Duration,
    /// Shortest wait between inbox polls (stores without notifications).
    pub poll_min: Duration,
    /// Longest wait between inbox polls.
    pub poll_max: Duration,
    /// How often a running task checks for cancellation.
    pub cancel_poll: Duration,
    /// Where verified blobs are cached.
    pub blob_cache: PathBuf,
    /// Compression of results and events.
    pub encode: EncodeOptions,
    /// Exit when this process is no longer our parent (local workers).
    pub parent_pid: Option<u32>,
}

impl WorkerConfig {
    /// Defaults for a worker of `session_id` named `worker_id`.
    pub fn new(session_id: &str, worker_id: &str, blob_cache: PathBuf) -> Self {
        Self {
            session_id: session_id.into(),
            worker_id: worker_id.into(),
            idle_timeout: Duration::from_secs(600),
            heartbeat: Duration::from_secs(5),
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_secs(1),
            cancel_poll: Duration::from_millis(500),
            blob_cache,
            encode: EncodeOptions::PLAIN,
            parent_pid: None,
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
}

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
        )));
        let started = self.evaluator.start().await;
        let parent = self.config.parent_pid;
        let clock = self.clock.clone();
        let exit = match started {
            // A lost parent ends the worker even in the middle of a task: dropping `serve`
            // drops the running evaluation, which kills its R process.
            Ok(()) => tokio::select! {
                exit = self.serve() => exit,
                () = orphaned(parent, &*clock) => Ok(Exit::Orphaned),
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
        loop {
            let key = path(self.layout.inbox(&self.config.worker_id, seq))?;
            let message = match self.store.get_opt(&key).await {
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
                match meta {
                    InboxMeta::Stop { reason } => return Ok(Exit::Stopped(reason)),
                    InboxMeta::Run(task) => self.run_task(task, payload).await?,
                }
                idle_since = self.clock.now();
                backoff = self.config.poll_min;
                continue;
            }
            if self.clock.now().saturating_sub(idle_since) >= self.config.idle_timeout {
                return Ok(Exit::Idle);
            }
            // Wait for the next message: woken by the store where it can notify, else adaptive
            // backoff (fast while work flows, slower when idle). The parent check bounds waits.
            let wait = backoff.min(Duration::from_secs(1));
            match watch.as_mut() {
                Some(w) => {
                    w.changed(Duration::from_secs(1)).await;
                }
                None => {
                    self.clock.sleep(wait).await;
                    backoff = (backoff * 2).min(self.config.poll_max);
                }
            }
        }
    }

    // `&mut self`, not `&self`: a `&Worker` held across an await needs `Worker: Sync`, which
    // `Box<dyn Evaluator>` is not, and would make `run()` a future that cannot be spawned.
    async fn blobs(&mut self, refs: &[BlobRef]) -> std::result::Result<Vec<Bytes>, String> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let cached = self.config.blob_cache.join(r.hash.to_hex());
            if let Ok(b) = std::fs::read(&cached) {
                let b = Bytes::from(b);
                if BlobRef::of(&b) == *r {
                    out.push(b);
                    continue;
                }
            }
            let key = path(self.layout.blob(&r.hash)).map_err(|e| e.to_string())?;
            let buf = self.store.get(&key).await.map_err(|e| e.to_string())?;
            let content = wire::decode_blob(&buf, r, Limits::default())
                .map_err(|e| format!("blob {}: {e}", r.hash))?;
            // Workers may share a cache directory: each writes its own temporary file and
            // renames it into place atomically.
            let tmp = self.config.blob_cache.join(format!(
                ".{}.{}.tmp",
                r.hash.to_hex(),
                self.config.worker_id
            ));
            let _ = std::fs::create_dir_all(&self.config.blob_cache);
            if std::fs::write(&tmp, &content).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
            out.push(content);
        }
        Ok(out)
    }

    async fn run_task(&mut self, task: TaskMeta, payload: Bytes) -> Result<()> {
        let received = unix_ms(self.clock.wall());
        tracing::info!(task = %task.task_id, attempt = task.attempt, label = ?task.label, "task received");
        let result_key = path(self.layout.result(&task.task_id))?;
        let cancel_key = path(self.layout.cancel(&task.task_id))?;
        *self.activity.lock().await = WorkerActivity::Busy {
            task_id: task.task_id.clone(),
        };
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
                    self.store.clone(),
                    self.layout.clone(),
                    self.clock.clone(),
                    task.task_id.clone(),
                    task.attempt,
                    self.config.encode,
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
                // All events are written before the result, so the client sees them first.
                let _ = relay.await;
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
        };
        let frame = Bytes::from(wire::encode_result(&meta, &value, self.config.encode));
        // Retry a commit that failed transiently; put-if-absent keeps a retry from writing
        // twice (a first attempt that did land makes the retry report "already committed").
        let mut retries = 0u32;
        let created = loop {
            match self.store.create(&result_key, frame.clone()).await {
                Err(e) if e.is_retryable() && retries < 5 => {
                    retries += 1;
                    tracing::warn!(error = %e, retries, "committing the result failed; will retry");
                    self.clock
                        .sleep(Duration::from_millis(100 << retries))
                        .await;
                }
                r => break r?,
            }
        };
        if !created {
            tracing::warn!(task = %task.task_id, "a result was already committed; this one is dropped");
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        *self.activity.lock().await = WorkerActivity::Idle;
        tracing::info!(task = %task.task_id, ms = meta.timing.finished_unix_ms.saturating_sub(received), "task done");
        Ok(())
    }
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

async fn relay_events(
    store: Arc<dyn ObjectStore>,
    layout: SessionLayout,
    clock: Arc<dyn Clock>,
    task_id: String,
    attempt: u32,
    encode: EncodeOptions,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let mut seq = 0u32;
    while let Some(ev) = rx.recv().await {
        let meta = EventMeta {
            task_id: task_id.clone(),
            seq,
        };
        let Ok(key) = ObjectPath::parse(layout.event(&task_id, attempt, seq)) else {
            return;
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
                    return;
                }
            }
        }
        seq += 1;
    }
}

async fn watch_cancel(
    store: &dyn ObjectStore,
    clock: &dyn Clock,
    key: &ObjectPath,
    every: Duration,
) {
    loop {
        clock.sleep(every).await;
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

async fn heartbeat_loop(
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    key: ObjectPath,
    config: WorkerConfig,
    activity: Arc<Mutex<WorkerActivity>>,
    done: Arc<AtomicU64>,
) {
    let mut seq = 0;
    loop {
        let a = activity.lock().await.clone();
        if let Err(e) = write_beat(
            &*store,
            &*clock,
            &key,
            &config,
            a,
            done.load(Ordering::Relaxed),
            seq,
        )
        .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        seq += 1;
        clock.sleep(config.heartbeat).await;
    }
}
