//! `cargo xtask emulator`: a local AWS for anyone without an AWS account. It runs
//! `xtask/emulator/starburst_emulator.py` (with the moto venv's Python): a moto server on
//! 127.0.0.1 plus a Fargate simulator that runs a `starburst-worker` process for every ECS
//! task RunTask creates and reports its lifecycle back through ECS, so
//! `plan(starburst, backend = "aws")` runs end-to-end through real S3/ECS/CloudWatch Logs
//! calls. The Python program is the emulator; this module builds what it needs, runs it in the
//! foreground for a person, or in the background ([`Emulator`]) for tests and other commands.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, emulator_venv, project_root, run, target_dir};

/// The line the emulator prints on stdout once it serves requests, followed by its URL.
const READY: &str = "STARBURST_EMULATOR_READY";
/// The region of the bootstrapped fixtures.
const REGION: &str = "us-east-1";
/// How long start-up (moto's imports, the bootstrap) may take before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the emulator may take to stop its workers once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The emulator program.
fn script() -> PathBuf {
    project_root()
        .join("xtask")
        .join("emulator")
        .join("starburst_emulator.py")
}

/// The moto venv's Python (the venv is created when missing).
pub fn python() -> Result<PathBuf> {
    Ok(emulator_venv()?.with_file_name("python"))
}

/// Builds the `starburst-worker` binary (dev profile) and returns its path.
pub fn build_worker() -> Result<PathBuf> {
    run(cargo().args(["build", "-p", "starburst", "--bin", "starburst-worker"]))?;
    let bin = target_dir().join("debug").join("starburst-worker");
    if !bin.is_file() {
        bail!(
            "cargo built starburst-worker but {} is missing; check CARGO_TARGET_DIR",
            bin.display()
        );
    }
    Ok(bin)
}

/// `cargo xtask emulator`: builds the worker (unless `worker_bin` is given), prints the environment a client needs and
/// replaces this process with the emulator, so Ctrl-C reaches it and it stops every worker
/// before the prompt returns.
pub fn foreground(
    port: Option<u16>,
    config_out: Option<PathBuf>,
    worker_bin: Option<PathBuf>,
    latency_ms: u32,
    containers: bool,
) -> Result<()> {
    let python = python()?;
    let worker = match worker_bin {
        Some(bin) => std::path::absolute(&bin)
            .with_context(|| format!("resolving --worker-bin {}", bin.display()))?,
        None => build_worker()?,
    };
    let dir = target_dir().join("emulator");
    let config = config_out.unwrap_or_else(|| dir.join("config.json"));
    let config = std::path::absolute(&config)
        .with_context(|| format!("resolving --config-out {}", config.display()))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    if let Some(parent) = config.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the directory of {}", config.display()))?;
    }
    let port = match port {
        Some(p) if p != 0 => p,
        _ => free_port()?,
    };
    let url = format!("http://127.0.0.1:{port}");
    eprintln!(
        "emulator: starting a local AWS on {url} (workers: {}, their logs: {}, latency {latency_ms} ms)",
        worker.display(),
        logs.display()
    );
    eprintln!("emulator: once it prints {READY}, run in another shell:\n");
    println!("{}\n", export_line(&url, &config));
    eprintln!(
        "emulator: then `plan(starburst, backend = \"aws\")` in R; Ctrl-C here stops everything"
    );
    let err = Command::new(&python)
        .arg(script())
        .args(["--port", &port.to_string(), "--bootstrap", "--config-out"])
        .arg(&config)
        .arg("--worker-bin")
        .arg(&worker)
        .arg("--log-dir")
        .arg(&logs)
        .args(["--latency-ms", &latency_ms.to_string()])
        .args(containers.then_some("--containers"))
        .args(
            containers
                .then(|| {
                    // CodeBuild builds "push" to this emulator's ECR through the wrapper.
                    let podman = crate::images::podman_emulator();
                    ["--podman".to_owned(), podman.display().to_string()]
                })
                .into_iter()
                .flatten(),
        )
        .envs(
            containers
                .then(|| {
                    let mut env = crate::images::podman_env();
                    env.push((
                        "STARBURST_EMULATOR_PYTHON".into(),
                        python.display().to_string(),
                    ));
                    env
                })
                .into_iter()
                .flatten(),
        )
        .exec();
    Err(err).with_context(|| format!("starting {} {}", python.display(), script().display()))
}

/// The shell line that points AWS clients (the R package included) at an emulator.
fn export_line(url: &str, config: &Path) -> String {
    format!(
        "export AWS_ENDPOINT_URL={url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
         AWS_REGION={REGION} STARBURST_CONFIG={}",
        config.display()
    )
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port on 127.0.0.1 for the emulator")?
        .port())
}

/// Runs the emulator's own tests (`xtask/emulator/test_emulator.py`, with a fake worker).
pub fn run_python_tests() -> Result<()> {
    let python = python()?;
    run(Command::new(python)
        .args(["-m", "unittest", "discover", "-s"])
        .arg(project_root().join("xtask").join("emulator"))
        .args(["-p", "test_*.py"]))
}

