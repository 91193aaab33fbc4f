//! Shared by the adapter tests: a strict moto server (`support/strict_moto.py`) started per test on 127.0.0.1.
//!
//! The server comes from the venv `cargo xtask emulator-venv` creates (`STARBURST_MOTO`, else
//! `$CARGO_TARGET_DIR/moto-venv/bin/moto_server`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

    /// A strict moto server whose CodeBuild builds run on this machine with `podman` as their
    /// `docker` (the emulator's CodeBuild simulator).
    pub async fn start_with_codebuild(podman: &std::path::Path) -> Self {
        Self::spawn(&["--codebuild-podman", &podman.display().to_string()]).await
    }

    /// A strict moto server on which a new bucket, log group or role stays invisible or
    /// unusable for `delay`, as AWS's eventual consistency can make it.
    pub async fn start_eventually_consistent(delay: Duration) -> Self {
        Self::spawn(&["--consistency-delay-ms", &delay.as_millis().to_string()]).await
    }

    /// Runs `strict_moto.py <args> -H 127.0.0.1 -p 0` and waits for the port it prints once
    /// bound. (Picking a free port here and handing it over raced with the servers of tests
    /// running beside this one: two servers were given the same port, one failed to bind, and
    /// both tests talked to the other until its test ended.)
    async fn spawn(args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let python = moto_server().with_file_name("python");
        assert!(
            python.is_file(),
            "no python at {}: run `cargo xtask emulator-venv` (or set STARBURST_MOTO)",
            python.display()
        );
        let mut cmd = Command::new(python);
        cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/strict_moto.py"));
        cmd.args(args);
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let port = lines.by_ref().find_map(|line| {
                line.strip_prefix("listening on ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            });
            let _ = tx.send(port);
            // Keep draining so the server never blocks on a full pipe.
            lines.for_each(drop);
        });
        let port = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("moto did not start within 60 s")
            .ok()
            .flatten()
            .expect("moto exited before it was listening: run it by hand to see why");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
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
