//! The kernel program against the reference model: the same frames through
//! BPF_PROG_TEST_RUN and through `mirror_xdp::model::classify`, for several policies.
//!
//! Each frame's action (pass/drop/tx) must agree, a SYN cookie SYN-ACK (tx) byte for byte
//! with the model's but for the cookie; every 500 frames the kernel's per-reason
//! counters must equal the model's tallies (that checks the reason of every frame, monitor
//! mode included), and at the end every per-port counter must too. A disagreement prints the
//! frame in hex. Each policy must also reach exactly the reasons it allows for, no fewer (a
//! reason never met is a branch never compared) and no more. Needs root (BPF): without it
//! every test fails.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::IpNet;
use mirror_xdp::{
    live::sources::{Clock, Expiry, LiveSet},
    model::{self, ModelState, Parsed},
    observe::testrun::TestProgram,
    policy::Policy,
};
use mirror_xdp_common::{
    Reason, config_flag,
    cookie_option::{TIMESTAMPS, WINDOW_SCALE},
};
use mirror_xdp_tests::cpu::pin_to_cpu;
use mirror_xdp_tests::differential::{Tally, check_ports, check_reasons, judge_one};
use mirror_xdp_tests::frames::{FrameGen, MIN_FRAME_LEN, truncations};
use mirror_xdp_tests::require_root;

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
[[protocols]]
protocols = ["vrrp", "gre"]
from = ["peers"]
[[protocols]]
protocols = ["esp"]
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
[[protocols]]
protocols = [50, "sctp"]
from = ["0.0.0.0/1", "2001:db8::/32"]
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

/// Reasons every run meets: the generator sends non-IP, malformed, ICMP, fragments and
/// other protocols, and every policy here allows some port to somebody.
const COMMON: [Reason; 6] = [
    Reason::NonIp,
    Reason::Malformed,
    Reason::Icmp,
    Reason::Fragment,
    Reason::Protocol,
    Reason::Allowed,
];

/// What `MIRROR` makes possible: a trusted set, a deny list, return traffic, ports `from`
/// sets, and closed ports by default; no limits, so no limiter reason.
const MIRROR_REASONS: [Reason; 5] = [
    Reason::Trusted,
    Reason::Denied,
    Reason::Return,
    Reason::SourceNotAllowed,
    Reason::PortClosed,
];

/// [`COMMON`], then `parts` flattened.
fn reasons(parts: &[&[Reason]]) -> Vec<Reason> {
    let mut all = COMMON.to_vec();
    parts.iter().for_each(|p| all.extend_from_slice(p));
    all
}

#[test]
fn mirror_policy_agrees_with_model() {
    let reached = differential("mirror", MIRROR, 1);
    expect_reached(&reached, &reasons(&[&MIRROR_REASONS]), &[]);
}

/// A deny list that touches most /16s (40,000 /24s, a /32 and an allow inside some):
/// the kernel reads the flat block array, not the directory and chunks.
#[test]
fn a_list_over_most_slash_16s_agrees_with_model() {
    let mut deny: Vec<String> = (0..40_000u32)
        .map(|i| {
            format!(
                "\"{}/24\"",
                Ipv4Addr::from(i.wrapping_mul(0x9E37) << 16 | 0x100)
            )
        })
        .collect();
    deny.extend(["\"198.51.100.7\"".into(), "\"100.64.0.0/16\"".into()]);
    let text = format!(
        "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80, 443]\n[sources]\n\
         deny = [{}]\nallow = [\"100.64.3.0/24\"]\n",
        deny.join(", ")
    );
    let policy = Policy::parse(&text, Path::new("flat")).expect("valid policy");
    let image = mirror_xdp::compile::compile(&policy, 1).expect("compiles");
    assert_ne!(image.config.flags & config_flag::BLOCKS_FLAT_V4, 0, "flat");
    let seen = differential_with("flat", &text, 11, |_, _| {});
    let must = [
        Reason::Trusted,
        Reason::Denied,
        Reason::Return,
        Reason::PortClosed,
    ];
    expect_reached(&seen, &reasons(&[&must]), &[]);
}

