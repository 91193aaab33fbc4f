//! Session configuration, as the R package passes it (JSON) or a Rust caller builds it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starburst_cloud::{Arch, Capacity, WorkerSize};

use crate::{Error, Result};

/// Where workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Local `starburst-worker` processes and a directory store.
    Local,
    /// ECS Fargate and S3.
    Aws,
}

fn default_workers() -> u32 {
    2
}
fn default_millicpu() -> u32 {
    1000
}
fn default_memory() -> u32 {
    2048
}
fn default_idle() -> f64 {
    600.0
}
fn default_orphan() -> f64 {
    300.0
}
fn default_failure() -> f64 {
    180.0
}

/// The time settings users give in seconds, with their bounds: the one home of these rules
/// (the R package asks [`check_seconds`] through its binding). (name, lowest, highest, what).
pub const SECONDS: &[(&str, f64, f64, &str)] = &[
    (
        "idle_timeout",
        1.0,
        86_400.0,
        "seconds a worker waits for work before it stops",
    ),
    (
        "orphan_timeout",
        5.0,
        3_600.0,
        "seconds a worker goes on without hearing from its R session before it stops",
    ),
    (
        "collect_interval",
        0.001,
        60.0,
        "seconds value() waits for the engine between checks for interrupts",
    ),
    ("startup", 0.0, 86_400.0, "seconds a worker takes to start"),
    (
        "failure_timeout",
        10.0,
        3_600.0,
        "seconds a kind of AWS request may keep failing before the futures waiting on it fail",
    ),
    ("timeout", 0.0, 86_400.0, "seconds to wait"),
];

/// Checks a time setting `name` given in seconds against its bounds in [`SECONDS`]; the error
/// names the range and what the setting means. Never panics, whatever the number (NaN,
/// infinite, 1e300).
pub fn check_seconds(name: &str, value: f64) -> Result<Duration> {
    let Some(&(_, lo, hi, what)) = SECONDS.iter().find(|(n, ..)| *n == name) else {
        return Err(Error::InvalidConfig(format!(
            "{name} is not a time setting"
        )));
    };
    if value.is_finite() && value >= lo && value <= hi {
        Duration::try_from_secs_f64(value).map_err(|e| Error::InvalidConfig(format!("{name}: {e}")))
    } else {
        Err(Error::InvalidConfig(format!(
            "{name} must be from {lo} to {hi} ({what}), not {value}"
        )))
    }
}
fn default_retries() -> u32 {
    2
}
fn default_rscript() -> PathBuf {
    PathBuf::from("Rscript")
}

fn default_prefix() -> String {
    "starburst".into()
}
fn default_true() -> bool {
    true
}

/// Where the aws backend's resources are: what `starburst_setup()` (or `cargo xtask emulator`)
/// wrote to the set-up file. Unknown fields are ignored, so a set-up file written by a newer
/// version still loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// An endpoint for every service (an emulator); `None` for AWS itself.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The S3 bucket for session data.
    pub bucket: String,
    /// The key prefix in the bucket.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The ECS cluster.
    pub cluster: String,
    /// Subnets workers are placed in.
    pub subnets: Vec<String>,
    /// Security groups of the workers (egress only).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Give workers a public IP (needed in public subnets without a NAT gateway).
    #[serde(default = "default_true")]
    pub assign_public_ip: bool,
    /// CloudWatch log group of the workers' logs.
    #[serde(default)]
    pub log_group: Option<String>,
    /// The worker image; empty until an environment image was built for this set-up.
    #[serde(default)]
    pub image: String,
    /// The image repository URI environment images are pushed to.
    #[serde(default)]
    pub repository: Option<String>,
    /// The set-up id (the `starburst:setup` tag of its resources).
    #[serde(default)]
    pub setup_id: Option<String>,
    /// The role the workers run as (access to the bucket's prefix only).
    #[serde(default)]
    pub task_role_arn: Option<String>,
    /// The role ECS uses to pull the image and write logs.
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    /// Sync mode: the environment workers restore before R starts (the image is then the
    /// runtime). `None`: the image holds everything (image mode, or an image managed outside
    /// starburst).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<SyncEnvironment>,
    /// The CodeBuild project that builds images in the account (`starburst_setup(cloud_builder
    /// = TRUE)`), for machines without a container engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_project: Option<String>,
}

