//! The cost meter and the hard budget caps, on the simulated session of `support/mod.rs`.
//!
//! Time moves in steps of a second, and after each step the test waits until the scheduler has
//! checked the caps at the new time. A driver that went to sleep just before the step (it
//! computed its wait on the old time) is woken by nudges of 5 ms, at most half a second in
//! all: checks are then at most 1.5 s apart on the session clock, within the 2 s the budget
//! assumes. What the session really spent is taken from the compute port's record of launches
//! and stop requests (a stop takes no time in the simulation).

mod support;

use std::time::Duration;

use proptest::prelude::*;
use starburst_cloud::{Capacity, TaskId};
use starburst_cost::billed_seconds;
use starburst_scheduler::{
    BudgetConfig, Catalog, CostReport, FailureCause, SchedulerConfig, TaskState,
};
use support::{Sim, SimOptions, config, is_final};

/// One step of the session clock.
const STEP: Duration = Duration::from_secs(1);
/// The budget's check interval.
const CHECK: Duration = Duration::from_secs(2);

/// A test region where a worker of the simulation's size (1 vCPU, 2 GB) costs $36 per hour:
/// a cent per second, $0.60 for the minimum minute.
fn catalog() -> Catalog {
    Catalog::builtin_with(
        r#"{"regions": {"xx-test-1": {"x86_64": {"vcpu_hour": 36, "gb_hour": 0, "spot_factor": 1}}}}"#,
    )
    .unwrap()
}

fn budget_config(
    max_workers: u32,
    max_cost: Option<f64>,
    max_hourly_cost: Option<f64>,
) -> SchedulerConfig {
    let mut c = config(max_workers);
    let mut b = BudgetConfig::new(catalog(), "xx-test-1").with_caps(max_cost, max_hourly_cost);
    b.check_interval = CHECK;
    // Stops are instant in the simulation.
    b.stop_latency = STEP;
    c.budget = Some(b);
    // Workers give up on a silent client after 5 s: launches need 8 s of budget left.
    c.orphan_timeout = Duration::from_secs(5);
    c.client_beat = Some(Duration::from_secs(1));
    c
}

fn cost(sim: &Sim) -> CostReport {
    sim.sched.cost().expect("the session is priced")
}

/// Moves the clock one step and waits until the caps were checked at the new time.
fn step(sim: &Sim) {
    sim.clock.advance(STEP);
    let target = sim.now();
    for i in 1..=10_000 {
        if cost(sim).last_check.is_some_and(|t| t >= target) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
        if i % 100 == 0 {
            sim.clock.advance(Duration::from_millis(5));
        }
    }
    panic!("gave up waiting for a budget check");
}

/// What the session's workers really cost so far: from launch to the first stop request (or
/// `now`), per second, at least a minute.
fn spent(sim: &Sim, hourly: f64) -> f64 {
    let now = sim.now();
    sim.port
        .runs()
        .values()
        .map(|(start, stop)| {
            let end = stop.unwrap_or(now);
            hourly * billed_seconds(end.saturating_sub(*start)) as f64 / 3600.0
        })
        .sum()
}

/// Steps until every task is final, checking the cap at every step; returns the final
/// answers.
fn run_to_end(
    sim: &Sim,
    ids: &[TaskId],
    max_cost: Option<f64>,
) -> Vec<starburst_scheduler::Collected> {
    let mut out = vec![None; ids.len()];
    for _ in 0..2_000 {
        for (i, id) in ids.iter().enumerate() {
            if out[i].is_none() {
                let c = sim.peek(id);
                if is_final(c.state) {
                    out[i] = Some(c);
                }
            }
        }
        if out.iter().all(Option::is_some) {
            return out.into_iter().map(Option::unwrap).collect();
        }
        if let Some(cap) = max_cost {
            let hourly = cost(sim).worker_hourly;
            assert!(spent(sim, hourly) <= cap + 1e-9, "spent past the cap");
        }
        step(sim);
    }
    panic!("tasks never finished: {ids:?}");
}

