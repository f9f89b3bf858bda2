//! The enforcer in native mode on a VM's multi-queue virtio-net NIC: every probe leaves the
//! client's virtio-net NIC, crosses the bridge on the VM's host side and comes in through
//! the server's (tests/src/virtio.rs), so the real driver runs the program, sends the
//! SYN-cookie replies (XDP_TX) and carries jumbo frames. Only the VM matrix has these NICs
//! (`cargo xtask vm-test`); there a missing NIC fails the tests.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use mirror_xdp_tests::cli::{interfaces, port_counts, reason, run, stats, status, try_attach};
use mirror_xdp_tests::cli::{run_ok, write_policy};
use mirror_xdp_tests::netns::Netns;
use mirror_xdp_tests::probe::{self, ProbeResult, UdpResult};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{NGINX_INDEX, Nginx, TcpListenerSet, UdpEchoSet, banner};
use mirror_xdp_tests::sweep::{tcp_sweep, udp_sweep};
use mirror_xdp_tests::syn_flood::flood_and_connect;
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::virtio;
use mirror_xdp_tests::wait::stretched;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80, 443]

[[ports]]
proto = "udp"
ports = [5140]
"#;

/// Listening but not whitelisted.
const CLOSED_TCP: u16 = 25;
const CLOSED_UDP: u16 = 161;
/// A datagram that fills most of a 9000-byte frame: one jumbo frame, never IP fragments.
const JUMBO_DATAGRAM: usize = 8000;
const IN_VM: &str = "runs in the VM matrix: cargo xtask vm-test";

fn clients() -> [IpAddr; 2] {
    [CLIENT_V4.into(), CLIENT_V6.into()]
}

/// `attach --xdp-mode MODE` of [`POLICY`] to the server's NIC, unchecked.
fn attach(bed: &Testbed, mode: &str) -> mirror_xdp_tests::cli::Run {
    let path = write_policy(bed, "policy.toml", POLICY);
    try_attach(bed, &path, &["--xdp-mode", mode])
}

#[track_caller]
fn assert_mode(bed: &Testbed, mode: &str) {
    assert_eq!(
        interfaces(&status(bed)),
        [(SERVER_IF.to_string(), mode.to_string())]
    );
}

/// The server NIC's combined channels in use (`ethtool -l`).
fn queues(ns: &Netns) -> u32 {
    let out = ns
        .run_ok("ethtool", &["-l", SERVER_IF])
        .expect("ethtool -l");
    let text = String::from_utf8_lossy(&out.stdout);
    let current = text
        .split("Current hardware settings:")
        .nth(1)
        .unwrap_or_else(|| panic!("no current channels in {text}"));
    current
        .lines()
        .find_map(|l| l.strip_prefix("Combined:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no combined channels in {text}"))
}

/// Open and closed ports as [`POLICY`] says, from both families of the ordinary client.
#[track_caller]
fn assert_policy_holds(bed: &Testbed, what: &str) {
    for src in clients() {
        assert_eq!(
            tcp_sweep(&bed.client, src, &[443, CLOSED_TCP]),
            [
                (443, ProbeResult::Open(banner(443))),
                (CLOSED_TCP, ProbeResult::Timeout)
            ],
            "{what}: TCP from {src}"
        );
        assert_eq!(
            udp_sweep(&bed.client, src, &[5140, CLOSED_UDP]),
            [
                (5140, UdpResult::Answered),
                (CLOSED_UDP, UdpResult::NoAnswer)
            ],
            "{what}: UDP from {src}"
        );
    }
}