/// What a background emulator runs and where it writes its session configuration.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The executable every ECS task runs (a `starburst-worker`).
    pub worker_bin: PathBuf,
    /// Where the emulator writes the session configuration (JSON: region, endpoint_url,
    /// bucket, prefix, cluster, subnets, security_groups, log_group, image).
    pub config_out: PathBuf,
    /// Where each task's output is also written as `<task id>.log`.
    pub log_dir: Option<PathBuf>,
    /// Further arguments for the emulator, e.g. `["--stop-grace", "1"]`.
    pub args: Vec<String>,
    /// Environment of the emulator, which workers inherit when named `R_*`, `PATH`, ... (see
    /// the emulator's README), e.g. `R_LIBS` so that their R finds the starburst package.
    pub env: Vec<(String, String)>,
}

/// A running emulator in the background, stopped (with every worker it started) when
/// dropped. It also stops by itself when this process dies: it exits at the end of its stdin.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    config: PathBuf,
    python: PathBuf,
}

impl Emulator {
    /// Starts `starburst_emulator.py` with `python` on a free port, bootstrapped, and waits
    /// until it serves requests.
    pub fn start(python: &Path, options: &EmulatorOptions) -> Result<Self> {
        let mut cmd = Command::new(python);
        cmd.arg(script())
            .args(["--port", "0", "--bootstrap", "--exit-on-stdin-eof"])
            .arg("--config-out")
            .arg(&options.config_out)
            .arg("--worker-bin")
            .arg(&options.worker_bin)
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(dir) = &options.log_dir {
            cmd.arg("--log-dir").arg(dir);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the emulator with {}", python.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .context("the emulator's stdout is piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let url = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix(READY).map(|rest| rest.trim().to_string()));
            let _ = tx.send(url);
            // Keep draining so the emulator never blocks on a full pipe.
            lines.for_each(drop);
        });
        let mut emulator = Self {
            child,
            stdin,
            url: String::new(),
            config: options.config_out.clone(),
            python: python.to_path_buf(),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(url)) => emulator.url = url,
            Ok(None) => bail!(
                "the emulator exited before it was ready; its error is above (stderr). \
                 Run `cargo xtask emulator-venv` if moto is missing"
            ),
            Err(_) => bail!(
                "the emulator did not print {READY} within {}s; its log is above (stderr)",
                START_TIMEOUT.as_secs()
            ),
        }
        Ok(emulator)
    }

    /// The emulator's endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests strict mode rejected as AWS would, as the emulator lists them (JSON); an
    /// error when there were any: the code under test sent what a real account refuses.
    pub fn check_nothing_rejected(&self) -> Result<()> {
        let response = get(&self.url, "/_starburst/rejected")?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if body.trim() != r#"{"rejected": []}"# {
            bail!("the emulator rejected requests that AWS would reject: {body}");
        }
        Ok(())
    }

    /// The session configuration file it wrote.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The environment that points an AWS client (and the R package) at this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("STARBURST_CONFIG", self.config.display().to_string()),
            // The Python (with boto3) tests' stand-in docker CLI runs with, to "push" images.
            (
                "STARBURST_EMULATOR_PYTHON",
                self.python.display().to_string(),
            ),
        ]
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // End of stdin: the emulator stops its workers (SIGTERM, then SIGKILL) and exits.
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        eprintln!("emulator: did not stop within {STOP_TIMEOUT:?}; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET of `path` on the emulator at `url`: the whole HTTP response.
fn get(url: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr = url
        .strip_prefix("http://")
        .context("the emulator's URL is not http://")?;
    let mut stream = std::net::TcpStream::connect(addr).context("connecting to the emulator")?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The moto venv's Python as `cargo xtask test` provides it (`STARBURST_MOTO`), else the
    /// default venv location.
    fn venv_python() -> PathBuf {
        let server = std::env::var_os("STARBURST_MOTO")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(crate::default_target_dir)
                    .join("moto-venv/bin/moto_server")
            });
        let python = server.with_file_name("python");
        assert!(
            python.is_file(),
            "no moto venv Python at {}: run `cargo xtask emulator-venv` (or set STARBURST_MOTO)",
            python.display()
        );
        python
    }

    #[test]
    fn background_emulator_bootstraps_serves_and_stops_on_drop() {
        let dir =
            std::env::temp_dir().join(format!("starburst-xtask-emulator-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = EmulatorOptions {
            worker_bin: project_root().join("xtask/emulator/fake_worker.py"),
            config_out: dir.join("config.json"),
            log_dir: None,
            args: Vec::new(),
            env: Vec::new(),
        };
        let emulator = Emulator::start(&venv_python(), &options).unwrap();
        let pid = emulator.child.id();
        assert!(emulator.url().starts_with("http://127.0.0.1:"));
        let config = std::fs::read_to_string(emulator.config()).unwrap();
        for key in [
            "\"region\": \"us-east-1\"",
            &format!("\"endpoint_url\": \"{}\"", emulator.url()),
            "\"bucket\": \"starburst-emulator\"",
            "\"cluster\": \"starburst\"",
            "\"subnets\": [",
            "\"security_groups\": [",
            "\"log_group\": \"/starburst/workers\"",
            "\"image\": \"starburst-sim:local\"",
        ] {
            assert!(config.contains(key), "{key} missing from {config}");
        }
        let env = emulator.env();
        assert!(env.contains(&("AWS_ENDPOINT_URL", emulator.url().to_string())));
        let stats = get(emulator.url(), "/_starburst/stats").unwrap();
        assert!(
            stats.lines().next().is_some_and(|l| l.contains(" 200 ")),
            "{stats}"
        );
        assert!(stats.contains("\"total_requests\": 0"), "{stats}");
        drop(emulator);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the emulator (pid {pid}) still runs after drop"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
