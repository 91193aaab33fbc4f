//! Rendering an environment: its manifest (the packages, binary repositories and system
//! requirement look-up that `starburst:::restore_environment()` restores on a worker or in an
//! image build) and, for image mode, its Dockerfile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use starburst_cloud::{Error, Result};

use super::spec::EnvironmentSpec;

/// The environment Dockerfile template, `templates/environment.Dockerfile` of the repository.
///
/// The crate keeps its own copies of the templates (`crates/starburst-provision/templates/`)
/// and embeds them with `include_str!` from inside the crate: `cargo xtask dist` copies each
/// workspace crate on its own into the R tarball, where the repository's `templates/` folder
/// does not exist. A test checks both copies are equal.
pub const ENVIRONMENT_TEMPLATE: &str = include_str!("../../templates/environment.Dockerfile");

/// Where an environment's packages are installed: in the image (image mode) or unpacked on
/// the worker (sync mode); `R_LIBS` puts it first.
pub const ENVIRONMENT_LIBRARY: &str = "/opt/starburst/library";

/// Hosts of Posit Package Manager, whose repositories serve Linux binaries under
/// `<repo>/__linux__/<codename>/<snapshot>` and system requirements under
/// `/__api__/repos/<repo>/sysreqs`.
pub const PACKAGE_MANAGERS: &[&str] = &[
    "https://packagemanager.posit.co",
    "https://p3m.dev",
    "https://packagemanager.rstudio.com",
];

/// Hosts whose repositories are CRAN itself (served as binaries from the first package manager).
const CRAN_HOSTS: &[&str] = &[
    "cloud.r-project.org",
    "cran.r-project.org",
    "cran.rstudio.com",
    "cran.rstudio.org",
];

/// True for CRAN itself and Posit Package Manager's CRAN mirrors: repositories that only hold
/// released versions.
pub(crate) fn is_cran(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    CRAN_HOSTS.contains(&host)
        || (PACKAGE_MANAGERS
            .iter()
            .any(|m| m.ends_with(&format!("//{host}")))
            && path.split('/').next() == Some("cran"))
}

/// The binary repository for `url` on `codename` at `snapshot`, and the package manager's
/// system-requirements endpoint when it has one:
/// - a package manager repository (`<host>/<repo>/<snapshot>` or already `__linux__`) →
///   `<host>/<repo>/__linux__/<codename>/<snapshot>` (the URL's own snapshot when it names
///   one, else `snapshot`);
/// - CRAN → the first of `managers`' `cran` repository at `snapshot`;
/// - anything else (r-universe, a company's repository) is kept as it is.
pub fn binary_repository(
    url: &str,
    codename: &str,
    snapshot: &str,
    managers: &[String],
) -> (String, Option<String>) {
    let trimmed = url.trim_end_matches('/');
    let (scheme_host, path) = match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(slash) => trimmed.split_at(start + slash),
            None => (trimmed, ""),
        },
        None => return (url.to_owned(), None),
    };
    let host = &scheme_host[scheme_host.find("://").map_or(0, |i| i + 3)..];
    let managed = |base: &str, repo: &str, snap: &str| {
        (
            format!("{base}/{repo}/__linux__/{codename}/{snap}"),
            Some(format!("{base}/__api__/repos/{repo}/sysreqs")),
        )
    };
    if managers
        .iter()
        .any(|m| m.trim_end_matches('/') == scheme_host)
    {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [repo] => return managed(scheme_host, repo, snapshot),
            [repo, snap] => return managed(scheme_host, repo, snap),
            [repo, "__linux__", _, snap] => return managed(scheme_host, repo, snap),
            _ => return (url.to_owned(), None),
        }
    }
    if CRAN_HOSTS.contains(&host)
        && let Some(first) = managers.first()
    {
        return managed(first.trim_end_matches('/'), "cran", snapshot);
    }
    (url.to_owned(), None)
}

