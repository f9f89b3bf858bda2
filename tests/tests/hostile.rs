//! Hostile and broken input: a policy of a million entries (in a set file with a BOM, CRLF,
//! duplicates and overlaps), a `from` list over the kernel table's capacity, a damaged state
//! file, a spoofed flood bigger than the limiter table, and every kind of invalid command line.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mirror_xdp_common::map_name;
use mirror_xdp_tests::cli::{
    Run, attach_policy, reason, run, run_ok, stats, stats_when, status, try_attach, write_policy,
};
use mirror_xdp_tests::flood::{SynFlood, syn_flood};
use mirror_xdp_tests::pinned::{limiter_fill, names};
use mirror_xdp_tests::probe::{ProbeResult, UdpResult, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet, banner};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, assert_enforcing, udp_probe_within};
use mirror_xdp_tests::testbed::*;

const WEB: u16 = 443;
const CLOSED: u16 = 25;
const ECHO: u16 = 5140;

const OPEN: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [443]

[[ports]]
proto = "udp"
ports = [5140]
"#;

fn udp_answers(bed: &Testbed, src: IpAddr) -> bool {
    udp_probe_within(&bed.client, src, ECHO, PROBE_TIMEOUT) == UdpResult::Answered
}

/// A million prefixes, half IPv4 and half IPv6, written as other tools write them: a BOM,
/// CRLF, comments, entries listed twice and prefixes inside others. The ordinary client
/// is in it three times (inside a /25, inside a /24, and bare); the admin client is not.
fn million_prefix_file() -> String {
    let mut text = String::from("\u{feff}# exported block list\r\n");
    for i in 0..500_000u32 {
        // 100.64.0.0/10, every other address: far from the testbed's networks.
        let _ = write!(text, "{}\r\n", Ipv4Addr::from(0x6440_0000 + 2 * i));
    }
    for i in 0..500_000u128 {
        let net = Ipv6Addr::from((0x2001_0db8_8000u128 << 80) | (i << 64));
        let _ = write!(text, "{net}/64\r\n");
    }
    text.push_str("198.51.100.0/25\r\n198.51.100.0/24  # overlaps\r\n");
    let _ = write!(
        text,
        "{CLIENT_V4}\r\n{CLIENT_V4}\r\n{CLIENT_V6}\r\n100.64.0.0\r\n"
    );
    text
}

#[test]
fn million_prefix_policy_loads_and_an_oversized_from_list_is_refused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO]).expect("udp echo");
    std::fs::write(bed.work_dir().join("big.txt"), million_prefix_file()).expect("set file");
    let deny = format!("{OPEN}\n[sources]\ndeny = [{{ file = \"big.txt\" }}]\n");
    let policy = write_policy(&bed, "policy.toml", &deny);
    let policy = policy.to_str().expect("UTF-8 path");

    let started = Instant::now();
    let r = run_ok(&bed, &["check", "--policy", policy]);
    let check_time = started.elapsed();
    // Duplicates count once: 1,000,000 distinct + 198.51.100.0/25, /24 and the client.
    assert!(r.stdout.contains("1000004 denied"), "{r:?}");
    let started = Instant::now();
    let r = try_attach(&bed, Path::new(policy), &[]);
    let attach_time = started.elapsed();
    assert_eq!(r.code, Some(0), "{r:?}");
    eprintln!("1M-prefix policy: check {check_time:?}, attach {attach_time:?}");
    // Its spare would take over 100 MiB: none is made, and attach says so.
    assert!(
        names(bed.bpffs_dir(), "spare-").is_empty(),
        "a spare was made"
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("no spare generation for the next reload"),
        "{r:?}"
    );
    assert!(
        check_time < Duration::from_secs(15),
        "check took {check_time:?}"
    );
    assert!(
        attach_time < Duration::from_secs(60),
        "attach took {attach_time:?}"
    );
    assert!(
        !udp_answers(&bed, CLIENT_V4.into()),
        "listed {CLIENT_V4} got through"
    );
    assert!(
        !udp_answers(&bed, CLIENT_V6.into()),
        "listed {CLIENT_V6} got through"
    );
    assert!(
        udp_answers(&bed, ADMIN_V4.into()),
        "unlisted {ADMIN_V4} dropped"
    );
    assert!(
        udp_answers(&bed, ADMIN_V6.into()),
        "unlisted {ADMIN_V6} dropped"
    );

    // The same file as a `from` list is over the kernel table's 262,144 IPv4 entries: a
    // clear error at the list, from `check` and `reload`, and the policy in force stays.
    let from = "version = 1\n[[ports]]\nproto = \"udp\"\nports = [5140]\nfrom = [{ file = \"big.txt\" }]\n";
    let over = write_policy(&bed, "over.toml", from);
    let over = over.to_str().expect("UTF-8 path");
    for args in [
        vec!["check", "--policy", over],
        vec!["reload", "--policy", over],
    ] {
        let r = run(&bed, &args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(r.stderr.contains("over.toml:5:8: "), "{args:?}: {r:?}");
        assert!(r.stderr.contains("at most 262144 fit"), "{args:?}: {r:?}");
    }
    assert_eq!(status(&bed)["policy"]["generation"], 1);
    assert!(
        !udp_answers(&bed, CLIENT_V4.into()),
        "after the refused reload"
    );
    assert!(
        udp_answers(&bed, ADMIN_V4.into()),
        "after the refused reload"
    );
}

