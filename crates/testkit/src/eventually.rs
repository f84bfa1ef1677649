//! Assert-eventually helpers: poll a condition rather than sleep for a guessed time.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often the condition is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `Some`, and returns that value.
///
/// # Panics
///
/// When `timeout` passes without a `Some`; the message names `what`.
pub async fn eventually<F, Fut, T>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `f` every 50 ms until it returns `Ok`, and returns that value.
///
/// # Panics
///
/// When `timeout` passes without an `Ok`; the message names `what` and the last error.
pub async fn eventually_ok<F, Fut, T, E>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(value) => return value,
            Err(error) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for: {what}; last error: {error:?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let calls = Arc::new(AtomicU32::new(0));
        let value = eventually(Duration::from_secs(5), "third call", || {
            let calls = calls.clone();
            async move { (calls.fetch_add(1, Ordering::SeqCst) >= 2).then_some("done") }
        })
        .await;
        assert_eq!(value, "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: the impossible")]
    async fn panics_with_the_description_on_timeout() {
        eventually(Duration::from_millis(120), "the impossible", || async {
            None::<()>
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "last error: \"still no\"")]
    async fn eventually_ok_reports_the_last_error() {
        eventually_ok(Duration::from_millis(120), "a yes", || async {
            Err::<(), _>("still no")
        })
        .await;
    }
}
