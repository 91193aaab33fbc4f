//! Account administration outside sessions: the one-time set-up, its teardown, and the set-up
//! file it writes. Every call blocks the caller's thread on a small runtime, so progress
//! callbacks run on the caller's thread (R's, for the R package).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use starburst_aws::{Aws, AwsOptions, AwsProvisioner, EcrRegistry, ServiceQuotas};
use starburst_cloud::{Provisioner, QuotaRequest, Quotas, Registry, Resource};
use starburst_provision::image::ProgressSink;
use starburst_provision::setup::{self, Applied, SetupOptions, SetupPlan, SetupResult};
use starburst_provision::{DockerBuilder, EnsuredImage, EnvironmentSpec};
use starburst_quota::{QuotaStatus, RequestHistory};

use crate::{AwsSettings, Error, Result};

/// Where administration acts: the standard AWS chain decides what is not given.
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    /// The region; `None` = `AWS_REGION` / the profile's.
    pub region: Option<String>,
    /// An endpoint for every service (an emulator); `None` = `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint_url: Option<String>,
}

/// A connection for set-up, teardown and environment images.
#[derive(Debug)]
pub struct Admin {
    provisioner: Arc<dyn Provisioner>,
    registry: Arc<dyn Registry>,
    quotas: Arc<dyn Quotas>,
    endpoint_url: Option<String>,
    runtime: tokio::runtime::Runtime,
}

/// The docker CLI environment images are built with: `STARBURST_DOCKER`, else `docker`.
pub const DOCKER_ENV: &str = "STARBURST_DOCKER";

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One worker thread: image builds run there while the caller's thread shows progress.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("starburst-admin")
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "start the set-up runtime".into(),
            source,
        })
}

impl Admin {
    /// Connects to AWS (or the emulator) with the standard credential chain.
    pub fn connect(target: &AwsTarget) -> Result<Self> {
        let runtime = runtime()?;
        let mut options = AwsOptions::default();
        if let Some(region) = &target.region {
            options = options.with_region(region);
        }
        if target.endpoint_url.is_some() {
            options.endpoint_url = target.endpoint_url.clone();
        }
        let aws = runtime.block_on(Aws::connect(options));
        if aws.region().is_none() {
            return Err(Error::InvalidConfig(
                "no AWS region: pass region = (e.g. \"us-east-1\"), or set AWS_REGION or a \
                 profile's region"
                    .into(),
            ));
        }
        let endpoint_url = aws.endpoint_url().map(str::to_string);
        Ok(Self {
            provisioner: Arc::new(AwsProvisioner::new(&aws)),
            registry: Arc::new(EcrRegistry::new(&aws)),
            quotas: Arc::new(ServiceQuotas::new(&aws)),
            endpoint_url,
            runtime,
        })
    }

    /// Administration through any ports (tests use the in-memory ones).
    pub fn with_ports(
        provisioner: Arc<dyn Provisioner>,
        registry: Arc<dyn Registry>,
        quotas: Arc<dyn Quotas>,
    ) -> Result<Self> {
        Ok(Self {
            provisioner,
            registry,
            quotas,
            endpoint_url: None,
            runtime: runtime()?,
        })
    }

    /// What set-up will create for `options`, and what of it exists already.
    pub fn plan(&self, options: &SetupOptions) -> Result<SetupPlan> {
        Ok(self
            .runtime
            .block_on(setup::plan(self.provisioner.as_ref(), options))?)
    }

    /// Creates what `plan` lists (idempotent, resumable); `progress` sees every step.
    pub fn apply(
        &self,
        plan: &SetupPlan,
        progress: &mut dyn FnMut(&Applied),
    ) -> Result<SetupResult> {
        Ok(self
            .runtime
            .block_on(setup::apply(self.provisioner.as_ref(), plan, progress))?)
    }

    /// What teardown of `setup_id` would delete, in order.
    pub fn teardown_plan(&self, setup_id: &str) -> Result<Vec<Resource>> {
        Ok(self
            .runtime
            .block_on(setup::teardown_plan(self.provisioner.as_ref(), setup_id))?)
    }

    /// Deletes `resources`; `progress` sees each deleted one.
    pub fn teardown(
        &self,
        resources: &[Resource],
        progress: &mut dyn FnMut(&Resource),
    ) -> Result<()> {
        Ok(self.runtime.block_on(setup::teardown(
            self.provisioner.as_ref(),
            resources,
            progress,
        ))?)
    }

