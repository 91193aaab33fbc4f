//! The real scheduler against fakes: an in-memory store, a fake compute that runs a real worker
//! loop (with a scripted evaluator) for every launched worker, fake logs and a manual clock.
//! See `support/mod.rs` for the simulation and `starburst-worker/tests/support/script.rs` for
//! the scripts the "R process" understands.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use starburst_cloud::mocks::MockCompute;
use starburst_cloud::{
    Clock, LaunchReport, StopCause, WorkerId, WorkerPhase, WorkerSpec, WorkerStatus,
};
use starburst_scheduler::{Error, FailureCause, Scheduler, TaskState};
use starburst_serialization::{self as wire, BlobRef, InboxMeta, Limits};
use support::{Behaviour, Entry, STEP, Sim, SimOptions, config, is_final};

#[test]
fn a_hundred_tasks_run_on_four_reused_workers() {
    let sim = Sim::new(4);
    let ids: Vec<_> = (0..100)
        .map(|i| sim.submit(&format!("value:v{i}")))
        .collect();
    let _ticker = sim.ticker();
    for (i, id) in ids.iter().enumerate() {
        // A blocking collect: woken by the scheduler, bounded only as a hang guard.
        let c = sim.sched.collect(id, Duration::from_secs(30)).unwrap();
        assert_eq!(c.state, TaskState::Done, "{id}: {c:?}");
        assert_eq!(c.value, Some(Bytes::from(format!("v{i}"))));
        assert!(c.failure.is_none());
        // Reported again until released: a caller interrupted before recording it loses nothing.
        assert_eq!(sim.sched.collect(id, Duration::ZERO).unwrap(), c);
        sim.sched.release(std::slice::from_ref(id));
        assert!(matches!(
            sim.sched.collect(id, Duration::ZERO),
            Err(Error::UnknownTask(_))
        ));
    }
    // Exactly four workers were ever launched, and they were reused.
    let launched = sim.compute.launched();
    assert_eq!(launched.len(), 4, "{launched:?}");
    let evals = sim.journal.count(|e| matches!(e, Entry::Eval { .. }));
    assert_eq!(evals, 100, "every task ran exactly once");
    for w in &launched {
        let n = sim
            .journal
            .count(|e| matches!(e, Entry::Eval { worker, .. } if worker == w.as_str()));
        assert!(n >= 1, "{w} never ran a task");
    }
    let info = sim.sched.info();
    assert_eq!((info.live, info.busy, info.queued), (4, 0, 0));
    // One committed result per task, none written twice.
    assert_eq!(sim.store.writes_to("/out/results/").len(), 100);
    assert_eq!(sim.store.put_count("/out/results/"), 0);
}

#[test]
fn collect_with_zero_timeout_does_not_block_and_reports_queued_and_running() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    let b = sim.submit("value:b");
    sim.wait_running("hang");
    // The clock is frozen and `a` hangs: neither call can wait for anything.
    let ca = sim.sched.collect(&a, Duration::ZERO).unwrap();
    let cb = sim.sched.collect(&b, Duration::ZERO).unwrap();
    assert_eq!(
        (ca.state, cb.state),
        (TaskState::Running, TaskState::Queued)
    );
    assert!(ca.value.is_none() && cb.events.is_empty());
    assert_eq!(TaskState::Queued.as_str(), "queued");
    assert_eq!(TaskState::Running.as_str(), "running");
    let info = sim.sched.info();
    assert_eq!(
        (info.max_workers, info.live, info.busy, info.queued),
        (1, 1, 1, 1)
    );
    // A short real timeout returns the unchanged state.
    let again = sim.sched.collect(&b, Duration::from_millis(5)).unwrap();
    assert_eq!(again.state, TaskState::Queued);
}

