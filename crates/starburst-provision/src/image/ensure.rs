//! Reuse-or-build: the entry points set-up and sessions call for the runtime image and an
//! environment image.

use std::path::Path;

use starburst_cloud::{BuildRequest, Error, ImageBuilder, ImageRef, Registry, Result};

use super::command::Progress;
use super::render::write_context;
use super::runtime::RuntimeSpec;
use super::spec::EnvironmentSpec;

/// An image, and whether this call built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredImage {
    /// `repository:tag`.
    pub image: ImageRef,
    /// True when it was built and pushed now; false when the registry already had it.
    pub built: bool,
}

/// Makes sure the runtime of `runtime` exists in `repository_uri` (e.g.
/// `123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst`) under its tag: reused when there
/// (unless `force`), else built from starburst's binary package and pushed. See
/// [`ensure_image`] for `workdir` and `progress`.
pub async fn ensure_runtime(
    runtime: &RuntimeSpec,
    registry: &dyn Registry,
    builder: &dyn ImageBuilder,
    repository_uri: &str,
    workdir: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<EnsuredImage> {
    runtime.validate()?;
    let what = format!(
        "runtime (starburst {}, R {}, {})",
        runtime.starburst_version, runtime.r_version, runtime.distribution.codename
    );
    reuse_or_build(
        image_ref(repository_uri, runtime.tag())?,
        &what,
        runtime.arch,
        &|dir| runtime.write_context(dir),
        (registry, builder),
        workdir,
        force,
        progress,
    )
    .await
}

/// Makes sure the image-mode image of `spec` exists in `repository_uri`: reused when its tag
/// is there (unless `force`); otherwise the build context (`Dockerfile` on `runtime_image`,
/// `manifest.json`) is rendered into a fresh directory under `workdir` (removed after a
/// successful build, kept after a failure for inspection), and the image is built and pushed
/// with the registry's login. `managers` are the package managers whose binaries serve the
/// environment ([`PACKAGE_MANAGERS`](super::PACKAGE_MANAGERS) in production). `progress`
/// receives one line per step.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_image(
    spec: &EnvironmentSpec,
    runtime_image: &str,
    managers: &[String],
    registry: &dyn Registry,
    builder: &dyn ImageBuilder,
    repository_uri: &str,
    workdir: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<EnsuredImage> {
    spec.validate("ensure image")?;
    let what = format!(
        "environment ({} packages, R {}, {})",
        spec.packages.len(),
        spec.r_version,
        spec.platform_arch()
    );
    reuse_or_build(
        image_ref(repository_uri, spec.tag())?,
        &what,
        spec.arch,
        &|dir| write_context(spec, runtime_image, managers, dir),
        (registry, builder),
        workdir,
        force,
        progress,
    )
    .await
}

fn image_ref(repository_uri: &str, tag: String) -> Result<ImageRef> {
    if repository_uri.is_empty() || repository_uri.contains(char::is_whitespace) {
        return Err(Error::invalid(
            "ensure image",
            format!(
                "repository URI {repository_uri:?} must be like \
                 123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst"
            ),
        ));
    }
    Ok(ImageRef {
        repository: repository_uri.trim_end_matches('/').to_owned(),
        tag,
    })
}

#[allow(clippy::too_many_arguments)]
async fn reuse_or_build(
    image: ImageRef,
    what: &str,
    arch: starburst_cloud::Arch,
    write: &(dyn Fn(&Path) -> Result<()> + Sync),
    (registry, builder): (&dyn Registry, &dyn ImageBuilder),
    workdir: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<EnsuredImage> {
    const OP: &str = "ensure image";
    if !force && registry.exists(&image).await? {
        progress(&format!("image {image} exists; reusing it"));
        return Ok(EnsuredImage {
            image,
            built: false,
        });
    }
    std::fs::create_dir_all(workdir)
        .map_err(|e| Error::other(OP, workdir.display().to_string(), e))?;
    let context = tempfile::Builder::new()
        .prefix(&format!("context-{}-", image.tag))
        .tempdir_in(workdir)
        .map_err(|e| Error::other(OP, workdir.display().to_string(), e))?;
    progress(&format!(
        "building image {image}: {what} in {}",
        context.path().display()
    ));
    write(context.path())?;
    let login = registry.login().await?;
    let request = BuildRequest {
        context: context.path().to_owned(),
        image: image.clone(),
        arch,
    };
    match builder.build_and_push(&request, &login).await {
        Ok(()) => {
            progress(&format!("pushed image {image}"));
            Ok(EnsuredImage { image, built: true })
        }
        Err(e) => {
            let kept = context.keep();
            progress(&format!(
                "building image {image} failed; its build context is kept in {}",
                kept.display()
            ));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers run `ensure_image` on a multi-threaded runtime (`tokio::spawn`), so its future
    /// must be `Send`.
    #[test]
    fn ensure_image_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let registry = starburst_cloud::fake::FakeRegistry::new();
        let builder = starburst_cloud::fake::FakeImageBuilder::new(registry.clone());
        let dir = tempfile::tempdir().unwrap();
        let base = crate::image::EnvironmentBase {
            runtime: "runtime-0.1.0-r4.4.1-amd64-0123456789abcdef".into(),
            distribution: crate::image::Distribution::rocker("4.4.1"),
            snapshot: "latest".into(),
        };
        let spec = EnvironmentSpec::from_packages(
            "4.4.1",
            starburst_cloud::Arch::X86_64,
            [("future", "1.34.0")],
            [("CRAN".to_owned(), "https://cloud.r-project.org".to_owned())],
            &base,
        )
        .unwrap();
        let future = ensure_image(
            &spec,
            "r/s:runtime",
            &[],
            &registry,
            &builder,
            "r/s",
            dir.path(),
            false,
            &|_| {},
        );
        assert_send(&future);
    }
}
