//! Quota status: the applied value, the default, the current usage and the headroom of a vCPU
//! quota, read through the `Quotas` port with a documented fallback when it cannot answer.

use starburst_cloud::{
    Capacity, FARGATE_ON_DEMAND_VCPU, FARGATE_SPOT_VCPU, Quota, Quotas, WorkerSize,
};

use crate::{Error, Result, WavePlan, plan_waves, suggest_quota};

/// A quota starburst knows: its code, name and AWS default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownQuota {
    /// The quota code.
    pub code: &'static str,
    /// The name Service Quotas shows.
    pub name: &'static str,
    /// AWS's default value for new accounts, vCPU.
    pub default: f64,
}

/// The Fargate vCPU quotas (service `fargate`): On-Demand and Spot, both 6 vCPU by default.
pub const KNOWN_QUOTAS: [KnownQuota; 2] = [
    KnownQuota {
        code: FARGATE_ON_DEMAND_VCPU,
        name: "Fargate On-Demand vCPU resource count",
        default: 6.0,
    },
    KnownQuota {
        code: FARGATE_SPOT_VCPU,
        name: "Fargate Spot vCPU resource count",
        default: 6.0,
    },
];

/// The known quota `code`, if starburst knows it.
pub fn known_quota(code: &str) -> Option<KnownQuota> {
    KNOWN_QUOTAS.iter().copied().find(|k| k.code == code)
}

/// The vCPU quota workers bought as `capacity` count against.
pub fn quota_for(capacity: Capacity) -> KnownQuota {
    match capacity {
        Capacity::OnDemand => KNOWN_QUOTAS[0],
        Capacity::Spot => KNOWN_QUOTAS[1],
    }
}

/// What is known about one vCPU quota now.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaStatus {
    /// The quota code.
    pub code: String,
    /// Its name (the code itself for a quota starburst does not know).
    pub name: String,
    /// The value applied to the account, when Service Quotas told it.
    pub applied: Option<f64>,
    /// The default value.
    pub default: f64,
    /// vCPUs in use by running tasks (0 when they could not be counted; see the warning).
    pub usage: f64,
    /// vCPUs free: max(0, effective value − usage).
    pub headroom: f64,
    /// Set when a value is a fallback rather than the service's answer: names what could not
    /// be read, the error, and the value used instead.
    pub fallback_warning: Option<String>,
}

impl QuotaStatus {
    /// The value in force: the applied value, else the default.
    pub fn effective(&self) -> f64 {
        self.applied.unwrap_or(self.default)
    }

    /// The status as a port `Quota`.
    pub fn quota(&self) -> Quota {
        Quota {
            code: self.code.clone(),
            applied: self.applied,
            default: self.default,
        }
    }

    /// How `tasks` tasks on up to `workers` workers of `size` fit in this quota now.
    pub fn plan(&self, workers: u32, size: WorkerSize, tasks: u64) -> WavePlan {
        plan_waves(workers, size, &self.quota(), self.usage, tasks)
    }

    /// The quota value to ask for so that `workers` workers of `size` fit at once besides the
    /// current usage, or `None` when they already fit (see [`suggest_quota`]).
    pub fn suggest(&self, workers: u32, size: WorkerSize) -> Option<f64> {
        suggest_quota(workers, size, self.usage, self.effective())
    }
}

/// The status of the quota `code`.
///
/// Fallbacks, each stated in `fallback_warning`, never silent:
/// * the quota cannot be read: the known default ([`KNOWN_QUOTAS`]) with no applied value; for
///   a code starburst does not know this is an [`Error::Lookup`], as there is no default to
///   fall back to;
/// * the service reads the quota but not its applied value: the default;
/// * the usage cannot be counted: 0 vCPU in use, so the plan may be optimistic.
pub async fn quota_status(quotas: &dyn Quotas, code: &str) -> Result<QuotaStatus> {
    let known = known_quota(code);
    let name = known.map_or_else(|| code.to_string(), |k| k.name.to_string());
    let mut warnings = Vec::new();
    let (applied, default) = match quotas.quota(code).await {
        Ok(q) => {
            if q.applied.is_none() {
                warnings.push(format!(
                    "Service Quotas did not report the applied value of {name} ({code}); using the default of {} vCPU",
                    q.default
                ));
            }
            (q.applied, q.default)
        }
        Err(source) => {
            let Some(k) = known else {
                return Err(Error::Lookup {
                    code: code.to_string(),
                    source,
                });
            };
            warnings.push(format!(
                "could not read {name} ({code}) from Service Quotas ({source}); using the default of {} vCPU, the account's real quota may be higher",
                k.default
            ));
            (None, k.default)
        }
    };
    let usage = match quotas.usage(code).await {
        Ok(u) if u.is_finite() && u >= 0.0 => u,
        Ok(u) => {
            warnings.push(format!(
                "the vCPU usage reported for {name} ({code}) is {u}; assuming none in use, so fewer workers may start than planned"
            ));
            0.0
        }
        Err(source) => {
            warnings.push(format!(
                "could not count the vCPUs in use for {name} ({code}) ({source}); assuming none in use, so fewer workers may start than planned"
            ));
            0.0
        }
    };
    let effective = applied.unwrap_or(default);
    Ok(QuotaStatus {
        code: code.to_string(),
        name,
        applied,
        default,
        usage,
        headroom: (effective - usage).max(0.0),
        fallback_warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    })
}

