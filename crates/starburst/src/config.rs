//! Session configuration, as the R package passes it (JSON) or a Rust caller builds it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
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
fn default_retries() -> u32 {
    2
}
fn default_rscript() -> PathBuf {
    PathBuf::from("Rscript")
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
    /// Re-runs of a task whose worker was lost.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Extra environment for workers.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
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
            max_retries: default_retries(),
            env: BTreeMap::new(),
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
        if !(self.idle_timeout_secs.is_finite() && self.idle_timeout_secs > 0.0) {
            return Err(Error::InvalidConfig(
                "idle_timeout must be a positive number of seconds".into(),
            ));
        }
        if self.backend == Backend::Aws {
            self.size().validate_fargate().map_err(|e| match e {
                starburst_cloud::Error::InvalidInput { message, .. } => {
                    Error::InvalidConfig(message)
                }
                e => Error::Cloud(e),
            })?;
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

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs)
    }
}

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
    }
}