    /// The set-up file's contents for `result`: what sessions need to reach the resources.
    pub fn settings(&self, result: &SetupResult, assign_public_ip: bool) -> AwsSettings {
        let plan = &result.plan;
        AwsSettings {
            region: plan.account.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            bucket: plan.bucket.clone(),
            prefix: plan.prefix().to_string(),
            cluster: plan.cluster.clone(),
            subnets: result.network.subnets.clone(),
            security_groups: result.network.security_groups.clone(),
            assign_public_ip,
            log_group: Some(plan.log_group.clone()),
            image: String::new(),
            repository: Some(result.repository_uri()),
            setup_id: Some(plan.setup_id.clone()),
            task_role_arn: Some(result.task_role_arn.clone()),
            execution_role_arn: Some(result.execution_role_arn.clone()),
        }
    }

    /// Makes sure the image of `spec` is in `repository_uri`: reused when its tag exists
    /// (unless `force`), else built with `docker buildx` ([`DOCKER_ENV`] names another CLI)
    /// in a context under `workdir` and pushed. The build runs on the admin runtime while
    /// this thread hands each progress line to `progress`.
    pub fn ensure_image(
        &self,
        spec: &EnvironmentSpec,
        repository_uri: &str,
        workdir: &Path,
        force: bool,
        progress: &mut dyn FnMut(&str),
    ) -> Result<EnsuredImage> {
        let (tx, rx) = mpsc::channel::<String>();
        let tx = Mutex::new(tx);
        let sink: ProgressSink = Arc::new(move |line: &str| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(line.to_string());
            }
        });
        let mut builder = DockerBuilder::default().with_progress(sink.clone());
        if let Some(program) = std::env::var_os(DOCKER_ENV).filter(|p| !p.is_empty()) {
            builder = builder.with_program(program.to_string_lossy());
        }
        let (spec, repository, workdir): (EnvironmentSpec, String, PathBuf) = (
            spec.clone(),
            repository_uri.to_string(),
            workdir.to_path_buf(),
        );
        let registry = self.registry.clone();
        let task = self.runtime.spawn(async move {
            starburst_provision::ensure_image(
                &spec,
                registry.as_ref(),
                &builder,
                &repository,
                &workdir,
                force,
                &*sink,
            )
            .await
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => progress(&line),
                Err(mpsc::RecvTimeoutError::Timeout) if !task.is_finished() => {}
                Err(_) => break,
            }
        }
        while let Ok(line) = rx.try_recv() {
            progress(&line);
        }
        let outcome = self.runtime.block_on(task).map_err(|e| Error::Io {
            what: "build the environment image".into(),
            source: std::io::Error::other(e),
        })?;
        Ok(outcome?)
    }

    /// The Fargate On-Demand and Spot vCPU quotas: applied value, default, usage, headroom.
    /// Never fails: what Service Quotas cannot answer falls back to the default, with the
    /// reason in `fallback_warning`.
    pub fn quota_statuses(&self) -> Vec<QuotaStatus> {
        self.runtime
            .block_on(starburst_quota::fargate_quota_statuses(
                self.quotas.as_ref(),
            ))
    }

    /// The status of the vCPU quota `capacity` draws on.
    pub fn quota_status(&self, capacity: starburst_cloud::Capacity) -> QuotaStatus {
        self.runtime.block_on(starburst_quota::quota_status_for(
            self.quotas.as_ref(),
            capacity,
        ))
    }

    /// Asks for quota `code` to be raised to `desired` vCPUs, recorded in the history file
    /// `history` (an open request asking for as much is returned instead of a new one).
    pub fn request_quota_increase(
        &self,
        code: &str,
        desired: f64,
        history: &Path,
    ) -> Result<QuotaRequest> {
        let mut known = RequestHistory::load(history)?;
        let request = self.runtime.block_on(starburst_quota::request_increase(
            self.quotas.as_ref(),
            &mut known,
            code,
            desired,
        ))?;
        known.save(history)?;
        Ok(request)
    }

    /// Brings the open requests of the history file `history` up to date; returns the
    /// history and a warning for each request whose state could not be read.
    pub fn refresh_quota_requests(&self, history: &Path) -> Result<(RequestHistory, Vec<String>)> {
        let mut known = RequestHistory::load(history)?;
        let warnings = self
            .runtime
            .block_on(starburst_quota::refresh(self.quotas.as_ref(), &mut known));
        known.save(history)?;
        Ok((known, warnings))
    }
}