/// What a damaged state file can look like: cut off mid-write, overwritten, emptied.
fn damaged(original: &str) -> [(&'static str, Vec<u8>); 3] {
    [
        (
            "truncated",
            original.as_bytes()[..original.len() / 2].to_vec(),
        ),
        ("garbage", b"\x00\xff{{not json at all".to_vec()),
        ("empty", Vec::new()),
    ]
}

#[test]
fn damaged_state_file_is_reported_kept_and_enforcement_holds() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[WEB, CLOSED]).expect("tcp listeners");
    let policy = attach_policy(&bed, OPEN);
    let policy = policy.to_str().expect("UTF-8 path");
    let state = bed.state_dir().join("state.json");
    let original = std::fs::read_to_string(&state).expect("state file after attach");
    // Every command that needs the record of what is attached.
    let commands: [&[&str]; 8] = [
        &["status"],
        &["stats", "--json"],
        &["reload"],
        &["detach"],
        &["detach", "--iface", SERVER_IF],
        &["port", "allow", "8080/tcp"],
        &["attach", "--iface", SERVER_IF, "--policy", policy],
        &["run", "--iface", SERVER_IF, "--policy", policy],
    ];
    for (kind, bytes) in damaged(&original) {
        std::fs::write(&state, &bytes).expect("damage the state file");
        for args in commands {
            let r = run(&bed, args);
            assert_eq!(r.code, Some(1), "{kind} state, {args:?}: {r:?}");
            assert!(
                r.stderr.contains(&state.display().to_string())
                    && r.stderr.contains("damaged")
                    && !r.stderr.contains("panicked"),
                "{kind} state, {args:?}: no clear error: {r:?}"
            );
            let kept = std::fs::read(&state).expect("the state file is kept");
            assert_eq!(kept, bytes, "{kind} state, {args:?} rewrote the file");
        }
        assert_enforcing(&bed, WEB, CLOSED, &format!("with a {kind} state file"));
    }
    std::fs::write(&state, &original).expect("restore the state file");

    // The files of live changes, damaged the same ways, and the commands that read them.
    run_ok(&bed, &["source", "deny", "192.0.2.7"]);
    run_ok(&bed, &["port", "allow", "8080/tcp"]);
    let live: [(&str, [&[&str]; 3]); 2] = [
        (
            "live-sources.json",
            [
                &["source", "list"],
                &["source", "deny", "192.0.2.8"],
                &["reload"],
            ],
        ),
        (
            "live-ports.json",
            [
                &["port", "list"],
                &["port", "allow", "8081/tcp"],
                &["reload"],
            ],
        ),
    ];
    for (name, commands) in live {
        let file = bed.state_dir().join(name);
        let original = std::fs::read_to_string(&file).expect("live file");
        for (kind, bytes) in damaged(&original) {
            std::fs::write(&file, &bytes).expect("damage the live file");
            for args in commands {
                let r = run(&bed, args);
                assert_eq!(r.code, Some(1), "{kind} {name}, {args:?}: {r:?}");
                assert!(
                    r.stderr.contains(name) && r.stderr.contains("damaged"),
                    "{kind} {name}, {args:?}: no clear error: {r:?}"
                );
                let kept = std::fs::read(&file).expect("the live file is kept");
                assert_eq!(kept, bytes, "{kind} {name}, {args:?} rewrote the file");
            }
        }
        std::fs::write(&file, &original).expect("restore the live file");
    }
    assert_enforcing(&bed, WEB, CLOSED, "after the damaged live files");
    assert_eq!(
        status(&bed)["policy"]["generation"],
        1,
        "a reload went through"
    );
    run_ok(&bed, &["detach"]);
}

