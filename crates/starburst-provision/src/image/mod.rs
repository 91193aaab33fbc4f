//! Environment images: the [`EnvironmentSpec`] of a worker image (R version, platform, pinned
//! packages, starburst source), its content-hash [`tag`](EnvironmentSpec::tag), the rendered
//! build context (Dockerfile from `templates/Dockerfile.template`, a pinned `renv.lock`, the
//! starburst tarball), the [`DockerBuilder`] behind the `ImageBuilder` port, and
//! [`ensure_image`], which reuses an image whose tag exists or builds and pushes it.

mod command;
mod docker;
mod ensure;
mod render;
mod spec;

pub use command::{
    Command, CommandOutput, CommandRunner, ProcessRunner, Progress, RecordingRunner,
};
pub use docker::{DockerBuilder, OUTPUT_TAIL_LINES, ProgressSink};
pub use ensure::{EnsuredImage, ensure_image};
pub use render::{
    DOCKERFILE_TEMPLATE, RENV_VERSION, RUST_VERSION, render_dockerfile, render_lockfile,
    render_template, write_context,
};
pub use spec::{
    BASE_PACKAGES, EnvironmentSpec, Package, PackageSource, RECOMMENDED_PACKAGES,
    STARBURST_PACKAGE, StarburstSource, is_shipped_with_r, platform_arch,
};
