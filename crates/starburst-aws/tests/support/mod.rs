//! Shared by the adapter tests: a strict moto server (`support/strict_moto.py`) started per test on 127.0.0.1.
//!
//! The server comes from the venv `cargo xtask emulator-venv` creates (`STARBURST_MOTO`, else
//! `$CARGO_TARGET_DIR/moto-venv/bin/moto_server`).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use starburst_aws::{Aws, AwsOptions};

pub const REGION: &str = "us-east-1";

/// A running moto server, killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("STARBURST_MOTO") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/deps/<test>-<hash>
            let exe = std::env::current_exe().expect("test executable path");
            exe.ancestors().nth(3).expect("target directory").into()
        });
    target.join("moto-venv/bin/moto_server")
}

impl Moto {
    /// A strict moto server (see `support/strict_moto.py`): what AWS would reject is rejected.
    pub async fn start() -> Self {
        Self::spawn(&[]).await
    }

    /// A strict moto server whose ECS tasks report their task definition's `cpu` and `memory`
    /// and stay RUNNING until stopped, as Fargate tasks do (moto 5.2.5 does neither).
    pub async fn start_with_quotas() -> Self {
        Self::spawn(&["--manual-tasks"]).await
    }

    /// A strict moto server on which a new bucket, log group or role stays invisible or
    /// unusable for `delay`, as AWS's eventual consistency can make it.
    pub async fn start_eventually_consistent(delay: Duration) -> Self {
        Self::spawn(&["--consistency-delay-ms", &delay.as_millis().to_string()]).await
    }

    /// Runs `strict_moto.py <args> -H 127.0.0.1 -p <free port>` and waits until it accepts
    /// connections.
    async fn spawn(args: &[&str]) -> Self {
        let python = moto_server().with_file_name("python");
        assert!(
            python.is_file(),
            "no python at {}: run `cargo xtask emulator-venv` (or set STARBURST_MOTO)",
            python.display()
        );
        let mut cmd = Command::new(python);
        cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/strict_moto.py"));
        cmd.args(args);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        moto
    }

    /// Options for this server with moto's test credentials.
    pub fn options(&self) -> AwsOptions {
        AwsOptions::emulator(&self.endpoint, REGION, "testing", "testing")
    }

    /// The adapters' configuration for this server.
    pub async fn aws(&self) -> Aws {
        Aws::connect(self.options()).await
    }

    /// The requests this server answered, per service and operation (the emulator's
    /// `/_starburst/stats`, served by `strict_moto.py` too), reset when `reset`.
    pub async fn stats(&self, reset: bool) -> serde_json::Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.endpoint.trim_start_matches("http://");
        let (method, path) = if reset {
            ("POST", "/_starburst/stats/reset")
        } else {
            ("GET", "/_starburst/stats")
        };
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("stats: {e}: {response}"))
    }

    /// Creates ECS's service-linked role, as an account that has used ECS has it (a cluster
    /// with capacity providers needs it).
    pub async fn ecs_service_linked_role(&self) {
        aws_sdk_iam::Client::new(&self.sdk_config())
            .create_service_linked_role()
            .aws_service_name("ecs.amazonaws.com")
            .send()
            .await
            .expect("create ECS's service-linked role");
    }

    /// An SDK configuration for this server, for setting up fixtures with raw SDK clients.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"),
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build()
    }
}
