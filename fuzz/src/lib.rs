//! What the fuzz targets check. A finding is a panic: in the code under test, or in an
//! assertion here about what it returned.

use std::path::Path;
use std::sync::OnceLock;

use mirror_xdp::compile;
use mirror_xdp::model::{self, ModelState, classify};
use mirror_xdp::policy::{Policy, PolicyError};
use mirror_xdp_common::Reason;

/// The set file a fuzzed policy can name (`{ file = "set.txt" }`), beside the policy.
pub const SET_FILE: &str = "set.txt";

/// A policy input is the policy text, then optionally a NUL byte (which TOML text cannot
/// hold) and the contents of [`SET_FILE`].
pub fn split_policy_input(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    }
}

/// Parses a policy input as if its files were in `dir`: no panic; a rejection names a
/// position inside the file it blames and says what is wrong; an accepted policy holds only
/// valid port ranges and non-empty `from` lists.
pub fn check_policy(data: &[u8], dir: &Path) {
    let (text, set) = split_policy_input(data);
    let set_path = dir.join(SET_FILE);
    match set {
        Some(bytes) => std::fs::write(&set_path, bytes).expect("write the set file"),
        // A set file of an earlier input must not leak into this one.
        None => drop(std::fs::remove_file(&set_path)),
    }
    // The policy is read with read_to_string: non-UTF-8 text never reaches the parser.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = dir.join("policy.toml");
    match Policy::parse(text, &path) {
        Ok(policy) => check_accepted(&policy),
        Err(e) if e.file == path => check_error(&e, text.as_bytes()),
        Err(e) if e.file == set_path => check_error(&e, set.expect("a set file was given")),
        Err(e) => panic!("an error in a file that was not read: {e}"),
    }
}

fn check_error(e: &PolicyError, contents: &[u8]) {
    let shown = e.to_string();
    assert!(!e.message.trim().is_empty(), "no message: {shown}");
    assert!(
        !e.message.contains('\n'),
        "message over several lines: {shown}"
    );
    // Past the last line by one at most: an error "at the end of the file".
    let lines = contents.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(
        (1..=lines).contains(&e.line) && e.column >= 1,
        "position outside the file ({lines} lines): {shown}"
    );
    let location = format!("{}:{}:{}: ", e.file.display(), e.line, e.column);
    assert!(shown.starts_with(&location), "{shown}");
}

fn check_accepted(policy: &Policy) {
    for rule in &policy.rules {
        for range in &rule.ports {
            assert!(1 <= range.lo && range.lo <= range.hi, "{range:?} accepted");
        }
        assert!(
            rule.from.as_ref().is_none_or(|f| !f.is_empty()),
            "empty from"
        );
    }
}

/// Policies the frame target judges every frame under: every step of the verdict order is
/// reachable through one of them.
fn frame_policies() -> &'static [(Policy, ModelState)] {
    static POLICIES: OnceLock<Vec<(Policy, ModelState)>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [MIRROR, FLIPPED]
            .iter()
            .map(|text| {
                let policy = Policy::parse(text, Path::new("fuzz.toml")).expect("valid policy");
                let state = ModelState {
                    config: compile::config(&policy, 1),
                    // Before the SYN keepalive is due, with the global SYN budget spent: a
                    // SYN to a listed port gets a cookie.
                    now_ns: 1_000_000_000,
                    global_syn_tat_ns: u64::MAX / 2,
                    ..ModelState::default()
                };
                (policy, state)
            })
            .collect()
    })
}

/// Parses and judges a frame: no panic, and the outcome is consistent with the parse.
pub fn check_frame(data: &[u8]) {
    let parsed = model::parse(data);
    for (policy, state) in frame_policies() {
        let judged = classify(data, policy, &mut state.clone());
        if parsed.is_err() {
            assert_eq!(judged.reason, Reason::Malformed);
        }
        if judged.tx {
            assert!(
                model::syn_ack(data, 0x5eed, &state.config, state.now_ns).is_some(),
                "a cookie for no SYN"
            );
        }
    }
}

const MIRROR: &str = r#"
version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "tcp"
ports = [80, 443, 873, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
[[ports]]
proto = "udp"
ports = [5140]
[sources]
allow = ["203.0.113.128/25"]
deny = ["192.0.2.0/24", "2001:db8:bad::/48"]
[limits]
per_source_pps = 1000
per_source_syn_rate = 100
global_syn_rate = 10
ban_seconds = 1
syn_cookies = true
"#;

const FLIPPED: &str = r#"
version = 1
[settings]
mode = "monitor"
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
[[ports]]
proto = "udp"
ports = ["1-1024"]
from = ["0.0.0.0/1", "2001:db8::/32"]
"#;
