//! The image ports: a registry that holds worker images, and a builder that makes them.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Arch, Result};

/// A full image reference, `repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// Repository URI, e.g. `123.dkr.ecr.us-east-1.amazonaws.com/starburst`.
    pub repository: String,
    /// Tag, e.g. the environment hash.
    pub tag: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Credentials for pushing to a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// Registry host.
    pub server: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where worker images are kept.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Registry: Send + Sync + Debug + 'static {
    /// True when `image` exists.
    async fn exists(&self, image: &ImageRef) -> Result<bool>;
    /// Short-lived push credentials.
    async fn login(&self) -> Result<RegistryLogin>;
}

/// One image build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The build context directory (holds the rendered Dockerfile).
    pub context: PathBuf,
    /// Where to push.
    pub image: ImageRef,
    /// Target architecture.
    pub arch: Arch,
}

/// Builds and pushes worker images.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ImageBuilder: Send + Sync + Debug + 'static {
    /// Builds the image of `request` and pushes it with `login`.
    async fn build_and_push(&self, request: &BuildRequest, login: &RegistryLogin) -> Result<()>;
}
