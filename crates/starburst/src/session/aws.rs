//! The aws backend's sessions: S3 for data, ECS Fargate for workers, CloudWatch for their
//! logs (the `aws` feature).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use starburst_aws::{Aws, AwsOptions, CloudWatchLogs, EcsCompute, EcsOptions, S3Options, S3Store};
use starburst_cloud::{LogLine, LogQuery, Logs, ObjectStore, WorkerId, WorkerSpec};

use starburst_serialization::EncodeOptions;

use super::{
    Session, SweepReport, base_env, new_runtime, new_session_id, scheduler_config, start_scheduler,
    tags,
};
use crate::config::{AwsSettings, Backend, Config};
use crate::{Error, Result};

/// The logs port of a set-up without a log group: no worker has a log.
#[derive(Debug)]
struct NoLogs;

#[async_trait::async_trait]
impl Logs for NoLogs {
    async fn read(
        &self,
        _worker: &WorkerId,
        _query: &LogQuery,
    ) -> starburst_cloud::Result<Vec<LogLine>> {
        Ok(Vec::new())
    }
}

/// The store, compute and logs ports of an AWS set-up.
async fn connect_aws(
    settings: &AwsSettings,
    options: AwsOptions,
) -> Result<(S3Store, EcsCompute, Arc<dyn Logs>)> {
    let mut options = options.with_region(&settings.region);
    if settings.endpoint_url.is_some() {
        options.endpoint_url = settings.endpoint_url.clone();
    }
    let aws = Aws::connect(options).await;
    let store = S3Store::new(
        &aws,
        &settings.bucket,
        &settings.prefix,
        S3Options::default(),
    )?;
    let mut ecs = EcsOptions::new(&settings.cluster);
    ecs.subnets = settings.subnets.clone();
    ecs.security_groups = settings.security_groups.clone();
    ecs.assign_public_ip = settings.assign_public_ip;
    ecs.task_role_arn = settings.task_role_arn.clone();
    ecs.execution_role_arn = settings.execution_role_arn.clone();
    ecs.log_group = settings.log_group.clone();
    let logs: Arc<dyn Logs> = match &settings.log_group {
        Some(_) => Arc::new(CloudWatchLogs::for_workers(&aws, &ecs)?),
        None => Arc::new(NoLogs),
    };
    let compute = EcsCompute::new(&aws, ecs)?;
    Ok((store, compute, logs))
}

/// The cost meter that prices a set-up's workers (`None` when the region has no prices).
fn pricing(config: &Config) -> Option<starburst_cost::Meter> {
    let catalog = config.catalog().ok()?;
    starburst_cost::Meter::new(&catalog, &config.price_region()).ok()
}

/// Stops the workers of the set-up whose sessions are gone (never failing the session that
/// opens: a pool that cannot be listed is reported, not fatal).
async fn sweep_orphans(
    store: &S3Store,
    compute: &EcsCompute,
    config: &Config,
    current: &str,
) -> SweepReport {
    let meter = pricing(config);
    let found = crate::sweep::survey(
        store,
        compute,
        Some(current),
        meter.as_ref(),
        std::time::SystemTime::now(),
        crate::sweep::GONE_MARGIN,
    )
    .await;
    let orphans: Vec<_> = match found {
        Ok(ws) => ws.into_iter().filter(|w| w.status.is_orphaned()).collect(),
        Err(e) => {
            return SweepReport {
                error: Some(e.to_string()),
                ..SweepReport::default()
            };
        }
    };
    let report = SweepReport {
        workers: orphans.len(),
        usd: orphans.iter().filter_map(|w| w.usd).sum(),
        error: None,
    };
    match crate::sweep::stop(compute, &orphans, "its session is gone").await {
        Ok(()) => report,
        Err(e) => SweepReport {
            error: Some(e.to_string()),
            ..report
        },
    }
}

