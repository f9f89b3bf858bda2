//! `mirror-xdp explain` against probes: for each verdict reason a new connection can get,
//! the explanation of a connection is compared with what the enforcer did to the same
//! connection sent right after it from the client namespace (the reason whose counter
//! moved, and whether it got through), and what decided it with the policy and live state.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{attach_policy, run, run_ok, stats, write_policy};
use mirror_xdp_tests::cpu::pin_to_cpu;
use mirror_xdp_tests::probe::{ProbeResult, UdpResult, tcp_connect, udp_probe};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet};
use mirror_xdp_tests::sweep::PROBE_TIMEOUT;
use mirror_xdp_tests::testbed::*;
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

/// Line 11: the web rule; 15: SSH for admins; 20: syslog; 24: VRRP from a peer; 29: the
/// trusted admin.
const POLICY: &str = r#"version = 1

[settings]
icmp = "drop"
__DEFAULT__

[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
blocked = { file = "blocked.txt" }

[[ports]]
proto = "tcp"
ports = [80, 443]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]

[[ports]]
proto = "udp"
ports = [5140]

[[protocols]]
protocols = ["vrrp"]
from = ["198.51.100.99"]

[sources]
allow = ["2001:db8:a::10"]
deny = ["blocked"]

__LIMITS__
"#;

const BLOCKED: &str = "# abusers\n203.0.113.10\n";

fn policy(default: &str, limits: &str) -> String {
    POLICY
        .replace("__DEFAULT__", default)
        .replace("__LIMITS__", limits)
}

