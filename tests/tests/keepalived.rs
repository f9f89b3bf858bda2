//! keepalived (Debian's) on the server and on its peer electing a master through the
//! enforcer: VRRP allowed from the peer only (`[[protocols]]` with `from`). The server fails
//! over when the peer stops and hands back when it returns; another source's VRRP, at a
//! higher priority, is dropped and moves nothing; without the rule the server cannot hear
//! its peer and both claim the address.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::time::Duration;

use mirror_xdp_tests::cli::{
    attach_policy, protocol_counts, reason, run_ok, stats, stats_when, write_policy,
};
use mirror_xdp_tests::keepalived::{Keepalived, Role};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80]
[[protocols]]
protocols = ["vrrp"]
from = ["198.51.100.2"]
"#;

/// The same without the protocol rule: `other_protocols = "drop"` takes VRRP.
const WITHOUT_RULE: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80]
"#;

/// Adverts are a second apart and a backup takes over after three missed ones.
const ELECTION: Duration = Duration::from_secs(10);

#[test]
fn keepalived_elects_through_the_enforcer_with_vrrp_from_the_peer_only() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    let dir = bed.work_dir();
    let server_end = (SERVER_IF, SERVER_V4);
    let mut server = Keepalived::start(&bed.server, dir, "server", server_end, &[CLIENT_V4], 100)
        .expect("server keepalived");
    let peer_end = (CLIENT_IF, CLIENT_V4);
    let start_peer = || {
        Keepalived::start(&bed.client, dir, "peer", peer_end, &[SERVER_V4], 150)
            .expect("peer keepalived")
    };
    let mut peer = start_peer();

    // The peer has the higher priority: it is master, the server hears it and backs off.
    let took = mirror_xdp_tests::wait::poll_until(ELECTION, || {
        peer.role() == Role::Master && server.role() == Role::Backup
    });
    assert!(
        took.is_some(),
        "no election: {:#?}",
        transcript(&[&server, &peer])
    );
    eprintln!("elected: peer master, server backup after {took:?}");
    let passed = stats_when(&bed, Duration::from_secs(5), |s| {
        protocol_counts(s, "vrrp").is_some_and(|(pass, _)| pass >= 2)
    });
    assert_eq!(protocol_counts(&passed, "vrrp").map(|c| c.1), Some(0));

    // Failover: the peer stops; the server takes the address.
    peer.stop().expect("stop the peer");
    let took = server.wait_for(Role::Master, ELECTION);
    assert!(took.is_some(), "no failover: {:#?}", transcript(&[&server]));
    eprintln!("failover: server master {took:?} after the peer stopped");

    // Another host on the segment claims the router at a higher priority: its adverts are
    // dropped (source_not_allowed), so the server stays master.
    let rogue_end = (CLIENT_IF, ADMIN_V4);
    let mut rogue = Keepalived::start(&bed.client, dir, "rogue", rogue_end, &[SERVER_V4], 200)
        .expect("rogue keepalived");
    assert!(
        rogue.wait_for(Role::Master, ELECTION).is_some(),
        "the rogue never claimed the address: {:#?}",
        transcript(&[&rogue])
    );
    let dropped_before = reason(&stats(&bed), "source_not_allowed", "drop_packets");
    let counted = stats_when(&bed, Duration::from_secs(8), |s| {
        reason(s, "source_not_allowed", "drop_packets") >= dropped_before + 4
    });
    assert_eq!(
        server.role(),
        Role::Master,
        "the rogue's VRRP reached the server: {:#?}",
        transcript(&[&server, &rogue])
    );
    let (_, vrrp_dropped) = protocol_counts(&counted, "vrrp").expect("vrrp row");
    assert!(vrrp_dropped >= 4, "rogue adverts dropped: {vrrp_dropped}");
    eprintln!("rogue at priority 200: {vrrp_dropped} adverts dropped, server still master");
    eprintln!("{}", transcript(&[&server, &rogue]).join("\n"));
    rogue.stop().expect("stop the rogue");

    // The peer comes back: it preempts, and the server hands the address back.
    peer = start_peer();
    let took = server.wait_for(Role::Backup, ELECTION);
    assert!(
        took.is_some(),
        "no handback: {:#?}",
        transcript(&[&server, &peer])
    );
    eprintln!("handback: server backup {took:?} after the peer restarted");
    assert_eq!(peer.role(), Role::Master);

    // `stats --reset` zeroes the protocol's counters too (the master sends an advert a second).
    let (passed, _) = protocol_counts(&stats(&bed), "vrrp").expect("vrrp row");
    assert!(passed >= 3, "{passed} adverts passed");
    run_ok(&bed, &["stats", "--reset"]);
    let (passed, dropped) = protocol_counts(&stats(&bed), "vrrp").expect("vrrp row");
    assert!(
        passed <= 2 && dropped == 0,
        "after the reset: {passed}, {dropped}"
    );

    // Without the rule VRRP is another protocol, dropped: the server no longer hears its
    // peer and takes the address too (split brain).
    let path = write_policy(&bed, "policy.toml", WITHOUT_RULE);
    run_ok(
        &bed,
        &["reload", "--policy", path.to_str().expect("utf-8 path")],
    );
    let took = server.wait_for(Role::Master, ELECTION);
    assert!(took.is_some(), "server still backup without the rule");
    assert_eq!(peer.role(), Role::Master, "both claim the address");
    assert!(reason(&stats(&bed), "protocol", "drop_packets") >= 3);
    eprintln!("without the rule: server master too after {took:?} (split brain)");
    // The rule is gone, and its row in `stats` with it.
    assert_eq!(protocol_counts(&stats(&bed), "vrrp"), None);
    eprintln!("{}", transcript(&[&server, &peer]).join("\n"));
}

/// The instances' state changes, in the order of their log lines' times.
fn transcript(instances: &[&Keepalived]) -> Vec<String> {
    let mut lines: Vec<String> = instances.iter().flat_map(|k| k.transitions()).collect();
    lines.sort_by(|a, b| after_name(a).cmp(after_name(b)));
    lines
}

fn after_name(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, rest)| rest)
}