#[test]
fn events_arrive_in_order_before_the_final_state() {
    let sim = Sim::new(1);
    let id = sim.submit("events:4;sleep:300;event:last;value:v");
    let mut seen_running = Vec::new();
    sim.until("the first events", |s| {
        let c = s.peek(&id);
        assert!(!is_final(c.state));
        seen_running.extend(c.events);
        !seen_running.is_empty()
    });
    let rest = sim.finish(&id);
    assert_eq!(rest.state, TaskState::Done);
    assert_eq!(rest.value, Some(Bytes::from_static(b"v")));
    let all: Vec<Bytes> = seen_running.into_iter().chain(rest.events).collect();
    let expected: Vec<Bytes> = ["e0", "e1", "e2", "e3", "last"]
        .into_iter()
        .map(|s| Bytes::from_static(s.as_bytes()))
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn a_spot_interruption_requeues_the_task_on_another_worker_once() {
    let sim = Sim::new(1);
    let id = sim.submit("sleep:500;value:ok");
    let first = sim.wait_running("sleep:500");
    sim.kill(
        &first,
        StopCause::SpotInterruption,
        "Your Spot Task was interrupted.",
    );
    let c = sim.finish(&id);
    assert_eq!(c.state, TaskState::Done, "{c:?}");
    assert_eq!(c.value, Some(Bytes::from_static(b"ok")));

    let runs = sim.journal.evaluated_by("sleep:500");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], first.as_str());
    assert_ne!(runs[1], first.as_str());
    let (meta, _) = sim.stored_result(&id).unwrap();
    assert_eq!(
        (meta.worker_id.as_str(), meta.attempt),
        (runs[1].as_str(), 2)
    );
    // The caller learns which worker ran it (for its log), and the session lists both.
    assert_eq!(
        c.worker.as_ref().map(|w| w.as_str()),
        Some(runs[1].as_str())
    );
    let workers: Vec<String> = sim.sched.workers().iter().map(|w| w.to_string()).collect();
    assert_eq!(workers, vec![first.to_string(), runs[1].clone()]);
    // One commit, no overwrite, and the session forgets the task once it is released.
    let key = sim.layout.result(id.as_str());
    assert_eq!(sim.store.writes_to(&key), vec![(key, "create")]);
    sim.sched.release(std::slice::from_ref(&id));
    assert!(matches!(
        sim.sched.collect(&id, Duration::ZERO),
        Err(Error::UnknownTask(_))
    ));
    assert_eq!(sim.compute.launched().len(), 2);
}

#[test]
fn repeated_losses_fail_the_task_with_the_worker_log_tail() {
    let mut cfg = config(1);
    cfg.max_retries = 1;
    let sim = Sim::with(SimOptions::new(cfg));
    let id = sim.submit("hang");
    let mut victims = Vec::new();
    let c = loop {
        let c = sim.peek(&id);
        if is_final(c.state) {
            break c;
        }
        let runs = sim.journal.evaluated_by("hang");
        if runs.len() > victims.len() {
            let w = WorkerId::new(runs.last().unwrap().clone()).unwrap();
            sim.logs.append(&w, "Error in eval: cannot allocate vector");
            sim.kill(&w, StopCause::Crashed, "Essential container in task exited");
            victims.push(w);
        }
        assert!(victims.len() <= 2, "ran more often than 1 + max_retries");
        sim.tick();
    };
    assert_eq!(c.state, TaskState::Failed);
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::WorkerLost);
    assert!(f.message.contains("after 2 attempt(s)"), "{}", f.message);
    assert!(
        f.message.contains("Essential container in task exited"),
        "{}",
        f.message
    );
    let last = &victims[1];
    assert_eq!(
        f.log_tail,
        vec![
            format!("{last}: container started"),
            format!("{last}: starburst-worker 0.1.0 ready"),
            "Error in eval: cannot allocate vector".to_string(),
        ]
    );
    assert_eq!(victims.len(), 2);
    assert_eq!(sim.compute.launched().len(), 2);
    assert!(sim.stored_result(&id).is_none());
}

#[test]
fn a_clean_exit_requeues_without_using_a_retry_and_out_of_memory_is_not_retried() {
    let mut cfg = config(1);
    cfg.max_retries = 0;
    let sim = Sim::with(SimOptions::new(cfg));
    // Exit code 0 (an idle exit racing an assignment): re-run even with no retries left.
    let a = sim.submit("sleep:200;value:a");
    let w1 = sim.wait_running("sleep:200");
    sim.kill(&w1, StopCause::Exited, "Essential container in task exited");
    let c = sim.finish(&a);
    assert_eq!(
        (c.state, c.value),
        (TaskState::Done, Some(Bytes::from_static(b"a")))
    );
    assert_eq!(sim.journal.evaluated_by("sleep:200").len(), 2);
    // Out of memory: the same worker size would fail again, so the task fails at once.
    let b = sim.submit("hang");
    let w2 = sim.wait_running("hang");
    sim.kill(
        &w2,
        StopCause::OutOfMemory,
        "OutOfMemoryError: Container killed due to memory usage",
    );
    let c = sim.finish(&b);
    assert_eq!(c.state, TaskState::Failed);
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::WorkerLost);
    assert!(f.message.contains("more memory"), "{}", f.message);
    assert_eq!(sim.journal.evaluated_by("hang").len(), 1);
}

