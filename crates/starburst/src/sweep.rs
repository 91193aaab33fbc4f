//! Sweeping up after sessions that are gone: the workers of a set-up's pool, each with the
//! state of its session (read from the session's heartbeat in the store), its age and what it
//! has cost so far. Workers stop by themselves when their client is gone (the orphan timeout
//! and the deadline, see `starburst-worker`); this is the backstop for those that did not (an
//! older worker, a hung one), run when a session opens and on request.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use starburst_cloud::{Compute, LiveWorker, ObjectPath, ObjectStore, ObjectStoreExt, WorkerId};
use starburst_cost::{Meter, billed_seconds};
use starburst_serialization::{self as wire, SessionLayout};

use crate::Result;

/// How far a session's heartbeat may lag before the session counts as gone, beyond its own
/// orphan timeout: generous, so that a clock that is off (AWS refuses requests from clocks
/// more than 15 minutes off) never makes a live session look gone.
pub const GONE_MARGIN: Duration = Duration::from_secs(15 * 60);

/// What became of the session a worker belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// The session asking.
    Current,
    /// Another session whose client is alive (its heartbeat is recent).
    Live,
    /// The session ended; its workers should have stopped.
    Closed,
    /// The session's client is gone: no heartbeat for longer than its orphan timeout and the
    /// margin, or none at all from a session older than the margin.
    Gone,
}

impl SessionStatus {
    /// The status's name as the R package shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Live => "live",
            Self::Closed => "closed",
            Self::Gone => "gone",
        }
    }

    /// True when nobody will ever stop the worker: its session is closed or gone.
    pub fn is_orphaned(self) -> bool {
        matches!(self, Self::Closed | Self::Gone)
    }
}

/// A worker of the set-up's pool.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupWorker {
    /// The worker.
    pub id: WorkerId,
    /// Its session, when the platform recorded one.
    pub session: Option<String>,
    /// What became of the session.
    pub status: SessionStatus,
    /// How long ago the platform accepted it.
    pub age: Duration,
    /// What it has cost so far at list prices (at least a minute), when it can be priced.
    pub usd: Option<f64>,
}

/// Every live worker of the pool with the state of its session. `current` is the session
/// asking (never judged). Reads each other session's heartbeat once.
pub async fn survey(
    store: &dyn ObjectStore,
    compute: &dyn Compute,
    current: Option<&str>,
    meter: Option<&Meter>,
    now: SystemTime,
    margin: Duration,
) -> Result<Vec<SetupWorker>> {
    let live = compute.list_live().await?;
    let mut oldest: BTreeMap<String, Duration> = BTreeMap::new();
    for w in &live {
        if let Some(s) = &w.session {
            let age = age(w, now);
            let e = oldest.entry(s.clone()).or_default();
            *e = (*e).max(age);
        }
    }
    let mut status: BTreeMap<String, SessionStatus> = BTreeMap::new();
    for (session, oldest) in oldest {
        let s = if Some(session.as_str()) == current {
            SessionStatus::Current
        } else {
            session_status(store, &session, oldest, now, margin).await?
        };
        status.insert(session, s);
    }
    Ok(live
        .into_iter()
        .map(|w| {
            let age = age(&w, now);
            let usd = match (meter, w.size) {
                (Some(m), Some(size)) => m
                    .hourly(size, w.arch, w.capacity)
                    .ok()
                    .map(|h| h * billed_seconds(age) as f64 / 3600.0),
                _ => None,
            };
            SetupWorker {
                status: w
                    .session
                    .as_ref()
                    .and_then(|s| status.get(s).copied())
                    // A worker no session claims: not ours to judge unless it is old.
                    .unwrap_or(if age > margin {
                        SessionStatus::Gone
                    } else {
                        SessionStatus::Live
                    }),
                id: w.id,
                session: w.session,
                age,
                usd,
            }
        })
        .collect())
}

