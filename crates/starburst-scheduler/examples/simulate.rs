//! The scheduler at cloud scale, in one process: the real scheduler and the real worker loop
//! (`starburst-worker`) over an in-memory object store whose every request waits as S3 does
//! in-region (log-normal; GET p50 26 / p90 ~46 / p99 73 ms, PUT 30 / 54 / 88 ms), with
//! evaluators that sleep for the future's run time instead of starting R.
//!
//! `cargo run --release -p starburst-scheduler --example simulate -- [--quick]` prints, for
//! 10, 100 and 1,000 workers and futures of 0 s (200 per worker, at most 100,000; 10,000 with
//! `--quick`) and of 1 s (20 per worker): futures/s, client CPU per future,
//! requests per future by kind (client and workers), peak memory of the process, and how long
//! a result waits in the store before the client reads it. The goals of the 1,000-worker,
//! 0-second case are printed with it. One case: `--workers N --futures N --run-ms N`, with
//! `--prefetch N` and `--per-kind N --total N` to try other settings.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::fake::{FakeCompute, FakeLogs, InMemoryStore};
use starburst_cloud::{
    Arch, Capacity, Clock, ListPage, ObjectMeta, ObjectPath, ObjectStore, SessionId, SystemClock,
    TaskId, WorkerSize, WorkerSpec,
};
use starburst_scheduler::{Ports, Scheduler, SchedulerConfig, TaskState};
use starburst_worker::{Evaluation, Evaluator, Worker, WorkerConfig};
use tokio::sync::mpsc;

const SESSION: &str = "sim";

// ---------------------------------------------------------------------------------------------
// S3 latency.

/// A log-normal latency with the given median and 99th percentile.
#[derive(Debug, Clone, Copy)]
struct Latency {
    median_ms: f64,
    sigma: f64,
}

impl Latency {
    fn new(median_ms: f64, p99_ms: f64) -> Self {
        // ln(p99 / p50) = z(0.99) * sigma.
        Self {
            median_ms,
            sigma: (p99_ms / median_ms).ln() / 2.326_348,
        }
    }

    fn sample(self, rng: &Mutex<u64>) -> Duration {
        let (u1, u2) = {
            let mut s = rng.lock().unwrap();
            (next_unit(&mut s), next_unit(&mut s))
        };
        // Box-Muller: a standard normal from two uniforms.
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64(self.median_ms * (self.sigma * z).exp() / 1000.0)
    }
}

/// splitmix64 as a uniform in (0, 1]: enough for latencies, and reproducible.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// What kind of key a request was for, by the session layout.
fn key_kind(path: &ObjectPath) -> &'static str {
    starburst_serialization::layout::key_kind(path.as_str())
}

/// When each result was written and first read by the client (the session clock's elapsed
/// time since the start of the run).
#[derive(Debug, Default)]
struct ResultTimes {
    written: HashMap<String, Duration>,
    seen: HashMap<String, Duration>,
}

/// One party's view (the client, or all workers) of the shared store: every request waits an
/// S3-like latency and is counted by (operation, kind of key).
#[derive(Debug)]
struct S3Like {
    inner: Arc<InMemoryStore>,
    rng: Mutex<u64>,
    get: Latency,
    put: Latency,
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    results: Arc<Mutex<ResultTimes>>,
    start: Instant,
    client: bool,
}

impl S3Like {
    fn new(
        inner: Arc<InMemoryStore>,
        seed: u64,
        results: Arc<Mutex<ResultTimes>>,
        client: bool,
    ) -> Self {
        Self {
            inner,
            rng: Mutex::new(seed),
            get: Latency::new(26.0, 73.0),
            put: Latency::new(30.0, 88.0),
            counts: Mutex::default(),
            results,
            start: Instant::now(),
            client,
        }
    }

    async fn wait(&self, op: &'static str, path: &ObjectPath) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry((op, key_kind(path)))
            .or_default() += 1;
        let latency = if op.starts_with("put") {
            self.put
        } else {
            self.get
        };
        tokio::time::sleep(latency.sample(&self.rng)).await;
    }

