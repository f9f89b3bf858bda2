//! Prometheus metrics of an attached enforcer, scraped over HTTP, and the `stats --watch`
//! (as tables and as JSON lines) and `stats --reset` commands, against UDP traffic we count
//! ourselves.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mirror_xdp::kernel::maps::Maps;
use mirror_xdp::observe::metrics::{self, ReloadCounts};
use mirror_xdp::observe::stats::Stats;
use mirror_xdp::state::{Paths, Record};
use mirror_xdp_common::Reason;
use mirror_xdp_tests::cli::{attach_policy, port_counts, reason, run_ok, stats, stats_when};
use mirror_xdp_tests::probe::send_echoed;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::UdpEchoSet;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "udp"
ports = [5140]
"#;

const UDP_PORT: u16 = 5140;
const SENT: u64 = 40;
const PAYLOAD: &[u8; 32] = b"mirror-xdp metrics datagram 0123";
/// Ethernet + IPv4 + UDP headers + payload: what XDP counts per datagram.
const FRAME_BYTES: u64 = 14 + 20 + 8 + PAYLOAD.len() as u64;

#[test]
fn metrics_watch_and_reset() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[UDP_PORT]).expect("udp echo");
    attach_policy(&bed, POLICY);

    // IPv4 UDP only: nothing else in this test is `allowed`, so the counters hold exactly
    // what is sent here.
    let socket = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, 0)).expect("binding on the client"));
    let target = SocketAddr::from((SERVER_V4, UDP_PORT));
    send_echoed(&socket, target, PAYLOAD, SENT);
    let s = stats_when(&bed, Duration::from_secs(3), |s| {
        reason(s, "allowed", "packets") >= SENT
    });
    assert_eq!(reason(&s, "allowed", "packets"), SENT, "{s:#}");

    check_metrics(&bed);
    let watch_sent = check_watch(&bed, &socket, target);
    let json_sent = check_watch_json(&bed, &socket, target);
    check_reset(&bed, SENT + watch_sent + json_sent);
}

/// Serves the metrics of the testbed's enforcer from this process (the pins are on the
/// host's bpffs, the listener on this namespace's loopback) and scrapes them.
fn check_metrics(bed: &Testbed) {
    let paths = Paths {
        bpffs: bed.bpffs_dir().to_path_buf(),
        state_dir: bed.state_dir().to_path_buf(),
    };

    // The pieces a daemon may hold on to itself: record, maps, stats, render.
    let record = Record::load(&paths).expect("state").expect("attached");
    let maps = Maps::open_pinned(bed.bpffs_dir()).expect("pinned maps");
    let direct = metrics::render(
        &Stats::read(&maps, &record).expect("stats"),
        ReloadCounts::default(),
    );
    let allowed_line = format!("mirror_xdp_packets_total{{reason=\"allowed\"}} {SENT}");
    assert!(direct.lines().any(|l| l == allowed_line), "{direct}");

    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the metrics port");
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The reload counts come from the state record, as a daemon's reloads leave them.
    let mut counted = record.clone();
    counted.reloads = ReloadCounts { ok: 2, error: 1 };
    counted.save(&paths).expect("state");
    let handle = metrics::serve_listener(
        listener,
        move || metrics::scrape_pinned(&paths),
        stop.clone(),
    )
    .expect("serving metrics");

    let response = http_get(addr, "/metrics");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let lines: Vec<&str> = body.lines().collect();
    let value = |metric: &str| -> Option<u64> {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
    };
    assert_eq!(
        value("mirror_xdp_packets_total{reason=\"allowed\"}"),
        Some(SENT),
        "{body}"
    );
    assert_eq!(
        value("mirror_xdp_bytes_total{reason=\"allowed\"}"),
        Some(SENT * FRAME_BYTES),
        "{body}"
    );
    for r in Reason::ALL {
        for family in [
            "mirror_xdp_packets_total",
            "mirror_xdp_bytes_total",
            "mirror_xdp_dropped_packets_total",
        ] {
            let metric = format!("{family}{{reason=\"{}\"}}", r.name());
            assert!(value(&metric).is_some(), "no {metric} in\n{body}");
        }
    }
    let port = |verdict: &str| {
        value(&format!(
            "mirror_xdp_port_packets_total{{proto=\"udp\",port=\"{UDP_PORT}\",verdict=\"{verdict}\"}}"
        ))
    };
    assert_eq!(port("pass"), Some(SENT), "{body}");
    assert_eq!(port("drop"), Some(0), "{body}");
    assert_eq!(value("mirror_xdp_policy_generation"), Some(1), "{body}");
    assert_eq!(value("mirror_xdp_reloads_total{result=\"ok\"}"), Some(2));
    assert_eq!(value("mirror_xdp_reloads_total{result=\"error\"}"), Some(1));
    assert_eq!(
        value("mirror_xdp_info{mode=\"enforce\"}"),
        Some(1),
        "{body}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "mirror_xdp_interface_info{{iface=\"{SERVER_IF}\",xdp_mode="
        )) && l.ends_with(" 1")),
        "{body}"
    );
    assert!(http_get(addr, "/other").starts_with("HTTP/1.1 404 "));

    stop.store(true, Ordering::Relaxed);
    handle.join().expect("metrics thread");
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped server still listens"
    );
}

