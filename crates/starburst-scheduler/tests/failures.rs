//! Nothing waits forever: every kind of request that keeps failing has a bound, after which
//! the futures waiting on it fail with a classed error naming the cause; failures that waiting
//! cannot fix fail them at once; the user hears of a failure that persists while R waits.

mod support;

use std::time::Duration;

use starburst_cloud::Error;
use starburst_scheduler::{FailureCause, TaskState};
use support::{Sim, SimOptions, config};

fn bounded(secs: u64) -> SimOptions {
    let mut c = config(1);
    c.failure_timeout = Duration::from_secs(secs);
    SimOptions::new(c)
}

/// A store that refuses every assignment write at once is retried at the driver's pace (the
/// next decision: a wake-up, or `poll_max`), not in a loop as fast as the refusals come.
#[test]
fn a_store_refusing_every_write_at_once_is_not_retried_in_a_loop() {
    let sim = Sim::with(bounded(30));
    sim.store.fail_puts("/inbox/", u32::MAX);
    let _t = sim.submit("value:1");
    sim.settle("a refused write", |s| s.store.refused_puts() > 0);
    // Real time passes; session time does not.
    std::thread::sleep(Duration::from_millis(300));
    let refused = sim.store.refused_puts();
    assert!(
        refused <= 3,
        "{refused} writes refused in 300 ms with the session's clock stopped"
    );
}

#[test]
fn a_store_that_keeps_failing_fails_the_waiting_futures_after_the_bound() {
    let sim = Sim::with(bounded(30));
    // Assignments cannot be written: S3 answers 503 to every PUT of an inbox.
    sim.store.fail_puts("/inbox/", u32::MAX);
    let t = sim.submit("value:1");
    let start = sim.now();
    let mut notices = Vec::new();
    let out = loop {
        notices.extend(sim.sched.notices());
        // (It flips to running while each write of its assignment is tried.)
        let c = sim.peek(&t);
        if support::is_final(c.state) {
            break c;
        }
        sim.tick();
        assert!(sim.now() - start < Duration::from_secs(40), "no bound");
    };
    let waited = sim.now() - start;
    assert!(waited >= Duration::from_secs(30), "{waited:?} {out:?}");
    assert_eq!(out.state, TaskState::Failed);
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::StoreUnreachable);
    assert!(
        f.message.contains("has failed for 30 s") && f.message.contains("starburst_status()"),
        "{}",
        f.message
    );
    // The user heard of it while waiting, once.
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("retrying for up to 30 s"),
        "{notices:?}"
    );
    // The store works again: new futures run.
    sim.store.heal_puts();
    let t2 = sim.submit("value:2");
    let done = sim.finish(&t2);
    assert_eq!(done.state, TaskState::Done);
}

#[test]
fn access_denied_on_results_fails_at_once_with_its_class() {
    let sim = Sim::with(bounded(600));
    sim.store.deny_gets("/out/results/");
    let t = sim.submit("value:1");
    let start = sim.now();
    let out = sim.finish(&t);
    assert!(sim.now() - start < Duration::from_secs(5));
    assert_eq!(out.state, TaskState::Failed);
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::AccessDenied);
    assert!(f.message.contains("explicit deny"), "{}", f.message);
    assert!(f.message.contains("AWS_PROFILE"), "{}", f.message);
}

#[test]
fn launches_without_credentials_fail_at_once_and_throttling_fails_after_the_bound() {
    let sim = Sim::with(bounded(20));
    sim.port.fail_launches(|| Error::Credentials {
        op: "launch",
        message: "the SSO session has expired. Sign in again (`aws sso login --profile <name>`)"
            .into(),
    });
    let t = sim.submit("value:1");
    let out = sim.finish(&t);
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::Credentials);
    assert!(f.message.contains("aws sso login"), "{}", f.message);

    let sim = Sim::with(bounded(20));
    sim.port.fail_launches(|| Error::Throttled {
        op: "launch",
        resource: "RunTask".into(),
        retry_after: None,
    });
    let t = sim.submit("value:1");
    let start = sim.now();
    let out = sim.finish(&t);
    assert!(sim.now() - start >= Duration::from_secs(20));
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::LaunchFailed);
    assert!(f.message.contains("throttled"), "{}", f.message);
}

