//! starburst's quota arithmetic and decisions: given a vCPU quota, the vCPUs already in use and
//! a worker size, how many workers can run at once and in how many waves a number of tasks
//! runs ([`plan_waves`]); the status of the Fargate vCPU quotas with a stated fallback when
//! Service Quotas cannot answer ([`quota_status`]); the quota to ask for so that every
//! requested worker fits ([`suggest_quota`]); and the persisted history of increase requests
//! ([`RequestHistory`]). Quota look-ups and requests go through the `Quotas` port of
//! `starburst-cloud`; the only I/O here is the history file. Depends only on `starburst-cloud`.

#![deny(missing_docs)]

mod error;
mod history;
mod status;

pub use error::{Error, Result};
pub use history::{RequestHistory, is_open, refresh, request_increase};
pub use status::{
    KNOWN_QUOTAS, KnownQuota, QuotaStatus, fargate_quota_statuses, known_quota, quota_for,
    quota_status, quota_status_for,
};

use starburst_cloud::{Quota, WorkerSize};

/// Suggested quotas are rounded up to a multiple of this many vCPU: Service Quotas accepts
/// any value, but round numbers read better in a request and leave a little room.
pub const QUOTA_STEP: f64 = 10.0;

/// How a run fits into the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavePlan {
    /// Workers that can run at the same time: min(requested, free quota / vCPU per worker).
    pub concurrent: u32,
    /// Waves needed for `tasks` tasks with that many workers (0 for no tasks).
    pub waves: u64,
    /// True when the quota, not the requested worker count, is the limit.
    pub quota_bound: bool,
}

/// Plans `tasks` tasks on up to `workers` workers of `size` within `quota`, `usage` vCPUs of
/// which are already taken.
pub fn plan_waves(
    workers: u32,
    size: WorkerSize,
    quota: &Quota,
    usage: f64,
    tasks: u64,
) -> WavePlan {
    let free = (quota.effective() - usage).max(0.0);
    let vcpu = size.vcpu().max(f64::MIN_POSITIVE);
    // A small epsilon keeps 4.0 / 0.25 from rounding below 16.
    let fit = ((free / vcpu) + 1e-9).floor().min(f64::from(u32::MAX)) as u32;
    let concurrent = workers.min(fit);
    let waves = if tasks == 0 {
        0
    } else if concurrent == 0 {
        u64::MAX
    } else {
        tasks.div_ceil(u64::from(concurrent))
    };
    WavePlan {
        concurrent,
        waves,
        quota_bound: fit < workers,
    }
}

/// The quota value to ask for so that `workers` workers of `size` run at once besides the
/// `usage` vCPUs already in use: `usage + workers × vCPU`, rounded up to a multiple of
/// [`QUOTA_STEP`]. `None` when they already fit in `current` (the value in force).
pub fn suggest_quota(workers: u32, size: WorkerSize, usage: f64, current: f64) -> Option<f64> {
    let needed = usage.max(0.0) + f64::from(workers) * size.vcpu();
    // The same tolerance as `plan_waves`, so "fits" means the same in both.
    if needed <= current + 1e-9 * size.vcpu() {
        return None;
    }
    Some((needed / QUOTA_STEP).ceil() * QUOTA_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(v: f64) -> Quota {
        Quota {
            code: "L-3032A538".into(),
            applied: Some(v),
            default: 6.0,
        }
    }

    #[test]
    fn hand_computed() {
        let one = WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        };
        assert_eq!(
            plan_waves(100, one, &q(6.0), 0.0, 100),
            WavePlan {
                concurrent: 6,
                waves: 17,
                quota_bound: true
            }
        );
        assert_eq!(
            plan_waves(4, one, &q(6.0), 0.0, 10),
            WavePlan {
                concurrent: 4,
                waves: 3,
                quota_bound: false
            }
        );
        let quarter = WorkerSize {
            millicpu: 250,
            memory_mib: 512,
        };
        assert_eq!(plan_waves(100, quarter, &q(4.0), 0.0, 16).concurrent, 16);
        assert_eq!(plan_waves(10, one, &q(6.0), 6.0, 5).waves, u64::MAX);
    }

    #[test]
    fn suggestions_hand_computed() {
        let one = WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        };
        let quarter = WorkerSize {
            millicpu: 250,
            memory_mib: 512,
        };
        // 50 × 1 vCPU with 6 in force and none in use: 50 → 50.
        assert_eq!(suggest_quota(50, one, 0.0, 6.0), Some(50.0));
        // 50 × 1 vCPU with 3 in use: 53 → 60.
        assert_eq!(suggest_quota(50, one, 3.0, 6.0), Some(60.0));
        // 6 × 1 vCPU already fit in 6.
        assert_eq!(suggest_quota(6, one, 0.0, 6.0), None);
        // 100 × 0.25 vCPU: 25 → 30.
        assert_eq!(suggest_quota(100, quarter, 0.0, 6.0), Some(30.0));
        assert_eq!(suggest_quota(0, one, 0.0, 6.0), None);
    }

    proptest! {
        #[test]
        fn never_exceeds_quota_or_workers(workers in 1u32..1000, m in 1u32..64, quota in 0.0f64..5000.0, usage in 0.0f64..5000.0, tasks in 0u64..100_000) {
            let size = WorkerSize { millicpu: m * 250, memory_mib: 2048 };
            let p = plan_waves(workers, size, &q(quota), usage, tasks);
            prop_assert!(p.concurrent <= workers);
            prop_assert!(f64::from(p.concurrent) * size.vcpu() <= (quota - usage).max(0.0) + 1e-6);
            if p.concurrent > 0 {
                prop_assert!(p.waves * u64::from(p.concurrent) >= tasks);
                prop_assert!(tasks == 0 || (p.waves - 1) * u64::from(p.concurrent) < tasks);
            } else {
                prop_assert!(tasks == 0 || p.waves == u64::MAX);
            }
            prop_assert_eq!(p.quota_bound, p.concurrent < workers);
        }

        #[test]
        fn suggested_quotas_fit_every_worker(workers in 0u32..10_000, m in 0usize..7, usage_quarters in 0u32..40_000, current in 0.0f64..10_000.0, tasks in 0u64..1_000_000) {
            let millicpu = [250, 500, 1000, 2000, 4000, 8000, 16000][m];
            let size = WorkerSize { millicpu, memory_mib: 2 * millicpu };
            // Usage is a sum of Fargate task sizes: a multiple of 0.25 vCPU.
            let usage = f64::from(usage_quarters) / 4.0;
            match suggest_quota(workers, size, usage, current) {
                None => {
                    let p = plan_waves(workers, size, &q(current), usage, tasks);
                    prop_assert_eq!(p.concurrent, workers);
                }
                Some(s) => {
                    prop_assert!(s > current);
                    prop_assert_eq!(s % QUOTA_STEP, 0.0);
                    prop_assert!(s - QUOTA_STEP < usage + f64::from(workers) * size.vcpu());
                    let p = plan_waves(workers, size, &q(s), usage, tasks);
                    prop_assert_eq!(p.concurrent, workers);
                    prop_assert!(!p.quota_bound);
                    prop_assert!(p.waves.saturating_mul(u64::from(workers.max(1))) >= tasks);
                }
            }
        }
    }
}
