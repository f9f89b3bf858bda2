//! An example policy with every section (as in the README's "Policy reference") and
//! examples/mirror.toml parse to what they say.

use std::net::IpAddr;

use super::*;
use crate::policy::{Action, Limits, Mode, PortRule, Proto, Settings};

const FULL_EXAMPLE: &str = r#"version = 1

[settings]
mode = "enforce"          # "enforce" | "monitor": monitor counts every would-be drop, passes all
default = "drop"          # TCP/UDP to a port no rule lists: "drop" | "pass"
icmp = "pass"             # other ICMP/ICMPv6: "pass" | "drop" (essentials below always pass)
fragments = "pass"        # non-first IP fragments (no L4 header): "pass" | "drop"
other_protocols = "drop"  # IP protocols other than TCP/UDP/ICMP/ICMPv6: "pass" | "drop"
return_traffic = true     # admit replies to connections this host opened itself

[sets]                    # named address sets: CIDRs, bare addresses, or a file of them
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
peers = { file = "peers.txt" }        # one entry per line, '#' comments; relative to the policy file

[[ports]]                 # a rule: protocol, ports (numbers and "lo-hi" ranges), optional sources
proto = "tcp"             # "tcp" | "udp"
ports = [80, 443, 873, "30001-30010"]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]         # only these sources may reach these ports (set names, CIDRs, addresses)

[sources]
allow = ["admins"]        # trusted: bypass every later check, limits included
deny = ["192.0.2.0/24", { file = "blocklist.txt" }]   # always dropped

[limits]                  # every key optional; 0 or absent = off
per_source_pps = 20000    # packets per second from one source (token bucket)
per_source_burst = 40000
per_source_syn_rate = 100 # new TCP connections (SYN without ACK) per second from one source
per_source_syn_burst = 200
global_syn_rate = 100000  # SYNs per second to this host from all sources together
ban_seconds = 60          # a source that exceeds a per-source limit is dropped for this long
source_prefix_v4 = 32     # limits count per source prefix (e.g. 24 aggregates a /24)
source_prefix_v6 = 64
"#;

const PEERS: &[u8] = b"# peers\n198.51.100.7\n2001:db8:b::/48\n";
const BLOCKLIST: &[u8] = b"198.18.0.0/15\n2001:db8:dead::/48\n192.0.2.0/24\n";

#[test]
fn full_example() {
    let (_dir, path) = folder(&[
        ("policy.toml", FULL_EXAMPLE.as_bytes()),
        ("peers.txt", PEERS),
        ("blocklist.txt", BLOCKLIST),
    ]);
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.path, path);
    assert_eq!(
        p.settings,
        Settings {
            mode: Mode::Enforce,
            default: Action::Drop,
            icmp: Action::Pass,
            fragments: Action::Pass,
            other_protocols: Action::Drop,
            return_traffic: true,
        }
    );
    let admins = nets(&["203.0.113.0/24", "2001:db8:a::/48"]);
    assert_eq!(
        p.rules,
        vec![
            PortRule {
                proto: Proto::Tcp,
                ports: vec![one(80), one(443), one(873), range(30001, 30010)],
                from: None,
                to: None,
                line: 15,
            },
            PortRule {
                proto: Proto::Tcp,
                ports: vec![one(22)],
                from: Some(admins.clone()),
                to: None,
                line: 19,
            },
        ]
    );
    assert_eq!(p.allow, admins);
    // The inline 192.0.2.0/24 comes first; the file's copy of it is a duplicate.
    assert_eq!(
        p.deny,
        nets(&["192.0.2.0/24", "198.18.0.0/15", "2001:db8:dead::/48"])
    );
    assert_eq!(
        p.limits,
        Limits {
            per_source_pps: 20000,
            per_source_burst: 40000,
            per_source_syn_rate: 100,
            per_source_syn_burst: 200,
            global_syn_rate: 100000,
            ban_seconds: 60,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            syn_cookies: false,
        }
    );
    let ssh = p
        .rule_for(Proto::Tcp, 22, [198, 51, 100, 1].into())
        .unwrap();
    assert_eq!(ssh.from.as_deref(), Some(&admins[..]));
    assert!(
        p.rule_for(Proto::Udp, 22, [198, 51, 100, 1].into())
            .is_none()
    );
}

#[test]
fn full_example_missing_set_file_points_at_its_name() {
    let (dir, path) = folder(&[
        ("policy.toml", FULL_EXAMPLE.as_bytes()),
        ("blocklist.txt", BLOCKLIST),
    ]);
    let e = Policy::load(&path).unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.line, e.column),
        (path.as_path(), 13, 18)
    );
    let peers = dir.path().join("peers.txt");
    assert!(
        e.message.starts_with(&format!(
            "cannot read set file 'peers.txt' ({}): ",
            peers.display()
        )),
        "{}",
        e.message
    );

    std::fs::write(dir.path().join("peers.txt"), PEERS).unwrap();
    std::fs::remove_file(dir.path().join("blocklist.txt")).unwrap();
    let e = Policy::load(&path).unwrap_err();
    assert_eq!((e.line, e.column), (26, 34));
    assert!(
        e.message
            .starts_with("cannot read set file 'blocklist.txt'")
    );
}

#[test]
fn example_policy_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.settings, Settings::default());
    assert_eq!(p.settings.mode, Mode::Enforce);
    let admins = nets(&["203.0.113.0/24", "2001:db8:a::/48"]);
    assert_eq!(
        p.rules,
        vec![
            PortRule {
                proto: Proto::Tcp,
                ports: vec![
                    one(80),
                    one(443),
                    one(873),
                    one(8080),
                    one(5000),
                    one(9000),
                    one(3128),
                    range(30001, 30010),
                ],
                from: None,
                to: None,
                line: 25,
            },
            PortRule {
                proto: Proto::Tcp,
                ports: vec![one(22)],
                from: Some(admins),
                to: None,
                line: 39,
            },
            PortRule {
                proto: Proto::Udp,
                ports: vec![one(5140)],
                from: None,
                to: None,
                line: 45,
            },
        ]
    );
    assert_eq!(p.allow, vec![]);
    assert_eq!(p.deny, nets(&["192.0.2.0/24"]));
    assert_eq!(p.limits, Limits::default());
    assert_eq!(p.limits.enabled(), Vec::<&str>::new());
    // The demo testbed's clients (198.51.100.0/24) must not be denied.
    let demo: IpAddr = "198.51.100.10".parse().unwrap();
    assert!(!p.deny.iter().any(|n| n.contains(&demo)));
}
