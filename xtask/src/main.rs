//! `cargo xtask <command>`: starburst's development automation (set-up, tests, demo,
//! benchmark, release tarball). Everything a developer or CI runs goes through here, so the
//! README's two commands stay true.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod dist;
mod emulator;
mod images;
mod site;
#[cfg(test)]
mod tidy;

#[derive(Debug, Parser)]
#[command(about = "starburst development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install what is missing (Debian's R packages), build, and run every test: the CI job.
    Ci,
    /// Install the system packages the project needs (apt when root, else print the command).
    Deps,
    /// Run every test (fmt, clippy, cargo tests, R package install, testthat, end-to-end, site).
    Test,
    /// Build and install the R package into the project's R library.
    Install,
    /// The main job: a parallel bootstrap through plan(starburst) on the local backend.
    Demo {
        /// Number of workers.
        #[arg(long, default_value_t = 2)]
        workers: u32,
    },
    /// Per-future overhead and throughput of starburst against multisession and sequential.
    Bench {
        /// Futures per measurement.
        #[arg(long, default_value_t = 200)]
        futures: u32,
        /// Repetitions per plan.
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// Delay of every AWS request in the cloud-latency benchmark (ms).
        #[arg(long, default_value_t = 30)]
        latency_ms: u32,
        /// Worker counts of the cloud-latency benchmark.
        #[arg(long, value_delimiter = ',', default_values_t = [2, 6, 16])]
        scale_workers: Vec<u32>,
    },
    /// Build the R package's pkgdown site offline into `$CARGO_TARGET_DIR/site` and open
    /// every page in headless Chromium (renders, internal links resolve; screenshots).
    Site,
    /// Run the future.tests conformance suite (future 1.31, and 1.70 when its library exists).
    Conformance,
    /// Build an R source tarball with vendored crates that installs offline.
    Dist,
    /// Only the R suite's real-container tests (podman), with the package `cargo xtask test`
    /// installed (or the library given).
    Containers {
        /// The R library holding the package (default: `$CARGO_TARGET_DIR/R-library-test`).
        #[arg(long)]
        lib: Option<PathBuf>,
        /// Measure instead (`xtask/r/environments.R`): a worker's start to its first future
        /// per environment mode and package count, medians of this many sessions.
        #[arg(long)]
        figures: Option<u32>,
    },
    /// Create the Python venv with the AWS emulator (moto server) the AWS adapter's tests use.
    EmulatorVenv,
    /// A local AWS without an account: moto plus a Fargate simulator that runs
    /// `starburst-worker` processes for ECS tasks (for `plan(starburst, backend = "aws")`).
    Emulator {
        /// Port on 127.0.0.1 (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Where to write the session configuration (default:
        /// `$CARGO_TARGET_DIR/emulator/config.json`).
        #[arg(long)]
        config_out: Option<PathBuf>,
        /// The executable ECS tasks run (default: `starburst-worker`, built now).
        #[arg(long)]
        worker_bin: Option<PathBuf>,
        /// Delay every AWS request by this many milliseconds (real S3 in-region: about 30).
        #[arg(long, default_value_t = 0)]
        latency_ms: u32,
        /// Run each ECS task's image as a real container (`podman run --network host`)
        /// instead of the worker binary on this machine.
        #[arg(long)]
        containers: bool,
        /// Run the emulator's own tests (Python, with a fake worker) instead.
        #[arg(long, conflicts_with_all = ["port", "config_out", "worker_bin", "latency_ms", "containers"])]
        test: bool,
    },
}

/// The AWS emulator the AWS adapter's tests run against, pinned: moto, the botocore whose
/// service models strict mode validates requests against (`xtask/emulator/strict.py`), and
/// `regex` for the models' `\p{L}` patterns.
const EMULATOR_PINS: &[&str] = &[
    "moto[server]==5.2.5",
    "botocore==1.44.8",
    "boto3==1.44.8",
    "regex==2026.11.19",
];

