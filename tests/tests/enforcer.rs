//! The enforcer on a veth pair, seen from a client: whitelisted ports answer (raw sockets,
//! curl, rsync), other ports with a listener behind them go silent (no RST, no ICMP), `from`
//! limits hold over IPv4 and IPv6, and nmap sees exactly the whitelisted listening ports.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr};

use mirror_xdp_tests::cli::{attach_policy, port_counts, reason, stats};
use mirror_xdp_tests::probe::{self, ProbeResult, UdpResult, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{
    NGINX_INDEX, Nginx, RSYNC_FILE, RsyncDaemon, TcpListenerSet, UdpEchoSet, banner,
};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, parallel, tcp_sweep, udp_sweep};
use mirror_xdp_tests::testbed::*;

/// A mirror: web, rsync, sync channels and a dynamic range open to all, SSH for admins,
/// one UDP channel.
const MIRROR: &str = r#"
version = 1

[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]

[[ports]]
proto = "tcp"
ports = [80, 443, 873, 8080, 5000, 9000, 3128, "30001-30010"]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]

[[ports]]
proto = "udp"
ports = [5140]
"#;

/// Listening but not whitelisted: SMTP, MySQL, Redis, alternate HTTPS.
const CLOSED_TCP: &[u16] = &[25, 3306, 6379, 8443];
/// Listening but not whitelisted: SNMP, memcached (amplification vectors).
const CLOSED_UDP: &[u16] = &[161, 11211];

fn clients() -> [IpAddr; 2] {
    [CLIENT_V4.into(), CLIENT_V6.into()]
}

#[test]
fn allowed_ports_answer_and_closed_ports_time_out() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _nginx = Nginx::start(&bed.server).expect("nginx");
    let _rsync = RsyncDaemon::start(&bed.server).expect("rsync daemon");
    let _tcp = TcpListenerSet::start(&bed.server, &[443, 8080, 25, 3306, 6379, 8443])
        .expect("tcp listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[5140, 161, 11211]).expect("udp echo");

    // Without XDP every closed port answers: the listeners are really there.
    for src in clients() {
        for (port, r) in tcp_sweep(&bed.client, src, CLOSED_TCP) {
            assert_eq!(
                r,
                ProbeResult::Open(banner(port)),
                "before attach: tcp {port} from {src}"
            );
        }
        for (port, r) in udp_sweep(&bed.client, src, CLOSED_UDP) {
            assert_eq!(
                r,
                UdpResult::Answered,
                "before attach: udp {port} from {src}"
            );
        }
    }

    attach_policy(&bed, MIRROR);

    for src in clients() {
        let dst = Testbed::server_addr_for(src);
        assert_eq!(
            probe::curl(&bed.client, Some(src), dst).expect("curl through the enforcer"),
            NGINX_INDEX,
            "http from {src}"
        );
        assert_eq!(
            probe::rsync(&bed.client, Some(src), dst).expect("rsync through the enforcer"),
            vec![RSYNC_FILE.to_string()],
            "rsync from {src}"
        );
        for (port, r) in tcp_sweep(&bed.client, src, &[443, 8080]) {
            assert_eq!(r, ProbeResult::Open(banner(port)), "tcp {port} from {src}");
        }
        assert_eq!(
            udp_sweep(&bed.client, src, &[5140]),
            vec![(5140, UdpResult::Answered)],
            "udp 5140 from {src}"
        );
        // Dropped, not refused: a scanner learns nothing about what listens there.
        for (port, r) in tcp_sweep(&bed.client, src, CLOSED_TCP) {
            assert_eq!(r, ProbeResult::Timeout, "tcp {port} from {src}");
        }
        for (port, r) in udp_sweep(&bed.client, src, CLOSED_UDP) {
            assert_eq!(r, UdpResult::NoAnswer, "udp {port} from {src}");
        }
    }

    let s = stats(&bed);
    assert!(reason(&s, "allowed", "packets") > 0, "{s:#}");
    assert!(reason(&s, "port_closed", "drop_packets") > 0, "{s:#}");
    let (pass, drop) = port_counts(&s, "tcp", 443).expect("tcp/443 in stats ports");
    assert!(pass > 0 && drop == 0, "tcp/443 pass {pass} drop {drop}");
}

