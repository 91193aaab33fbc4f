//! What happened in a session, for people to look at ([`crate::Scheduler::timeline`]): when each
//! future was submitted, where and when it ran and how it ended; when each worker was launched,
//! placed, started, ready and stopped, and what it cost; the spend over time.
//!
//! The core keeps a [`Journal`] beside its working state: tasks are forgotten once the caller
//! has their outcome, and lost workers are removed, but their history stays here. Times are
//! session times (the [`Clock`](starburst_cloud::Clock)'s `now`), turned into offsets from the
//! session's start on the way out.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use starburst_cloud::{StopCause, TaskId, WorkerId, WorkerPhase, WorkerStatus};

use crate::TaskState;

/// At most this many futures are kept in a session's journal (about 200 bytes each); later
/// ones are counted in [`Timeline::futures_dropped`]. Workers are always kept.
pub const MAX_JOURNAL_FUTURES: usize = 100_000;

/// A session's history, times in seconds from [`Timeline::origin`].
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Wall-clock time of the session's start (time zero of every span).
    pub origin: SystemTime,
    /// How long the session has run (to its close, for a closed one).
    pub now: Duration,
    /// One per future, in submission order.
    pub futures: Vec<FutureSpan>,
    /// Futures submitted after the journal was full ([`MAX_JOURNAL_FUTURES`]).
    pub futures_dropped: u64,
    /// One per worker, in launch order.
    pub workers: Vec<WorkerSpan>,
    /// The session's spend (USD) at moments of its run, in time order: at every launch and
    /// stop and a minute after each launch (the first minute is billed at once), and now.
    /// Empty when the session cannot be priced.
    pub cost: Vec<(Duration, f64)>,
}

/// How a future ended, or where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOutcome {
    /// Waiting for a worker.
    Queued,
    /// Assigned to a worker.
    Running,
    /// Has a value.
    Done,
    /// Failed (its cause's name, as in [`crate::FailureCause::as_str`]).
    Failed(&'static str),
    /// Cancelled.
    Cancelled,
}

impl SpanOutcome {
    /// `queued`, `running`, `done`, `cancelled`, or the failure cause (`worker_lost`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed(cause) => cause,
            Self::Cancelled => "cancelled",
        }
    }
}

/// One future's history (its last attempt's worker and times).
#[derive(Debug, Clone, PartialEq)]
pub struct FutureSpan {
    /// The task.
    pub task: TaskId,
    /// Its label, if the caller gave one.
    pub label: Option<String>,
    /// The worker of its last attempt.
    pub worker: Option<WorkerId>,
    /// When it was submitted.
    pub submitted: Duration,
    /// When its last attempt started running: the worker's evaluation start when its result
    /// says so, else when the client saw it reach the head of its worker's inbox.
    pub started: Option<Duration>,
    /// When it ended: the worker's evaluation end for a result, else when the session
    /// decided its end.
    pub finished: Option<Duration>,
    /// How it ended.
    pub outcome: SpanOutcome,
    /// Runs after the first (after lost workers).
    pub retries: u32,
}

/// One worker's history.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpan {
    /// The worker.
    pub worker: WorkerId,
    /// When it was asked for.
    pub launched: Duration,
    /// When the platform first reported it placed and fetching its image.
    pub placed: Option<Duration>,
    /// When its process started (R starting).
    pub running: Option<Duration>,
    /// When it first started evaluating a future (R was up), as its results tell; until a
    /// result is in, when it was first seen working (a heartbeat).
    pub ready: Option<Duration>,
    /// When it stopped, if it did.
    pub stopped: Option<Duration>,
    /// Why it stopped (the platform's cause), if it did.
    pub cause: Option<String>,
    /// What it cost (USD, Fargate prices, each run at least a minute), when priced.
    pub cost_usd: Option<f64>,
}

#[derive(Debug)]
struct FutureRecord {
    label: Option<String>,
    worker: Option<WorkerId>,
    submitted: Duration,
    started: Option<Duration>,
    finished: Option<Duration>,
    outcome: SpanOutcome,
    retries: u32,
}

