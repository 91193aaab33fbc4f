//! What the engine costs in object-store requests on a store without notifications (S3), and
//! the prefetching that keeps it low: the real scheduler and real worker loops over an
//! in-memory store that counts every request (see `support/`). Requests are counted, never
//! timed.

mod support;

use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{Clock, SessionId, StopCause, TaskId};
use starburst_scheduler::{FailureCause, SchedulerConfig, TaskState};
use starburst_serialization::{self as wire, InboxMeta, Limits};
use support::{Entry, Sim, SimOptions, config, spec};

/// A session configured as on S3: the scheduler's and the workers' own defaults (the worker
/// binary's heartbeat is theirs), and 20 ms per request.
fn s3_like(max_workers: u32) -> Sim {
    let cfg = SchedulerConfig::new(
        SessionId::new(support::SESSION).unwrap(),
        max_workers,
        spec(),
    );
    let opts = SimOptions::new(cfg).worker_config(|w| {
        let defaults = starburst_worker::WorkerConfig::new("s", "w", std::env::temp_dir());
        w.heartbeat = defaults.heartbeat;
        w.event_beat = defaults.event_beat;
        w.poll_min = defaults.poll_min;
        w.poll_max = defaults.poll_max;
        w.cancel_poll = defaults.cancel_poll;
    });
    let sim = Sim::with(opts);
    sim.store.set_latency(&sim.clock, Duration::from_millis(20));
    sim
}

/// The inbox message at `seq` of `worker`.
fn inbox(sim: &Sim, worker: &str, seq: u64) -> Option<InboxMeta> {
    let buf = sim.get(sim.layout.inbox(worker, seq))?;
    Some(wire::decode_inbox(&buf, Limits::default()).unwrap().0)
}

fn runs(meta: &Option<InboxMeta>, id: &TaskId) -> bool {
    matches!(meta, Some(InboxMeta::Run(t)) if t.task_id == id.as_str())
}

#[test]
fn two_hundred_short_futures_on_four_workers_cost_at_most_six_requests_each() {
    const N: usize = 200;
    let sim = s3_like(4);
    let ids: Vec<_> = (0..N)
        .map(|i| sim.submit(&format!("sleep:200;value:v{i}")))
        .collect();
    let t0 = sim.now();
    let (done, _) = sim.finish_all(&ids);
    eprintln!("{:?} of session time", sim.now() - t0);
    // Counted before close: stop messages and the idle polls of finished workers are not the
    // futures' cost.
    let requests = sim.store.requests();
    let total = sim.store.total_requests();
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.state, TaskState::Done, "{c:?}");
        assert_eq!(c.value, Some(Bytes::from(format!("v{i}"))));
    }
    assert_eq!(sim.journal.count(|e| matches!(e, Entry::Eval { .. })), N);
    assert_eq!(sim.compute.launched().len(), 4);
    let per_future = total as f64 / N as f64;
    eprintln!("{total} requests for {N} futures: {per_future:.2} per future");
    for ((op, kind, missed), n) in &requests {
        eprintln!(
            "  {op:<14} {kind:<7} {:<5} {n:>5}",
            if *missed { "miss" } else { "" }
        );
    }
    assert!(per_future <= 6.0, "{per_future:.2} requests per future");
    assert!(
        !requests.keys().any(|(op, _, _)| *op == "list"),
        "{requests:?}"
    );
    // No event-key probing, and no more than one result commit per future.
    assert!(!requests.keys().any(|(_, kind, _)| *kind == "event"));
    assert_eq!(requests[&("put_if_absent", "result", false)], N as u64);
    // Prefetching: most tasks were waiting in their worker's inbox before it looked.
    let inbox_misses = requests.get(&("get", "inbox", true)).copied().unwrap_or(0);
    assert!(inbox_misses < (N / 4) as u64, "{inbox_misses} inbox misses");
}

