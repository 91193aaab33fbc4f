//! starburst's client-side brain. A [`Scheduler`] owns one session: it queues submitted tasks
//! without blocking, uploads each blob once, starts workers on demand up to the session's
//! limit, writes assignments to idle workers' inboxes, learns about events and results from the
//! object store (woken by store notifications where the store has them, adaptive polling
//! otherwise), watches workers through the compute port and their heartbeats, re-queues the
//! task of a lost worker up to a retry limit, and fails it with a classed cause and the worker's
//! log tail after that. Callers wait for results on a condition variable, never by sleeping.
//!
//! Its structure: a synchronous core (`state`: the session's tasks, workers, spend and
//! troubles, and every decision about them, with no I/O) and a driver (`driver`: the background
//! task that asks the core what to send, sends it with many requests in flight under the limits
//! of [`RequestLimits`], and tells the core what came back). Failures reach callers as a
//! [`TaskFailure`] with a typed [`FailureCause`]; bindings map causes to their own error
//! classes.
//!
//! It also keeps the session's live cost meter ([`Scheduler::cost`]) from its workers' launch
//! and stop times, and enforces the hard spending caps of [`BudgetConfig`] with the decisions
//! of [`starburst_cost::Budget`]: a launch that could push the projected spend past `max_cost`
//! (or the hourly price past `max_hourly_cost`) does not happen, workers are stopped before the
//! spend can pass the cap, and the futures the session can no longer afford fail with the cause
//! [`FailureCause::BudgetExceeded`].
//!
//! Every timed decision goes through the [`Clock`](starburst_cloud::Clock) port, so tests drive time by hand. The
//! scheduler knows ports only: no AWS, no file system, no R.

#![deny(missing_docs)]

mod config;
mod driver;
mod error;
mod report;
mod requests;
mod state;
mod task;
mod timeline;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{TaskId, WorkerId, WorkerPhase};
use starburst_serialization::{self as wire, BlobHash, BlobRef, unix_ms};

pub use config::{BudgetConfig, Ports, SchedulerConfig};
pub use error::{Error, Result};
pub use report::{BlobUploads, CostReport, SessionInfo, StartPhases};
pub use requests::RequestLimits;
pub use starburst_cost::{Catalog, MeterReport};
pub use task::{Collected, FailureCause, TaskFailure, TaskState};
pub use timeline::{FutureSpan, MAX_JOURNAL_FUTURES, SpanOutcome, Timeline, WorkerSpan};

use driver::{Shared, key};
use state::Core;

/// The largest payload or blob: what R's pipe frames can carry (`i32` lengths).
const MAX_PIECE: usize = i32::MAX as usize;
/// At most this many blobs per task (keeps a task's metadata far below the frame limit).
const MAX_BLOBS: usize = 10_000;
/// Labels longer than this many characters are cut.
const MAX_LABEL: usize = 1_000;

/// Blobs at least this large are looked up (HEAD) before they are uploaded: below it, at S3's
/// 25-90 ms per request and ~100 MB/s per stream, the look-up costs about what it could save.
pub const LOOK_BEFORE_UPLOAD: usize = 8 << 20;

/// Worker and R exchange pieces of at most 2^31 - 1 bytes (R's integer lengths).
fn check_piece(size: usize) -> Result<()> {
    if size > MAX_PIECE {
        return Err(Error::InvalidTask(format!(
            "a piece of this future (its expression or one global) is {:.2} GB serialized, more than the {:.2} GB starburst carries; pass large data as several smaller objects, or read it from storage (S3, a file) inside the future",
            size as f64 / 1e9,
            MAX_PIECE as f64 / 1e9
        )));
    }
    Ok(())
}

