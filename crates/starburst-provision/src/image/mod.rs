//! Worker images. A [`RuntimeSpec`] is R, starburst's R package and worker, and starburst's
//! dependencies, built once per account from starburst's binary package (or published). An
//! [`EnvironmentSpec`] is the packages of a user's lockfile or session pinned on a runtime,
//! tagged by the hash of its content; its manifest is restored from binaries either on the
//! workers (sync mode) or into an image built from the runtime (image mode). The
//! [`DockerBuilder`] (docker buildx or podman) is the `ImageBuilder` of a machine with a
//! container engine; [`ensure_runtime`] and [`ensure_image`] reuse an image whose tag exists
//! or build and push it.

mod command;
mod docker;
mod ensure;
mod render;
mod runtime;
mod spec;

pub use command::{
    Command, CommandOutput, CommandRunner, ProcessRunner, Progress, RecordingRunner,
};
pub use docker::{DockerBuilder, Engine, OUTPUT_TAIL_LINES, ProgressSink};
pub use ensure::{EnsuredImage, ensure_image, ensure_runtime};
pub use render::{
    ENVIRONMENT_LIBRARY, ENVIRONMENT_TEMPLATE, PACKAGE_MANAGERS, binary_repository, manifest,
    render_dockerfile, render_template, write_context,
};
pub use runtime::{
    BinaryPackage, Distribution, RUNTIME_TEMPLATE, RuntimeSpec, SITE_LIBRARY, STARBURST_IMPORTS,
};
pub use spec::{
    BASE_PACKAGES, EnvironmentBase, EnvironmentSpec, Package, PackageSource, RECOMMENDED_PACKAGES,
    STARBURST_PACKAGE, is_shipped_with_r, platform_arch,
};
