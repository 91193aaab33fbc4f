//! Account administration outside sessions: the one-time set-up, its teardown and the set-up
//! file it writes, the permissions they need, environment images, Fargate quotas and increase
//! requests. Every call blocks
//! the caller's thread on a small runtime, so progress callbacks run on the caller's thread
//! (R's, for the R package).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
#[cfg(feature = "aws")]
use starburst_aws::{
    Aws, AwsOptions, AwsProvisioner, CodeBuildBuilder, EcrRegistry, IamPermissions, ServiceQuotas,
};
use starburst_cloud::{
    ImageBuilder, PermissionReport, Permissions, Provisioner, QuotaRequest, Quotas, Registry,
    Resource,
};
use starburst_provision::image::Engine;
use starburst_provision::image::ProgressSink;
use starburst_provision::image::RuntimeSpec;
use starburst_provision::setup::{self, Applied, SetupOptions, SetupPlan, SetupResult};
use starburst_provision::{DockerBuilder, EnvironmentSpec};
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
    permissions: Arc<dyn Permissions>,
    endpoint_url: Option<String>,
    #[cfg(feature = "aws")]
    aws: Option<Aws>,
    runtime: tokio::runtime::Runtime,
}

/// The docker CLI environment images are built with: `STARBURST_DOCKER`, else `docker`.
pub const DOCKER_ENV: &str = "STARBURST_DOCKER";
/// The podman CLI environment images are built with: `STARBURST_PODMAN`, else `podman`.
pub const PODMAN_ENV: &str = "STARBURST_PODMAN";

/// How an environment's packages get onto workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentMode {
    /// Workers start from the runtime image and restore the packages from a library archive in
    /// the session bucket (the first worker that needs it builds it): no image build per
    /// environment, no container engine on the user's machine.
    Sync,
    /// The environment is frozen into an image built on the runtime and kept in the registry.
    Image,
}

/// Where the runtime comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeSource {
    /// A published runtime image, used as it is.
    Published(String),
    /// Built once per registry from starburst's binary package.
    Build(RuntimeSpec),
}

/// Who builds images: a container engine on this machine, or the set-up's cloud builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderChoice {
    /// The engine.
    pub engine: BuilderEngine,
    /// Its CLI (`None`: the engine's environment variable, else its name on `PATH`).
    pub program: Option<String>,
    /// `--network` of the build steps (`host` reaches a repository on this machine's loopback).
    pub network: Option<String>,
    /// With [`BuilderEngine::CodeBuild`]: the project and where build contexts go.
    #[serde(default)]
    pub cloud: Option<CloudBuilder>,
}

/// The set-up's cloud builder: its CodeBuild project and where build contexts are uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudBuilder {
    /// The CodeBuild project (`starburst_setup(cloud_builder = TRUE)` creates it).
    pub project: String,
    /// The set-up's bucket.
    pub bucket: String,
    /// The key prefix of build contexts (`<session prefix>/builds`).
    pub prefix: String,
}

/// An image builder by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderEngine {
    /// `docker buildx`.
    Docker,
    /// `podman`.
    Podman,
    /// AWS CodeBuild in the user's account: no container engine on this machine.
    #[serde(rename = "codebuild")]
    CodeBuild,
}

impl BuilderChoice {
    /// The builder of a container engine on this machine, this choice's program and network.
    fn engine_builder(&self, engine: Engine, progress: ProgressSink) -> DockerBuilder {
        let (mut builder, env) = match engine {
            Engine::Docker => (DockerBuilder::default(), DOCKER_ENV),
            Engine::Podman => (
                DockerBuilder::podman(Arc::new(starburst_provision::image::ProcessRunner)),
                PODMAN_ENV,
            ),
        };
        let program = self
            .program
            .clone()
            .or_else(|| std::env::var(env).ok().filter(|p| !p.is_empty()));
        if let Some(program) = program {
            builder = builder.with_program(program);
        }
        if let Some(network) = &self.network {
            builder = builder.with_network(network);
        }
        builder.with_progress(progress)
    }
}

/// The builder of a choice that cannot build here: says why when a build is needed.
#[derive(Debug)]
struct NoBuilder(String);