    fn take_counts(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}

#[async_trait]
impl ObjectStore for S3Like {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.wait("put", path).await;
        self.inner.put(path, data).await
    }

    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> starburst_cloud::Result<()> {
        self.wait("put", path).await;
        let out = self.inner.put_if_absent(path, data).await;
        if !self.client && key_kind(path) == "result" {
            let at = self.start.elapsed();
            let mut r = self.results.lock().unwrap();
            r.written.insert(path.as_str().to_string(), at);
        }
        out
    }

    async fn get(&self, path: &ObjectPath) -> starburst_cloud::Result<Bytes> {
        self.wait("get", path).await;
        let out = self.inner.get(path).await;
        if self.client && out.is_ok() && key_kind(path) == "result" {
            let at = self.start.elapsed();
            let mut r = self.results.lock().unwrap();
            r.seen.entry(path.as_str().to_string()).or_insert(at);
        }
        out
    }

    async fn get_range(
        &self,
        path: &ObjectPath,
        range: Range<u64>,
    ) -> starburst_cloud::Result<Bytes> {
        self.wait("get", path).await;
        self.inner.get_range(path, range).await
    }

    async fn head(&self, path: &ObjectPath) -> starburst_cloud::Result<ObjectMeta> {
        self.wait("head", path).await;
        self.inner.head(path).await
    }

    async fn delete(&self, path: &ObjectPath) -> starburst_cloud::Result<()> {
        self.wait("delete", path).await;
        self.inner.delete(path).await
    }

    async fn list(
        &self,
        prefix: &ObjectPath,
        page_token: Option<String>,
    ) -> starburst_cloud::Result<ListPage> {
        self.wait("list", prefix).await;
        self.inner.list(prefix, page_token).await
    }
}

// ---------------------------------------------------------------------------------------------
// Workers.

/// Sleeps for the run time the payload names (milliseconds, little-endian u64) and returns it.
#[derive(Debug)]
struct Sleeper;

#[async_trait]
impl Evaluator for Sleeper {
    async fn start(&mut self) -> starburst_worker::Result<()> {
        Ok(())
    }

    async fn eval(
        &mut self,
        payload: Bytes,
        _blobs: Vec<starburst_worker::TaskBlob>,
        _events: mpsc::UnboundedSender<Bytes>,
    ) -> Evaluation {
        let ms = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Evaluation::Value(payload)
    }

    async fn kill(&mut self) {}
}

// ---------------------------------------------------------------------------------------------
// CPU time of threads (Linux: /proc).

