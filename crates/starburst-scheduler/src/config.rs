//! How a session schedules: its limits, timing, spending caps and ports.

use std::sync::Arc;
use std::time::Duration;

use starburst_cloud::{Clock, Compute, Logs, ObjectStore, SessionId, WorkerSpec};
use starburst_cost::{Budget, Meter};
use starburst_serialization::EncodeOptions;

use crate::{Catalog, RequestLimits};

/// A session's prices and hard spending caps.
///
/// The guarantee (see [`starburst_cost::Budget`]): the session's billed spend never passes
/// `max_cost` as long as `check_interval` and `stop_latency` are true upper bounds. The
/// scheduler checks the caps every [`SchedulerConfig::health_interval`] and uses the larger of
/// that and `check_interval` as the bound, so `check_interval` is the margin for a slow round
/// of the scheduler (a store or compute call that hangs).
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// The prices.
    pub catalog: Catalog,
    /// The region whose prices apply (`us-east-1`). A local session is priced as if its workers
    /// ran on Fargate in this region.
    pub region: String,
    /// USD per session, a hard cap; `None` for no cap.
    pub max_cost: Option<f64>,
    /// USD per hour summed over the billed workers, a hard cap; `None` for no cap.
    pub max_hourly_cost: Option<f64>,
    /// The longest time between two checks of the caps the guarantee may assume. Default 30 s.
    pub check_interval: Duration,
    /// The longest time from a stop request to the end of a worker's billing, the stop call
    /// itself included. Default 60 s, safe for Fargate: ECS sends SIGTERM, waits the task's stop
    /// timeout (30 s by default) before SIGKILL, and then needs a few seconds to end the task.
    /// Local workers stop within 5 s (a 3 s grace period, then SIGKILL).
    pub stop_latency: Duration,
}

impl BudgetConfig {
    /// No caps, `catalog`'s prices for `region`, and the default timing bounds.
    pub fn new(catalog: Catalog, region: impl Into<String>) -> Self {
        Self {
            catalog,
            region: region.into(),
            max_cost: None,
            max_hourly_cost: None,
            check_interval: Duration::from_secs(30),
            stop_latency: Duration::from_secs(60),
        }
    }

    /// The same with the caps `max_cost` (USD per session) and `max_hourly_cost` (USD per hour).
    pub fn with_caps(mut self, max_cost: Option<f64>, max_hourly_cost: Option<f64>) -> Self {
        self.max_cost = max_cost;
        self.max_hourly_cost = max_hourly_cost;
        self
    }

    /// The USD per hour of one worker of `spec`; fails when the caps are impossible or the
    /// catalog cannot price `spec` in the region (the error says what to do).
    pub fn validate(&self, spec: &WorkerSpec) -> starburst_cost::Result<f64> {
        self.budget(Duration::ZERO)?;
        Meter::new(&self.catalog, &self.region)?.hourly(spec.size, spec.arch, spec.capacity)
    }

    pub(crate) fn budget(&self, health_interval: Duration) -> starburst_cost::Result<Budget> {
        Budget::new(
            self.max_cost,
            self.max_hourly_cost,
            self.check_interval.max(health_interval),
            self.stop_latency,
        )
    }
}

/// How a session schedules.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The session.
    pub session_id: SessionId,
    /// At most this many workers at once.
    pub max_workers: u32,
    /// What each worker is.
    pub spec: WorkerSpec,
    /// How often a task whose worker was lost is re-run before it fails.
    pub max_retries: u32,
    /// Shortest wait between reads of a running task's result (stores that cannot notify).
    pub poll_min: Duration,
    /// Longest wait between reads of a running task's result while it is young, and the
    /// safety-net wait of a store that notifies.
    pub poll_max: Duration,
    /// Longest wait between reads of the result of a task that runs long (stores that cannot
    /// notify): a quarter of its run time so far, up to this. Its end is learned sooner from
    /// its worker's heartbeat, read every `health_interval`, which shows the worker idle or on
    /// its next task; these reads are only the safety net, and each is a billed GET.
    pub poll_long: Duration,
    /// At most this many assignments written to a busy worker's inbox ahead of the task it
    /// runs, so it goes on without waiting for the client. Only while more tasks wait than
    /// the session has workers: the last tasks of a queue never wait behind a busy worker
    /// while another one could take them. 0 turns prefetching off.
    pub prefetch: u32,
    /// How often worker status and heartbeats are checked.
    pub health_interval: Duration,
    /// A busy worker whose heartbeat has not moved for this long is lost.
    pub lease: Duration,
    /// A worker that has not sent its first heartbeat within this long is lost.
    pub start_timeout: Duration,
    /// At most this many workers per launch call (Fargate's RunTask takes 10).
    pub launch_batch: u32,
    /// Compression of what the scheduler writes.
    pub encode: EncodeOptions,
    /// Prices of the cost meter and spending caps; `None` for a session whose workers cannot
    /// be priced (no meter, no caps).
    pub budget: Option<BudgetConfig>,
    /// How often the client's session heartbeat ([`starburst_serialization::ClientBeat`]) is rewritten. Workers
    /// stop when it has not moved for their orphan timeout, so this must be well below it (a
    /// fifth, say). `None` writes none (workers that follow it then stop after their orphan
    /// timeout).
    pub client_beat: Option<Duration>,
    /// The workers' orphan timeout: how long a worker goes on without seeing the session
    /// heartbeat move. With a `max_cost`, a worker is launched only while the budget leaves
    /// at least this plus two heartbeat periods, so that the cap holds even if this client
    /// dies right after (see [`starburst_cost::Budget::unattended_launches`]).
    pub orphan_timeout: Duration,
    /// The longest a kind of request (the store, launches, worker status) may keep failing
    /// with errors that may pass before the futures waiting on it fail with a classed error
    /// that names the cause. Failures that waiting cannot fix (access denied, no usable
    /// credentials) fail them at once.
    pub failure_timeout: Duration,
    /// How many requests the session keeps in flight (see [`RequestLimits`]).
    pub requests: RequestLimits,
}

impl SchedulerConfig {
    /// Defaults for a session of `max_workers` workers of `spec`.
    pub fn new(session_id: SessionId, max_workers: u32, spec: WorkerSpec) -> Self {
        Self {
            session_id,
            max_workers: max_workers.max(1),
            spec,
            max_retries: 2,
            poll_min: Duration::from_millis(5),
            poll_max: Duration::from_secs(1),
            poll_long: Duration::from_secs(15),
            prefetch: 1,
            health_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            start_timeout: Duration::from_secs(600),
            launch_batch: 10,
            encode: EncodeOptions::PLAIN,
            budget: Some(BudgetConfig::new(Catalog::builtin(), "us-east-1")),
            client_beat: Some(Duration::from_secs(30)),
            orphan_timeout: Duration::from_secs(300),
            failure_timeout: Duration::from_secs(180),
            requests: RequestLimits::S3,
        }
    }
}

/// The ports a scheduler works through.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The session's data plane.
    pub store: Arc<dyn ObjectStore>,
    /// Where workers run.
    pub compute: Arc<dyn Compute>,
    /// Worker logs, for failure reports.
    pub logs: Arc<dyn Logs>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}
