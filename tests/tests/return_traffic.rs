//! Return traffic: replies to connections the server opens pass (reason `return`) although
//! their ports are unlisted, while unsolicited packets to the same kind of port are dropped,
//! and with `return_traffic = false` the server's own outbound connections fail.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use mirror_xdp_tests::cli::{attach_policy, attach_policy_on, reason, run_ok, stats, stats_when};
use mirror_xdp_tests::egress_hook::HOOKS;
use mirror_xdp_tests::probe::{ProbeResult, UdpResult, tcp_connect, udp_probe};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet, banner};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, tcp_sweep};
use mirror_xdp_tests::testbed::*;

/// Only a web port is listed; 7000-7100 and 40000 are not.
const POLICY: &str = r#"
version = 1

[settings]
return_traffic = true

[[ports]]
proto = "tcp"
ports = [80]
"#;

const NO_RETURN: &str = r#"
version = 1

[settings]
return_traffic = false

[[ports]]
proto = "tcp"
ports = [80]
"#;

/// A TCP banner listener and a UDP echo on the client: "upstream" services the server uses.
const UPSTREAM_TCP: u16 = 7000;
const UPSTREAM_UDP: u16 = 7001;
/// A listener on the server on an unlisted port.
const SERVER_UNLISTED_TCP: u16 = 7100;
/// A fixed, unlisted local UDP port on the server.
const SERVER_UDP_PORT: u16 = 40000;
/// A plain UDP socket on the client that the server talks to before a reload.
const PEER_UDP: u16 = 7003;

fn upstream(port: u16, client: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(client.into(), port)
}

/// From the server namespace to the client's services, per address family.
fn outbound(bed: &Testbed) -> Vec<(IpAddr, ProbeResult, UdpResult)> {
    [
        (IpAddr::from(SERVER_V4), IpAddr::from(CLIENT_V4)),
        (SERVER_V6.into(), CLIENT_V6.into()),
    ]
    .into_iter()
    .map(|(src, dst)| {
        let tcp = tcp_connect(
            &bed.server,
            src,
            SocketAddr::new(dst, UPSTREAM_TCP),
            PROBE_TIMEOUT,
        )
        .expect("tcp probe");
        let udp = udp_probe(
            &bed.server,
            src,
            SocketAddr::new(dst, UPSTREAM_UDP),
            PROBE_TIMEOUT,
        )
        .expect("udp probe");
        (src, tcp, udp)
    })
    .collect()
}

#[test]
fn replies_to_connections_the_server_opens_pass() {
    replies_pass(HOOKS[0]);
}

#[test]
fn replies_to_connections_the_server_opens_pass_on_the_tc_hook() {
    replies_pass(HOOKS[1]);
}

