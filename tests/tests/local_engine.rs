//! End to end through the facade: a local session with real `starburst-worker` processes, the
//! directory store with file notifications, and an evaluator that speaks the R child's pipe
//! protocol (`fixtures/fake_rscript.py`), so the engine is tested without R.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use starburst::scheduler::{Collected, FailureCause, TaskState};
use starburst::{Config, Session};
use starburst_e2e::worker_bin;

fn session(workers: u32, root: &std::path::Path) -> Session {
    let mut c = Config::local(workers);
    c.root = Some(root.to_path_buf());
    c.worker_bin = Some(worker_bin());
    c.rscript = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake_rscript.py");
    c.max_retries = 2;
    Session::start(c).expect("session starts")
}

fn wait(s: &Session, id: &starburst::cloud::TaskId) -> Collected {
    starburst_e2e::wait_for(s, id, Duration::from_secs(60))
}

fn submit(s: &Session, cmd: &str) -> starburst::cloud::TaskId {
    s.submit(Bytes::from(cmd.to_string()), vec![], None)
        .unwrap()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn many_tasks_on_persistent_workers() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(3, dir.path());
    let ids: Vec<_> = (0..60).map(|i| submit(&s, &format!("echo:{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        let c = wait(&s, id);
        assert_eq!(c.state, TaskState::Done, "{c:?}");
        assert_eq!(c.value.unwrap(), Bytes::from(i.to_string()));
    }
    let info = s.info();
    assert!(info.live <= 3, "{info:?}");
    // Workers are reused: 60 tasks, at most 3 worker logs.
    let logs = std::fs::read_dir(
        dir.path()
            .join("sessions")
            .join(info.session_id.as_str())
            .join("logs"),
    )
    .unwrap()
    .count();
    assert!(logs <= 3, "{logs} workers were started for 3 slots");
    assert_eq!(info.completed, 60);
    s.close();
}

#[test]
fn events_arrive_in_order_before_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let c = wait(&s, &submit(&s, "events:5"));
    assert_eq!(c.state, TaskState::Done);
    let evs: Vec<_> = c
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert_eq!(evs, ["ev0", "ev1", "ev2", "ev3", "ev4"]);
}

#[test]
fn a_dying_evaluator_fails_its_task_only_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let c = wait(&s, &submit(&s, "die:3"));
    assert_eq!(c.state, TaskState::Failed);
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::EvaluatorDied);
    assert!(f.message.contains("status 3"), "{}", f.message);
    assert!(
        f.log_tail.iter().any(|l| l.contains("about to die")),
        "{:?}",
        f.log_tail
    );
    let c = wait(&s, &submit(&s, "echo:after"));
    assert_eq!(c.value.unwrap(), Bytes::from("after"));
}

#[test]
fn a_killed_worker_has_its_task_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let pid: i32 = String::from_utf8(wait(&s, &submit(&s, "pid")).value.unwrap().to_vec())
        .unwrap()
        .parse()
        .unwrap();
    let id = submit(&s, "sleep:1.5");
    std::thread::sleep(Duration::from_millis(400));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let c = wait(&s, &id);
    assert_eq!(c.state, TaskState::Done, "{c:?}");
    assert_eq!(c.value.unwrap(), Bytes::from("slept"));
    let pid2: i32 = String::from_utf8(wait(&s, &submit(&s, "pid")).value.unwrap().to_vec())
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pid, pid2, "a new worker took over");
}

#[test]
fn a_shared_blob_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(2, dir.path());
    let big = Bytes::from(vec![7u8; 5 << 20]);
    let ids: Vec<_> = (0..20)
        .map(|_| {
            s.submit(Bytes::from("blobs|1"), vec![big.clone()], None)
                .unwrap()
        })
        .collect();
    for id in &ids {
        assert_eq!(
            wait(&s, id).value.unwrap(),
            Bytes::from((5 << 20).to_string())
        );
    }
    let blobs = dir
        .path()
        .join("sessions")
        .join(s.info().session_id.as_str())
        .join("blobs");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 1);
}