fn thread_id() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// User + system CPU of this process's thread `tid`.
fn thread_cpu(tid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Peak resident memory of the process (VmHWM).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// A run.

struct Run {
    workers: u32,
    futures: u32,
    run_ms: u64,
}

struct Outcome {
    rate: f64,
    cpu_per_future_us: f64,
    client: BTreeMap<(&'static str, &'static str), u64>,
    workers: BTreeMap<(&'static str, &'static str), u64>,
    lag_median_ms: f64,
    lag_last_ms: f64,
    peak_rss_mib: f64,
}

fn run(r: &Run) -> Outcome {
    let tids: Arc<Mutex<Vec<String>>> = Arc::default();
    let client_rt = {
        let tids = tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(move || {
                if let Some(t) = thread_id() {
                    tids.lock().unwrap().push(t);
                }
            })
            .build()
            .unwrap()
    };
    let worker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let inner = Arc::new(InMemoryStore::new());
    let times: Arc<Mutex<ResultTimes>> = Arc::default();
    let client_store = Arc::new(S3Like::new(inner.clone(), 1, times.clone(), true));
    let worker_store = Arc::new(S3Like::new(inner, 2, times.clone(), false));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let compute = Arc::new(FakeCompute::with_clock(clock.clone()));
    let cache = std::env::temp_dir().join(format!("starburst-simulate-{}", std::process::id()));
    {
        let store = worker_store.clone();
        let clock = clock.clone();
        let handle = worker_rt.handle().clone();
        let cache = cache.clone();
        compute.on_launch(move |id, _spec| {
            let mut cfg = WorkerConfig::new(SESSION, id.as_str(), cache.join(id.as_str()));
            cfg.idle_timeout = Duration::from_secs(3600);
            let worker = Worker::new(store.clone(), clock.clone(), Box::new(Sleeper), cfg);
            handle.spawn(async move {
                let _ = worker.run().await;
            });
        });
    }
    let mut config = SchedulerConfig::new(
        SessionId::new(SESSION).unwrap(),
        r.workers,
        WorkerSpec {
            size: WorkerSize {
                millicpu: 1000,
                memory_mib: 2048,
            },
            arch: Arch::default(),
            capacity: Capacity::OnDemand,
            image: None,
            env: BTreeMap::new(),
            tags: BTreeMap::new(),
        },
    );
    config.start_timeout = Duration::from_secs(3600);
    if let Some(depth) = arg("--prefetch") {
        config.prefetch = depth;
    }
    if let (Some(per_kind), Some(total)) = (arg("--per-kind"), arg("--total")) {
        config.requests = starburst_scheduler::RequestLimits { per_kind, total };
    }
    let ports = Ports {
        store: client_store.clone(),
        compute,
        logs: Arc::new(FakeLogs::new()),
        clock,
    };
    let sched = Scheduler::start(config, ports, client_rt.handle().clone());
    let payload = |ms: u64| Bytes::copy_from_slice(&ms.to_le_bytes());
    let drain = |ids: Vec<TaskId>| {
        for id in ids {
            loop {
                let c = sched.collect(&id, Duration::from_secs(60)).unwrap();
                if matches!(c.state, TaskState::Done) {
                    sched.release(std::slice::from_ref(&id));
                    break;
                }
                assert!(
                    matches!(c.state, TaskState::Queued | TaskState::Running),
                    "{c:?}"
                );
            }
        }
    };
    // Warm-up: every worker launched and through its first future.
    let warm: Vec<TaskId> = (0..r.workers)
        .map(|_| sched.submit(payload(200), vec![], None).unwrap())
        .collect();
    drain(warm);
    client_store.take_counts();
    worker_store.take_counts();
    *times.lock().unwrap() = ResultTimes::default();

    let main_tid = thread_id().unwrap_or_default();
    let cpu = |tids: &[String]| -> Duration { tids.iter().map(|t| thread_cpu(t)).sum() };
    let mut all = tids.lock().unwrap().clone();
    all.push(main_tid);
    let cpu0 = cpu(&all);
    let t0 = Instant::now();
    let ids: Vec<TaskId> = (0..r.futures)
        .map(|_| sched.submit(payload(r.run_ms), vec![], None).unwrap())
        .collect();
    drain(ids);
    let elapsed = t0.elapsed();
    let cpu_used = cpu(&all).saturating_sub(cpu0);
    let client = client_store.take_counts();
    let workers = worker_store.take_counts();
    let (lag_median_ms, lag_last_ms) = {
        let t = times.lock().unwrap();
        let mut lags: Vec<(Duration, Duration)> = t
            .written
            .iter()
            .filter_map(|(k, w)| t.seen.get(k).map(|s| (*w, s.saturating_sub(*w))))
            .collect();
        lags.sort();
        let last = lags.last().map_or(0.0, |(_, l)| l.as_secs_f64() * 1000.0);
        let mut only: Vec<Duration> = lags.iter().map(|(_, l)| *l).collect();
        only.sort();
        let median = only
            .get(only.len() / 2)
            .map_or(0.0, |l| l.as_secs_f64() * 1000.0);
        (median, last)
    };
    sched.close();
    drop(sched);
    client_rt.shutdown_background();
    worker_rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&cache);
    Outcome {
        rate: f64::from(r.futures) / elapsed.as_secs_f64(),
        cpu_per_future_us: cpu_used.as_secs_f64() * 1e6 / f64::from(r.futures),
        client,
        workers,
        lag_median_ms,
        lag_last_ms,
        peak_rss_mib: peak_rss_mib(),
    }
}

