//! Rendering a spec into a build context: the Dockerfile, a pinned `renv.lock` and the
//! starburst source tarball.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value, json};
use starburst_cloud::{Error, Result};

use super::spec::{EnvironmentSpec, PackageSource, hash_file};

/// The Dockerfile template, `templates/Dockerfile.template` of the repository.
///
/// The crate keeps its own copy (`crates/starburst-provision/templates/`) and embeds it with
/// `include_str!` from inside the crate: `cargo xtask dist` copies each workspace crate on its
/// own into the R tarball, where the repository's `templates/` folder does not exist, so a
/// path leaving the crate would break the tarball build. A test checks both copies are equal.
pub const DOCKERFILE_TEMPLATE: &str = include_str!("../../templates/Dockerfile.template");

/// The renv version the image installs to restore the lockfile (from the CRAN archive, so the
/// same version every time).
pub const RENV_VERSION: &str = "1.0.11";

/// The Rust toolchain image tag that builds starburst in the image: the crates' minimum Rust
/// version, which the vendored crates are locked to build with.
pub const RUST_VERSION: &str = env!("CARGO_PKG_RUST_VERSION");

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

/// The Dockerfile of `spec`, from [`DOCKERFILE_TEMPLATE`].
pub fn render_dockerfile(spec: &EnvironmentSpec) -> Result<String> {
    spec.validate("render Dockerfile")?;
    let values = BTreeMap::from([
        ("tag", spec.tag()),
        ("platform", format!("linux/{}", spec.platform_arch())),
        ("r_version", spec.r_version.clone()),
        ("rust_version", RUST_VERSION.to_owned()),
        ("renv_version", RENV_VERSION.to_owned()),
        ("starburst_version", spec.starburst.version.clone()),
        ("starburst_tarball", spec.starburst.file_name()?),
    ]);
    render_template(DOCKERFILE_TEMPLATE, &values)
}

/// The `renv.lock` that pins every package of `spec` (for a project's lockfile too: the image
/// restores exactly what the tag hashes).
pub fn render_lockfile(spec: &EnvironmentSpec) -> Result<String> {
    spec.validate("render renv.lock")?;
    let repositories: Vec<Value> = spec
        .repositories
        .iter()
        .map(|(name, url)| json!({ "Name": name, "URL": url }))
        .collect();
    let mut packages = Map::new();
    for (name, package) in &spec.packages {
        let mut entry = Map::new();
        entry.insert("Package".into(), json!(name));
        entry.insert("Version".into(), json!(package.version));
        match &package.source {
            PackageSource::Repository { name: repo } => {
                entry.insert("Source".into(), json!("Repository"));
                entry.insert("Repository".into(), json!(repo));
            }
            PackageSource::GitHub { user, repo, sha } => {
                entry.insert("Source".into(), json!("GitHub"));
                entry.insert("RemoteType".into(), json!("github"));
                entry.insert("RemoteHost".into(), json!("api.github.com"));
                entry.insert("RemoteUsername".into(), json!(user));
                entry.insert("RemoteRepo".into(), json!(repo));
                entry.insert("RemoteRef".into(), json!(sha));
                entry.insert("RemoteSha".into(), json!(sha));
            }
        }
        packages.insert(name.clone(), Value::Object(entry));
    }
    let lock = json!({
        "R": { "Version": spec.r_version, "Repositories": repositories },
        "Packages": packages,
    });
    let mut text = serde_json::to_string_pretty(&lock).expect("a JSON value always serializes");
    text.push('\n');
    Ok(text)
}

/// Writes the build context of `spec` into the existing, empty directory `dir`: `Dockerfile`,
/// `renv.lock` and a copy of the starburst tarball, whose content must still hash to the
/// spec's `starburst.blake3`.
pub fn write_context(spec: &EnvironmentSpec, dir: &Path) -> Result<()> {
    const OP: &str = "write build context";
    let dockerfile = render_dockerfile(spec)?;
    let lockfile = render_lockfile(spec)?;
    let tarball = spec.starburst.file_name()?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::other(OP, path.display().to_string(), e))
    };
    write("Dockerfile", &dockerfile)?;
    write("renv.lock", &lockfile)?;
    let target = dir.join(&tarball);
    std::fs::copy(&spec.starburst.tarball, &target).map_err(|e| {
        Error::other(
            OP,
            spec.starburst.tarball.display().to_string(),
            format!("copying to {}: {e}", target.display()),
        )
    })?;
    let copied = hash_file(&target)?;
    if copied != spec.starburst.blake3 {
        return Err(Error::invalid(
            OP,
            format!(
                "starburst tarball {} changed since the spec was made (BLAKE3 {copied}, spec \
                 {}); make the spec again",
                spec.starburst.tarball.display(),
                spec.starburst.blake3
            ),
        ));
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
