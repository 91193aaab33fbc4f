//! A simulated session for the scheduler's tests: the real [`Scheduler`] over an in-memory
//! store, a [`FakeCompute`] whose launch hook starts a real [`starburst_worker::Worker`] (with a
//! scripted evaluator) per launched worker, fake logs, and one [`ManualClock`] shared by the
//! scheduler and the workers.
//!
//! The scheduler's `submit`, `collect` and `close` are synchronous and may block on the runtime,
//! so the tests call them from the plain test thread; the runtime is owned by the [`Sim`].
//! Time moves only when a test calls [`Sim::tick`] (or runs a [`Ticker`]); the real sleeps of a
//! millisecond between ticks only let the background tasks run and never decide an outcome.

#![allow(dead_code)]

#[path = "../../../starburst-worker/tests/support/script.rs"]
pub mod script;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::fake::{FakeCompute, FakeLogs, InMemoryStore};
use starburst_cloud::{
    Capacity, Clock, Compute, Error, ListPage, ManualClock, ObjectMeta, ObjectPath, ObjectStore,
    ObjectStoreExt, SessionId, StopCause, TaskId, WorkerId, WorkerPhase, WorkerSize, WorkerSpec,
};
use starburst_scheduler::{Collected, Ports, Scheduler, SchedulerConfig, TaskState};
use starburst_serialization::{self as wire, Limits, ResultMeta, SessionLayout};
use starburst_worker::{Worker, WorkerConfig};

#[allow(unused_imports)]
pub use script::{Entry, Journal, ScriptEvaluator};

pub const SESSION: &str = "sess-1";
/// One clock step; smaller than every period configured below.
pub const STEP: Duration = Duration::from_millis(10);
/// Upper bound on clock steps while waiting for progress (≈ 60 s of session time).
pub const MAX_STEPS: usize = 6_000;

pub fn p(s: String) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

pub fn spec() -> WorkerSpec {
    WorkerSpec {
        size: WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        },
        arch: Default::default(),
        capacity: Capacity::Spot,
        image: None,
        env: BTreeMap::new(),
        tags: BTreeMap::from([("starburst-session".to_string(), SESSION.to_string())]),
    }
}

/// Scheduler settings for tests: fast polls, a health check every 50 ms, and lease and start
/// timeouts long enough that only the tests about them can reach them.
pub fn config(max_workers: u32) -> SchedulerConfig {
    let mut c = SchedulerConfig::new(SessionId::new(SESSION).unwrap(), max_workers, spec());
    c.poll_min = Duration::from_millis(5);
    c.poll_max = Duration::from_millis(20);
    c.health_interval = Duration::from_millis(50);
    c.lease = Duration::from_secs(30);
    c.start_timeout = Duration::from_secs(60);
    c
}

pub fn is_final(s: TaskState) -> bool {
    matches!(
        s,
        TaskState::Done | TaskState::Failed | TaskState::Cancelled
    )
}

// ---------------------------------------------------------------------------------------------
// A store that audits writes and can inject faults.

/// What kind of key a request was for, by the session layout.
pub fn key_kind(path: &ObjectPath) -> &'static str {
    starburst_serialization::layout::key_kind(path.as_str())
}

/// Wraps an [`InMemoryStore`]: counts every request by operation and kind of key (and how many
/// reads missed), counts writes per key, records every result commit, and can fail inbox
/// writes or hold blob look-ups on a gate.
#[derive(Debug, Default)]
pub struct AuditStore {
    pub inner: InMemoryStore,
    /// Requests per (operation, kind of key, missed).
    requests: Mutex<BTreeMap<(&'static str, &'static str, bool), u64>>,
    /// Every request takes this long on this clock (a networked store's round trip).
    latency: Mutex<Option<(ManualClock, Duration)>>,
    /// `put`/`put_if_absent` calls per key.
    puts: Mutex<HashMap<String, Vec<&'static str>>>,
    /// (key fragment, failures left) for `put`.
    fail_puts: Mutex<Vec<(String, u32)>>,
    /// `put`s refused by `fail_puts` so far.
    refused_puts: AtomicUsize,
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    gate_waiting: AtomicUsize,
    /// Key fragments whose reads are denied (AccessDenied), as a bucket policy would.
    deny_gets: Mutex<Vec<String>>,
    /// (key fragment, extra time on the latency clock) for `get`: a slow or retrying key.
    slow_gets: Mutex<Vec<(String, Duration)>>,
}

