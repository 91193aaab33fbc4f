//! A session: one `plan(starburst)`, its scheduler, its workers and (local backend) its data
//! directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starburst_cloud::{
    Compute, LogLine, LogQuery, Logs, ObjectStore, SessionId, SystemClock, TaskId, WorkerId,
    WorkerSpec,
};
use starburst_local::{DirStore, FileLogs, LocalCompute};
use starburst_scheduler::{
    BudgetConfig, Collected, CostReport, Ports, Scheduler, SchedulerConfig, SessionInfo,
};
use starburst_serialization::{BlobHash, BlobRef};

use crate::config::{Backend, Config};
use crate::{Error, Result};

/// Environment variables a worker reads (set by the session for each worker it starts).
pub mod env {
    /// `dir:<path>` for a directory store.
    pub const STORE: &str = "STARBURST_STORE";
    /// The session id.
    pub const SESSION: &str = "STARBURST_SESSION";
    /// Sync mode: the environment a worker restores before R starts.
    pub const ENVIRONMENT: &str = "STARBURST_ENVIRONMENT";
    /// `Rscript` to run.
    pub const RSCRIPT: &str = "STARBURST_RSCRIPT";
    /// Idle timeout, seconds.
    pub const IDLE_TIMEOUT: &str = "STARBURST_IDLE_TIMEOUT";
    /// Blob cache directory.
    pub const BLOB_CACHE: &str = "STARBURST_BLOB_CACHE";
    /// Bytes of large globals a worker's R process keeps in memory between futures.
    pub const KEEP_BYTES: &str = "STARBURST_KEEP_BYTES";
    /// Orphan timeout, seconds: the worker stops when the session's heartbeat has not moved
    /// for this long.
    pub const ORPHAN_TIMEOUT: &str = "STARBURST_ORPHAN_TIMEOUT";
    /// The worker's hard deadline at launch, Unix milliseconds (set per launch by the engine).
    pub const DEADLINE: &str = starburst_serialization::DEADLINE_ENV;
}

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
pub use aws::setup_workers;

/// Why an aws-backend call fails in a build without the AWS backend.
#[cfg(not(feature = "aws"))]
pub(crate) fn no_aws() -> Error {
    Error::BackendUnavailable(
        "this build of starburst has no AWS backend: it was built without the `aws` feature \
         (`cargo xtask demo` installs such a build, with STARBURST_LOCAL_ONLY set); reinstall the \
         package without STARBURST_LOCAL_ONLY to use AWS"
            .into(),
    )
}

/// Every live worker of an AWS set-up: see the `aws` feature.
#[cfg(not(feature = "aws"))]
pub fn setup_workers(_config: &Config, _stop_all: bool) -> Result<Vec<crate::sweep::SetupWorker>> {
    Err(no_aws())
}

/// A running session.
#[derive(Debug)]
pub struct Session {
    scheduler: Scheduler,
    logs: Arc<dyn Logs>,
    backend: Backend,
    root: PathBuf,
    owns_root: bool,
    /// Why the session has no cost meter, when it has none.
    unpriced: Option<String>,
    /// What opening the session stopped of sessions that are gone.
    swept: SweepReport,
    // Runs the scheduler's driver (and log reads). Declared last, so it is dropped after the
    // scheduler has stopped its workers.
    runtime: tokio::runtime::Runtime,
}

fn new_session_id() -> SessionId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    SessionId::new(format!("s{}", &id[..16])).expect("uuid hex is a valid id")
}

fn new_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("starburst")
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "start the session runtime".into(),
            source,
        })
}

/// The worker environment every backend sets.
fn base_env(config: &Config, session_id: &SessionId, store: String) -> BTreeMap<String, String> {
    let mut env = config.env.clone();
    env.insert(env::STORE.into(), store);
    env.insert(env::SESSION.into(), session_id.to_string());
    env.insert(
        env::IDLE_TIMEOUT.into(),
        config.idle_timeout_secs.to_string(),
    );
    env.insert(
        env::ORPHAN_TIMEOUT.into(),
        config.orphan_timeout_secs.to_string(),
    );
    env
}

