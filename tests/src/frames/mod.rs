//! Test frames: a builder for well-formed frames, a seeded generator aimed at a policy, and
//! truncations. The differential tests feed the same frames to the kernel program and to the
//! reference model (`mirror_xdp::model`).

mod build;
#[cfg(test)]
mod build_tests;
mod checksum;
mod generate;

pub use build::*;
pub use generate::{FrameGen, LOCAL_V4, LOCAL_V6, MIN_FRAME_LEN, truncations};

/// The generator against the model: no panic, sane judgements, and every reason the model
/// can give (all but the limits' banned, rate_limited and syn_flood) given at least once.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use mirror_xdp::model::{self, Judgement, ModelState, Parsed, classify};
    use mirror_xdp::policy::{Mode, Policy};
    use mirror_xdp_common::Reason;

    use super::*;

    /// A full example policy without limits and set files.
    const EXAMPLE: &str = r#"
version = 1

[settings]
mode = "enforce"
default = "drop"
icmp = "pass"
fragments = "pass"
other_protocols = "drop"
return_traffic = true

[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
peers = ["198.51.100.0/25", "2001:db8:b::/48", "100.64.0.1"]

[[ports]]
proto = "tcp"
ports = [80, 443, 873, "30001-30010"]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]

[[ports]]
proto = "tcp"
ports = [8080, 5000, 9000, 3128]
from = ["peers"]

[[ports]]
proto = "udp"
ports = [5140, "60000-60010"]

[sources]
allow = ["admins"]
deny = ["192.0.2.0/24", "2001:db8:bad::/48"]
"#;

    /// Every setting the other way round.
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
ports = [53, 123]
from = ["10.0.0.0/8", "fd00::/8"]

[sources]
deny = ["0.0.0.0/1"]
"#;

    /// Nothing listed at all: the generator has no prefixes or ports to aim at.
    const EMPTY: &str = "version = 1\n";

    fn policy(text: &str) -> Policy {
        Policy::parse(text, Path::new("/nonexistent/policy.toml")).unwrap()
    }

    /// Judges `frame` and checks what must hold for any frame.
    fn judge(frame: &[u8], policy: &Policy, state: &mut ModelState) -> Judgement {
        let j = classify(frame, policy, state);
        let monitor = policy.settings.mode == Mode::Monitor;
        assert_eq!(
            j.passes,
            monitor || !(j.dropped || j.tx),
            "{j:?} for {frame:02x?}"
        );
        let by_rule = matches!(
            j.reason,
            Reason::Allowed | Reason::SourceNotAllowed | Reason::SynFlood | Reason::SynCookie
        );
        assert_eq!(j.rule_port.is_some(), by_rule, "{j:?} for {frame:02x?}");
        j
    }

    /// Runs `count` frames of `seed` (and every truncation of the first `truncated`), and
    /// counts the reasons. The flows are the ingress keys of every tenth TCP/UDP frame of a
    /// first pass with the same seed, so the second pass meets return traffic.
    fn run(policy: &Policy, seed: u64, count: usize, truncated: usize) -> BTreeMap<Reason, usize> {
        let mut frames = FrameGen::new(seed, policy);
        let mut state = ModelState::default();
        for i in 0..count {
            let frame = frames.next();
            if i % 10 == 0
                && let Ok(Parsed::Ip(packet)) = model::parse(&frame)
                && let Some(key) = model::flow_key(&packet)
            {
                state.flows.insert(key);
            }
        }
        let mut frames = FrameGen::new(seed, policy);
        let mut seen = BTreeMap::new();
        for i in 0..count {
            let frame = frames.next();
            assert!(frame.len() >= MIN_FRAME_LEN);
            *seen
                .entry(judge(&frame, policy, &mut state).reason)
                .or_insert(0) += 1;
            if i < truncated {
                for short in truncations(&frame) {
                    judge(short, policy, &mut state);
                }
            }
        }
        eprintln!("seed {seed}: {seen:?}");
        seen
    }

    #[test]
    fn generated_frames_reach_every_step() {
        let mut seen = run(&policy(EXAMPLE), 1, 100_000, 300);
        for (text, seed) in [(FLIPPED, 2), (EMPTY, 3)] {
            for (reason, n) in run(&policy(text), seed, 20_000, 100) {
                *seen.entry(reason).or_insert(0) += n;
            }
        }
        let limits = [
            Reason::Banned,
            Reason::RateLimited,
            Reason::SynFlood,
            Reason::SynCookie,
        ];
        // `egress_denied` is the egress program's: no received frame gets it.
        let never = [Reason::EgressDenied];
        let reasons = Reason::ALL.into_iter().filter(|r| !never.contains(r));
        for reason in reasons.filter(|r| !limits.contains(r)) {
            assert!(seen.contains_key(&reason), "no frame got {}", reason.name());
        }
    }

    #[test]
    fn mostly_well_formed() {
        // 70% are built well-formed; a few of those are still malformed by the rules (long
        // IPv6 chains, tiny first fragments), and some broken ones survive. Most must parse,
        // or the later steps would see too little.
        let policy = policy(EXAMPLE);
        let seen = run(&policy, 4, 10_000, 0);
        let malformed = seen.get(&Reason::Malformed).copied().unwrap_or(0);
        assert!(malformed < 3_500, "{malformed} of 10000 malformed");
    }

    #[test]
    fn same_seed_same_frames() {
        let policy = policy(EXAMPLE);
        let (mut a, mut b, mut c) = (
            FrameGen::new(7, &policy),
            FrameGen::new(7, &policy),
            FrameGen::new(8, &policy),
        );
        let (xs, ys, zs): (Vec<_>, Vec<_>, Vec<_>) =
            (0..100).map(|_| (a.next(), b.next(), c.next())).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn truncations_are_every_prefix_from_14() {
        let frame: Vec<u8> = (0..20).collect();
        let lens: Vec<usize> = truncations(&frame).map(<[u8]>::len).collect();
        assert_eq!(lens, (14..=20).collect::<Vec<_>>());
        assert_eq!(truncations(&frame[..13]).count(), 0);
    }
}
