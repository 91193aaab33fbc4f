//! Tasks as callers see them: their state, what collecting one returns, and why one failed.

use bytes::Bytes;
use starburst_cloud::WorkerId;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Assigned to a worker.
    Running,
    /// Finished with a value.
    Done,
    /// Finished without a value; see [`TaskFailure`].
    Failed,
    /// Cancelled.
    Cancelled,
}

impl TaskState {
    /// The state's name as the R binding reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// Why a task failed, for the user: its cause, a message that says what happened and what to
/// do, and the worker's last log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Why, as a kind the caller can act on (the R binding maps it to a condition class).
    pub cause: FailureCause,
    /// What happened and what to do.
    pub message: String,
    /// The worker's last log lines.
    pub log_tail: Vec<String>,
}

impl TaskFailure {
    /// A failure of `cause` with `message` and no log lines.
    pub fn new(cause: FailureCause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            log_tail: Vec::new(),
        }
    }
}

/// Why a future failed. The scheduler names no R condition class: the R binding maps each cause
/// to one in a single table (`rpkg/R/conditions.R`), and new causes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FailureCause {
    /// The R process evaluating the future ended (`quit()`, a crash, out of memory).
    EvaluatorDied,
    /// Its worker was lost more often than the retry limit allows, or for a cause a re-run
    /// cannot fix.
    WorkerLost,
    /// Workers cannot start (image pull, R missing in the image, start timeout).
    WorkerStartFailed,
    /// Launching workers failed, for longer than the failure bound or for good.
    LaunchFailed,
    /// The session reached a spending cap.
    BudgetExceeded,
    /// The session's settings cannot be honoured (spending caps that cannot be enforced).
    InvalidArgument,
    /// The object store kept failing for longer than the failure bound.
    StoreUnreachable,
    /// Watching the workers kept failing for longer than the failure bound.
    ComputeUnreachable,
    /// The identity in use lacks a permission.
    AccessDenied,
    /// No usable credentials.
    Credentials,
    /// A blob of the future was missing from the store or damaged.
    BlobUnavailable,
    /// The future's result could not be read.
    CorruptResult,
    /// The worker broke the protocol (a bug or a version mismatch).
    WorkerError,
    /// The session's engine failed (a bug).
    EngineError,
}

impl FailureCause {
    /// Every cause, for bindings that map them (and test that the map is complete).
    pub const ALL: [Self; 14] = [
        Self::EvaluatorDied,
        Self::WorkerLost,
        Self::WorkerStartFailed,
        Self::LaunchFailed,
        Self::BudgetExceeded,
        Self::InvalidArgument,
        Self::StoreUnreachable,
        Self::ComputeUnreachable,
        Self::AccessDenied,
        Self::Credentials,
        Self::BlobUnavailable,
        Self::CorruptResult,
        Self::WorkerError,
        Self::EngineError,
    ];

    /// The cause's stable name (`"worker_lost"`), which bindings map.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EvaluatorDied => "evaluator_died",
            Self::WorkerLost => "worker_lost",
            Self::WorkerStartFailed => "worker_start_failed",
            Self::LaunchFailed => "launch_failed",
            Self::BudgetExceeded => "budget_exceeded",
            Self::InvalidArgument => "invalid_argument",
            Self::StoreUnreachable => "store_unreachable",
            Self::ComputeUnreachable => "compute_unreachable",
            Self::AccessDenied => "access_denied",
            Self::Credentials => "credentials",
            Self::BlobUnavailable => "blob_unavailable",
            Self::CorruptResult => "corrupt_result",
            Self::WorkerError => "worker_error",
            Self::EngineError => "engine_error",
        }
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::Scheduler::collect`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The task's state.
    pub state: TaskState,
    /// Events since the previous call, in order.
    pub events: Vec<Bytes>,
    /// The result payload, once `Done`.
    pub value: Option<Bytes>,
    /// The failure, once `Failed`.
    pub failure: Option<TaskFailure>,
    /// Once final: the worker that ran the task's last attempt, if one did.
    pub worker: Option<WorkerId>,
}
