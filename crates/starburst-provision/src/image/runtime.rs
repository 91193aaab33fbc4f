//! The runtime image: R, starburst's R package and its worker binary, and the R packages
//! starburst needs, once per (starburst build, R version, architecture, base). Environments
//! build on it (image mode) or workers restore their packages on top of it (sync mode); nothing
//! built for a user's environment compiles Rust.
//!
//! A runtime comes from one of two places: a published image (the project's release workflow
//! publishes one per starburst version, R version and architecture), used as it is; or it is
//! built once per account and registry from starburst's *binary* package for the target
//! platform (a release asset, or a package built once by `templates/package.Dockerfile`),
//! whose content hash is part of the runtime's tag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starburst_cloud::{Arch, Error, Result};

use super::render::render_template;
use super::spec::{hash_file, platform_arch};

/// The runtime Dockerfile template, `templates/runtime.Dockerfile` of the repository (the
/// crate embeds its own copy, checked equal by a test; see `DOCKERFILE_TEMPLATE`).
pub const RUNTIME_TEMPLATE: &str = include_str!("../../templates/runtime.Dockerfile");

/// Where R packages are installed in the runtime (`rocker/r-ver` and Debian's R both search it).
pub const SITE_LIBRARY: &str = "/usr/local/lib/R/site-library";

/// The R packages starburst imports that do not ship with R: the runtime installs them as
/// binaries before starburst itself.
pub const STARBURST_IMPORTS: &[&str] = &["cli", "future", "jsonlite", "parallelly"];

/// The Linux distribution of a runtime's base image: which binaries fit it (Posit Package
/// Manager serves binaries per distribution) and how its system requirements are named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Distribution {
    /// `ubuntu` or `debian`.
    pub name: String,
    /// `22.04`, `24.04`, `12`.
    pub release: String,
    /// `jammy`, `noble`, `bookworm` (Posit Package Manager's `__linux__/<codename>`).
    pub codename: String,
}

impl Distribution {
    /// The distribution `rocker/r-ver:<r_version>` is built on: Ubuntu 24.04 from R 4.4.0 on,
    /// Ubuntu 22.04 before.
    pub fn rocker(r_version: &str) -> Self {
        let mut parts = r_version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) >= (4, 4) {
            Self::new("ubuntu", "24.04", "noble")
        } else {
            Self::new("ubuntu", "22.04", "jammy")
        }
    }

    /// A distribution by name, release and codename.
    pub fn new(name: &str, release: &str, codename: &str) -> Self {
        Self {
            name: name.into(),
            release: release.into(),
            codename: codename.into(),
        }
    }
}

/// starburst's binary R package for one platform: an installed package directory as a
/// `.tar.gz` (what `R CMD INSTALL --build` makes), with its worker binary in `bin/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryPackage {
    /// The file on this machine (not part of the tag: only its content counts).
    pub path: PathBuf,
    /// BLAKE3 of the file, lowercase hex.
    pub blake3: String,
}

impl BinaryPackage {
    /// The package at `path`, hashed now.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let blake3 = hash_file(&path)?;
        Ok(Self { path, blake3 })
    }

    fn file_name(&self) -> Result<String> {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                n.starts_with("starburst_")
                    && n.ends_with(".tar.gz")
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            })
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    "runtime spec",
                    format!(
                        "starburst's binary package {} must be a file named like \
                         starburst_<version>_R_x86_64-pc-linux-gnu.tar.gz",
                        self.path.display()
                    ),
                )
            })
    }
}

/// Everything a runtime image is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSpec {
    /// R version, `major.minor.patch`.
    pub r_version: String,
    /// Target architecture.
    pub arch: Arch,
    /// Base image with R installed, e.g. `rocker/r-ver:4.4.1`.
    pub base: String,
    /// The base image's distribution.
    pub distribution: Distribution,
    /// The CRAN-like repository of Linux binaries starburst's own dependencies come from.
    pub repository: String,
    /// starburst's version.
    pub starburst_version: String,
    /// starburst's binary package for this platform.
    pub package: BinaryPackage,
}

const RUNTIME_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Canonical<'a> {
    format: u32,
    r_version: &'a str,
    arch: Arch,
    base: &'a str,
    distribution: &'a Distribution,
    repository: &'a str,
    starburst_version: &'a str,
    package_blake3: &'a str,
    template_blake3: String,
}

