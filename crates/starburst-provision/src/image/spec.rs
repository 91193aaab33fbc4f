//! The environment spec: what a worker image holds, and its tag.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use starburst_cloud::{Arch, Error, Result};

use super::runtime::Distribution;

/// Packages that ship with R itself (priority `base`): never installed into an image.
pub const BASE_PACKAGES: &[&str] = &[
    "base",
    "compiler",
    "datasets",
    "graphics",
    "grDevices",
    "grid",
    "methods",
    "parallel",
    "splines",
    "stats",
    "stats4",
    "tcltk",
    "tools",
    "utils",
];

/// Packages of priority `recommended`, installed with R by `rocker/r-ver`: a session's copy of
/// them is not pinned (the image keeps the ones its R version ships with).
pub const RECOMMENDED_PACKAGES: &[&str] = &[
    "boot",
    "class",
    "cluster",
    "codetools",
    "foreign",
    "KernSmooth",
    "lattice",
    "MASS",
    "Matrix",
    "mgcv",
    "nlme",
    "nnet",
    "rpart",
    "spatial",
    "survival",
];

/// The R package that is installed from its own source tarball, never from a repository.
pub const STARBURST_PACKAGE: &str = "starburst";

/// Everything a worker image is made of. Two specs with the same content have the same
/// [`tag`](Self::tag), whatever order their packages were given in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    /// R version, `major.minor.patch` (also the `rocker/r-ver` tag).
    pub r_version: String,
    /// Target architecture.
    pub arch: Arch,
    /// Packages by name (sorted), each pinned to one version and source.
    pub packages: BTreeMap<String, Package>,
    /// Package repositories by name (e.g. `CRAN`) → URL, as the user's lockfile or session
    /// names them; [`manifest`](Self::manifest) rewrites them to binary repositories.
    pub repositories: BTreeMap<String, String>,
    /// The Posit Package Manager snapshot binaries come from: a date `YYYY-MM-DD`, or
    /// `latest` (pinned versions are checked after the install either way, and a version the
    /// snapshot does not hold is installed from the repository's archive).
    pub snapshot: String,
    /// The runtime this environment builds on: its tag (built per account) or a published image.
    pub runtime: String,
    /// The runtime's distribution (which binaries and system requirements fit).
    pub distribution: Distribution,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Exact version, e.g. `1.34.0`.
    pub version: String,
    /// Where that version comes from.
    pub source: PackageSource,
}

/// Where a package's pinned version comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PackageSource {
    /// A CRAN-like repository (CRAN, Posit Package Manager, r-universe), by its name in
    /// [`EnvironmentSpec::repositories`] (renv's `Repository` field).
    Repository {
        /// Repository name, e.g. `CRAN`.
        name: String,
    },
    /// A GitHub remote at one commit, `user/repo@sha`.
    GitHub {
        /// GitHub user or organisation.
        user: String,
        /// Repository.
        repo: String,
        /// Full commit SHA.
        sha: String,
    },
}

/// BLAKE3 of a file's content, lowercase hex.
pub(crate) fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).map_err(|e| {
        Error::other(
            "hash file",
            path.display().to_string(),
            format!("{e}; check the path"),
        )
    })?;
    hasher
        .update_reader(file)
        .map_err(|e| Error::other("hash file", path.display().to_string(), e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Bumped whenever the canonical form of a spec changes meaning.
const CANONICAL_FORMAT: u32 = 2;

/// What the tag hashes: the whole spec and the environment template.
#[derive(Serialize)]
struct Canonical<'a> {
    format: u32,
    spec: &'a EnvironmentSpec,
    template_blake3: String,
}

/// Where an environment's packages come from besides the lockfile or session: the runtime it
/// builds on and the binary snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentBase {
    /// The runtime's tag or published image.
    pub runtime: String,
    /// The runtime's distribution.
    pub distribution: Distribution,
    /// `YYYY-MM-DD` or `latest`.
    pub snapshot: String,
}

