//! Random sessions: submissions, worker losses of every kind, cancellations and the passing of
//! time, in any order, against the real scheduler and real worker loops (see `support/`). After
//! each run the session must satisfy the scheduler's invariants:
//!
//! - every task reaches exactly one final state, reported once;
//! - no more than `max_workers` workers are ever live;
//! - a result is committed at most once and never overwritten;
//! - the reported state agrees with what is in the store (nothing silently dropped);
//! - closing the session leaves nothing running.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use starburst_cloud::{StopCause, TaskId};
use starburst_scheduler::{Collected, Error, FailureCause, TaskState};
use starburst_serialization::{FailureKind, Outcome};
use support::{MAX_STEPS, Sim, SimOptions, config, is_final};

#[derive(Debug, Clone)]
enum Script {
    Value,
    Events(u8),
    Sleep(u16),
    Die,
}

impl Script {
    fn render(&self, n: usize) -> String {
        match self {
            Self::Value => format!("value:v{n}"),
            Self::Events(k) => format!("events:{k};value:v{n}"),
            Self::Sleep(ms) => format!("sleep:{ms};value:v{n}"),
            Self::Die => "die".into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Submit(Script),
    /// The platform stops the `pick`-th live worker.
    Lose {
        pick: usize,
        cause: StopCause,
    },
    /// Cancels the `pick`-th task submitted so far.
    Cancel(usize),
    /// The `pick`-th live worker's process hangs: no beats, no progress, still "running".
    Freeze(usize),
    /// Lets time pass.
    Advance(u8),
}

fn script() -> impl Strategy<Value = Script> {
    prop_oneof![
        3 => Just(Script::Value),
        2 => (1u8..4).prop_map(Script::Events),
        3 => (1u16..300).prop_map(Script::Sleep),
        1 => Just(Script::Die),
    ]
}

fn cause() -> impl Strategy<Value = StopCause> {
    prop_oneof![
        3 => Just(StopCause::SpotInterruption),
        2 => Just(StopCause::Crashed),
        1 => Just(StopCause::OutOfMemory),
        1 => Just(StopCause::Exited),
        1 => Just(StopCause::Other),
        1 => Just(StopCause::StoppedByUser),
        1 => Just(StopCause::ImagePullFailed),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => script().prop_map(Op::Submit),
        2 => (any::<usize>(), cause()).prop_map(|(pick, cause)| Op::Lose { pick, cause }),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Freeze),
        3 => (0u8..40).prop_map(Op::Advance),
    ]
}

struct Task {
    id: TaskId,
    script: Script,
    n: usize,
    cancelled: bool,
}

fn check_live(sim: &Sim, max: u32) {
    let live = sim.compute.live().len();
    assert!(live <= max as usize, "{live} workers live, limit {max}");
}

fn run_session(max_workers: u32, max_retries: u32, idle_timeout: Duration, ops: Vec<Op>) {
    let mut cfg = config(max_workers);
    cfg.max_retries = max_retries;
    cfg.lease = Duration::from_secs(2);
    cfg.start_timeout = Duration::from_secs(5);
    let mut opts = SimOptions::new(cfg);
    opts.idle_timeout = idle_timeout;
    let sim = Sim::with(opts);
    let mut tasks: Vec<Task> = Vec::new();

    for op in ops {
        match op {
            Op::Submit(script) => {
                let n = tasks.len();
                let id = sim.submit(&script.render(n));
                tasks.push(Task {
                    id,
                    script,
                    n,
                    cancelled: false,
                });
            }
            Op::Lose { pick, cause } => {
                let live = sim.compute.live();
                if !live.is_empty() {
                    sim.kill(&live[pick % live.len()], cause, "lost in a property test");
                }
            }
            Op::Freeze(pick) => {
                let live: Vec<_> = sim
                    .compute
                    .live()
                    .into_iter()
                    .filter(|w| sim.alive(w))
                    .collect();
                if !live.is_empty() {
                    sim.freeze(&live[pick % live.len()]);
                }
            }
            Op::Cancel(pick) => {
                if !tasks.is_empty() {
                    let i = pick % tasks.len();
                    tasks[i].cancelled = true;
                    sim.sched
                        .cancel(std::slice::from_ref(&tasks[i].id))
                        .unwrap();
                }
            }
            Op::Advance(n) => {
                for _ in 0..n {
                    sim.tick();
                    check_live(&sim, max_workers);
                }
            }
        }
        check_live(&sim, max_workers);
    }

    // Drain: every task must end, each reported exactly once.
    let mut done: Vec<Option<Collected>> = vec![None; tasks.len()];
    let mut events: Vec<Vec<Bytes>> = vec![Vec::new(); tasks.len()];
    for _ in 0..MAX_STEPS {
        for (i, t) in tasks.iter().enumerate() {
            if done[i].is_none() {
                let c = sim.sched.collect(&t.id, Duration::ZERO).unwrap();
                events[i].extend(c.events.iter().cloned());
                if is_final(c.state) {
                    done[i] = Some(c);
                }
            }
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        sim.tick();
        check_live(&sim, max_workers);
    }
    let pending: Vec<_> = tasks
        .iter()
        .zip(&done)
        .filter(|(_, d)| d.is_none())
        .map(|(t, _)| (&t.id, &t.script))
        .collect();
    assert!(pending.is_empty(), "tasks never ended: {pending:?}");

    for ((t, c), events) in tasks.iter().zip(done).zip(events) {
        let c = c.unwrap();
        let ctx = format!("task {} ({:?}): {c:?}", t.id, t.script);
        assert_eq!(
            sim.sched.collect(&t.id, Duration::ZERO).unwrap(),
            Collected {
                events: vec![],
                ..c.clone()
            },
            "{ctx}: reported differently twice"
        );
        sim.sched.release(std::slice::from_ref(&t.id));
        assert!(
            matches!(
                sim.sched.collect(&t.id, Duration::ZERO),
                Err(Error::UnknownTask(_))
            ),
            "{ctx}: kept after release"
        );
        let stored = sim.stored_result(&t.id);
        match c.state {
            TaskState::Done => {
                assert!(!matches!(t.script, Script::Die), "{ctx}");
                assert_eq!(c.value, Some(Bytes::from(format!("v{}", t.n))), "{ctx}");
                let (meta, value) = stored.expect("a done task has a stored result");
                assert_eq!(meta.outcome, Outcome::Value, "{ctx}");
                assert_eq!(Some(value), c.value, "{ctx}");
                if let Script::Events(k) = t.script {
                    let want: Vec<Bytes> = (0..k).map(|i| Bytes::from(format!("e{i}"))).collect();
                    assert_eq!(events, want, "{ctx}");
                }
            }
            TaskState::Failed => {
                let f = c.failure.clone().expect("a failed task says why");
                match f.cause {
                    FailureCause::EvaluatorDied => {
                        assert!(matches!(t.script, Script::Die), "{ctx}");
                        let (meta, _) = stored.expect("the worker reported the death");
                        assert!(
                            matches!(meta.outcome, Outcome::Failed(ref x) if x.kind == FailureKind::EvaluatorDied),
                            "{ctx}"
                        );
                    }
                    FailureCause::WorkerLost
                    | FailureCause::WorkerStartFailed
                    | FailureCause::LaunchFailed => {
                        assert!(
                            stored.is_none(),
                            "{ctx}: failed although a result is stored"
                        );
                    }
                    other => panic!("{ctx}: unexpected cause {other}"),
                }
            }
            TaskState::Cancelled => {
                assert!(t.cancelled, "{ctx}: cancelled without being asked");
                if let Some((meta, _)) = stored {
                    assert!(
                        matches!(meta.outcome, Outcome::Failed(ref x) if x.kind == FailureKind::Cancelled),
                        "{ctx}: cancelled although a result is stored"
                    );
                }
            }
            TaskState::Queued | TaskState::Running => unreachable!(),
        }
    }

    // At most one commit per result key, and no overwrite.
    assert_eq!(sim.store.put_count("/out/results/"), 0);
    let mut keys = HashSet::new();
    for (key, op) in sim.store.writes_to("/out/results/") {
        if op == "create" {
            assert!(keys.insert(key.clone()), "{key} committed twice");
        }
    }

    sim.sched.close();
    assert!(
        sim.compute.live().is_empty(),
        "workers left running after close"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sessions_keep_the_invariants(
        max_workers in 1u32..=3,
        max_retries in 0u32..=2,
        idle_secs in prop_oneof![Just(3600u64), 1u64..4],
        ops in prop::collection::vec(op(), 1..30),
    ) {
        run_session(max_workers, max_retries, Duration::from_secs(idle_secs), ops);
    }
}