fn age(w: &LiveWorker, now: SystemTime) -> Duration {
    w.created_at
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

async fn session_status(
    store: &dyn ObjectStore,
    session: &str,
    oldest_worker: Duration,
    now: SystemTime,
    margin: Duration,
) -> Result<SessionStatus> {
    let key = ObjectPath::parse(SessionLayout::new(session).client())?;
    let Some(buf) = store.get_opt(&key).await? else {
        // Every session beats before it launches: workers without a beat are from a session
        // that never got going, or from an older starburst; judged by their age.
        return Ok(if oldest_worker > margin {
            SessionStatus::Gone
        } else {
            SessionStatus::Live
        });
    };
    let Ok(beat) = wire::decode_client_beat(&buf) else {
        return Ok(SessionStatus::Gone);
    };
    if beat.closed {
        return Ok(SessionStatus::Closed);
    }
    // The store's own clock says when the beat was written.
    let written = match store.head(&key).await {
        Ok(meta) => meta.modified,
        Err(e) if e.is_not_found() => return Ok(SessionStatus::Closed),
        Err(e) => return Err(e.into()),
    };
    let silent = now.duration_since(written).unwrap_or_default();
    Ok(
        if silent > Duration::from_millis(beat.orphan_timeout_ms) + margin {
            SessionStatus::Gone
        } else {
            SessionStatus::Live
        },
    )
}

/// Stops `workers` (idempotent), saying why in the platform's record.
pub async fn stop(compute: &dyn Compute, workers: &[SetupWorker], reason: &str) -> Result<()> {
    let ids: Vec<WorkerId> = workers.iter().map(|w| w.id.clone()).collect();
    if !ids.is_empty() {
        compute.stop(&ids, reason).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use starburst_cloud::fake::{FakeCompute, InMemoryStore};
    use starburst_cloud::{SESSION_TAG, WorkerPhase, WorkerSize, WorkerSpec};
    use starburst_cost::Catalog;

    use super::*;

    fn spec(session: &str) -> WorkerSpec {
        let mut s = WorkerSpec::new(WorkerSize {
            millicpu: 1000,
            memory_mib: 2048,
        });
        s.tags.insert(SESSION_TAG.into(), session.into());
        s
    }

    async fn beat(store: &InMemoryStore, session: &str, closed: bool) {
        let beat = wire::ClientBeat {
            session_id: session.into(),
            seq: 1,
            unix_ms: 0,
            deadline_after_ms: None,
            closed,
            orphan_timeout_ms: 300_000,
        };
        store
            .put(
                &ObjectPath::parse(SessionLayout::new(session).client()).unwrap(),
                Bytes::from(wire::encode_client_beat(&beat)),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn workers_are_judged_by_their_sessions_heartbeat_and_priced() {
        let store = InMemoryStore::new();
        let compute = Arc::new(FakeCompute::new());
        for (session, n) in [("me", 2), ("alive", 1), ("ended", 2), ("silent", 1)] {
            compute.launch(&spec(session), n).await.unwrap();
        }
        beat(&store, "alive", false).await;
        beat(&store, "ended", true).await;
        beat(&store, "silent", false).await;
        let meter = Meter::new(&Catalog::builtin(), "us-east-1").unwrap();
        let now = SystemTime::now() + Duration::from_secs(3600);
        let by = |ws: &[SetupWorker], s: &str| -> Vec<SessionStatus> {
            ws.iter()
                .filter(|w| w.session.as_deref() == Some(s))
                .map(|w| w.status)
                .collect()
        };
        // An hour later (by our clock), the beats of "alive" and "silent" are an hour old:
        // with a margin of 15 minutes both are gone; the asking session is never judged.
        let ws = survey(
            &store,
            &*compute,
            Some("me"),
            Some(&meter),
            now,
            GONE_MARGIN,
        )
        .await
        .unwrap();
        assert_eq!(ws.len(), 6);
        assert_eq!(by(&ws, "me"), [SessionStatus::Current; 2]);
        assert_eq!(by(&ws, "ended"), [SessionStatus::Closed; 2]);
        assert_eq!(by(&ws, "silent"), [SessionStatus::Gone]);
        // Right now they are live.
        let ws = survey(
            &store,
            &*compute,
            Some("me"),
            Some(&meter),
            SystemTime::now(),
            GONE_MARGIN,
        )
        .await
        .unwrap();
        assert_eq!(by(&ws, "alive"), [SessionStatus::Live]);
        assert_eq!(by(&ws, "silent"), [SessionStatus::Live]);
        assert_eq!(by(&ws, "ended"), [SessionStatus::Closed; 2]);
        // An hour of a 1 vCPU, 2 GB on-demand worker in us-east-1.
        let w = &survey(&store, &*compute, None, Some(&meter), now, GONE_MARGIN)
            .await
            .unwrap()[0];
        let hourly = 0.04048 + 2.0 * 0.004445;
        assert!(
            (w.usd.unwrap() - hourly).abs() < 0.001,
            "{:?} vs {hourly}",
            w.usd
        );

        // Stopping the orphans stops exactly them.
        let ws = survey(
            &store,
            &*compute,
            Some("me"),
            Some(&meter),
            now,
            GONE_MARGIN,
        )
        .await
        .unwrap();
        let orphans: Vec<SetupWorker> = ws.into_iter().filter(|w| w.status.is_orphaned()).collect();
        assert_eq!(orphans.len(), 4);
        stop(&*compute, &orphans, "its session is gone")
            .await
            .unwrap();
        let left = compute.list_live().await.unwrap();
        assert_eq!(left.len(), 2);
        let statuses = compute
            .describe(&orphans.iter().map(|w| w.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert!(statuses.iter().all(|s| s.phase == WorkerPhase::Stopped));
    }

    #[tokio::test]
    async fn a_session_that_never_beat_is_gone_only_once_its_workers_are_old() {
        let store = InMemoryStore::new();
        let compute = FakeCompute::new();
        compute.launch(&spec("old-version"), 1).await.unwrap();
        let soon = survey(&store, &compute, None, None, SystemTime::now(), GONE_MARGIN)
            .await
            .unwrap();
        assert_eq!(soon[0].status, SessionStatus::Live);
        assert_eq!(soon[0].usd, None);
        let later = SystemTime::now() + GONE_MARGIN + Duration::from_secs(1);
        let ws = survey(&store, &compute, None, None, later, GONE_MARGIN)
            .await
            .unwrap();
        assert_eq!(ws[0].status, SessionStatus::Gone);
    }
}