impl AuditStore {
    /// From now on every request takes `latency` of `clock`'s time, as on S3.
    pub fn set_latency(&self, clock: &ManualClock, latency: Duration) {
        *self.latency.lock().unwrap() = Some((clock.clone(), latency));
    }

    /// Requests take no time again.
    pub fn clear_latency(&self) {
        *self.latency.lock().unwrap() = None;
    }

    async fn delay(&self) {
        let latency = self.latency.lock().unwrap().clone();
        if let Some((clock, d)) = latency {
            clock.sleep(d).await;
        }
    }

    /// From now on reads of keys containing `needle` take `extra` more on the latency clock
    /// (a key whose requests time out and are retried).
    pub fn slow_gets(&self, needle: &str, extra: Duration) {
        self.slow_gets
            .lock()
            .unwrap()
            .push((needle.to_string(), extra));
    }

    async fn slow(&self, path: &ObjectPath) {
        let extra = self
            .slow_gets
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| path.as_str().contains(n.as_str()))
            .map(|(_, d)| *d);
        let clock = self.latency.lock().unwrap().clone().map(|(c, _)| c);
        if let (Some(d), Some(clock)) = (extra, clock) {
            clock.sleep(d).await;
        }
    }

    fn count(&self, op: &'static str, path: &ObjectPath, missed: bool) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((op, key_kind(path), missed))
            .or_default() += 1;
    }

    /// Requests so far per (operation, kind of key, missed).
    pub fn requests(&self) -> BTreeMap<(&'static str, &'static str, bool), u64> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests so far.
    pub fn total_requests(&self) -> u64 {
        self.requests.lock().unwrap().values().sum()
    }

    /// Writes (`"put"`, `"create"`, `"create-refused"`) to keys containing `needle`.
    pub fn writes_to(&self, needle: &str) -> Vec<(String, &'static str)> {
        let puts = self.puts.lock().unwrap();
        let mut out: Vec<_> = puts
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .flat_map(|(k, ops)| ops.iter().map(move |op| (k.clone(), *op)))
            .collect();
        out.sort();
        out
    }

    /// Plain puts (overwrites) to keys containing `needle`.
    pub fn put_count(&self, needle: &str) -> usize {
        self.writes_to(needle)
            .iter()
            .filter(|(_, op)| *op == "put")
            .count()
    }

    /// Puts work again.
    pub fn heal_puts(&self) {
        self.fail_puts.lock().unwrap().clear();
    }

    /// From now on, reads of keys containing `needle` are denied (AccessDenied).
    pub fn deny_gets(&self, needle: &str) {
        self.deny_gets.lock().unwrap().push(needle.to_string());
    }

    /// Makes the next `n` `put`s to keys containing `needle` fail as a transient error.
    pub fn fail_puts(&self, needle: &str, n: u32) {
        self.fail_puts.lock().unwrap().push((needle.to_string(), n));
    }

    /// How many `put`s `fail_puts` refused so far.
    pub fn refused_puts(&self) -> usize {
        self.refused_puts.load(Ordering::SeqCst)
    }

    fn should_fail(&self, path: &ObjectPath) -> bool {
        let mut rules = self.fail_puts.lock().unwrap();
        match rules
            .iter_mut()
            .find(|(needle, left)| *left > 0 && path.as_str().contains(needle.as_str()))
        {
            Some((_, left)) => {
                *left -= 1;
                self.refused_puts.fetch_add(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// From now on, `head` of a blob waits for a permit of the returned semaphore.
    pub fn gate_blob_heads(&self) -> Arc<tokio::sync::Semaphore> {
        let g = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(g.clone());
        g
    }

    /// How many blob look-ups wait at the gate.
    pub fn gate_waiting(&self) -> usize {
        self.gate_waiting.load(Ordering::SeqCst)
    }

    fn record(&self, path: &ObjectPath, op: &'static str) {
        self.puts
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push(op);
    }
}

#[async_trait]
impl ObjectStore for AuditStore {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.delay().await;
        if self.should_fail(path) {
            return Err(Error::Transient {
                op: "put",
                resource: path.to_string(),
                source: "injected failure".into(),
            });
        }
        self.count("put", path, false);
        self.record(path, "put");
        self.inner.put(path, data).await
    }
    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.delay().await;
        let r = self.inner.put_if_absent(path, data).await;
        self.count("put_if_absent", path, r.is_err());
        self.record(
            path,
            if r.is_ok() {
                "create"
            } else {
                "create-refused"
            },
        );
        r
    }
    async fn get(&self, path: &ObjectPath) -> starburst_cloud::Result<Bytes> {
        self.delay().await;
        self.slow(path).await;
        if self
            .deny_gets
            .lock()
            .unwrap()
            .iter()
            .any(|n| path.as_str().contains(n.as_str()))
        {
            return Err(Error::AccessDenied {
                op: "get",
                resource: path.to_string(),
                message: "explicit deny in a bucket policy (injected)".into(),
            });
        }
        let r = self.inner.get(path).await;
        self.count("get", path, r.is_err());
        r
    }
    async fn get_range(
        &self,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> starburst_cloud::Result<Bytes> {
        self.delay().await;
        let r = self.inner.get_range(path, range).await;
        self.count("get_range", path, r.is_err());
        r
    }
    async fn head(&self, path: &ObjectPath) -> starburst_cloud::Result<ObjectMeta> {
        self.delay().await;
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate.filter(|_| path.as_str().contains("/blobs/")) {
            self.gate_waiting.fetch_add(1, Ordering::SeqCst);
            g.acquire().await.expect("gate open").forget();
        }
        let r = self.inner.head(path).await;
        self.count("head", path, r.is_err());
        r
    }
    async fn delete(&self, path: &ObjectPath) -> starburst_cloud::Result<()> {
        self.delay().await;
        self.count("delete", path, false);
        self.inner.delete(path).await
    }
    async fn list(
        &self,
        prefix: &ObjectPath,
        token: Option<String>,
    ) -> starburst_cloud::Result<ListPage> {
        self.delay().await;
        self.count("list", prefix, false);
        self.inner.list(prefix, token).await
    }
}

// ---------------------------------------------------------------------------------------------
// A compute port that can be throttled.

/// Passes every call to a [`FakeCompute`], except that the next launches can be refused the way
/// ECS refuses RunTask when it throttles. Records on the session clock when each worker was
/// launched and when its first stop request came (what Fargate would bill; a worker that exits
/// by itself is not seen here).
#[derive(Debug)]
pub struct ThrottledCompute {
    pub inner: Arc<FakeCompute>,
    throttle: AtomicU32,
    /// Launches and describes fail this way from now on (None: they work).
    launch_error: Mutex<Option<fn() -> Error>>,
    describe_error: Mutex<Option<fn() -> Error>>,
    /// Describes panic from now on (a bug in the driver's path).
    describe_panics: AtomicBool,
    pub launch_calls: AtomicU32,
    clock: ManualClock,
    runs: Runs,
}

/// Every launched worker: (launched at, billing end: its first stop request or its own exit).
type Runs = Arc<Mutex<BTreeMap<WorkerId, (Duration, Option<Duration>)>>>;

impl ThrottledCompute {
    /// Refuses the next `n` launch calls.
    pub fn throttle_launches(&self, n: u32) {
        self.throttle.store(n, Ordering::SeqCst);
    }

    /// From now on every launch fails with `e()`.
    pub fn fail_launches(&self, e: fn() -> Error) {
        *self.launch_error.lock().unwrap() = Some(e);
    }

    /// From now on every describe fails with `e()`.
    pub fn fail_describes(&self, e: fn() -> Error) {
        *self.describe_error.lock().unwrap() = Some(e);
    }

    /// From now on every describe panics, as a bug on the driver's path would.
    pub fn panic_on_describe(&self) {
        self.describe_panics.store(true, Ordering::SeqCst);
    }

    /// Every launched worker: (launched at, first stop request or own exit at).
    pub fn runs(&self) -> BTreeMap<WorkerId, (Duration, Option<Duration>)> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait]
impl Compute for ThrottledCompute {
    async fn launch(
        &self,
        spec: &WorkerSpec,
        count: u32,
    ) -> starburst_cloud::Result<starburst_cloud::LaunchReport> {
        self.launch_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = *self.launch_error.lock().unwrap() {
            return Err(e());
        }
        if self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Throttled {
                op: "launch",
                resource: "RunTask".into(),
                retry_after: None,
            });
        }
        let report = self.inner.launch(spec, count).await?;
        let now = self.clock.now();
        let mut runs = self.runs.lock().unwrap();
        for id in &report.launched {
            runs.insert(id.clone(), (now, None));
        }
        Ok(report)
    }
    async fn describe(
        &self,
        ids: &[WorkerId],
    ) -> starburst_cloud::Result<Vec<starburst_cloud::WorkerStatus>> {
        if let Some(e) = *self.describe_error.lock().unwrap() {
            return Err(e());
        }
        assert!(
            !self.describe_panics.load(Ordering::SeqCst),
            "injected panic in describe"
        );
        self.inner.describe(ids).await
    }
    async fn stop(&self, ids: &[WorkerId], reason: &str) -> starburst_cloud::Result<()> {
        let now = self.clock.now();
        for id in ids {
            if let Some((_, stop)) = self.runs.lock().unwrap().get_mut(id) {
                stop.get_or_insert(now);
            }
        }
        self.inner.stop(ids, reason).await
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated workers.

/// What a launched worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs the real worker loop with the scripted evaluator.
    Real,
    /// Never starts: no heartbeat, no inbox reads (a container stuck before the worker runs).
    Silent,
}

/// What the simulation knows about one launched worker.
#[derive(Debug)]
pub struct SimWorker {
    pub behaviour: Behaviour,
    /// False once its task ended (stopped by the platform, exited, or frozen).
    pub alive: bool,
    /// How it ended.
    pub exit: Option<String>,
    abort: Option<tokio::task::AbortHandle>,
}

type Registry = Arc<Mutex<BTreeMap<WorkerId, SimWorker>>>;

#[derive(Clone)]
struct Ctx {
    rt: tokio::runtime::Handle,
    store: Arc<AuditStore>,
    clock: ManualClock,
    journal: Arc<Journal>,
    logs: Arc<FakeLogs>,
    compute: Weak<FakeCompute>,
    cache: std::path::PathBuf,
    registry: Registry,
    launches: Arc<AtomicUsize>,
    behaviour: Arc<dyn Fn(usize) -> Behaviour + Send + Sync>,
    idle_timeout: Duration,
    runs: Runs,
    /// The session's orphan timeout and heartbeat period, which its workers follow.
    orphan_timeout: Duration,
    client_check: Option<Duration>,
    worker_config: WorkerTweak,
}

/// Changes the simulated workers' configuration.
pub type WorkerTweak = Arc<dyn Fn(&mut WorkerConfig) + Send + Sync>;

/// Completes once the platform reports `id` stopped (the simulation's "kill").
async fn until_stopped(compute: &Weak<FakeCompute>, id: &WorkerId) {
    loop {
        let Some(c) = compute.upgrade() else { return };
        let stopped = c
            .describe(std::slice::from_ref(id))
            .await
            .unwrap()
            .first()
            .is_none_or(|s| s.phase == WorkerPhase::Stopped);
        drop(c);
        if stopped {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn launch_worker(ctx: &Ctx, id: &WorkerId, spec: &WorkerSpec) {
    // The hard deadline the engine gives each worker at launch, as the worker binary reads it.
    let deadline = spec
        .env
        .get(wire::DEADLINE_ENV)
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms.parse().unwrap()));
    let n = ctx.launches.fetch_add(1, Ordering::SeqCst);
    let behaviour = (ctx.behaviour)(n);
    ctx.logs.append(id, &format!("{id}: container started"));
    ctx.logs
        .append(id, &format!("{id}: starburst-worker 0.1.0 ready"));
    ctx.registry.lock().unwrap().insert(
        id.clone(),
        SimWorker {
            behaviour,
            alive: true,
            exit: None,
            abort: None,
        },
    );
    let task = {
        let ctx = ctx.clone();
        let id = id.clone();
        async move {
            let exit = match behaviour {
                Behaviour::Silent => {
                    until_stopped(&ctx.compute, &id).await;
                    "killed".to_string()
                }
                Behaviour::Real => {
                    let clock: Arc<dyn Clock> = Arc::new(ctx.clock.clone());
                    let mut cfg = WorkerConfig::new(SESSION, id.as_str(), ctx.cache.clone());
                    cfg.idle_timeout = ctx.idle_timeout;
                    cfg.heartbeat = Duration::from_millis(100);
                    cfg.poll_min = Duration::from_millis(5);
                    cfg.poll_max = Duration::from_millis(20);
                    cfg.cancel_poll = Duration::from_millis(20);
                    // Workers follow the session heartbeat as the worker binary does.
                    cfg.orphan_timeout = ctx.client_check.map(|_| ctx.orphan_timeout);
                    cfg.client_check = ctx.client_check.unwrap_or(Duration::from_secs(30));
                    cfg.deadline = deadline;
                    (ctx.worker_config)(&mut cfg);
                    let evaluator =
                        ScriptEvaluator::new(id.as_str(), clock.clone(), ctx.journal.clone());
                    let worker = Worker::new(ctx.store.clone(), clock, Box::new(evaluator), cfg);
                    tokio::select! {
                        exit = worker.run() => {
                            // The process ended by itself: the platform sees it stop.
                            let (cause, code) = match &exit {
                                Ok(_) => (StopCause::Exited, 0),
                                Err(_) => (StopCause::Crashed, 1),
                            };
                            if let Some(c) = ctx.compute.upgrade()
                                && c.live().contains(&id)
                            {
                                c.set_stopped(&id, cause, Some(code), "essential container exited");
                            }
                            // Its billing ends with it.
                            if let Some((_, stop)) = ctx.runs.lock().unwrap().get_mut(&id) {
                                stop.get_or_insert(ctx.clock.now());
                            }
                            format!("{exit:?}")
                        }
                        () = until_stopped(&ctx.compute, &id) => "killed".to_string(),
                    }
                }
            };
            if let Some(w) = ctx.registry.lock().unwrap().get_mut(&id) {
                w.alive = false;
                w.exit = Some(exit);
            }
        }
    };
    let handle = ctx.rt.spawn(task);
    if let Some(w) = ctx.registry.lock().unwrap().get_mut(id) {
        w.abort = Some(handle.abort_handle());
    }
}

// ---------------------------------------------------------------------------------------------
// The session.

/// Options of a [`Sim`].
pub struct SimOptions {
    pub config: SchedulerConfig,
    /// Behaviour of the n-th launched worker (0-based).
    pub behaviour: Arc<dyn Fn(usize) -> Behaviour + Send + Sync>,
    /// The workers' idle timeout.
    pub idle_timeout: Duration,
    /// Applied to each worker's configuration after the test defaults (fast polls and beats).
    pub worker_config: WorkerTweak,
}

impl SimOptions {
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            behaviour: Arc::new(|_| Behaviour::Real),
            idle_timeout: Duration::from_secs(3600),
            worker_config: Arc::new(|_| {}),
        }
    }

    pub fn worker_config(mut self, f: impl Fn(&mut WorkerConfig) + Send + Sync + 'static) -> Self {
        self.worker_config = Arc::new(f);
        self
    }

    pub fn behaviour(mut self, f: impl Fn(usize) -> Behaviour + Send + Sync + 'static) -> Self {
        self.behaviour = Arc::new(f);
        self
    }
}

