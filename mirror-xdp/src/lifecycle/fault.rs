//! A test hook for crash safety, compiled in with the `test-support` feature only (the
//! shipped binary has none: [`point`] is then empty). With `MIRROR_XDP_FAULT=STEP` in its
//! environment, mirror-xdp kills itself with SIGKILL when it reaches STEP: at once, with no
//! unwinding, no destructors and no rollback, as a real crash (an OOM kill, `kill -9`) would.
//! It only ends the process whose own environment names a step. `tests/tests/faults.rs`
//! kills `attach`, `reload` (on both of its paths) and `detach` at every step, on both
//! egress hooks (TCX and tc), and checks that
//! the interface enforces the old or the new policy entirely, and that the next command
//! recovers ([`super::recover`]).

/// The environment variable that names the step to crash at.
pub const ENV: &str = "MIRROR_XDP_FAULT";

/// The steps of `attach`, in order. Nothing is linked before `attach:egress-linked`, and the
/// XDP program is linked only with its maps complete and enabled. On the tc egress hook, the
/// pending record names the filter before the clsact qdisc and the filter are added
/// ([`TC_ONLY`]).
pub const ATTACH: &[&str] = &[
    "attach:maps-pinned",
    "attach:maps-filled",
    "attach:xdp-program-pinned",
    "attach:egress-program-pinned",
    "attach:pending-written",
    "attach:sysctl-set",
    "attach:tc-pending-written",
    "attach:clsact-added",
    "attach:egress-linked",
    "attach:xdp-linked",
    "attach:state-written",
];

/// The steps of adding interfaces to the enforcer in force (`attach --iface` while it is
/// attached). Nothing new is linked before `add:egress-linked`; the new interfaces enforce
/// from `add:xdp-linked` on.
pub const ADD: &[&str] = &[
    "add:pending-written",
    "add:egress-linked",
    "add:xdp-linked",
    "add:state-written",
];

/// The steps of a `reload` that takes the spare generation ([`super::spare`]), up to the
/// swap; [`RELOAD_SWAP`] follows. The maps fill while the pending record is written, in
/// another thread: each of the two has its own step.
pub const RELOAD_SPARE: &[&str] = &[
    "reload:spare-taken",
    "reload:spare-pending-written",
    "reload:spare-maps-filled",
];

/// The steps of a `reload` without a spare (it loads and verifies the programs itself), up
/// to the swap; [`RELOAD_SWAP`] follows.
pub const RELOAD_FRESH: &[&str] = &[
    "reload:fresh-maps-pinned",
    "reload:fresh-maps-filled",
    "reload:fresh-xdp-program-pinned",
    "reload:fresh-egress-program-pinned",
    "reload:fresh-pending-written",
];

/// The steps of every `reload` (and of `run` adopting an enforcer) from the swap on.
/// `reload:egress-swapped` and `reload:xdp-swapped` follow the first link update of their
/// kind, the points of no return.
pub const RELOAD_SWAP: &[&str] = &[
    "reload:egress-swapped",
    "reload:xdp-swapped",
    "reload:generation-renamed",
    "reload:state-written",
];

/// The steps of `detach` (from every interface), in order. `detach:egress-unpinned` follows
/// the removal of the egress hook (TCX link, or tc filter and the qdisc we added).
pub const DETACH: &[&str] = &[
    "detach:xdp-unpinned",
    "detach:tc-filter-deleted",
    "detach:egress-unpinned",
    "detach:pins-removed",
    "detach:sysctl-restored",
];

/// The steps only the tc egress hook reaches (`attach:clsact-added` only where attach adds
/// the qdisc).
pub const TC_ONLY: &[&str] = &[
    "attach:tc-pending-written",
    "attach:clsact-added",
    "detach:tc-filter-deleted",
];

/// Every step, of every command.
pub fn all_steps() -> Vec<&'static str> {
    [ATTACH, ADD, RELOAD_SPARE, RELOAD_FRESH, RELOAD_SWAP, DETACH].concat()
}

/// Crashes here if [`ENV`] names `step`.
#[cfg(feature = "test-support")]
pub fn point(step: &'static str) {
    debug_assert!(
        all_steps().contains(&step),
        "fault step {step} is not listed"
    );
    if std::env::var_os(ENV).is_some_and(|v| v == step) {
        // SIGKILL cannot be caught; pausing keeps this thread from going on before the
        // kernel delivers it.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        loop {
            nix::unistd::pause();
        }
    }
}

/// Without `test-support`: nothing.
#[cfg(not(feature = "test-support"))]
#[inline(always)]
pub fn point(_step: &'static str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique_and_name_their_command() {
        let all = all_steps();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "duplicate step names");
        for (command, steps) in [
            ("attach:", ATTACH),
            ("reload:spare-", RELOAD_SPARE),
            ("reload:fresh-", RELOAD_FRESH),
            ("reload:", RELOAD_SWAP),
            ("detach:", DETACH),
        ] {
            assert!(steps.iter().all(|s| s.starts_with(command)), "{steps:?}");
        }
        assert!(TC_ONLY.iter().all(|s| all.contains(s)), "{TC_ONLY:?}");
    }

    #[test]
    fn an_unnamed_step_does_nothing() {
        // The test process has no MIRROR_XDP_FAULT: reaching a step must not end it.
        assert!(std::env::var_os(ENV).is_none());
        point(RELOAD_SWAP[0]);
    }
}