/// `stats --watch 1 --count 2` into a pipe: a totals block, then a rates block showing the
/// traffic sent meanwhile. Returns how many datagrams were sent.
fn check_watch(bed: &Testbed, socket: &UdpSocket, target: SocketAddr) -> u64 {
    let (text, sent) = run_while_sending(bed, socket, target, &["--count", "2"]);
    println!("stats --watch 1 --count 2:\n{text}");
    assert!(
        !text.contains('\x1b'),
        "no screen clearing into a pipe: {text:?}"
    );
    assert_eq!(
        text.matches("totals since attach or reset").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("rates per second over").count(), 1, "{text}");
    let (totals, rates) = text
        .split_once("\nrates per second over")
        .unwrap_or_else(|| panic!("no rates block after the totals: {text}"));
    assert!(totals.starts_with("totals since"), "{text}");
    assert!(
        totals.ends_with('\n'),
        "a blank line between blocks: {text:?}"
    );

    let row = |block: &str, first: &[&str]| -> Vec<f64> {
        block
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.starts_with(first))
            .unwrap_or_else(|| panic!("no {first:?} row in\n{block}"))[first.len()..]
            .iter()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{v:?} in\n{block}")))
            .collect()
    };
    assert!(row(totals, &["allowed"])[0] >= SENT as f64, "{totals}");
    let allowed = row(rates, &["allowed"]);
    assert!(
        allowed[0] > 5.0 && allowed[0] < 500.0,
        "about 50 datagrams a second: {rates}"
    );
    // Both columns are rounded to a tenth.
    let bytes_per_packet = allowed[1] / allowed[0];
    assert!(
        (bytes_per_packet - FRAME_BYTES as f64).abs() < 1.0,
        "{rates}"
    );
    let port = UDP_PORT.to_string();
    assert!(row(rates, &["udp", &port])[0] > 5.0, "{rates}");
    assert_eq!(row(rates, &["tcp", "80"]), [0.0, 0.0], "{rates}");
    sent
}