#[test]
fn a_lost_worker_requeues_its_prefetched_task_without_counting_a_loss_for_it() {
    let mut cfg = config(1);
    cfg.max_retries = 0;
    let sim = Sim::with(SimOptions::new(cfg));
    let a = sim.submit("hang");
    let b = sim.submit("value:b");
    let c = sim.submit("value:c");
    let first = sim.wait_running("hang");
    sim.until("b prefetched behind a", |s| {
        runs(&inbox(s, first.as_str(), 1), &b)
    });
    assert!(runs(&inbox(&sim, first.as_str(), 0), &a));
    assert_eq!(sim.state(&b), TaskState::Running);
    assert_eq!(sim.sched.info().queued, 1);
    sim.kill(
        &first,
        StopCause::Crashed,
        "Essential container in task exited",
    );
    let (done, _) = sim.finish_all(&[a, b.clone(), c]);
    // The task that ran used up its (zero) retries; the prefetched one never started and
    // runs again on the next worker, as a new attempt.
    assert_eq!(done[0].state, TaskState::Failed, "{:?}", done[0]);
    let f = done[0].failure.clone().unwrap();
    assert_eq!(f.cause, FailureCause::WorkerLost);
    assert!(f.message.contains("after 1 attempt(s)"), "{}", f.message);
    assert_eq!(
        done[1].value,
        Some(Bytes::from_static(b"b")),
        "{:?}",
        done[1]
    );
    assert_eq!(
        done[2].value,
        Some(Bytes::from_static(b"c")),
        "{:?}",
        done[2]
    );
    let runs_b = sim.journal.evaluated_by("value:b");
    assert_eq!(runs_b.len(), 1);
    assert_ne!(runs_b[0], first.as_str());
    let (meta, _) = sim.stored_result(&b).unwrap();
    assert_eq!(meta.attempt, 2);
    assert_eq!(sim.journal.evaluated_by("hang").len(), 1);
}

#[test]
fn a_lost_worker_requeues_both_its_running_and_its_prefetched_task() {
    let sim = Sim::new(1);
    let a = sim.submit("sleep:300;events:2;value:a");
    let b = sim.submit("events:1;value:b");
    let c = sim.submit("value:c");
    let first = sim.wait_running("value:a");
    sim.until("b prefetched", |s| runs(&inbox(s, first.as_str(), 1), &b));
    sim.kill(&first, StopCause::SpotInterruption, "interrupted");
    let (done, _) = sim.finish_all(&[a.clone(), b.clone(), c]);
    assert_eq!(
        done[0].value,
        Some(Bytes::from_static(b"a")),
        "{:?}",
        done[0]
    );
    assert_eq!(
        done[1].value,
        Some(Bytes::from_static(b"b")),
        "{:?}",
        done[1]
    );
    assert_eq!(
        done[2].value,
        Some(Bytes::from_static(b"c")),
        "{:?}",
        done[2]
    );
    // Events of the re-runs, complete and in order.
    assert_eq!(done[0].events, vec![Bytes::from("e0"), Bytes::from("e1")]);
    assert_eq!(done[1].events, vec![Bytes::from("e0")]);
    assert_eq!(sim.stored_result(&a).unwrap().0.attempt, 2);
    assert_eq!(sim.stored_result(&b).unwrap().0.attempt, 2);
    assert_eq!(sim.journal.evaluated_by("value:a").len(), 2);
    assert_eq!(sim.journal.evaluated_by("value:b").len(), 1);
}

#[test]
fn cancelling_a_prefetched_task_ends_it_cancelled_without_running_it() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    let b = sim.submit("value:b");
    let c = sim.submit("value:c");
    let worker = sim.wait_running("hang");
    sim.until("b prefetched", |s| runs(&inbox(s, worker.as_str(), 1), &b));
    sim.sched.cancel(std::slice::from_ref(&b)).unwrap();
    // The assignment is withdrawn in place.
    sim.until("b withdrawn", |s| {
        matches!(inbox(s, worker.as_str(), 1), Some(InboxMeta::Skip { ref task_id, .. }) if task_id == b.as_str())
    });
    assert_eq!(sim.state(&b), TaskState::Running);
    sim.sched.cancel(std::slice::from_ref(&a)).unwrap();
    let (done, _) = sim.finish_all(&[a, b, c]);
    assert_eq!(done[0].state, TaskState::Cancelled, "{:?}", done[0]);
    assert_eq!(done[1].state, TaskState::Cancelled, "{:?}", done[1]);
    assert!(done[1].failure.is_none());
    assert_eq!(
        done[2].value,
        Some(Bytes::from_static(b"c")),
        "{:?}",
        done[2]
    );
    assert!(sim.journal.evaluated_by("value:b").is_empty());
    // The same worker went on.
    assert_eq!(
        sim.journal.evaluated_by("value:c"),
        vec![worker.to_string()]
    );
    assert_eq!(sim.compute.launched().len(), 1);
}

