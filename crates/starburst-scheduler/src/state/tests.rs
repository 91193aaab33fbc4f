//! Property tests of the core, driven directly: no runtime, no store, no clock but a number.
//! Random sequences of events (submits, cancels, launches, rounds whose assignment writes may
//! fail, results, lost workers, releases) must keep the core's invariants: every unfinished
//! task is in exactly one place (the queue, or one live worker's inbox), a final state never
//! changes, a task cancelled while queued never runs, and every live worker's inbox is written
//! without gaps (the worker reads it in sequence).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;
use starburst_cloud::{
    Capacity, LaunchReport, SessionId, StopCause, TaskId, WorkerId, WorkerSize, WorkerSpec,
};
use starburst_serialization::{self as wire, Outcome, ResultMeta, Timing};

use super::Core;
use super::dispatch::{ReadOutcome, Sending};
use crate::{SchedulerConfig, TaskState};

#[derive(Debug, Clone)]
enum Ev {
    Submit(u8),
    Cancel(usize),
    Launch,
    /// A round: its cancels, reads and assignments are decided (the writes are in flight
    /// until `Writes`; the driver starts no round before the last one's writes are done).
    Round,
    /// The writes in flight complete; those whose bit is set fail.
    Writes(u16),
    /// The head task of a worker finishes: with a value, or its R process died.
    Result(usize, bool),
    Lost(usize, usize),
    Tick(u16),
    Release(usize),
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (1u8..4).prop_map(Ev::Submit),
        any::<usize>().prop_map(Ev::Cancel),
        Just(Ev::Launch),
        Just(Ev::Round),
        any::<u16>().prop_map(Ev::Writes),
        (any::<usize>(), any::<bool>()).prop_map(|(w, ok)| Ev::Result(w, ok)),
        (any::<usize>(), 0usize..CAUSES.len()).prop_map(|(w, c)| Ev::Lost(w, c)),
        (1u16..2_000).prop_map(Ev::Tick),
        any::<usize>().prop_map(Ev::Release),
    ]
}

const CAUSES: [StopCause; 5] = [
    StopCause::SpotInterruption,
    StopCause::Killed,
    StopCause::Exited,
    StopCause::ImagePullFailed,
    StopCause::Other,
];

fn config(max_workers: u32, prefetch: u32) -> SchedulerConfig {
    let spec = WorkerSpec {
        size: WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        },
        arch: Default::default(),
        capacity: Capacity::Spot,
        image: None,
        env: Default::default(),
        tags: Default::default(),
    };
    let mut c = SchedulerConfig::new(SessionId::new("prop").unwrap(), max_workers, spec);
    c.prefetch = prefetch;
    c.budget = None;
    c
}

/// The test's view of the world: what was written to each inbox, and what it saw.
#[derive(Default)]
struct World {
    ids: Vec<TaskId>,
    now: Duration,
    launched: u32,
    /// Per worker, inbox place -> task, for the writes that succeeded.
    inbox: BTreeMap<WorkerId, BTreeMap<u64, TaskId>>,
    /// Final states seen.
    finals: HashMap<TaskId, TaskState>,
    /// Tasks cancelled while queued.
    cancelled_queued: Vec<TaskId>,
    /// Assignment writes in flight: (worker, task, seq).
    pending: Vec<(WorkerId, TaskId, u64)>,
}