/// The environment of a local session's workers.
fn local_env(
    config: &Config,
    session_id: &SessionId,
    root: &std::path::Path,
) -> Result<BTreeMap<String, String>> {
    let mut env = base_env(config, session_id, format!("dir:{}", root.display()));
    env.insert(env::RSCRIPT.into(), config.rscript.display().to_string());
    // Local workers share one machine: together they keep at most what one worker would
    // (a quarter of its memory), unless the user chose (`STARBURST_KEEP_BYTES`).
    if !env.contains_key(env::KEEP_BYTES) && std::env::var_os(env::KEEP_BYTES).is_none() {
        let share =
            starburst_worker::evaluator::default_keep_bytes() / u64::from(config.workers.max(1));
        env.insert(env::KEEP_BYTES.into(), share.to_string());
    }
    if !config.lib_paths.is_empty() {
        let joined = std::env::join_paths(&config.lib_paths)
            .map_err(|e| Error::InvalidConfig(format!("lib_paths: {e}")))?;
        env.insert("R_LIBS".into(), joined.to_string_lossy().into_owned());
    }
    Ok(env)
}

/// The meter's prices and the caps of `config` for workers of `spec`, whose stops take at
/// most `stop_latency`. A session whose workers cannot be priced has no meter (and the reason),
/// unless it has caps: caps that cannot be enforced are a configuration error.
fn budget(
    config: &Config,
    spec: &WorkerSpec,
    stop_latency: Duration,
) -> Result<(Option<BudgetConfig>, Option<String>)> {
    let mut b = BudgetConfig::new(config.catalog()?, config.price_region())
        .with_caps(config.max_cost, config.max_hourly_cost);
    b.stop_latency = stop_latency;
    match b.validate(spec) {
        Ok(_) => Ok((Some(b), None)),
        Err(e) if config.max_cost.is_some() || config.max_hourly_cost.is_some() => {
            Err(Error::InvalidConfig(format!(
                "max_cost and max_hourly_cost cannot be enforced: {e}"
            )))
        }
        Err(e) => Ok((None, Some(e.to_string()))),
    }
}

/// The session's scheduler on `runtime`, on the backend's ports and the real clock.
fn start_scheduler(
    runtime: &tokio::runtime::Runtime,
    config: SchedulerConfig,
    store: Arc<dyn ObjectStore>,
    compute: Arc<dyn Compute>,
    logs: &Arc<dyn Logs>,
) -> Scheduler {
    let ports = Ports {
        store,
        compute,
        logs: logs.clone(),
        clock: Arc::new(SystemClock::default()),
    };
    Scheduler::start(config, ports, runtime.handle().clone())
}

/// What both backends configure alike: the workers' spec and limit, the caps (priced with a
/// stop that takes up to `stop_latency`), retries, and the client's beat and timeouts. Returns
/// why the session has no meter, when it has none.
fn scheduler_config(
    config: &Config,
    session_id: SessionId,
    spec: WorkerSpec,
    stop_latency: Duration,
) -> Result<(SchedulerConfig, Option<String>)> {
    let (budget, unpriced) = budget(config, &spec, stop_latency)?;
    let mut sc = SchedulerConfig::new(session_id, config.workers, spec);
    sc.budget = budget;
    sc.max_retries = config.max_retries;
    sc.client_beat = Some(config.client_beat());
    sc.orphan_timeout = config.orphan_timeout();
    sc.failure_timeout = config.failure_timeout();
    Ok((sc, unpriced))
}

fn tags(session_id: &SessionId) -> BTreeMap<String, String> {
    [
        ("starburst:session".to_string(), session_id.to_string()),
        ("starburst:managed".to_string(), "true".to_string()),
    ]
    .into()
}

/// The workers of sessions that are gone that opening a session stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    /// How many.
    pub workers: usize,
    /// What they had cost so far, USD at list prices (those that could be priced).
    pub usd: f64,
    /// Why the pool could not be looked at, when it could not (the session opens anyway).
    pub error: Option<String>,
}

impl Session {
    /// Starts a session; workers are launched on demand.
    pub fn start(config: Config) -> Result<Self> {
        config.validate()?;
        match config.backend {
            Backend::Local => Self::start_local(config),
            #[cfg(feature = "aws")]
            Backend::Aws => Self::start_aws(config, Default::default()),
            #[cfg(not(feature = "aws"))]
            Backend::Aws => Err(no_aws()),
        }
    }