#[derive(Debug)]
struct WorkerRecord {
    launched: Duration,
    placed: Option<Duration>,
    running: Option<Duration>,
    /// Its first heartbeat that moved.
    beat: Option<Duration>,
    /// The earliest evaluation start its results report.
    first_run: Option<Duration>,
    stopped: Option<Duration>,
    cause: Option<StopCause>,
}

/// The core's record of its futures and workers (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    futures: BTreeMap<TaskId, FutureRecord>,
    futures_dropped: u64,
    workers: Vec<(WorkerId, WorkerRecord)>,
    worker_index: BTreeMap<WorkerId, usize>,
    /// When the session closed.
    closed_at: Option<Duration>,
}

impl Journal {
    pub(crate) fn submitted(&mut self, id: &TaskId, label: Option<&str>, at: Duration) {
        if self.futures.len() >= MAX_JOURNAL_FUTURES {
            self.futures_dropped += 1;
            return;
        }
        self.futures.insert(
            id.clone(),
            FutureRecord {
                label: label.map(str::to_string),
                worker: None,
                submitted: at,
                started: None,
                finished: None,
                outcome: SpanOutcome::Queued,
                retries: 0,
            },
        );
    }

    /// `id`'s attempt `attempt` was assigned to `worker`.
    pub(crate) fn assigned(&mut self, id: &TaskId, worker: &WorkerId, attempt: u32) {
        if let Some(f) = self.futures.get_mut(id) {
            f.worker = Some(worker.clone());
            f.retries = attempt.saturating_sub(1);
            f.started = None;
            f.outcome = SpanOutcome::Running;
        }
    }

    /// `id` reached the head of its worker's inbox at `at`.
    pub(crate) fn began(&mut self, id: &TaskId, at: Duration) {
        if let Some(f) = self.futures.get_mut(id) {
            f.started.get_or_insert(at);
        }
    }

    /// `id` went back to the queue (its worker was lost).
    pub(crate) fn requeued(&mut self, id: &TaskId) {
        if let Some(f) = self.futures.get_mut(id) {
            f.outcome = SpanOutcome::Queued;
            f.started = None;
        }
    }

    /// `id`'s result says `worker` evaluated it from `started` to `finished`.
    pub(crate) fn ran(
        &mut self,
        id: &TaskId,
        worker: &WorkerId,
        started: Duration,
        finished: Duration,
    ) {
        if let Some(f) = self.futures.get_mut(id) {
            f.started = Some(started);
            f.finished = Some(finished.max(started));
        }
        if let Some(w) = self.worker(worker) {
            w.first_run = Some(w.first_run.map_or(started, |t| t.min(started)));
        }
    }

    /// `id` ended at `at` in `state` (with a failure of cause `cause`).
    pub(crate) fn ended(
        &mut self,
        id: &TaskId,
        state: TaskState,
        cause: Option<&'static str>,
        at: Duration,
    ) {
        if let Some(f) = self.futures.get_mut(id) {
            f.outcome = match (state, cause) {
                (TaskState::Done, _) => SpanOutcome::Done,
                (TaskState::Cancelled, _) => SpanOutcome::Cancelled,
                (_, Some(cause)) => SpanOutcome::Failed(cause),
                (_, None) => SpanOutcome::Failed("failed"),
            };
            f.finished.get_or_insert(at);
        }
    }

    fn worker(&mut self, id: &WorkerId) -> Option<&mut WorkerRecord> {
        let i = *self.worker_index.get(id)?;
        Some(&mut self.workers[i].1)
    }

    pub(crate) fn launched(&mut self, id: &WorkerId, at: Duration) {
        if self.worker_index.contains_key(id) {
            return;
        }
        self.worker_index.insert(id.clone(), self.workers.len());
        self.workers.push((
            id.clone(),
            WorkerRecord {
                launched: at,
                placed: None,
                running: None,
                beat: None,
                first_run: None,
                stopped: None,
                cause: None,
            },
        ));
    }