/// A scheduler with simulated workers. Fields drop in order: the scheduler (which closes the
/// session) before the runtime it needs.
pub struct Sim {
    pub sched: Scheduler,
    pub clock: ManualClock,
    pub store: Arc<AuditStore>,
    pub compute: Arc<FakeCompute>,
    /// The compute port the scheduler sees: `compute`, throttled on request.
    pub port: Arc<ThrottledCompute>,
    pub logs: Arc<FakeLogs>,
    pub journal: Arc<Journal>,
    pub layout: SessionLayout,
    pub config: SchedulerConfig,
    registry: Registry,
    _cache: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

impl Sim {
    pub fn new(max_workers: u32) -> Self {
        Self::with(SimOptions::new(config(max_workers)))
    }

    pub fn with(opts: SimOptions) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clock = ManualClock::new();
        let store = Arc::new(AuditStore::default());
        let compute = Arc::new(FakeCompute::with_clock(Arc::new(clock.clone())));
        let logs = Arc::new(FakeLogs::new());
        let journal = Journal::new();
        let cache = tempfile::tempdir().unwrap();
        let registry: Registry = Arc::default();
        let runs: Runs = Arc::default();
        let ctx = Ctx {
            runs: runs.clone(),
            rt: rt.handle().clone(),
            store: store.clone(),
            clock: clock.clone(),
            journal: journal.clone(),
            logs: logs.clone(),
            compute: Arc::downgrade(&compute),
            cache: cache.path().to_path_buf(),
            registry: registry.clone(),
            launches: Arc::default(),
            behaviour: opts.behaviour,
            idle_timeout: opts.idle_timeout,
            orphan_timeout: opts.config.orphan_timeout,
            client_check: opts.config.client_beat,
            worker_config: opts.worker_config,
        };
        compute.on_launch(move |id, spec| launch_worker(&ctx, id, spec));
        let port = Arc::new(ThrottledCompute {
            inner: compute.clone(),
            throttle: AtomicU32::new(0),
            launch_error: Mutex::default(),
            describe_error: Mutex::default(),
            describe_panics: AtomicBool::new(false),
            launch_calls: AtomicU32::new(0),
            clock: clock.clone(),
            runs,
        });
        let sched = Self::scheduler(
            &rt,
            &clock,
            &store,
            port.clone(),
            &logs,
            opts.config.clone(),
        );
        Self {
            sched,
            clock,
            store,
            compute,
            port,
            logs,
            journal,
            layout: SessionLayout::new(SESSION),
            config: opts.config,
            registry,
            _cache: cache,
            rt,
        }
    }

