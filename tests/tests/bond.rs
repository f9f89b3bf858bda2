//! The enforcer in native mode on a bond of two veths (tests/src/bond.rs): the bond puts the
//! program on every slave, so the traffic of each is judged; a slave released while attached
//! loses the program and one enslaved while attached gets it, with no command. Only the VM
//! matrix has the bonding module (`cargo xtask vm-test`); there a missing one fails the test.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::SocketAddr;
use std::time::Duration;

use mirror_xdp_tests::bond::{self, SLAVES, enslave, release, xdp_drops};
use mirror_xdp_tests::cli::{interfaces, run_ok, status, try_attach, write_policy};
use mirror_xdp_tests::flood::udp_blast;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpCounter};
use mirror_xdp_tests::sweep::{assert_blocked, assert_enforcing, assert_open};
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::wait_until;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [443]
"#;

const OPEN: u16 = 443;
const CLOSED: u16 = 25;
const CLOSED_UDP: u16 = 5999;
/// Datagrams to the closed UDP port per check: round-robin gives each slave half.
const BLAST: u64 = 200;

/// The enforcer on the bond, probed with both slaves, then with each alone: one released
/// and enslaved again, then the other, on both sides of the link.
#[test]
#[ignore = "runs in the VM matrix: cargo xtask vm-test"]
fn native_xdp_on_a_bond_follows_its_slaves() {
    require_root();
    let bed = bond::testbed().expect("a bond testbed (runs in the VM matrix: cargo xtask vm-test)");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let counter = UdpCounter::start(&bed.server, CLOSED_UDP).expect("udp counter");
    let path = write_policy(&bed, "policy.toml", POLICY);
    let r = try_attach(&bed, &path, &["--xdp-mode", "native"]);
    assert_eq!(r.code, Some(0), "native attach to a bond: {r:?}");
    assert_status(&bed, "attached");

    check(&bed, &counter, &["mxsa", "mxsb"], "both slaves");
    let [(a, peer_a), (b, peer_b)] = SLAVES;
    for (gone, peer_gone, left) in [(b, peer_b, a), (a, peer_a, b)] {
        release(&bed.server, gone).expect("releasing a slave");
        release(&bed.client, peer_gone).expect("releasing the peer");
        assert_status(&bed, &format!("{gone} released"));
        check(&bed, &counter, &[left], &format!("{gone} released"));
        enslave(&bed.server, gone).expect("enslaving again");
        enslave(&bed.client, peer_gone).expect("enslaving the peer again");
        wait_up(&bed.server, SERVER_IF).expect("bond up");
        assert_status(&bed, &format!("{gone} enslaved again"));
    }
    // The second round ran on mxsb alone, the slave enslaved again in the first.
    check(&bed, &counter, &["mxsa", "mxsb"], "both slaves again");

    run_ok(&bed, &["detach"]);
    assert_open(&bed, CLIENT_V4.into(), CLOSED, "after detach");
}

/// `status` keeps showing the bond in native mode whatever its slaves do.
#[track_caller]
fn assert_status(bed: &Testbed, when: &str) {
    let text = run_ok(bed, &["status"]).stdout;
    eprintln!("status, {when}:\n{text}");
    assert_eq!(
        interfaces(&status(bed)),
        [(SERVER_IF.to_string(), "native".to_string())],
        "{when}"
    );
}

/// The policy holds over IPv4 and IPv6, and datagrams to a closed port are dropped by the
/// program on each of `slaves` (the ones in both bonds now), none reaching the server.
#[track_caller]
fn check(bed: &Testbed, counter: &UdpCounter, slaves: &[&str], what: &str) {
    assert_enforcing(bed, OPEN, CLOSED, what);
    assert_open(bed, CLIENT_V6.into(), OPEN, what);
    assert_blocked(bed, CLIENT_V6.into(), CLOSED, what);
    let before: Vec<u64> = slaves.iter().map(|s| drops(bed, s)).collect();
    let dst = SocketAddr::new(SERVER_V4.into(), CLOSED_UDP);
    let sent = udp_blast(
        &bed.client,
        CLIENT_V4.into(),
        dst,
        BLAST,
        Duration::from_secs(5),
    )
    .expect("udp blast");
    assert_eq!(sent, BLAST, "{what}: blast cut short");
    // Each slave in use drops its share: round-robin in the client's bond.
    let share = BLAST / slaves.len() as u64 / 2;
    wait_until(
        Duration::from_secs(5),
        &format!("{what}: drops on {slaves:?}"),
        || {
            slaves
                .iter()
                .zip(&before)
                .all(|(s, b)| drops(bed, s) >= b + share)
        },
    );
    assert_eq!(
        counter.count(),
        0,
        "{what}: datagrams reached the closed port"
    );
}

fn drops(bed: &Testbed, slave: &str) -> u64 {
    xdp_drops(&bed.server, slave).expect("ethtool -S")
}