#[test]
fn workers_nobody_can_watch_fail_their_futures_after_the_bound() {
    let sim = Sim::with(bounded(20));
    let t = sim.submit("hang");
    sim.wait_running("hang");
    sim.port.fail_describes(|| Error::Transient {
        op: "describe",
        resource: "DescribeTasks".into(),
        source: "connection reset (injected)".into(),
    });
    let start = sim.now();
    let out = sim.finish(&t);
    assert!(sim.now() - start >= Duration::from_secs(20));
    let f = out.failure.unwrap();
    assert_eq!(f.cause, FailureCause::ComputeUnreachable);
}

#[test]
fn a_start_failure_that_may_pass_starts_another_worker_without_using_a_retry() {
    let mut c = config(1);
    c.max_retries = 0;
    c.failure_timeout = Duration::from_secs(60);
    let sim = Sim::with(SimOptions::new(c));
    let t = sim.submit("sleep:2000;value:ok");
    let w1 = sim.wait_running("sleep:2000;value:ok");
    // ENI provisioning timed out: not the future's fault, and not the session's end.
    sim.kill(
        &w1,
        starburst_cloud::StopCause::StartFailedTransient,
        "Timeout waiting for network interface provisioning to complete.",
    );
    let out = sim.finish(&t);
    assert_eq!(out.state, TaskState::Done, "{out:?}");
    assert_eq!(sim.compute.launched().len(), 2);
}

#[test]
fn a_worker_killed_without_an_out_of_memory_reason_is_lost_and_its_future_re_run() {
    let sim = Sim::new(1);
    let t = sim.submit("sleep:2000;value:ok");
    let w1 = sim.wait_running("sleep:2000;value:ok");
    sim.kill(
        &w1,
        starburst_cloud::StopCause::Killed,
        "Essential container in task exited (exit code 137)",
    );
    let out = sim.finish(&t);
    assert_eq!(out.state, TaskState::Done, "{out:?}");
    assert_eq!(out.value.as_deref(), Some(&b"ok"[..]));
}

#[test]
fn start_failures_that_keep_coming_fail_the_queue_after_the_bound() {
    let sim = Sim::with(bounded(20));
    let t = sim.submit("hang");
    // Every worker fails to start, the same way, again and again.
    let start = sim.now();
    let mut killed = std::collections::BTreeSet::new();
    let out = loop {
        for w in sim.compute.live() {
            if killed.insert(w.clone()) {
                sim.compute.set_stopped(
                    &w,
                    starburst_cloud::StopCause::StartFailedTransient,
                    None,
                    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed",
                );
            }
        }
        let c = sim.peek(&t);
        if support::is_final(c.state) {
            break c;
        }
        sim.tick();
        assert!(sim.now() - start < Duration::from_secs(30), "no bound");
    };
    let f = out.failure.clone().unwrap();
    assert!(
        sim.now() - start >= Duration::from_secs(20),
        "{:?} {f:?}",
        sim.now() - start
    );
    assert_eq!(f.cause, FailureCause::LaunchFailed);
    assert!(
        f.message.contains("ResourceInitializationError"),
        "{}",
        f.message
    );
    assert!(
        killed.len() > 2,
        "workers were started again: {}",
        killed.len()
    );
}

#[test]
fn a_piece_over_2_gib_is_refused_before_anything_is_stored() {
    let sim = Sim::new(1);
    // Zeroed, so the pages are never touched: no 2 GiB of real memory.
    let big = bytes::Bytes::from(vec![0u8; (i32::MAX as usize) + 1]);
    // Blob requests only: the driver's own (beats, polls) go on meanwhile.
    let blob_requests = || -> u64 {
        sim.store
            .requests()
            .iter()
            .filter(|((_, kind, _), _)| *kind == "blob")
            .map(|(_, n)| n)
            .sum()
    };
    let e = sim
        .sched
        .submit(bytes::Bytes::from_static(b"x"), vec![big], None)
        .unwrap_err();
    assert!(
        matches!(e, starburst_scheduler::Error::InvalidTask(ref m) if m.contains("2.15 GB")),
        "{e}"
    );
    assert_eq!(blob_requests(), 0, "nothing was uploaded");
    // The session goes on.
    let t = sim.submit("value:ok");
    assert_eq!(sim.finish(&t).state, TaskState::Done);
}
