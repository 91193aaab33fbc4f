//! The one place that loads AWS configuration for every adapter of this crate.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Where and as whom to reach AWS. Every field left `None` comes from the standard AWS chain:
/// `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`), `AWS_REGION` or the profile's
/// region, credentials from the environment, a profile, SSO, or an instance or task role.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AwsOptions {
    /// An endpoint for every service, such as a local emulator (`http://127.0.0.1:5000`).
    pub endpoint_url: Option<String>,
    /// The region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// A static access key id and secret.
    pub credentials: Option<(String, String)>,
    /// Attempts per request, including the first (standard retry mode: exponential backoff
    /// with jitter on throttling, 5xx and transient network errors). Default 5.
    pub max_attempts: Option<u32>,
}

impl AwsOptions {
    /// Options for an emulator at `endpoint_url` with static credentials.
    pub fn emulator(
        endpoint_url: impl Into<String>,
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint_url: Some(endpoint_url.into()),
            region: Some(region.into()),
            credentials: Some((access_key_id.into(), secret_access_key.into())),
            max_attempts: None,
        }
    }

    /// These options with `region`.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// These options with at most `attempts` attempts per request.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }
}

/// Loaded AWS configuration shared by the adapters (cheap to clone).
#[derive(Debug, Clone)]
pub struct Aws {
    sdk: SdkConfig,
}

impl Aws {
    /// Configuration from the standard chain only.
    pub async fn from_env() -> Self {
        Self::connect(AwsOptions::default()).await
    }

    /// Configuration from `options`, the rest from the standard chain.
    pub async fn connect(options: AwsOptions) -> Self {
        // HTTPS through hyper and rustls on `ring` (see the workspace manifest for why).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(options.max_attempts.unwrap_or(5))
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(10));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry);
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &options.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "starburst",
            ));
        }
        Self {
            sdk: loader.load().await,
        }
    }

    /// The region requests go to, if one is configured.
    pub fn region(&self) -> Option<&str> {
        self.sdk.region().map(|r| r.as_ref())
    }

    /// The endpoint every service uses, when one is set (an emulator).
    pub fn endpoint_url(&self) -> Option<&str> {
        self.sdk.endpoint_url()
    }

    pub(crate) fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }
}
