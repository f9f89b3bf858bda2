//! The kernel program against the reference model: the same frames through
//! BPF_PROG_TEST_RUN and through `mirror_xdp::model::classify`, for several policies.
//!
//! Each frame's action (pass/drop/tx) must agree, a SYN cookie SYN-ACK (tx) byte for byte
//! with the model's but for the cookie; every 500 frames the kernel's per-reason
//! counters must equal the model's tallies (that checks the reason of every frame, monitor
//! mode included), and at the end every per-port counter must too. A disagreement prints the
//! frame in hex. Needs root (BPF); without it the test says so and skips.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use mirror_xdp::{
    live::{Clock, Expiry, LiveSet},
    maps::ReasonCount,
    model::{self, ModelState, Parsed, classify},
    policy::{Policy, Proto},
    testrun::{TestProgram, XDP_DROP, XDP_PASS, XDP_TX},
};
use mirror_xdp_common::{Reason, port_index};
use mirror_xdp_tests::cli::root_or_skip;
use mirror_xdp_tests::cpu::pin_to_cpu;
use mirror_xdp_tests::frames::{FrameGen, MIN_FRAME_LEN, truncations};

const RANDOM_FRAMES: usize = 100_000;
/// Frames whose every truncation is run too.
const TRUNCATED_FRAMES: usize = 400;
const CHECK_EVERY: usize = 500;

const MIRROR: &str = r#"
version = 1
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
deny = ["192.0.2.0/24", "2001:db8:bad::/48", "198.51.100.64/26"]
"#;

const FLIPPED: &str = r#"
version = 1
[settings]
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
[[ports]]
proto = "udp"
ports = [53, 123, "1-1024"]
from = ["0.0.0.0/1", "2001:db8::/32"]
[[ports]]
proto = "tcp"
ports = ["1-65535"]
from = ["198.51.100.0/24", "::/0"]
[sources]
deny = ["0.0.0.0/2", "2001:db8:8000::/33"]
allow = ["198.51.100.7", "2001:db8::/33"]
"#;

fn monitor(text: &str) -> String {
    text.replacen(
        "version = 1",
        "version = 1\n[settings]\nmode = \"monitor\"",
        1,
    )
}

#[test]
fn mirror_policy_agrees_with_model() {
    differential("mirror", MIRROR, 1);
}

#[test]
fn flipped_settings_agree_with_model() {
    differential("flipped", FLIPPED, 2);
}

#[test]
fn monitor_mode_agrees_with_model() {
    differential("monitor", &monitor(MIRROR), 3);
}

/// Tight limits, so that the generator's repeating sources hit every limit and ban.
const LIMITED: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80, 443, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "udp"
ports = [5140]
[sources]
allow = ["203.0.113.128/25"]
deny = ["192.0.2.0/24"]
[limits]
per_source_pps = 400
per_source_burst = 30
per_source_syn_rate = 50
per_source_syn_burst = 4
global_syn_rate = 400
ban_seconds = 1
source_prefix_v4 = 24
source_prefix_v6 = 48
"#;