#[test]
fn a_dead_evaluator_fails_the_task_and_the_worker_goes_on() {
    let sim = Sim::new(1);
    let a = sim.submit("die");
    let b = sim.submit("value:after");
    let (done, _) = sim.finish_all(&[a, b]);
    assert_eq!(done[0].state, TaskState::Failed);
    let f = done[0].failure.clone().unwrap();
    assert_eq!(f.cause, FailureCause::EvaluatorDied);
    assert!(f.message.contains("exited with status 1"), "{}", f.message);
    assert_eq!(f.log_tail.len(), 1, "{:?}", f.log_tail);
    assert_eq!(done[1].value, Some(Bytes::from_static(b"after")));
    assert_eq!(sim.compute.launched().len(), 1);
}

#[test]
fn an_image_pull_failure_fails_the_task_and_the_queue_fast() {
    let sim = Sim::with(SimOptions::new(config(1)).behaviour(|_| Behaviour::Silent));
    let ids: Vec<_> = (0..5).map(|i| sim.submit(&format!("value:{i}"))).collect();
    sim.until("a task on the worker", |s| s.sched.info().busy == 1);
    let w = sim.compute.launched()[0].clone();
    sim.kill(
        &w,
        StopCause::ImagePullFailed,
        "CannotPullContainerError: pull access denied",
    );
    // Within a few health checks (50 ms each), not after a lease or start timeout.
    let (done, ticks) = sim.finish_all(&ids);
    assert!(
        STEP * ticks as u32 <= Duration::from_millis(500),
        "took {ticks} ticks"
    );
    for c in done {
        assert_eq!(c.state, TaskState::Failed);
        let f = c.failure.unwrap();
        assert_eq!(f.cause, FailureCause::WorkerStartFailed, "{f:?}");
        assert!(f.message.contains("pull access denied"), "{}", f.message);
    }
    assert_eq!(sim.sched.info().queued, 0);
    // Later submissions fail at once, and no worker is launched for them.
    let late = sim.submit("value:late");
    let c = sim.peek(&late);
    assert_eq!(c.state, TaskState::Failed);
    assert_eq!(c.failure.unwrap().cause, FailureCause::WorkerStartFailed);
    for _ in 0..20 {
        sim.tick();
    }
    assert_eq!(sim.compute.launched().len(), 1);
}

#[test]
fn a_busy_worker_whose_heartbeat_stops_is_stopped_and_its_task_requeued() {
    let mut cfg = config(1);
    cfg.lease = Duration::from_secs(2);
    let sim = Sim::with(SimOptions::new(cfg));
    let id = sim.submit("sleep:3000;value:survived");
    let first = sim.wait_running("sleep:3000");
    // Let the scheduler see it beating while busy, then freeze it.
    sim.until("a busy heartbeat", |s| {
        s.get(s.layout.beat(first.as_str()))
            .and_then(|b| wire::decode_heartbeat(&b).ok())
            .is_some_and(|b| matches!(b.activity, wire::WorkerActivity::Busy { .. }))
    });
    for _ in 0..10 {
        sim.tick();
    }
    sim.freeze(&first);
    let frozen_at = sim.now();
    let last_beat = sim
        .get(sim.layout.beat(first.as_str()))
        .and_then(|b| wire::decode_heartbeat(&b).ok())
        .unwrap();
    sim.until("the frozen worker to be stopped", |s| {
        !s.compute.live().contains(&first)
    });
    // Not before the lease ran out after the last beat, and not long after.
    let since_beat = unix_ms(sim.clock.wall()) - last_beat.unix_ms;
    assert!(
        since_beat >= 2_000,
        "stopped {since_beat} ms after its last beat; lease is 2 s"
    );
    let after = sim.now() - frozen_at;
    assert!(
        after <= Duration::from_millis(2_500),
        "stopped only {after:?} after freezing"
    );
    let status = sim
        .rt
        .block_on(starburst_cloud::Compute::describe(
            &*sim.compute,
            std::slice::from_ref(&first),
        ))
        .unwrap();
    assert_eq!(status[0].phase, WorkerPhase::Stopped);

    let c = sim.finish(&id);
    assert_eq!(c.state, TaskState::Done, "{c:?}");
    assert_eq!(c.value, Some(Bytes::from_static(b"survived")));
    let (meta, _) = sim.stored_result(&id).unwrap();
    assert_ne!(meta.worker_id, first.as_str());
    assert_eq!(meta.attempt, 2);
}

