//! `starburst-worker`: the worker process of a local worker or a Fargate task. Configured by
//! environment variables (or the equivalent flags); logs to stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
#[cfg(feature = "aws")]
use starburst::aws::{Aws, METADATA_ENV, S3Options, S3Store, ecs_task_id};
use starburst::cloud::{ObjectStore, SystemClock};
use starburst::local::DirStore;
use starburst::worker::environment::{EnvironmentSync, RscriptRestorer};
use starburst::worker::{Exit, RCommand, RProcess, Worker, WorkerConfig};

/// Runs one starburst worker until the session stops it, it idles out or its parent exits.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Object store: `dir:<path>` for a local directory, `s3://<bucket>/<prefix>` for S3 (with
    /// the standard AWS configuration chain: the task role on Fargate; `AWS_ENDPOINT_URL` for an
    /// emulator).
    #[arg(long, env = "STARBURST_STORE")]
    store: String,
    /// Session id.
    #[arg(long, env = "STARBURST_SESSION")]
    session: String,
    /// This worker's id; on ECS, when not given, the task id from the task metadata endpoint.
    #[arg(long, env = "STARBURST_WORKER_ID")]
    worker_id: Option<String>,
    /// Rscript used to start the evaluator.
    #[arg(long, env = "STARBURST_RSCRIPT", default_value = "Rscript")]
    rscript: PathBuf,
    /// Seconds without work before the worker exits.
    #[arg(long, env = "STARBURST_IDLE_TIMEOUT", default_value_t = 600.0)]
    idle_timeout: f64,
    /// Seconds between heartbeats of a busy worker (each one is a billed PUT; new events get a
    /// beat of their own within 200 ms, and the client's lease is 60 s locally, 120 s on AWS).
    #[arg(long, env = "STARBURST_HEARTBEAT", default_value_t = 10.0)]
    heartbeat: f64,
    /// Blob cache directory (default: a temporary directory for a store in S3, none for a
    /// store on local disk, which would only be copied).
    #[arg(long, env = "STARBURST_BLOB_CACHE")]
    blob_cache: Option<PathBuf>,
    /// Exit when this process is no longer the parent.
    #[arg(long, env = "STARBURST_PARENT_PID")]
    parent_pid: Option<u32>,
    /// Seconds without a move of the session's heartbeat (the client is gone) before the
    /// worker stops, with its R process.
    #[arg(long, env = "STARBURST_ORPHAN_TIMEOUT", default_value_t = 300.0)]
    orphan_timeout: f64,
    /// Stop by this moment (Unix milliseconds) whatever happens: the session's spending cap.
    #[arg(long, env = "STARBURST_DEADLINE_UNIX_MS")]
    deadline_unix_ms: Option<u64>,
    /// Sync mode: the environment (tag) whose library to restore before R starts, from
    /// `environments/<tag>/` of the store (downloaded, or built once by the first worker).
    #[arg(long, env = "STARBURST_ENVIRONMENT")]
    environment: Option<String>,
    /// Where the environment's library goes (first in R's library path).
    #[arg(
        long,
        env = "STARBURST_LIBRARY",
        default_value = "/opt/starburst/library"
    )]
    library: PathBuf,
}

async fn open_store(spec: &str) -> Result<Arc<dyn ObjectStore>> {
    if let Some(dir) = spec.strip_prefix("dir:") {
        return Ok(Arc::new(DirStore::new(dir)?));
    }
    #[cfg(feature = "aws")]
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let aws = Aws::from_env().await;
        return Ok(Arc::new(S3Store::new(
            &aws,
            bucket,
            prefix,
            S3Options::default(),
        )?));
    }
    #[cfg(not(feature = "aws"))]
    if spec.starts_with("s3://") {
        bail!(
            "this worker was built without the `aws` feature: it cannot use the S3 store {spec:?}"
        );
    }
    bail!("unsupported store {spec:?}: use dir:<path> or s3://<bucket>/<prefix>")
}

