//! A session: one `plan(starburst)`, its scheduler, its workers and (local backend) its data
//! directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starburst_aws::{Aws, AwsOptions, CloudWatchLogs, EcsCompute, EcsOptions, S3Options, S3Store};
use starburst_cloud::{
    LogLine, LogQuery, Logs, ObjectStore, SessionId, SystemClock, TaskId, WorkerId, WorkerSpec,
};
use starburst_local::{DirStore, FileLogs, LocalCompute};
use starburst_scheduler::{
    BudgetConfig, Collected, CostReport, Ports, Scheduler, SchedulerConfig, SessionInfo,
};
use starburst_serialization::{BlobHash, BlobRef, EncodeOptions};

use crate::config::{AwsSettings, Backend, Config};
use crate::{Error, Result};

/// Environment variables a worker reads (set by the session for each worker it starts).
pub mod env {
    /// `dir:<path>` for a directory store.
    pub const STORE: &str = "STARBURST_STORE";
    /// The session id.
    pub const SESSION: &str = "STARBURST_SESSION";
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

/// The logs port of a set-up without a log group: no worker has a log.
#[derive(Debug)]
struct NoLogs;

#[async_trait::async_trait]
impl Logs for NoLogs {
    async fn read(
        &self,
        _worker: &WorkerId,
        _query: &LogQuery,
    ) -> starburst_cloud::Result<Vec<LogLine>> {
        Ok(Vec::new())
    }
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

/// The store, compute and logs ports of an AWS set-up.
async fn connect_aws(
    settings: &AwsSettings,
    options: AwsOptions,
) -> Result<(S3Store, EcsCompute, Arc<dyn Logs>)> {
    let mut options = options.with_region(&settings.region);
    if settings.endpoint_url.is_some() {
        options.endpoint_url = settings.endpoint_url.clone();
    }
    let aws = Aws::connect(options).await;
    let store = S3Store::new(
        &aws,
        &settings.bucket,
        &settings.prefix,
        S3Options::default(),
    )?;
    let mut ecs = EcsOptions::new(&settings.cluster);
    ecs.subnets = settings.subnets.clone();
    ecs.security_groups = settings.security_groups.clone();
    ecs.assign_public_ip = settings.assign_public_ip;
    ecs.task_role_arn = settings.task_role_arn.clone();
    ecs.execution_role_arn = settings.execution_role_arn.clone();
    ecs.log_group = settings.log_group.clone();
    let logs: Arc<dyn Logs> = match &settings.log_group {
        Some(_) => Arc::new(CloudWatchLogs::for_workers(&aws, &ecs)?),
        None => Arc::new(NoLogs),
    };
    let compute = EcsCompute::new(&aws, ecs)?;
    Ok((store, compute, logs))
}

/// The cost meter that prices a set-up's workers (`None` when the region has no prices).
fn pricing(config: &Config) -> Option<starburst_cost::Meter> {
    let catalog = config.catalog().ok()?;
    starburst_cost::Meter::new(&catalog, &config.price_region()).ok()
}

/// Stops the workers of the set-up whose sessions are gone (never failing the session that
/// opens: a pool that cannot be listed is reported, not fatal).
async fn sweep_orphans(
    store: &S3Store,
    compute: &EcsCompute,
    config: &Config,
    current: &str,
) -> SweepReport {
    let meter = pricing(config);
    let found = crate::sweep::survey(
        store,
        compute,
        Some(current),
        meter.as_ref(),
        std::time::SystemTime::now(),
        crate::sweep::GONE_MARGIN,
    )
    .await;
    let orphans: Vec<_> = match found {
        Ok(ws) => ws.into_iter().filter(|w| w.status.is_orphaned()).collect(),
        Err(e) => {
            return SweepReport {
                error: Some(e.to_string()),
                ..SweepReport::default()
            };
        }
    };
    let report = SweepReport {
        workers: orphans.len(),
        usd: orphans.iter().filter_map(|w| w.usd).sum(),
        error: None,
    };
    match crate::sweep::stop(compute, &orphans, "its session is gone").await {
        Ok(()) => report,
        Err(e) => SweepReport {
            error: Some(e.to_string()),
            ..report
        },
    }
}

/// Every live worker of the AWS set-up in `config` with the state of its session, age and
/// cost so far; with `stop_all`, every one of them is stopped (the listing says what was).
pub fn setup_workers(config: &Config, stop_all: bool) -> Result<Vec<crate::sweep::SetupWorker>> {
    let settings = config.aws.clone().ok_or_else(|| {
        Error::BackendUnavailable("no AWS set-up: run starburst_setup() first".into())
    })?;
    let runtime = new_runtime()?;
    runtime.block_on(async {
        let (store, compute, _) = connect_aws(&settings, AwsOptions::default()).await?;
        let meter = pricing(config);
        let workers = crate::sweep::survey(
            &store,
            &compute,
            None,
            meter.as_ref(),
            std::time::SystemTime::now(),
            crate::sweep::GONE_MARGIN,
        )
        .await?;
        if stop_all {
            crate::sweep::stop(&compute, &workers, "starburst_sessions(stop = TRUE)").await?;
        }
        Ok(workers)
    })
}

impl Session {
    /// Starts a session; workers are launched on demand.
    pub fn start(config: Config) -> Result<Self> {
        config.validate()?;
        match config.backend {
            Backend::Local => Self::start_local(config),
            Backend::Aws => Self::start_aws(config, AwsOptions::default()),
        }
    }