/// The manifest `starburst:::restore_environment()` restores: JSON with the environment's tag,
/// its packages (name, version, source), its repositories as binary repositories of the
/// runtime's distribution, the distribution, and the system-requirements endpoint (the first
/// package manager among the repositories), or `null`.
pub fn manifest(spec: &EnvironmentSpec, managers: &[String]) -> Result<Value> {
    spec.validate("environment manifest")?;
    let mut repositories = BTreeMap::new();
    let mut sysreqs = None;
    for (name, url) in &spec.repositories {
        let (binary, api) =
            binary_repository(url, &spec.distribution.codename, &spec.snapshot, managers);
        repositories.insert(name.clone(), binary);
        if sysreqs.is_none() {
            sysreqs = api;
        }
    }
    let packages: Vec<Value> = spec
        .packages
        .iter()
        .map(|(name, p)| json!({ "name": name, "version": p.version, "source": p.source }))
        .collect();
    Ok(json!({
        "format": 1,
        "environment": spec.tag(),
        "r_version": spec.r_version,
        "packages": packages,
        "repositories": repositories,
        "snapshot": spec.snapshot,
        "distribution": spec.distribution,
        "sysreqs": sysreqs.map(|url| json!({ "url": url })),
    }))
}

/// Fills `{{name}}` placeholders of `template` from `values`. A placeholder without a value, a
/// value without a placeholder, or an unterminated `{{` is an error.
pub fn render_template(template: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    const OP: &str = "render template";
    let mut out = String::with_capacity(template.len());
    let mut used = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            Error::invalid(
                OP,
                format!(
                    "unterminated placeholder at {:?}",
                    &rest[start..(start + 20).min(rest.len())]
                ),
            )
        })?;
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| {
            Error::invalid(
                OP,
                format!(
                    "placeholder {{{{{name}}}}} has no value (known: {})",
                    values.keys().copied().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        used.insert(name);
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(unused) = values.keys().find(|k| !used.contains(*k)) {
        return Err(Error::invalid(
            OP,
            format!("value {unused:?} has no {{{{{unused}}}}} placeholder in the template"),
        ));
    }
    Ok(out)
}

/// The image-mode Dockerfile of `spec`, on `runtime_image`.
pub fn render_dockerfile(spec: &EnvironmentSpec, runtime_image: &str) -> Result<String> {
    spec.validate("render Dockerfile")?;
    let values = BTreeMap::from([
        ("tag", spec.tag()),
        ("runtime", runtime_image.to_owned()),
        ("library", ENVIRONMENT_LIBRARY.to_owned()),
    ]);
    render_template(ENVIRONMENT_TEMPLATE, &values)
}

/// Writes the image-mode build context of `spec` into the existing, empty directory `dir`:
/// `Dockerfile` (on `runtime_image`) and `manifest.json`.
pub fn write_context(
    spec: &EnvironmentSpec,
    runtime_image: &str,
    managers: &[String],
    dir: &Path,
) -> Result<()> {
    const OP: &str = "write build context";
    let dockerfile = render_dockerfile(spec, runtime_image)?;
    let manifest = serde_json::to_string_pretty(&manifest(spec, managers)?)
        .expect("a JSON value always serializes");
    for (name, text) in [("Dockerfile", dockerfile), ("manifest.json", manifest)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::other(OP, path.display().to_string(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn fills_every_placeholder() {
        let out = render_template("a {{x}} b {{y}}{{x}}", &values(&[("x", "1"), ("y", "2")]));
        assert_eq!(out.unwrap(), "a 1 b 21");
    }

    #[test]
    fn missing_value_is_an_error() {
        let err = render_template("{{x}} {{z}}", &values(&[("x", "1")])).unwrap_err();
        assert!(err.to_string().contains("{{z}} has no value"), "{err}");
    }

    #[test]
    fn unused_value_is_an_error() {
        let err = render_template("{{x}}", &values(&[("x", "1"), ("y", "2")])).unwrap_err();
        assert!(err.to_string().contains("\"y\" has no {{y}}"), "{err}");
    }

    #[test]
    fn unterminated_placeholder_is_an_error() {
        let err = render_template("a {{x", &values(&[("x", "1")])).unwrap_err();
        assert!(err.to_string().contains("unterminated"), "{err}");
    }
}