async fn worker_id(given: Option<String>) -> Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    #[cfg(not(feature = "aws"))]
    bail!("no worker id: set STARBURST_WORKER_ID");
    #[cfg(feature = "aws")]
    match ecs_task_id().await? {
        Some(id) => Ok(id),
        None => bail!(
            "no worker id: set STARBURST_WORKER_ID (or run in an ECS task, where the id comes from {METADATA_ENV})"
        ),
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STARBURST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    if args.parent_pid.is_some() {
        // A local worker ends with the thread that started it (the session's runtime), even
        // when that process is killed outright; the parent-pid check is the portable backstop.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
    }
    // One thread: the evaluator's R child is spawned from it and lives as long as the process.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (store, worker_id) = rt.block_on(async {
        anyhow::Ok((
            open_store(&args.store).await?,
            worker_id(args.worker_id.clone()).await?,
        ))
    })?;
    tracing::info!(worker = %worker_id, store = %args.store, session = %args.session, "starting");
    let networked = args.store.starts_with("s3://");
    // Private to this user, never at a predictable shared path: a random name by default.
    let cache = args.blob_cache.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("starburst-blobs-{}", uuid::Uuid::new_v4().simple()))
    });
    let mut config = WorkerConfig::new(&args.session, &worker_id, cache.clone());
    if networked || args.blob_cache.is_some() {
        starburst::local::private_dir(&cache)
            .with_context(|| format!("creating blob cache {}", cache.display()))?;
    } else {
        // The store is a directory on this machine: a cached copy would only be a second write.
        config.blob_cache = None;
    }
    if networked {
        // Results travel over a network: compressed when that saves a tenth or more.
        config.encode = starburst::serialization::EncodeOptions::NETWORK;
    }
    config.idle_timeout = starburst::check_seconds("idle_timeout", args.idle_timeout)?;
    config.heartbeat = Duration::try_from_secs_f64(args.heartbeat)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--heartbeat must be a positive number of seconds")?;
    config.parent_pid = args.parent_pid;
    let orphan = starburst::check_seconds("orphan_timeout", args.orphan_timeout)?;
    config.orphan_timeout = Some(orphan);
    config.client_check = starburst::client_beat_for(orphan);
    config.deadline = args
        .deadline_unix_ms
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
    let mut command = RCommand::starburst(&args.rscript);
    if let Some(tag) = &args.environment {
        let sync = EnvironmentSync::new(
            store.clone(),
            tag,
            &args.library,
            Box::new(RscriptRestorer {
                rscript: args.rscript.clone(),
            }),
        )
        .map_err(anyhow::Error::msg)?;
        match rt.block_on(sync.prepare(&worker_id)) {
            Ok(prepared) => tracing::info!(environment = %tag, ?prepared, "environment ready"),
            Err(e) => {
                // Reported like an R that does not start: the client fails the futures with
                // the worker's log, which holds this message.
                tracing::error!(environment = %tag, "the environment could not be restored: {e}");
                drop(rt);
                std::process::exit(starburst::local::EXIT_EVALUATOR_START);
            }
        }
        command
            .env
            .push(("R_LIBS".into(), args.library.display().to_string()));
    }
    let evaluator = Box::new(RProcess::new(command));
    let worker = Worker::new(store, Arc::new(SystemClock::default()), evaluator, config);

    let exit = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = worker.run() => r.map_err(anyhow::Error::from),
            _ = term.recv() => Ok(Exit::Stopped("SIGTERM".into())),
            _ = tokio::signal::ctrl_c() => Ok(Exit::Stopped("SIGINT".into())),
        }
    });
    let exit = match exit {
        Ok(exit) => exit,
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(starburst::worker::Error::EvaluatorStart(_))
            ) =>
        {
            tracing::error!("{e:#}");
            drop(rt);
            std::process::exit(starburst::local::EXIT_EVALUATOR_START);
        }
        Err(e) => return Err(e),
    };
    tracing::info!(?exit, "bye");
    // Dropping the runtime drops the evaluator, whose R child is killed on drop.
    drop(rt);
    Ok(())
}