    fn scheduler(
        rt: &tokio::runtime::Runtime,
        clock: &ManualClock,
        store: &Arc<AuditStore>,
        compute: Arc<dyn Compute>,
        logs: &Arc<FakeLogs>,
        config: SchedulerConfig,
    ) -> Scheduler {
        let ports = Ports {
            store: store.clone(),
            compute,
            logs: logs.clone(),
            clock: Arc::new(clock.clone()),
        };
        Scheduler::start(config, ports, rt.handle().clone())
    }

    /// The session's time.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Moves time one step and lets the background tasks run.
    pub fn tick(&self) {
        self.clock.advance(STEP);
        std::thread::sleep(Duration::from_millis(1));
    }

    /// Ticks until `cond` holds; returns the number of ticks it took.
    pub fn until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) -> usize {
        for n in 0..MAX_STEPS {
            if cond(self) {
                return n;
            }
            self.tick();
        }
        panic!("gave up waiting for {what}");
    }

    /// Real-time wait (no ticks) for something the simulation does by itself.
    pub fn settle(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        for _ in 0..5_000 {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("gave up waiting for {what}");
    }

    pub fn submit(&self, script: &str) -> TaskId {
        self.sched
            .submit(Bytes::from(script.to_string()), vec![], None)
            .unwrap()
    }

    pub fn state(&self, id: &TaskId) -> TaskState {
        self.peek(id).state
    }

    /// `collect` with a zero timeout; a final answer is consumed.
    pub fn peek(&self, id: &TaskId) -> Collected {
        self.sched.collect(id, Duration::ZERO).unwrap()
    }

    /// Ticks until the task is final; returns the final answer with every event seen on the way.
    pub fn finish(&self, id: &TaskId) -> Collected {
        let mut events = Vec::new();
        for _ in 0..MAX_STEPS {
            let c = self.peek(id);
            events.extend(c.events.iter().cloned());
            if is_final(c.state) {
                return Collected { events, ..c };
            }
            self.tick();
        }
        panic!("task {id} never finished");
    }

    /// Ticks until every task is final; returns their final answers (events included) and the
    /// number of ticks it took.
    pub fn finish_all(&self, ids: &[TaskId]) -> (Vec<Collected>, usize) {
        let mut out: Vec<Option<Collected>> = vec![None; ids.len()];
        let mut events: Vec<Vec<Bytes>> = vec![Vec::new(); ids.len()];
        for n in 0..MAX_STEPS {
            for (i, id) in ids.iter().enumerate() {
                if out[i].is_none() {
                    let c = self.peek(id);
                    events[i].extend(c.events.iter().cloned());
                    if is_final(c.state) {
                        out[i] = Some(Collected {
                            events: std::mem::take(&mut events[i]),
                            ..c
                        });
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                return (out.into_iter().map(Option::unwrap).collect(), n);
            }
            self.tick();
        }
        panic!("tasks never finished: {ids:?}");
    }

    /// Ticks until the task is on a worker; returns the worker running it.
    pub fn wait_running(&self, script: &str) -> WorkerId {
        let mut found = None;
        self.until(&format!("{script:?} to start"), |s| {
            found = s.journal.evaluated_by(script).last().cloned();
            found.is_some()
        });
        WorkerId::new(found.unwrap()).unwrap()
    }

    /// The committed result of a task, read from the store.
    pub fn stored_result(&self, id: &TaskId) -> Option<(ResultMeta, Bytes)> {
        let buf = self
            .rt
            .block_on(
                self.store
                    .inner
                    .get_opt(&p(self.layout.result(id.as_str()))),
            )
            .unwrap()?;
        Some(wire::decode_result(&buf, Limits::default()).unwrap())
    }

    pub fn exists(&self, key: String) -> bool {
        self.rt
            .block_on(self.store.inner.get_opt(&p(key)))
            .unwrap()
            .is_some()
    }

    pub fn get(&self, key: String) -> Option<Bytes> {
        self.rt.block_on(self.store.inner.get_opt(&p(key))).unwrap()
    }

    pub fn alive(&self, id: &WorkerId) -> bool {
        self.registry
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|w| w.alive)
    }

    pub fn exit_of(&self, id: &WorkerId) -> Option<String> {
        self.registry
            .lock()
            .unwrap()
            .get(id)
            .and_then(|w| w.exit.clone())
    }

    /// The platform stops `id` (Spot interruption, crash, ...); returns once its simulated
    /// process is gone, so it cannot commit anything afterwards.
    pub fn kill(&self, id: &WorkerId, cause: StopCause, message: &str) {
        self.compute.set_stopped(id, cause, Some(137), message);
        self.settle(&format!("{id} to die"), |s| !s.alive(id));
    }

    /// The worker's process freezes: no more heartbeats, no progress, but the platform still
    /// reports it running.
    pub fn freeze(&self, id: &WorkerId) {
        let mut reg = self.registry.lock().unwrap();
        let w = reg.get_mut(id).expect("known worker");
        if let Some(a) = w.abort.take() {
            a.abort();
        }
        w.alive = false;
        w.exit = Some("frozen".into());
    }

    /// Starts advancing the clock in the background until the returned guard drops, for tests
    /// that block in `collect` with a real timeout.
    pub fn ticker(&self) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let clock = self.clock.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    clock.advance(STEP);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Closing the session writes stop messages; nobody moves the clock any more. A request
        // already waiting out its latency on the clock (the session heartbeat, say) needs the
        // clock to move, so it moves until the session is closed.
        self.store.clear_latency();
        let _ticker = self.ticker();
        self.sched.close();
    }
}

/// Advances a [`ManualClock`] in the background while alive.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
