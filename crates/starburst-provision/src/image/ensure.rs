//! Reuse-or-build: the one entry point set-up calls for an environment image.

use std::path::Path;

use starburst_cloud::{BuildRequest, Error, ImageBuilder, ImageRef, Registry, Result};

use super::command::Progress;
use super::render::write_context;
use super::spec::EnvironmentSpec;

/// The image a spec runs in, and whether this call built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredImage {
    /// `repository:tag`, tag = [`EnvironmentSpec::tag`].
    pub image: ImageRef,
    /// True when it was built and pushed now; false when the registry already had it.
    pub built: bool,
}

/// Makes sure the image of `spec` exists in `repository_uri` (e.g.
/// `123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst`): an image whose tag is already
/// there is reused unless `force`; otherwise the build context is rendered into a fresh
/// directory under `workdir` (removed after a successful build, kept after a failure for
/// inspection), and the image is built and pushed with the registry's login. `progress`
/// receives one line per step.
pub async fn ensure_image(
    spec: &EnvironmentSpec,
    registry: &dyn Registry,
    builder: &dyn ImageBuilder,
    repository_uri: &str,
    workdir: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<EnsuredImage> {
    const OP: &str = "ensure image";
    spec.validate(OP)?;
    if repository_uri.is_empty() || repository_uri.contains(char::is_whitespace) {
        return Err(Error::invalid(
            OP,
            format!(
                "repository URI {repository_uri:?} must be like \
                 123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst"
            ),
        ));
    }
    let image = ImageRef {
        repository: repository_uri.trim_end_matches('/').to_owned(),
        tag: spec.tag(),
    };
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
        "building image {image} ({} packages, R {}, {}) in {}",
        spec.packages.len(),
        spec.r_version,
        spec.platform_arch(),
        context.path().display()
    ));
    write_context(spec, context.path())?;
    let login = registry.login().await?;
    let request = BuildRequest {
        context: context.path().to_owned(),
        image: image.clone(),
        arch: spec.arch,
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
        let tarball = dir.path().join("starburst_0.1.0.tar.gz");
        std::fs::write(&tarball, b"x").unwrap();
        let spec = EnvironmentSpec::from_packages(
            "4.4.1",
            starburst_cloud::Arch::X86_64,
            [("future", "1.34.0")],
            [("CRAN".to_owned(), "https://cloud.r-project.org".to_owned())],
            crate::image::StarburstSource::from_tarball("0.1.0", &tarball).unwrap(),
        )
        .unwrap();
        let future = ensure_image(
            &spec,
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