/// With the egress program on `hook`: replies pass, and the flows it recorded outlive a
/// reload (the new program is swapped in behind the same hook).
fn replies_pass(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _up_tcp = TcpListenerSet::start(&bed.client, &[UPSTREAM_TCP]).expect("client listener");
    let _up_udp = UdpEchoSet::start(&bed.client, &[UPSTREAM_UDP]).expect("client echo");
    let _local = TcpListenerSet::start(&bed.server, &[SERVER_UNLISTED_TCP]).expect("listener");
    assert_eq!(
        tcp_sweep(&bed.client, CLIENT_V4.into(), &[SERVER_UNLISTED_TCP]),
        [(
            SERVER_UNLISTED_TCP,
            ProbeResult::Open(banner(SERVER_UNLISTED_TCP))
        )],
        "before attach the server's listener answers"
    );

    let policy = attach_policy_on(&bed, POLICY, hook);

    for (src, tcp, udp) in outbound(&bed) {
        assert_eq!(
            tcp,
            ProbeResult::Open(banner(UPSTREAM_TCP)),
            "tcp out from {src}"
        );
        assert_eq!(udp, UdpResult::Answered, "udp out from {src}");
    }
    let s = stats(&bed);
    assert!(reason(&s, "return", "packets") > 0, "{s:#}");

    // A fixed local port: talking out from it opens a flow for that one remote port only.
    let socket = bed.server.enter(|| {
        UdpSocket::bind((SERVER_V4, SERVER_UDP_PORT)).expect("binding the server's UDP port")
    });
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket
        .send_to(b"hello upstream", upstream(UPSTREAM_UDP, CLIENT_V4))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("the echo passes as return traffic");
    assert_eq!(
        (&buf[..n], from),
        (&b"hello upstream"[..], upstream(UPSTREAM_UDP, CLIENT_V4))
    );

    // A flow the old egress program recorded: the server talks to a peer port first.
    let peer = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, PEER_UDP)).expect("binding the client's peer port"));
    peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    socket
        .send_to(b"before the reload", upstream(PEER_UDP, CLIENT_V4))
        .unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("the peer hears the server");
    assert_eq!(&buf[..n], b"before the reload");

    // A reload swaps the programs behind the hook: the new egress program records the
    // connections opened from then on (TCP and UDP, v4 and v6).
    let returned = reason(&stats(&bed), "return", "packets");
    run_ok(
        &bed,
        &["reload", "--policy", policy.to_str().expect("UTF-8 path")],
    );
    // The flow table outlives the reload: the peer's reply to the datagram sent before it
    // passes, though the server sent nothing since.
    peer.send_to(b"after the reload", (SERVER_V4, SERVER_UDP_PORT))
        .unwrap();
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("a reply on a flow recorded before the reload passes after it");
    assert_eq!(
        (&buf[..n], from),
        (&b"after the reload"[..], upstream(PEER_UDP, CLIENT_V4))
    );
    for (src, tcp, udp) in outbound(&bed) {
        assert_eq!(
            tcp,
            ProbeResult::Open(banner(UPSTREAM_TCP)),
            "tcp out from {src} after a reload"
        );
        assert_eq!(
            udp,
            UdpResult::Answered,
            "udp out from {src} after a reload"
        );
    }
    assert!(reason(&stats(&bed), "return", "packets") > returned);

    let dropped_before = reason(&stats(&bed), "port_closed", "drop_packets");
    // Same server port, but from a client port no flow names: unsolicited.
    let intruder = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, UPSTREAM_UDP + 1)).expect("binding on the client"));
    intruder
        .send_to(b"unsolicited", (SERVER_V4, SERVER_UDP_PORT))
        .unwrap();
    match socket.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("an unsolicited datagram reached the server: {other:?}"),
    }
    let s = stats_when(&bed, Duration::from_secs(2), |s| {
        reason(s, "port_closed", "drop_packets") > dropped_before
    });
    assert!(
        reason(&s, "port_closed", "drop_packets") > dropped_before,
        "the unsolicited datagram was not counted as a port_closed drop: {s:#}"
    );

    // A SYN to an unlisted port is not a reply to anything.
    assert_eq!(
        tcp_sweep(&bed.client, CLIENT_V4.into(), &[SERVER_UNLISTED_TCP]),
        [(SERVER_UNLISTED_TCP, ProbeResult::Timeout)],
        "unsolicited SYN to an unlisted port"
    );
}

#[test]
fn without_return_traffic_outbound_connections_fail() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _up_tcp = TcpListenerSet::start(&bed.client, &[UPSTREAM_TCP]).expect("client listener");
    let _up_udp = UdpEchoSet::start(&bed.client, &[UPSTREAM_UDP]).expect("client echo");
    for (src, tcp, udp) in outbound(&bed) {
        assert_eq!(
            tcp,
            ProbeResult::Open(banner(UPSTREAM_TCP)),
            "before attach, from {src}"
        );
        assert_eq!(udp, UdpResult::Answered, "before attach, from {src}");
    }

    attach_policy(&bed, NO_RETURN);

    // The SYN-ACK and the echo come back to unlisted ephemeral ports and are dropped.
    for (src, tcp, udp) in outbound(&bed) {
        assert_eq!(tcp, ProbeResult::Timeout, "tcp out from {src}");
        assert_eq!(udp, UdpResult::NoAnswer, "udp out from {src}");
    }
    let s = stats(&bed);
    assert_eq!(reason(&s, "return", "packets"), 0, "{s:#}");
    assert!(reason(&s, "port_closed", "drop_packets") > 0, "{s:#}");
}