fn apply(core: &mut Core, w: &mut World, ev: &Ev) {
    match ev {
        Ev::Submit(n) => {
            for _ in 0..*n {
                let id = core.next_id();
                core.submit(id.clone(), None, Bytes::from_static(b"x"), vec![], 0);
                w.ids.push(id);
            }
        }
        Ev::Cancel(i) if !w.ids.is_empty() => {
            let id = w.ids[i % w.ids.len()].clone();
            let queued = core
                .tasks
                .get(&id)
                .is_some_and(|t| t.state == TaskState::Queued);
            core.cancel(std::slice::from_ref(&id));
            if queued {
                w.cancelled_queued.push(id);
            }
        }
        Ev::Launch => {
            let n = core.launch_wanted(w.now);
            let launched: Vec<WorkerId> = (0..n)
                .map(|_| {
                    w.launched += 1;
                    WorkerId::new(format!("w{}", w.launched)).unwrap()
                })
                .collect();
            let report = LaunchReport {
                launched,
                failures: vec![],
            };
            core.launched(&report, w.now, w.now);
        }
        Ev::Round => {
            // Decisions come while earlier writes are in flight (the driver pipelines them);
            // none concerns a task with a request in flight.
            let mut sending = Sending::default();
            for (_, t, _) in &w.pending {
                sending.add(t.clone());
            }
            // Cancels and reads only ever concern running tasks (found through the inboxes).
            for (id, _, _) in core.take_cancels(&sending) {
                assert_eq!(core.tasks[&id].state, TaskState::Running, "cancel of {id}");
                assert!(core.tasks[&id].cancelled, "cancel of {id}, never asked for");
                assert!(
                    !sending.contains(&id),
                    "cancel of {id} while it is being assigned"
                );
            }
            // Every cancel asked for is taken, but those of tasks still being assigned.
            for slot in core.workers.values() {
                for id in &slot.tasks {
                    assert!(
                        !core.tasks[id].cancel || sending.contains(id),
                        "the cancel of {id} was left behind"
                    );
                }
            }
            for (id, _) in core.due_reads(w.now, false, &sending) {
                assert_eq!(core.tasks[&id].state, TaskState::Running, "read of {id}");
                assert!(
                    !sending.contains(&id),
                    "read of {id} while it is being assigned"
                );
            }
            for a in core.take_assignments(w.now, &sending) {
                // A task taken back from a lost worker can be assigned again while its first
                // assignment is still being written, never to the same worker.
                assert!(
                    !w.pending
                        .iter()
                        .any(|(wk, t, _)| *t == a.task && *wk == a.worker),
                    "{} assigned twice to {}",
                    a.task,
                    a.worker
                );
                w.pending.push((a.worker, a.task, a.seq));
            }
        }
        Ev::Writes(mask) => {
            for (i, (worker, task, seq)) in std::mem::take(&mut w.pending).into_iter().enumerate() {
                if mask & (1 << (i % 16)) != 0 {
                    core.assignment_failed(&worker, &task, seq);
                } else {
                    w.inbox.entry(worker).or_default().insert(seq, task);
                }
            }
        }
        Ev::Result(i, ok) if !core.workers.is_empty() => {
            let worker = core
                .workers
                .keys()
                .nth(i % core.workers.len())
                .unwrap()
                .clone();
            let Some(head) = core.head(&worker).cloned() else {
                return;
            };
            // Only a task whose assignment was written can finish.
            let written = w
                .inbox
                .get(&worker)
                .is_some_and(|inbox| inbox.values().any(|t| *t == head));
            if !written {
                return;
            }
            let attempt = core.tasks[&head].attempt;
            let outcome = if *ok {
                Outcome::Value
            } else {
                Outcome::Failed(wire::Failure {
                    kind: wire::FailureKind::EvaluatorDied,
                    message: "died".into(),
                    log_tail: vec![],
                })
            };
            let meta = ResultMeta {
                task_id: head.to_string(),
                worker_id: worker.to_string(),
                attempt,
                outcome,
                timing: Timing {
                    received_unix_ms: 0,
                    started_unix_ms: 0,
                    finished_unix_ms: 5,
                },
                events: 0,
            };
            let out = ReadOutcome {
                result: Some(Ok((meta, Bytes::from_static(b"v")))),
                events: vec![],
                next_event: 0,
            };
            core.read_done(&head, attempt, true, out, w.now, UNIX_EPOCH + w.now);
        }
        Ev::Lost(i, c) if !core.workers.is_empty() => {
            let worker = core
                .workers
                .keys()
                .nth(i % core.workers.len())
                .unwrap()
                .clone();
            let tasks = core.remove_worker(&worker).unwrap();
            w.inbox.remove(&worker);
            core.worker_lost(&worker, tasks, CAUSES[*c], "lost", &[]);
        }
        Ev::Tick(ms) => {
            w.now += Duration::from_millis(u64::from(*ms));
            core.enforce_failure_bound(w.now);
        }
        Ev::Release(i) if !w.ids.is_empty() => {
            let id = w.ids[i % w.ids.len()].clone();
            core.release(std::slice::from_ref(&id));
        }
        _ => {}
    }
}