    fn start_local(config: Config) -> Result<Self> {
        let runtime = new_runtime()?;
        let session_id = new_session_id();
        let (root, owns_root) = match &config.root {
            Some(r) => (r.clone(), false),
            None => (
                std::env::temp_dir().join(format!("starburst-{session_id}")),
                true,
            ),
        };
        let worker_bin = config.worker_bin.clone().ok_or_else(|| {
            Error::InvalidConfig(
                "worker_bin: the path of the starburst-worker binary is required".into(),
            )
        })?;
        let store = DirStore::new(&root)?;
        let session_dir = root.join("sessions").join(session_id.as_str());
        let log_dir = session_dir.join("logs");
        let compute = LocalCompute::new(&worker_bin, &log_dir, "w")?;

        let env = local_env(&config, &session_id, &root)?;
        let spec = WorkerSpec {
            size: config.size(),
            arch: config.arch,
            capacity: config.capacity,
            image: None,
            env,
            tags: tags(&session_id),
        };
        // Local workers stop within LocalCompute's 3 s grace period (then SIGKILL).
        let (mut sc, unpriced) =
            scheduler_config(&config, session_id, spec, Duration::from_secs(5))?;
        sc.health_interval = Duration::from_millis(250);
        sc.lease = Duration::from_secs(60);
        sc.start_timeout = Duration::from_secs(120);
        let logs: Arc<dyn Logs> = Arc::new(FileLogs::new(log_dir));
        let scheduler = start_scheduler(&runtime, sc, Arc::new(store), Arc::new(compute), &logs);
        Ok(Self {
            scheduler,
            logs,
            backend: Backend::Local,
            root,
            owns_root,
            unpriced,
            swept: SweepReport::default(),
            runtime,
        })
    }

    /// Queues a task; see [`Scheduler::submit`].
    pub fn submit(
        &self,
        payload: Bytes,
        blobs: Vec<Bytes>,
        label: Option<String>,
    ) -> Result<TaskId> {
        Ok(self.scheduler.submit(payload, blobs, label)?)
    }

    /// Stores a blob (a large global) once for this session; see [`Scheduler::put_blob`].
    pub fn put_blob(&self, content: &[u8]) -> Result<BlobRef> {
        Ok(self.scheduler.put_blob(content)?)
    }

    /// Queues a task whose blobs were stored by [`Session::put_blob`]; see
    /// [`Scheduler::submit_stored`].
    pub fn submit_stored(
        &self,
        payload: Bytes,
        blobs: &[BlobHash],
        label: Option<String>,
    ) -> Result<TaskId> {
        Ok(self.scheduler.submit_stored(payload, blobs, label)?)
    }

    /// A task's state, events and outcome; see [`Scheduler::collect`].
    pub fn collect(&self, task: &TaskId, timeout: Duration) -> Result<Collected> {
        Ok(self.scheduler.collect(task, timeout)?)
    }

    /// Forgets finished tasks whose outcome the caller recorded; see [`Scheduler::release`].
    pub fn release(&self, tasks: &[TaskId]) {
        self.scheduler.release(tasks)
    }

    /// Cancels tasks.
    pub fn cancel(&self, tasks: &[TaskId]) -> Result<()> {
        Ok(self.scheduler.cancel(tasks)?)
    }

    /// Messages for the user since the last call; see [`Scheduler::notices`].
    pub fn notices(&self) -> Vec<String> {
        self.scheduler.notices()
    }

    /// Counts.
    pub fn info(&self) -> SessionInfo {
        self.scheduler.info()
    }

    /// The session's spend so far and its caps; see [`Scheduler::cost`]. A local session
    /// reports what its workers would have cost on Fargate. Fails when the session's workers
    /// cannot be priced (a region or architecture the price catalog lacks).
    pub fn cost(&self) -> Result<CostReport> {
        self.scheduler.cost().ok_or_else(|| {
            Error::InvalidConfig(format!(
                "this session's workers cannot be priced: {}",
                self.unpriced.as_deref().unwrap_or("no price catalog")
            ))
        })
    }

