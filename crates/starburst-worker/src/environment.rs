//! Sync mode: a worker restores its session's R packages before it starts R.
//!
//! An environment is content-addressed by its tag (the hash of its spec). Under
//! `environments/<tag>/` in the store:
//! - `manifest.json`: what to restore (written by the client when a session starts);
//! - `library.tar.zst`: the restored library, a zstd-compressed tar of its directory;
//! - `building`: the claim of the one worker that builds the archive (created put-if-absent, so
//!   two workers never build it both);
//! - `failed.json`: why the build failed (the client removes it when a session starts, so a
//!   new session tries again).
//!
//! [`EnvironmentSync::prepare`]: a worker downloads and unpacks the archive when it exists;
//! otherwise it claims the build, restores the manifest with a [`Restorer`] (R's
//! `starburst:::restore_environment()` in production), packs and uploads the archive; workers
//! that lost the claim wait for the archive (or the failure), and take the claim over when it
//! is older than `stale_after` (its builder died).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::{ObjectPath, ObjectStore, ObjectStoreExt};

/// Where environments live in the store.
pub const ENVIRONMENTS: &str = "environments";

/// The store paths of environment `tag`.
#[derive(Debug, Clone)]
pub struct EnvironmentPaths {
    /// `environments/<tag>/manifest.json`.
    pub manifest: ObjectPath,
    /// `environments/<tag>/library.tar.zst`.
    pub archive: ObjectPath,
    /// `environments/<tag>/building`.
    pub claim: ObjectPath,
    /// `environments/<tag>/failed.json`.
    pub failed: ObjectPath,
}

impl EnvironmentPaths {
    /// The paths of `tag`, which must be a single path segment.
    pub fn new(tag: &str) -> Result<Self, String> {
        let dir = ObjectPath::parse(ENVIRONMENTS)
            .and_then(|p| p.child(tag))
            .map_err(|e| format!("environment tag {tag:?}: {e}"))?;
        let child = |name: &str| dir.child(name).map_err(|e| e.to_string());
        Ok(Self {
            manifest: child("manifest.json")?,
            archive: child("library.tar.zst")?,
            claim: child("building")?,
            failed: child("failed.json")?,
        })
    }
}

/// Restores a manifest into a library directory.
#[async_trait]
pub trait Restorer: Send + Sync + std::fmt::Debug {
    /// Installs the packages of `manifest` into `library`; the error is what to tell the user
    /// (the tail of R's output).
    async fn restore(&self, manifest: &Path, library: &Path) -> Result<(), String>;
}

/// `Rscript -e 'starburst:::restore_environment(<manifest>, <library>)'`, its output relayed to
/// this process's stderr (the worker log).
#[derive(Debug, Clone)]
pub struct RscriptRestorer {
    /// The `Rscript` to run.
    pub rscript: PathBuf,
}

#[async_trait]
impl Restorer for RscriptRestorer {
    async fn restore(&self, manifest: &Path, library: &Path) -> Result<(), String> {
        let output = tokio::process::Command::new(&self.rscript)
            .args([
                "--vanilla",
                "-e",
                "a <- commandArgs(TRUE); \
                 starburst:::restore_environment(a[[1]], a[[2]], keep_system_packages = TRUE)",
            ])
            .arg(manifest)
            .arg(library)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("could not start {}: {e}", self.rscript.display()))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        for line in text.lines() {
            tracing::info!(target: "restore", "{line}");
        }
        if output.status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            Err(format!(
                "restoring the environment failed ({}):\n{}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    }
}

/// How the library got here.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Downloaded and unpacked the archive another worker (or session) built.
    Downloaded {
        /// Archive size in bytes.
        bytes: u64,
        /// Seconds from the start of `prepare` to the unpacked library.
        seconds: f64,
    },
    /// Built it here (restored, packed, uploaded).
    Built {
        /// Archive size in bytes.
        bytes: u64,
        /// Seconds from the start of `prepare` to the uploaded archive.
        seconds: f64,
    },
}

/// Prepares environment `tag`'s library at `library` before R starts.
#[derive(Debug)]
pub struct EnvironmentSync {
    store: Arc<dyn ObjectStore>,
    paths: EnvironmentPaths,
    library: PathBuf,
    restorer: Box<dyn Restorer>,
    /// How often a waiting worker looks for the archive.
    pub poll: Duration,
    /// A claim older than this is taken over (its builder is presumed dead).
    pub stale_after: Duration,
    /// How long a worker waits for another's build before it gives up.
    pub wait_limit: Duration,
}

impl EnvironmentSync {
    /// Environment `tag` of `store`, restored into `library` by `restorer`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        tag: &str,
        library: impl Into<PathBuf>,
        restorer: Box<dyn Restorer>,
    ) -> Result<Self, String> {
        Ok(Self {
            store,
            paths: EnvironmentPaths::new(tag)?,
            library: library.into(),
            restorer,
            poll: Duration::from_secs(2),
            stale_after: Duration::from_secs(30 * 60),
            wait_limit: Duration::from_secs(60 * 60),
        })
    }