#[test]
fn events_arrive_complete_and_in_order_without_probing_event_keys() {
    let sim = s3_like(2);
    let script = "events:3;sleep:1500;event:late;sleep:1500;value:v";
    let ids: Vec<_> = (0..6).map(|_| sim.submit(script)).collect();
    // The first task's first events reach the client while it still runs (from a beat).
    let mut early = Vec::new();
    sim.until("events of a running task", |s| {
        let c = s.peek(&ids[0]);
        assert!(!support::is_final(c.state), "{c:?}");
        early.extend(c.events);
        !early.is_empty()
    });
    let (mut done, _) = sim.finish_all(&ids);
    done[0].events.splice(0..0, early);
    let want: Vec<Bytes> = ["e0", "e1", "e2", "late"]
        .into_iter()
        .map(Bytes::from)
        .collect();
    for c in &done {
        assert_eq!(c.state, TaskState::Done, "{c:?}");
        assert_eq!(c.events, want);
    }
    // Every event read exactly once, never a miss.
    let requests = sim.store.requests();
    assert_eq!(requests[&("get", "event", false)], 6 * 4, "{requests:?}");
    assert!(
        !requests.contains_key(&("get", "event", true)),
        "{requests:?}"
    );
}

/// With a long queue, a busy worker's next assignment is in its inbox before it finishes, and
/// the worker reads it while it commits the result it just produced: one request's latency
/// between two futures, not two (commit, then read). Session time, on the manual clock.
#[test]
fn a_busy_worker_reads_its_next_assignment_while_it_commits_a_result() {
    let sim = s3_like(1);
    let ids: Vec<_> = (0..10)
        .map(|i| sim.submit(&format!("sleep:200;value:v{i}")))
        .collect();
    let (done, _) = sim.finish_all(&ids);
    assert!(done.iter().all(|c| c.state == TaskState::Done));
    let timing: Vec<_> = ids
        .iter()
        .map(|id| sim.stored_result(id).unwrap().0.timing)
        .collect();
    // From one result being ready to the next assignment being in hand.
    let mut gaps: Vec<u64> = timing
        .windows(2)
        .map(|w| w[1].received_unix_ms - w[0].finished_unix_ms)
        .collect();
    let median = median(&mut gaps);
    eprintln!("gaps between futures (ms of session time, 20 ms per request): {gaps:?}");
    // 20 ms per request: 20-30 ms (one clock step) with the read ahead, 40 ms or more without.
    assert!(median < 40, "median gap {median} ms: {gaps:?}");
}

/// A result is seen soon after it is written: once a task has run as long as a typical one, a
/// read that misses is followed by another within a sixteenth of that time (plus a write's
/// latency), not a quarter of the time it has run. One-at-a-time futures of 1 s at 20 ms per
/// request: a median of 220 ms from commit to the client seeing it before, 80 ms now.
#[test]
fn a_result_is_seen_soon_after_a_typical_run_time() {
    let sim = s3_like(1);
    let mut lags = Vec::new();
    for i in 0..10 {
        let id = sim.submit(&format!("sleep:1000;value:v{i}"));
        assert_eq!(sim.finish(&id).state, TaskState::Done);
        let seen = wire::unix_ms(sim.clock.wall());
        let finished = sim.stored_result(&id).unwrap().0.timing.finished_unix_ms;
        // The first two set the estimate.
        if i >= 2 {
            lags.push(seen.saturating_sub(finished));
        }
    }
    let median = median(&mut lags);
    eprintln!("ms from a result's commit to the client seeing it: {lags:?}");
    assert!(median < 150, "median {median} ms: {lags:?}");
}

/// One slow key does not hold up the rest: while the client's read of one task's result takes
/// 30 s (a key whose requests time out and are retried), the other futures go on at their
/// usual pace. (Rounds that waited for every request of the round finished none of the 39 in
/// the first 10 s.)
#[test]
fn a_slow_read_does_not_hold_up_the_other_futures() {
    let sim = s3_like(4);
    let slow = sim.submit("sleep:100;value:slow");
    sim.store
        .slow_gets(&format!("results/{slow}"), Duration::from_secs(30));
    let ids: Vec<_> = (0..39)
        .map(|i| sim.submit(&format!("sleep:50;value:v{i}")))
        .collect();
    run_for(&sim, Duration::from_secs(10));
    let done = ids
        .iter()
        .filter(|id| sim.state(id) == TaskState::Done)
        .count();
    // All but the one queued behind the slow task on its worker (its result is read once the
    // slow task's is).
    assert!(done >= 38, "{done} of 39 futures done in 10 s");
    assert_eq!(sim.state(&slow), TaskState::Running);
    let (all, _) = sim.finish_all(&[slow]);
    assert_eq!(all[0].state, TaskState::Done);
}