impl RuntimeSpec {
    /// The production runtime: on `rocker/r-ver:<r_version>`, starburst's dependencies from
    /// Posit Package Manager's binaries for that distribution.
    pub fn rocker(
        r_version: &str,
        arch: Arch,
        starburst_version: &str,
        package: BinaryPackage,
    ) -> Self {
        let distribution = Distribution::rocker(r_version);
        Self {
            r_version: r_version.into(),
            arch,
            base: format!("rocker/r-ver:{r_version}"),
            repository: format!(
                "https://packagemanager.posit.co/cran/__linux__/{}/latest",
                distribution.codename
            ),
            distribution,
            starburst_version: starburst_version.into(),
            package,
        }
    }

    /// Checks every field is well formed.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "runtime spec";
        let bad = |what: String| Err(Error::invalid(OP, what));
        let parts: Vec<&str> = self.r_version.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return bad(format!(
                "R version {:?} must be major.minor.patch, e.g. 4.4.1",
                self.r_version
            ));
        }
        let printable = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) && !s.contains(['"', '\''])
        };
        if !printable(&self.base) {
            return bad(format!(
                "base image {:?} must be an image reference such as rocker/r-ver:4.4.1",
                self.base
            ));
        }
        if !(self.repository.starts_with("https://") || self.repository.starts_with("http://"))
            || !printable(&self.repository)
        {
            return bad(format!(
                "repository {:?} must be an http(s) URL",
                self.repository
            ));
        }
        for (what, value) in [
            ("distribution name", &self.distribution.name),
            ("distribution release", &self.distribution.release),
            ("distribution codename", &self.distribution.codename),
        ] {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return bad(format!("{what} {value:?} must be letters, digits and '.'"));
            }
        }
        if self.starburst_version.is_empty()
            || !self
                .starburst_version
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        {
            return bad(format!(
                "starburst version {:?} must be like 0.1.0",
                self.starburst_version
            ));
        }
        self.package.file_name()?;
        Ok(())
    }

    /// The hex BLAKE3 of the canonical spec and the runtime template.
    pub fn digest(&self) -> String {
        let canonical = Canonical {
            format: RUNTIME_FORMAT,
            r_version: &self.r_version,
            arch: self.arch,
            base: &self.base,
            distribution: &self.distribution,
            repository: &self.repository,
            starburst_version: &self.starburst_version,
            package_blake3: &self.package.blake3,
            template_blake3: blake3::hash(RUNTIME_TEMPLATE.as_bytes())
                .to_hex()
                .to_string(),
        };
        let bytes = serde_json::to_vec(&canonical).expect("a spec always serializes");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// The tag, `runtime-<starburst version>-r<R version>-<arch>-<16 hex of the digest>`.
    pub fn tag(&self) -> String {
        format!(
            "runtime-{}-r{}-{}-{}",
            self.starburst_version,
            self.r_version,
            platform_arch(self.arch),
            &self.digest()[..16]
        )
    }

    /// The runtime's Dockerfile.
    pub fn dockerfile(&self) -> Result<String> {
        self.validate()?;
        let imports = STARBURST_IMPORTS
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let values = BTreeMap::from([
            ("tag", self.tag()),
            ("arch", platform_arch(self.arch).to_owned()),
            ("base", self.base.clone()),
            ("repository", self.repository.clone()),
            ("imports", imports),
            ("site_library", SITE_LIBRARY.to_owned()),
            ("starburst_version", self.starburst_version.clone()),
            ("package", self.package.file_name()?),
        ]);
        render_template(RUNTIME_TEMPLATE, &values)
    }

    /// Writes the build context into the existing, empty `dir`: `Dockerfile` and a copy of the
    /// binary package, whose content must still hash as the spec says.
    pub fn write_context(&self, dir: &Path) -> Result<()> {
        const OP: &str = "write runtime build context";
        let dockerfile = self.dockerfile()?;
        let path = dir.join("Dockerfile");
        std::fs::write(&path, dockerfile)
            .map_err(|e| Error::other(OP, path.display().to_string(), e))?;
        let target = dir.join(self.package.file_name()?);
        std::fs::copy(&self.package.path, &target).map_err(|e| {
            Error::other(
                OP,
                self.package.path.display().to_string(),
                format!("copying to {}: {e}", target.display()),
            )
        })?;
        if hash_file(&target)? != self.package.blake3 {
            return Err(Error::invalid(
                OP,
                format!(
                    "starburst's binary package {} changed since the runtime spec was made; \
                     make the spec again",
                    self.package.path.display()
                ),
            ));
        }
        Ok(())
    }
}
