//! `starburst-worker`: the worker process of a local worker or a Fargate task. Configured by
//! environment variables (or the equivalent flags); logs to stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use starburst::cloud::{ObjectStore, SystemClock};
use starburst::local::DirStore;
use starburst::worker::{Exit, RCommand, RProcess, Worker, WorkerConfig};

/// Runs one starburst worker until the session stops it, it idles out or its parent exits.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Object store: `dir:<path>` for a local directory.
    #[arg(long, env = "STARBURST_STORE")]
    store: String,
    /// Session id.
    #[arg(long, env = "STARBURST_SESSION")]
    session: String,
    /// This worker's id.
    #[arg(long, env = "STARBURST_WORKER_ID")]
    worker_id: String,
    /// Rscript used to start the evaluator.
    #[arg(long, env = "STARBURST_RSCRIPT", default_value = "Rscript")]
    rscript: PathBuf,
    /// Seconds without work before the worker exits.
    #[arg(long, env = "STARBURST_IDLE_TIMEOUT", default_value_t = 600.0)]
    idle_timeout: f64,
    /// Seconds between heartbeats.
    #[arg(long, env = "STARBURST_HEARTBEAT", default_value_t = 2.0)]
    heartbeat: f64,
    /// Blob cache directory (default: a temporary directory).
    #[arg(long, env = "STARBURST_BLOB_CACHE")]
    blob_cache: Option<PathBuf>,
    /// Exit when this process is no longer the parent.
    #[arg(long, env = "STARBURST_PARENT_PID")]
    parent_pid: Option<u32>,
}

fn open_store(spec: &str) -> Result<Arc<dyn ObjectStore>> {
    if let Some(dir) = spec.strip_prefix("dir:") {
        return Ok(Arc::new(DirStore::new(dir)?));
    }
    bail!("unsupported store {spec:?}: this build supports dir:<path>")
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
    let store = open_store(&args.store)?;
    let cache = args
        .blob_cache
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("starburst-blobs"));
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating blob cache {}", cache.display()))?;
    let mut config = WorkerConfig::new(&args.session, &args.worker_id, cache);
    config.idle_timeout = Duration::from_secs_f64(args.idle_timeout);
    config.heartbeat = Duration::from_secs_f64(args.heartbeat);
    config.parent_pid = args.parent_pid;
    let evaluator = Box::new(RProcess::new(RCommand::starburst(&args.rscript)));
    let worker = Worker::new(store, Arc::new(SystemClock::default()), evaluator, config);

    // One thread: the evaluator's R child is spawned from it and lives as long as the process.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
