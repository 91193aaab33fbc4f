//! Estimates: from the timing of a small local sample of tasks, the wall time and cost of the
//! whole run on Fargate, on-demand and with Spot.

use std::time::Duration;

use starburst_cloud::{Arch, Capacity, WorkerSize};

use crate::{Catalog, Error, Result, billed_seconds};

/// Per-task run times measured on a small local sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Tasks measured.
    pub n: u32,
    /// Mean seconds per task.
    pub mean_secs: f64,
    /// Standard deviation of the seconds per task (0 for a single task).
    pub sd_secs: f64,
}

impl Sample {
    /// A sample of `n` tasks with the given mean and standard deviation (seconds).
    pub fn new(n: u32, mean_secs: f64, sd_secs: f64) -> Result<Self> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if n == 0 || !ok(mean_secs) || !ok(sd_secs) {
            return Err(Error::InvalidEstimate {
                message: format!(
                    "the sample must hold at least one task with finite, non-negative times; got n = {n}, mean = {mean_secs} s, sd = {sd_secs} s"
                ),
            });
        }
        Ok(Self {
            n,
            mean_secs,
            sd_secs,
        })
    }

    /// The sample of the measured per-task `times` (sample standard deviation, n − 1).
    pub fn from_durations(times: &[Duration]) -> Result<Self> {
        let n = u32::try_from(times.len()).unwrap_or(u32::MAX);
        if n == 0 {
            return Sample::new(0, 0.0, 0.0);
        }
        let secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
        let mean = secs.iter().sum::<f64>() / f64::from(n);
        let sd = if n > 1 {
            let ss: f64 = secs.iter().map(|s| (s - mean).powi(2)).sum();
            (ss / f64::from(n - 1)).sqrt()
        } else {
            0.0
        };
        Sample::new(n, mean, sd)
    }
}

/// What to estimate: the whole run on Fargate.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateRequest {
    /// The measured sample.
    pub sample: Sample,
    /// Tasks in the whole run.
    pub tasks: u64,
    /// Workers that run at once, already capped by the quota (see `starburst_quota`).
    pub workers: u32,
    /// Size of each worker.
    pub size: WorkerSize,
    /// Architecture of each worker.
    pub arch: Arch,
    /// Region whose prices apply.
    pub region: String,
    /// Billed time from a worker's launch to its first task (image pull, R start-up).
    pub startup: Duration,
    /// Billed time after a worker's last task until it stops (idle timeout, stop latency).
    pub tail: Duration,
    /// Seconds one task takes on a worker per second it took in the sample (1 when the
    /// sample ran on comparable hardware).
    pub speed_factor: f64,
}

impl EstimateRequest {
    /// A request with no start-up or tail time, x86-64 and a speed factor of 1.
    pub fn new(
        sample: Sample,
        tasks: u64,
        workers: u32,
        size: WorkerSize,
        region: impl Into<String>,
    ) -> Self {
        Self {
            sample,
            tasks,
            workers,
            size,
            arch: Arch::X86_64,
            region: region.into(),
            startup: Duration::ZERO,
            tail: Duration::ZERO,
            speed_factor: 1.0,
        }
    }
}

/// The projection of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Tasks in the run.
    pub tasks: u64,
    /// Workers started: min(workers, tasks).
    pub workers_used: u32,
    /// Rounds of tasks: ceil(tasks / workers_used).
    pub waves: u64,
    /// Expected seconds per task on a worker (sample mean × speed factor).
    pub per_task_secs: f64,
    /// Expected wall time, seconds: start-up + waves × per-task time.
    pub wall_secs: f64,
    /// A pessimistic wall time, seconds: the expected wall time plus
    /// sd × sqrt(waves) × sqrt(2 ln workers_used), the usual approximation of how far the
    /// slowest of the workers' sums of task times lies above the mean. Equals `wall_secs`
    /// when the sample has no spread.
    pub wall_secs_high: f64,
    /// Billed worker-seconds (each worker: start-up + its tasks + tail, per second, at least a
    /// minute).
    pub worker_seconds: f64,
    /// Billed vCPU-seconds.
    pub vcpu_seconds: f64,
    /// Billed GB-seconds.
    pub gb_seconds: f64,
    /// USD on on-demand capacity.
    pub cost_on_demand: f64,
    /// USD on Spot capacity (estimated with the catalog's Spot factor; Spot prices float).
    pub cost_spot: f64,
}

