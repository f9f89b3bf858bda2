//! `mirror-xdp protocol`: a live protocol rule lets VRRP in at once, from its `from`
//! sources only (IPv4 and IPv6), survives a reload, shows in `protocol list` and `explain`,
//! is refused where the policy's own rule says otherwise, applies to its `--to` addresses
//! only, and `protocol remove` closes the protocol again.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mirror_xdp_tests::cli::{
    assert_exit, attach_policy, list_json, protocol_counts, reason, run, run_ok, stats, stats_when,
};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::*;
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

const VRRP: u8 = 112;

/// GRE from the tunnel peers; VRRP is not listed.
const POLICY: &str = r#"version = 1
[sets]
peers = ["198.51.100.2", "2001:db8:1::2"]
[[ports]]
proto = "tcp"
ports = [80]
[[protocols]]
protocols = ["gre"]
from = ["peers"]
"#;

/// Sends `n` packets of `protocol` from `src` (an address of the client namespace) to
/// `dst` (one of the server's).
fn send(bed: &Testbed, src: IpAddr, dst: IpAddr, protocol: u8, n: usize) {
    bed.client
        .enter(|| {
            let domain = if src.is_ipv6() {
                Domain::IPV6
            } else {
                Domain::IPV4
            };
            let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(protocol))))?;
            socket.bind(&SocketAddr::new(src, 0).into())?;
            for _ in 0..n {
                socket.send_to(
                    &[0x21, 51, 100, 1, 0, 1, 0, 0],
                    &SocketAddr::new(dst, 0).into(),
                )?;
            }
            anyhow::Ok(())
        })
        .expect("sending raw packets");
}

/// VRRP's (passed, dropped) row and the `protocol` and `source_not_allowed` drops.
fn vrrp_counts(s: &Value) -> ((u64, u64), u64, u64) {
    (
        protocol_counts(s, "vrrp").unwrap_or_default(),
        reason(s, "protocol", "drop_packets"),
        reason(s, "source_not_allowed", "drop_packets"),
    )
}

/// Sends to the server's address of `src`'s network and waits (bounded) until the counters
/// moved by `by`.
fn sent(bed: &Testbed, src: IpAddr, n: usize, by: ((u64, u64), u64, u64)) {
    sent_to(bed, src, Testbed::server_addr_for(src), n, by);
}

/// [`sent`] to `dst`.
fn sent_to(bed: &Testbed, src: IpAddr, dst: IpAddr, n: usize, by: ((u64, u64), u64, u64)) {
    let before = vrrp_counts(&stats(bed));
    send(bed, src, dst, VRRP, n);
    let want = (
        (before.0.0 + by.0.0, before.0.1 + by.0.1),
        before.1 + by.1,
        before.2 + by.2,
    );
    let s = stats_when(bed, Duration::from_secs(3), |s| vrrp_counts(s) == want);
    assert_eq!(
        vrrp_counts(&s),
        want,
        "{n} VRRP packets from {src} to {dst}"
    );
}

#[test]
fn protocol_allow_opens_at_once_and_remove_closes() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    let (client, client6, admin) = (
        IpAddr::from(CLIENT_V4),
        IpAddr::from(CLIENT_V6),
        IpAddr::from(ADMIN_V4),
    );
    // Not listed: `other_protocols` drops it.
    sent(&bed, client, 3, ((0, 0), 3, 0));

    let r = run_ok(&bed, &["protocol", "allow", "vrrp", "--from", "peers"]);
    assert_eq!(r.stdout.trim(), "allow vrrp from peers: added");
    sent(&bed, client, 3, ((3, 0), 0, 0));
    sent(&bed, client6, 2, ((2, 0), 0, 0));
    sent(&bed, admin, 2, ((0, 2), 0, 2));

    let rows = list_json(&bed, "protocol", "protocols");
    let live: Vec<&Value> = rows.iter().filter(|r| r["origin"] == "live").collect();
    assert_eq!(live.len(), 1, "{rows:?}");
    assert_eq!(
        (
            &live[0]["protocol"],
            &live[0]["number"],
            &live[0]["from"][0]
        ),
        (
            &Value::from("vrrp"),
            &Value::from(112),
            &Value::from("peers")
        )
    );
    assert!(
        rows.iter()
            .any(|r| r["protocol"] == "gre" && r["origin"] == "policy"),
        "{rows:?}"
    );
    let r = run_ok(&bed, &["explain", "198.51.100.2", "vrrp", "--json"]);
    let e: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (
            &e["reason"],
            &e["decided_by"]["kind"],
            &e["decided_by"]["action"]
        ),
        (
            &Value::from("allowed"),
            &Value::from("live"),
            &Value::from("protocol")
        ),
        "{e:#}"
    );

    // A reload compiles it with the policy.
    run_ok(&bed, &["reload"]);
    sent(&bed, client, 2, ((2, 0), 0, 0));
    sent(&bed, admin, 1, ((0, 1), 0, 1));

    // What the policy says otherwise, and what is no protocol rule's.
    let r = run(&bed, &["protocol", "allow", "gre"]);
    assert_exit(&r, 2, "gre is in the policy rule at line 7");
    let r = run(&bed, &["protocol", "allow", "tcp"]);
    assert_exit(&r, 2, "TCP has its own rules");
    let r = run(&bed, &["protocol", "remove", "gre"]);
    assert_exit(&r, 2, "it comes from the policy file (the rule at line 7");
    let r = run(&bed, &["protocol", "allow", "vrrp", "--from", "admins"]);
    assert_exit(&r, 2, "unknown set 'admins'");
    sent(&bed, client, 1, ((1, 0), 0, 0));

    // On the admin address only (the rule replaced): VRRP to the public one is unlisted.
    let args = [
        "protocol",
        "allow",
        "vrrp",
        "--from",
        "peers",
        "--to",
        "203.0.113.1",
    ];
    let r = run_ok(&bed, &args);
    assert_eq!(
        r.stdout.trim(),
        "allow vrrp from peers to 203.0.113.1/32: updated"
    );
    sent(&bed, client, 2, ((0, 0), 2, 0));
    sent_to(&bed, client, SERVER_ADMIN_V4.into(), 2, ((2, 0), 0, 0));
    sent_to(&bed, admin, SERVER_ADMIN_V4.into(), 1, ((0, 1), 0, 1));
    let rows = list_json(&bed, "protocol", "protocols");
    assert!(
        rows.iter()
            .any(|r| r["origin"] == "live" && r["to"][0] == "203.0.113.1/32"),
        "{rows:?}"
    );

    let r = run_ok(&bed, &["protocol", "remove", "vrrp"]);
    assert_eq!(
        r.stdout.trim(),
        "removed live rule vrrp from peers to 203.0.113.1/32: closed"
    );
    sent_to(&bed, client, SERVER_ADMIN_V4.into(), 1, ((0, 0), 1, 0));
    sent(&bed, client, 2, ((0, 0), 2, 0));
    let rows = list_json(&bed, "protocol", "protocols");
    assert!(rows.iter().all(|r| r["origin"] == "policy"), "{rows:?}");
    let r = run(&bed, &["protocol", "remove", "vrrp"]);
    assert_exit(&r, 2, "vrrp has no live rule");
}