#[test]
#[ignore = "runs in the VM matrix: cargo xtask vm-test"]
fn native_xdp_on_virtio_net_enforces_the_policy_for_real_clients() {
    require_root();
    let bed = virtio::testbed().expect(IN_VM);
    let _nginx = Nginx::start(&bed.server).expect("nginx");
    let _tcp = TcpListenerSet::start(&bed.server, &[443, CLOSED_TCP]).expect("tcp listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[5140, CLOSED_UDP]).expect("udp echo");
    assert!(
        queues(&bed.server) > 1,
        "the server's NIC is not multi-queue"
    );
    let r = attach(&bed, "native");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_mode(&bed, "native");

    assert_policy_holds(&bed, "native XDP on virtio-net");
    for src in clients() {
        let body = probe::curl(&bed.client, Some(src), Testbed::server_addr_for(src));
        assert_eq!(body.as_deref(), Ok(NGINX_INDEX), "curl from {src}");
    }
    let open = probe::nmap(&bed.client, None, SERVER_V4.into()).expect("nmap");
    assert_eq!(open, [80, 443], "nmap sees exactly the whitelisted ports");
    let s = stats(&bed);
    assert!(
        reason(&s, "port_closed", "packets") > 0,
        "no drop counted: {s:#}"
    );
    run_ok(&bed, &["detach"]);
    assert_eq!(
        tcp_sweep(&bed.client, CLIENT_V4.into(), &[CLOSED_TCP]),
        [(CLOSED_TCP, ProbeResult::Open(banner(CLOSED_TCP)))],
        "detach gives the closed port back"
    );
}

/// SYN-cookie replies leave by XDP_TX through the virtio-net driver.
#[test]
#[ignore = "runs in the VM matrix: cargo xtask vm-test"]
fn syn_cookies_answer_a_spoofed_flood_through_virtio_net() {
    require_root();
    let bed = virtio::testbed().expect(IN_VM);
    let outcome = flood_and_connect(&bed, true);
    eprintln!(
        "virtio-net with syn_cookies: IPv4 {}, IPv6 {}; {} SYNs answered with cookies, {} dropped",
        outcome.v4, outcome.v6, outcome.cookies, outcome.syn_flood
    );
    outcome.assert_clients_got_in();
}

/// MTU 9000: virtio-net runs multi-buffer XDP from 6.3 on, so the frags-capable program
/// attaches natively there; 6.1's driver refuses XDP above about a page, so `native` fails
/// with a hint and `auto` falls back to skb. Either way jumbo datagrams are judged by port.
#[test]
#[ignore = "runs in the VM matrix: cargo xtask vm-test"]
fn jumbo_mtu_on_virtio_net_in_the_mode_the_kernel_allows() {
    require_root();
    let bed = virtio::testbed().expect(IN_VM);
    for (ns, dev) in [(&bed.server, SERVER_IF), (&bed.client, CLIENT_IF)] {
        ip(ns, &["link", "set", "dev", dev, "mtu", "9000"]).expect("MTU 9000");
    }
    let _tcp = TcpListenerSet::start(&bed.server, &[443, CLOSED_TCP]).expect("tcp listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[5140, CLOSED_UDP]).expect("udp echo");
    for src in clients() {
        assert!(
            jumbo_echoed(&bed, src, 5140),
            "no jumbo echo before attaching"
        );
    }

    let multi_buffer = kernel_at_least(6, 3);
    let r = attach(&bed, "native");
    if multi_buffer {
        assert_eq!(
            r.code,
            Some(0),
            "native at MTU 9000 on {}: {r:?}",
            release()
        );
        assert_mode(&bed, "native");
    } else {
        assert_eq!(
            r.code,
            Some(1),
            "native at MTU 9000 on {}: {r:?}",
            release()
        );
        assert!(r.stderr.contains("--xdp-mode skb"), "no hint: {r:?}");
        eprintln!("native refused on {}: {}", release(), r.stderr.trim());
        let s = run(&bed, &["status"]);
        assert_eq!(
            s.code,
            Some(1),
            "a failed native attach left something: {s:?}"
        );
        let r = attach(&bed, "auto");
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stderr.contains("falling back"), "{r:?}");
        assert_mode(&bed, "skb");
    }

    assert_policy_holds(&bed, "MTU 9000");
    let before = port_counts(&stats(&bed), "udp", 5140).unwrap_or_default().0;
    for src in clients() {
        assert!(jumbo_echoed(&bed, src, 5140), "jumbo datagram from {src}");
        assert!(
            !jumbo_echoed(&bed, src, CLOSED_UDP),
            "a jumbo datagram from {src} to the closed port {CLOSED_UDP} was answered"
        );
    }
    let after = port_counts(&stats(&bed), "udp", 5140).unwrap_or_default().0;
    assert!(
        after >= before + 2,
        "the jumbo datagrams were not judged as one frame each ({before} -> {after} passed)"
    );
}

/// Sends one [`JUMBO_DATAGRAM`]-byte datagram from `src` to `port` of the server and
/// whether the same datagram came back whole.
fn jumbo_echoed(bed: &Testbed, src: IpAddr, port: u16) -> bool {
    let dst = SocketAddr::new(Testbed::server_addr_for(src), port);
    let payload: Vec<u8> = (0..JUMBO_DATAGRAM).map(|i| (i % 251) as u8).collect();
    bed.client.enter(|| {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0)).expect("binding the client");
        socket.connect(dst).expect("connecting");
        socket
            .set_read_timeout(Some(stretched(Duration::from_secs(1))))
            .expect("read timeout");
        socket.send(&payload).expect("sending a jumbo datagram");
        let mut buf = vec![0u8; 65536];
        match socket.recv(&mut buf) {
            Ok(n) => buf[..n] == payload[..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => false,
            Err(e) => panic!("receiving from {dst}: {e}"),
        }
    })
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("kernel release")
        .trim()
        .to_owned()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = release();
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    version >= (major, minor)
}

/// With fewer queues than lock-free XDP_TX needs (the queue pairs in use plus one per CPU),
/// `attach` says so and what to change; with enough it says nothing.
#[test]
#[ignore = "runs in the VM matrix: cargo xtask vm-test"]
fn attach_warns_when_the_nic_has_too_few_queues_for_lock_free_xdp_tx() {
    require_root();
    let bed = virtio::testbed().expect(IN_VM);
    let set_queues = |n: &str| {
        bed.server
            .run_ok("ethtool", &["-L", SERVER_IF, "combined", n])
            .expect("ethtool -L");
    };
    let warning = "virtio-net needs one XDP TX queue per CPU";
    // The server's NIC has 4 queue pairs and the VM 2 CPUs: 3 in use leave 1 for XDP.
    set_queues("3");
    let r = attach(&bed, "native");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains(warning), "no queue warning: {r:?}");
    let fix = format!("ethtool -L {SERVER_IF} combined");
    assert!(r.stderr.contains(&fix), "no `{fix} N` advice: {r:?}");
    assert_mode(&bed, "native");
    run_ok(&bed, &["detach"]);

    set_queues("2");
    let r = attach(&bed, "native");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        !r.stderr.contains(warning),
        "a queue warning with enough queues: {r:?}"
    );
    run_ok(&bed, &["detach"]);
}
