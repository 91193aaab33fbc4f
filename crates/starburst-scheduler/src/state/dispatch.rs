//! Dispatch: which queued task goes to which worker (and which ahead of time), the cancels to
//! write, the results and events to read, and what a result or a heartbeat means for the
//! session.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use starburst_cloud::{TaskId, WorkerId};
use starburst_serialization::{self as wire, FailureKind, InboxMeta, Outcome, TaskMeta};

use super::Core;
use super::trouble::Path;
use crate::timeline::session_time;
use crate::{FailureCause, TaskFailure, TaskState};

/// An assignment decided by the core, to be written to its worker's inbox.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub(crate) worker: WorkerId,
    pub(crate) task: TaskId,
    pub(crate) seq: u64,
    pub(crate) frame: Vec<u8>,
}

/// A cancel to write: the task, its attempt, and where its assignment is (a `Skip` goes there).
pub(crate) type Cancel = (TaskId, u32, Option<(WorkerId, u64)>);

/// A read decided by the core: the task, and whether its result (or only its events) is read.
pub(crate) type Read = (TaskId, bool);

/// What a read of a running task's objects is to cover: its attempt, the next event to read,
/// and the events a heartbeat reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadPlan {
    pub(crate) attempt: u32,
    pub(crate) from: u32,
    pub(crate) known: u32,
}

/// What a read returned: the result, if it was read and is there, and the events read.
#[derive(Debug)]
pub(crate) struct ReadOutcome {
    pub(crate) result: Option<wire::Result<(wire::ResultMeta, Bytes)>>,
    pub(crate) events: Vec<Bytes>,
    pub(crate) next_event: u32,
}

/// The tasks with a request in flight, counted: a task taken back from a lost worker while
/// its assignment was being written can be assigned again before that write answers.
#[derive(Debug, Default)]
pub(crate) struct Sending(HashMap<TaskId, u32, foldhash::fast::RandomState>);

impl Sending {
    pub(crate) fn contains(&self, id: &TaskId) -> bool {
        self.0.contains_key(id)
    }

    pub(crate) fn add(&mut self, id: TaskId) {
        *self.0.entry(id).or_default() += 1;
    }

    pub(crate) fn done(&mut self, id: &TaskId) {
        if let Some(n) = self.0.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(id);
            }
        }
    }
}

impl Core {
    /// Takes queued tasks for workers: one for every idle worker, then, while more tasks wait
    /// than the session has workers, one ahead for busy ones (prefetch), so they go on without
    /// waiting for the client to see a result. The last `max_workers` tasks stay queued for
    /// whichever worker frees up first, and so does one task for every worker still to be
    /// launched.
    ///
    /// At most one assignment write per worker in flight (none for a worker whose last
    /// assignment is in `sending`): a write that fails is then the last of its inbox and can be
    /// undone without leaving a gap the worker would wait at. The tasks are marked running as
    /// they leave the queue, so a cancel finds each either queued (it ends cancelled and is
    /// never assigned) or running (its marker follows once the assignment is written).
    pub(crate) fn take_assignments(&mut self, now: Duration, sending: &Sending) -> Vec<Assignment> {
        let mut out = Vec::new();
        let mut chosen: HashSet<WorkerId> = HashSet::new();
        for worker in self.idle() {
            let Some(task) = self.queue.pop_front() else {
                break;
            };
            chosen.insert(worker.clone());
            out.extend(self.assign(worker, task, now));
        }
        // Busy workers with room ahead, the least loaded and longest busy first (one sort per
        // decision: each worker gets at most one new assignment per decision).
        let prefetch = self.config.prefetch as usize;
        let mut ahead: Vec<(usize, Duration, WorkerId)> = self
            .workers
            .iter()
            .filter(|(id, s)| {
                !chosen.contains(*id)
                    && s.tasks.back().is_some_and(|t| !sending.contains(t))
                    && s.tasks.len() <= prefetch
            })
            .map(|(id, s)| (s.tasks.len(), s.busy_since, id.clone()))
            .collect();
        ahead.sort_unstable();
        let live = self.workers.len();
        let max = (self.config.max_workers as usize).max(live);
        for (_, _, worker) in ahead {
            if self.queue.len() <= max + (max - live) {
                break;
            }
            let Some(task) = self.queue.pop_front() else {
                break;
            };
            out.extend(self.assign(worker, task, now));
        }
        if !out.is_empty() {
            self.dirty = true;
        }
        out
    }