#[test]
fn a_blob_kept_by_the_r_process_is_not_sent_to_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let other = Bytes::from(vec![1u8; 10]);
    let run = |cmd: &str, blobs: Vec<Bytes>| {
        let id = s.submit(Bytes::from(cmd.to_string()), blobs, None).unwrap();
        wait(&s, &id).value.unwrap()
    };
    assert_eq!(run("blobs", vec![big.clone()]), Bytes::from("1048576"));
    assert_eq!(run("keep", vec![big.clone()]), Bytes::from("kept"));
    assert_eq!(
        run("blobs", vec![other.clone(), big.clone()]),
        Bytes::from("10,M")
    );
    // A new R process keeps nothing.
    let died = s.submit(Bytes::from("die:3"), vec![], None).unwrap();
    wait(&s, &died);
    assert_eq!(run("blobs", vec![big.clone()]), Bytes::from("1048576"));
    assert_eq!(s.info().blob_uploads.count, 2);
    assert_eq!(s.info().blob_uploads.bytes, (1 << 20) + 10);
}

#[test]
fn cancel_interrupts_a_running_task_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let id = submit(&s, "sleep:30");
    let queued = submit(&s, "echo:never");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.cancel(&[id.clone(), queued.clone()]).unwrap();
    assert_eq!(wait(&s, &queued).state, TaskState::Cancelled);
    assert_eq!(wait(&s, &id).state, TaskState::Cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(
        wait(&s, &submit(&s, "echo:next")).value.unwrap(),
        Bytes::from("next")
    );
}

#[test]
fn close_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(2, dir.path());
    let a = submit(&s, "pid");
    let b = submit(&s, "sleep:0.3");
    let pid: i32 = String::from_utf8(wait(&s, &a).value.unwrap().to_vec())
        .unwrap()
        .parse()
        .unwrap();
    let _ = wait(&s, &b);
    let busy = submit(&s, "sleep:60");
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid));
    s.close();
    assert!(!alive(pid), "worker {pid} outlived the session");
    assert_eq!(
        s.collect(&busy, Duration::ZERO).unwrap().state,
        TaskState::Cancelled
    );
    assert!(
        s.submit(Bytes::new(), vec![], None).is_err(),
        "a closed session takes no tasks"
    );
}

#[test]
fn an_evaluator_that_dies_while_its_child_holds_the_pipe_is_still_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let s = session(1, dir.path());
    let c = wait(&s, &submit(&s, "orphan:5"));
    assert_eq!(c.state, TaskState::Failed, "{c:?}");
    let f = c.failure.unwrap();
    assert_eq!(f.cause, FailureCause::EvaluatorDied);
    assert!(f.message.contains("status 5"), "{}", f.message);
    let orphan: i32 = f
        .log_tail
        .iter()
        .find_map(|l| {
            l.strip_prefix("orphan pid ")
                .map(|p| p.trim().parse().unwrap())
        })
        .expect("the fake R reports its background process");
    assert!(
        alive(orphan),
        "the background process runs on while the session does"
    );
    s.close();
    // Reap-free check: the process is gone or a zombie of the worker's group being collected.
    let mut gone = false;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gone,
        "closing the session must stop what the R process started"
    );
}

#[test]
fn workers_that_cannot_start_r_fail_the_queue_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(2);
    c.root = Some(dir.path().to_path_buf());
    c.worker_bin = Some(worker_bin());
    c.rscript = dir.path().join("no-such-Rscript");
    let s = Session::start(c).unwrap();
    let ids: Vec<_> = (0..5).map(|i| submit(&s, &format!("echo:{i}"))).collect();
    for id in &ids {
        let c = wait(&s, id);
        assert_eq!(c.state, TaskState::Failed, "{c:?}");
        let f = c.failure.unwrap();
        assert_eq!(f.cause, FailureCause::WorkerStartFailed, "{}", f.message);
        assert!(
            f.log_tail.iter().any(|l| l.contains("no-such-Rscript")),
            "{:?}",
            f.log_tail
        );
    }
    // It failed once, not once per retry and per task.
    let logs = dir
        .path()
        .join("sessions")
        .join(s.info().session_id.as_str())
        .join("logs");
    assert!(std::fs::read_dir(logs).unwrap().count() <= 2);
}
