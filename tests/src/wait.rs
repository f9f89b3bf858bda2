//! Bounded polling: tests wait for the condition they need, never for a guessed time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Set by the VM matrix (`cargo xtask vm-test`): the guest runs under software emulation,
/// several times slower than the host, so every bound on time is this many times longer.
/// On the host it is unset and the bounds are the ones the README promises.
const SLOWDOWN_VAR: &str = "MIRROR_XDP_TEST_SLOWDOWN";

/// The factor from [`SLOWDOWN_VAR`] (1 when unset); a value that is not a positive whole
/// number fails the test rather than silently meaning 1.
pub fn slowdown() -> u32 {
    static FACTOR: OnceLock<u32> = OnceLock::new();
    *FACTOR.get_or_init(|| match std::env::var(SLOWDOWN_VAR) {
        Err(_) => 1,
        Ok(v) => match v.parse() {
            Ok(n) if n >= 1 => n,
            _ => panic!("{SLOWDOWN_VAR}={v:?}: expected a whole number >= 1"),
        },
    })
}

/// A bound on time, stretched by [`slowdown`].
pub fn stretched(bound: Duration) -> Duration {
    bound * slowdown()
}

/// Checks `done` until it holds, returning how long that took, or `None` once `timeout`
/// ([`stretched`]) has passed.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let timeout = stretched(timeout);
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
    poll_until(timeout, done)
        .unwrap_or_else(|| panic!("{what} did not happen within {:?}", stretched(timeout)))
}
