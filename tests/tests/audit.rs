//! `mirror-xdp audit` against a real attached enforcer in a veth testbed: the example
//! policy audits clean and every class is checked; a policy that passes other protocols
//! lets tunnels and unknown IPv6 headers through and the audit names them (exit 1); the
//! VLAN-stripping warning follows the NIC setting; nothing attached and an unknown
//! interface are clear errors.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use mirror_xdp_tests::cli::{attach_policy, reason, run, run_ok, stats, write_policy};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::{CLIENT_IF, SERVER_IF, Testbed, ip};
use serde_json::Value;

/// Every class the audit reports, in its order.
const CLASSES: [&str; 17] = [
    "vlan",
    "qinq",
    "vlan-stacked",
    "ipv4-options",
    "ipv4-tiny-fragment",
    "ipv4-overlapping-fragment",
    "non-first-fragment",
    "ipv6-ext-chain",
    "ipv6-ext-long",
    "ipv6-ext-unknown",
    "ipv6-fragment-first",
    "tcp-data-offset",
    "tcp-flag-scans",
    "zero-broadcast-address",
    "ipv4-mapped-ipv6",
    "ip-in-ip",
    "multi-buffer",
];

fn example_policy() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mirror.toml");
    std::fs::read_to_string(path).expect("examples/mirror.toml")
}

/// `audit --json ARGS`, with its exit code.
fn audit_json(bed: &Testbed, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let r = run(bed, &all);
    let doc = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("`audit --json` is not JSON ({e}): {r:?}"));
    (r.code, doc)
}

/// (class, frames, findings) of the one audited interface.
fn classes(doc: &Value) -> Vec<(String, u64, usize)> {
    let ifaces = doc["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 1, "{doc:#}");
    ifaces[0]["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["frames"].as_u64().unwrap(),
                c["findings"].as_array().unwrap().len(),
            )
        })
        .collect()
}

fn total_packets(stats: &Value) -> u64 {
    stats["reasons"]
        .as_object()
        .expect("reasons")
        .keys()
        .map(|r| reason(stats, r, "packets"))
        .sum()
}

#[test]
fn the_example_policy_audits_clean_with_every_class_checked() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, &example_policy());
    // The audit only test-runs frames; with the client's end down no real frame (an MLD
    // report of the fresh addresses, sent at a random time within a second or two) can
    // move the counters meanwhile.
    ip(&bed.client, &["link", "set", CLIENT_IF, "down"]).expect("client link down");
    let before = total_packets(&stats(&bed));

    let r = run(&bed, &["audit"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for class in CLASSES {
        let line = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(class))
            .unwrap_or_else(|| panic!("no line for {class}: {}", r.stdout));
        assert!(line.ends_with(" ok"), "{class}: {line}");
    }
    assert!(r.stdout.contains("aimed at: closed port tcp/23, open port tcp/80, from-restricted port tcp/22, denied source 192.0.2.1"), "{}", r.stdout);
    assert!(r.stdout.contains("no findings"), "{}", r.stdout);

    let (code, doc) = audit_json(&bed, &["--iface", SERVER_IF]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["findings"], 0, "{doc:#}");
    let mut found = classes(&doc);
    // The example lists no protocol: `listed-protocol` is listed, built for no frame.
    assert_eq!(found.pop(), Some(("listed-protocol".to_string(), 0, 0)));
    assert_eq!(
        found.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        CLASSES
    );
    for (class, frames, findings) in &found {
        assert!(*frames > 0, "{class} ran no frame");
        assert_eq!(*findings, 0, "{class}");
    }
    // The note is true: both runs went through the live program's counters. The README
    // gives the corpus size of this policy.
    let frames: u64 = found.iter().map(|c| c.1).sum();
    assert_eq!(
        frames, 141,
        "the README says 141 frames on examples/mirror.toml"
    );
    let after = total_packets(&stats(&bed));
    assert_eq!(
        after - before,
        2 * frames,
        "counters moved by {}",
        after - before
    );
}

