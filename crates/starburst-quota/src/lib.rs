//! starburst's quota arithmetic: given a vCPU quota, the vCPUs already in use and a worker
//! size, how many workers can run at once and in how many waves a number of tasks runs. Quota
//! look-ups and increase requests go through the `Quotas` port of `starburst-cloud`; this crate
//! holds the decisions, not the I/O. It depends only on `starburst-cloud`.

#![deny(missing_docs)]

use starburst_cloud::{Quota, WorkerSize};

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
            }
        }
    }
}