fn check_blob_count(n: usize) -> Result<()> {
    if n > MAX_BLOBS {
        return Err(Error::InvalidTask(format!(
            "{n} blobs in one task; at most {MAX_BLOBS} are supported"
        )));
    }
    Ok(())
}

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
        let config = Arc::new(config);
        let core = Core::new(config.clone());
        let shared = Arc::new(Shared::new(core, ports, config));
        let driver = runtime.spawn(driver::supervise(shared.clone()));
        Self {
            shared,
            runtime,
            driver: Mutex::new(Some(driver)),
        }
    }

    /// Queues a task: stores its blobs that this session has not stored yet (see
    /// [`Scheduler::put_blob`]) and returns its id at once; a worker picks it up when one is
    /// free. In a session that can run nothing more (it reached a spending cap, or its workers
    /// cannot start) the task is accepted and ends failed at once, with the failure of the
    /// futures before it (cause [`FailureCause::BudgetExceeded`] at a cap), so the caller learns
    /// why through [`Scheduler::collect`] as for any future.
    pub fn submit(
        &self,
        payload: Bytes,
        blobs: Vec<Bytes>,
        label: Option<String>,
    ) -> Result<TaskId> {
        check_blob_count(blobs.len())?;
        let mut hashes = Vec::with_capacity(blobs.len());
        for b in &blobs {
            hashes.push(self.put_blob(b)?.hash);
        }
        self.submit_stored(payload, &hashes, label)
    }

    /// Stores a blob (a large global) for this session's tasks and returns its reference. A
    /// blob this session already stored is neither uploaded nor checked again: only its hash
    /// is computed. Blocks until the upload is done.
    pub fn put_blob(&self, content: &[u8]) -> Result<BlobRef> {
        check_piece(content.len())?;
        let r = BlobRef::of(content);
        let sh = &self.shared;
        {
            let st = sh.lock();
            if st.closed {
                return Err(Error::Closed);
            }
            if st.blobs.contains_key(&r.hash) {
                return Ok(r);
            }
        }
        let k = key(sh.layout.blob(&r.hash))?;
        let store = sh.ports.store.clone();
        let encode = sh.config.encode;
        self.block_on(async {
            // Already stored (a reattached session, a retried upload after a lost answer)? Only
            // worth a round trip for a blob whose upload takes much longer than one: a small
            // blob is simply written again (the same bytes under the same name).
            if content.len() < LOOK_BEFORE_UPLOAD || store.head(&k).await.is_err() {
                store
                    .put_large(&k, Bytes::from(wire::encode_blob(content, encode)))
                    .await?;
            }
            Ok::<_, Error>(())
        })?;
        let mut st = sh.lock();
        if st.blobs.insert(r.hash, r.size).is_none() {
            st.blob_uploads.count += 1;
            st.blob_uploads.bytes += r.size;
        }
        Ok(r)
    }

    /// Queues a task whose blobs were stored by [`Scheduler::put_blob`], by their hashes (in
    /// the order the task reads them). A hash this session does not hold (never stored, or
    /// found lost by a worker since) is refused with [`Error::UnknownBlob`]: store it again
    /// and resubmit. Otherwise as [`Scheduler::submit`].
    pub fn submit_stored(
        &self,
        payload: Bytes,
        blobs: &[BlobHash],
        label: Option<String>,
    ) -> Result<TaskId> {
        check_piece(payload.len())?;
        check_blob_count(blobs.len())?;
        // Labels are for logs; a huge one must not bloat (or overflow) every frame.
        let label = label.map(|l| match l.char_indices().nth(MAX_LABEL) {
            Some((cut, _)) => format!("{}...", &l[..cut]),
            None => l,
        });
        let sh = &self.shared;
        let mut st = sh.lock();
        // The session may have closed (its driver is gone, so a task queued now would never
        // end) or failed for good.
        if st.closed {
            return Err(Error::Closed);
        }
        let refs = blobs
            .iter()
            .map(|h| match st.blobs.get(h) {
                Some(&size) => Ok(BlobRef { hash: *h, size }),
                None => Err(Error::UnknownBlob(h.to_hex())),
            })
            .collect::<Result<Vec<_>>>()?;
        let id = st.next_id();
        let submitted = unix_ms(sh.ports.clock.wall());
        st.submit(id.clone(), label, payload, refs, submitted);
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
        self.shared.lock().release(ids);
    }

    /// Every worker this session launched, oldest first (including stopped ones).
    pub fn workers(&self) -> Vec<WorkerId> {
        self.shared.lock().launched.clone()
    }

    /// Cancels tasks: queued ones end at once, running ones are interrupted on their worker.
    pub fn cancel(&self, ids: &[TaskId]) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock();
        st.cancel(ids);
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
            blob_uploads: st.blob_uploads,
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
            worker_hourly: st.worker_hourly,
            meter: meter.report(now),
            exceeded: st.budget_exceeded,
            last_check: st.last_budget_check,
        })
    }

    /// The session's history so far (all of it once closed): its futures, its workers with
    /// their start-up phases, stops and costs, and its spend over time.
    pub fn timeline(&self) -> Timeline {
        let sh = &self.shared;
        let st = sh.lock();
        let (now, wall) = (st.now, sh.ports.clock.wall());
        match st.meter.as_ref() {
            Some(meter) => {
                let spend = |t| meter.usd_at(t);
                st.journal
                    .timeline(now, wall, |id| meter.worker_usd(id, now), Some(&spend))
            }
            None => st.journal.timeline(now, wall, |_| None, None),
        }
    }

    /// Stops every worker and ends the session; pending tasks end cancelled. Idempotent.
    pub fn close(&self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
        }
        self.shared.wake.notify_one();
        self.shared.closing.send_replace(true);
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
