//! The persisted history of quota increase requests: a JSON file the session reads, appends to
//! and rewrites atomically, so a request made yesterday is checked rather than repeated.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use starburst_cloud::{QuotaRequest, Quotas, RequestState};

use crate::{Error, Result};

/// True while a request may still be granted.
pub fn is_open(state: RequestState) -> bool {
    matches!(state, RequestState::Pending | RequestState::InProgress)
}

/// Quota increase requests made from this machine, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestHistory {
    /// The requests, oldest first, one per id.
    pub requests: Vec<QuotaRequest>,
}

impl RequestHistory {
    /// Reads the history at `path`; an absent file is an empty history.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(Error::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the history to `path` atomically: to a temporary file in the same directory
    /// (created if missing), flushed to disk, then renamed over `path`, so a reader sees the old
    /// or the new history, never half of one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = temp_path(dir, path);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    /// Adds `request`, or replaces the request with the same id.
    pub fn record(&mut self, request: QuotaRequest) {
        match self.requests.iter_mut().find(|r| r.id == request.id) {
            Some(r) => *r = request,
            None => self.requests.push(request),
        }
    }

    /// Sets the state of request `id`.
    pub fn update_state(&mut self, id: &str, state: RequestState) -> Result<()> {
        let r = self
            .requests
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::UnknownRequest { id: id.to_string() })?;
        r.state = state;
        Ok(())
    }

    /// All requests, oldest first.
    pub fn list(&self) -> &[QuotaRequest] {
        &self.requests
    }

    /// The most recent request for quota `code`.
    pub fn latest(&self, code: &str) -> Option<&QuotaRequest> {
        self.requests.iter().rev().find(|r| r.code == code)
    }

    /// The most recent request for `code` that is still pending or in progress.
    pub fn open_request(&self, code: &str) -> Option<&QuotaRequest> {
        self.requests
            .iter()
            .rev()
            .find(|r| r.code == code && is_open(r.state))
    }
}

fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "history".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Asks for quota `code` to be raised to `desired` and records the request in `history`. When
/// an open request for `code` already asks for at least `desired`, returns it instead of asking
/// again. Save the history afterwards.
pub async fn request_increase(
    quotas: &dyn Quotas,
    history: &mut RequestHistory,
    code: &str,
    desired: f64,
) -> Result<QuotaRequest> {
    if let Some(open) = history.open_request(code)
        && open.desired >= desired
    {
        return Ok(open.clone());
    }
    let request = quotas
        .request_increase(code, desired)
        .await
        .map_err(|source| Error::Request {
            op: "request quota increase",
            code: code.to_string(),
            source,
        })?;
    history.record(request.clone());
    Ok(request)
}

/// Asks the service for the state of every open request in `history` and records the
/// answers. A request whose state cannot be read keeps its last known state; the returned
/// warnings name each such request and the error. Save the history afterwards.
pub async fn refresh(quotas: &dyn Quotas, history: &mut RequestHistory) -> Vec<String> {
    let open: Vec<String> = history
        .requests
        .iter()
        .filter(|r| is_open(r.state))
        .map(|r| r.id.clone())
        .collect();
    let mut warnings = Vec::new();
    for id in open {
        match quotas.request_status(&id).await {
            Ok(r) => {
                if let Some(known) = history.requests.iter_mut().find(|k| k.id == id) {
                    known.state = r.state;
                }
            }
            Err(e) => warnings.push(format!(
                "could not check quota request {id} ({e}); keeping its last known state"
            )),
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use starburst_cloud::FARGATE_ON_DEMAND_VCPU as OD;
    use starburst_cloud::FARGATE_SPOT_VCPU as SPOT;
    use starburst_cloud::fake::FakeQuotas;

    fn req(id: &str, code: &str, desired: f64, state: RequestState) -> QuotaRequest {
        QuotaRequest {
            id: id.into(),
            code: code.into(),
            desired,
            state,
            created: UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn save_load_update_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/quota-requests.json");
        assert_eq!(
            RequestHistory::load(&path).unwrap(),
            RequestHistory::default()
        );
        let mut h = RequestHistory::default();
        h.record(req("r1", OD, 50.0, RequestState::Pending));
        h.record(req("r2", SPOT, 20.0, RequestState::Pending));
        h.save(&path).unwrap();
        let mut back = RequestHistory::load(&path).unwrap();
        assert_eq!(back, h);
        back.update_state("r1", RequestState::Approved).unwrap();
        let e = back.update_state("nope", RequestState::Denied).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        back.save(&path).unwrap();
        let again = RequestHistory::load(&path).unwrap();
        assert_eq!(again.list()[0].state, RequestState::Approved);
        assert_eq!(again.open_request(OD), None);
        assert_eq!(again.latest(OD).unwrap().id, "r1");
        assert_eq!(again.open_request(SPOT).unwrap().id, "r2");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["quota-requests.json"]);
    }

    #[test]
    fn a_corrupt_history_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = RequestHistory::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("h.json") && e.contains("move the file away"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn requests_are_made_once_and_refreshed() {
        let fake = FakeQuotas::new();
        fake.set(OD, 6.0, Some(6.0), 0.0);
        let mut h = RequestHistory::default();
        let r = request_increase(&fake, &mut h, OD, 100.0).await.unwrap();
        // An open request for as much or more is reused, not repeated.
        let again = request_increase(&fake, &mut h, OD, 80.0).await.unwrap();
        assert_eq!(again.id, r.id);
        assert_eq!(h.list().len(), 1);
        let more = request_increase(&fake, &mut h, OD, 200.0).await.unwrap();
        assert_ne!(more.id, r.id);
        assert_eq!(h.list().len(), 2);
        fake.resolve_request(&r.id, RequestState::Approved);
        // A request the service does not know keeps its state, with a warning.
        h.record(req("ghost", OD, 10.0, RequestState::InProgress));
        let warnings = refresh(&fake, &mut h).await;
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ghost"), "{warnings:?}");
        let state = |id: &str| h.list().iter().find(|r| r.id == id).unwrap().state;
        assert_eq!(state(&r.id), RequestState::Approved);
        assert_eq!(state(&more.id), RequestState::Pending);
        assert_eq!(state("ghost"), RequestState::InProgress);
        // The service refuses unknown quotas; the error says which.
        let e = request_increase(&fake, &mut h, "L-NOPE", 5.0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("L-NOPE"), "{e}");
    }
}
