//! Workers as local `starburst-worker` processes.

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use starburst_cloud::{
    Compute, Error, LaunchReport, Result, StopCause, StopInfo, WorkerId, WorkerPhase, WorkerSpec,
    WorkerStatus,
};

/// Environment variable that tells a worker its id.
pub const ENV_WORKER_ID: &str = "STARBURST_WORKER_ID";
/// Environment variable that tells a worker which process to outlive not: when that process is
/// gone, the worker exits.
pub const ENV_PARENT_PID: &str = "STARBURST_PARENT_PID";
/// Exit status of a worker that could not start its R evaluator (`EX_CONFIG`).
pub const EXIT_EVALUATOR_START: i32 = 78;

#[derive(Debug)]
struct Proc {
    child: Child,
    started: SystemTime,
    stopped: Option<(SystemTime, StopInfo)>,
    stop_requested: Option<String>,
}

/// Launches workers as child processes of this process, each logging to
/// `<log_dir>/<worker-id>.log`.
#[derive(Debug)]
pub struct LocalCompute {
    worker_bin: PathBuf,
    log_dir: PathBuf,
    prefix: String,
    next: AtomicU64,
    procs: Mutex<BTreeMap<WorkerId, Proc>>,
}

impl LocalCompute {
    /// Workers run `worker_bin`; ids are `<prefix>-<n>`.
    pub fn new(
        worker_bin: impl Into<PathBuf>,
        log_dir: impl Into<PathBuf>,
        prefix: &str,
    ) -> Result<Self> {
        let worker_bin = worker_bin.into();
        if !worker_bin.is_file() {
            return Err(Error::invalid(
                "local compute",
                format!(
                    "worker binary {} does not exist; reinstall starburst",
                    worker_bin.display()
                ),
            ));
        }
        let log_dir = log_dir.into();
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| Error::other("local compute", log_dir.display().to_string(), e))?;
        Ok(Self {
            worker_bin,
            log_dir,
            prefix: prefix.to_string(),
            next: AtomicU64::new(0),
            procs: Mutex::default(),
        })
    }

    /// The log file of `id`.
    pub fn log_file(&self, id: &WorkerId) -> PathBuf {
        self.log_dir.join(format!("{id}.log"))
    }

    fn procs(&self) -> MutexGuard<'_, BTreeMap<WorkerId, Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, spec: &WorkerSpec) -> Result<(WorkerId, Child)> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = WorkerId::new(format!("{}-{n}", self.prefix))?;
        let log_path = self.log_file(&id);
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Error::other("launch", log_path.display().to_string(), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::other("launch", log_path.display().to_string(), e))?;
        let child = Command::new(&self.worker_bin)
            .envs(&spec.env)
            .env(ENV_WORKER_ID, id.as_str())
            .env(ENV_PARENT_PID, std::process::id().to_string())
            .stdin(Stdio::null())
            // Its own process group, so stopping the worker also stops its R process and
            // anything that R started.
            .process_group(0)
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::other("launch", self.worker_bin.display().to_string(), e))?;
        Ok((id, child))
    }

    fn refresh(proc: &mut Proc) {
        if proc.stopped.is_some() {
            return;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            let (cause, message) =
                match (proc.stop_requested.take(), status.code(), status.signal()) {
                    (Some(reason), _, _) => (StopCause::StoppedByUser, reason),
                    (None, Some(0), _) => (StopCause::Exited, "worker exited".to_string()),
                    (None, Some(EXIT_EVALUATOR_START), _) => (
                        StopCause::EvaluatorStartFailed,
                        format!("its R process did not start (exit status {EXIT_EVALUATOR_START})"),
                    ),
                    (None, Some(code), _) => (
                        StopCause::Crashed,
                        format!("worker exited with status {code}"),
                    ),
                    (None, None, Some(sig)) => (
                        StopCause::Crashed,
                        format!("worker was killed by signal {sig}"),
                    ),
                    (None, None, None) => (StopCause::Other, "worker ended".to_string()),
                };
            // Whatever the worker left behind in its group (an R process, R's children) goes too.
            signal_group(&proc.child, nix::sys::signal::Signal::SIGKILL);
            proc.stopped = Some((
                SystemTime::now(),
                StopInfo {
                    cause,
                    exit_code: status.code(),
                    message,
                },
            ));
        }
    }
}

