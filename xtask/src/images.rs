//! Real container images for the tests, with podman and no registry: a Debian base made with
//! `debootstrap` from the Debian archive apt uses, an R image on it (Debian's R, standing in
//! for `rocker/r-ver`), a CRAN-like repository of binary packages made from the R packages
//! installed here (standing in for Posit Package Manager) served on 127.0.0.1, and a `podman`
//! wrapper whose `push` registers the image in the emulator's ECR (the image itself stays in
//! the local storage, where the emulator's `--containers` simulator runs it).
//!
//! podman runs as root with the `runc` runtime (crun fails on this kernel's mixed cgroups) and
//! ulimits no higher than the machine allows, both set in a `CONTAINERS_CONF` file under the
//! target directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{have, run, target_dir};

/// The Debian base image (`debootstrap --variant=minbase bookworm`).
pub const BASE_IMAGE: &str = "localhost/starburst/debian:bookworm";
/// The R image on it: Debian's R, as `rocker/r-ver` would be in production.
pub const R_IMAGE: &str = "localhost/starburst/r:bookworm";

/// The packages of the test repository: starburst's imports (the runtime installs them) and
/// those the test environments use.
pub const REPO_PACKAGES: &[&str] = &[
    "cli",
    "future",
    "jsonlite",
    "parallelly", // starburst's imports
    "data.table",
    "xml2", // the two-package environment
    "R6",
    "magrittr",
    "glue",
    "stringi",
    "zoo",
    "digest",
    "yaml",
    "Rcpp", // ten with the two
];

/// System requirements the test repository's package-manager API reports (Debian names).
const SYSREQS: &str = r#"{"xml2": ["libxml2"], "stringi": ["libicu72"]}"#;

/// The environment podman needs here: `CONTAINERS_CONF` (runc, ulimits), written if missing.
pub fn podman_env() -> Vec<(String, String)> {
    let dir = target_dir().join("podman");
    let conf = dir.join("containers.conf");
    if !conf.is_file() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            &conf,
            "# Written by cargo xtask: runc (crun fails on this kernel's mixed cgroups) and\n\
             # ulimits no higher than the machine allows.\n\
             [containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             runtime = \"runc\"\n",
        );
    }
    vec![("CONTAINERS_CONF".into(), conf.display().to_string())]
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.envs(podman_env());
    cmd
}

fn image_exists(image: &str) -> bool {
    podman()
        .args(["image", "exists", image])
        .status()
        .is_ok_and(|s| s.success())
}

/// True when podman can run containers here.
pub fn available() -> bool {
    have("podman")
        && have("debootstrap")
        && podman()
            .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Makes the base and R images unless they exist (about 1.5 minutes the first time).
pub fn ensure_images() -> Result<()> {
    if !image_exists(BASE_IMAGE) {
        eprintln!(
            "images: {BASE_IMAGE} from debootstrap --variant=minbase bookworm (about a minute)"
        );
        let dir = target_dir().join("podman").join("rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&dir)
            .arg(debian_mirror()))?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        run(podman()
            .args(["import", "-", BASE_IMAGE])
            .stdin(tar.stdout.context("tar's stdout")?))?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !image_exists(R_IMAGE) {
        eprintln!("images: {R_IMAGE}, Debian's R on the base (about 20 s)");
        let dir = target_dir().join("podman").join("r-image");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("Dockerfile"),
            format!(
                "FROM {BASE_IMAGE}\n\
                 RUN apt-get update \\\n\
                 \x20   && apt-get install -y --no-install-recommends r-base-core ca-certificates \\\n\
                 \x20   && rm -rf /var/lib/apt/lists/*\n"
            ),
        )?;
        run(podman()
            .args(["build", "--network", "host", "--tag", R_IMAGE])
            .arg(&dir))?;
    }
    Ok(())
}

/// The Debian archive apt uses here (the only one this machine reaches): the first `URIs:` of
/// a deb822 source, or the first `deb` line, that is not the security archive.
fn debian_mirror() -> String {
    let mut text = String::new();
    for path in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        text += &std::fs::read_to_string(path).unwrap_or_default();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.strip_prefix("URIs:").or_else(|| {
                l.strip_prefix("deb ")
                    .and_then(|r| r.split_whitespace().find(|w| w.starts_with("http")))
            })
        })
        .map(|u| u.split_whitespace().next().unwrap_or("").to_owned())
        .find(|u| u.starts_with("http") && !u.contains("security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// The test repository's directory, made from the installed R packages (seconds).
pub fn ensure_repo() -> Result<PathBuf> {
    let dir = target_dir().join("podman").join("repo");
    let sysreqs = dir.join("sysreqs.json");
    run(Command::new("Rscript")
        .arg("xtask/r/local_repo.R")
        .arg(&dir)
        .args(REPO_PACKAGES))?;
    std::fs::write(&sysreqs, SYSREQS)?;
    Ok(dir)
}

/// The test repository served on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct RepoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl RepoServer {
    /// Serves `dir` (see `xtask/images/repo_server.py`).
    pub fn start(dir: &Path) -> Result<Self> {
        let mut child = Command::new("python3")
            .arg("xtask/images/repo_server.py")
            .arg("--dir")
            .arg(dir)
            .arg("--sysreqs")
            .arg(dir.join("sysreqs.json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the repository server")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let port = lines.by_ref().find_map(|l| {
                l.strip_prefix("listening on ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            });
            let _ = tx.send(port);
            lines.for_each(drop);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => Ok(Self {
                child,
                stdin,
                url: format!("http://127.0.0.1:{port}"),
            }),
            _ => bail!("the repository server did not start"),
        }
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // it exits on stdin's end
        let _ = self.child.wait();
    }
}

/// The podman wrapper for the emulator, whose ECR has no registry behind it
/// (`xtask/images/podman-emulator`).
pub fn podman_emulator() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_default()
        .join("xtask/images/podman-emulator")
}

/// The environment of the R suite that runs real containers: podman's configuration, the R
/// base image, the repository (as a package manager URL), the podman wrapper.
pub fn test_env(repo: &RepoServer) -> Vec<(String, String)> {
    let mut env = podman_env();
    env.extend([
        ("STARBURST_TEST_CONTAINERS".into(), "true".into()),
        ("STARBURST_TEST_RUNTIME_BASE".into(), R_IMAGE.into()),
        ("STARBURST_TEST_PACKAGE_MANAGER".into(), repo.url.clone()),
        (
            "STARBURST_PODMAN".into(),
            podman_emulator().display().to_string(),
        ),
        ("STARBURST_BUILD_NETWORK".into(), "host".into()),
    ]);
    env
}

/// Removes what the tests built (images named for the emulator's ECR, and dangling layers), so
/// runs do not pile up gigabytes; the base and R images stay for the next run.
pub fn remove_test_images() {
    let listed = podman()
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output();
    let Ok(listed) = listed else { return };
    let ours: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.contains(".dkr.ecr."))
        .map(str::to_owned)
        .collect();
    if !ours.is_empty() {
        let _ = podman()
            .args(["rmi", "--force"])
            .args(&ours)
            .stdout(Stdio::null())
            .status();
    }
    let _ = podman()
        .args(["image", "prune", "--force"])
        .stdout(Stdio::null())
        .status();
}