    /// `id`'s heartbeat moved at `at`.
    pub(crate) fn beat(&mut self, id: &WorkerId, at: Duration) {
        if let Some(w) = self.worker(id) {
            w.beat.get_or_insert(at);
        }
    }

    /// What the platform reported at `now` (`wall` on its clock): phases reached, stops.
    pub(crate) fn observed(&mut self, statuses: &[WorkerStatus], now: Duration, wall: SystemTime) {
        for s in statuses {
            let Some(w) = self.worker(&s.id) else {
                continue;
            };
            let started = s.started_at.map(|t| session_time(now, wall, t));
            match s.phase {
                WorkerPhase::Provisioning => {}
                WorkerPhase::Pulling => {
                    w.placed.get_or_insert(now);
                }
                WorkerPhase::Running => {
                    w.running.get_or_insert(started.unwrap_or(now));
                }
                WorkerPhase::Stopped => {
                    if let Some(t) = started {
                        w.running.get_or_insert(t);
                    }
                    if w.stopped.is_none() {
                        let at = s.stopped_at.map_or(now, |t| session_time(now, wall, t));
                        w.stopped = Some(at.max(w.launched));
                        w.cause = Some(s.stop.as_ref().map_or(StopCause::Other, |i| i.cause));
                    }
                }
            }
        }
    }

    /// The session closed at `now`: workers not seen stopped count as stopped then, on request.
    pub(crate) fn closed(&mut self, now: Duration) {
        self.closed_at.get_or_insert(now);
        for (_, w) in &mut self.workers {
            if w.stopped.is_none() {
                w.stopped = Some(now.max(w.launched));
                w.cause = Some(StopCause::StoppedByUser);
            }
        }
    }

    /// The timeline at `now` (`wall` on the session's clock), up to the session's close, with
    /// each worker's cost from `worker_cost` and the spend over time from `spend_at`.
    pub(crate) fn timeline(
        &self,
        now: Duration,
        wall: SystemTime,
        worker_cost: impl Fn(&WorkerId) -> Option<f64>,
        spend_at: Option<&dyn Fn(Duration) -> f64>,
    ) -> Timeline {
        let futures = self
            .futures
            .iter()
            .map(|(id, f)| FutureSpan {
                task: id.clone(),
                label: f.label.clone(),
                worker: f.worker.clone(),
                submitted: f.submitted,
                started: f.started,
                finished: f.finished,
                outcome: f.outcome,
                retries: f.retries,
            })
            .collect();
        let workers: Vec<WorkerSpan> = self
            .workers
            .iter()
            .map(|(id, w)| WorkerSpan {
                worker: id.clone(),
                launched: w.launched,
                placed: w.placed,
                running: w.running,
                ready: w.first_run.or(w.beat),
                stopped: w.stopped,
                cause: w.cause.map(|c| c.to_string()),
                cost_usd: worker_cost(id),
            })
            .collect();
        let end = self.closed_at.unwrap_or(now).min(now);
        let cost = spend_at.map_or_else(Vec::new, |spend| {
            let minute = Duration::from_secs(60);
            let mut times = vec![Duration::ZERO, end];
            // Each launch bills a minute at once: a step, not a slope from the time before.
            let step = Duration::from_millis(1);
            for w in &workers {
                times.extend([
                    w.launched.saturating_sub(step),
                    w.launched,
                    w.launched + minute,
                ]);
                times.extend(w.stopped);
            }
            times.retain(|t| *t <= end);
            times.sort();
            times.dedup();
            times.into_iter().map(|t| (t, spend(t))).collect()
        });
        Timeline {
            origin: wall.checked_sub(now).unwrap_or(wall),
            now: end,
            futures,
            futures_dropped: self.futures_dropped,
            workers,
            cost,
        }
    }
}

/// A platform time as session time: `at` is `wall - t` before `now` (clamped to the origin;
/// `now` for a time ahead of `wall`).
pub(crate) fn session_time(now: Duration, wall: SystemTime, t: SystemTime) -> Duration {
    now.saturating_sub(wall.duration_since(t).unwrap_or(Duration::ZERO))
}
