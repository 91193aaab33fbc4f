//! The session's timeline ([`Scheduler::timeline`]) on the simulated session of
//! `support/mod.rs`: what it says about futures, workers and spend must agree with what
//! happened and with the cost meter.

mod support;

use std::time::Duration;

use starburst_cloud::StopCause;
use starburst_scheduler::{SpanOutcome, TaskState};
use support::Sim;

#[test]
fn the_timeline_tells_each_futures_and_workers_story_and_the_spend() {
    let sim = Sim::new(1);
    let lost = sim.submit("sleep:500;value:ok");
    let first = sim.wait_running("sleep:500");
    sim.kill(
        &first,
        StopCause::SpotInterruption,
        "Your Spot Task was interrupted.",
    );
    assert_eq!(sim.finish(&lost).state, TaskState::Done);
    let after = sim.submit("value:two");
    assert_eq!(sim.finish(&after).state, TaskState::Done);
    // A released task is forgotten by the scheduler, not by its history.
    sim.sched.release(std::slice::from_ref(&lost));
    let live = sim.sched.timeline();
    assert_eq!(live.futures.len(), 2);
    sim.sched.close();
    let t = sim.sched.timeline();

    assert_eq!(t.futures_dropped, 0);
    let ids: Vec<_> = t.futures.iter().map(|f| f.task.clone()).collect();
    assert_eq!(
        ids,
        vec![lost.clone(), after.clone()],
        "in submission order"
    );
    let workers: Vec<_> = t.workers.iter().map(|w| w.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!(workers[0], first);
    for f in &t.futures {
        assert_eq!(f.outcome, SpanOutcome::Done, "{f:?}");
        let (started, finished) = (f.started.unwrap(), f.finished.unwrap());
        assert!(f.submitted <= started && started <= finished, "{f:?}");
        assert!(finished <= t.now, "{f:?}");
        // Every future ended on the second worker.
        assert_eq!(f.worker.as_ref(), Some(&workers[1]), "{f:?}");
    }
    assert_eq!((t.futures[0].retries, t.futures[1].retries), (1, 0));

    let (w0, w1) = (&t.workers[0], &t.workers[1]);
    assert_eq!(w0.cause.as_deref(), Some("Spot capacity was interrupted"));
    assert!(w1.cause.is_some(), "stopped at the close: {w1:?}");
    for w in &t.workers {
        let stopped = w.stopped.expect("every worker stopped at the close");
        assert!(w.launched <= stopped && stopped <= t.now, "{w:?}");
        if let Some(ready) = w.ready {
            assert!(w.launched <= ready && ready <= stopped, "{w:?}");
        }
        assert!(w.cost_usd.unwrap() > 0.0, "{w:?}");
    }
    // Ready: when R first evaluated a future there, as the worker's results tell.
    let first_start = t.futures.iter().filter_map(|f| f.started).min();
    assert_eq!(w1.ready, first_start, "{w1:?}");
    assert!(w1.launched >= w0.launched);

    // The spend never goes down, ends at the meter's total, which is the workers' sum.
    let usd = sim.sched.cost().unwrap().meter.usd;
    assert!(
        t.cost
            .windows(2)
            .all(|p| p[0].0 < p[1].0 && p[0].1 <= p[1].1),
        "{:?}",
        t.cost
    );
    let (end, last) = *t.cost.last().unwrap();
    assert_eq!(end, t.now);
    assert!((last - usd).abs() < 1e-12, "{last} != {usd}");
    let sum: f64 = t.workers.iter().filter_map(|w| w.cost_usd).sum();
    assert!((sum - usd).abs() < 1e-12, "{sum} != {usd}");
    // A closed session's timeline does not grow.
    sim.clock.advance(Duration::from_secs(600));
    assert_eq!(sim.sched.timeline().now, t.now);
    assert_eq!(sim.sched.timeline().cost, t.cost);
}

#[test]
fn failed_and_cancelled_futures_say_how_they_ended() {
    let sim = Sim::new(1);
    let hang = sim.submit("hang");
    sim.wait_running("hang");
    let queued = sim.submit("value:never");
    sim.sched.cancel(std::slice::from_ref(&queued)).unwrap();
    let dies = {
        sim.sched.cancel(std::slice::from_ref(&hang)).unwrap();
        sim.finish(&hang);
        sim.submit("die")
    };
    sim.finish(&dies);
    let t = sim.sched.timeline();
    let outcome = |id| t.futures.iter().find(|f| &f.task == id).unwrap().outcome;
    assert_eq!(outcome(&hang), SpanOutcome::Cancelled);
    assert_eq!(outcome(&queued), SpanOutcome::Cancelled);
    assert_eq!(outcome(&dies), SpanOutcome::Failed("evaluator_died"));
    let q = t.futures.iter().find(|f| f.task == queued).unwrap();
    assert_eq!(
        (q.worker.as_ref(), q.started),
        (None, None),
        "never ran: {q:?}"
    );
    assert!(q.finished.is_some());
}