#[test]
fn the_meter_bills_two_workers_for_ten_minutes() {
    let mut c = config(2);
    c.spec.capacity = Capacity::OnDemand;
    // Time moves by whole seconds without waiting for the driver: no lease may expire.
    c.lease = Duration::from_secs(3600);
    let sim = Sim::with(SimOptions::new(c));
    let ids = [sim.submit("hang"), sim.submit("hang")];
    // Both launch at time zero.
    sim.settle("two workers", |s| s.compute.launched().len() == 2);
    sim.settle("both running", |s| {
        ids.iter().all(|id| s.peek(id).state == TaskState::Running)
    });
    for _ in 0..600 {
        sim.clock.advance(STEP);
        std::thread::sleep(Duration::from_millis(1));
    }
    // us-east-1, x86-64, on-demand: 0.04048 per vCPU-hour + 2 GB × 0.004445 per GB-hour.
    let hourly = 0.04048 + 2.0 * 0.004445;
    let live = cost(&sim);
    assert_eq!((live.meter.workers, live.meter.running), (2, 2));
    assert!((live.meter.hourly_rate - 2.0 * hourly).abs() < 1e-12);
    assert!((live.worker_hourly - hourly).abs() < 1e-12);
    assert_eq!(live.region, "us-east-1");
    assert_eq!((live.max_cost, live.max_hourly_cost), (None, None));
    assert!(!live.exceeded);

    sim.sched.close();
    let r = cost(&sim).meter;
    assert_eq!((r.workers, r.running), (2, 0));
    assert_eq!((r.vcpu_seconds, r.gb_seconds), (1200.0, 2400.0));
    // 2 × 0.04937 × 600 / 3600 = 0.0164566…
    let usd = 2.0 * hourly * 600.0 / 3600.0;
    assert!((r.usd - usd).abs() < 1e-12, "{} != {usd}", r.usd);
    assert!((r.usd_on_demand - usd).abs() < 1e-12);
    assert_eq!(r.hourly_rate, 0.0);
}

#[test]
fn a_session_without_caps_reports_its_cost() {
    let sim = Sim::new(1);
    let fresh = cost(&sim);
    assert_eq!(fresh.meter, starburst_scheduler::MeterReport::default());
    assert_eq!(fresh.region, "us-east-1");
    // The simulation's workers are Spot: priced below on-demand.
    let on_demand = 0.04048 + 2.0 * 0.004445;
    assert!(fresh.worker_hourly > 0.0 && fresh.worker_hourly < on_demand);

    let id = sim.submit("sleep:5000;value:x");
    let done = sim.finish(&id);
    assert_eq!(done.state, TaskState::Done);
    sim.sched.close();
    let r = cost(&sim);
    assert_eq!((r.meter.workers, r.meter.running), (1, 0));
    // One short run is billed its minimum minute.
    assert_eq!(r.meter.vcpu_seconds, 60.0);
    assert!((r.meter.usd - fresh.worker_hourly / 60.0).abs() < 1e-12);
    assert!(r.meter.usd < r.meter.usd_on_demand);
    assert!(!r.exceeded);

    let unpriced = Sim::with(SimOptions::new({
        let mut c = config(1);
        c.budget = None;
        c
    }));
    assert!(unpriced.sched.cost().is_none());
}

#[test]
fn at_the_cap_pending_futures_fail_and_finished_ones_keep_their_values() {
    // $1.00: one worker fits (each launch is reserved a billed minute, $0.60), a second not.
    let sim = Sim::with(SimOptions::new(budget_config(2, Some(1.0), None)));
    let quick = sim.submit("value:a");
    let long = sim.submit("sleep:200000;value:b");
    let queued = sim.submit("value:c");
    let out = run_to_end(&sim, &[quick.clone(), long, queued], Some(1.0));
    assert_eq!(sim.compute.launched().len(), 1, "no launch beyond the cap");
    assert_eq!(out[0].state, TaskState::Done);
    assert_eq!(out[0].value.as_deref(), Some(&b"a"[..]));
    for c in &out[1..] {
        assert_eq!(c.state, TaskState::Failed, "{c:?}");
        let f = c.failure.as_ref().unwrap();
        assert_eq!(f.cause, FailureCause::BudgetExceeded);
        assert!(f.message.contains("max_cost is $1.0000"), "{}", f.message);
        assert!(
            f.message.contains("plan(starburst, max_cost = ...)"),
            "{}",
            f.message
        );
    }
    // The next check sees the stopped worker stopped.
    step(&sim);
    // The worker ran until the projection (3 s ahead) reached the cap.
    let r = cost(&sim);
    assert!(r.exceeded);
    assert_eq!(r.meter.running, 0, "the stopped worker was seen stopped");
    assert!(
        r.meter.usd <= 1.0 + 1e-9 && r.meter.usd > 0.9,
        "{}",
        r.meter.usd
    );
    assert!(spent(&sim, r.worker_hourly) <= 1.0 + 1e-9);
    assert!(sim.compute.live().is_empty());

    // New futures fail at once, the same way.
    let late = sim.submit("value:d");
    let c = sim.peek(&late);
    assert_eq!(c.state, TaskState::Failed);
    assert_eq!(c.failure.unwrap().cause, FailureCause::BudgetExceeded);
}

