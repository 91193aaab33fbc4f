//! Requests in flight. Object stores answer in tens of milliseconds (S3 in-region: 25-30 ms at
//! the median, 70-90 ms at p99), so a session that made its requests one after another would
//! be bounded by (requests per future x latency), whatever its number of workers. The
//! scheduler's driver therefore decides its requests under the state lock and sends them
//! together, each answered as it completes: at most [`RequestLimits::per_kind`] of one kind at
//! once, at most [`RequestLimits::total`] of the whole session, so one slow key (or kind) does
//! not keep the others from being sent.

use std::future::Future;

use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;

/// How many requests a session keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// At most this many requests of one kind at once (assignments, cancels, result reads,
    /// heartbeat reads).
    pub per_kind: usize,
    /// At most this many requests of the session at once, all kinds together.
    pub total: usize,
}

impl RequestLimits {
    /// Sized for S3 and up to a thousand workers. A round with a request per worker (a
    /// thousand result reads) takes four waves of 256 instead of sixteen of 64: in the
    /// simulation (`examples/simulate.rs`, 1,000 workers) 64/128 gave 456 futures/s of 1 s and
    /// 1,019 of 0 s, 256/512 gave 616 and 2,066. Bursts can ask more than the 5,500 reads and
    /// 3,500 writes per second S3 serves per prefix before it partitions the prefix; S3 then
    /// answers 503 SlowDown, which is retried like any transient failure. 512 connections
    /// stay inside a process's usual limit of 1,024 open files.
    pub const S3: Self = Self {
        per_kind: 256,
        total: 512,
    };
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self::S3
    }
}

/// The kinds of request bounded apart: many of one kind never keep another from being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Assignments written to workers' inboxes.
    Assign,
    /// Cancel markers and the skips that withdraw prefetched assignments.
    Cancel,
    /// Reads of tasks' results and events.
    Read,
    /// Reads of workers' heartbeats.
    Beat,
    /// Stop messages written at the end of the session.
    Stop,
}

impl Kind {
    /// How many kinds there are (`Stop` is the last).
    const ALL: usize = Kind::Stop as usize + 1;
}

/// The bounds on the requests one scheduler keeps in flight: one per kind, and the session's
/// over all kinds.
#[derive(Debug)]
pub(crate) struct InFlight {
    limits: RequestLimits,
    session: Semaphore,
    kinds: [Semaphore; Kind::ALL],
}

impl InFlight {
    pub(crate) fn new(limits: RequestLimits) -> Self {
        let limits = RequestLimits {
            per_kind: limits.per_kind.max(1),
            total: limits.total.max(1),
        };
        Self {
            limits,
            session: Semaphore::new(limits.total),
            kinds: std::array::from_fn(|_| Semaphore::new(limits.per_kind)),
        }
    }

    /// Sends `request` once a permit of its kind and one of the session are free.
    pub(crate) async fn send<F: Future>(&self, kind: Kind, request: F) -> F::Output {
        // The semaphores are never closed: permits always come. Taken in one order (kind,
        // then session) by every request, so none waits on another holding what it needs.
        let _kind = self.kinds[kind as usize].acquire().await;
        let _session = self.session.acquire().await;
        request.await
    }

    /// Runs `f` on every item, as requests of `kind`, and returns their outputs in the order
    /// they completed.
    pub(crate) async fn fan_out<T, F, Fut>(
        &self,
        kind: Kind,
        items: Vec<T>,
        f: F,
    ) -> Vec<Fut::Output>
    where
        F: Fn(T) -> Fut,
        Fut: Future,
    {
        stream::iter(items)
            .map(|item| self.send(kind, f(item)))
            .buffer_unordered(self.limits.per_kind)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Counts requests in flight and remembers the most seen at once.
    #[derive(Default)]
    struct Probe {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Probe {
        async fn request(&self, ms: u64) {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_kind_keeps_at_most_per_kind_in_flight_and_runs_every_item() {
        let inflight = InFlight::new(RequestLimits {
            per_kind: 4,
            total: 100,
        });
        let probe = Probe::default();
        let out = inflight
            .fan_out(Kind::Read, (0..20).collect(), |i: u64| {
                let probe = &probe;
                async move {
                    probe.request(10).await;
                    i
                }
            })
            .await;
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(probe.most.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_together_stay_within_the_session_total() {
        let inflight = InFlight::new(RequestLimits {
            per_kind: 8,
            total: 10,
        });
        let probe = Arc::new(Probe::default());
        let kind = |kind: Kind, n: u64| {
            let probe = probe.clone();
            inflight.fan_out(kind, (0..n).collect(), move |_| {
                let probe = probe.clone();
                async move { probe.request(10).await }
            })
        };
        let (a, b) = tokio::join!(kind(Kind::Read, 30), kind(Kind::Assign, 30));
        assert_eq!((a.len(), b.len()), (30, 30));
        assert_eq!(probe.most.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_of_one_kind_sent_apart_share_its_bound() {
        let inflight = InFlight::new(RequestLimits {
            per_kind: 3,
            total: 100,
        });
        let probe = Probe::default();
        let one = |ms| inflight.send(Kind::Read, probe.request(ms));
        futures_util::future::join_all((0..12).map(|i| one(10 + i))).await;
        assert_eq!(probe.most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_does_not_hold_up_the_rest_of_its_kind() {
        let inflight = InFlight::new(RequestLimits {
            per_kind: 2,
            total: 2,
        });
        let t0 = tokio::time::Instant::now();
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        inflight
            .fan_out(Kind::Read, vec![1000u64, 10, 10, 10, 10], |ms| {
                let done = done.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    done.lock().unwrap().push((ms, t0.elapsed()));
                }
            })
            .await;
        let done = done.lock().unwrap();
        // The four fast ones went through the other slot while the slow one waited.
        let fast: Vec<_> = done.iter().filter(|(ms, _)| *ms == 10).collect();
        assert_eq!(fast.len(), 4);
        assert!(fast.iter().all(|(_, at)| *at <= Duration::from_millis(40)));
        assert_eq!(done.last().unwrap().0, 1000);
    }
}