    /// Starts an aws-backend session that reaches AWS with `options` (static credentials, say)
    /// where the standard chain would otherwise decide; the set-up's region and endpoint still
    /// apply.
    pub fn start_aws_with(config: Config, options: AwsOptions) -> Result<Self> {
        config.validate()?;
        if config.backend != Backend::Aws {
            return Err(Error::InvalidConfig(
                "start_aws_with needs backend = \"aws\"".into(),
            ));
        }
        Self::start_aws(config, options)
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
        let (budget, unpriced) = budget(&config, &spec, Duration::from_secs(5))?;
        let mut sc = SchedulerConfig::new(session_id, config.workers, spec);
        sc.budget = budget;
        sc.max_retries = config.max_retries;
        sc.health_interval = Duration::from_millis(250);
        sc.lease = Duration::from_secs(60);
        sc.start_timeout = Duration::from_secs(120);
        sc.client_beat = Some(config.client_beat());
        sc.orphan_timeout = config.orphan_timeout();
        sc.failure_timeout = config.failure_timeout();
        let logs: Arc<dyn Logs> = Arc::new(FileLogs::new(log_dir));
        let ports = Ports {
            store: Arc::new(store) as Arc<dyn ObjectStore>,
            compute: Arc::new(compute),
            logs: logs.clone(),
            clock: Arc::new(SystemClock::default()),
        };
        let scheduler = Scheduler::start(sc, ports, runtime.handle().clone());
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

    fn start_aws(config: Config, options: AwsOptions) -> Result<Self> {
        let settings = config.aws.clone().ok_or_else(|| {
            Error::BackendUnavailable("no AWS set-up: run starburst_setup() first".into())
        })?;
        let runtime = new_runtime()?;
        let session_id = new_session_id();
        let (store, compute, logs) = runtime.block_on(connect_aws(&settings, options))?;
        // Workers left running by sessions that are gone stop before this one starts its own.
        let swept = runtime.block_on(sweep_orphans(
            &store,
            &compute,
            &config,
            session_id.as_str(),
        ));
        // The worker's credentials come from the task role, its region from Fargate: the
        // client ships neither.
        let env = base_env(&config, &session_id, settings.store_url());
        let spec = WorkerSpec {
            size: config.size(),
            arch: config.arch,
            capacity: config.capacity,
            image: Some(settings.image.clone()),
            env,
            tags: tags(&session_id),
        };
        // ECS sends SIGTERM, waits the stop timeout (30 s by default), then SIGKILL.
        let (budget, unpriced) = budget(&config, &spec, Duration::from_secs(60))?;
        let mut sc = SchedulerConfig::new(session_id, config.workers, spec);
        sc.budget = budget;
        sc.max_retries = config.max_retries;
        // Fargate takes tens of seconds to place a task and pull its image.
        sc.health_interval = Duration::from_secs(2);
        sc.lease = Duration::from_secs(120);
        sc.start_timeout = Duration::from_secs(600);
        sc.poll_min = Duration::from_millis(20);
        sc.poll_max = Duration::from_secs(1);
        sc.client_beat = Some(config.client_beat());
        sc.orphan_timeout = config.orphan_timeout();
        sc.failure_timeout = config.failure_timeout();
        // Bytes cost time over a network: large globals and payloads are zstd-compressed when
        // that saves a tenth or more (see `EncodeOptions::NETWORK`).
        sc.encode = EncodeOptions::NETWORK;
        let ports = Ports {
            store: Arc::new(store) as Arc<dyn ObjectStore>,
            compute: Arc::new(compute),
            logs: logs.clone(),
            clock: Arc::new(SystemClock::default()),
        };
        let scheduler = Scheduler::start(sc, ports, runtime.handle().clone());
        Ok(Self {
            scheduler,
            logs,
            backend: Backend::Aws,
            root: PathBuf::new(),
            owns_root: false,
            unpriced,
            swept,
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