    /// The library directory (for `R_LIBS`).
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Makes the library ready: download, or build once, or wait for the builder.
    pub async fn prepare(&self, worker_id: &str) -> Result<Prepared, String> {
        let started = Instant::now();
        loop {
            if let Some(archive) = self.get(&self.paths.archive).await? {
                let bytes = archive.len() as u64;
                unpack(archive, &self.library)?;
                install_system_packages(&self.library).await?;
                return Ok(Prepared::Downloaded {
                    bytes,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            if let Some(failed) = self.get(&self.paths.failed).await? {
                return Err(format!(
                    "another worker could not restore this environment: {}",
                    String::from_utf8_lossy(&failed)
                ));
            }
            let claim = serde_json::json!({ "worker": worker_id }).to_string();
            let claimed = self
                .store
                .create(&self.paths.claim, Bytes::from(claim))
                .await
                .map_err(|e| format!("claiming the environment build: {e}"))?;
            if claimed {
                tracing::info!(worker = worker_id, "building the environment's library");
                return self.build(started).await;
            }
            if self.claim_is_stale().await? {
                tracing::warn!("the environment's builder went quiet; taking its claim over");
                let _ = self.store.delete(&self.paths.claim).await;
                continue;
            }
            if started.elapsed() > self.wait_limit {
                return Err(format!(
                    "waited {} s for another worker to build this environment",
                    started.elapsed().as_secs()
                ));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn get(&self, path: &ObjectPath) -> Result<Option<Bytes>, String> {
        self.store
            .get_opt(path)
            .await
            .map_err(|e| format!("reading {path}: {e}"))
    }

    async fn claim_is_stale(&self) -> Result<bool, String> {
        match self.store.head(&self.paths.claim).await {
            Ok(meta) => Ok(SystemTime::now()
                .duration_since(meta.modified)
                .is_ok_and(|age| age > self.stale_after)),
            Err(starburst_cloud::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(format!("reading the build claim: {e}")),
        }
    }

    async fn build(&self, started: Instant) -> Result<Prepared, String> {
        let result = self.restore_and_pack().await;
        match result {
            Ok(archive) => {
                let bytes = archive.len() as u64;
                self.store
                    .put_large(&self.paths.archive, archive)
                    .await
                    .map_err(|e| format!("uploading the environment archive: {e}"))?;
                Ok(Prepared::Built {
                    bytes,
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            Err(message) => {
                let failed = serde_json::json!({ "error": message }).to_string();
                let _ = self
                    .store
                    .put(&self.paths.failed, Bytes::from(failed))
                    .await;
                let _ = self.store.delete(&self.paths.claim).await;
                Err(message)
            }
        }
    }

    async fn restore_and_pack(&self) -> Result<Bytes, String> {
        let manifest = self.get(&self.paths.manifest).await?.ok_or_else(|| {
            format!(
                "no manifest at {}: the client writes it when a session starts",
                self.paths.manifest
            )
        })?;
        std::fs::create_dir_all(&self.library)
            .map_err(|e| format!("creating {}: {e}", self.library.display()))?;
        let file = self.library.with_extension("manifest.json");
        std::fs::write(&file, &manifest).map_err(|e| format!("writing {}: {e}", file.display()))?;
        self.restorer.restore(&file, &self.library).await?;
        let library = self.library.clone();
        tokio::task::spawn_blocking(move || pack(&library))
            .await
            .map_err(|e| format!("packing the library: {e}"))?
    }
}

/// Where a library archive carries the `.deb` files of its packages' system requirements.
pub const SYSTEM_PACKAGES: &str = ".sysreqs/debs";

/// Installs the system requirements an archive carries (`dpkg -i`, offline): the builder
/// installed them from the network, the workers that download its library install the same
/// files. Nothing to do when the archive carries none.
pub async fn install_system_packages(library: &Path) -> Result<(), String> {
    let dir = library.join(SYSTEM_PACKAGES);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut debs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    if debs.is_empty() {
        return Ok(());
    }
    debs.sort();
    let output = tokio::process::Command::new("dpkg")
        .arg("--install")
        .args(&debs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("could not run dpkg for the system requirements: {e}"))?;
    if output.status.success() {
        tracing::info!(packages = debs.len(), "system requirements installed");
        Ok(())
    } else {
        Err(format!(
            "installing the system requirements ({} .deb files) failed: {}",
            debs.len(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The directory `library` as a zstd-compressed tar of its entries (paths relative to it).
pub fn pack(library: &Path) -> Result<Bytes, String> {
    let encoder = zstd::Encoder::new(Vec::new(), 3).map_err(|e| e.to_string())?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", library)
        .map_err(|e| format!("packing {}: {e}", library.display()))?;
    let encoder = tar.into_inner().map_err(|e| e.to_string())?;
    let bytes = encoder.finish().map_err(|e| e.to_string())?;
    Ok(Bytes::from(bytes))
}

/// Unpacks an archive made by [`pack`] into `library` (created when missing).
pub fn unpack(archive: Bytes, library: &Path) -> Result<(), String> {
    std::fs::create_dir_all(library).map_err(|e| format!("creating {}: {e}", library.display()))?;
    let decoder = zstd::Decoder::new(Cursor::new(archive)).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(true);
    tar.unpack(library)
        .map_err(|e| format!("unpacking into {}: {e}", library.display()))
}
