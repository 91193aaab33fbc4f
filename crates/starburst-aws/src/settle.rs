//! Waiting out AWS's eventual consistency: what was created a moment ago may not be visible or
//! usable yet (a new bucket answering NoSuchBucket, a new role ECS cannot assume), and then it is.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Runs `attempt` again while it fails with an error `unsettled` accepts, pausing 0.25 s
/// doubling up to 5 s, until `wait` has passed; then its last result.
pub(crate) async fn retry_while<T, E, F, Fut>(
    wait: Duration,
    unsettled: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Err(err) if unsettled(&err) && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_only_unsettled_errors_and_only_until_the_wait_has_passed() {
        let mut calls = 0;
        let out: Result<u32, &str> = retry_while(
            Duration::from_secs(60),
            |e| *e == "not yet",
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("not yet") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(out, Ok(3));

        let mut calls = 0;
        let out: Result<(), &str> = retry_while(
            Duration::from_secs(60),
            |e| *e == "not yet",
            || {
                calls += 1;
                async { Err("denied") }
            },
        )
        .await;
        assert_eq!((out, calls), (Err("denied"), 1), "other errors at once");

        let started = Instant::now();
        let out: Result<(), &str> = retry_while(
            Duration::from_secs(10),
            |_| true,
            || async { Err("not yet") },
        )
        .await;
        assert_eq!(out, Err("not yet"));
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "gave up only after the wait"
        );
    }
}