/// Rules per destination (`to`): the generator's own address and neighbours of the rules'
/// prefixes, so that frames meet each rule, the gaps between them and the addresses just
/// outside.
const DESTINATIONS: &str = r#"
version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "tcp"
ports = [80, 443, "30001-30010"]
to = ["10.0.0.1", "fd00::1"]
[[ports]]
proto = "tcp"
ports = [80, 22]
from = ["admins"]
to = ["10.0.0.2", "fd00::2", "10.9.0.0/16"]
[[ports]]
proto = "udp"
ports = ["5000-5010"]
to = ["10.0.0.0/30"]
[[ports]]
proto = "udp"
ports = [53]
[[protocols]]
protocols = ["vrrp", "gre"]
from = ["admins"]
to = ["10.0.0.2", "fd00::/127"]
[[protocols]]
protocols = ["vrrp"]
to = ["10.0.0.1"]
"#;

#[test]
fn rules_per_destination_agree_with_model() {
    let must = [Reason::Return, Reason::SourceNotAllowed, Reason::PortClosed];
    let reached = differential("destinations", DESTINATIONS, 12);
    expect_reached(&reached, &reasons(&[&must]), &[]);
}

/// `FLIPPED`: default pass (so `default`, never `port_closed`), no return traffic.
const FLIPPED_REASONS: [Reason; 4] = [
    Reason::Trusted,
    Reason::Denied,
    Reason::SourceNotAllowed,
    Reason::Default,
];

#[test]
fn flipped_settings_agree_with_model() {
    let reached = differential("flipped", FLIPPED, 2);
    expect_reached(&reached, &reasons(&[&FLIPPED_REASONS]), &[]);
}

/// Monitor mode counts the reason a frame would have been dropped for: the same as enforce.
#[test]
fn monitor_mode_agrees_with_model() {
    let reached = differential("monitor", &monitor(MIRROR), 3);
    expect_reached(&reached, &reasons(&[&MIRROR_REASONS]), &[]);
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

/// A run must meet every reason in `must` (each a branch compared), and none but those
/// and `may` (possible, but not what the test is for): a reason the policy rules out that
/// still occurs is a wrong verdict the model happens to share.
#[track_caller]
fn expect_reached(reached: &BTreeSet<Reason>, must: &[Reason], may: &[Reason]) {
    let names = |list: &mut dyn Iterator<Item = &Reason>| -> BTreeSet<&str> {
        list.map(|r| r.name()).collect()
    };
    let reached = names(&mut reached.iter());
    let missing = &names(&mut must.iter()) - &reached;
    assert!(missing.is_empty(), "no frame met {missing:?}");
    let unexpected = &reached - &names(&mut must.iter().chain(may));
    assert!(
        unexpected.is_empty(),
        "frames met {unexpected:?}, which this policy rules out"
    );
}

#[test]
fn packet_rate_limits_and_bans_agree_with_model() {
    let reached = differential("limited", LIMITED, 5);
    let limits = [Reason::RateLimited, Reason::Banned];
    // SYN limits too, but the packet rate's bans come first for most SYN senders.
    let must = reasons(&[&MIRROR_REASONS, &limits]);
    expect_reached(&reached, &must, &[Reason::SynFlood]);
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
    let reached = differential("syn-limited", &text, 6);
    let limits = [Reason::SynFlood, Reason::Banned];
    expect_reached(&reached, &reasons(&[&MIRROR_REASONS, &limits]), &[]);
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
    let reached = differential("global-syn", &text, 7);
    // No per-source limit: nothing is banned.
    let must = reasons(&[&MIRROR_REASONS, &[Reason::SynFlood]]);
    expect_reached(&reached, &must, &[]);
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
        apply_live(&set, wall_ns, program, state)
    });
    // The live allow is the one trusted source; the live denies expire, the policy's stays.
    expect_reached(&seen, &reasons(&[&MIRROR_REASONS]), &[]);
}