    /// Assigns `task_id` (just taken off the queue) to `worker`: the task runs from now on as
    /// far as the client knows. `None` for a task that is no longer queued (and, kept queued,
    /// for a worker the session no longer has).
    fn assign(&mut self, worker: WorkerId, task_id: TaskId, now: Duration) -> Option<Assignment> {
        if !self.workers.contains_key(&worker) {
            self.queue.push_front(task_id);
            return None;
        }
        let t = self
            .tasks
            .get_mut(&task_id)
            .filter(|t| t.state == TaskState::Queued)?;
        t.state = TaskState::Running;
        t.worker = Some(worker.clone());
        self.journal.assigned(&task_id, &worker, t.attempt);
        t.next_event = 0;
        t.known_events = 0;
        let meta = TaskMeta {
            session_id: self.config.session_id.to_string(),
            task_id: task_id.to_string(),
            attempt: t.attempt,
            label: t.label.clone(),
            blobs: t.blobs.clone(),
            submitted_unix_ms: t.submitted_unix_ms,
        };
        let frame = wire::encode_inbox(&InboxMeta::Run(meta), &t.payload, self.config.encode);
        let slot = self.workers.get_mut(&worker)?;
        let seq = slot.next_seq;
        slot.next_seq += 1;
        slot.tasks.push_back(task_id.clone());
        let head = slot.tasks.len() == 1;
        if let Some(t) = self.tasks.get_mut(&task_id) {
            t.inbox_seq = seq;
        }
        if head {
            self.start(&task_id, now);
        }
        Some(Assignment {
            worker,
            task: task_id,
            seq,
            frame,
        })
    }

    /// Undoes an assignment whose write failed: the worker reads its inbox in sequence, so a
    /// message that was never written would leave a gap it waits at forever, with the task
    /// stuck running on a worker that beats as if all were well. It is the inbox's last one
    /// (one write per worker in flight). The task goes back to the head of the queue, or ends
    /// cancelled if that was asked for meanwhile; a task the session took back while the write
    /// was in flight (its worker lost, the task re-queued) or that ended is left as it is.
    pub(crate) fn assignment_failed(&mut self, worker: &WorkerId, task: &TaskId, seq: u64) {
        self.dirty = true;
        if let Some(slot) = self.workers.get_mut(worker) {
            slot.tasks.retain(|t| t != task);
            if slot.next_seq == seq + 1 {
                slot.next_seq = seq;
            }
        }
        let Some(t) = self
            .tasks
            .get_mut(task)
            .filter(|t| t.state == TaskState::Running && t.worker.as_ref() == Some(worker))
        else {
            return;
        };
        t.state = TaskState::Queued;
        t.worker = None;
        t.cancel = false;
        if t.cancelled {
            self.finish(task, TaskState::Cancelled, None, None);
        } else {
            self.queue.push_front(task.clone());
        }
    }

    /// The running tasks: those in the workers' inboxes (every running task is in exactly
    /// one), so a round costs in proportion to the workers, not to the session's tasks.
    fn running(&self) -> impl Iterator<Item = &TaskId> {
        self.workers.values().flat_map(|s| s.tasks.iter())
    }

    /// Cancellations of running tasks still to be written, but none of a task with a request
    /// in flight (`sending`): a cancel never races its task's assignment write.
    pub(crate) fn take_cancels(&mut self, sending: &Sending) -> Vec<Cancel> {
        if !self.cancels_marked {
            return Vec::new();
        }
        let marked: Vec<TaskId> = self
            .running()
            .filter(|id| self.tasks.get(*id).is_some_and(|t| t.cancel))
            .cloned()
            .collect();
        // Those with a request in flight stay marked for a later decision.
        self.cancels_marked = marked.iter().any(|id| sending.contains(id));
        marked
            .into_iter()
            .filter(|id| !sending.contains(id))
            .filter_map(|id| {
                let t = self.tasks.get_mut(&id)?;
                t.cancel = false;
                let at = t.worker.clone().map(|w| (w, t.inbox_seq));
                Some((id, t.attempt, at))
            })
            .collect()
    }

