//! Counters against traffic we count ourselves: exact per-port and per-reason numbers
//! (bytes included), and monitor mode passing everything while counting would-be drops.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mirror_xdp_tests::cli::{attach_policy, port_counts, reason, stats, stats_when, status};
use mirror_xdp_tests::probe::{ProbeResult, UdpResult, send_echoed};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet, banner};
use mirror_xdp_tests::sweep::{tcp_sweep, udp_sweep};
use mirror_xdp_tests::testbed::*;

const MONITOR: &str = r#"
version = 1

[settings]
mode = "monitor"

[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]

[[ports]]
proto = "tcp"
ports = [443]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
"#;

const COUNTED: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "udp"
ports = [5140]
"#;

const LISTED_UDP: u16 = 5140;
const UNLISTED_UDP: u16 = 5141;
const ECHOED: u64 = 50;
const DROPPED: u64 = 30;
const PAYLOAD: &[u8; 32] = b"mirror-xdp counted datagram 0123";
/// What XDP sees of each datagram: Ethernet + IPv4 (no options) + UDP headers + payload.
const FRAME_BYTES: u64 = 14 + 20 + 8 + PAYLOAD.len() as u64;

#[test]
fn monitor_mode_passes_everything_and_counts_would_be_drops() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[443, 22, 25, 3306]).expect("tcp listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[161]).expect("udp echo");

    attach_policy(&bed, MONITOR);

    // Unlisted ports, and SSH from a non-admin: all would be dropped, all still answer.
    for src in [CLIENT_V4.into(), CLIENT_V6.into()] {
        for (port, r) in tcp_sweep(&bed.client, src, &[443, 22, 25, 3306]) {
            assert_eq!(r, ProbeResult::Open(banner(port)), "tcp {port} from {src}");
        }
        assert_eq!(
            udp_sweep(&bed.client, src, &[161]),
            [(161, UdpResult::Answered)],
            "udp 161 from {src}"
        );
    }

    let s = stats(&bed);
    assert_eq!(s["mode"], "monitor", "{s:#}");
    assert_eq!(status(&bed)["mode"], "monitor");
    assert!(reason(&s, "port_closed", "drop_packets") > 0, "{s:#}");
    assert!(
        reason(&s, "source_not_allowed", "drop_packets") > 0,
        "{s:#}"
    );
    let (_, would_drop) = port_counts(&s, "tcp", 22).expect("tcp/22 in stats ports");
    assert!(
        would_drop > 0,
        "tcp/22 would-be drops are counted per port: {s:#}"
    );
}

#[test]
fn counters_equal_the_packets_sent() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[LISTED_UDP]).expect("udp echo");
    attach_policy(&bed, COUNTED);

    // IPv4 only, and nothing else in this test sends TCP/UDP to the server, so the counters
    // hold exactly what is sent here (ARP is non_ip, IPv6 neighbour discovery is icmp).
    let socket = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, 0)).expect("binding on the client"));
    let listed = SocketAddr::from((SERVER_V4, LISTED_UDP));
    // Each echo awaited, so a count of 50 means 50 datagrams went through.
    send_echoed(&socket, listed, PAYLOAD, ECHOED);

    let unlisted = SocketAddr::from((SERVER_V4, UNLISTED_UDP));
    for _ in 0..DROPPED {
        socket.send_to(PAYLOAD, unlisted).unwrap();
    }

    let s = stats_when(&bed, Duration::from_secs(3), |s| {
        reason(s, "port_closed", "packets") >= DROPPED
    });
    let echoed = ECHOED;
    assert_eq!(
        port_counts(&s, "udp", LISTED_UDP),
        Some((echoed, 0)),
        "udp/{LISTED_UDP}: {s:#}"
    );
    assert_eq!(reason(&s, "allowed", "packets"), echoed, "{s:#}");
    assert_eq!(
        reason(&s, "allowed", "bytes"),
        echoed * FRAME_BYTES,
        "{s:#}"
    );
    assert_eq!(reason(&s, "allowed", "drop_packets"), 0, "{s:#}");
    assert_eq!(reason(&s, "port_closed", "packets"), DROPPED, "{s:#}");
    assert_eq!(reason(&s, "port_closed", "drop_packets"), DROPPED, "{s:#}");
    assert_eq!(
        reason(&s, "port_closed", "bytes"),
        DROPPED * FRAME_BYTES,
        "{s:#}"
    );
    assert_eq!(
        reason(&s, "port_closed", "drop_bytes"),
        DROPPED * FRAME_BYTES,
        "{s:#}"
    );
    assert_eq!(port_counts(&s, "tcp", 80), Some((0, 0)), "{s:#}");
}