#[test]
fn a_worker_that_never_beats_within_start_timeout_is_lost() {
    let mut cfg = config(1);
    cfg.start_timeout = Duration::from_secs(3);
    cfg.max_retries = 0;
    let opts = SimOptions::new(cfg).behaviour(|n| {
        if n == 0 {
            Behaviour::Silent
        } else {
            Behaviour::Real
        }
    });
    let sim = Sim::with(opts);
    let submitted_at = sim.now();
    let id = sim.submit("value:never");
    sim.until("a task on the silent worker", |s| s.sched.info().busy == 1);
    let silent = sim.compute.launched()[0].clone();
    let c = sim.finish(&id);
    let waited = sim.now() - submitted_at;
    assert_eq!(c.state, TaskState::Failed);
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::WorkerStartFailed);
    assert!(
        f.message.contains("subnets reach ECR and S3"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("did not start within 3s"),
        "{}",
        f.message
    );
    assert_eq!(f.log_tail.len(), 2, "{:?}", f.log_tail);
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(
        !sim.compute.live().contains(&silent),
        "the silent worker is still billed"
    );

    // The session goes on with a new worker.
    let next = sim.submit("value:fine");
    let c = sim.finish(&next);
    assert_eq!(
        (c.state, c.value),
        (TaskState::Done, Some(Bytes::from_static(b"fine")))
    );
    assert_eq!(sim.compute.launched().len(), 2);
}

#[test]
fn cancelling_a_queued_task_ends_it_at_once() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    let b = sim.submit("value:b");
    sim.wait_running("hang");
    assert_eq!(sim.state(&b), TaskState::Queued);
    sim.sched.cancel(std::slice::from_ref(&b)).unwrap();
    let c = sim.peek(&b);
    assert_eq!(c.state, TaskState::Cancelled);
    assert_eq!(TaskState::Cancelled.as_str(), "cancelled");
    assert!(c.failure.is_none() && c.value.is_none());
    sim.sched.release(std::slice::from_ref(&b));
    assert!(matches!(
        sim.sched.collect(&b, Duration::ZERO),
        Err(Error::UnknownTask(_))
    ));
    assert_eq!(sim.sched.info().queued, 0);
    // It never reached a worker, and cancelling unknown or finished tasks is harmless.
    for _ in 0..20 {
        sim.tick();
    }
    assert!(sim.journal.evaluated_by("value:b").is_empty());
    sim.sched.cancel(&[b]).unwrap();
    assert_eq!(sim.state(&a), TaskState::Running);
}

#[test]
fn cancelling_a_running_task_writes_the_marker_and_ends_cancelled() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    let worker = sim.wait_running("hang");
    sim.sched.cancel(std::slice::from_ref(&a)).unwrap();
    sim.until("the cancel marker", |s| {
        s.exists(s.layout.cancel(a.as_str()))
    });
    let c = sim.finish(&a);
    assert_eq!(c.state, TaskState::Cancelled, "{c:?}");
    assert!(c.failure.is_none());
    assert_eq!(sim.journal.count(|e| matches!(e, Entry::Kill { .. })), 1);
    // The same worker takes the next task.
    let b = sim.submit("value:next");
    let c = sim.finish(&b);
    assert_eq!(c.value, Some(Bytes::from_static(b"next")));
    assert_eq!(
        sim.journal.evaluated_by("value:next"),
        vec![worker.to_string()]
    );
    assert_eq!(sim.compute.launched().len(), 1);
}