/// An environment workers restore themselves (sync mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEnvironment {
    /// The environment's tag (content hash): its library archive's key.
    pub tag: String,
    /// The manifest to restore (JSON text, see `starburst_provision::image::manifest`).
    pub manifest: String,
}

impl AwsSettings {
    fn validate(&self) -> Result<()> {
        let missing: Vec<&str> = [
            ("region", self.region.is_empty()),
            ("bucket", self.bucket.is_empty()),
            ("cluster", self.cluster.is_empty()),
            ("subnets", self.subnets.iter().all(String::is_empty)),
            ("image", self.image.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, empty)| empty.then_some(name))
        .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!(
                "the AWS set-up lacks {}; run starburst_setup() again",
                missing.join(", ")
            )))
        }
    }

    /// The worker's `STARBURST_STORE` value: `s3://bucket/prefix`.
    pub fn store_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_matches('/'))
    }
}

/// A session's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backend.
    pub backend: Backend,
    /// Worker limit.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Thousandths of a vCPU per worker.
    #[serde(default = "default_millicpu")]
    pub millicpu: u32,
    /// Memory per worker, MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// Architecture (aws).
    #[serde(default)]
    pub arch: Arch,
    /// On-demand or Spot (aws).
    #[serde(default)]
    pub capacity: Capacity,
    /// Local backend: the directory holding session data; a temporary one when empty.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `Rscript` used by workers.
    #[serde(default = "default_rscript")]
    pub rscript: PathBuf,
    /// The `starburst-worker` binary (local backend).
    #[serde(default)]
    pub worker_bin: Option<PathBuf>,
    /// R library paths the workers' R uses.
    #[serde(default)]
    pub lib_paths: Vec<PathBuf>,
    /// Workers exit after this many idle seconds.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: f64,
    /// Workers exit when they have not heard from this session's client for this many seconds
    /// (the R session was killed, crashed, or its machine slept or went offline).
    #[serde(default = "default_orphan")]
    pub orphan_timeout_secs: f64,
    /// Futures waiting on a kind of request (the store, launches, watching workers) that keeps
    /// failing for this many seconds fail with a classed error; failures waiting cannot fix
    /// (access denied, no credentials) fail them at once.
    #[serde(default = "default_failure")]
    pub failure_timeout_secs: f64,
    /// Re-runs of a task whose worker was lost.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Extra environment for workers.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The AWS set-up (required by the aws backend).
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// USD per session, a hard cap (see [`starburst_scheduler::BudgetConfig`]); `None` for no
    /// cap. Enforced by both backends: a local session is capped on what it would have cost
    /// on Fargate.
    #[serde(default)]
    pub max_cost: Option<f64>,
    /// USD per hour summed over the session's workers, a hard cap; `None` for no cap.
    #[serde(default)]
    pub max_hourly_cost: Option<f64>,
    /// The region whose Fargate prices the cost meter and caps use; by default the AWS
    /// set-up's region (aws backend) or `us-east-1` (local backend).
    #[serde(default)]
    pub region: Option<String>,
    /// A user price catalog (JSON in the format of starburst-cost's `data/fargate-prices.json`,
    /// any subset of regions and architectures) laid over the built-in one.
    #[serde(default)]
    pub price_catalog: Option<String>,
}

impl Config {
    /// Parses the JSON the R package sends.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: Self =
            serde_json::from_str(json).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// A local configuration with defaults.
    pub fn local(workers: u32) -> Self {
        Self {
            backend: Backend::Local,
            workers,
            millicpu: default_millicpu(),
            memory_mib: default_memory(),
            arch: Arch::default(),
            capacity: Capacity::default(),
            root: None,
            rscript: default_rscript(),
            worker_bin: None,
            lib_paths: Vec::new(),
            idle_timeout_secs: default_idle(),
            orphan_timeout_secs: default_orphan(),
            failure_timeout_secs: default_failure(),
            max_retries: default_retries(),
            env: BTreeMap::new(),
            aws: None,
            max_cost: None,
            max_hourly_cost: None,
            region: None,
            price_catalog: None,
        }
    }