/// IPv6 lists nested over many tiers, of lengths that fall on 4-bit tiers too (the walk
/// skips tiers and passes markers), and live
/// entries of every kind in both families: a live allow inside a policy deny, live denies
/// with and without a TTL inside and around policy prefixes.
#[test]
fn ipv6_lists_and_live_entries_agree_with_model() {
    const LISTS: &str = r#"
version = 1
[sets]
inside = ["2001:db8:100::/40", "2001:db8:bad::/48", "2001:db8:cafe::/47", "2001:db9::/32",
          "2001:db8:100:7::/64", "2001:db8:200::/48", "2001:dba:1::/56", "100.64.0.0/16"]
[[ports]]
proto = "tcp"
ports = [80, 443]
[[ports]]
proto = "udp"
ports = [53]
from = ["inside"]
[sources]
deny = ["2001:db8:100::/40", "2001:db8:bad::/48", "2001:db8:bad:1::/64", "2001:db8:cafe::5",
        "2001:db9::/32", "2001:db8:100:8000::/49", "100.64.0.0/17", "2001:db8:f000::/36",
        "2001:dbb:8000::/33", "2001:db8:f000:a000::10/124"]
allow = ["2001:db8:100:7::/64", "2001:db8:bad:1:2::/80", "2001:db8:cafe::/47", "100.64.1.0/24",
         "2001:db8:f000:a000::/51"]
"#;
    let wall_ns = 1_700_000_000 * 1_000_000_000;
    let at = |secs: u64| Expiry::At(1_700_000_000 + secs);
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let mut set = LiveSet::default();
    set.deny(&[net("2001:db8:200::/48"), net("100.64.200.0/24")], at(4));
    set.deny(&[net("2001:db8:200:1::/64"), net("100.64.200.9/32")], at(9));
    set.deny(
        &[net("2001:dba:1::/56"), net("2001:db8:bad::/64")],
        Expiry::Never,
    );
    set.allow(&[
        net("2001:db8:100:9::/64"),
        net("2001:dba:1:2::5/128"),
        net("100.64.2.0/24"),
    ]);
    let seen = differential_with("ipv6-lists", LISTS, 9, |program, state| {
        apply_live(&set, wall_ns, program, state)
    });
    expect_reached(
        &seen,
        &reasons(&[&MIRROR_REASONS, &[Reason::Trusted, Reason::Denied]]),
        &[],
    );
}

/// Puts `set` into the kernel and the model, at wall-clock time `wall_ns` (the model's
/// clock is the monotonic one).
fn apply_live(set: &LiveSet, wall_ns: u64, program: &mut TestProgram, state: &mut ModelState) {
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

/// `cookies(..)`: SYNs over the global budget get a cookie (`syn_cookie`), those over the
/// per-source rate are dropped (`syn_flood`) and banned; no return traffic.
const COOKIE_REASONS: [Reason; 7] = [
    Reason::Trusted,
    Reason::Denied,
    Reason::SourceNotAllowed,
    Reason::PortClosed,
    Reason::SynCookie,
    Reason::SynFlood,
    Reason::Banned,
];

#[test]
fn syn_cookies_agree_with_model() {
    let reached = differential_with("cookies", &cookies("enforce"), 10, |program, state| {
        host_allows(program, state, ALL_COOKIE_OPTIONS, 7)
    });
    expect_reached(&reached, &reasons(&[&COOKIE_REASONS]), &[]);
}

/// A host without SACK or ECN, timestamp offsets on (no timestamp cookies), or without
/// window scaling and a large receive buffer: the cookies carry what each allows.
#[test]
fn syn_cookies_on_other_hosts_agree_with_model() {
    use mirror_xdp_common::cookie_option::{ECN, SACK};
    for (seed, options, wscale) in [
        (12, TIMESTAMPS | WINDOW_SCALE, 9),
        (13, WINDOW_SCALE | SACK | ECN, 7),
        (14, TIMESTAMPS | SACK | ECN, 14),
    ] {
        let name = format!("cookies, options {options:#x}");
        let reached = differential_with(&name, &cookies("enforce"), seed, |program, state| {
            host_allows(program, state, options, wscale)
        });
        expect_reached(&reached, &reasons(&[&COOKIE_REASONS]), &[]);
    }
}

/// Every option a cookie may carry (what attach finds on a Debian host).
const ALL_COOKIE_OPTIONS: u8 = {
    use mirror_xdp_common::cookie_option::{ECN, SACK};
    TIMESTAMPS | WINDOW_SCALE | SACK | ECN
};

/// What attach reads from the host's sysctls: the cookie options and the window scale.
fn host_allows(program: &mut TestProgram, state: &mut ModelState, options: u8, wscale: u8) {
    let mut config = program.maps.config().expect("read the config");
    config.cookie_options = options;
    config.cookie_wscale = wscale;
    program.maps.set_config(&config).expect("write the config");
    state.config = config;
}

#[test]
fn syn_cookies_in_monitor_mode_agree_with_model() {
    let reached = differential("cookies-monitor", &cookies("monitor"), 11);
    expect_reached(&reached, &reasons(&[&COOKIE_REASONS]), &[]);
}

#[test]
fn example_policy_agrees_with_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let text = std::fs::read_to_string(&path).expect("examples/mirror.toml");
    let reached = differential("examples/mirror.toml", &text, 4);
    // `allow = []`: nobody is trusted; no limits.
    let must = [
        Reason::Denied,
        Reason::Return,
        Reason::SourceNotAllowed,
        Reason::PortClosed,
    ];
    expect_reached(&reached, &reasons(&[&must]), &[]);
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
    // No flow is inserted, so nothing is return traffic.
    let mirror: Vec<Reason> = reasons(&[&MIRROR_REASONS])
        .into_iter()
        .filter(|r| *r != Reason::Return)
        .collect();
    let limits = [Reason::Banned, Reason::SynFlood];
    // (name, policy, must, may): the packet rate is over its limit only now and then.
    let runs: [(_, _, Vec<Reason>, &[Reason]); 4] = [
        ("mirror", MIRROR.to_string(), mirror.clone(), &[]),
        (
            "flipped",
            FLIPPED.to_string(),
            reasons(&[&FLIPPED_REASONS]),
            &[],
        ),
        (
            "limited",
            LIMITED.to_string(),
            [&mirror[..], &limits].concat(),
            &[Reason::RateLimited],
        ),
        (
            "cookies",
            cookies("enforce"),
            reasons(&[&COOKIE_REASONS]),
            &[],
        ),
    ];
    for (name, text, must, may) in runs {
        let reached = replay(&format!("fuzz corpus, {name}"), &text, &frames);
        expect_reached(&reached, &must, may);
    }
}