#[test]
fn close_stops_every_worker_and_cancels_pending_tasks() {
    let sim = Sim::new(2);
    // The queued tasks come after both workers took a hanging task: submitted together, one
    // of them could be prefetched behind the first "hang" before the second worker is up.
    let mut ids: Vec<_> = ["hang", "hang"].iter().map(|s| sim.submit(s)).collect();
    sim.until("two tasks running", |s| {
        s.journal.evaluated_by("hang").len() == 2
    });
    ids.extend(["value:q1", "value:q2"].iter().map(|s| sim.submit(s)));
    let workers = sim.compute.launched();
    assert_eq!(workers.len(), 2);
    sim.sched.close();
    assert!(sim.compute.live().is_empty(), "{:?}", sim.compute.live());
    for id in &ids {
        let c = sim.peek(id);
        assert_eq!(c.state, TaskState::Cancelled, "{id}");
    }
    // Each worker was told to stop, after its one assignment.
    for w in &workers {
        let buf = sim
            .get(sim.layout.inbox(w.as_str(), 1))
            .expect("stop message");
        let (meta, _) = wire::decode_inbox(&buf, Limits::default()).unwrap();
        assert!(matches!(meta, InboxMeta::Stop { .. }), "{meta:?}");
    }
    assert!(matches!(
        sim.sched.submit(Bytes::new(), vec![], None),
        Err(Error::Closed)
    ));
    assert_eq!(sim.sched.info().live, 0);
    sim.sched.close(); // idempotent
    sim.settle("the simulated workers to end", |s| {
        workers.iter().all(|w| !s.alive(w))
    });
}

#[test]
fn a_failed_launch_with_no_worker_alive_fails_the_queue() {
    let sim = Sim::new(3);
    sim.compute.set_capacity(0);
    let ids: Vec<_> = (0..3).map(|i| sim.submit(&format!("value:{i}"))).collect();
    for id in &ids {
        let c = sim.finish(id);
        assert_eq!(c.state, TaskState::Failed);
        let f = c.failure.unwrap();
        assert_eq!(f.cause, FailureCause::LaunchFailed);
        assert!(f.message.contains("capacity exhausted"), "{}", f.message);
    }
    // Not a permanent verdict: once capacity is back, work runs.
    sim.compute.set_capacity(3);
    let id = sim.submit("value:ok");
    assert_eq!(sim.finish(&id).value, Some(Bytes::from_static(b"ok")));
}

