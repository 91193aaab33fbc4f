//! Who am I, inside a Fargate task: the ECS task metadata endpoint (v4).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use starburst_cloud::{Error, Result};

/// The variable ECS sets in every container of a task on Fargate platform 1.4 and later.
pub const METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// The id of the ECS task this process runs in (the last segment of its task ARN, which is the
/// worker id the client got from `RunTask`), read from the task metadata endpoint;
/// `Ok(None)` outside ECS (the variable is not set).
pub async fn ecs_task_id() -> Result<Option<String>> {
    match std::env::var(METADATA_ENV) {
        Ok(base) => task_id_from(&base).await.map(Some),
        Err(_) => Ok(None),
    }
}

/// The task id from the metadata endpoint at `base`.
async fn task_id_from(base: &str) -> Result<String> {
    let op = "read the ECS task metadata";
    let url = format!("{}/task", base.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::invalid(op, format!("{METADATA_ENV}={base} is not a URL: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut last = None;
    // The endpoint is local to the task; a few quick retries cover its start-up.
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let response = match client.get(uri.clone()).await {
            Ok(r) => r,
            Err(e) => {
                last = Some(e.to_string());
                continue;
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                last = Some(e.to_string());
                continue;
            }
        };
        if !status.is_success() {
            last = Some(format!("HTTP {status}"));
            continue;
        }
        return task_id_of(&body).map_err(|m| Error::invalid(op, m));
    }
    Err(Error::Transient {
        op,
        resource: url,
        source: last.unwrap_or_default().into(),
    })
}

/// The task id in a task metadata document (`{"TaskARN": "arn:aws:ecs:…:task/<cluster>/<id>"}`).
fn task_id_of(body: &[u8]) -> std::result::Result<String, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the task metadata is not JSON: {e}"))?;
    let arn = doc
        .get("TaskARN")
        .and_then(|v| v.as_str())
        .ok_or("the task metadata has no TaskARN")?;
    match arn.rsplit('/').next() {
        Some(id) if !id.is_empty() && arn.contains(":task/") => Ok(id.to_owned()),
        _ => Err(format!("{arn:?} is not an ECS task ARN")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_id_is_the_arn_tail() {
        let doc = br#"{"Cluster":"c","TaskARN":"arn:aws:ecs:us-east-1:123456789012:task/starburst/0123abcd4567ef","Family":"f"}"#;
        assert_eq!(task_id_of(doc).unwrap(), "0123abcd4567ef");
        let old = br#"{"TaskARN":"arn:aws:ecs:us-east-1:123456789012:task/0123abcd"}"#;
        assert_eq!(task_id_of(old).unwrap(), "0123abcd");
        assert!(task_id_of(b"{}").unwrap_err().contains("no TaskARN"));
        assert!(task_id_of(br#"{"TaskARN":"arn:aws:ecs:x:y:cluster/z"}"#).is_err());
        assert!(task_id_of(b"nope").is_err());
    }

    #[tokio::test]
    async fn reads_the_endpoint() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = r#"{"TaskARN":"arn:aws:ecs:us-east-1:1:task/c/abc123"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(response.as_bytes()).await.unwrap();
            request
        });
        let id = task_id_from(&format!("http://127.0.0.1:{port}/v4/abc123"))
            .await
            .unwrap();
        assert_eq!(id, "abc123");
        assert!(server.await.unwrap().starts_with("GET /v4/abc123/task "));
    }
}