#[async_trait::async_trait]
impl ImageBuilder for NoBuilder {
    async fn build_and_push(
        &self,
        request: &starburst_cloud::BuildRequest,
        _login: &starburst_cloud::RegistryLogin,
    ) -> starburst_cloud::Result<()> {
        Err(starburst_cloud::Error::other(
            "build image",
            request.image.to_string(),
            self.0.clone(),
        ))
    }
}

/// Everything [`Admin::ensure_environment`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRequest {
    /// The environment.
    pub spec: EnvironmentSpec,
    /// Its runtime.
    pub runtime: RuntimeSource,
    /// Sync or image mode.
    pub mode: EnvironmentMode,
    /// Who builds what must be built.
    pub builder: BuilderChoice,
    /// Package managers serving binaries
    /// ([`PACKAGE_MANAGERS`](starburst_provision::image::PACKAGE_MANAGERS) unless testing).
    pub managers: Vec<String>,
    /// The registry repository images are kept in.
    pub repository: String,
    /// Where build contexts are written.
    pub workdir: PathBuf,
    /// Build even what exists.
    pub force: bool,
}

/// What workers of an environment start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsuredEnvironment {
    /// The runtime image.
    pub runtime_image: String,
    /// The image tasks run: the environment's image (image mode) or the runtime (sync mode).
    pub image: String,
    /// The environment's tag.
    pub tag: String,
    /// The manifest workers restore in sync mode (and the image holds in image mode).
    pub manifest: serde_json::Value,
    /// The images built by this call.
    pub built: Vec<String>,
}

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
    /// Connects to AWS (or the emulator) with the standard credential chain. Fails with
    /// [`Error::BackendUnavailable`] in a build without the `aws` feature.
    #[cfg(not(feature = "aws"))]
    pub fn connect(_target: &AwsTarget) -> Result<Self> {
        Err(crate::session::no_aws())
    }

    /// Connects to AWS (or the emulator) with the standard credential chain.
    #[cfg(feature = "aws")]
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
            permissions: Arc::new(IamPermissions::new(&aws)),
            endpoint_url,
            aws: Some(aws),
            runtime,
        })
    }

    /// Administration through any ports (tests use the in-memory ones).
    pub fn with_ports(
        provisioner: Arc<dyn Provisioner>,
        registry: Arc<dyn Registry>,
        quotas: Arc<dyn Quotas>,
        permissions: Arc<dyn Permissions>,
    ) -> Result<Self> {
        Ok(Self {
            provisioner,
            registry,
            quotas,
            permissions,
            endpoint_url: None,
            #[cfg(feature = "aws")]
            aws: None,
            runtime: runtime()?,
        })
    }

    /// What set-up will create for `options`, and what of it exists already.
    pub fn plan(&self, options: &SetupOptions) -> Result<SetupPlan> {
        Ok(self
            .runtime
            .block_on(setup::plan(self.provisioner.as_ref(), options))?)
    }

    /// Whether the caller may do everything set-up for `options`, its sessions, environment
    /// images, quotas and teardown need (`starburst_provision::permissions::caller_permissions`
    /// of the set-up's names), asked before anything is looked up or created: simulated with the
    /// caller's policies where the cloud can, else probed with read-only calls.
    pub fn check_permissions(&self, options: &SetupOptions) -> Result<PermissionReport> {
        self.runtime.block_on(async {
            options.validate()?;
            let plan = setup::plan_names(self.provisioner.account().await?, options)?;
            let needed = starburst_provision::permissions::caller_permissions(&plan);
            Ok::<_, Error>(self.permissions.check(&needed).await?)
        })
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
            environment: None,
            build_project: result.build_project.clone(),
        }
    }

    /// The image builder `choice` names: a container engine's CLI, or the set-up's CodeBuild
    /// project (which needs a connection to AWS). A builder that cannot be had fails only
    /// when something must be built: reusing images and sync mode on a published runtime
    /// need none.
    fn image_builder(
        &self,
        choice: &BuilderChoice,
        progress: ProgressSink,
    ) -> Arc<dyn ImageBuilder> {
        let cloud = match (choice.engine, &choice.cloud) {
            (BuilderEngine::Docker, _) => {
                return Arc::new(choice.engine_builder(Engine::Docker, progress));
            }
            (BuilderEngine::Podman, _) => {
                return Arc::new(choice.engine_builder(Engine::Podman, progress));
            }
            (BuilderEngine::CodeBuild, None) => {
                return Arc::new(NoBuilder(
                    "this machine has no Docker or podman and the set-up has no cloud builder: \
                     run starburst_setup(cloud_builder = TRUE), or install Docker or podman, or \
                     use sync mode with a published runtime (no image build)"
                        .into(),
                ));
            }
            (BuilderEngine::CodeBuild, Some(cloud)) => cloud,
        };
        #[cfg(feature = "aws")]
        if let Some(aws) = &self.aws {
            let builder = CodeBuildBuilder::new(aws, &cloud.project, &cloud.bucket, &cloud.prefix)
                .with_progress(progress);
            return Arc::new(builder);
        }
        Arc::new(NoBuilder(format!(
            "the CodeBuild project {} needs a connection to AWS, which this one is not",
            cloud.project
        )))
    }

    /// Makes sure what the workers of `request`'s environment start from exists: the runtime
    /// (a published image used as it is, or built once from starburst's binary package and
    /// kept under its tag in `request.repository`), and in image mode the environment's image
    /// on it. Images whose tags exist are reused (unless `force`). Builds run on the admin
    /// runtime while this thread hands each progress line to `progress`.
    pub fn ensure_environment(
        &self,
        request: &EnvironmentRequest,
        progress: &mut dyn FnMut(&str),
    ) -> Result<EnsuredEnvironment> {
        let (tx, rx) = mpsc::channel::<String>();
        let tx = Mutex::new(tx);
        let sink: ProgressSink = Arc::new(move |line: &str| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(line.to_string());
            }
        });
        let builder = self.image_builder(&request.builder, sink.clone());
        let request = request.clone();
        let registry = self.registry.clone();
        let task = self.runtime.spawn(async move {
            let mut built = Vec::new();
            // An ensured image's name, remembered when this call built it.
            let mut record = |ensured: starburst_provision::image::EnsuredImage| {
                let image = ensured.image.to_string();
                if ensured.built {
                    built.push(image.clone());
                }
                image
            };
            let runtime_image = match &request.runtime {
                RuntimeSource::Published(image) => image.clone(),
                RuntimeSource::Build(spec) => {
                    let ensured = starburst_provision::image::ensure_runtime(
                        spec,
                        registry.as_ref(),
                        builder.as_ref(),
                        &request.repository,
                        &request.workdir,
                        request.force,
                        &*sink,
                    )
                    .await?;
                    record(ensured)
                }
            };
            let image = match request.mode {
                EnvironmentMode::Sync => runtime_image.clone(),
                EnvironmentMode::Image => {
                    let ensured = starburst_provision::ensure_image(
                        &request.spec,
                        &runtime_image,
                        &request.managers,
                        registry.as_ref(),
                        builder.as_ref(),
                        &request.repository,
                        &request.workdir,
                        request.force,
                        &*sink,
                    )
                    .await?;
                    record(ensured)
                }
            };
            let manifest = starburst_provision::image::manifest(&request.spec, &request.managers)?;
            Ok::<_, starburst_cloud::Error>(EnsuredEnvironment {
                runtime_image,
                image,
                tag: request.spec.tag(),
                manifest,
                built,
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use starburst_cloud::fake::{FakePermissions, FakeProvisioner, FakeQuotas, FakeRegistry};
    use starburst_cloud::{FARGATE_ON_DEMAND_VCPU, ImageRef, RequestState};

    fn admin(registry: FakeRegistry, quotas: Arc<FakeQuotas>) -> Admin {
        Admin::with_ports(
            Arc::new(FakeProvisioner::new("eu-west-1")),
            Arc::new(registry),
            quotas,
            Arc::new(FakePermissions::new()),
        )
        .unwrap()
    }

    fn admin_with(permissions: FakePermissions) -> Admin {
        Admin::with_ports(
            Arc::new(FakeProvisioner::new("eu-west-1")),
            Arc::new(FakeRegistry::new()),
            Arc::new(FakeQuotas::new()),
            Arc::new(permissions),
        )
        .unwrap()
    }

    #[test]
    fn the_permissions_check_asks_about_the_set_up_s_names_and_reports_what_is_missing() {
        let permissions = FakePermissions::new();
        permissions.deny("ecs:CreateCluster");
        permissions.deny("iam:PassRole");
        let a = admin_with(permissions);
        let options = SetupOptions {
            name: "lab".into(),
            ..SetupOptions::default()
        };
        let report = a.check_permissions(&options).unwrap();
        assert!(report.simulated);
        let denied: Vec<_> = report
            .denied()
            .map(|c| (c.permission.action.as_str(), c.permission.resource.as_str()))
            .collect();
        assert_eq!(
            denied,
            [
                (
                    "ecs:CreateCluster",
                    "arn:aws:ecs:eu-west-1:000000000000:cluster/lab"
                ),
                (
                    "iam:PassRole",
                    "arn:aws:iam::000000000000:role/lab-eu-west-1-execution"
                ),
                (
                    "iam:PassRole",
                    "arn:aws:iam::000000000000:role/lab-eu-west-1-task"
                ),
            ]
        );
        assert_eq!(report.allowed_count(), report.checks.len() - 3);
        assert_eq!(report.not_allowed().len(), 3);
        // Nothing was looked up or created.
        assert!(a.teardown_plan("lab-eu-west-1").unwrap().is_empty());
    }

    #[test]
    fn a_caller_that_cannot_be_simulated_is_reported_so_and_bad_options_fail_first() {
        let a = admin_with(FakePermissions::unsimulated("root user"));
        let report = a.check_permissions(&SetupOptions::default()).unwrap();
        assert!(!report.simulated && report.note.as_deref() == Some("root user"));
        assert_eq!(report.denied().count(), 0);
        assert_eq!(report.not_allowed().len(), report.checks.len());
        let bad = SetupOptions {
            name: "sg-x".into(),
            ..SetupOptions::default()
        };
        assert!(matches!(
            a.check_permissions(&bad),
            Err(Error::Cloud(starburst_cloud::Error::InvalidInput { .. }))
        ));
    }

    #[test]
    #[cfg(feature = "aws")]
    fn the_policy_names_the_task_families_the_aws_adapter_registers() {
        assert_eq!(
            starburst_aws::EcsOptions::default().family_prefix,
            starburst_provision::permissions::TASK_FAMILY_PREFIX
        );
    }

    #[test]
    fn the_set_up_file_names_everything_sessions_need() {
        let a = admin(FakeRegistry::new(), Arc::new(FakeQuotas::new()));
        let plan = a.plan(&SetupOptions::default()).unwrap();
        let mut steps = 0;
        let done = a.apply(&plan, &mut |_| steps += 1).unwrap();
        assert_eq!(steps, 7);
        let s = a.settings(&done, true);
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.bucket, "starburst-000000000000-eu-west-1");
        assert_eq!(s.setup_id.as_deref(), Some("starburst-eu-west-1"));
        assert_eq!(
            s.repository.as_deref(),
            Some("000000000000.dkr.ecr.eu-west-1.amazonaws.com/starburst")
        );
        assert_eq!(s.log_group.as_deref(), Some("/starburst/workers"));
        assert!(s.image.is_empty(), "no image before plan() builds one");
        assert!(!s.subnets.is_empty() && s.security_groups.len() == 1);
        // It round-trips as the set-up file.
        let back: AwsSettings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let doomed = a.teardown_plan("starburst-eu-west-1").unwrap();
        assert_eq!(doomed.len(), 7);
        a.teardown(&doomed, &mut |_| {}).unwrap();
        assert!(a.teardown_plan("starburst-eu-west-1").unwrap().is_empty());
    }

    fn request(mode: EnvironmentMode, dir: &Path) -> EnvironmentRequest {
        let base = starburst_provision::image::EnvironmentBase {
            runtime: "public.ecr.aws/starburst/runtime:0.1.0-r4.4.1-amd64".into(),
            distribution: starburst_provision::image::Distribution::rocker("4.4.1"),
            snapshot: "latest".into(),
        };
        let spec = EnvironmentSpec::from_packages(
            "4.4.1",
            starburst_cloud::Arch::X86_64,
            [("cli", "3.6.3")],
            [(
                "CRAN".to_string(),
                "https://cloud.r-project.org".to_string(),
            )],
            &base,
        )
        .unwrap();
        EnvironmentRequest {
            spec,
            runtime: RuntimeSource::Published(base.runtime),
            mode,
            builder: BuilderChoice {
                engine: BuilderEngine::Docker,
                program: Some("/nonexistent/docker".into()),
                network: None,
                cloud: None,
            },
            managers: vec!["https://packagemanager.posit.co".into()],
            repository: "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst".into(),
            workdir: dir.to_path_buf(),
            force: false,
        }
    }

    #[test]
    fn an_image_already_in_the_registry_is_reused_without_docker() {
        let dir = tempfile::tempdir().unwrap();
        let request = request(EnvironmentMode::Image, dir.path());
        let registry = FakeRegistry::new();
        registry.insert(ImageRef {
            repository: request.repository.clone(),
            tag: request.spec.tag(),
        });
        let a = admin(registry, Arc::new(FakeQuotas::new()));
        let mut lines = Vec::new();
        let got = a
            .ensure_environment(&request, &mut |l| lines.push(l.to_string()))
            .unwrap();
        assert!(got.built.is_empty());
        assert_eq!(
            got.image,
            format!("{}:{}", request.repository, request.spec.tag())
        );
        assert_eq!(
            got.runtime_image,
            "public.ecr.aws/starburst/runtime:0.1.0-r4.4.1-amd64"
        );
        assert!(lines.iter().any(|l| l.contains("reusing")), "{lines:?}");
    }

    #[test]
    fn sync_mode_runs_the_published_runtime_and_builds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let request = request(EnvironmentMode::Sync, dir.path());
        let a = admin(FakeRegistry::new(), Arc::new(FakeQuotas::new()));
        let got = a.ensure_environment(&request, &mut |_| {}).unwrap();
        assert_eq!(got.image, got.runtime_image);
        assert!(got.built.is_empty());
        assert_eq!(got.tag, request.spec.tag());
        assert_eq!(
            got.manifest["repositories"]["CRAN"],
            "https://packagemanager.posit.co/cran/__linux__/noble/latest"
        );
    }

    #[test]
    fn a_missing_engine_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let request = request(EnvironmentMode::Image, dir.path());
        let a = admin(FakeRegistry::new(), Arc::new(FakeQuotas::new()));
        let err = a.ensure_environment(&request, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("was not found"), "{err}");
        assert!(err.to_string().contains("sync mode"), "{err}");
    }

    #[test]
    fn the_cloud_builder_needs_a_set_up_project_and_a_connection() {
        let dir = tempfile::tempdir().unwrap();
        let mut request = request(EnvironmentMode::Image, dir.path());
        request.builder = BuilderChoice {
            engine: BuilderEngine::CodeBuild,
            program: None,
            network: None,
            cloud: None,
        };
        let a = admin(FakeRegistry::new(), Arc::new(FakeQuotas::new()));
        let err = a.ensure_environment(&request, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("cloud_builder = TRUE"), "{err}");
        request.builder.cloud = Some(CloudBuilder {
            project: "starburst-us-east-1-builder".into(),
            bucket: "b".into(),
            prefix: "starburst/builds".into(),
        });
        // The in-memory ports have no AWS connection to build with.
        let err = a.ensure_environment(&request, &mut |_| {}).unwrap_err();
        assert!(
            err.to_string().contains("starburst-us-east-1-builder"),
            "{err}"
        );
    }

    #[test]
    fn quota_requests_are_recorded_and_followed() {
        let quotas = Arc::new(FakeQuotas::new());
        quotas.set(FARGATE_ON_DEMAND_VCPU, 6.0, Some(6.0), 2.0);
        let a = admin(FakeRegistry::new(), quotas.clone());
        let od = a.quota_status(starburst_cloud::Capacity::OnDemand);
        assert_eq!((od.effective(), od.usage, od.headroom), (6.0, 2.0, 4.0));
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("requests.json");
        let r = a
            .request_quota_increase(FARGATE_ON_DEMAND_VCPU, 50.0, &history)
            .unwrap();
        assert_eq!(r.state, RequestState::Pending);
        quotas.resolve_request(&r.id, RequestState::Approved);
        let (known, warnings) = a.refresh_quota_requests(&history).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(known.list()[0].state, RequestState::Approved);
    }
}
