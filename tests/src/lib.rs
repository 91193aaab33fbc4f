//! Shared by the cross-crate end-to-end tests in `tests/`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use starburst::Session;
use starburst::cloud::TaskId;
use starburst::scheduler::{Collected, TaskState};

/// The `starburst-worker` binary, built (or found up to date) once per test run, next to the
/// running test executable's profile directory.
pub fn worker_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "starburst",
                "--bin",
                "starburst-worker",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building starburst-worker failed");
        // target/<profile>/deps/<this test> -> target/<profile>/starburst-worker
        let exe = std::env::current_exe().expect("the test executable's path");
        exe.parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps")
            .join("starburst-worker")
    })
    .clone()
}

/// Collects `id` until it is final (or `limit` passes: a test failure), with every event it
/// produced on the way.
pub fn wait_for(s: &Session, id: &TaskId, limit: Duration) -> Collected {
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    loop {
        let mut c = s.collect(id, Duration::from_millis(200)).unwrap();
        events.append(&mut c.events);
        if matches!(
            c.state,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled
        ) {
            c.events = events;
            return c;
        }
        assert!(Instant::now() < deadline, "task {id} did not finish");
    }
}