/// Debian packages the R package and the demo need: R and the R packages it imports or the
/// demo uses.
const DEBIAN_PACKAGES: &[&str] = &[
    "r-base-dev",
    "r-cran-future",
    "r-cran-future.apply",
    "r-cran-listenv",
    "r-cran-globals",
    "r-cran-parallelly",
    "r-cran-jsonlite",
    "r-cran-cli",
];

/// What the tests need beyond [`DEBIAN_PACKAGES`]: the R packages the tests and vignettes
/// use, and what the documentation site is built and checked with (pkgdown, pandoc, headless
/// Chromium).
const DEBIAN_TEST_PACKAGES: &[&str] = &[
    "r-cran-furrr",
    "r-cran-testthat",
    "r-cran-progressr",
    "r-cran-processx",
    "r-cran-callr",
    "r-cran-withr",
    "r-cran-roxygen2",
    "r-cran-curl",
    "r-cran-knitr",
    "r-cran-rmarkdown",
    "r-cran-foreach",
    "r-cran-pkgdown",
    "chromium-headless-shell",
    "pandoc",
    // Real container images in the tests (xtask/src/images.rs).
    "podman",
    "runc",
    "debootstrap",
    "uidmap",
    "fuse-overlayfs",
    "slirp4netns",
    // The test repository's packages (images::REPO_PACKAGES), from Debian's builds.
    "r-cran-data.table",
    "r-cran-xml2",
    "r-cran-r6",
    "r-cran-magrittr",
    "r-cran-glue",
    "r-cran-stringi",
    "r-cran-zoo",
    "r-cran-digest",
    "r-cran-yaml",
    "r-cran-rcpp",
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        // One build directory outside the checkout, shared by cargo, R CMD INSTALL and CI.
        // SAFETY-free: set before any thread starts.
        set_env("CARGO_TARGET_DIR", default_target_dir());
    }
    match cli.command {
        Cmd::Ci => {
            deps(&all_packages())?;
            test()
        }
        Cmd::Deps => deps(&all_packages()),
        Cmd::Test => test(),
        Cmd::Install => install().map(|_| ()),
        Cmd::Demo { workers } => demo(workers),
        Cmd::Bench {
            futures,
            reps,
            latency_ms,
            scale_workers,
        } => bench(futures, reps, latency_ms, &scale_workers),
        Cmd::Conformance => conformance(),
        Cmd::Site => {
            ensure_r()?;
            let lib = install()?;
            site::site(&lib).map(|_| ())
        }
        Cmd::Dist => dist::dist(&root).map(|p| println!("{}", p.display())),
        Cmd::Containers { lib, figures } => {
            let lib = lib.unwrap_or_else(|| target_dir().join("R-library-test"));
            match figures {
                Some(reps) => container_run(&lib, &["xtask/r/environments.R", &reps.to_string()]),
                None => container_run(
                    &lib,
                    &[
                        "-e",
                        &TESTTHAT.replace("load_package", "filter = 'containers', load_package"),
                    ],
                ),
            }
        }
        Cmd::EmulatorVenv => emulator_venv().map(|p| println!("{}", p.display())),
        Cmd::Emulator { test: true, .. } => emulator::run_python_tests(),
        Cmd::Emulator {
            port,
            config_out,
            worker_bin,
            latency_ms,
            containers,
            ..
        } => emulator::foreground(port, config_out, worker_bin, latency_ms, containers),
    }
}

#[allow(unsafe_code)]
fn set_env(k: &str, v: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: called from main before any other thread exists.
    unsafe { std::env::set_var(k, v) }
}

fn project_root() -> PathBuf {
    // `cargo run` sets it at run time: the checkout being worked on. The compile-time value
    // can name another checkout when clones share one target directory (its `debug/xtask` is
    // then whichever checkout built it last).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn default_target_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/starburst/target")
}

fn target_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").expect("set in main"))
}