/// Every live worker of the AWS set-up in `config` with the state of its session, age and
/// cost so far; with `stop_all`, every one of them is stopped (the listing says what was).
pub fn setup_workers(config: &Config, stop_all: bool) -> Result<Vec<crate::sweep::SetupWorker>> {
    let settings = config.aws.clone().ok_or_else(|| {
        Error::BackendUnavailable("no AWS set-up: run starburst_setup() first".into())
    })?;
    let runtime = new_runtime()?;
    runtime.block_on(async {
        let (store, compute, _) = connect_aws(&settings, AwsOptions::default()).await?;
        let meter = pricing(config);
        let workers = crate::sweep::survey(
            &store,
            &compute,
            None,
            meter.as_ref(),
            std::time::SystemTime::now(),
            crate::sweep::GONE_MARGIN,
        )
        .await?;
        if stop_all {
            crate::sweep::stop(&compute, &workers, "starburst_sessions(stop = TRUE)").await?;
        }
        Ok(workers)
    })
}

impl Session {
    /// Starts an aws-backend session that reaches AWS with `options` (static credentials, say)
    /// where the standard chain would otherwise decide; the set-up's region and endpoint still
    /// apply.
    pub fn start_aws_with(config: Config, options: AwsOptions) -> Result<Self> {
        config.validate()?;
        if config.backend != Backend::Aws {
            return Err(Error::InvalidConfig(
                "start_aws_with needs backend = \"aws\"".into(),
            ));
        }
        Self::start_aws(config, options)
    }

    pub(super) fn start_aws(config: Config, options: AwsOptions) -> Result<Self> {
        let settings = config.aws.clone().ok_or_else(|| {
            Error::BackendUnavailable("no AWS set-up: run starburst_setup() first".into())
        })?;
        let runtime = new_runtime()?;
        let session_id = new_session_id();
        let (store, compute, logs) = runtime.block_on(connect_aws(&settings, options))?;
        // Workers left running by sessions that are gone stop before this one starts its own.
        let swept = runtime.block_on(sweep_orphans(
            &store,
            &compute,
            &config,
            session_id.as_str(),
        ));
        // The worker's credentials come from the task role, its region from Fargate: the
        // client ships neither.
        let mut env = base_env(&config, &session_id, settings.store_url());
        if let Some(environment) = &settings.environment {
            runtime.block_on(publish_environment(&store, environment))?;
            env.insert(crate::env::ENVIRONMENT.into(), environment.tag.clone());
        }
        let spec = WorkerSpec {
            size: config.size(),
            arch: config.arch,
            capacity: config.capacity,
            image: Some(settings.image.clone()),
            env,
            tags: tags(&session_id),
        };
        // ECS sends SIGTERM, waits the stop timeout (30 s by default), then SIGKILL.
        let (mut sc, unpriced) =
            scheduler_config(&config, session_id, spec, Duration::from_secs(60))?;
        // Fargate takes tens of seconds to place a task and pull its image.
        sc.health_interval = Duration::from_secs(2);
        sc.lease = Duration::from_secs(120);
        sc.start_timeout = Duration::from_secs(600);
        sc.poll_min = Duration::from_millis(20);
        sc.poll_max = Duration::from_secs(1);
        // Bytes cost time over a network: large globals and payloads are zstd-compressed when
        // that saves a tenth or more (see `EncodeOptions::NETWORK`).
        sc.encode = EncodeOptions::NETWORK;
        let scheduler = start_scheduler(&runtime, sc, Arc::new(store), Arc::new(compute), &logs);
        Ok(Self {
            scheduler,
            logs,
            backend: Backend::Aws,
            root: PathBuf::new(),
            owns_root: false,
            unpriced,
            swept,
            runtime,
        })
    }
}

/// Sync mode: writes the environment's manifest where its workers read it, and clears a failure
/// an earlier session recorded, so this session tries again.
async fn publish_environment(
    store: &dyn ObjectStore,
    environment: &crate::config::SyncEnvironment,
) -> Result<()> {
    let paths = starburst_worker::environment::EnvironmentPaths::new(&environment.tag)
        .map_err(Error::InvalidConfig)?;
    store
        .put(
            &paths.manifest,
            bytes::Bytes::from(environment.manifest.clone()),
        )
        .await?;
    match store.delete(&paths.failed).await {
        Ok(()) | Err(starburst_cloud::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
