//! The enforcer in native mode on a jumbo-frame link (MTU 9000, as on a mirror's back-end
//! and sync networks), where frames arrive in several buffers: nginx serves a large file
//! intact, the mirror pulls a tree from its upstream by rsync (jumbo segments in, as return
//! traffic), 8,000-byte datagrams reach an open port and not a closed one, nmap sees exactly
//! the whitelisted ports, the counters count whole frames, and SYN cookies answer a flood.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use mirror_xdp_tests::cli::{interfaces, port_counts, reason, stats_when, status};
use mirror_xdp_tests::cli::{try_attach, write_policy};
use mirror_xdp_tests::probe::{self, send_echoed};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{
    Nginx, RSYNC_FILE, RsyncDaemon, TcpListenerSet, UdpCounter, UdpEchoSet,
};
use mirror_xdp_tests::syn_flood::{flood_and_connect, pass_program};
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1

[settings]
return_traffic = true

[[ports]]
proto = "tcp"
ports = [80, 873]

[[ports]]
proto = "udp"
ports = [5140]
"#;

const OPEN_UDP: u16 = 5140;
const CLOSED_UDP: u16 = 5141;
/// A UDP payload that fits one 9000-byte frame but not one 4 KiB buffer.
const DATAGRAM: usize = 8000;
const DATAGRAMS: u64 = 20;
/// The web server's large file.
const BIG_FILE: &str = "pool/main/m/mirror/mirror_1.0.iso";
const BIG_FILE_LEN: usize = 16 << 20;
const MTU: &str = "9000";

/// Seeded random bytes: they neither compress nor repeat in step with a buffer.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fastrand::Rng::with_seed(seed).fill(&mut bytes);
    bytes
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("running sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Both ends of the testbed's link at MTU 9000.
fn jumbo(bed: &Testbed) {
    for (ns, dev) in [(&bed.server, SERVER_IF), (&bed.client, CLIENT_IF)] {
        ns.run_ok("ip", &["link", "set", dev, "mtu", MTU])
            .expect("setting MTU 9000");
    }
}

#[test]
fn jumbo_frames_in_native_mode_carry_files_and_datagrams_whole() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    jumbo(&bed);
    let big = content(BIG_FILE_LEN, 0x5eed);
    let tree: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("dists/stable/part{i}/Packages"),
                content(300_000 + i * 77_777, i as u64 + 7),
            )
        })
        .collect();
    let tree_refs: Vec<(&str, &[u8])> = tree
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let _nginx = Nginx::serving(&bed.server, &[(BIG_FILE, &big)]).expect("nginx");
    // The upstream mirror, on the client side of the link.
    let _upstream = RsyncDaemon::serving(&bed.client, &tree_refs).expect("rsync daemon");
    // The mirror's own rsync port, and listeners the policy closes.
    let _tcp = TcpListenerSet::start(&bed.server, &[873, 25, 8443]).expect("tcp listeners");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN_UDP]).expect("udp echo");
    let closed = UdpCounter::start(&bed.server, CLOSED_UDP).expect("udp counter");

    let path = write_policy(&bed, "policy.toml", POLICY);
    let r = try_attach(&bed, &path, &["--xdp-mode", "native"]);
    assert_eq!(r.code, Some(0), "native attach at MTU 9000: {r:?}");
    assert_eq!(
        interfaces(&status(&bed)),
        [(SERVER_IF.to_string(), "native".to_string())]
    );

    // HTTP: 16 MiB out in segments of up to 8948 bytes; the enforcer judges the requests
    // and ACKs.
    let work = bed.work_dir();
    let got = work.join("download.iso");
    let url = format!("http://{SERVER_V4}/{BIG_FILE}");
    let out = bed.client.run(
        "curl",
        &["-sS", "--max-time", "60", "-o", got.to_str().unwrap(), &url],
    );
    assert!(out.status.success(), "curl {url}: {out:?}");
    let served = work.join("served.iso");
    std::fs::write(&served, &big).expect("writing the reference copy");
    assert_eq!(sha256(&got), sha256(&served), "the file arrived changed");

    // rsync: the mirror pulls a tree from upstream over IPv6; the data segments come in.
    let dest = work.join("rsync-copy");
    let url = format!("rsync://[{CLIENT_V6}]/mirror/");
    // rsync's own --timeout does not end a receiver whose data stopped arriving: a hard bound.
    let out = bed.server.run(
        "timeout",
        &[
            "--kill-after=5",
            "60",
            "rsync",
            "-r",
            "--contimeout=5",
            "--timeout=30",
            &url,
            dest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "rsync {url}: {out:?}");
    for (name, want) in &tree {
        let have = std::fs::read(dest.join(name)).expect("a file rsync copied");
        assert!(have == *want, "{name} arrived changed");
    }
    assert!(
        dest.join(RSYNC_FILE).exists(),
        "rsync copied the whole module"
    );

    // UDP: 8000-byte datagrams to the open port come back, to the closed one vanish.
    let payload = content(DATAGRAM, 3);
    bed.client.enter(|| {
        let socket = UdpSocket::bind((CLIENT_V4, 0)).expect("binding a client socket");
        let open = SocketAddr::new(SERVER_V4.into(), OPEN_UDP);
        send_echoed(&socket, open, &payload, DATAGRAMS);
        let closed_addr = SocketAddr::new(SERVER_V4.into(), CLOSED_UDP);
        for _ in 0..DATAGRAMS {
            socket.send_to(&payload, closed_addr).expect("sending");
        }
    });
    let s = stats_when(&bed, Duration::from_secs(5), |s| {
        port_counts(s, "udp", OPEN_UDP).is_some_and(|(pass, _)| pass >= DATAGRAMS)
            && reason(s, "port_closed", "drop_packets") >= DATAGRAMS
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(closed.count(), 0, "datagrams reached the closed port");
    assert!(
        reason(&s, "port_closed", "drop_packets") >= DATAGRAMS,
        "the closed port's datagrams were not dropped as port_closed: {s:#}"
    );
    // Counters count whole frames, fragments included.
    let tree_len: usize = tree.iter().map(|(_, c)| c.len()).sum();
    let returned = reason(&s, "return", "bytes");
    assert!(
        returned >= tree_len as u64,
        "return bytes {returned} < the tree's {tree_len}: fragments not counted"
    );
    assert!(
        reason(&s, "port_closed", "drop_bytes") >= DATAGRAMS * DATAGRAM as u64,
        "{s:#}"
    );

    // nmap sees exactly the whitelisted ports that listen (not 25 or 8443).
    for dst in [IpAddr::from(SERVER_V4), IpAddr::from(SERVER_V6)] {
        let open = probe::nmap(&bed.client, None, dst).expect("nmap");
        assert_eq!(open, [80, 873], "nmap of {dst}");
    }
}

/// SYN cookies over the jumbo link: the cookie SYN-ACKs leave by XDP_TX from the
/// multi-buffer capable program, and the client gets in during a flood.
#[test]
fn syn_cookies_let_clients_in_over_a_jumbo_link() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    jumbo(&bed);
    let _peer_xdp = pass_program(&bed.client);
    let outcome = flood_and_connect(&bed, true);
    assert!(outcome.cookies > 0, "no SYN answered with a cookie");
    outcome.assert_clients_got_in();
}