/// The R library the project installs its package into (never the system one).
fn r_library() -> PathBuf {
    target_dir().join("R-library")
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    eprintln!("  ({:.1}s)", t.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn all_packages() -> Vec<&'static str> {
    [DEBIAN_PACKAGES, DEBIAN_TEST_PACKAGES].concat()
}

fn missing_debian_packages(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the missing ones of `packages` (apt when root, else says what to run).
fn deps(packages: &[&'static str]) -> Result<()> {
    let missing = missing_debian_packages(packages);
    if missing.is_empty() {
        eprintln!("system packages: all present");
        return Ok(());
    }
    let cmd = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!("missing Debian packages; run as root:\n  sudo sh -c '{cmd}'");
    }
    run(Command::new("sh").args(["-c", &cmd]))
}

/// Creates `$CARGO_TARGET_DIR/moto-venv` with the pinned moto server unless it is there;
/// returns the `moto_server` executable.
fn emulator_venv() -> Result<PathBuf> {
    let venv = target_dir().join("moto-venv");
    let server = venv.join("bin").join("moto_server");
    let stamp = venv.join("starburst-pin");
    let pins = EMULATOR_PINS.join(" ");
    if server.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) {
        eprintln!("emulator: {pins} present in {}", venv.display());
        return Ok(server);
    }
    if !have("python3") {
        bail!("python3 is needed for the AWS emulator; install python3 and python3-venv");
    }
    std::fs::create_dir_all(target_dir())?;
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(EMULATOR_PINS))?;
    if !server.is_file() {
        bail!("pip installed {pins} but {} is missing", server.display());
    }
    std::fs::write(&stamp, &pins)?;
    Ok(server)
}

/// Installs R and the R packages of the tests when any is missing.
fn ensure_r() -> Result<()> {
    if !have("Rscript") || !missing_debian_packages(&all_packages()).is_empty() {
        deps(&all_packages())?;
    }
    Ok(())
}