/// VRRP from a peer and IP-in-IP from a tunnel's far end: clean, each listed protocol's
/// frames judged by the live program. IP-in-IP open to anyone carries TCP past the port
/// rules: a finding.
#[test]
fn listed_protocols_audit_clean_unless_a_tunnel_is_open_to_all() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let rules = "\n[[protocols]]\nprotocols = [\"vrrp\"]\nfrom = [\"198.18.0.2\"]\n\
                 [[protocols]]\nprotocols = [\"ipip\"]\nfrom = [\"198.18.7.1\"]\n";
    attach_policy(&bed, &format!("{}{rules}", example_policy()));
    let (code, doc) = audit_json(&bed, &[]);
    assert_eq!(code, Some(0), "{doc:#}");
    let listed = classes(&doc)
        .into_iter()
        .find(|c| c.0 == "listed-protocol")
        .expect("listed-protocol");
    // Each protocol from an unnamed v4 and v6 source, the denied one and its peer.
    assert_eq!((listed.1, listed.2), (8, 0), "{doc:#}");

    let open = rules.replace("from = [\"198.18.7.1\"]\n", "");
    let path = write_policy(&bed, "open.toml", &format!("{}{open}", example_policy()));
    run_ok(
        &bed,
        &["reload", "--policy", path.to_str().expect("utf-8 path")],
    );
    let r = run(&bed, &["audit"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout.contains("ip-in-ip: IPv4-in-IPv4: TCP SYN to closed port 23 from 198.51.100.200: the program says pass, the policy says drop"),
        "{}",
        r.stdout
    );
    // The open rule has no admitted source to probe from: 4 VRRP frames and 3 IP-in-IP.
    assert!(
        r.stdout.contains("listed-protocol                 7  ok"),
        "{}",
        r.stdout
    );
}

#[test]
fn passing_other_protocols_is_reported_as_a_bypass() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let text = example_policy().replace("other_protocols = \"drop\"", "other_protocols = \"pass\"");
    assert!(text.contains("other_protocols = \"pass\""));
    attach_policy(&bed, &text);

    let r = run(&bed, &["audit"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("got a verdict the policy does not intend"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(
            "ip-in-ip: IPv4-in-IPv4: TCP SYN to closed port 23 from 198.51.100.200: \
             the program says pass, the policy says drop (no rule opens the port)"
        ),
        "{}",
        r.stdout
    );

    let (code, doc) = audit_json(&bed, &[]);
    assert_eq!(code, Some(1));
    let with_findings: Vec<_> = classes(&doc)
        .into_iter()
        .filter(|c| c.2 > 0)
        .map(|c| c.0)
        .collect();
    assert_eq!(with_findings, ["ipv6-ext-unknown", "ip-in-ip"], "{doc:#}");
}

#[test]
fn default_pass_says_there_is_no_closed_port() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(
        &bed,
        &example_policy().replace("default = \"drop\"", "default = \"pass\""),
    );
    let (code, doc) = audit_json(&bed, &[]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["targets"]["closed_port"], Value::Null);
    assert!(
        doc["notes"][0]
            .as_str()
            .unwrap()
            .contains("no closed ports"),
        "{doc:#}"
    );
}

#[test]
fn vlan_stripping_is_warned_about_while_it_is_on() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, &example_policy());
    let warned = |bed: &Testbed| {
        let (code, doc) = audit_json(bed, &[]);
        assert_eq!(code, Some(0), "warnings alone are no finding: {doc:#}");
        let iface = &doc["interfaces"][0];
        let on = iface["offloads"]["features"]["rx-vlan-hw-parse"].as_bool();
        let warning = iface["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("rx-vlan-hw-parse is on"));
        (on, warning)
    };
    for (setting, on) in [("on", true), ("off", false)] {
        bed.server
            .run_ok("ethtool", &["-K", SERVER_IF, "rxvlan", setting])
            .expect("veth lets rxvlan change");
        assert_eq!(warned(&bed), (Some(on), on), "rxvlan {setting}");
    }
}

#[test]
fn nothing_attached_and_unknown_interfaces_are_clear_errors() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let r = run(&bed, &["audit"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("nothing is attached"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    attach_policy(&bed, &example_policy());
    let r = run(&bed, &["audit", "--iface", "mxnope0"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "interface mxnope0 is not attached (attached: {SERVER_IF})"
        )),
        "{r:?}"
    );
}