fn per_future(counts: &BTreeMap<(&'static str, &'static str), u64>, futures: u32) -> f64 {
    counts.values().sum::<u64>() as f64 / f64::from(futures)
}

fn breakdown(counts: &BTreeMap<(&'static str, &'static str), u64>, futures: u32) -> String {
    let mut v: Vec<_> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|((op, kind), n)| format!("{op} {kind} {:.2}", **n as f64 / f64::from(futures)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value after `--name` on the command line.
fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let big: u32 = arg("--futures").unwrap_or(if quick { 10_000 } else { 100_000 });
    let mut runs = Vec::new();
    if let Some(workers) = arg::<u32>("--workers") {
        // One case: `--workers N [--futures N] [--run-ms N]`.
        runs.push(Run {
            workers,
            futures: big,
            run_ms: arg("--run-ms").unwrap_or(0),
        });
    }
    let one = !runs.is_empty();
    for workers in [10u32, 100, 1000].into_iter().filter(|_| !one) {
        // 0-second futures: 200 per worker, so the 1,000-worker session has 100,000 (the
        // memory goal's size) and the 10-worker one does not take a quarter of an hour.
        runs.push(Run {
            workers,
            futures: (workers * 200).min(big),
            run_ms: 0,
        });
    }
    for workers in [10u32, 100, 1000].into_iter().filter(|_| !one) {
        // 1-second futures: as many as keep every worker busy for 20 s (100,000 would take
        // 10,000 s on 10 workers).
        runs.push(Run {
            workers,
            futures: (workers * 20).min(big),
            run_ms: 1000,
        });
    }
    println!(
        "\nsimulation: the real scheduler and worker loop, S3-like latency (GET p50 26/p99 73 ms, PUT 30/88 ms), in-process workers"
    );
    println!(
        "  {:>7} {:>8} {:>5} {:>10} {:>12} {:>12} {:>12} {:>16} {:>9}",
        "workers",
        "futures",
        "run",
        "futures/s",
        "client CPU",
        "client req",
        "worker req",
        "result lag p50/last",
        "peak RSS"
    );
    let mut zero_1000 = None;
    for r in &runs {
        let o = run(r);
        println!(
            "  {:>7} {:>8} {:>4}s {:>10.0} {:>9.1} us {:>12.2} {:>12.2} {:>9.0}/{:<6.0}ms {:>6.0} MiB",
            r.workers,
            r.futures,
            r.run_ms / 1000,
            o.rate,
            o.cpu_per_future_us,
            per_future(&o.client, r.futures),
            per_future(&o.workers, r.futures),
            o.lag_median_ms,
            o.lag_last_ms,
            o.peak_rss_mib,
        );
        println!("          client: {}", breakdown(&o.client, r.futures));
        println!("          workers: {}", breakdown(&o.workers, r.futures));
        let lists = o
            .client
            .keys()
            .chain(o.workers.keys())
            .any(|(op, _)| *op == "list");
        if lists {
            println!("          LIST in the hot path: yes");
        }
        if r.workers == 1000 && r.run_ms == 0 {
            zero_1000 = Some(o);
        }
    }
    if let Some(o) = zero_1000 {
        let client = per_future(&o.client, (1000 * 200).min(big));
        println!(
            "  goals (1,000 workers, 0 s futures): >= 1000 futures/s: {:.0} ({}); <= 50 us client CPU/future: {:.1} ({}); <= 6 client requests/future: {:.2} ({}); <= 1 GiB: {:.0} MiB peak for the whole process ({})",
            o.rate,
            met(o.rate >= 1000.0),
            o.cpu_per_future_us,
            met(o.cpu_per_future_us <= 50.0),
            client,
            met(client <= 6.0),
            o.peak_rss_mib,
            met(o.peak_rss_mib <= 1024.0),
        );
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