/// The median of `v` (sorted in place).
fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs the session's clock for `d` of session time, in steps of 100 ms.
fn run_for(sim: &Sim, d: Duration) {
    let until = sim.now() + d;
    while sim.now() < until {
        sim.clock.advance(Duration::from_millis(100));
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// What every request of the session costs per worker and hour while the clock runs for
/// `minutes`, at S3 Standard's us-east-1 prices (GET/HEAD $0.0004 and PUT/LIST $0.005 per
/// 1,000 requests), printed by kind; and what a 1 vCPU / 2 GB worker costs per hour on demand
/// and on Spot.
struct RequestCost {
    hourly: f64,
    on_demand: f64,
    spot: f64,
}

fn request_cost(sim: &Sim, workers: usize, minutes: u64, what: &str) -> RequestCost {
    let before = sim.store.requests();
    run_for(sim, Duration::from_secs(60 * minutes));
    let after = sim.store.requests();
    let (mut gets, mut puts) = (0.0, 0.0);
    eprintln!("requests per {what} worker per minute:");
    for (k, n) in &after {
        let n = (*n - before.get(k).copied().unwrap_or(0)) as f64 / workers as f64 / minutes as f64;
        if n == 0.0 {
            continue;
        }
        eprintln!(
            "  {:<14} {:<7} {:<5} {n:>6.2}",
            k.0,
            k.1,
            if k.2 { "miss" } else { "" }
        );
        match k.0 {
            "get" | "head" | "get_range" => gets += n,
            _ => puts += n,
        }
    }
    let hourly = 60.0 * (gets * 0.0004 + puts * 0.005) / 1000.0;
    let prices = starburst_cost::Catalog::builtin()
        .prices("us-east-1", starburst_cloud::Arch::default())
        .unwrap();
    let cost = RequestCost {
        hourly,
        on_demand: prices.hourly(spec().size, starburst_cloud::Capacity::OnDemand),
        spot: prices.hourly(spec().size, starburst_cloud::Capacity::Spot),
    };
    eprintln!(
        "{gets:.1} GET + {puts:.1} PUT per {what} worker per minute: ${hourly:.5}/h against ${:.5}/h on demand ({:.2}%) and ${:.5}/h on Spot ({:.2}%); 1,000 {what} workers: ${:.2}/h of requests, ${:.2}/h of Fargate",
        cost.on_demand,
        cost.percent(cost.on_demand),
        cost.spot,
        cost.percent(cost.spot),
        1000.0 * hourly,
        1000.0 * cost.on_demand
    );
    cost
}

impl RequestCost {
    fn percent(&self, of: f64) -> f64 {
        100.0 * self.hourly / of
    }
}

/// What idle workers cost in requests against what they cost in Fargate time: every request of
/// the session (the workers' inbox polls, beats and session-heartbeat reads, and the client's
/// own) while four workers idle for ten minutes after a minute of settling.
#[test]
fn idle_workers_cost_at_most_two_percent_of_their_compute_in_requests() {
    const WORKERS: usize = 4;
    let sim = s3_like(WORKERS as u32);
    let ids: Vec<_> = (0..WORKERS)
        .map(|i| sim.submit(&format!("sleep:2000;value:v{i}")))
        .collect();
    sim.finish_all(&ids);
    assert_eq!(sim.compute.live().len(), WORKERS);
    run_for(&sim, Duration::from_secs(60));
    let cost = request_cost(&sim, WORKERS, 10, "idle");
    assert!(
        cost.hourly <= 0.02 * cost.on_demand,
        "idle requests cost {:.2}% of compute",
        cost.percent(cost.on_demand)
    );
}

/// What busy workers cost in requests against their Fargate time, for futures that run for
/// minutes: every request of the session while four workers run one 10-minute future each
/// (beats, cancel checks, the client's reads of their beats and results, the session
/// heartbeat).
#[test]
fn busy_workers_cost_at_most_ten_percent_of_their_compute_in_requests() {
    const WORKERS: usize = 4;
    let sim = s3_like(WORKERS as u32);
    let ids: Vec<_> = (0..WORKERS)
        .map(|i| sim.submit(&format!("sleep:600000;value:v{i}")))
        .collect();
    run_for(&sim, Duration::from_secs(60));
    assert!(ids.iter().all(|id| sim.state(id) == TaskState::Running));
    let cost = request_cost(&sim, WORKERS, 5, "busy");
    assert!(
        cost.hourly <= 0.10 * cost.on_demand,
        "busy requests cost {:.2}% of compute",
        cost.percent(cost.on_demand)
    );
}
