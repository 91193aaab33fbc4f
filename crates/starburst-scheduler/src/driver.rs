//! The driver: the background task that does the session's I/O. Each round it asks the core
//! ([`Core`]) what to send, sends it with many requests in flight (see [`crate::requests`]),
//! and tells the core what came back. The state lock is never held across I/O.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use starburst_cloud::{LogQuery, ObjectPath, ObjectStoreExt, StopCause, TaskId, WorkerId};
use starburst_serialization::{self as wire, InboxMeta, Limits, SessionLayout, unix_ms};

use crate::requests::{InFlight, Kind};
use crate::state::Core;
use crate::state::dispatch::{Assignment, Cancel, ReadOutcome, Sending};
use crate::state::trouble::Path;
use crate::state::workers::{Beat, Busy};
use crate::{Error, FailureCause, Ports, Result, SchedulerConfig, TaskFailure};

/// What the caller's thread and the driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    core: Mutex<Core>,
    pub(crate) cv: Condvar,
    pub(crate) wake: tokio::sync::Notify,
    /// True once the session closes: ends the watch's and the launches' waits.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// Wakes the launches: tasks may wait that no worker can take.
    launch_wake: tokio::sync::Notify,
    pub(crate) ports: Ports,
    pub(crate) config: Arc<SchedulerConfig>,
    pub(crate) layout: SessionLayout,
    /// The bound on requests in flight.
    inflight: InFlight,
}

impl Shared {
    pub(crate) fn new(core: Core, ports: Ports, config: Arc<SchedulerConfig>) -> Self {
        Self {
            core: Mutex::new(core),
            cv: Condvar::new(),
            wake: tokio::sync::Notify::new(),
            closing: tokio::sync::watch::Sender::new(false),
            launch_wake: tokio::sync::Notify::new(),
            layout: SessionLayout::new(config.session_id.as_str()),
            inflight: InFlight::new(config.requests),
            ports,
            config,
        }
    }

    /// The core, with its idea of the time set to now (see `Core::now`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        core.now = self.now();
        core
    }

    /// Wakes the callers waiting in `collect` when a task changed.
    pub(crate) fn notify_waiters(&self, st: &mut Core) {
        if st.dirty {
            st.dirty = false;
            self.cv.notify_all();
        }
    }

    fn now(&self) -> Duration {
        self.ports.clock.now()
    }
}

pub(crate) fn key(s: String) -> Result<ObjectPath> {
    Ok(ObjectPath::parse(s)?)
}

/// Runs the driver; if it panics (a bug), the session's futures fail with an engine error and
/// every worker it started is stopped, so that none runs on without a client.
pub(crate) async fn supervise(sh: Arc<Shared>) {
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
        let failure = TaskFailure::new(
            FailureCause::EngineError,
            format!(
                "the starburst engine failed ({why}); this is a bug, please report it. The session's workers were stopped; start a new session (plan(starburst, ...)) to go on"
            ),
        );
        st.fatal = Some(failure.clone());
        st.finish_pending(Some(failure));
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

/// The session's I/O: rounds of assignments, cancels and reads ([`run_rounds`]) and, beside
/// them, launches ([`run_launches`]) and the watch over workers, failures and spend
/// ([`watch`]), so that neither a ramp to a thousand workers (a hundred launch calls) nor a
/// slow health check (a thousand heartbeat reads) holds up results; then the shutdown.
async fn drive(sh: Arc<Shared>) {
    // The first beat precedes every launch: a worker's orphan clock starts at its own start.
    if sh.config.client_beat.is_some() {
        client_beat(&sh).await;
    }
    tokio::join!(run_rounds(&sh), run_launches(&sh), watch(&sh));
    shutdown(&sh).await;
}

/// Writes the session heartbeat; a failure counts against the store's failure bound.
async fn client_beat(sh: &Shared) {
    match write_client_beat(sh, false).await {
        Ok(()) => sh.lock().succeeded(Path::Store),
        Err(e) => {
            tracing::warn!(error = %e, "writing the session heartbeat failed; retrying");
            sh.lock().failed(Path::Store, &e, sh.now());
        }
    }
}

/// Every `health_interval` until the session closes: the session heartbeat when due, worker
/// status and heartbeats, the failure bound and the spending caps. Wakes the rounds when it
/// changed something (a lost worker's task re-queued, a task failed).
async fn watch(sh: &Shared) {
    let clock = sh.ports.clock.clone();
    let mut closing = sh.closing.subscribe();
    let mut next_client_beat = clock.now() + sh.config.client_beat.unwrap_or_default();
    loop {
        if let Some(every) = sh.config.client_beat
            && clock.now() >= next_client_beat
        {
            client_beat(sh).await;
            next_client_beat = clock.now() + every;
        }
        let mut progressed = match health(sh).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "worker health check failed; retrying");
                false
            }
        };
        progressed |= sh.lock().enforce_failure_bound(sh.now());
        // The caps are checked as often as health, whether or not that succeeded.
        progressed |= budget_check(sh).await;
        if progressed {
            let mut st = sh.lock();
            sh.notify_waiters(&mut st);
            sh.wake.notify_one();
        }
        if sh.lock().closed {
            return;
        }
        tokio::select! {
            () = clock.sleep(sh.config.health_interval) => {}
            _ = closing.wait_for(|closed| *closed) => {}
        }
        if sh.lock().closed {
            return;
        }
    }
}