/// A line saying what a long step does and roughly how long it takes.
fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// `cargo xtask demo`, the README's first command: what a newcomer needs and nothing more. The
/// R package is built without the AWS SDK (`STARBURST_LOCAL_ONLY`: the local backend only,
/// about a fifth of the full build) into its own library, so the project library keeps the
/// full package.
fn demo(workers: u32) -> Result<()> {
    let t = Instant::now();
    step(
        "1/3 system packages: R and the R packages the demo uses (apt, about 2 minutes on a fresh machine; nothing when present)",
    );
    if !have("Rscript") || !missing_debian_packages(DEBIAN_PACKAGES).is_empty() {
        deps(DEBIAN_PACKAGES)?;
    }
    step(
        "2/3 the starburst R package, local backend only (compiles its Rust engine without the AWS SDK: about 2 minutes on a fresh 2-core machine, seconds once built)",
    );
    let lib = target_dir().join("R-library-demo");
    std::fs::create_dir_all(&lib)?;
    r_install_with(&lib, None, &[("STARBURST_LOCAL_ONLY", "1")])?;
    step(&format!(
        "3/3 a bootstrap on {workers} local workers through plan(starburst), then sequentially (about 30 seconds)"
    ));
    rscript(&lib, &["xtask/r/demo.R", &workers.to_string()])?;
    eprintln!("\ndemo done in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds and installs the R package into the project's library; returns the library.
fn install() -> Result<PathBuf> {
    let lib = r_library();
    std::fs::create_dir_all(&lib)?;
    r_install(&lib, None)?;
    Ok(lib)
}

/// `R CMD INSTALL rpkg` into `lib` (never the system library), with `R_LIBS` when given.
fn r_install(lib: &Path, r_libs: Option<&str>) -> Result<()> {
    r_install_with(lib, r_libs, &[])
}

/// [`r_install`] with more environment variables for the build (see rpkg/src/Makevars).
fn r_install_with(lib: &Path, r_libs: Option<&str>, env: &[(&str, &str)]) -> Result<()> {
    // The library is the project's own: a lock left by an interrupted install is stale.
    for entry in std::fs::read_dir(lib).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("00LOCK-") {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    let mut cmd = Command::new("R");
    cmd.args(["CMD", "INSTALL", "--no-test-load"])
        .arg(format!("--library={}", lib.display()))
        .arg("rpkg");
    if let Some(libs) = r_libs {
        cmd.env("R_LIBS", libs);
    }
    cmd.envs(env.iter().copied());
    run(&mut cmd)?;
    if !lib
        .join("starburst")
        .join("bin")
        .join("starburst-worker")
        .is_file()
    {
        bail!(
            "R CMD INSTALL did not install starburst into {}",
            lib.display()
        );
    }
    Ok(())
}

fn r_libs(lib: &Path) -> String {
    match std::env::var("R_LIBS") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", lib.display()),
        _ => lib.display().to_string(),
    }
}

fn rscript(lib: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("Rscript")
        .args(args)
        .env("R_LIBS", r_libs(lib)))
}

/// Fails when `rpkg/man` or `rpkg/NAMESPACE` is not what roxygen makes of `rpkg/R` (with the
/// installed package's code), naming the files and the command that brings them up to date.
const ROXYGEN_CURRENT: &str = r#"
copy <- file.path(tempfile("roxygen-"), "rpkg")
dir.create(file.path(copy, "R"), recursive = TRUE)
invisible(file.copy(c("rpkg/DESCRIPTION", "rpkg/NAMESPACE"), copy))
invisible(file.copy(list.files("rpkg/R", full.names = TRUE), file.path(copy, "R")))
invisible(file.copy("rpkg/man", copy, recursive = TRUE))
suppressMessages(roxygen2::roxygenise(copy, load_code = roxygen2::load_installed))
files <- c("NAMESPACE", file.path("man", union(list.files("rpkg/man"), list.files(file.path(copy, "man")))))
read <- function(path) if (file.exists(path)) readLines(path, warn = FALSE) else character(0)
stale <- files[!vapply(files, function(f) identical(read(file.path("rpkg", f)), read(file.path(copy, f))), NA)]
if (length(stale)) {
  stop("the R documentation is not what roxygen makes of rpkg/R: ", paste(stale, collapse = ", "),
       ". With the package installed in R_LIBS, run in the checkout: ",
       "Rscript -e 'roxygen2::roxygenise(\"rpkg\", load_code = roxygen2::load_installed)'",
       call. = FALSE)
}
cat("R documentation is current\n")
"#;

/// The R suite, on the installed package.
const TESTTHAT: &str = "testthat::test_local('rpkg', load_package = 'installed', reporter = testthat::ProgressReporter$new(show_praise = FALSE), stop_on_failure = TRUE)";

/// `cargo xtask test`. Its R package is built in the `dev` profile into its own library
/// (`R-library-test`): the AWS SDK, most of the build, is then compiled at opt-level 0 (a
/// fraction of the `rpkg` profile's build, which took a quarter of an hour cold here), and the
/// R suites run with the engine's debug assertions on. (It does not share the SDK `cargo test`
/// built: the tests' dev-dependencies turn on features of tokio and others, so every crate
/// above them builds again with the R package's own features.)
fn test() -> Result<()> {
    let t = Instant::now();
    let lap = |what: &str| eprintln!("test: {what} done at {:.0}s", t.elapsed().as_secs_f64());
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    lap("clippy");
    let moto = emulator_venv()?;
    emulator::run_python_tests()?;
    run(cargo()
        .args(["test", "--workspace"])
        .env("STARBURST_MOTO", &moto))?;
    // The facade as the demo builds it, without the aws backend.
    run(cargo().args(["test", "-p", "starburst", "--no-default-features", "--lib"]))?;
    lap("cargo tests");
    let lib = target_dir().join("R-library-test");
    std::fs::create_dir_all(&lib)?;
    r_install_with(&lib, None, &[("STARBURST_CARGO_PROFILE", "dev")])?;
    run(Command::new("Rscript")
        .args(["-e", ROXYGEN_CURRENT])
        .env("R_LIBS", r_libs(&lib)))?;
    let testthat = TESTTHAT;
    eprintln!("R end-to-end tests, local backend");
    run(Command::new("Rscript")
        .args(["-e", testthat])
        .env("R_LIBS", r_libs(&lib))
        .env("NOT_CRAN", "true"))?;
    // The same suite on the aws backend: the emulator's Fargate simulator runs the installed
    // package's worker binary, whose R finds the package through R_LIBS.
    eprintln!("R end-to-end tests, aws backend (emulator)");
    let emu = r_emulator(&lib, "emulator-test", &["--stop-grace", "2"])?;
    run(Command::new("Rscript")
        .args(["-e", testthat])
        .env("R_LIBS", r_libs(&lib))
        .env("NOT_CRAN", "true")
        .env("STARBURST_TEST_BACKEND", "aws")
        .envs(emu.env()))?;
    emu.check_nothing_rejected()?;
    drop(emu);
    container_run(
        &lib,
        &[
            "-e",
            &testthat.replace("load_package", "filter = 'containers', load_package"),
        ],
    )?;
    lap("R tests");
    site::site(&lib)?;
    eprintln!("all tests passed in {:.0}s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Runs Rscript with `rscript_args` (the suite's container tests, `test-containers.R`, or the
/// figures) with the package installed in `lib`:
/// the runtime and environments built with podman from a local Debian base and a local binary
/// repository, run as containers by the emulator's Fargate simulator (`--containers`).
fn container_run(lib: &Path, rscript_args: &[&str]) -> Result<()> {
    eprintln!("R end-to-end tests, real containers (podman, emulator --containers)");
    if !images::available() {
        bail!(
            "podman does not run here (`podman info` failed): the container tests need it; \
             install podman runc debootstrap uidmap fuse-overlayfs slirp4netns"
        );
    }
    images::ensure_images()?;
    let repo = images::RepoServer::start(&images::ensure_repo()?)?;
    // Its CodeBuild simulator builds with the podman that "pushes" to the emulator's ECR.
    let podman = images::podman_emulator().display().to_string();
    let emu = r_emulator(
        lib,
        "emulator-containers",
        &["--stop-grace", "2", "--containers", "--podman", &podman],
    )?;
    let outcome = run(Command::new("Rscript")
        .args(rscript_args)
        .env("R_LIBS", r_libs(lib))
        .env("NOT_CRAN", "true")
        .env("STARBURST_TEST_BACKEND", "aws")
        .envs(emu.env())
        .envs(images::test_env(&repo)));
    let checked = emu.check_nothing_rejected();
    drop(emu); // stops its containers
    images::remove_test_images();
    outcome?;
    checked
}

/// An emulator in the background whose workers are the R package installed in `lib` (its
/// worker binary; their R finds the package through `R_LIBS`), with its files in
/// `$CARGO_TARGET_DIR/<dir>`.
fn r_emulator(lib: &Path, dir: &str, args: &[&str]) -> Result<emulator::Emulator> {
    let dir = target_dir().join(dir);
    std::fs::create_dir_all(&dir)?;
    emulator::Emulator::start(
        &emulator::python()?,
        &emulator::EmulatorOptions {
            worker_bin: lib.join("starburst").join("bin").join("starburst-worker"),
            config_out: dir.join("config.json"),
            log_dir: Some(dir.join("logs")),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: [
                vec![("R_LIBS".into(), r_libs(lib))],
                if args.contains(&"--containers") {
                    let python = emulator::python()?.display().to_string();
                    [
                        images::podman_env(),
                        vec![("STARBURST_EMULATOR_PYTHON".into(), python)],
                    ]
                    .concat()
                } else {
                    Vec::new()
                },
            ]
            .concat(),
        },
    )
}

/// `cargo xtask bench`: the R benchmark against its peers, on the local backend and on the
/// emulator's aws backend, then S3 multipart against single PUT on the emulator, then the aws
/// backend's throughput by worker count on an emulator with `latency_ms` per request.
fn bench(futures: u32, reps: u32, latency_ms: u32, scale_workers: &[u32]) -> Result<()> {
    ensure_r()?;
    let lib = install()?;
    let emu = r_emulator(&lib, "emulator-bench", &[])?;
    eprintln!(
        "emulator: {} (set-up {})",
        emu.url(),
        emu.config().display()
    );
    run(Command::new("Rscript")
        .args(["xtask/r/bench.R", &futures.to_string(), &reps.to_string()])
        .env("R_LIBS", r_libs(&lib))
        .env("STARBURST_BENCH_EMULATOR", emu.url())
        .envs(emu.env()))?;
    // Large globals shared by many futures, local and on the emulator, against multisession.
    run(Command::new("Rscript")
        .args(["xtask/r/shared.R", &reps.to_string()])
        .env("R_LIBS", r_libs(&lib))
        .env("STARBURST_BENCH_EMULATOR", emu.url())
        .envs(emu.env()))?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "starburst-aws",
            "--example",
            "s3_throughput",
            "--",
            "starburst-emulator",
            "100",
            "3",
        ])
        .envs(emu.env()))?;
    drop(emu);
    // The scheduler at up to a thousand workers, in process, at S3 latency.
    run(cargo().args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "starburst-scheduler",
        "--example",
        "simulate",
    ]))?;
    if scale_workers.is_empty() {
        return Ok(());
    }
    // Enough Fargate vCPU quota for the largest worker count (1 vCPU each).
    let vcpus = scale_workers.iter().max().copied().unwrap_or(6).max(6);
    let emu = r_emulator(
        &lib,
        "emulator-scale",
        &[
            "--latency-ms",
            &latency_ms.to_string(),
            "--fargate-vcpus",
            &vcpus.to_string(),
        ],
    )?;
    let counts: Vec<String> = scale_workers.iter().map(u32::to_string).collect();
    run(Command::new("Rscript")
        .args([
            "xtask/r/scale.R",
            &futures.to_string(),
            &reps.to_string(),
            &counts.join(","),
        ])
        .env("R_LIBS", r_libs(&lib))
        .env("STARBURST_BENCH_EMULATOR", emu.url())
        .env("STARBURST_BENCH_LATENCY_MS", latency_ms.to_string())
        .envs(emu.env()))
}