/// Spoofed sources from 100.64.0.0/10 inside the veth, many more than the limiter table
/// holds: the table fills to its capacity and the least recently seen sources are evicted
/// (counted: `stats` shows the sources created and evicted), nothing fails, and a
/// legitimate client is still served.
#[test]
fn spoofed_flood_over_the_limiter_capacity_fails_nothing() {
    require_root();
    const ENTRIES: u32 = 4096;
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[WEB]).expect("tcp listeners");
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO]).expect("udp echo");
    let limited = format!("{OPEN}\n[limits]\nper_source_pps = 1000\n");
    let policy = write_policy(&bed, "policy.toml", &limited);
    let r = try_attach(&bed, &policy, &["--limiter-entries", &ENTRIES.to_string()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let before = stats(&bed);

    // 2^16 sources, each sending a few SYNs: far below its own rate, far over the table.
    // Paced, so the veth's ring (which drops what the receiver cannot take in time, before
    // XDP sees it) loses few; the verdicts are judged on the frames the program saw.
    let flood = SynFlood {
        src: Ipv4Addr::new(100, 64, 0, 0).into(),
        src_bits: 16,
        port: WEB,
        count: 200_000,
        rate_pps: Some(100_000),
        limit: Duration::from_secs(5),
    };
    let seen = |s: &serde_json::Value| -> u64 {
        let reasons = s["reasons"].as_object().expect("reasons");
        reasons
            .values()
            .map(|r| r["packets"].as_u64().unwrap_or(0))
            .sum()
    };
    let seen_before = seen(&before);
    let sent = syn_flood(&bed, flood).expect("flood");
    // veth delivers asynchronously: wait until the counters stop moving.
    let last = std::cell::Cell::new(0);
    let after = stats_when(&bed, Duration::from_secs(3), |s| {
        last.replace(seen(s)) == seen(s)
    });
    let program_saw = seen(&after) - seen_before;
    let allowed = reason(&after, "allowed", "packets") - reason(&before, "allowed", "packets");
    let limited = reason(&after, "rate_limited", "packets");
    eprintln!(
        "{} spoofed SYNs at {:.0} pps, {program_saw} seen by the program: allowed {allowed}, \
         rate_limited {limited}",
        sent.frames,
        sent.pps()
    );
    assert!(
        program_saw > 8 * u64::from(ENTRIES),
        "the program saw only {program_saw} frames of {} sent",
        sent.frames
    );
    // Every spoofed source is new to the table or evicted before it comes back: none of
    // them reaches its own rate, so an eviction never turns into a wrong drop.
    assert_eq!(limited, 0, "{after:#}");
    assert!(
        allowed * 10 >= program_saw * 9,
        "allowed {allowed} of {program_saw} frames seen: {after:#}"
    );

    let pin = bed.bpffs_dir().join(map_name::LIMITS);
    let (entries, capacity) = limiter_fill(&pin).expect("limiter table");
    eprintln!("limiter table: {entries} of {capacity} entries");
    assert_eq!(capacity, ENTRIES);
    assert!(
        entries <= ENTRIES as usize && entries * 10 >= ENTRIES as usize * 9,
        "limiter table holds {entries} of {ENTRIES}"
    );
    // Every source was created once at least (tens of thousands), and all but the table's
    // worth were evicted: `stats` counts what the kernel's LRU does silently.
    let limiter = &after["limiter"];
    let field = |k: &str| {
        limiter[k]
            .as_u64()
            .unwrap_or_else(|| panic!("limiter.{k}: {after:#}"))
    };
    eprintln!("stats limiter: {limiter}");
    assert_eq!(field("capacity"), u64::from(ENTRIES));
    assert_eq!(field("entries"), entries as u64);
    assert!(field("created") >= 8 * u64::from(ENTRIES), "{limiter}");
    // A source is created once per packet at most: the count is of creations, not of
    // packets or of racing inserts.
    assert!(field("created") <= sent.frames, "{limiter}");
    assert_eq!(field("evicted"), field("created") - field("entries"));
    // Counted since attach: `stats --reset` clears the packet counters, not these.
    run_ok(&bed, &["stats", "--reset"]);
    let reset = stats(&bed);
    assert_eq!(reset["limiter"]["created"], limiter["created"], "{reset:#}");
    assert_eq!(reason(&reset, "allowed", "packets"), 0, "{reset:#}");

    let web = SocketAddr::new(SERVER_V4.into(), WEB);
    let probe = tcp_connect(&bed.client, CLIENT_V4.into(), web, PROBE_TIMEOUT).expect("connect");
    assert_eq!(
        probe,
        ProbeResult::Open(banner(WEB)),
        "legitimate client refused"
    );
    assert!(
        udp_answers(&bed, CLIENT_V4.into()),
        "legitimate client dropped"
    );
    run_ok(&bed, &["status"]);
}

/// Arguments that are not valid input for any state of the enforcer.
const INVALID_ANYTIME: &[&[&str]] = &[
    &[],
    &["bogus"],
    &["--bpffs"],
    &["--state-dir"],
    &["generate-docs"],
    &["attach"],
    &["attach", "--iface", SERVER_IF],
    &["attach", "--policy", "{ok}"],
    &["attach", "--iface", "", "--policy", "{ok}"],
    &["attach", "--iface", "a/b", "--policy", "{ok}"],
    &["attach", "--iface", "eth0:1", "--policy", "{ok}"],
    &["attach", "--iface", "x234567890abcdef", "--policy", "{ok}"],
    &["attach", "--iface", SERVER_IF, "--policy", "{missing}"],
    &["attach", "--iface", SERVER_IF, "--policy", "{bad}"],
    &["attach", "--iface", SERVER_IF, "--policy", "{binary}"],
    &["attach", "--iface", SERVER_IF, "--policy", "{dir}"],
    &["attach", "--iface", SERVER_IF, "--policy", "/dev/null"],
    &[
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--xdp-mode",
        "turbo",
    ],
    &[
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--limiter-entries",
        "10",
    ],
    &[
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--limiter-entries",
        "-1",
    ],
    &[
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--limiter-entries",
        "1e9",
    ],
    &[
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--limiter-entries",
        "99999999999",
    ],
    &[
        "attach", "--iface", SERVER_IF, "--policy", "{ok}", "--bogus",
    ],
    &[
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--metrics",
        "nonsense",
    ],
    &[
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--metrics",
        "127.0.0.1:99999",
    ],
    &[
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        "{ok}",
        "--metrics",
        "",
    ],
    &["run", "--iface", "", "--policy", "{ok}"],
    &["run", "--iface", SERVER_IF, "--policy", "{bad}"],
    &["check"],
    &["check", "--policy", "{missing}"],
    &["check", "--policy", "{bad}"],
    &["check", "--policy", "{binary}"],
    &["check", "--policy", "{dir}"],
    &["check", "--policy", "{ok}", "--bogus"],
    &["status", "--bogus"],
    &["status", "extra"],
    &["stats", "--watch", "0"],
    &["stats", "--watch", "abc"],
    &["stats", "--watch", "-1"],
    &["stats", "--watch", "99999999999999999999"],
    &["stats", "--count", "3"],
    &["stats", "--watch", "1", "--count", "0"],
    &["stats", "--watch", "1", "--reset"],
    &["detach", "--iface"],
    &["detach", "--iface", ""],
    &["detach", "--iface", "a/b"],
    &["detach", "extra"],
    &["diff", "--policy"],
    &["diff", "extra"],
    &["reload", "--bogus"],
    &["reload", "--policy"],
    &["port"],
    &["port", "bogus"],
    &["port", "allow"],
    &["port", "allow", "0/tcp"],
    &["port", "allow", "70000/tcp"],
    &["port", "allow", "80/icmp"],
    &["port", "allow", "80"],
    &["port", "allow", "90-80/tcp"],
    &["port", "allow", "abc/tcp"],
    &["port", "allow", "--", "-1/tcp"],
    &["port", "allow", "80/tcp", "--from", "10.1.2.3/8"],
    &["port", "allow", "80/tcp", "--from", ""],
    &["port", "remove"],
    &["port", "remove", "0/udp"],
    &["port", "list", "--bogus"],
    &["source"],
    &["source", "deny"],
    &["source", "deny", "300.1.1.1"],
    &["source", "deny", "10.1.2.3/8"],
    &["source", "deny", "2001:db8::/129"],
    &["source", "deny", "192.0.2.1", "--ttl", "0s"],
    &["source", "deny", "192.0.2.1", "--ttl", "abc"],
    &["source", "deny", "192.0.2.1", "--ttl", "-5m"],
    &["source", "deny", "192.0.2.1", "--ttl", "1y"],
    &["source", "deny", "192.0.2.1", "--ttl", ""],
    &["source", "deny", "192.0.2.1", "--ttl", "99999999999d"],
    &[
        "source",
        "deny",
        "192.0.2.1",
        "--ttl",
        "18446744073709551615",
    ],
    &["source", "deny", "--file", "{missing}"],
    &["source", "deny", "--file", "{dir}"],
    &["source", "deny", "--file", "{binary}"],
    &["source", "deny", "--file", "{bad}"],
    &["source", "deny", "192.0.2.1", "--file", "{ok}"],
    &["source", "allow", ""],
    &["source", "allow", "10.0.0.0/8", "--ttl", "1h"],
    &["source", "remove", "nonsense"],
    &["source", "list", "--bogus"],
];

/// Invalid only with an enforcer attached (they name what is or is not in force).
const INVALID_WHEN_ATTACHED: &[&[&str]] = &[
    &["reload", "--policy", "{missing}"],
    &["reload", "--policy", "{bad}"],
    &["reload", "--policy", "{binary}"],
    &["reload", "--policy", "{dir}"],
    &["port", "allow", "80/tcp", "--from", "nosuchset"],
    &["port", "remove", "443/tcp"],
    &["port", "remove", "9999/tcp"],
    &["source", "remove", "192.0.2.9"],
];

#[test]
fn every_invalid_command_line_is_exit_2_with_a_message() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[WEB, CLOSED]).expect("tcp listeners");
    let work = bed.work_dir();
    std::fs::create_dir(work.join("dir")).expect("dir");
    std::fs::write(work.join("bad.toml"), "version = 2\n").expect("bad");
    std::fs::write(work.join("binary.toml"), b"\xff\xfe\x00\x01").expect("binary");
    let ok = write_policy(&bed, "ok.toml", OPEN);
    let files = [
        ("{ok}", ok.clone()),
        ("{missing}", work.join("missing.toml")),
        ("{bad}", work.join("bad.toml")),
        ("{binary}", work.join("binary.toml")),
        ("{dir}", work.join("dir")),
    ];
    let expand = |arg: &str| match files.iter().find(|(name, _)| *name == arg) {
        Some((_, path)) => path.to_str().expect("UTF-8 path").to_string(),
        None => arg.to_string(),
    };
    let check = |args: &[&str], what: &str| {
        let args: Vec<String> = args.iter().map(|a| expand(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r: Run = run(&bed, &args);
        assert_eq!(r.code, Some(2), "{what}: {args:?}: {r:?}");
        assert!(
            r.stderr.trim().len() > 10 && !r.stderr.contains("panicked"),
            "{what}: {args:?}: no clear message: {r:?}"
        );
    };
    for args in INVALID_ANYTIME {
        check(args, "nothing attached");
    }
    let r = try_attach(&bed, &ok, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let attached = status(&bed);
    for args in INVALID_ANYTIME.iter().chain(INVALID_WHEN_ATTACHED) {
        check(args, "attached");
    }
    assert_eq!(
        status(&bed),
        attached,
        "an invalid command changed the enforcer"
    );
    let lists = [&["source", "list"], &["port", "list"]];
    for args in lists {
        let r = run_ok(&bed, args);
        assert!(
            !r.stdout.contains("live"),
            "{args:?} shows a live entry: {r:?}"
        );
    }
    assert_enforcing(&bed, WEB, CLOSED, "after every invalid command");
}
