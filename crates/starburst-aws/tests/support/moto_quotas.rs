//! A moto server with the Service Quotas operations, Fargate quotas and ECS task fields that moto
//! 5.2.5 lacks, added in process by `moto_quotas.py` (see there for exactly what and why).
//! Included with `#[path]` beside `mod support`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use starburst_aws::{Aws, AwsOptions};

use crate::support::{REGION, moto_server};

/// A running patched moto server, killed when dropped.
#[derive(Debug)]
pub struct PatchedMoto {
    child: Child,
    pub endpoint: String,
}

impl Drop for PatchedMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PatchedMoto {
    pub async fn start() -> Self {
        let bin = moto_server();
        let python = bin.with_file_name("python");
        assert!(
            python.is_file(),
            "no python beside {}: run `cargo xtask emulator-venv` (or set STARBURST_MOTO)",
            bin.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_quotas.py");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
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

    /// The adapters' configuration for this server.
    pub async fn aws(&self) -> Aws {
        Aws::connect(AwsOptions::emulator(
            &self.endpoint,
            REGION,
            "testing",
            "testing",
        ))
        .await
    }

    /// An SDK configuration for this server, for fixtures made with raw SDK clients.
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