#[async_trait]
impl Compute for LocalCompute {
    async fn launch(&self, spec: &WorkerSpec, count: u32) -> Result<LaunchReport> {
        let mut report = LaunchReport::default();
        for _ in 0..count {
            match self.spawn(spec) {
                Ok((id, child)) => {
                    tracing::debug!(worker = %id, pid = child.id(), "launched local worker");
                    self.procs().insert(
                        id.clone(),
                        Proc {
                            child,
                            started: SystemTime::now(),
                            stopped: None,
                            stop_requested: None,
                        },
                    );
                    report.launched.push(id);
                }
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        Ok(report)
    }

    async fn describe(&self, ids: &[WorkerId]) -> Result<Vec<WorkerStatus>> {
        let mut procs = self.procs();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let proc = procs.get_mut(id)?;
                Self::refresh(proc);
                let (phase, stopped_at, stop) = match &proc.stopped {
                    Some((t, info)) => (WorkerPhase::Stopped, Some(*t), Some(info.clone())),
                    None => (WorkerPhase::Running, None, None),
                };
                Some(WorkerStatus {
                    id: id.clone(),
                    phase,
                    started_at: Some(proc.started),
                    stopped_at,
                    stop,
                })
            })
            .collect())
    }

    async fn stop(&self, ids: &[WorkerId], reason: &str) -> Result<()> {
        // SIGTERM first: the worker stops its R process and exits. The lock is not held while
        // waiting, so describe() and launches go on meanwhile.
        let targets: Vec<WorkerId> = {
            let mut procs = self.procs();
            ids.iter()
                .filter(|id| {
                    procs.get_mut(*id).is_some_and(|p| {
                        Self::refresh(p);
                        if p.stopped.is_some() {
                            return false;
                        }
                        p.stop_requested = Some(reason.to_string());
                        signal_group(&p.child, nix::sys::signal::Signal::SIGTERM);
                        true
                    })
                })
                .cloned()
                .collect()
        };
        let deadline = std::time::Instant::now() + GRACE;
        loop {
            let running = {
                let mut procs = self.procs();
                let mut n = 0;
                for id in &targets {
                    if let Some(p) = procs.get_mut(id) {
                        Self::refresh(p);
                        n += usize::from(p.stopped.is_none());
                    }
                }
                n
            };
            if running == 0 || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut procs = self.procs();
        kill_now(
            procs
                .iter_mut()
                .filter(|(id, _)| targets.contains(id))
                .map(|(_, p)| &mut p.child)
                .collect(),
        );
        for id in &targets {
            if let Some(p) = procs.get_mut(id) {
                Self::refresh(p);
            }
        }
        Ok(())
    }
}

/// How long a worker may take to exit after SIGTERM.
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Signals a worker's process group: the worker, its R process and whatever R started.
fn signal_group(child: &Child, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), signal);
}

/// SIGKILLs what is left of each group and reaps the workers.
fn kill_now(children: Vec<&mut Child>) {
    for c in children {
        signal_group(c, nix::sys::signal::Signal::SIGKILL);
        let _ = c.wait();
    }
}

impl Drop for LocalCompute {
    fn drop(&mut self) {
        let mut procs = self.procs();
        let mut live: Vec<&mut Child> = procs
            .values_mut()
            .filter(|p| p.stopped.is_none())
            .map(|p| &mut p.child)
            .collect();
        for c in &live {
            signal_group(c, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + GRACE;
        while std::time::Instant::now() < deadline
            && live.iter_mut().any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        kill_now(live);
    }
}
