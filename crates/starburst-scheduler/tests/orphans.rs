//! No worker outlives its client: the scheduler's session heartbeat, the hard deadline every
//! worker gets at launch, and the closed mark at the end of a session, on the simulated
//! session of `support/mod.rs` with real worker loops.

mod support;

use std::time::Duration;

use starburst_cloud::{Clock, WorkerId};
use starburst_scheduler::{BudgetConfig, Catalog, FailureCause};
use starburst_serialization as wire;
use support::{Entry, Sim, SimOptions, config};

/// $36 per worker-hour: a cent per second for the simulation's 1 vCPU, 2 GB workers.
fn catalog() -> Catalog {
    Catalog::builtin_with(
        r#"{"regions": {"xx-test-1": {"x86_64": {"vcpu_hour": 36, "gb_hour": 0, "spot_factor": 1}}}}"#,
    )
    .unwrap()
}

fn client_beat(sim: &Sim) -> Option<wire::ClientBeat> {
    sim.get(sim.layout.client())
        .map(|b| wire::decode_client_beat(&b).unwrap())
}

fn ticks(sim: &Sim, d: Duration) {
    let until = sim.now() + d;
    while sim.now() < until {
        sim.tick();
    }
}

#[test]
fn the_client_beats_and_every_worker_gets_the_deadline_the_cap_allows() {
    let mut c = config(2);
    c.client_beat = Some(Duration::from_secs(1));
    c.orphan_timeout = Duration::from_secs(5);
    let mut b = BudgetConfig::new(catalog(), "xx-test-1").with_caps(Some(6.0), None);
    b.stop_latency = Duration::from_secs(1);
    c.budget = Some(b);
    let sim = Sim::with(SimOptions::new(c));
    // The first beat precedes any launch.
    sim.until("the first session heartbeat", |s| client_beat(s).is_some());
    let first = client_beat(&sim).unwrap();
    assert!(!first.closed);
    let wall0 = sim.clock.wall();

    let t = sim.submit("hang");
    let w = sim.wait_running("hang");
    let spec = sim.compute.spec_of(&w).unwrap();
    let deadline: u64 = spec.env[wire::DEADLINE_ENV].parse().unwrap();
    let launched_at = wire::unix_ms(wall0);
    // A cent per second and 1 s to stop: $6 lasts one worker 599 s (launched within a second).
    assert!(
        (launched_at + 598_000..=launched_at + 600_000).contains(&deadline),
        "{deadline} vs {launched_at}"
    );
    // The beat moves while the client lives, and its deadline is the running worker's.
    ticks(&sim, Duration::from_secs(5));
    let later = client_beat(&sim).unwrap();
    assert!(later.seq >= first.seq + 4, "{later:?}");
    let after = later.deadline_after_ms.unwrap();
    assert!((592_000..=595_000).contains(&after), "{later:?}");
    // A second worker now would share the rest: its deadline is earlier than the first's.
    let t2 = sim.submit("hang");
    sim.until("a second worker", |s| s.compute.launched().len() == 2);
    let w2 = sim.compute.launched()[1].clone();
    let d2: u64 = sim.compute.spec_of(&w2).unwrap().env[wire::DEADLINE_ENV]
        .parse()
        .unwrap();
    // (600 - 5 - 1 spent) / 2 = 297 s from now, give or take the steps.
    let now_ms = wire::unix_ms(sim.clock.wall());
    assert!(
        d2 < deadline && (now_ms + 295_000..=now_ms + 300_000).contains(&d2),
        "{d2} vs now {now_ms}"
    );
    sim.sched.cancel(&[t, t2]).unwrap();
    sim.sched.close();
    let closed = client_beat(&sim).unwrap();
    assert!(closed.closed, "{closed:?}");
    assert_eq!(closed.deadline_after_ms, None);
}

#[test]
fn no_worker_starts_in_the_last_orphan_timeout_of_a_budget() {
    // $2 lasts one worker 199 s; with an orphan timeout of 190 s (+ 2 beats + 1 s) even the
    // first worker could outlive the cap if the client died right after its launch.
    let mut c = config(1);
    c.client_beat = Some(Duration::from_secs(1));
    c.orphan_timeout = Duration::from_secs(197);
    let mut b = BudgetConfig::new(catalog(), "xx-test-1").with_caps(Some(2.0), None);
    b.stop_latency = Duration::from_secs(1);
    c.budget = Some(b);
    let sim = Sim::with(SimOptions::new(c));
    let t = sim.submit("value:1");
    let out = sim.finish(&t);
    assert_eq!(out.state, starburst_scheduler::TaskState::Failed);
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::BudgetExceeded);
    assert!(
        f.message.contains("orphan timeout of 197 s"),
        "{}",
        f.message
    );
    assert!(sim.compute.launched().is_empty());
}

#[test]
fn a_session_without_a_cost_cap_gives_no_deadline() {
    let mut c = config(1);
    c.client_beat = Some(Duration::from_secs(1));
    let sim = Sim::with(SimOptions::new(c));
    let _t = sim.submit("value:1");
    let w = sim.wait_running("value:1");
    assert!(
        !sim.compute
            .spec_of(&w)
            .unwrap()
            .env
            .contains_key(wire::DEADLINE_ENV)
    );
    assert_eq!(client_beat(&sim).unwrap().deadline_after_ms, None);
}

#[test]
fn workers_stop_with_their_r_process_when_the_client_stops_beating() {
    let mut c = config(1);
    c.client_beat = Some(Duration::from_secs(1));
    let opts = SimOptions::new(c).worker_config(|w| {
        w.orphan_timeout = Some(Duration::from_secs(5));
        w.client_check = Duration::from_secs(1);
    });
    let sim = Sim::with(opts);
    let _t = sim.submit("hang");
    let w: WorkerId = sim.wait_running("hang");
    // Twenty seconds of a live client: the worker keeps running its long future.
    ticks(&sim, Duration::from_secs(20));
    assert!(sim.alive(&w));
    // The client goes silent (killed, asleep, offline: its beats no longer land).
    sim.store.fail_puts("/client", u32::MAX);
    let silent = sim.now();
    sim.until("the worker to stop", |s| !s.alive(&w));
    let after = sim.now() - silent;
    assert!(after <= Duration::from_secs(7), "{after:?}");
    assert!(
        sim.exit_of(&w).unwrap().contains("ClientGone"),
        "{:?}",
        sim.exit_of(&w)
    );
    // Its R process was killed with it.
    assert!(
        sim.journal
            .count(|e| matches!(e, Entry::Kill { worker } if worker == w.as_str()))
            >= 1
    );
}