#[test]
fn a_cap_below_one_worker_fails_everything_and_launches_nothing() {
    let sim = Sim::with(SimOptions::new(budget_config(4, Some(0.5), None)));
    let id = sim.submit("value:a");
    let out = run_to_end(&sim, std::slice::from_ref(&id), Some(0.5));
    assert_eq!(
        out[0].failure.as_ref().unwrap().cause,
        FailureCause::BudgetExceeded
    );
    assert!(sim.compute.launched().is_empty());
    assert_eq!(cost(&sim).meter.usd, 0.0);

    // An hourly cap below one worker's price says so.
    let sim = Sim::with(SimOptions::new(budget_config(4, None, Some(30.0))));
    let id = sim.submit("value:a");
    let out = run_to_end(&sim, std::slice::from_ref(&id), None);
    let f = out[0].failure.as_ref().unwrap();
    assert_eq!(f.cause, FailureCause::BudgetExceeded);
    assert!(
        f.message.contains("below the price of one worker"),
        "{}",
        f.message
    );
    assert!(sim.compute.launched().is_empty());
}

#[test]
fn the_hourly_cap_limits_concurrent_workers() {
    // $80 per hour: two workers at $36.
    let sim = Sim::with(SimOptions::new(budget_config(6, None, Some(80.0))));
    let ids: Vec<TaskId> = (0..6)
        .map(|i| sim.submit(&format!("sleep:5000;value:v{i}")))
        .collect();
    let mut most = 0;
    let mut out = vec![None; ids.len()];
    for _ in 0..2_000 {
        most = most.max(sim.compute.live().len());
        for (i, id) in ids.iter().enumerate() {
            if out[i].is_none() {
                let c = sim.peek(id);
                if is_final(c.state) {
                    out[i] = Some(c);
                }
            }
        }
        if out.iter().all(Option::is_some) {
            break;
        }
        step(&sim);
    }
    for c in &out {
        let c = c.as_ref().expect("every task finished");
        assert_eq!(c.state, TaskState::Done, "{c:?}");
    }
    assert_eq!(most, 2);
    assert_eq!(sim.compute.launched().len(), 2);
    let r = cost(&sim);
    assert!(!r.exceeded);
    assert_eq!(r.meter.hourly_rate, 72.0);
}

/// A task of the random sessions: submitted at a step, running for some seconds.
#[derive(Debug, Clone)]
struct Job {
    at_step: u32,
    secs: u32,
}

fn job() -> impl Strategy<Value = Job> {
    (0u32..90, 1u32..100).prop_map(|(at_step, secs)| Job { at_step, secs })
}

/// Tasks keep coming at random steps; the session's real spend stays within `max_cost` at
/// every step and after close, its meter agrees, and every task ends done or failed with
/// the budget class.
fn run_capped_session(max_workers: u32, max_cost: f64, jobs: Vec<Job>) {
    let sim = Sim::with(SimOptions::new(budget_config(
        max_workers,
        Some(max_cost),
        None,
    )));
    let hourly = cost(&sim).worker_hourly;
    let mut ids = Vec::new();
    let last = jobs.iter().map(|j| j.at_step).max().unwrap_or(0);
    for t in 0..=last {
        for j in jobs.iter().filter(|j| j.at_step == t) {
            ids.push(sim.submit(&format!("sleep:{};value:ok", j.secs * 1000)));
        }
        assert!(spent(&sim, hourly) <= max_cost + 1e-9, "spent past the cap");
        step(&sim);
    }
    let out = run_to_end(&sim, &ids, Some(max_cost));
    for c in &out {
        match c.state {
            TaskState::Done => assert_eq!(c.value.as_deref(), Some(&b"ok"[..])),
            TaskState::Failed => {
                assert_eq!(
                    c.failure.as_ref().unwrap().cause,
                    FailureCause::BudgetExceeded,
                    "{c:?}"
                )
            }
            other => panic!("unexpected {other:?}: {c:?}"),
        }
    }
    sim.sched.close();
    let r = cost(&sim);
    assert!(
        spent(&sim, hourly) <= max_cost + 1e-9,
        "final spend past the cap"
    );
    assert!(
        r.meter.usd <= max_cost + 1e-9,
        "metered {} > {max_cost}",
        r.meter.usd
    );
    // The meter never under-counts what was really spent.
    assert!(r.meter.usd + 1e-9 >= spent(&sim, hourly));
    assert_eq!(r.meter.workers as usize, sim.compute.launched().len());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn capped_sessions_never_spend_past_max_cost(
        max_workers in 1u32..=4,
        max_cost in 0.3f64..4.0,
        jobs in prop::collection::vec(job(), 1..10),
    ) {
        run_capped_session(max_workers, max_cost, jobs);
    }
}
