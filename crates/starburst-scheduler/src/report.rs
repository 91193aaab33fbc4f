//! What a session reports: its counts and its spend.

use std::time::Duration;

use starburst_cloud::SessionId;

use crate::MeterReport;

/// A session's spend so far ([`crate::Scheduler::cost`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CostReport {
    /// The region whose prices apply.
    pub region: String,
    /// The session cap, USD.
    pub max_cost: Option<f64>,
    /// The hourly cap, USD per hour.
    pub max_hourly_cost: Option<f64>,
    /// USD per hour of one worker of the session's size, architecture and capacity.
    pub worker_hourly: f64,
    /// Workers, billed vCPU- and GB-seconds, USD (at the workers' capacity and on-demand) and
    /// the current hourly rate, from the workers' launch and stop times.
    pub meter: MeterReport,
    /// True once the session reached a cap: its pending futures failed with
    /// [`crate::FailureCause::BudgetExceeded`] and new ones fail at once.
    pub exceeded: bool,
    /// When the caps were last checked, on the session clock.
    pub last_check: Option<Duration>,
}

/// Live workers by start-up state ([`SessionInfo::starting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartPhases {
    /// Asked for, not yet placed.
    pub provisioning: u32,
    /// Placed, fetching the image.
    pub pulling: u32,
    /// Running, not yet seen working (starting R).
    pub starting: u32,
    /// Seen working: a heartbeat or a result.
    pub ready: u32,
}

/// Counts for `nbrOfWorkers()`, `nbrOfFreeWorkers()` and status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// The session.
    pub session_id: SessionId,
    /// The worker limit.
    pub max_workers: u32,
    /// Workers started and not known to be stopped.
    pub live: u32,
    /// Of those, the ones running a task.
    pub busy: u32,
    /// Live workers by start-up state: asked for and not yet placed, fetching their image,
    /// running but not yet seen working (R starting), and ready (seen working).
    pub starting: StartPhases,
    /// Tasks waiting for a worker.
    pub queued: u32,
    /// Tasks completed with a value so far.
    pub completed: u64,
    /// Mean time from a task reaching the head of its worker's inbox (its assignment being
    /// written, or, when it was prefetched, the previous task's result being seen) to its
    /// result being seen by the client.
    pub mean_roundtrip: Duration,
    /// Mean time the worker spent per task, from reading the assignment to committing the
    /// result (millisecond resolution, from the worker's clock).
    pub mean_worker_ms: f64,
    /// Blobs (large globals) this session uploaded: each distinct one once.
    pub blob_uploads: BlobUploads,
}

/// Blobs uploaded by a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobUploads {
    /// How many.
    pub count: u64,
    /// Their raw size in bytes (before compression).
    pub bytes: u64,
}