/// Launch calls, one after another, for as long as tasks wait that no worker can take; then a
/// wait for the rounds to say there may be more (or the watch's period, after a launch that
/// failed or was throttled).
async fn run_launches(sh: &Shared) {
    let mut closing = sh.closing.subscribe();
    loop {
        if sh.lock().closed {
            return;
        }
        let want = sh.lock().launch_wanted(sh.now());
        if want > 0 {
            match launch(sh, want).await {
                Ok(true) => {
                    sh.wake.notify_one();
                    continue;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "launching workers failed; retrying"),
            }
            let mut st = sh.lock();
            sh.notify_waiters(&mut st);
        }
        tokio::select! {
            () = sh.launch_wake.notified() => {}
            () = sh.ports.clock.sleep(sh.config.health_interval) => {}
            _ = closing.wait_for(|closed| *closed) => {}
        }
    }
}

/// A request of the rounds in flight: it answers with the task it was about (free for the next
/// request about it), whether it changed something, and, for a read, when that task's result
/// is next due.
type Sent<'a> = BoxFuture<'a, (TaskId, bool, Option<Duration>)>;

/// The session's requests about tasks, pipelined: decide what to send (under the state lock),
/// send it, and decide again as answers come in, without waiting for the slowest request of a
/// decision, so that one slow or retrying key never holds up the rest. A task has at most one
/// request in flight; what a decision leaves out for that reason (a cancel of a task whose
/// assignment is being written, a read of a task being read) comes in a later one.
///
/// Decisions are time-sliced to keep the client's CPU per future low at a thousand workers.
/// There is something to decide when an answer changed something, a call or the watch woke the
/// driver (a submit, a cancel, a lost worker), a store notification came or a result read fell
/// due; the next decision then comes at once if nothing is in flight any more, else a time
/// slice after the last one (`poll_min`, or ten times what that decision cost if more).
async fn run_rounds(sh: &Shared) {
    let out = ObjectPath::parse(sh.layout.out()).ok();
    let mut watch = out.and_then(|p| sh.ports.store.watch(&p));
    let watching = watch.is_some();
    let clock = sh.ports.clock.clone();
    // A failing request is retried at the latest after `poll_max`.
    let longest = sh.config.poll_max.max(sh.config.poll_min);
    let mut pending: FuturesUnordered<Sent<'_>> = FuturesUnordered::new();
    let mut sending = Sending::default();
    loop {
        if sh.lock().closed {
            // What is in flight finishes: an assignment half-written would leave its worker
            // waiting at a gap in its inbox instead of reading its stop message.
            while pending.next().await.is_some() {}
            return;
        }
        let decided = clock.now();
        let cpu = std::time::Instant::now();
        for (id, request) in decide(sh, watching, &sending) {
            sending.add(id);
            pending.push(request);
        }
        // Deciding takes at most a tenth of a core: the slice grows with what a decision costs
        // (a scan of every worker's inbox, about 1 ms at 1,000 workers).
        let slice = sh.config.poll_min.max(cpu.elapsed() * 10);
        // Workers for the tasks no idle worker can take are started beside the rounds.
        sh.launch_wake.notify_one();
        let (mut progressed, mut woke) = (false, false);
        // The next result read due (stores that cannot notify): found once per decision, then
        // kept up to date from the reads' answers.
        let mut due = match watching {
            true => None,
            false => sh.lock().next_due(&sending),
        };
        let mut timer: Option<(Duration, BoxFuture<'_, ()>)> = None;
        loop {
            let now = clock.now();
            if (progressed || woke) && (pending.is_empty() || now >= decided + slice) {
                break;
            }
            // A close does not wait for the slice (the clock may not move again).
            if woke && sh.lock().closed {
                break;
            }
            // When to look again: a slice after the decision once there is something to
            // decide, else when the next result read is due (at the latest after `longest`).
            let until = if progressed || woke {
                Some(decided + slice)
            } else if watching {
                None
            } else {
                Some(due.map_or(decided + longest, |d| d.min(decided + longest)))
            };
            if timer.as_ref().map(|(t, _)| *t) != until {
                timer = until.map(|t| {
                    let wait = t.saturating_sub(now).max(Duration::from_millis(1));
                    (t, clock.sleep(wait))
                });
            }
            let timer_fired = async {
                match timer.as_mut() {
                    Some((_, sleep)) => sleep.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((id, changed, next)) = pending.next(), if !pending.is_empty() => {
                    sending.done(&id);
                    progressed |= changed;
                    due = match (due, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let mut st = sh.lock();
                    sh.notify_waiters(&mut st);
                }
                () = sh.wake.notified(), if !woke => woke = true,
                _ = async { watch.as_mut().expect("watching").changed(longest).await }, if watching && !woke && !progressed => woke = true,
                () = timer_fired => {
                    timer = None;
                    woke |= !progressed;
                }
            }
        }
    }
}

/// One decision: the cancellations, assignments and reads to send now, each a request ready
/// to go (bounded by its kind's limit as it is sent), none about a task in `sending`.
fn decide<'a>(sh: &'a Shared, watching: bool, sending: &Sending) -> Vec<(TaskId, Sent<'a>)> {
    // Decided together: a cancel only ever targets an assignment already written (one being
    // written waits for the next decision), and a read a task whose assignment is.
    let (cancels, reads, assignments) = {
        let now = sh.now();
        let mut st = sh.lock();
        let cancels = st.take_cancels(sending);
        let mut reads = st.due_reads(now, watching, sending);
        if !cancels.is_empty() {
            // One request per task at a time: its read waits for its cancel.
            let cancelled: HashSet<&TaskId> = cancels.iter().map(|c| &c.0).collect();
            reads.retain(|(id, _)| !cancelled.contains(id));
        }
        (cancels, reads, st.take_assignments(now, sending))
    };
    let inflight = &sh.inflight;
    let mut out: Vec<(TaskId, Sent<'a>)> =
        Vec::with_capacity(cancels.len() + reads.len() + assignments.len());
    for c in cancels {
        let id = c.0.clone();
        let request = async move {
            let task = c.0.clone();
            if let Err(e) = inflight.send(Kind::Cancel, write_cancel(sh, c)).await {
                tracing::warn!(task = %task, error = %e, "writing a cancel failed; retrying");
            }
            (task, false, None)
        };
        out.push((id, Box::pin(request)));
    }
    for a in assignments {
        let id = a.task.clone();
        let request = async move {
            let task = a.task.clone();
            // A written assignment changes what can be read and prefetched next. One that
            // failed was undone, and its task waits in the queue again until the next
            // decision (at the latest after `poll_max`): a store that refuses every write at
            // once must not make the driver spin.
            match inflight.send(Kind::Assign, write_assignment(sh, a)).await {
                Ok(()) => (task, true, None),
                Err(e) => {
                    tracing::warn!(task = %task, error = %e, "writing an assignment failed; retrying");
                    (task, false, None)
                }
            }
        };
        out.push((id, Box::pin(request)));
    }
    for (id, result) in reads {
        let task = id.clone();
        let request = async move {
            let changed = inflight
                .send(Kind::Read, read_task(sh, id.clone(), result, watching))
                .await;
            let due = sh.lock().next_poll_of(&id);
            (id, changed, due)
        };
        out.push((task, Box::pin(request)));
    }
    out
}

/// Writes an assignment to its worker's inbox; a write that fails is undone.
async fn write_assignment(sh: &Shared, a: Assignment) -> Result<()> {
    let Assignment {
        worker,
        task,
        seq,
        frame,
    } = a;
    let began = sh.now();
    let sent = match key(sh.layout.inbox(worker.as_str(), seq)) {
        Ok(k) => sh
            .ports
            .store
            .put(&k, Bytes::from(frame))
            .await
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    let took = sh.now().saturating_sub(began);
    let mut st = sh.lock();
    match sent {
        Ok(()) => {
            st.wrote(took);
            st.task_succeeded(&task);
            Ok(())
        }
        Err(e) => {
            st.assignment_failed(&worker, &task, seq);
            st.task_failed(&task, &e, sh.now());
            Err(e)
        }
    }
}

/// The marker stops a task that runs; a `Skip` over its assignment withdraws it if the worker
/// has not read it yet (a prefetched task). A cancel that fails is tried again.
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
    let mut st = sh.lock();
    match written {
        Ok(()) => {
            st.task_succeeded(&id);
            Ok(())
        }
        Err(e) => {
            st.task_failed(&id, &e, sh.now());
            st.cancel_failed(&id);
            Err(e)
        }
    }
}

/// Reads a task's result and events; a failure is retried after `poll_min`. True when there
/// was something new.
async fn read_task(sh: &Shared, id: TaskId, read_result: bool, eager: bool) -> bool {
    match poll_task(sh, &id, read_result, eager).await {
        Ok(p) => {
            sh.lock().task_succeeded(&id);
            p
        }
        Err(e) => {
            // One unreadable key must not keep the other tasks' results from being read.
            tracing::warn!(task = %id, error = %e, "reading the task's result failed; retrying");
            let now = sh.now();
            let mut st = sh.lock();
            st.task_failed(&id, &e, now);
            st.read_failed(&id, now);
            false
        }
    }
}

/// Reads a running task's result (when `read_result`) and its new events: those a heartbeat
/// or the result reported, or, with `eager`, every event written so far (probing the next
/// key). True when there was something new.
async fn poll_task(sh: &Shared, id: &TaskId, read_result: bool, eager: bool) -> Result<bool> {
    let Some(plan) = sh.lock().read_plan(id) else {
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
        Some(Ok((meta, _))) if meta.attempt == plan.attempt => Some(meta.events),
        // Another attempt's result (a lost run that committed after all) or an unreadable one.
        Some(_) => Some(plan.from),
        None if eager => None,
        None => Some(plan.known),
    };
    let (events, next_event) = match upto {
        Some(n) if n <= plan.from => (Vec::new(), plan.from),
        _ => read_events(sh, id, plan.attempt, plan.from, upto).await?,
    };
    let out = ReadOutcome {
        result,
        events,
        next_event,
    };
    let (now, wall) = (sh.now(), sh.ports.clock.wall());
    Ok(sh
        .lock()
        .read_done(id, plan.attempt, read_result, out, now, wall))
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

/// Rewrites the client's session heartbeat: it moves (workers know their client lives), and
/// carries the unattended deadline; `closed` tells every worker to stop.
async fn write_client_beat(sh: &Shared, closed: bool) -> Result<()> {
    let now = sh.now();
    let (deadline, seq) = {
        let mut st = sh.lock();
        st.client_seq += 1;
        let deadline = if closed {
            None
        } else {
            st.unattended_deadline(now, 0)
        };
        (deadline, st.client_seq)
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
    let requested_at = sh.now();
    // Each worker carries its hard deadline from the start: it holds even if this client dies
    // before the worker ever reads a session heartbeat.
    let deadline = sh.lock().unattended_deadline(requested_at, count).map(|d| {
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
        Err(e) if e.is_retryable() || e.needs_user() => {
            // Throttled, or a failure that may pass: the queue waits for a later round instead
            // of failing as if no worker could ever start (up to the failure bound). Access
            // denied, no usable credentials: the failure bound fails the queue at once with a
            // cause that says so.
            tracing::warn!(error = %e, "launching workers failed; will retry");
            sh.lock().failed(Path::Launch, &Error::Cloud(e), sh.now());
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "launching workers failed");
            let e = Error::Cloud(e);
            sh.lock().failed(Path::Launch, &e, sh.now());
            starburst_cloud::LaunchReport {
                launched: vec![],
                failures: vec![e.to_string()],
            }
        }
    };
    let now = sh.now();
    Ok(sh.lock().launched(&report, requested_at, now))
}

/// Checks worker status and heartbeats; re-queues or fails the tasks of lost workers. A busy
/// worker's beat also says how many events its task has written and which task it runs: true
/// when that told something new (events to read, a result to read now).
async fn health(sh: &Shared) -> Result<bool> {
    let ids = sh.lock().watched();
    if ids.is_empty() {
        return Ok(false);
    }
    let statuses = match sh.ports.compute.describe(&ids).await {
        Ok(s) => {
            sh.lock().succeeded(Path::Watch);
            s
        }
        Err(e) => {
            let e = Error::Cloud(e);
            sh.lock().failed(Path::Watch, &e, sh.now());
            return Err(e);
        }
    };
    let now = sh.now();
    let (mut lost, busy) = {
        let mut st = sh.lock();
        let lost = st.statuses(&statuses, now, sh.ports.clock.wall());
        let busy = st.busy(&lost);
        (lost, busy)
    };
    // Heartbeats of busy workers: a beat that stops moving means the worker is gone even if
    // the platform has not noticed yet.
    let reads = sh
        .inflight
        .fan_out(Kind::Beat, busy, |b: Busy| async move {
            let read = match key(sh.layout.beat(b.0.as_str())) {
                Ok(k) => sh.ports.store.get_opt(&k).await.map_err(Error::Cloud),
                Err(e) => Err(e),
            };
            (b, read)
        })
        .await;
    let mut learned = false;
    let mut failure = None;
    let mut expired = Vec::new();
    {
        let mut st = sh.lock();
        for (busy, read) in reads {
            let seen = match read {
                Ok(Some(buf)) => wire::decode_heartbeat(&buf).ok(),
                Ok(None) => None,
                Err(e) => {
                    st.failed(Path::Store, &e, now);
                    failure = Some(e);
                    continue;
                }
            };
            st.succeeded(Path::Store);
            if let Some(b) = &seen {
                learned |= st.progress(&busy.0, &b.activity, now);
            }
            if let Beat::Expired(cause, why) = st.beat(&busy, seen.map(|b| b.seq), now) {
                expired.push((busy.0, cause, why));
            }
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

async fn worker_lost(sh: &Shared, id: &WorkerId, cause: StopCause, message: &str) {
    let Some(tasks) = sh.lock().remove_worker(id) else {
        return;
    };
    tracing::info!(worker = %id, %cause, message, tasks = ?tasks, "worker stopped");
    if matches!(
        cause,
        StopCause::StartFailedTransient | StopCause::CannotStartContainer
    ) {
        // Another worker is started; if none gets going within the failure bound, the queue
        // fails with a launch failure and the platform's words.
        let e = Error::Cloud(starburst_cloud::Error::Other {
            op: "start worker",
            resource: id.to_string(),
            source: format!("{cause}: {message}").into(),
        });
        sh.lock().failed(Path::Launch, &e, sh.now());
    }
    // The worker may have committed results (and their events) just before it went away.
    for t in &tasks {
        if let Err(e) = poll_task(sh, t, true, false).await {
            tracing::warn!(task = %t, error = %e, "reading a lost worker's result failed");
        }
    }
    let fails = sh.lock().lost_fails(&tasks, cause);
    let log_tail = match fails {
        true => log_tail(sh, id).await,
        false => Vec::new(),
    };
    let requeued = sh.lock().worker_lost(id, tasks, cause, message, &log_tail);
    if !requeued.is_empty() {
        tracing::info!(tasks = ?requeued, "re-queued the tasks of a lost worker");
        sh.wake.notify_one();
    }
}

/// A worker's last log lines (none when they cannot be read).
async fn log_tail(sh: &Shared, id: &WorkerId) -> Vec<String> {
    let query = LogQuery {
        tail: Some(20),
        since: None,
    };
    sh.ports
        .logs
        .read(id, &query)
        .await
        .map(|l| l.into_iter().map(|l| l.message).collect())
        .unwrap_or_default()
}

/// Enforces the caps now (see `Core::budget_decide`), stops the workers it names after
/// reading their committed results, and retries stop requests that did not reach the
/// platform. True when it changed something.
async fn budget_check(sh: &Shared) -> bool {
    if sh.lock().budget.is_none() {
        return false;
    }
    let decided = sh.lock().budget_decide(sh.now());
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
        }
        sh.lock().fail_stopped(tasks, &failure);
    }
    let mut st = sh.lock();
    st.dirty = true;
    sh.notify_waiters(&mut st);
    true
}

/// Sends the stop requests recorded but not yet sent; true when one was sent.
async fn retry_stops(sh: &Shared, reason: &str) -> bool {
    let ids = sh.lock().unsent_stops();
    if ids.is_empty() {
        return false;
    }
    match sh.ports.compute.stop(&ids, reason).await {
        Ok(()) => {
            sh.lock().stops_sent(&ids);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, workers = ?ids, "stopping workers failed; retrying");
            false
        }
    }
}

async fn close_session(sh: &Shared) {
    let now = sh.now();
    let (inboxes, billed) = {
        let mut st = sh.lock();
        let out = st.close_all(now);
        sh.notify_waiters(&mut st);
        out
    };
    let frame = wire::encode_inbox(
        &InboxMeta::Stop {
            reason: "session closed".into(),
        },
        &[],
        sh.config.encode,
    );
    let frame = Bytes::from(frame);
    sh.inflight
        .fan_out(Kind::Stop, inboxes, |(id, seq)| {
            let frame = frame.clone();
            async move {
                if let Ok(k) = key(sh.layout.inbox(id.as_str(), seq)) {
                    let _ = sh.ports.store.put(&k, frame).await;
                }
            }
        })
        .await;
    // Workers that miss their stop message (or whose stop call fails) stop at their next read
    // of the session heartbeat.
    if sh.config.client_beat.is_some()
        && let Err(e) = write_client_beat(sh, true).await
    {
        tracing::warn!(error = %e, "marking the session closed failed");
    }
    // Every billed worker is stopped, the session's and those still stopping.
    if !billed.is_empty()
        && let Err(e) = sh.ports.compute.stop(&billed, "session closed").await
    {
        tracing::warn!(error = %e, "stopping workers failed");
    }
    sh.lock().workers.clear();
    // The engine stops watching workers at close: the meter takes the stop times the platform
    // reports now, and the stop-latency bound for the workers still stopping.
    if billed.is_empty() || sh.lock().budget.is_none() {
        return;
    }
    match sh.ports.compute.describe(&billed).await {
        Ok(statuses) => {
            let now = sh.now();
            sh.lock()
                .meter_statuses(&statuses, now, sh.ports.clock.wall());
        }
        Err(e) => tracing::warn!(error = %e, "reading the stopped workers' status failed"),
    }
    sh.lock().close_meter();
}

/// Closes the session: [`close_session`] then the journal's last word (workers not seen
/// stopped count as stopped at the close).
async fn shutdown(sh: &Shared) {
    close_session(sh).await;
    let mut st = sh.lock();
    let now = st.now;
    st.journal.closed(now);
}