    /// Checks ranges; for the aws backend also the Fargate size.
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 || self.workers > 10_000 {
            return Err(Error::InvalidConfig(format!(
                "workers must be between 1 and 10000, not {}",
                self.workers
            )));
        }
        check_seconds("idle_timeout", self.idle_timeout_secs)?;
        check_seconds("orphan_timeout", self.orphan_timeout_secs)?;
        check_seconds("failure_timeout", self.failure_timeout_secs)?;
        for (name, cap) in [
            ("max_cost", self.max_cost),
            ("max_hourly_cost", self.max_hourly_cost),
        ] {
            if let Some(v) = cap
                && !(v.is_finite() && v > 0.0)
            {
                return Err(Error::InvalidConfig(format!(
                    "{name} is {v}; give a positive number of USD, or leave it out for no cap"
                )));
            }
        }
        self.catalog()?;
        if self.backend == Backend::Aws {
            self.size().validate_fargate().map_err(|e| match e {
                starburst_cloud::Error::InvalidInput { message, .. } => {
                    Error::InvalidConfig(message)
                }
                e => Error::Cloud(e),
            })?;
            match &self.aws {
                Some(aws) => aws.validate()?,
                None => {
                    return Err(Error::BackendUnavailable(
                        "no AWS set-up was found: run starburst_setup() first, or use backend = \"local\"".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The worker size.
    pub fn size(&self) -> WorkerSize {
        WorkerSize {
            millicpu: self.millicpu,
            memory_mib: self.memory_mib,
        }
    }

    /// The price catalog: the built-in one with [`Config::price_catalog`] laid over it.
    pub fn catalog(&self) -> Result<starburst_scheduler::Catalog> {
        let catalog = match &self.price_catalog {
            Some(json) => starburst_scheduler::Catalog::builtin_with(json),
            None => Ok(starburst_scheduler::Catalog::builtin()),
        };
        catalog.map_err(|e| Error::InvalidConfig(format!("price_catalog: {e}")))
    }

    /// The region whose prices apply: [`Config::region`], else the AWS set-up's region for the
    /// aws backend, else `us-east-1`.
    pub fn price_region(&self) -> String {
        match (&self.region, &self.aws, self.backend) {
            (Some(r), _, _) => r.clone(),
            (None, Some(aws), Backend::Aws) => aws.region.clone(),
            _ => "us-east-1".into(),
        }
    }

    /// The idle timeout (validated: see [`check_seconds`]).
    pub fn idle_timeout(&self) -> Duration {
        check_seconds("idle_timeout", self.idle_timeout_secs).unwrap_or(Duration::from_secs(600))
    }

    /// The orphan timeout (validated: see [`check_seconds`]).
    pub fn orphan_timeout(&self) -> Duration {
        check_seconds("orphan_timeout", self.orphan_timeout_secs)
            .unwrap_or(Duration::from_secs(300))
    }

    /// The failure bound (validated: see [`check_seconds`]).
    pub fn failure_timeout(&self) -> Duration {
        check_seconds("failure_timeout", self.failure_timeout_secs)
            .unwrap_or(Duration::from_secs(180))
    }

    /// How often the client rewrites its session heartbeat and workers read it: a fifth of the
    /// orphan timeout, from 1 to 30 seconds (a worker notices a dead client within the orphan
    /// timeout plus one of these).
    pub fn client_beat(&self) -> Duration {
        client_beat_for(self.orphan_timeout())
    }
}

/// The session heartbeat's period for an orphan timeout (see [`Config::client_beat`]).
pub fn client_beat_for(orphan_timeout: Duration) -> Duration {
    (orphan_timeout / 5).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

impl Config {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_r_package_json_is_understood() {
        let c = Config::from_json(
            r#"{"backend":"local","workers":3,"millicpu":500,"memory_mib":1024,"arch":"arm64",
                "capacity":"spot","root":"/tmp/x","rscript":"/usr/bin/Rscript","worker_bin":"/bin/w",
                "lib_paths":["/a","/b"],"idle_timeout_secs":60,"max_retries":1,"env":{"A":"1"}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.workers, c.arch, c.capacity),
            (3, Arch::Arm64, Capacity::Spot)
        );
        assert_eq!(c.env["A"], "1");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let e = Config::from_json(r#"{"backend":"local","workers":0}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("workers must be between 1 and 10000"),
            "{e}"
        );
        let e = Config::from_json(r#"{"backend":"local","colour":"red"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = Config::from_json(r#"{"backend":"aws","millicpu":1000,"memory_mib":1024}"#)
            .unwrap_err();
        assert!(e.to_string().contains("valid memory for 1 vCPU"), "{e}");
        assert_eq!(e.class(), "starburst_invalid_argument");
        let e = Config::from_json(r#"{"backend":"aws"}"#).unwrap_err();
        assert!(e.to_string().contains("starburst_setup()"), "{e}");
        assert_eq!(e.class(), "starburst_backend_unavailable");
        let e = Config::from_json(
            r#"{"backend":"aws","aws":{"region":"us-east-1","bucket":"","cluster":"c","subnets":[],"image":"i"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks bucket, subnets"), "{e}");
    }

    #[test]
    fn time_settings_are_bounded_and_never_panic() {
        for bad in [0.0, -1.0, 1e10, 1e20, 1e300, f64::NAN, f64::INFINITY] {
            let e = check_seconds("idle_timeout", bad).unwrap_err().to_string();
            assert!(e.contains("idle_timeout must be from 1 to 86400"), "{e}");
        }
        for bad in [1.0, 4.9, 3601.0, 1e20] {
            let e = check_seconds("orphan_timeout", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("orphan_timeout must be from 5 to 3600"), "{e}");
        }
        assert!(check_seconds("collect_interval", 1e20).is_err());
        assert!(check_seconds("startup", 1e300).is_err());
        assert_eq!(check_seconds("startup", 0.0).unwrap(), Duration::ZERO);
        assert_eq!(
            check_seconds("orphan_timeout", 300.0).unwrap(),
            Duration::from_secs(300)
        );
        assert!(check_seconds("colour", 1.0).is_err());
        let e = Config::from_json(r#"{"backend":"local","idle_timeout_secs":1e20}"#).unwrap_err();
        assert_eq!(e.class(), "starburst_invalid_argument");
        let e = Config::from_json(r#"{"backend":"local","orphan_timeout_secs":2}"#).unwrap_err();
        assert!(e.to_string().contains("orphan_timeout"), "{e}");
        assert_eq!(Config::local(1).client_beat(), Duration::from_secs(30));
        assert_eq!(
            client_beat_for(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            client_beat_for(Duration::from_secs(60)),
            Duration::from_secs(12)
        );
    }

    #[test]
    fn budget_caps_and_prices_are_understood() {
        let c = Config::from_json(
            r#"{"backend":"local","max_cost":2.5,"max_hourly_cost":1,"region":"eu-west-1"}"#,
        )
        .unwrap();
        assert_eq!((c.max_cost, c.max_hourly_cost), (Some(2.5), Some(1.0)));
        assert_eq!(c.price_region(), "eu-west-1");
        assert_eq!(Config::local(1).price_region(), "us-east-1");
        let aws = Config::from_json(
            r#"{"backend":"aws","aws":{"region":"eu-central-1","bucket":"b","cluster":"c","subnets":["s"],"image":"i"}}"#,
        )
        .unwrap();
        assert_eq!(aws.price_region(), "eu-central-1");
        let user = Config::from_json(
            r#"{"backend":"local","region":"xx-1","price_catalog":"{\"regions\":{\"xx-1\":{\"x86_64\":{\"vcpu_hour\":1,\"gb_hour\":0,\"spot_factor\":1}}}}"}"#,
        )
        .unwrap();
        assert!(user.catalog().unwrap().prices("xx-1", Arch::X86_64).is_ok());

        let e = Config::from_json(r#"{"backend":"local","max_cost":0}"#).unwrap_err();
        assert!(e.to_string().contains("max_cost is 0"), "{e}");
        assert_eq!(e.class(), "starburst_invalid_argument");
        let e = Config::from_json(r#"{"backend":"local","max_hourly_cost":-1}"#).unwrap_err();
        assert!(e.to_string().contains("max_hourly_cost is -1"), "{e}");
        let e = Config::from_json(r#"{"backend":"local","price_catalog":"{}"}"#).unwrap_err();
        assert!(e.to_string().contains("price_catalog"), "{e}");
    }

    #[test]
    fn an_aws_set_up_loads_with_defaults_and_ignores_newer_fields() {
        let c = Config::from_json(
            r#"{"backend":"aws","aws":{"region":"us-east-1","endpoint_url":"http://127.0.0.1:1",
                "bucket":"b","cluster":"c","subnets":["s"],"security_groups":["g"],
                "log_group":"/starburst/workers","image":"img:1","setup_id":"from-a-newer-version"}}"#,
        )
        .unwrap();
        let aws = c.aws.unwrap();
        assert_eq!(aws.prefix, "starburst");
        assert!(aws.assign_public_ip);
        assert_eq!(aws.store_url(), "s3://b/starburst");
    }
}