    /// A cancel's write failed: it is written again if the task still runs.
    pub(crate) fn cancel_failed(&mut self, id: &TaskId) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.cancel = t.state == TaskState::Running;
            self.cancels_marked |= t.cancel;
        }
    }

    /// Running tasks whose result (`true`) or new events are to be read now. A store that
    /// notifies is cheap to read: every assigned task's result and next events are read at
    /// every wake. Otherwise only the result of a task at the head of its worker's inbox is
    /// read, when due, and events only when a heartbeat said there are new ones (a result says
    /// how many there are in all). None of a task with a request in flight (`sending`).
    pub(crate) fn due_reads(&self, now: Duration, watching: bool, sending: &Sending) -> Vec<Read> {
        self.workers
            .values()
            .flat_map(|s| s.tasks.iter().enumerate())
            .filter_map(|(pos, id)| {
                let t = self
                    .tasks
                    .get(id)
                    .filter(|t| t.state == TaskState::Running)?;
                let result = watching || (pos == 0 && t.next_poll <= now);
                (result || t.known_events > t.next_event).then_some((id, result))
            })
            .filter(|(id, _)| !sending.contains(id))
            .map(|(id, result)| (id.clone(), result))
            .collect()
    }

    /// When `id`'s result is next to be read, if it is a running task at the head of its
    /// worker's inbox.
    pub(crate) fn next_poll_of(&self, id: &TaskId) -> Option<Duration> {
        let t = self
            .tasks
            .get(id)
            .filter(|t| t.state == TaskState::Running)?;
        let head = t.worker.as_ref().and_then(|w| self.head(w));
        (head == Some(id)).then_some(t.next_poll)
    }

    /// When the earliest result read of a running task is due, of those with no request in
    /// flight (`sending`).
    pub(crate) fn next_due(&self, sending: &Sending) -> Option<Duration> {
        self.workers
            .values()
            .filter_map(|s| s.tasks.front())
            .filter(|id| !sending.contains(id))
            .filter_map(|id| self.tasks.get(id))
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.next_poll)
            .min()
    }

    /// What a read of `id` covers, or `None` when the task no longer runs.
    pub(crate) fn read_plan(&self, id: &TaskId) -> Option<ReadPlan> {
        self.tasks
            .get(id)
            .filter(|t| t.state == TaskState::Running)
            .map(|t| ReadPlan {
                attempt: t.attempt,
                from: t.next_event,
                known: t.known_events,
            })
    }

    /// A read failed: the task's result is read again after `poll_min`.
    pub(crate) fn read_failed(&mut self, id: &TaskId, now: Duration) {
        let poll_min = self.config.poll_min;
        if let Some(t) = self.tasks.get_mut(id) {
            t.next_poll = now + poll_min;
        }
    }

    /// What a read of `id`'s objects for `attempt` returned at `now` (`wall` on this
    /// machine's clock); true when there was something new.
    pub(crate) fn read_done(
        &mut self,
        id: &TaskId,
        attempt: u32,
        read_result: bool,
        out: ReadOutcome,
        now: Duration,
        wall: SystemTime,
    ) -> bool {
        if out.events.is_empty() && out.result.is_none() {
            if read_result {
                // Not done yet: read again after a quarter of the time it has run so far (its
                // worker's heartbeat says sooner when it is done); once it has run as long as
                // a typical task, sooner: it is about to be done.
                let min = self.config.poll_min;
                let max = self.config.poll_long.max(self.config.poll_max).max(min);
                let (estimate, write) = (self.estimate, self.write_latency);
                if let Some(t) = self.tasks.get_mut(id) {
                    let ran = now.saturating_sub(t.started_at);
                    let mut wait = ran / 4;
                    if let Some(e) = estimate.filter(|e| ran >= *e) {
                        wait = wait.min(e / 16 + write);
                    }
                    t.next_poll = now + wait.max(min).min(max);
                }
            }
            return false;
        }
        if let Some(t) = self.tasks.get_mut(id).filter(|t| t.attempt == attempt) {
            t.next_event = out.next_event;
            t.known_events = t.known_events.max(out.next_event);
            t.events.extend(out.events);
            self.dirty = true;
        }
        if let Some(result) = out.result {
            self.complete(id, result, now, wall);
        }
        true
    }

    /// A task's result was read at `now` (`wall` on this machine's clock).
    pub(crate) fn complete(
        &mut self,
        id: &TaskId,
        result: wire::Result<(wire::ResultMeta, Bytes)>,
        now: Duration,
        wall: SystemTime,
    ) {
        // A result read twice (a lost worker's results are read while a round may read them
        // too) counts once.
        if self.tasks.get(id).is_none_or(|t| t.state.is_final()) {
            return;
        }
        if result.is_ok()
            && let Some(slot) = self
                .workers
                .values_mut()
                .find(|w| w.tasks.front() == Some(id))
        {
            slot.ready = true;
            self.succeeded(Path::Launch);
        }
        // A task prefetched behind this one started when the worker finished this one, not
        // when the client saw it: its result is then read on the worker's schedule, and a
        // client that reads late does not stay late (the worker's clock, kept between this
        // task's start and now).
        if let Ok((meta, _)) = &result {
            let at = |ms: u64| session_time(now, wall, UNIX_EPOCH + Duration::from_millis(ms));
            let timing = &meta.timing;
            if let Ok(worker) = WorkerId::new(&meta.worker_id) {
                let (started, finished) = (at(timing.started_unix_ms), at(timing.finished_unix_ms));
                self.journal.ran(id, &worker, started, finished);
            }
        }
        let next_start = match (&result, self.tasks.get(id)) {
            (Ok((meta, _)), Some(t)) => {
                let finished = UNIX_EPOCH + Duration::from_millis(meta.timing.finished_unix_ms);
                let ago = wall.duration_since(finished).unwrap_or(Duration::ZERO);
                now.saturating_sub(ago).clamp(t.started_at.min(now), now)
            }
            _ => now,
        };
        self.unassign(id, next_start);
        match result {
            Ok((meta, payload)) => match meta.outcome {
                Outcome::Value => {
                    if let Some(t) = self.tasks.get(id) {
                        let roundtrip = now.saturating_sub(t.started_at);
                        let worker_ms = meta
                            .timing
                            .finished_unix_ms
                            .saturating_sub(meta.timing.received_unix_ms);
                        self.stats.completed += 1;
                        self.stats.roundtrip += roundtrip;
                        self.stats.worker_ms += worker_ms;
                        // Exponential moving average (weight 1/4) of the time on the worker.
                        let took = Duration::from_millis(worker_ms);
                        self.estimate = Some(match self.estimate {
                            Some(e) => (e * 3 + took) / 4,
                            None => took,
                        });
                    }
                    self.finish(id, TaskState::Done, Some(payload), None)
                }
                Outcome::Failed(f) => {
                    let (state, cause, hint) = match f.kind {
                        FailureKind::Cancelled => (TaskState::Cancelled, None, ""),
                        FailureKind::EvaluatorDied => (
                            TaskState::Failed,
                            Some(FailureCause::EvaluatorDied),
                            "; the worker restarted R. Look for code that ends R (quit(), a crash in compiled code) or needs more memory",
                        ),
                        FailureKind::BlobUnavailable => {
                            // The store lost it (a lifecycle rule, a deletion): the futures
                            // submitted from now on upload it again instead of failing too.
                            if let Some(t) = self.tasks.get(id) {
                                for b in &t.blobs {
                                    self.blobs.remove(&b.hash);
                                }
                            }
                            (
                                TaskState::Failed,
                                Some(FailureCause::BlobUnavailable),
                                "; the session's data in the object store was removed or damaged (a lifecycle rule or a deletion). Futures created from now on upload it again: run this one again",
                            )
                        }
                        FailureKind::Protocol => {
                            (TaskState::Failed, Some(FailureCause::WorkerError), "")
                        }
                    };
                    let failure = cause.map(|cause| TaskFailure {
                        cause,
                        message: format!("{} (worker {}){hint}", f.message, meta.worker_id),
                        log_tail: f.log_tail,
                    });
                    self.finish(id, state, None, failure);
                }
            },
            Err(e) => {
                let failure = TaskFailure::new(
                    FailureCause::CorruptResult,
                    format!("the result of this future could not be read: {e}"),
                );
                self.finish(id, TaskState::Failed, None, Some(failure));
            }
        }
    }

    /// What a busy worker's beat says about its assignments: new events of the task it runs,
    /// and, when it runs a task prefetched behind the head of its inbox, that the head's result
    /// is in. True when that told something new.
    pub(crate) fn progress(
        &mut self,
        worker: &WorkerId,
        activity: &wire::WorkerActivity,
        now: Duration,
    ) -> bool {
        let (task_id, attempt, events) = match activity {
            wire::WorkerActivity::Busy {
                task_id,
                attempt,
                events,
            } => (task_id, attempt, events),
            // Idle with a task assigned: the task is done (or the assignment not yet read),
            // and its result is read now rather than at its schedule.
            wire::WorkerActivity::Idle => {
                let Some(head) = self.head(worker).cloned() else {
                    return false;
                };
                let Some(t) = self.tasks.get_mut(&head) else {
                    return false;
                };
                let learned = t.next_poll > now;
                t.next_poll = t.next_poll.min(now);
                return learned;
            }
            _ => return false,
        };
        let Some(pos) = self
            .workers
            .get(worker)
            .and_then(|s| s.tasks.iter().position(|t| t.as_str() == task_id))
        else {
            // A task it has finished (an old beat), or one it was never given.
            return false;
        };
        let mut learned = false;
        if pos > 0
            && let Some(head) = self.head(worker).cloned()
            && let Some(t) = self.tasks.get_mut(&head)
        {
            learned |= t.next_poll > now;
            t.next_poll = t.next_poll.min(now);
        }
        let id = self.workers[worker].tasks[pos].clone();
        if let Some(t) = self.tasks.get_mut(&id).filter(|t| t.attempt == *attempt)
            && *events > t.known_events
        {
            t.known_events = *events;
            learned = true;
        }
        learned
    }
}
