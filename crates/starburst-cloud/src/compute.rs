//! The compute port: starting, watching and stopping workers.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, WorkerId};

/// CPU architecture of a worker (`"x86_64"`, `"arm64"` in configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// x86-64 (Fargate `X86_64`).
    #[default]
    X86_64,
    /// 64-bit ARM (Fargate `ARM64`, Graviton).
    Arm64,
}

/// How a worker's capacity is bought (`"on_demand"`, `"spot"` in configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Capacity {
    /// Regular capacity (Fargate `FARGATE`).
    #[default]
    OnDemand,
    /// Interruptible capacity at a discount (Fargate `FARGATE_SPOT`).
    Spot,
}

/// CPU and memory of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerSize {
    /// Thousandths of a vCPU (Fargate's "CPU units" are 1024 per vCPU; adapters convert).
    pub millicpu: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

impl WorkerSize {
    /// The size as fractional vCPU.
    pub fn vcpu(&self) -> f64 {
        f64::from(self.millicpu) / 1000.0
    }

    /// The memory in GiB.
    pub fn memory_gib(&self) -> f64 {
        f64::from(self.memory_mib) / 1024.0
    }

    /// Checks the size against the CPU/memory combinations Fargate accepts. The error names the
    /// valid memory values for the requested CPU, or the valid CPU values.
    pub fn validate_fargate(&self) -> Result<()> {
        let cpu = self.millicpu;
        let Some(mems) = fargate_memory_gib(cpu) else {
            return Err(Error::invalid(
                "validate worker size",
                format!(
                    "Fargate has no {} vCPU size; valid cpu values are 0.25, 0.5, 1, 2, 4, 8, 16",
                    self.vcpu()
                ),
            ));
        };
        let ok = mems.iter().any(|&g| (g * 1024.0) as u32 == self.memory_mib);
        if ok {
            return Ok(());
        }
        let list: Vec<String> = mems.iter().map(|g| format!("{g}")).collect();
        Err(Error::invalid(
            "validate worker size",
            format!(
                "Fargate does not offer {} GB with {} vCPU; valid memory for {} vCPU (GB): {}",
                self.memory_gib(),
                self.vcpu(),
                self.vcpu(),
                list.join(", ")
            ),
        ))
    }
}

/// The memory values (GiB) Fargate allows for `millicpu`, or `None` for an invalid CPU.
pub fn fargate_memory_gib(millicpu: u32) -> Option<Vec<f64>> {
    let range = |lo: u32, hi: u32, step: usize| (lo..=hi).step_by(step).map(f64::from).collect();
    Some(match millicpu {
        250 => vec![0.5, 1.0, 2.0],
        500 => range(1, 4, 1),
        1000 => range(2, 8, 1),
        2000 => range(4, 16, 1),
        4000 => range(8, 30, 1),
        8000 => range(16, 60, 4),
        16000 => range(32, 120, 8),
        _ => return None,
    })
}

/// What to launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// CPU and memory.
    pub size: WorkerSize,
    /// Architecture.
    pub arch: Arch,
    /// On-demand or Spot.
    pub capacity: Capacity,
    /// Container image reference; `None` for backends that run the installed worker binary.
    pub image: Option<String>,
    /// Environment variables for the worker.
    pub env: BTreeMap<String, String>,
    /// Tags attached to the worker (the session id among them).
    pub tags: BTreeMap<String, String>,
}

impl WorkerSpec {
    /// A worker of `size` with the defaults: x86-64, on-demand, no image, no extra environment
    /// or tags.
    pub fn new(size: WorkerSize) -> Self {
        Self {
            size,
            arch: Arch::default(),
            capacity: Capacity::default(),
            image: None,
            env: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkerPhase {
    /// Asked for, not yet placed.
    Provisioning,
    /// Placed, fetching its image.
    Pulling,
    /// Running the worker process.
    Running,
    /// Gone; see [`StopInfo`].
    Stopped,
}

/// Why a worker stopped, as far as the platform tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StopCause {
    /// The worker finished by itself (idle timeout, session end) with exit code 0.
    Exited,
    /// Spot capacity was reclaimed.
    SpotInterruption,
    /// Killed for using more memory than it had (exit 137, OOM).
    OutOfMemory,
    /// The image could not be pulled; nothing will start until that is fixed.
    ImagePullFailed,
    /// The worker started but could not start its R evaluator (R or the starburst package
    /// missing where the worker looks); nothing will start until that is fixed.
    EvaluatorStartFailed,
    /// The worker process failed (non-zero exit, crash).
    Crashed,
    /// Stopped on request (cancel, plan switch, session end, budget cap).
    StoppedByUser,
    /// Never seen working within the start limit (placement, image pull or start-up stalled).
    StartTimedOut,
    /// The platform could not start the worker for a reason that may pass: network interface
    /// provisioning, a registry sign-in that timed out, a role not yet usable (IAM
    /// propagation). Another worker is started; nothing of the work was lost.
    StartFailedTransient,
    /// The container runtime could not start the worker's container (ECS
    /// `CannotStartContainerError`).
    CannotStartContainer,
    /// The worker process was killed (SIGKILL, exit 137) without the platform saying it ran
    /// out of memory.
    Killed,
    /// The platform's scheduler stopped the worker (ECS `ServiceSchedulerInitiated`).
    PlatformStopped,
    /// The platform retired the worker's host (ECS `TerminationNotice`, infrastructure
    /// health or maintenance).
    HostRetired,
    /// Anything else the platform reported.
    Other,
}

impl StopCause {
    /// True when the cause is in the infrastructure rather than the work, so a task that was on
    /// the worker is worth re-running elsewhere.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::SpotInterruption
                | Self::Crashed
                | Self::Other
                | Self::Exited
                | Self::StartFailedTransient
                | Self::CannotStartContainer
                | Self::Killed
                | Self::PlatformStopped
                | Self::HostRetired
        )
    }