/// Projects `request` with the prices of `catalog`.
///
/// Tasks go to `workers_used` persistent workers, each taking the next task when idle, so
/// `tasks mod workers_used` workers (or all, when it divides) run `waves` tasks and the others
/// `waves − 1`; each worker is billed for start-up + its tasks + tail.
pub fn estimate(catalog: &Catalog, request: &EstimateRequest) -> Result<Estimate> {
    let prices = catalog.prices(&request.region, request.arch)?;
    let speed = request.speed_factor;
    if !speed.is_finite() || speed <= 0.0 {
        return Err(Error::InvalidEstimate {
            message: format!("speed_factor is {speed}; pass a positive number (1 when unknown)"),
        });
    }
    let tasks = request.tasks;
    if tasks > 0 && request.workers == 0 {
        return Err(Error::InvalidEstimate {
            message: format!(
                "{tasks} tasks but no worker fits; raise the quota or choose a smaller worker"
            ),
        });
    }
    let per_task = request.sample.mean_secs * speed;
    let sd = request.sample.sd_secs * speed;
    let used = u64::from(request.workers).min(tasks);
    let workers_used = u32::try_from(used).unwrap_or(u32::MAX);
    if used == 0 {
        return Ok(Estimate {
            tasks,
            workers_used: 0,
            waves: 0,
            per_task_secs: per_task,
            wall_secs: 0.0,
            wall_secs_high: 0.0,
            worker_seconds: 0.0,
            vcpu_seconds: 0.0,
            gb_seconds: 0.0,
            cost_on_demand: 0.0,
            cost_spot: 0.0,
        });
    }
    let waves = tasks.div_ceil(used);
    let full = tasks - (waves - 1) * used; // workers running `waves` tasks
    let startup = request.startup.as_secs_f64();
    let tail = request.tail.as_secs_f64();
    let billed = |k: u64| {
        let run = startup + k as f64 * per_task + tail;
        billed_seconds(Duration::try_from_secs_f64(run).unwrap_or(Duration::MAX)) as f64
    };
    let worker_seconds = full as f64 * billed(waves) + (used - full) as f64 * billed(waves - 1);
    let wall_secs = startup + waves as f64 * per_task;
    let spread = (2.0 * (used as f64).ln()).sqrt().max(1.0);
    let wall_secs_high = wall_secs + sd * (waves as f64).sqrt() * spread;
    let hourly = prices.hourly(request.size, Capacity::OnDemand);
    let cost_on_demand = hourly * worker_seconds / 3600.0;
    Ok(Estimate {
        tasks,
        workers_used,
        waves,
        per_task_secs: per_task,
        wall_secs,
        wall_secs_high,
        worker_seconds,
        vcpu_seconds: worker_seconds * request.size.vcpu(),
        gb_seconds: worker_seconds * request.size.memory_gib(),
        cost_on_demand,
        cost_spot: prices.hourly(request.size, Capacity::Spot) * worker_seconds / 3600.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: WorkerSize = WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn fifty_workers_one_hour_is_2_47() {
        let sample = Sample::new(5, 3600.0, 0.0).unwrap();
        let e = estimate(
            &Catalog::builtin(),
            &EstimateRequest::new(sample, 50, 50, ONE, "us-east-1"),
        )
        .unwrap();
        assert_eq!((e.workers_used, e.waves), (50, 1));
        assert!(close(e.wall_secs, 3600.0));
        assert!(close(e.worker_seconds, 50.0 * 3600.0));
        assert!(close(e.vcpu_seconds, 180_000.0));
        assert!(close(e.gb_seconds, 360_000.0));
        assert!(close(e.cost_on_demand, 2.4685), "{}", e.cost_on_demand);
        assert_eq!(format!("{:.2}", e.cost_on_demand), "2.47");
        assert!(close(e.cost_spot, 2.4685 * 0.3), "{}", e.cost_spot);
    }

    #[test]
    fn waves_and_uneven_last_wave() {
        // 10 tasks of 100 s on 4 workers: 3 waves; 2 workers run 3 tasks, 2 run 2.
        // Start-up 30 s, tail 10 s: billed 340 s and 240 s.
        let sample = Sample::from_durations(&[Duration::from_secs(100); 3]).unwrap();
        let mut r = EstimateRequest::new(sample, 10, 4, ONE, "us-east-1");
        r.arch = Arch::Arm64;
        r.startup = Duration::from_secs(30);
        r.tail = Duration::from_secs(10);
        let e = estimate(&Catalog::builtin(), &r).unwrap();
        assert_eq!((e.workers_used, e.waves), (4, 3));
        assert!(close(e.wall_secs, 330.0));
        assert!(close(e.wall_secs_high, 330.0), "no spread, no margin");
        assert!(close(e.worker_seconds, 2.0 * 340.0 + 2.0 * 240.0));
        let arm_hourly = 0.03238 + 2.0 * 0.00356;
        assert!(close(e.cost_on_demand, arm_hourly * 1160.0 / 3600.0));
    }

    #[test]
    fn short_runs_are_billed_a_minute_and_few_tasks_use_few_workers() {
        // 3 tasks of 2 s on up to 100 workers: 3 workers, each billed 60 s.
        let sample = Sample::new(1, 2.0, 0.0).unwrap();
        let e = estimate(
            &Catalog::builtin(),
            &EstimateRequest::new(sample, 3, 100, ONE, "us-east-1"),
        )
        .unwrap();
        assert_eq!((e.workers_used, e.waves), (3, 1));
        assert!(close(e.worker_seconds, 180.0));
        assert!(close(e.wall_secs, 2.0));
    }

    #[test]
    fn spread_and_speed_factor() {
        let sample =
            Sample::from_durations(&[Duration::from_secs(8), Duration::from_secs(12)]).unwrap();
        assert!(close(sample.mean_secs, 10.0));
        assert!(close(sample.sd_secs, 8f64.sqrt()));
        let mut r = EstimateRequest::new(sample, 400, 100, ONE, "us-east-1");
        r.speed_factor = 2.0;
        let e = estimate(&Catalog::builtin(), &r).unwrap();
        assert!(close(e.per_task_secs, 20.0));
        assert!(close(e.wall_secs, 80.0));
        let margin = 2.0 * 8f64.sqrt() * 2.0 * (2.0 * 100f64.ln()).sqrt();
        assert!(close(e.wall_secs_high, 80.0 + margin));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Sample::from_durations(&[]).is_err());
        assert!(Sample::new(3, f64::NAN, 0.0).is_err());
        let s = Sample::new(1, 1.0, 0.0).unwrap();
        let c = Catalog::builtin();
        let e = estimate(&c, &EstimateRequest::new(s, 5, 0, ONE, "us-east-1")).unwrap_err();
        assert!(e.to_string().contains("raise the quota"), "{e}");
        let e = estimate(&c, &EstimateRequest::new(s, 5, 1, ONE, "nowhere")).unwrap_err();
        assert!(e.to_string().contains("known regions"), "{e}");
        let zero = estimate(&c, &EstimateRequest::new(s, 0, 0, ONE, "us-east-1")).unwrap();
        assert_eq!((zero.waves, zero.cost_on_demand), (0, 0.0));
    }
}