    /// The session's history: its futures, its workers' start-up phases, stops and costs, and
    /// its spend over time; see [`Scheduler::timeline`].
    pub fn timeline(&self) -> starburst_scheduler::Timeline {
        self.scheduler.timeline()
    }

    /// The workers of sessions that were gone which opening this session stopped.
    pub fn swept(&self) -> &SweepReport {
        &self.swept
    }

    /// Every worker this session started, oldest first.
    pub fn workers(&self) -> Vec<WorkerId> {
        self.scheduler.workers()
    }

    /// A worker's log (the last `tail` lines when given): its process output locally, its
    /// CloudWatch stream on AWS.
    pub fn worker_log(&self, worker: &WorkerId, tail: Option<usize>) -> Result<Vec<LogLine>> {
        let query = LogQuery { tail, since: None };
        Ok(self.runtime.block_on(self.logs.read(worker, &query))?)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The local data directory (empty for the aws backend).
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Stops every worker; removes the session's data when the session created the directory.
    pub fn close(&self) {
        self.scheduler.close();
        if self.owns_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local session that launches no worker (nothing is submitted): any existing file will
    /// do as the worker binary.
    fn local(config: impl FnOnce(&mut Config)) -> Result<Session> {
        let mut c = Config::local(2);
        c.worker_bin = Some(std::env::current_exe().unwrap());
        config(&mut c);
        Session::start(c)
    }

    #[test]
    #[cfg(not(feature = "aws"))]
    fn a_build_without_aws_says_so_for_every_aws_call() {
        let mut config = Config::local(2);
        config.backend = Backend::Aws;
        config.aws = Some(
            serde_json::from_str(
                r#"{"region": "us-east-1", "bucket": "b", "prefix": "starburst", "cluster": "c",
                    "subnets": ["subnet-1"], "security_groups": ["sg-1"], "image": "i:1"}"#,
            )
            .unwrap(),
        );
        let unavailable = |e: Error| {
            assert_eq!(e.class(), "starburst_backend_unavailable");
            assert!(e.to_string().contains("STARBURST_LOCAL_ONLY"), "{e}");
        };
        unavailable(Session::start(config.clone()).unwrap_err());
        unavailable(setup_workers(&config, false).unwrap_err());
        unavailable(crate::Admin::connect(&Default::default()).unwrap_err());
    }

    #[test]
    fn local_workers_split_one_workers_memory_for_kept_globals_unless_the_user_chose() {
        let id = new_session_id();
        let keep = |c: &Config| {
            local_env(c, &id, std::path::Path::new("/tmp/x")).unwrap()[env::KEEP_BYTES].clone()
        };
        let one = starburst_worker::evaluator::default_keep_bytes();
        let mut config = Config::local(4);
        if std::env::var_os(env::KEEP_BYTES).is_none() {
            assert_eq!(keep(&config), (one / 4).to_string());
        }
        config.env.insert(env::KEEP_BYTES.into(), "12345".into());
        assert_eq!(keep(&config), "12345");
    }

    #[test]
    fn a_local_session_reports_its_fargate_cost_and_caps() {
        let s = local(|c| c.max_cost = Some(1.5)).unwrap();
        let r = s.cost().unwrap();
        assert_eq!(r.region, "us-east-1");
        assert_eq!((r.max_cost, r.max_hourly_cost), (Some(1.5), None));
        assert_eq!((r.meter.workers, r.meter.usd), (0, 0.0));
        // 1 vCPU, 2 GB, x86-64, on-demand in us-east-1.
        assert!((r.worker_hourly - (0.04048 + 2.0 * 0.004445)).abs() < 1e-12);
        assert!(!r.exceeded);
        s.close();
    }

    #[test]
    fn unpriced_sessions_run_without_a_meter_unless_capped() {
        let s = local(|c| c.region = Some("mars-north-1".into())).unwrap();
        let e = s.cost().unwrap_err().to_string();
        assert!(
            e.contains("cannot be priced") && e.contains("mars-north-1"),
            "{e}"
        );
        s.close();
        let e = local(|c| {
            c.region = Some("mars-north-1".into());
            c.max_cost = Some(1.0);
        })
        .unwrap_err();
        assert!(e.to_string().contains("cannot be enforced"), "{e}");
        assert_eq!(e.class(), "starburst_invalid_argument");
    }
}