    /// True when the worker never ran anything: what was assigned to it did not start, so
    /// it is re-run without using up a retry.
    pub fn never_ran(self) -> bool {
        matches!(
            self,
            Self::Exited | Self::StartFailedTransient | Self::CannotStartContainer
        )
    }

    /// True when launching more workers of the same spec is pointless until the user acts.
    pub fn is_fatal_for_spec(self) -> bool {
        matches!(self, Self::ImagePullFailed | Self::EvaluatorStartFailed)
    }
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exited => "worker exited",
            Self::SpotInterruption => "Spot capacity was interrupted",
            Self::OutOfMemory => "worker ran out of memory",
            Self::ImagePullFailed => "worker image could not be pulled",
            Self::EvaluatorStartFailed => "worker could not start R",
            Self::Crashed => "worker process crashed",
            Self::StoppedByUser => "worker was stopped on request",
            Self::StartTimedOut => "worker did not start in time",
            Self::StartFailedTransient => "worker could not be started (a failure that may pass)",
            Self::CannotStartContainer => "worker's container could not be started",
            Self::Killed => "worker process was killed",
            Self::PlatformStopped => "worker was stopped by the platform's scheduler",
            Self::HostRetired => "worker's host was retired by the platform",
            Self::Other => "worker stopped",
        })
    }
}

/// How a stopped worker ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopInfo {
    /// The classified cause.
    pub cause: StopCause,
    /// The process exit code, when known.
    pub exit_code: Option<i32>,
    /// The platform's own words (ECS stoppedReason, signal name, ...).
    pub message: String,
}

/// What the platform knows about one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker.
    pub id: WorkerId,
    /// Current phase.
    pub phase: WorkerPhase,
    /// When it started running, if it did.
    pub started_at: Option<SystemTime>,
    /// When it stopped, if it did.
    pub stopped_at: Option<SystemTime>,
    /// Present once `phase` is `Stopped`.
    pub stop: Option<StopInfo>,
}

/// The tag (and, on ECS, the `startedBy`) that names the session a worker belongs to.
pub const SESSION_TAG: &str = "starburst:session";

/// A worker of the platform's pool that is not stopped, whatever session started it
/// ([`Compute::list_live`]): for finding the workers of sessions that are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWorker {
    /// The worker.
    pub id: WorkerId,
    /// The session that started it, when the platform recorded one.
    pub session: Option<String>,
    /// When the platform accepted it (billing starts no earlier).
    pub created_at: Option<SystemTime>,
    /// Its size, when the platform says.
    pub size: Option<WorkerSize>,
    /// Its architecture.
    pub arch: Arch,
    /// On-demand or Spot.
    pub capacity: Capacity,
}

/// The result of a launch request: the workers that were started and why others were not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchReport {
    /// Ids of the workers that were accepted by the platform.
    pub launched: Vec<WorkerId>,
    /// One message per worker that could not be launched.
    pub failures: Vec<String>,
}

/// Starts and stops workers. A worker learns its own id from its environment (`STARBURST_WORKER_ID`)
/// or from the platform (the ECS task id).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Compute: Send + Sync + Debug + 'static {
    /// Launches `count` workers of `spec`. Partial success is not an error: see the report.
    async fn launch(&self, spec: &WorkerSpec, count: u32) -> Result<LaunchReport>;

    /// The status of each known worker in `ids`; unknown ids are left out.
    async fn describe(&self, ids: &[WorkerId]) -> Result<Vec<WorkerStatus>>;

    /// Stops the workers (idempotent); `reason` is recorded where the platform allows.
    async fn stop(&self, ids: &[WorkerId], reason: &str) -> Result<()>;

    /// Every worker of the pool (an ECS cluster) that is not stopped, of every session.
    /// Backends whose workers cannot outlive their client (local processes) need not list.
    async fn list_live(&self) -> Result<Vec<LiveWorker>> {
        Err(Error::Unsupported {
            op: "list live workers",
            backend: "this",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(vcpu: f64, gb: f64) -> WorkerSize {
        WorkerSize {
            millicpu: (vcpu * 1000.0) as u32,
            memory_mib: (gb * 1024.0) as u32,
        }
    }

    #[test]
    fn fargate_sizes() {
        for (c, m) in [
            (0.25, 0.5),
            (0.25, 2.0),
            (0.5, 4.0),
            (1.0, 2.0),
            (2.0, 16.0),
            (4.0, 30.0),
            (8.0, 60.0),
            (16.0, 120.0),
        ] {
            size(c, m)
                .validate_fargate()
                .unwrap_or_else(|e| panic!("{c}/{m}: {e}"));
        }
        let e = size(1.0, 1.0).validate_fargate().unwrap_err().to_string();
        assert!(
            e.contains("valid memory for 1 vCPU (GB): 2, 3, 4, 5, 6, 7, 8"),
            "{e}"
        );
        let e = size(3.0, 8.0).validate_fargate().unwrap_err().to_string();
        assert!(e.contains("0.25, 0.5, 1, 2, 4, 8, 16"), "{e}");
        assert!(size(8.0, 18.0).validate_fargate().is_err());
        assert!(size(16.0, 40.0).validate_fargate().is_ok());
    }
}
