//! A test hook for crash safety. With `MIRROR_XDP_FAULT=STEP` in its environment, mirror-xdp
//! kills itself with SIGKILL when it reaches STEP: at once, with no unwinding, no destructors
//! and no rollback, as a real crash (an OOM kill, `kill -9`) would. It is harmless: it only
//! ends the process whose own environment names a step. `tests/tests/faults.rs` kills
//! `attach`, `reload` and `detach` at every step and checks that the interface enforces the
//! old or the new policy entirely, and that the next command recovers ([`crate::recover`]).

/// The environment variable that names the step to crash at.
pub const ENV: &str = "MIRROR_XDP_FAULT";

/// The steps of `attach`, in order. Nothing is linked before `attach:egress-linked`, and the
/// XDP program is linked only with its maps complete and enabled.
pub const ATTACH: &[&str] = &[
    "attach:maps-pinned",
    "attach:maps-filled",
    "attach:programs-pinned",
    "attach:pending-written",
    "attach:sysctl-set",
    "attach:egress-linked",
    "attach:xdp-linked",
    "attach:state-written",
];

/// The steps of `reload` (and of `run` adopting an enforcer), in order. The new generation is
/// built in `gen-N-new`; `reload:egress-swapped` and `reload:xdp-swapped` follow the first
/// link update of their kind, the points of no return.
pub const RELOAD: &[&str] = &[
    "reload:maps-pinned",
    "reload:maps-filled",
    "reload:programs-pinned",
    "reload:pending-written",
    "reload:egress-swapped",
    "reload:xdp-swapped",
    "reload:generation-renamed",
    "reload:state-written",
];

/// The steps of `detach` (from every interface), in order.
pub const DETACH: &[&str] = &[
    "detach:xdp-unpinned",
    "detach:egress-unpinned",
    "detach:pins-removed",
    "detach:sysctl-restored",
];

/// Crashes here if [`ENV`] names `step`.
pub fn point(step: &'static str) {
    debug_assert!(
        [ATTACH, RELOAD, DETACH].concat().contains(&step),
        "fault step {step} is not listed"
    );
    if std::env::var_os(ENV).is_some_and(|v| v == step) {
        // SAFETY: kill and pause have no memory preconditions. SIGKILL cannot be caught; the
        // loop only keeps this thread from going on before the kernel delivers it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
            loop {
                libc::pause();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique_and_name_their_command() {
        let all = [ATTACH, RELOAD, DETACH].concat();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "duplicate step names");
        for (command, steps) in [
            ("attach:", ATTACH),
            ("reload:", RELOAD),
            ("detach:", DETACH),
        ] {
            assert!(steps.iter().all(|s| s.starts_with(command)), "{steps:?}");
        }
    }

    #[test]
    fn an_unnamed_step_does_nothing() {
        // The test process has no MIRROR_XDP_FAULT: reaching a step must not end it.
        assert!(std::env::var_os(ENV).is_none());
        point(RELOAD[0]);
    }
}