/// The status of the vCPU quota for `capacity`; never fails (the known default is the
/// fallback).
pub async fn quota_status_for(quotas: &dyn Quotas, capacity: Capacity) -> QuotaStatus {
    let k = quota_for(capacity);
    match quota_status(quotas, k.code).await {
        Ok(s) => s,
        // Unreachable for a known code, which always falls back; kept total all the same.
        Err(e) => QuotaStatus {
            code: k.code.to_string(),
            name: k.name.to_string(),
            applied: None,
            default: k.default,
            usage: 0.0,
            headroom: k.default,
            fallback_warning: Some(format!("{e}; using the default of {} vCPU", k.default)),
        },
    }
}

/// The status of both Fargate vCPU quotas (On-Demand, then Spot).
pub async fn fargate_quota_statuses(quotas: &dyn Quotas) -> Vec<QuotaStatus> {
    vec![
        quota_status_for(quotas, Capacity::OnDemand).await,
        quota_status_for(quotas, Capacity::Spot).await,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockall::predicate::eq;
    use starburst_cloud::Error as PortError;
    use starburst_cloud::fake::FakeQuotas;
    use starburst_cloud::mocks::MockQuotas;

    const ONE: WorkerSize = WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    };

    #[tokio::test]
    async fn applied_value_usage_and_headroom() {
        let fake = FakeQuotas::new();
        fake.set(FARGATE_ON_DEMAND_VCPU, 6.0, Some(100.0), 24.0);
        let s = quota_status(&fake, FARGATE_ON_DEMAND_VCPU).await.unwrap();
        assert_eq!(s.name, "Fargate On-Demand vCPU resource count");
        assert_eq!(
            (s.applied, s.default, s.usage, s.headroom),
            (Some(100.0), 6.0, 24.0, 76.0)
        );
        assert_eq!(s.fallback_warning, None);
        let plan = s.plan(100, ONE, 1000);
        assert_eq!(
            (plan.concurrent, plan.waves, plan.quota_bound),
            (76, 14, true)
        );
        assert_eq!(s.suggest(100, ONE), Some(130.0));
        assert_eq!(s.suggest(70, ONE), None);
    }

    #[tokio::test]
    async fn lookup_failure_falls_back_to_the_default_with_a_warning() {
        let mut mock = MockQuotas::new();
        mock.expect_quota()
            .with(eq(FARGATE_SPOT_VCPU))
            .returning(|code| {
                Err(PortError::AccessDenied {
                    op: "get service quota",
                    resource: code.to_string(),
                    message: "not authorized to perform servicequotas:GetServiceQuota".into(),
                })
            });
        mock.expect_usage().returning(|_| Ok(2.0));
        let s = quota_status_for(&mock, Capacity::Spot).await;
        assert_eq!(
            (s.applied, s.default, s.usage, s.headroom),
            (None, 6.0, 2.0, 4.0)
        );
        let w = s.fallback_warning.unwrap();
        assert!(
            w.contains("Fargate Spot vCPU resource count (L-36FBB829)"),
            "{w}"
        );
        assert!(w.contains("servicequotas:GetServiceQuota"), "{w}");
        assert!(w.contains("using the default of 6 vCPU"), "{w}");
    }

    #[tokio::test]
    async fn missing_applied_value_and_usage_are_warned_about() {
        let mut mock = MockQuotas::new();
        mock.expect_quota().returning(|code| {
            Ok(Quota {
                code: code.to_string(),
                applied: None,
                default: 6.0,
            })
        });
        mock.expect_usage().returning(|code| {
            Err(PortError::Throttled {
                op: "list tasks",
                resource: code.to_string(),
                retry_after: None,
            })
        });
        let s = quota_status(&mock, FARGATE_ON_DEMAND_VCPU).await.unwrap();
        assert_eq!((s.effective(), s.usage, s.headroom), (6.0, 0.0, 6.0));
        let w = s.fallback_warning.unwrap();
        assert!(w.contains("did not report the applied value"), "{w}");
        assert!(
            w.contains("throttled") && w.contains("assuming none in use"),
            "{w}"
        );
    }

    #[tokio::test]
    async fn unknown_codes_without_an_answer_are_errors() {
        let fake = FakeQuotas::new();
        let e = quota_status(&fake, "L-00000000")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("L-00000000") && e.contains("knows no default"),
            "{e}"
        );
        fake.set("L-00000000", 1.0, Some(3.0), 0.0);
        let s = quota_status(&fake, "L-00000000").await.unwrap();
        assert_eq!((s.name.as_str(), s.headroom), ("L-00000000", 3.0));
        // Both Fargate quotas fall back when the fake knows neither.
        let all = fargate_quota_statuses(&fake).await;
        assert_eq!(all.len(), 2);
        assert!(
            all.iter()
                .all(|s| s.fallback_warning.is_some() && s.effective() == 6.0)
        );
    }
}