#[test]
fn blobs_shared_by_many_tasks_are_uploaded_once() {
    let sim = Sim::new(3);
    let big = Bytes::from(vec![42u8; 200_000]);
    // A large blob that is already in the store (a reattached session) is not uploaded again;
    // small ones are written without a look-up (see below).
    let pre = Bytes::from(
        [
            b"already there".as_slice(),
            &vec![7u8; starburst_scheduler::LOOK_BEFORE_UPLOAD],
        ]
        .concat(),
    );
    let pre_ref = BlobRef::of(&pre);
    let frame = wire::encode_blob(&pre, wire::EncodeOptions::PLAIN);
    sim.rt
        .block_on(starburst_cloud::ObjectStore::put(
            &sim.store.inner,
            &support::p(sim.layout.blob(&pre_ref.hash)),
            Bytes::from(frame),
        ))
        .unwrap();
    let ids: Vec<_> = (0..30)
        .map(|i| {
            let own = Bytes::from(format!("own-{i}"));
            sim.sched
                .submit(
                    Bytes::from_static(b"echo"),
                    vec![big.clone(), own, pre.clone()],
                    None,
                )
                .unwrap()
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let c = sim.finish(id);
        assert_eq!(c.state, TaskState::Done, "{c:?}");
        let v = c.value.unwrap();
        assert_eq!(
            v.len(),
            200_000 + 1 + format!("own-{i}").len() + 1 + pre.len()
        );
        assert!(v.ends_with(&pre), "task {i}");
        assert!(
            v[..v.len() - pre.len()].ends_with(format!("|own-{i}|").as_bytes()),
            "task {i}"
        );
    }
    // Look-ups for the one large blob only, once: the small ones are just written.
    let heads: u64 = sim
        .store
        .requests()
        .iter()
        .filter(|((op, kind, _), _)| *op == "head" && *kind == "blob")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(heads, 1);
    let blob_writes = sim.store.writes_to("/blobs/");
    assert_eq!(blob_writes.len(), 31, "{blob_writes:?}");
    let big_key = sim.layout.blob(&BlobRef::of(&big).hash);
    assert_eq!(sim.store.writes_to(&big_key).len(), 1);
    assert!(
        sim.store
            .writes_to(&sim.layout.blob(&pre_ref.hash))
            .is_empty()
    );
}

#[test]
fn a_failed_inbox_write_does_not_strand_the_task() {
    let sim = Sim::new(1);
    sim.store.fail_puts("/inbox/", 1);
    let id = sim.submit("value:delivered");
    let c = sim.finish(&id);
    assert_eq!(
        (c.state, c.value),
        (TaskState::Done, Some(Bytes::from_static(b"delivered")))
    );
    // The next task still reaches the same worker's inbox in sequence.
    let next = sim.submit("value:second");
    assert_eq!(sim.finish(&next).value, Some(Bytes::from_static(b"second")));
    assert_eq!(sim.compute.launched().len(), 1);
}

#[test]
fn a_submit_racing_close_never_leaves_a_pending_task() {
    let sim = Sim::new(1);
    let gate = sim.store.gate_blob_heads();
    std::thread::scope(|s| {
        // Held inside submit while it checks whether its blob is stored.
        let submit = s.spawn(|| {
            sim.sched.submit(
                Bytes::from_static(b"echo"),
                vec![Bytes::from(vec![
                    1u8;
                    starburst_scheduler::LOOK_BEFORE_UPLOAD
                ])],
                None,
            )
        });
        sim.settle("submit to reach the store", |s| s.store.gate_waiting() == 1);
        sim.sched.close();
        gate.add_permits(1);
        match submit.join().unwrap() {
            Err(Error::Closed) => {}
            Ok(id) => {
                let c = sim.peek(&id);
                assert!(
                    is_final(c.state),
                    "a task submitted during close is left {:?}",
                    c.state
                );
            }
            Err(e) => panic!("{e}"),
        }
    });
}

#[test]
fn a_failed_cancel_marker_write_is_retried() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    sim.wait_running("hang");
    sim.store.fail_puts("/cancel/", 1);
    sim.sched.cancel(std::slice::from_ref(&a)).unwrap();
    let c = sim.finish(&a);
    assert_eq!(c.state, TaskState::Cancelled, "{c:?}");
    assert!(sim.exists(sim.layout.cancel(a.as_str())));
}

#[test]
fn a_throttled_launch_is_retried_instead_of_failing_the_queue() {
    let sim = Sim::new(2);
    sim.port.throttle_launches(3);
    let ids: Vec<_> = (0..4).map(|i| sim.submit(&format!("value:{i}"))).collect();
    let (done, _) = sim.finish_all(&ids);
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.state, TaskState::Done, "{:?}", c.failure);
        assert_eq!(c.value, Some(Bytes::from(format!("{i}"))));
    }
    assert!(
        sim.port
            .launch_calls
            .load(std::sync::atomic::Ordering::SeqCst)
            > 3
    );
    assert!(sim.compute.launched().len() <= 2);
}

// ---------------------------------------------------------------------------------------------
// Interaction with the compute port (mockall).