/// Runs `frames` in order, 100 us apart, through both sides of the comparison; returns the
/// reasons that occurred.
fn replay(name: &str, text: &str, frames: &[Vec<u8>]) -> BTreeSet<Reason> {
    require_root();
    pin_to_cpu(0);
    let policy = Policy::parse(text, Path::new(name)).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    let mut state = ModelState {
        config: program.config,
        now_ns: START_NS,
        ..ModelState::default()
    };
    if policy.limits.syn_cookies {
        host_allows(&mut program, &mut state, ALL_COOKIE_OPTIONS, 7);
    }
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

/// Runs the comparison; returns the reasons that occurred.
fn differential(name: &str, text: &str, seed: u64) -> BTreeSet<Reason> {
    differential_with(name, text, seed, |_, _| {})
}

/// [`differential`] after `setup` has put extra state into the kernel and the model.
fn differential_with(
    name: &str,
    text: &str,
    seed: u64,
    setup: impl FnOnce(&mut TestProgram, &mut ModelState),
) -> BTreeSet<Reason> {
    require_root();
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
        summary.push(format!(
            "timestamp cookies={} (with window scale {})",
            tally.timestamp_cookies, tally.wscale_cookies
        ));
    }
    eprintln!(
        "{name}: {total} frames, {} flows, zero disagreements ({})",
        state.flows.len(),
        summary.join(" ")
    );
    assert!(total >= RANDOM_FRAMES, "ran {total} frames");
    // Each listed protocol must have passed packets, and dropped some where a rule that
    // lists it has `from`.
    let listed: BTreeSet<u8> = policy
        .protocols
        .iter()
        .flat_map(|r| r.protocols.iter().copied())
        .collect();
    for protocol in listed {
        let (pass, drop) = tally.protocols.get(&protocol).copied().unwrap_or_default();
        eprintln!("{name}: protocol {protocol}: {pass} passed, {drop} dropped");
        assert!(
            pass > 0,
            "no packet of protocol {protocol} passed by its rule"
        );
        let restricted = policy
            .protocols
            .iter()
            .any(|r| r.protocols.contains(&protocol) && r.from.is_some());
        assert_eq!(drop > 0, restricted, "protocol {protocol} drops");
    }
    if policy.limits.syn_cookies {
        assert!(tally.keepalives > 0, "no keepalive SYN");
        // Frames with timestamps get timestamp cookies where the host allows them.
        let allowed = state.config.cookie_options;
        let expect = |option: u8| allowed & option != 0 && allowed & TIMESTAMPS != 0;
        assert_eq!(
            tally.timestamp_cookies > 0,
            expect(TIMESTAMPS),
            "timestamp cookies"
        );
        assert_eq!(
            tally.wscale_cookies > 0,
            expect(WINDOW_SCALE),
            "window scales"
        );
    }
    tally.reasons.keys().copied().collect()
}

/// Where the test clock starts (any non-zero time; 0 means "use the kernel clock").
const START_NS: u64 = 1_000_000_000_000;
/// With SYN cookies on, the clock jumps past the keepalive interval this often.
const COOKIE_JUMP_EVERY: usize = 20_000;
const COOKIE_JUMP_NS: u64 = mirror_xdp_common::limits::SYN_KEEPALIVE_NS + 1_000_000_000;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
