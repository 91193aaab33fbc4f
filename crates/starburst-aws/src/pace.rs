//! Pacing of launches: a small async token bucket that slows down after throttling.
//!
//! Fargate meters task launches with a token bucket per account and region (100 tasks at once,
//! 20 per second sustained) and throttles `RunTask` beyond it. Pacing our own calls the same way
//! keeps a large launch from spending its retries on throttling errors. `governor` was not used:
//! it cannot change its rate at run time (needed to halve it after throttling) and runs on its
//! own clock, which tokio's paused test time cannot drive.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How fast workers are launched: one token per task, refilled at `per_second` up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Pace {
    /// Tokens (tasks) added per second; default 20, Fargate's sustained task launch rate.
    pub per_second: f64,
    /// Most tokens the bucket holds, i.e. how many tasks may start at once; default 100,
    /// Fargate's burst.
    pub burst: u32,
    /// How long the rate stays halved after the service throttled us; default 30 s.
    pub cooldown: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 100,
            cooldown: Duration::from_secs(30),
        }
    }
}

impl Pace {
    /// A pace of `per_second` tokens per second with room for `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            ..Self::default()
        }
    }

    /// This pace with rate halvings lasting `cooldown`.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The pace with nonsensical values replaced: a positive finite rate, a burst of at least 1.
    fn sanitized(self) -> Self {
        let per_second = if self.per_second.is_finite() && self.per_second > 0.0 {
            self.per_second
        } else {
            Self::default().per_second
        };
        Self {
            per_second,
            burst: self.burst.max(1),
            cooldown: self.cooldown,
        }
    }
}

/// An async token bucket. Callers reserve tokens first and then sleep until the reservation is
/// covered, so concurrent callers are served in the order they asked.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    pace: Pace,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens available; negative while reservations are outstanding.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// The current refill rate (halved after throttling).
    rate: f64,
    /// While set and in the future, the rate is reduced.
    slow_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(pace: Pace) -> Self {
        let pace = pace.sanitized();
        Self {
            state: Mutex::new(State {
                tokens: f64::from(pace.burst),
                updated: Instant::now(),
                rate: pace.per_second,
                slow_until: None,
            }),
            pace,
        }
    }

    /// Waits until `n` tokens (at most the burst) are available and takes them.
    pub(crate) async fn acquire(&self, n: u32) {
        let wait = {
            let mut s = self.lock();
            let now = Instant::now();
            self.refill(&mut s, now);
            s.tokens -= f64::from(n.min(self.pace.burst));
            if s.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.tokens / s.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The service throttled a call: halve the rate for the cooldown (again, if already
    /// halved; never below 1/64 of the configured rate) and spend what is in the bucket.
    pub(crate) fn throttled(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        self.refill(&mut s, now);
        s.rate = (s.rate / 2.0).max(self.pace.per_second / 64.0);
        s.slow_until = Some(now + self.pace.cooldown);
        s.tokens = s.tokens.min(0.0);
    }

    /// The current refill rate in tokens per second.
    #[cfg(test)]
    pub(crate) fn rate(&self) -> f64 {
        let mut s = self.lock();
        self.refill(&mut s, Instant::now());
        s.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the tokens earned since the last update, restoring the full rate once the cooldown
    /// is over (tokens before that point accrue at the reduced rate).
    fn refill(&self, s: &mut State, now: Instant) {
        if let Some(until) = s.slow_until {
            if now < until {
                Self::accrue(s, now, f64::from(self.pace.burst));
                return;
            }
            Self::accrue(s, until.max(s.updated), f64::from(self.pace.burst));
            s.rate = self.pace.per_second;
            s.slow_until = None;
        }
        Self::accrue(s, now, f64::from(self.pace.burst));
    }

    fn accrue(s: &mut State, until: Instant, burst: f64) {
        let elapsed = until.saturating_duration_since(s.updated).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(burst);
        s.updated = s.updated.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_the_rate_applies() {
        let bucket = TokenBucket::new(Pace::new(2.0, 10));
        let t0 = Instant::now();
        for _ in 0..10 {
            bucket.acquire(1).await;
        }
        assert_eq!(Instant::now(), t0, "the burst must not wait");
        bucket.acquire(1).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(500));
        bucket.acquire(4).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_up_to_the_burst_only() {
        let bucket = TokenBucket::new(Pace::new(10.0, 5));
        bucket.acquire(5).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t0 = Instant::now();
        bucket.acquire(5).await;
        assert_eq!(Instant::now(), t0);
        bucket.acquire(1).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_burst_takes_the_whole_bucket() {
        let bucket = TokenBucket::new(Pace::new(1.0, 3));
        let t0 = Instant::now();
        bucket.acquire(10).await;
        assert_eq!(Instant::now(), t0);
        bucket.acquire(1).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_spaced_by_the_rate() {
        let bucket = std::sync::Arc::new(TokenBucket::new(Pace::new(4.0, 1)));
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let b = bucket.clone();
            tasks.spawn(async move {
                b.acquire(1).await;
                Instant::now() - t0
            });
        }
        let mut done: Vec<Duration> = tasks.join_all().await;
        done.sort();
        let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(250 * i)).collect();
        assert_eq!(done, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_for_the_cooldown() {
        let pace = Pace::new(4.0, 4).with_cooldown(Duration::from_secs(10));
        let bucket = TokenBucket::new(pace);
        bucket.throttled();
        assert_eq!(bucket.rate(), 2.0);
        let t0 = Instant::now();
        bucket.acquire(1).await;
        assert_eq!(
            Instant::now() - t0,
            Duration::from_millis(500),
            "throttling spends the bucket and halves the rate"
        );
        bucket.throttled();
        assert_eq!(bucket.rate(), 1.0, "throttled again: halved again");
        for _ in 0..10 {
            bucket.throttled();
        }
        assert_eq!(bucket.rate(), 4.0 / 64.0, "the rate has a floor");

        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(
            bucket.rate(),
            4.0,
            "the full rate returns after the cooldown"
        );
        let t1 = Instant::now();
        for _ in 0..4 {
            bucket.acquire(1).await;
        }
        assert!(
            Instant::now() - t1 < Duration::from_secs(1),
            "the bucket refilled"
        );
    }

    #[test]
    fn nonsensical_paces_are_sanitized() {
        let p = Pace::new(0.0, 0).sanitized();
        assert_eq!(p.per_second, 20.0);
        assert_eq!(p.burst, 1);
        assert_eq!(Pace::new(f64::NAN, 3).sanitized().per_second, 20.0);
    }
}