#[test]
fn workers_are_launched_in_batches_of_at_most_launch_batch() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = starburst_cloud::ManualClock::new();
    let mut cfg = config(25);
    cfg.launch_batch = 10;
    let expected_spec = cfg.spec.clone();

    let calls: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stopped: Arc<Mutex<Vec<WorkerId>>> = Arc::default();
    let mut compute = MockCompute::new();
    {
        let calls = calls.clone();
        compute
            .expect_launch()
            .withf(move |spec: &WorkerSpec, count: &u32| {
                *spec == expected_spec && (1..=10).contains(count)
            })
            .returning(move |_, count| {
                let mut calls = calls.lock().unwrap();
                let start: u32 = calls.iter().sum();
                calls.push(count);
                Ok(LaunchReport {
                    launched: (start..start + count)
                        .map(|i| WorkerId::new(format!("m{i:03}")).unwrap())
                        .collect(),
                    failures: vec![],
                })
            });
    }
    compute.expect_describe().returning(|ids| {
        Ok(ids
            .iter()
            .map(|id| WorkerStatus {
                id: id.clone(),
                phase: WorkerPhase::Running,
                started_at: None,
                stopped_at: None,
                stop: None,
            })
            .collect())
    });
    {
        let stopped = stopped.clone();
        compute
            .expect_stop()
            .withf(|_, reason| reason == "session closed")
            .times(1)
            .returning(move |ids, _| {
                stopped.lock().unwrap().extend_from_slice(ids);
                Ok(())
            });
    }
    let ports = starburst_scheduler::Ports {
        store: Arc::new(starburst_cloud::fake::InMemoryStore::new()),
        compute: Arc::new(compute),
        logs: Arc::new(starburst_cloud::fake::FakeLogs::new()),
        clock: Arc::new(clock.clone()),
    };
    let sched = Scheduler::start(cfg, ports, rt.handle().clone());
    for i in 0..40 {
        sched
            .submit(Bytes::from(format!("value:{i}")), vec![], None)
            .unwrap();
    }
    for _ in 0..support::MAX_STEPS {
        if sched.info().live == 25 {
            break;
        }
        clock.advance(STEP);
        std::thread::sleep(Duration::from_millis(1));
    }
    // A few more rounds: the limit holds.
    for _ in 0..20 {
        clock.advance(STEP);
        std::thread::sleep(Duration::from_millis(1));
    }
    let info = sched.info();
    assert_eq!((info.live, info.busy, info.queued), (25, 25, 15));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.iter().sum::<u32>(), 25, "{calls:?}");
    assert!(calls.len() >= 3, "{calls:?}");
    sched.close();
    let mut stopped = stopped.lock().unwrap().clone();
    stopped.sort();
    assert_eq!(stopped.len(), 25);
    assert_eq!(stopped.first().unwrap().as_str(), "m000");
    drop(sched);
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn a_cancelled_task_whose_worker_is_lost_is_not_rerun() {
    let sim = Sim::new(1);
    let a = sim.submit("hang");
    let worker = sim.wait_running("hang");
    // The worker is lost right after the cancel was asked for, before it could act on it.
    sim.sched.cancel(std::slice::from_ref(&a)).unwrap();
    sim.kill(&worker, StopCause::SpotInterruption, "interrupted");
    let c = sim.finish(&a);
    assert_eq!(c.state, TaskState::Cancelled, "{c:?}");
    assert_eq!(
        sim.journal.evaluated_by("hang").len(),
        1,
        "a cancelled task must not run again"
    );
}

#[test]
fn a_rerun_keeps_its_events_apart_from_the_lost_run() {
    let sim = Sim::new(1);
    let id = sim.submit("events:2;sleep:500;value:ok");
    let first = sim.wait_running("events:2;sleep:500;value:ok");
    sim.until("the first run's events", |s| {
        s.exists(s.layout.event(id.as_str(), 1, 1))
    });
    sim.kill(&first, StopCause::SpotInterruption, "interrupted");
    let c = sim.finish(&id);
    assert_eq!(c.state, TaskState::Done, "{c:?}");
    // Attempt 2 wrote its own events under its own attempt number.
    assert!(sim.exists(sim.layout.event(id.as_str(), 2, 0)));
    assert!(sim.exists(sim.layout.event(id.as_str(), 2, 1)));
}

#[test]
fn dropping_a_scheduler_inside_async_code_does_not_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let compute = std::sync::Arc::new(starburst_cloud::fake::FakeCompute::new());
    let ports = starburst_scheduler::Ports {
        store: std::sync::Arc::new(starburst_cloud::fake::InMemoryStore::new()),
        compute: compute.clone(),
        logs: std::sync::Arc::new(starburst_cloud::fake::FakeLogs::new()),
        clock: std::sync::Arc::new(starburst_cloud::ManualClock::new()),
    };
    let handle = rt.handle().clone();
    rt.block_on(async move {
        let sched = starburst_scheduler::Scheduler::start(support::config(2), ports, handle);
        sched
            .submit(
                Bytes::from_static(b"value:x"),
                vec![Bytes::from_static(b"blob")],
                None,
            )
            .unwrap();
        drop(sched);
    });
}

#[test]
fn a_huge_label_is_cut_instead_of_breaking_the_engine() {
    let sim = Sim::new(1);
    let id = sim
        .sched
        .submit(
            Bytes::from_static(b"value:ok"),
            vec![],
            Some("L".repeat(2 << 20)),
        )
        .unwrap();
    let c = sim.finish(&id);
    assert_eq!(c.value, Some(Bytes::from_static(b"ok")), "{c:?}");
    // The engine still works afterwards.
    let c = sim.finish(&sim.submit("value:next"));
    assert_eq!(c.value, Some(Bytes::from_static(b"next")));
}

