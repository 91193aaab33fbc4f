//! The clock seam: every timed decision (leases, backoff, idle timeouts) reads time and sleeps
//! through it, so tests drive time by hand instead of waiting.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

/// Time as a component sees it.
#[async_trait]
pub trait Clock: Send + Sync + Debug + 'static {
    /// Monotonic time since the clock's own origin.
    fn now(&self) -> Duration;
    /// Wall-clock time, for records and logs.
    fn wall(&self) -> SystemTime;
    /// Completes once `now()` has advanced by `d`.
    async fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// A clock that moves only when told to; sleepers wake when [`ManualClock::advance`] passes
/// their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<Duration>>,
    tick: tokio::sync::watch::Sender<Duration>,
    wall_origin: SystemTime,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        let (tick, _) = tokio::sync::watch::channel(Duration::ZERO);
        Self {
            inner: Arc::new(Mutex::new(Duration::ZERO)),
            tick,
            wall_origin: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    /// Moves time forward by `d`, waking every sleeper whose deadline has passed.
    pub fn advance(&self, d: Duration) {
        let now = {
            let mut t = self.inner.lock().expect("clock lock");
            *t += d;
            *t
        };
        self.tick.send_replace(now);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.inner.lock().expect("clock lock")
    }
    fn wall(&self) -> SystemTime {
        self.wall_origin + self.now()
    }
    async fn sleep(&self, d: Duration) {
        let mut rx = self.tick.subscribe();
        let deadline = self.now() + d;
        while *rx.borrow_and_update() < deadline {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_past_their_deadline() {
        let clock = ManualClock::new();
        let c2 = clock.clone();
        let sleeper = tokio::spawn(async move {
            c2.sleep(Duration::from_secs(10)).await;
            c2.now()
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(5));
        assert_eq!(sleeper.await.unwrap(), Duration::from_secs(10));
    }
}
