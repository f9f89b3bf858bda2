//! Bounded polling: tests wait for the condition they need, never for a guessed time.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Checks `done` until it holds, returning how long that took, or `None` once `timeout`
/// has passed.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if done() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`poll_until`], failing the test with "`what` did not happen within `timeout`".
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, done: impl FnMut() -> bool) -> Duration {
    poll_until(timeout, done).unwrap_or_else(|| panic!("{what} did not happen within {timeout:?}"))
}