fn conformance() -> Result<()> {
    ensure_r()?;
    let lib = install()?;
    let plan = r#"--test-plan=starburst::starburst,workers=2,backend="local""#;
    let mut ran = false;
    let check = |libs: String| {
        run(Command::new("Rscript")
            .args(["-e", "future.tests::check", "--args", plan])
            .env("R_LIBS", libs))
    };
    if Command::new("Rscript")
        .args([
            "-e",
            "q(status = !requireNamespace('future.tests', quietly = TRUE))",
        ])
        .env("R_LIBS", r_libs(&lib))
        .status()?
        .success()
    {
        check(r_libs(&lib))?;
        ran = true;
    } else {
        eprintln!("future.tests is not installed; see README (Conformance) for how to install it");
    }
    let lib170 = std::env::var_os("LIB170")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".local/share/R-future170")
        });
    if lib170.join("future.tests").is_dir() {
        let lib2 = target_dir().join("R-library-future170");
        std::fs::create_dir_all(&lib2)?;
        let libs = format!("{}:{}", lib2.display(), lib170.display());
        r_install(&lib2, Some(&libs))?;
        check(libs)?;
        ran = true;
    } else {
        eprintln!(
            "no future 1.70 library at {}; see README (Conformance)",
            lib170.display()
        );
    }
    if !ran {
        bail!("no conformance suite could run");
    }
    Ok(())
}