#[test]
fn from_limited_port_answers_admins_only() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _ssh = TcpListenerSet::start(&bed.server, &[22]).expect("tcp listener");
    let ssh = |src: IpAddr, dst: IpAddr| {
        tcp_connect(&bed.client, src, SocketAddr::new(dst, 22), PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("probing {dst}:22 from {src}: {e:#}"))
    };
    for src in clients() {
        let dst = Testbed::server_addr_for(src);
        assert_eq!(
            ssh(src, dst),
            ProbeResult::Open(banner(22)),
            "before attach"
        );
    }

    attach_policy(&bed, MIRROR);

    let open = ProbeResult::Open(banner(22));
    // (source, destination, expected): the source decides, whatever server address is used.
    let cases: [(IpAddr, IpAddr, ProbeResult); 7] = [
        (ADMIN_V4.into(), SERVER_ADMIN_V4.into(), open.clone()),
        (ADMIN_V4.into(), SERVER_V4.into(), open.clone()),
        (CLIENT_V4.into(), SERVER_V4.into(), ProbeResult::Timeout),
        (
            CLIENT_V4.into(),
            SERVER_ADMIN_V4.into(),
            ProbeResult::Timeout,
        ),
        (ADMIN_V6.into(), SERVER_ADMIN_V6.into(), open.clone()),
        (ADMIN_V6.into(), SERVER_V6.into(), open),
        (CLIENT_V6.into(), SERVER_V6.into(), ProbeResult::Timeout),
    ];
    let results = parallel(&cases, |&(src, dst, _)| ssh(src, dst));
    for ((src, dst, expected), got) in cases.iter().zip(results) {
        assert_eq!(&got, expected, "tcp {dst}:22 from {src}");
    }

    let s = stats(&bed);
    assert!(
        reason(&s, "source_not_allowed", "drop_packets") > 0,
        "{s:#}"
    );
    let (pass, drop) = port_counts(&s, "tcp", 22).expect("tcp/22 in stats ports");
    assert!(pass > 0 && drop > 0, "tcp/22 pass {pass} drop {drop}");
}

#[test]
fn nmap_sees_exactly_the_whitelisted_listening_ports() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _nginx = Nginx::start(&bed.server).expect("nginx");
    let _rsync = RsyncDaemon::start(&bed.server).expect("rsync daemon");
    // Whitelisted ones, SSH (admins only), and ones a mirror must never expose (111 too).
    let _tcp = TcpListenerSet::start(
        &bed.server,
        &[443, 8080, 5000, 9000, 3128, 22, 25, 3306, 6379, 8443, 111],
    )
    .expect("tcp listeners");

    let before = probe::nmap(&bed.client, Some(CLIENT_V4.into()), SERVER_V4.into()).expect("nmap");
    assert_eq!(
        before,
        [
            22, 25, 80, 111, 443, 873, 3128, 3306, 5000, 6379, 8080, 8443, 9000
        ],
        "without XDP nmap must see every listener"
    );

    attach_policy(&bed, MIRROR);

    // The ordinary client and the admin scan at once (each scan takes seconds to tens).
    let scans: [(IpAddr, IpAddr); 2] = [
        (CLIENT_V4.into(), SERVER_V4.into()),
        (ADMIN_V4.into(), SERVER_ADMIN_V4.into()),
    ];
    let found = parallel(&scans, |&(src, dst)| {
        probe::nmap(&bed.client, Some(src), dst).expect("nmap")
    });
    // 30001-30010 are whitelisted but nothing listens: they stay closed, not open.
    assert_eq!(
        found[0],
        [80, 443, 873, 3128, 5000, 8080, 9000],
        "client scan"
    );
    assert_eq!(
        found[1],
        [22, 80, 443, 873, 3128, 5000, 8080, 9000],
        "admin scan"
    );
}