/// `stats --watch 1 --count 2 --json --top 1`: two lines, each a whole `stats --json`
/// object; the second adds the rates, and both list only the busiest port. Returns how many
/// datagrams were sent.
fn check_watch_json(bed: &Testbed, socket: &UdpSocket, target: SocketAddr) -> u64 {
    let args = ["--count", "2", "--json", "--top", "1"];
    let (text, sent) = run_while_sending(bed, socket, target, &args);
    println!("stats --watch 1 {args:?}:\n{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{text}")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let port = |v: &serde_json::Value| -> Vec<(String, u64)> {
        let ports = v["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("no ports: {v}"));
        ports
            .iter()
            .map(|p| {
                (
                    p["proto"].as_str().unwrap().to_string(),
                    p["port"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let busiest = vec![("udp".to_string(), u64::from(UDP_PORT))];
    for line in &lines {
        assert!(reason(line, "allowed", "packets") >= SENT, "{line}");
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert_eq!(port(line), busiest, "--top 1: {line}");
    }
    assert!(lines[0]["rates"].is_null(), "{}", lines[0]);
    let rates = &lines[1]["rates"];
    assert_eq!(port(rates), busiest, "{rates}");
    let allowed = rates["reasons"]["allowed"]["packets"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        allowed > 5.0 && allowed < 500.0,
        "about 50 a second: {rates}"
    );
    sent
}

/// `stats --watch 1 ARGS` while datagrams go to `target` at 50 a second: its output, and
/// how many were sent.
fn run_while_sending(
    bed: &Testbed,
    socket: &UdpSocket,
    target: SocketAddr,
    args: &[&str],
) -> (String, u64) {
    let sending = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            // Fire and forget, 50 a second (the pace, not a wait), until the watch is over.
            let mut sent = 0;
            while sending.load(Ordering::Relaxed) {
                if socket.send_to(PAYLOAD, target).is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        });
        let out = run_ok(bed, &[&["stats", "--watch", "1"], args].concat());
        sending.store(false, Ordering::Relaxed);
        (out.stdout, sender.join().expect("sender"))
    })
}

/// `stats --reset --json` prints the counters as they were, then every counter reads zero.
/// `sent`: every datagram sent so far, all of them `allowed`.
fn check_reset(bed: &Testbed, sent: u64) {
    // The last datagrams of the watch land first, so that nothing arrives after the reset.
    let before = stats_when(bed, Duration::from_secs(5), |s| {
        reason(s, "allowed", "packets") >= sent
    });
    assert_eq!(reason(&before, "allowed", "packets"), sent, "{before:#}");
    let printed = run_ok(bed, &["stats", "--reset", "--json"]);
    let printed: serde_json::Value = serde_json::from_str(&printed.stdout).expect("JSON");
    assert!(
        reason(&printed, "allowed", "packets") >= reason(&before, "allowed", "packets"),
        "--reset --json shows the counters before the reset: {printed:#}"
    );
    assert!(reason(&printed, "allowed", "packets") > SENT, "{printed:#}");

    // Link-local chatter (IPv6 router solicitations, MLD, ARP) may land right after the
    // reset; it counts as icmp or non_ip only, so for those two a second reset must do.
    let mut after = stats(bed);
    for _ in 0..3 {
        let noisy = ["icmp", "non_ip"];
        let nonzero: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| r.name())
            .filter(|&r| reason(&after, r, "packets") != 0 || reason(&after, r, "bytes") != 0)
            .collect();
        assert!(
            nonzero.iter().all(|r| noisy.contains(r)),
            "counters left after --reset: {nonzero:?} in {after:#}"
        );
        if nonzero.is_empty() {
            break;
        }
        run_ok(bed, &["stats", "--reset"]);
        after = stats(bed);
    }
    for r in Reason::ALL {
        assert_eq!(reason(&after, r.name(), "packets"), 0, "{after:#}");
        assert_eq!(reason(&after, r.name(), "drop_packets"), 0, "{after:#}");
    }
    for (proto, port) in [("udp", UDP_PORT), ("tcp", 80)] {
        assert_eq!(port_counts(&after, proto, port), Some((0, 0)), "{after:#}");
    }
    assert_eq!(
        after["ports"].as_array().map(Vec::len),
        Some(2),
        "{after:#}"
    );
}

/// A raw HTTP/1.1 GET; the whole response (the server closes the connection).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connecting to the metrics server");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reading the response");
    out
}