impl EnvironmentSpec {
    /// The spec of a project with a `renv.lock` (its JSON text). `R.Version`, `R.Repositories`
    /// and every package's version and source come from the lockfile; starburst itself (it is
    /// in the runtime) and base packages, if listed, are left out; recommended packages
    /// stay pinned as locked. Packages from a repository (by renv's `Repository` name, the first
    /// of `R.Repositories` when absent) and from GitHub (at their `RemoteSha`) are supported;
    /// packages from any other source (Bioconductor, local, URL, unknown) are refused, all of
    /// them named in one error that says what to do.
    pub fn from_renv_lock(json: &str, arch: Arch, base: &EnvironmentBase) -> Result<Self> {
        const OP: &str = "read renv.lock";
        let root: Value = serde_json::from_str(json).map_err(|e| {
            Error::invalid(
                OP,
                format!("renv.lock is not valid JSON ({e}); regenerate it with renv::snapshot()"),
            )
        })?;
        let r = field(&root, "R", "R")?;
        let r_version = string_field(r, "Version", "R.Version")?.to_owned();
        let repos = field(r, "Repositories", "R.Repositories")?
            .as_array()
            .ok_or_else(|| bad_field("R.Repositories", "must be an array of {Name, URL}"))?;
        let mut repositories = BTreeMap::new();
        let mut first_listed = None;
        for (i, repo) in repos.iter().enumerate() {
            let at = format!("R.Repositories[{i}]");
            let name = string_field(repo, "Name", &format!("{at}.Name"))?;
            let url = string_field(repo, "URL", &format!("{at}.URL"))?;
            first_listed.get_or_insert_with(|| name.to_owned());
            repositories.insert(name.to_owned(), url.to_owned());
        }
        let packages = field(&root, "Packages", "Packages")?
            .as_object()
            .ok_or_else(|| bad_field("Packages", "must be an object keyed by package name"))?;
        let mut pinned = BTreeMap::new();
        let mut refused = Vec::new();
        for (key, entry) in packages {
            let at = format!("Packages.{key}");
            let name = string_field(entry, "Package", &format!("{at}.Package"))?;
            if name != key {
                return Err(bad_field(
                    &format!("{at}.Package"),
                    &format!("is {name:?} but the entry is keyed {key:?}"),
                ));
            }
            if name == STARBURST_PACKAGE || BASE_PACKAGES.contains(&name) {
                continue;
            }
            let version = string_field(entry, "Version", &format!("{at}.Version"))?;
            let source = string_field(entry, "Source", &format!("{at}.Source"))?;
            let source = match source {
                "Repository" => PackageSource::Repository {
                    name: match entry.get("Repository") {
                        None => first_listed.clone().ok_or_else(|| {
                            bad_field(
                                "R.Repositories",
                                &format!(
                                    "is empty but {at} names no Repository; add CRAN to \
                                     R.Repositories"
                                ),
                            )
                        })?,
                        Some(_) => string_field(entry, "Repository", &format!("{at}.Repository"))?
                            .to_owned(),
                    },
                },
                "GitHub" => PackageSource::GitHub {
                    user: string_field(entry, "RemoteUsername", &format!("{at}.RemoteUsername"))?
                        .to_owned(),
                    repo: string_field(entry, "RemoteRepo", &format!("{at}.RemoteRepo"))?
                        .to_owned(),
                    sha: string_field(entry, "RemoteSha", &format!("{at}.RemoteSha"))?.to_owned(),
                },
                other => {
                    refused.push(format!("{key} {version} ({other})"));
                    continue;
                }
            };
            if let PackageSource::Repository { name: repo } = &source
                && is_development_version(version)
                && repositories
                    .get(repo)
                    .is_some_and(|url| crate::image::render::is_cran(url))
            {
                refused.push(format!(
                    "{key} {version} (a development version, which CRAN never has)"
                ));
                continue;
            }
            pinned.insert(
                name.to_owned(),
                Package {
                    version: version.to_owned(),
                    source,
                },
            );
        }
        if !refused.is_empty() {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} cannot be installed on workers: {}. Workers install packages from \
                     CRAN-like repositories (CRAN, Posit Package Manager, r-universe) and from \
                     GitHub commits; install these from one of those (a local package can be \
                     pushed to GitHub or an r-universe), then run renv::snapshot() again",
                    if refused.len() == 1 {
                        "A package"
                    } else {
                        "Packages"
                    },
                    refused.join(", ")
                ),
            ));
        }
        let spec = Self {
            r_version,
            arch,
            packages: pinned,
            repositories,
            snapshot: base.snapshot.clone(),
            runtime: base.runtime.clone(),
            distribution: base.distribution.clone(),
        };
        spec.validate(OP)?;
        Ok(spec)
    }

    /// The spec of a session without a lockfile: `packages` are the session's attached and
    /// loaded packages plus the plan's `packages =`, as `(name, version)`, in any order. Base
    /// and recommended packages (which ship with R) and starburst itself are skipped; the rest
    /// are pinned to the first of `repositories` (`(name, URL)`, e.g. `("CRAN", url)`).
    pub fn from_packages<N, V>(
        r_version: impl Into<String>,
        arch: Arch,
        packages: impl IntoIterator<Item = (N, V)>,
        repositories: impl IntoIterator<Item = (String, String)>,
        base: &EnvironmentBase,
    ) -> Result<Self>
    where
        N: Into<String>,
        V: Into<String>,
    {
        const OP: &str = "environment spec from session packages";
        let repositories: Vec<(String, String)> = repositories.into_iter().collect();
        let first = repositories.first().map(|(name, _)| name.clone());
        let repositories: BTreeMap<String, String> = repositories.into_iter().collect();
        let mut pinned = BTreeMap::new();
        for (name, version) in packages {
            let (name, version) = (name.into(), version.into());
            if is_shipped_with_r(&name) || name == STARBURST_PACKAGE {
                continue;
            }
            let Some(repo) = &first else {
                return Err(Error::invalid(
                    OP,
                    "no package repository given: pass at least one, e.g. CRAN = \
                     https://cloud.r-project.org",
                ));
            };
            let package = Package {
                version,
                source: PackageSource::Repository { name: repo.clone() },
            };
            if let Some(previous) = pinned.insert(name.clone(), package.clone())
                && previous != package
            {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "package {name} is given twice, as {} and {}: pass one version",
                        previous.version, package.version
                    ),
                ));
            }
        }
        let spec = Self {
            r_version: r_version.into(),
            arch,
            packages: pinned,
            repositories,
            snapshot: base.snapshot.clone(),
            runtime: base.runtime.clone(),
            distribution: base.distribution.clone(),
        };
        spec.validate(OP)?;
        Ok(spec)
    }

    /// Checks every field is well formed (versions, names, URLs, SHAs, tarball name).
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let parts: Vec<&str> = self.r_version.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| !is_number(p)) {
            return Err(Error::invalid(
                op,
                format!(
                    "R version {:?} must be major.minor.patch, e.g. 4.4.1 (the rocker/r-ver tag)",
                    self.r_version
                ),
            ));
        }
        if self.repositories.is_empty() {
            return Err(Error::invalid(
                op,
                "no package repository: add at least one (renv.lock R.Repositories, or CRAN)",
            ));
        }
        for (name, url) in &self.repositories {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(Error::invalid(
                    op,
                    format!("repository name {name:?} must be non-empty printable ASCII"),
                ));
            }
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(
                    op,
                    format!("repository {name} URL {url:?} must be an http(s) URL"),
                ));
            }
        }
        for (name, package) in &self.packages {
            if !is_package_name(name) {
                return Err(Error::invalid(
                    op,
                    format!("{name:?} is not a valid R package name"),
                ));
            }
            check_version(op, &format!("version of package {name}"), &package.version)?;
            if let PackageSource::GitHub { user, repo, sha } = &package.source {
                let ok_part = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                };
                if !ok_part(user) || !ok_part(repo) {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "package {name}: GitHub remote {user}/{repo} is not a valid user/repo"
                        ),
                    ));
                }
                if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "package {name}: GitHub remote {user}/{repo} needs a full 40-hex commit \
                             SHA (RemoteSha), got {sha:?}; reinstall it with remotes/pak and snapshot again"
                        ),
                    ));
                }
            }
        }
        let snapshot_ok = self.snapshot == "latest"
            || (self.snapshot.len() == 10
                && self.snapshot.chars().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        c == '-'
                    } else {
                        c.is_ascii_digit()
                    }
                }));
        if !snapshot_ok {
            return Err(Error::invalid(
                op,
                format!(
                    "snapshot {:?} must be a date YYYY-MM-DD or \"latest\"",
                    self.snapshot
                ),
            ));
        }
        if self.runtime.is_empty() || !self.runtime.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::invalid(
                op,
                format!(
                    "runtime {:?} must be an image tag or reference",
                    self.runtime
                ),
            ));
        }
        Ok(())
    }

    /// The platform name, `amd64` or `arm64`.
    pub fn platform_arch(&self) -> &'static str {
        platform_arch(self.arch)
    }

    /// The hex BLAKE3 of the canonical form of the spec (sorted packages and repositories,
    /// the snapshot, the runtime) and of the environment template, so a changed template also
    /// yields a new image.
    pub fn digest(&self) -> String {
        let canonical = Canonical {
            format: CANONICAL_FORMAT,
            spec: self,
            template_blake3: blake3::hash(crate::image::ENVIRONMENT_TEMPLATE.as_bytes())
                .to_hex()
                .to_string(),
        };
        let bytes = serde_json::to_vec(&canonical).expect("a spec always serializes");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// The environment's tag, `env-r<R version>-<amd64|arm64>-<first 16 hex of the digest>`: a
    /// valid ECR tag, readable at a glance, and a function of the spec's content only (the
    /// image's tag in image mode, the library archive's name in sync mode).
    pub fn tag(&self) -> String {
        format!(
            "env-r{}-{}-{}",
            self.r_version,
            self.platform_arch(),
            &self.digest()[..16]
        )
    }
}