#[test]
fn session_info_counts_workers_by_start_up_phase() {
    let sim = Sim::new(2);
    let fresh = sim.sched.info().starting;
    assert_eq!(fresh, starburst_scheduler::StartPhases::default());
    let a = sim.submit("value:a");
    sim.finish(&a);
    let info = sim.sched.info();
    let p = info.starting;
    assert_eq!(
        p.provisioning + p.pulling + p.starting + p.ready,
        info.live,
        "every live worker is in one phase: {p:?}"
    );
    assert!(
        p.ready >= 1,
        "the worker that returned a result is ready: {p:?}"
    );
}

/// A cancel that lands while the driver dispatches its task: the task was taken off the queue
/// and its assignment not written yet. Cancelled and collected at once (as R does on an
/// interrupt), it must neither panic the driver nor run again as if never cancelled.
#[test]
fn a_cancel_racing_the_dispatch_of_its_task_is_kept() {
    let sim = Sim::new(2);
    let warm = [sim.submit("value:a"), sim.submit("value:b")];
    sim.finish_all(&warm);
    // The window is short: many rounds make the old failure (a panic on a task already
    // collected) show in almost every run.
    for i in 0..2000 {
        let script = format!("value:{i}");
        let id = sim.submit(&script);
        // Give the driver a moment to be mid-dispatch on some of the rounds.
        for _ in 0..(i % 7) * 20 {
            std::hint::spin_loop();
        }
        sim.sched.cancel(std::slice::from_ref(&id)).unwrap();
        let c = sim.finish(&id);
        assert!(
            matches!(c.state, TaskState::Cancelled | TaskState::Done),
            "{c:?}"
        );
        if c.state == TaskState::Cancelled {
            assert!(c.value.is_none(), "{c:?}");
        }
    }
    // The driver is alive and schedules as before.
    let last = sim.submit("value:last");
    assert_eq!(sim.finish(&last).value.as_deref(), Some(&b"last"[..]));
}

/// A bug that panics the driver must not leave workers running (and billing) without a client:
/// the session's workers are stopped and its futures fail with an engine error.
#[test]
fn a_driver_that_panics_still_stops_every_worker_it_started() {
    let sim = Sim::new(2);
    let ids = [sim.submit("hang"), sim.submit("hang")];
    sim.until("both workers running", |s| {
        s.journal.evaluated_by("hang").len() == 2
    });
    assert_eq!(sim.compute.live().len(), 2);
    sim.port.panic_on_describe();
    sim.until("the workers to be stopped", |s| s.compute.live().is_empty());
    for id in &ids {
        match sim.sched.collect(id, Duration::ZERO) {
            Err(Error::EngineStopped) => {}
            Ok(c) => {
                assert_eq!(c.state, TaskState::Failed, "{c:?}");
                assert_eq!(c.failure.unwrap().cause, FailureCause::EngineError);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A blob the store lost (a lifecycle rule, a deletion) fails the future that found it missing,
/// and is uploaded again for the futures after it instead of failing every one of them.
#[test]
fn a_blob_the_store_lost_is_uploaded_again() {
    let sim = Sim::new(1);
    let data = Bytes::from_static(b"shared data");
    let key = support::p(sim.layout.blob(&BlobRef::of(&data).hash));
    let first = sim
        .sched
        .submit(Bytes::from_static(b"echo"), vec![data.clone()], None)
        .unwrap();
    // Gone before any worker read it.
    sim.rt
        .block_on(starburst_cloud::ObjectStore::delete(&sim.store.inner, &key))
        .unwrap();
    let c = sim.finish(&first);
    assert_eq!(c.state, TaskState::Failed, "{c:?}");
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::BlobUnavailable);
    assert!(f.message.contains("upload it again"), "{}", f.message);
    let later: Vec<_> = (0..3)
        .map(|_| {
            sim.sched
                .submit(Bytes::from_static(b"echo"), vec![data.clone()], None)
                .unwrap()
        })
        .collect();
    for id in &later {
        let c = sim.finish(id);
        assert_eq!(c.state, TaskState::Done, "{c:?}");
        assert_eq!(c.value.unwrap(), data);
    }
    assert_eq!(sim.store.writes_to(key.as_str()).len(), 2);
}