fn check(core: &Core, w: &mut World, ev: &Ev) {
    let ctx = format!("after {ev:?}");
    // The queue holds queued tasks, once each.
    let mut in_queue: HashMap<&TaskId, usize> = HashMap::new();
    for id in &core.queue {
        *in_queue.entry(id).or_default() += 1;
        let t = &core.tasks[id];
        assert_eq!(
            t.state,
            TaskState::Queued,
            "{ctx}: {id} queued in state {:?}",
            t.state
        );
    }
    assert!(
        in_queue.values().all(|&n| n == 1),
        "{ctx}: a task queued twice"
    );
    // Inboxes hold running tasks, each in one inbox, its own worker's.
    let mut placed: HashMap<&TaskId, &WorkerId> = HashMap::new();
    for (wid, slot) in &core.workers {
        for id in &slot.tasks {
            assert!(
                placed.insert(id, wid).is_none(),
                "{ctx}: {id} in two inboxes"
            );
            let t = &core.tasks[id];
            assert_eq!(
                t.state,
                TaskState::Running,
                "{ctx}: {id} assigned in state {:?}",
                t.state
            );
            assert_eq!(
                t.worker.as_ref(),
                Some(wid),
                "{ctx}: {id} on another worker"
            );
        }
        // The worker reads its inbox in sequence: every place before the next one is written
        // (or being written).
        let mut written: Vec<u64> = w
            .inbox
            .get(wid)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        written.extend(
            w.pending
                .iter()
                .filter(|(pw, _, _)| pw == wid)
                .map(|(_, _, seq)| *seq),
        );
        written.sort_unstable();
        written.dedup();
        let expected: Vec<u64> = (0..slot.next_seq).collect();
        assert_eq!(written, expected, "{ctx}: inbox of {wid} has a gap");
    }
    for (id, t) in &core.tasks {
        match t.state {
            TaskState::Queued => {
                assert_eq!(
                    in_queue.get(id),
                    Some(&1),
                    "{ctx}: {id} queued but not in the queue"
                );
                assert!(!placed.contains_key(id), "{ctx}: {id} queued and assigned");
            }
            TaskState::Running => {
                assert!(placed.contains_key(id), "{ctx}: {id} running nowhere");
                assert!(!in_queue.contains_key(id), "{ctx}: {id} running and queued");
            }
            s => {
                assert!(
                    !placed.contains_key(id) && !in_queue.contains_key(id),
                    "{ctx}: {id} final but placed"
                );
                match s {
                    TaskState::Done => {
                        assert!(t.value.is_some(), "{ctx}: {id} done without a value")
                    }
                    TaskState::Failed => {
                        assert!(t.failure.is_some(), "{ctx}: {id} failed without a cause")
                    }
                    _ => {}
                }
                if let Some(old) = w.finals.insert(id.clone(), s) {
                    assert_eq!(old, s, "{ctx}: {id} changed its final state");
                }
            }
        }
    }
    // A task cancelled while queued ended cancelled and never ran.
    for id in &w.cancelled_queued {
        if let Some(t) = core.tasks.get(id) {
            assert_eq!(
                t.state,
                TaskState::Cancelled,
                "{ctx}: {id} cancelled while queued"
            );
            assert!(t.ran_on.is_none(), "{ctx}: {id} ran after it was cancelled");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_core_keeps_its_invariants(
        max_workers in 1u32..5,
        prefetch in 0u32..3,
        events in prop::collection::vec(event(), 1..120),
    ) {
        let mut core = Core::new(Arc::new(config(max_workers, prefetch)));
        let mut w = World::default();
        for ev in &events {
            apply(&mut core, &mut w, ev);
            check(&core, &mut w, ev);
        }
    }

    /// With workers that always finish, every task ends: nothing is lost or stuck in a
    /// sequence of failed writes, lost workers and cancels.
    #[test]
    fn every_task_ends_once_the_faults_stop(
        max_workers in 1u32..5,
        prefetch in 0u32..3,
        events in prop::collection::vec(event(), 1..80),
    ) {
        let mut core = Core::new(Arc::new(config(max_workers, prefetch)));
        let mut w = World::default();
        for ev in &events {
            apply(&mut core, &mut w, ev);
        }
        // From now on: launches, rounds without failures, and results.
        for step in 0..2_000usize {
            if core.tasks.values().all(|t| t.state.is_final()) {
                break;
            }
            for ev in [Ev::Launch, Ev::Round, Ev::Writes(0), Ev::Result(step, true), Ev::Tick(10)] {
                apply(&mut core, &mut w, &ev);
                check(&core, &mut w, &ev);
            }
        }
        let stuck: Vec<_> = core.tasks.iter().filter(|(_, t)| !t.state.is_final()).map(|(id, t)| (id.clone(), t.state)).collect();
        prop_assert!(stuck.is_empty(), "tasks never ended: {:?}", stuck);
    }
}