/// `amd64` or `arm64`, as Docker platforms name them.
pub fn platform_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Arm64 => "arm64",
    }
}

/// True for packages that ship with R (base and recommended).
pub fn is_shipped_with_r(name: &str) -> bool {
    BASE_PACKAGES.contains(&name) || RECOMMENDED_PACKAGES.contains(&name)
}

fn field<'a>(value: &'a Value, key: &str, path: &str) -> Result<&'a Value> {
    value
        .as_object()
        .ok_or_else(|| bad_field(parent(path), "must be an object"))?
        .get(key)
        .ok_or_else(|| bad_field(path, "is missing"))
}

fn string_field<'a>(value: &'a Value, key: &str, path: &str) -> Result<&'a str> {
    field(value, key, path)?
        .as_str()
        .ok_or_else(|| bad_field(path, "must be a string"))
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('.') {
        Some((parent, _)) => parent,
        None => "renv.lock",
    }
}

fn bad_field(path: &str, what: &str) -> Error {
    Error::invalid(
        "read renv.lock",
        format!("field {path} {what}; fix the lockfile or regenerate it with renv::snapshot()"),
    )
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn check_version(op: &'static str, what: &str, version: &str) -> Result<()> {
    let ok = version.split(['.', '-']).count() >= 2 && version.split(['.', '-']).all(is_number);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{what} {version:?} is not an R version such as 1.2.3 or 1.2-3"),
        ))
    }
}

/// `1.2.3.9000`: R's convention for a development version (a fourth part of 9000 or more).
fn is_development_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split(['.', '-']).collect();
    parts.len() >= 4 && parts[3].parse::<u64>().is_ok_and(|n| n >= 9000)
}

fn is_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '.')
        && !name.ends_with('.')
}