/// `LIMITED` with other numbers for its limits (`key = value` lines replaced or dropped).
fn limited(changes: &[(&str, Option<&str>)]) -> String {
    LIMITED
        .lines()
        .filter_map(|line| {
            let key = line.split(" = ").next().unwrap_or("");
            match changes.iter().find(|(k, _)| *k == key) {
                Some((_, Some(value))) => Some(format!("{key} = {value}")),
                Some((_, None)) => None,
                None => Some(line.to_string()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn expect_seen(seen: &[Reason], expected: &[Reason]) {
    for reason in expected {
        assert!(seen.contains(reason), "no frame met {}", reason.name());
    }
}

#[test]
fn packet_rate_limits_and_bans_agree_with_model() {
    let seen = differential("limited", LIMITED, 5);
    expect_seen(&seen, &[Reason::RateLimited, Reason::Banned]);
}

#[test]
fn syn_limits_agree_with_model() {
    let text = limited(&[
        ("per_source_pps", None),
        ("per_source_burst", None),
        ("per_source_syn_rate", Some("5")),
        ("per_source_syn_burst", Some("2")),
        ("global_syn_rate", Some("40")),
    ]);
    let seen = differential("syn-limited", &text, 6);
    expect_seen(&seen, &[Reason::SynFlood, Reason::Banned]);
}

#[test]
fn global_syn_budget_alone_agrees_with_model() {
    let text = limited(&[
        ("per_source_pps", None),
        ("per_source_burst", None),
        ("per_source_syn_rate", None),
        ("per_source_syn_burst", None),
        ("global_syn_rate", Some("40")),
    ]);
    let seen = differential("global-syn", &text, 7);
    expect_seen(&seen, &[Reason::SynFlood]);
}

/// Live entries (nested denies that expire at different times, an allow inside a deny)
/// over a policy whose `from` list makes the generator send from those prefixes.
#[test]
fn live_entries_agree_with_model() {
    const LIVE_POLICY: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80, 443]
[[ports]]
proto = "udp"
ports = [53]
from = ["100.64.0.0/16", "100.64.3.0/24", "100.64.7.0/24", "100.64.7.7", "100.64.9.0/24",
        "2001:db8:77::/48"]
[sources]
deny = ["100.64.9.128/25"]
"#;
    let wall_ns = 1_700_000_000 * 1_000_000_000;
    let at = |secs: u64| Expiry::At(1_700_000_000 + secs);
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let mut set = LiveSet::default();
    set.deny(&[net("100.64.0.0/16")], at(5));
    set.deny(&[net("100.64.7.0/24")], at(12));
    // Expires before the /16 around it: the /16 must still deny it from 2 s to 5 s.
    set.deny(&[net("100.64.3.0/24")], at(2));
    set.deny(
        &[net("100.64.7.7/32"), net("2001:db8:77::/48")],
        Expiry::Never,
    );
    set.allow(&[net("100.64.9.0/24")]);
    let seen = differential_with("live", LIVE_POLICY, 8, |program, state| {
        let clock = Clock {
            wall_ns,
            mono_ns: state.now_ns,
        };
        let flags = set
            .apply_at(&mut program.maps, &clock)
            .expect("apply live set");
        let mut config = program.maps.config().expect("config");
        config.flags |= flags;
        program.maps.set_config(&config).expect("config");
        state.live_allow = set.allow.iter().copied().collect();
        state.live_deny = set
            .deny
            .iter()
            .map(|(net, expires)| (*net, clock.deadline_ns(*expires)))
            .collect();
    });
    expect_seen(&seen, &[Reason::Trusted, Reason::Denied, Reason::Allowed]);
}

/// SYN cookies: a tight global budget so that most SYNs to listed ports get a cookie, and a
/// per-source SYN rate that still drops and bans. No return traffic: with cookies on, the
/// test clock jumps past the keepalive interval now and then, and so past the flows' idle
/// time, which the model does not follow.
fn cookies(mode: &str) -> String {
    format!(
        r#"
version = 1
[settings]
mode = "{mode}"
return_traffic = false
[[ports]]
proto = "tcp"
ports = [80, 443, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "udp"
ports = [5140]
[sources]
allow = ["203.0.113.128/25"]
deny = ["192.0.2.0/24"]
[limits]
per_source_syn_rate = 50
per_source_syn_burst = 4
global_syn_rate = 40
ban_seconds = 1
source_prefix_v4 = 24
source_prefix_v6 = 48
syn_cookies = true
"#
    )
}

#[test]
fn syn_cookies_agree_with_model() {
    let seen = differential("cookies", &cookies("enforce"), 10);
    expect_seen(
        &seen,
        &[Reason::SynCookie, Reason::SynFlood, Reason::Banned],
    );
}

#[test]
fn syn_cookies_in_monitor_mode_agree_with_model() {
    let seen = differential("cookies-monitor", &cookies("monitor"), 11);
    expect_seen(&seen, &[Reason::SynCookie, Reason::SynFlood]);
}

#[test]
fn example_policy_agrees_with_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let text = std::fs::read_to_string(&path).expect("examples/mirror.toml");
    differential("examples/mirror.toml", &text, 4);
}

/// The fuzz corpus of the model's frame parser (fuzz/corpus/frame: frames libFuzzer kept for
/// reaching new code, odder than the generator's) through the kernel and the model, under
/// policies that take them down every step. Frames shorter than an Ethernet header cannot be
/// test-run and are left out.
#[test]
fn fuzz_corpus_agrees_with_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    let frames: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus frame"))
        .filter(|f| f.len() >= MIN_FRAME_LEN)
        .collect();
    assert!(frames.len() >= 50, "only {} corpus frames", frames.len());
    // Three passes: the SYNs among them come back often enough to spend the SYN budgets,
    // so the limits, bans and SYN cookie answers see the odd frames too.
    let frames: Vec<Vec<u8>> = (0..3).flat_map(|_| frames.iter().cloned()).collect();
    for (name, text) in [
        ("mirror", MIRROR.to_string()),
        ("flipped", FLIPPED.to_string()),
        ("limited", LIMITED.to_string()),
        ("cookies", cookies("enforce")),
    ] {
        let seen = replay(&format!("fuzz corpus, {name}"), &text, &frames);
        if name == "cookies" {
            expect_seen(&seen, &[Reason::SynCookie, Reason::SynFlood]);
        }
    }
}

/// Runs `frames` in order, 100 us apart, through both sides of the comparison; returns the
/// reasons that occurred (all when skipped).
fn replay(name: &str, text: &str, frames: &[Vec<u8>]) -> Vec<Reason> {
    if !root_or_skip() {
        return Reason::ALL.to_vec();
    }
    pin_to_cpu(0);
    let policy = Policy::parse(text, Path::new(name)).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    let mut state = ModelState {
        config: program.config,
        now_ns: START_NS,
        ..ModelState::default()
    };
    let mut tally = Tally::default();
    for batch in frames.chunks(CHECK_EVERY) {
        for frame in batch {
            state.now_ns += 100_000;
            judge_one(&mut program, &policy, &mut state, &mut tally, frame);
        }
        check_reasons(&mut program, &tally, batch);
    }
    check_ports(&program, &tally);
    let seen: Vec<&str> = tally.reasons.keys().map(|r| r.name()).collect();
    eprintln!(
        "{name}: {} frames, zero disagreements ({})",
        frames.len(),
        seen.join(" ")
    );
    tally.reasons.keys().copied().collect()
}

/// Model tallies in the shape of the kernel counters.
#[derive(Default)]
struct Tally {
    reasons: BTreeMap<Reason, ReasonCount>,
    ports: BTreeMap<(Proto, u16), (u64, u64)>,
    /// SYNs over the global budget that passed to keep the kernel's cookie check alive.
    keepalives: usize,
}

/// Runs the comparison; returns the reasons that occurred (all when skipped).
fn differential(name: &str, text: &str, seed: u64) -> Vec<Reason> {
    differential_with(name, text, seed, |_, _| {})
}

/// [`differential`] after `setup` has put extra state into the kernel and the model.
fn differential_with(
    name: &str,
    text: &str,
    seed: u64,
    setup: impl FnOnce(&mut TestProgram, &mut ModelState),
) -> Vec<Reason> {
    if !root_or_skip() {
        return Reason::ALL.to_vec();
    }
    // The global SYN budget is per CPU: stay on one so the model's single bucket is it.
    pin_to_cpu(0);
    let policy = Policy::parse(text, Path::new(name)).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    let mut state = ModelState {
        config: program.config,
        now_ns: START_NS,
        ..ModelState::default()
    };
    setup(&mut program, &mut state);
    let mut tally = Tally::default();
    let mut frames_gen = FrameGen::new(seed, &policy);
    let mut rng_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;

    // The frames since the last counter check, to name the culprit of a mismatch.
    let mut recent: Vec<Vec<u8>> = Vec::with_capacity(CHECK_EVERY);
    let mut total = 0usize;
    for i in 0..RANDOM_FRAMES {
        let frame = frames_gen.next();
        // One frame in 20 that parses as TCP/UDP gets a live flow: return traffic.
        if xorshift(&mut rng_state).is_multiple_of(20)
            && let Ok(Parsed::Ip(packet)) = model::parse(&frame)
            && let Some(key) = model::flow_key(&packet)
        {
            program
                .maps
                .insert_flow(&key, state.now_ns)
                .expect("insert flow");
            state.flows.insert(key);
        }
        let cuts: Vec<&[u8]> = if i < TRUNCATED_FRAMES {
            truncations(&frame).collect()
        } else {
            vec![&frame]
        };
        for cut in cuts {
            // Time moves on by 0-256 us a frame: buckets refill, bans run out.
            state.now_ns += xorshift(&mut rng_state) % 256_000;
            if policy.limits.syn_cookies && (total + 1).is_multiple_of(COOKIE_JUMP_EVERY) {
                state.now_ns += COOKIE_JUMP_NS;
            }
            judge_one(&mut program, &policy, &mut state, &mut tally, cut);
            recent.push(cut.to_vec());
            total += 1;
            if recent.len() == CHECK_EVERY {
                check_reasons(&mut program, &tally, &recent);
                recent.clear();
            }
        }
    }
    check_reasons(&mut program, &tally, &recent);
    check_ports(&program, &tally);
    let mut summary: Vec<String> = tally
        .reasons
        .iter()
        .map(|(r, c)| format!("{}={}", r.name(), c.packets))
        .collect();
    if policy.limits.syn_cookies {
        summary.push(format!("keepalive SYNs={}", tally.keepalives));
    }
    eprintln!(
        "{name}: {total} frames, {} flows, zero disagreements ({})",
        state.flows.len(),
        summary.join(" ")
    );
    assert!(total >= RANDOM_FRAMES, "ran {total} frames");
    if policy.limits.syn_cookies {
        assert!(tally.keepalives > 0, "no keepalive SYN");
    }
    tally.reasons.keys().copied().collect()
}

/// Where the test clock starts (any non-zero time; 0 means "use the kernel clock").
const START_NS: u64 = 1_000_000_000_000;
/// With SYN cookies on, the clock jumps past the keepalive interval this often.
const COOKIE_JUMP_EVERY: usize = 20_000;
const COOKIE_JUMP_NS: u64 = mirror_xdp_common::limits::SYN_KEEPALIVE_NS + 1_000_000_000;

fn judge_one(
    program: &mut TestProgram,
    policy: &Policy,
    state: &mut ModelState,
    tally: &mut Tally,
    frame: &[u8],
) {
    program.set_clock(state.now_ns).expect("set the test clock");
    let budget_before = state.global_syn_tat_ns;
    let model = classify(frame, policy, state);
    let (action, out) = program.run_output(frame).expect("test run");
    let (expected, name) = if model.tx {
        (XDP_TX, "tx")
    } else if model.passes {
        (XDP_PASS, "pass")
    } else {
        (XDP_DROP, "drop")
    };
    assert_eq!(
        action,
        expected,
        "kernel action {action} but the model says {name} ({}) at {} ns for frame {}",
        model.reason.name(),
        state.now_ns,
        hex(frame)
    );
    if model.tx {
        check_syn_ack(frame, &out);
    }
    // A SYN allowed while the global budget stood still was over it: the keepalive.
    if policy.limits.syn_cookies
        && model.reason == Reason::Allowed
        && state.global_syn_tat_ns == budget_before
        && is_syn(frame)
    {
        tally.keepalives += 1;
    }
    let count = tally.reasons.entry(model.reason).or_default();
    count.packets += 1;
    count.bytes += frame.len() as u64;
    if model.dropped {
        count.drop_packets += 1;
        count.drop_bytes += frame.len() as u64;
    }
    if let Some(port) = model.rule_port {
        let entry = tally.ports.entry(port).or_default();
        if model.dropped {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
}

/// The kernel's counters must equal the model's tallies. If they do not, the batch is run
/// again frame by frame to name the frame whose reason differs.
fn check_reasons(program: &mut TestProgram, tally: &Tally, batch: &[Vec<u8>]) {
    let kernel = program.maps.reason_counts().expect("read counters");
    let mismatch = kernel
        .iter()
        .find(|(r, c)| tally.reasons.get(r).copied().unwrap_or_default() != *c);
    let Some((reason, count)) = mismatch else {
        return;
    };
    let model = tally.reasons.get(reason).copied().unwrap_or_default();
    for frame in batch {
        let before = program.maps.reason_counts().expect("read counters");
        program.run(frame).expect("test run");
        let after = program.maps.reason_counts().expect("read counters");
        let moved: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.1 != a.1)
            .map(|(b, a)| {
                let dropped = a.1.drop_packets != b.1.drop_packets;
                format!("{}{}", a.0.name(), if dropped { " (drop)" } else { "" })
            })
            .collect();
        eprintln!("frame {} -> kernel counted {:?}", hex(frame), moved);
    }
    panic!(
        "counter for {} disagrees: kernel {count:?}, model {model:?} (frames of the batch above)",
        reason.name()
    );
}

fn check_ports(program: &TestProgram, tally: &Tally) {
    for proto in [Proto::Tcp, Proto::Udp] {
        for port in 0..=u16::MAX {
            let slot = port_index(mirror_xdp::compile::proto_slot(proto), port);
            let kernel = program.maps.port_count(slot).expect("read port counter");
            let (pass, drop) = tally.ports.get(&(proto, port)).copied().unwrap_or_default();
            assert_eq!(
                (kernel.pass_packets, kernel.drop_packets),
                (pass, drop),
                "port counter {}/{port}: kernel (pass, drop) vs model",
                proto.name()
            );
        }
    }
}

/// Is the frame a TCP SYN without ACK?
fn is_syn(frame: &[u8]) -> bool {
    let (syn, ack) = (model::tcp_flag::SYN, model::tcp_flag::ACK);
    match model::parse(frame) {
        Ok(Parsed::Ip(packet)) => {
            matches!(packet.l4, model::L4::Tcp { flags, .. } if flags & (syn | ack) == syn)
        }
        _ => false,
    }
}

/// The kernel's SYN-ACK must be the model's with the kernel's cookie (the one thing the
/// model cannot know: the kernel keys it with a secret).
fn check_syn_ack(syn: &[u8], reply: &[u8]) {
    let Ok(Parsed::Ip(packet)) = model::parse(syn) else {
        panic!("a SYN cookie for an unparsable frame {}", hex(syn));
    };
    let seq_at = packet.ip_offset + packet.ip_header_len + 4;
    let cookie = reply
        .get(seq_at..seq_at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or_else(|| panic!("SYN-ACK {} too short for {}", hex(reply), hex(syn)));
    let expected = model::syn_ack(syn, cookie).expect("the model answers this SYN");
    assert_eq!(
        hex(reply),
        hex(&expected),
        "kernel SYN-ACK (left) differs from the model's (right) for frame {}",
        hex(syn)
    );
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