/// `explain SRC TARGET --dst DST --json`.
fn explain(bed: &Testbed, src: IpAddr, target: &str) -> Value {
    let dst = Testbed::server_addr_for(src).to_string();
    let src = src.to_string();
    let r = run_ok(bed, &["explain", &src, target, "--dst", &dst, "--json"]);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// Every reason's passed and dropped packets, as `REASON:pass` and `REASON:drop`.
fn counts(bed: &Testbed) -> BTreeMap<String, u64> {
    let s = stats(bed);
    let mut counts = BTreeMap::new();
    for (name, c) in s["reasons"].as_object().expect("reasons") {
        let packets = c["packets"].as_u64().unwrap_or(0);
        let dropped = c["drop_packets"].as_u64().unwrap_or(0);
        counts.insert(format!("{name}:pass"), packets - dropped);
        counts.insert(format!("{name}:drop"), dropped);
    }
    counts
}

/// Sends the connection's first packet (and what follows if it gets through) from `src`;
/// whether an answer came back.
fn connect(bed: &Testbed, src: IpAddr, target: &str) -> bool {
    let dst = Testbed::server_addr_for(src);
    if let Some((port, proto)) = target.split_once('/') {
        let at = SocketAddr::new(dst, port.parse().unwrap());
        return match proto {
            "tcp" => {
                tcp_connect(&bed.client, src, at, PROBE_TIMEOUT).unwrap() != ProbeResult::Timeout
            }
            _ => udp_probe(&bed.client, src, at, PROBE_TIMEOUT).unwrap() != UdpResult::NoAnswer,
        };
    }
    let number = match target {
        "icmp" if src.is_ipv6() => 58,
        "icmp" => 1,
        "vrrp" => 112,
        "gre" => 47,
        other => panic!("no probe for {other}"),
    };
    // An echo request for ICMP (the kernel sums ICMPv6); for other protocols, some bytes
    // after the kernel's IP header.
    let mut payload = vec![
        if number == 58 { 128 } else { 8 },
        0,
        0,
        0,
        0x12,
        0x34,
        0,
        1,
    ];
    if number == 1 {
        let sum = !payload
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .fold(0u32, |a, w| {
                let a = a + w;
                (a & 0xffff) + (a >> 16)
            }) as u16;
        payload[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    bed.client
        .enter(|| {
            let domain = if src.is_ipv6() {
                Domain::IPV6
            } else {
                Domain::IPV4
            };
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(number)))?;
            socket.bind(&SocketAddr::new(src, 0).into())?;
            socket.send_to(&payload, &SocketAddr::new(dst, 0).into())?;
            if target != "icmp" {
                return anyhow::Ok(false);
            }
            // The echo reply: after the IPv4 header; IPv6 raw sockets get no header.
            let reply_at = if src.is_ipv6() { 0 } else { 20 };
            let reply_type = if src.is_ipv6() { 129 } else { 0 };
            let deadline = Instant::now() + PROBE_TIMEOUT;
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let Ok(n) = socket.recv(&mut buf) else {
                    break;
                };
                // SAFETY: recv initialised the first n bytes.
                let got: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                let echo = got.get(reply_at + 4..reply_at + 6) == Some(&[0x12, 0x34][..]);
                if got.get(reply_at) == Some(&reply_type) && echo {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .unwrap()
}

/// The counters that moved between two readings, without the link's own chatter: ARP is
/// `non_ip`; IPv6 neighbour discovery and MLD are ICMPv6 (`icmp`), left out unless the
/// connection is ICMP itself (its echo reply shows then whether it got through).
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, icmp: bool) -> Vec<String> {
    after
        .iter()
        .filter(|(name, n)| **n > before[*name])
        .filter(|(name, _)| !name.starts_with("non_ip:") && (icmp || !name.starts_with("icmp:")))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Explains a connection, then makes it: the explained reason is the one whose counter the
/// connection moved, and its verdict says whether it got through. Made a second time if
/// another counter moved too: the namespaces' own IPv6 chatter (neighbour discovery, MLD)
/// now and then lands under a source's reason (`trusted` for the trusted admin).
fn explain_and_probe(bed: &Testbed, src: IpAddr, target: &str) -> Value {
    let mut last = String::new();
    for _ in 0..2 {
        match probe_within(bed, src, target, None) {
            Probe::Agreed(e) => return e,
            Probe::Moved(why) => last = why,
            Probe::Late => unreachable!("no time bound"),
        }
    }
    panic!("{last}");
}

/// What one explained connection showed.
enum Probe {
    /// Exactly the explained reason's counter moved.
    Agreed(Value),
    /// Other counters moved (or not the explained one): why.
    Moved(String),
    /// The connection came 800 ms or more after `since`.
    Late,
}

/// [`explain_and_probe`] once; with `since`, only if the connection starts within 800 ms
/// of it (a limit's bucket refills meanwhile).
fn probe_within(bed: &Testbed, src: IpAddr, target: &str, since: Option<Instant>) -> Probe {
    let before = counts(bed);
    let explained = explain(bed, src, target);
    if since.is_some_and(|t| t.elapsed() >= Duration::from_millis(800)) {
        return Probe::Late;
    }
    let answered = connect(bed, src, target);
    // Monitor mode would count a pass as a drop; this policy enforces.
    let counter = format!(
        "{}:{}",
        explained["reason"].as_str().unwrap(),
        explained["verdict"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut after = counts(bed);
    while after[&counter] == before[&counter] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = counts(bed);
    }
    // Only connections with something listening answer; a passed raw packet answers nothing.
    if answered {
        assert_eq!(
            explained["verdict"], "pass",
            "{src} {target} got through: {explained:#}"
        );
    }
    if explained["verdict"] == "drop" {
        assert!(
            !answered,
            "{src} {target} was explained as dropped: {explained:#}"
        );
    }
    let moved = moved(&before, &after, target == "icmp");
    if moved != [counter.clone()] {
        return Probe::Moved(format!(
            "{src} {target}: moved {moved:?}, not [{counter:?}]: {explained:#}"
        ));
    }
    Probe::Agreed(explained)
}

/// Checks an explanation's reason and what decided it.
#[track_caller]
fn expect(e: &Value, verdict: &str, reason: &str, decided_by: &[(&str, Value)]) {
    assert_eq!(
        (e["verdict"].as_str(), e["reason"].as_str()),
        (Some(verdict), Some(reason)),
        "{e:#}"
    );
    for (key, value) in decided_by {
        assert_eq!(&e["decided_by"][key], value, "decided_by.{key}: {e:#}");
    }
}

fn s(text: &str) -> Value {
    Value::from(text)
}

/// A limit's reason right after `spend` ran out the source's bucket (of one a second):
/// retried while the connection came so late after the spending that the bucket could
/// have refilled, or chatter moved another counter.
fn limited(bed: &Testbed, src: IpAddr, target: &str, spend: impl Fn()) -> Value {
    let mut last = "a probe never came within 800 ms of spending the bucket".to_string();
    for _ in 0..3 {
        let spent = Instant::now();
        spend();
        match probe_within(bed, src, target, Some(spent)) {
            Probe::Agreed(e) => return e,
            Probe::Moved(why) => last = why,
            Probe::Late => {}
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("{last}");
}

#[test]
fn explain_agrees_with_probes_for_every_reason() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[22, 80, 443, 8080]).expect("listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[5140]).expect("udp echo");
    write_policy(&bed, "blocked.txt", BLOCKED);
    let path = attach_policy(&bed, &policy("", ""));
    let file = s(path.to_str().unwrap());
    let blocked = s(bed.work_dir().join("blocked.txt").to_str().unwrap());
    let (client, client6) = (IpAddr::from(CLIENT_V4), IpAddr::from(CLIENT_V6));
    let (admin, admin6) = (IpAddr::from(ADMIN_V4), IpAddr::from(ADMIN_V6));

    // The policy's rules, sets and settings.
    let e = explain_and_probe(&bed, client, "80/tcp");
    expect(
        &e,
        "pass",
        "allowed",
        &[
            ("kind", s("rule")),
            ("file", file.clone()),
            ("line", 11.into()),
        ],
    );
    assert_eq!(e["decided_by"]["text"][2], "ports = [80, 443]", "{e:#}");
    let e = explain_and_probe(&bed, client, "22/tcp");
    expect(
        &e,
        "drop",
        "source_not_allowed",
        &[("kind", s("rule")), ("line", 15.into())],
    );
    let e = explain_and_probe(&bed, client, "3306/tcp");
    expect(
        &e,
        "drop",
        "port_closed",
        &[
            ("kind", s("setting")),
            ("setting", s("settings.default")),
            ("value", s("drop")),
        ],
    );
    let e = explain_and_probe(&bed, client6, "5140/udp");
    expect(
        &e,
        "pass",
        "allowed",
        &[("kind", s("rule")), ("line", 20.into())],
    );
    let e = explain_and_probe(&bed, client, "icmp");
    expect(
        &e,
        "drop",
        "icmp",
        &[("setting", s("settings.icmp")), ("value", s("drop"))],
    );
    let e = explain_and_probe(&bed, client, "vrrp");
    expect(
        &e,
        "drop",
        "source_not_allowed",
        &[("kind", s("rule")), ("line", 24.into())],
    );
    let e = explain_and_probe(&bed, client6, "gre");
    expect(
        &e,
        "drop",
        "protocol",
        &[("setting", s("settings.other_protocols"))],
    );
    let e = explain_and_probe(&bed, admin, "80/tcp");
    expect(
        &e,
        "drop",
        "denied",
        &[
            ("kind", s("set")),
            ("list", s("sources.deny")),
            ("set", s("blocked")),
            ("file", blocked),
            ("line", 2.into()),
            ("entry", s("203.0.113.10/32")),
        ],
    );
    let e = explain_and_probe(&bed, admin6, "3306/tcp");
    expect(
        &e,
        "pass",
        "trusted",
        &[
            ("kind", s("set")),
            ("list", s("sources.allow")),
            ("line", 29.into()),
        ],
    );

    // Live entries, with their origin and expiry.
    run_ok(&bed, &["port", "allow", "8080/tcp"]);
    let e = explain_and_probe(&bed, client, "8080/tcp");
    expect(
        &e,
        "pass",
        "allowed",
        &[
            ("kind", s("live")),
            ("origin", s("cli")),
            ("action", s("port")),
        ],
    );
    run_ok(&bed, &["source", "allow", "2001:db8:1::2"]);
    let e = explain_and_probe(&bed, client6, "3306/tcp");
    expect(
        &e,
        "pass",
        "trusted",
        &[
            ("kind", s("live")),
            ("action", s("allow")),
            ("entry", s("2001:db8:1::2/128")),
        ],
    );
    run_ok(&bed, &["source", "remove", "2001:db8:1::2"]);
    run_ok(&bed, &["source", "deny", "2001:db8:1::/64", "--ttl", "1h"]);
    let e = explain_and_probe(&bed, client6, "80/tcp");
    expect(
        &e,
        "drop",
        "denied",
        &[
            ("kind", s("live")),
            ("action", s("deny")),
            ("entry", s("2001:db8:1::/64")),
        ],
    );
    let left = e["decided_by"]["expires"].as_u64().unwrap() - now_unix();
    // The expiry is rounded up to a whole second; this clock reads down.
    assert!((3590..=3601).contains(&left), "expires in {left} s: {e:#}");
    run_ok(&bed, &["source", "remove", "2001:db8:1::/64"]);

    // Without --dst: an address of the attached interface.
    let r = run_ok(&bed, &["explain", "198.51.100.2", "443/tcp", "--json"]);
    let e: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        ["198.51.100.1", "203.0.113.1"].contains(&e["destination"].as_str().unwrap()),
        "{e:#}"
    );
    let r = run(&bed, &["explain", "198.51.100.2", "22/sctp"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = run(
        &bed,
        &[
            "explain",
            "198.51.100.2",
            "80/tcp",
            "--dst",
            "2001:db8:1::1",
        ],
    );
    assert_eq!(r.code, Some(2), "{r:?}");

    // `default = "pass"`, and a SYN limit of one a second.
    let limits = "[limits]\nper_source_syn_rate = 1\nper_source_syn_burst = 1\n";
    std::fs::write(&path, policy("default = \"pass\"", limits)).unwrap();
    run_ok(&bed, &["reload"]);
    let e = explain_and_probe(&bed, client, "3306/tcp");
    expect(
        &e,
        "pass",
        "default",
        &[("setting", s("settings.default")), ("value", s("pass"))],
    );
    let e = limited(&bed, client, "80/tcp", || {
        connect(&bed, client, "80/tcp");
    });
    expect(
        &e,
        "drop",
        "syn_flood",
        &[
            ("kind", s("limit")),
            ("limit", s("per_source_syn_rate")),
            ("tokens", 0.into()),
            ("counts", s("198.51.100.2/32")),
        ],
    );

    // A packet rate of one a second; then with bans.
    let limits = "[limits]\nper_source_pps = 1\nper_source_burst = 1\n";
    std::fs::write(&path, policy("", limits)).unwrap();
    run_ok(&bed, &["reload"]);
    let e = limited(&bed, client6, "5140/udp", || {
        connect(&bed, client6, "5140/udp");
    });
    expect(
        &e,
        "drop",
        "rate_limited",
        &[
            ("kind", s("limit")),
            ("limit", s("per_source_pps")),
            ("tokens", 0.into()),
            ("counts", s("2001:db8:1::/64")),
        ],
    );
    let limits = "[limits]\nper_source_pps = 1\nper_source_burst = 1\nban_seconds = 600\n";
    std::fs::write(&path, policy("", limits)).unwrap();
    run_ok(&bed, &["reload"]);
    for _ in 0..3 {
        connect(&bed, client6, "5140/udp");
    }
    let e = explain_and_probe(&bed, client6, "5140/udp");
    expect(
        &e,
        "drop",
        "banned",
        &[
            ("kind", s("ban")),
            ("prefix", s("2001:db8:1::/64")),
            ("ban_seconds", 600.into()),
        ],
    );
    let left = e["decided_by"]["expires_in_secs"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "{e:#}");
    // The human form says the same.
    let r = run_ok(&bed, &["explain", "2001:db8:1::2", "5140/udp"]);
    println!("$ mirror-xdp explain 2001:db8:1::2 5140/udp\n{}", r.stdout);
    assert!(r.stdout.starts_with("drop banned\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("a ban of 2001:db8:1::/64 (ban_seconds = 600)"),
        "{}",
        r.stdout
    );
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A SYN over `global_syn_rate` with `syn_cookies` is explained as `pass syn_cookie` (the
/// connection is made through the cookie), and monitor mode's drops as `would_drop`.
#[test]
fn syn_cookies_and_monitor_mode_are_explained_as_they_happen() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[80, 3306]).expect("listeners");
    write_policy(&bed, "blocked.txt", BLOCKED);
    // One SYN a second per CPU: the budget is split over the possible CPUs.
    let cpus = mirror_xdp::compile::possible_cpus();
    let limits = format!("[limits]\nglobal_syn_rate = {cpus}\nsyn_cookies = true\n");
    let path = attach_policy(&bed, &policy("", &limits));
    let client = IpAddr::from(CLIENT_V4);
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());

    // A SYN from each CPU spends its share (the first one also goes to the kernel, so the
    // kernel checks cookies for port 80): every share is empty, the next SYN gets a cookie.
    let e = limited(&bed, client, "80/tcp", || {
        for cpu in 0..online {
            pin_to_cpu(cpu);
            connect(&bed, client, "80/tcp");
        }
    });
    expect(
        &e,
        "pass",
        "syn_cookie",
        &[
            ("kind", s("limit")),
            ("limit", s("global_syn_rate")),
            ("tokens", 0.into()),
        ],
    );
    assert_eq!(e["would_drop"], false, "{e:#}");

    // Monitor mode: what it would drop passes, counted as a drop.
    let monitor = policy("mode = \"monitor\"", "");
    std::fs::write(&path, monitor).unwrap();
    run_ok(&bed, &["reload"]);
    let before = counts(&bed);
    let e = explain(&bed, client, "3306/tcp");
    // It passes, which `verdict` says; what enforcing would do is `would_drop`.
    expect(&e, "pass", "port_closed", &[("kind", s("setting"))]);
    assert_eq!(e["would_drop"], true, "{e:#}");
    assert!(
        connect(&bed, client, "3306/tcp"),
        "monitor mode lets it through"
    );
    let after = counts(&bed);
    assert!(
        after["port_closed:drop"] > before["port_closed:drop"],
        "{before:?} -> {after:?}"
    );
    let human = run_ok(&bed, &["explain", "198.51.100.2", "3306/tcp"]);
    assert!(
        human
            .stdout
            .starts_with("pass port_closed (monitor mode: would drop)"),
        "{}",
        human.stdout
    );
}
