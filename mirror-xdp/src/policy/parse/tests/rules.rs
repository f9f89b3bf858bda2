//! `[[ports]]` rules: ports and ranges, `from` lists, and a port claimed by two rules.

use super::*;
use crate::policy::{PortRule, Proto};

#[test]
fn rules_with_ranges_strings_and_udp() {
    let p = ok(r#"version = 1
[[ports]]
proto = "udp"
ports = [5140, "53", "6000-6010", 5140]
"#);
    assert_eq!(
        p.rules,
        vec![PortRule {
            proto: Proto::Udp,
            ports: vec![one(5140), one(53), range(6000, 6010), one(5140)],
            from: None,
            to: None,
            line: 2,
        }]
    );
}

/// The README's policy reference: a port may be a quoted number, and spaces around the
/// numbers of a range (or a port) do not matter; policies in use rely on both.
#[test]
fn quoted_numbers_and_spaced_ranges_are_ports() {
    let p = ok(r#"version = 1
[[ports]]
proto = "tcp"
ports = [22, "22", "30001-30010", "30001 - 30010", " 8080 "]
"#);
    let ports = vec![
        one(22),
        one(22),
        range(30001, 30010),
        range(30001, 30010),
        one(8080),
    ];
    assert_eq!(p.rules[0].ports, ports);
}

#[test]
fn bad_ports() {
    let r = "version = 1\n[[ports]]\nproto = \"tcp\"\n";
    assert_eq!(
        err(&format!("{r}ports = [80, 0]\n")),
        "policy.toml:4:14: port 0 is out of range (1-65535)"
    );
    assert_eq!(
        err(&format!("{r}ports = [65536]\n")),
        "policy.toml:4:10: port 65536 is out of range (1-65535)"
    );
    assert_eq!(
        err(&format!("{r}ports = [-22]\n")),
        "policy.toml:4:10: port -22 is out of range (1-65535)"
    );
    assert_eq!(
        err(&format!("{r}ports = [\"1-70000\"]\n")),
        "policy.toml:4:10: port 70000 in '1-70000' is out of range (1-65535)"
    );
    assert_eq!(
        err(&format!("{r}ports = [443, \"30010-30001\"]\n")),
        "policy.toml:4:15: reversed range '30010-30001': the low port comes first \
         (\"30001-30010\")"
    );
    assert_eq!(
        err(&format!("{r}ports = [\"30001:30010\"]\n")),
        "policy.toml:4:10: bad port range '30001:30010': expected a port number or \
         \"lo-hi\", like \"30001-30010\""
    );
    assert_eq!(
        err(&format!("{r}ports = [\"http\"]\n")),
        "policy.toml:4:10: bad port range 'http': expected a port number or \"lo-hi\", \
         like \"30001-30010\""
    );
    assert_eq!(
        err(&format!("{r}ports = [true]\n")),
        "policy.toml:4:10: invalid type: boolean `true`, expected a port number or a \
         \"lo-hi\" range string"
    );
    assert_eq!(
        err(&format!("{r}ports = 80\n")),
        "policy.toml:4:9: invalid type: integer `80`, expected an array"
    );
    assert_eq!(
        err(&format!("{r}ports = []\n")),
        "policy.toml:4:9: `ports` is empty: list at least one port number or \"lo-hi\" range"
    );
}

#[test]
fn rules_need_proto_and_ports() {
    assert_eq!(
        err("version = 1\n\n[[ports]]\nports = [22]\n"),
        "policy.toml:3:1: rule has no `proto` (\"tcp\" or \"udp\")"
    );
    assert_eq!(
        err("version = 1\n[[ports]]\nproto = \"sctp\"\nports = [22]\n"),
        "policy.toml:3:9: proto must be \"tcp\" or \"udp\", not \"sctp\""
    );
    assert_eq!(
        err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\n[[ports]]\nproto = \"udp\"\n"),
        "policy.toml:5:1: rule has no `ports` (an array of port numbers and \"lo-hi\" ranges)"
    );
}

#[test]
fn empty_from_is_refused() {
    assert_eq!(
        err("version = 1\n[[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = []\n"),
        "policy.toml:5:8: `from = []` admits no source and would block these ports for \
         everyone; leave `from` out to admit any source, or list who may connect"
    );
}

#[test]
fn from_mixes_sets_cidrs_and_addresses_in_order_without_duplicates() {
    let p = ok(r#"version = 1
[sets]
a = ["10.0.0.0/8", "2001:db8::/32", "10.0.0.0/8"]
b = ["2001:db8::/32", "192.0.2.1"]
[[ports]]
proto = "udp"
ports = [5140]
from = ["b", "a", "192.0.2.1", "10.0.0.0/8", "::1", "2001:db8:1::/48"]
[sources]
allow = ["a"]
deny = ["2001:db8:bad::1", "198.51.100.0/24", "b"]
"#);
    assert_eq!(
        p.rules[0].from,
        Some(nets(&[
            "2001:db8::/32",
            "192.0.2.1/32",
            "10.0.0.0/8",
            "::1/128",
            "2001:db8:1::/48"
        ]))
    );
    assert_eq!(p.allow, nets(&["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(
        p.deny,
        nets(&[
            "2001:db8:bad::1/128",
            "198.51.100.0/24",
            "2001:db8::/32",
            "192.0.2.1/32"
        ])
    );
}

#[test]
fn bad_addresses_and_set_names() {
    let rule = "version = 1\n[sets]\nb = []\na = []\n[[ports]]\nproto = \"tcp\"\nports = [22]\n";
    assert_eq!(
        err(&format!("{rule}from = [\"a\", \"10.1.2.3/8\"]\n")),
        "policy.toml:8:14: bad CIDR/address '10.1.2.3/8': host bits set; did you mean \
         10.0.0.0/8?"
    );
    assert_eq!(
        err(&format!("{rule}from = [\"admins\"]\n")),
        "policy.toml:8:9: unknown set 'admins' (known sets: a, b)"
    );
    assert_eq!(
        err(&format!("{rule}from = [\"my admins\"]\n")),
        "policy.toml:8:9: 'my admins' is not an address, CIDR or set name"
    );
    assert_eq!(
        err(&format!("{rule}from = [\"2001:db8::/129\"]\n")),
        "policy.toml:8:9: bad CIDR/address '2001:db8::/129': prefix length 129 is longer \
         than 128 (IPv6)"
    );
    assert_eq!(
        err("version = 1\n[sources]\ndeny = [\"2001:db8::1/32\"]\n"),
        "policy.toml:3:9: bad CIDR/address '2001:db8::1/32': host bits set; did you mean \
         2001:db8::/32?"
    );
    assert_eq!(
        err("version = 1\n[sources]\nallow = [\"10.0.0.300\"]\n"),
        "policy.toml:3:10: bad CIDR/address '10.0.0.300': '10.0.0.300' is not an IPv4 or \
         IPv6 address"
    );
    assert_eq!(
        err("version = 1\n[sources]\nallow = [\"admins\"]\n"),
        "policy.toml:3:10: unknown set 'admins' (no sets are defined in [sets])"
    );
    assert_eq!(
        err("version = 1\n[sets]\na = [\"10.0.0.0/8\"]\nb = [\"a\"]\n"),
        "policy.toml:4:6: 'a' is not an address or CIDR (a set cannot name another set)"
    );
    assert_eq!(
        err("version = 1\n[sets]\nok = []\n\"office net\" = [\"10.0.0.0/8\"]\n"),
        "policy.toml:4:1: bad set name 'office net': a set name starts with a letter or \
         '_' and has only letters, digits, '_' and '-'"
    );
    assert_eq!(
        err("version = 1\n[sets]\na = [\"10.0.0.0/8\", 10]\n"),
        "policy.toml:3:20: invalid type: integer `10`, expected an address, CIDR or set \
         name string, or { file = \"...\" }"
    );
}

#[test]
fn sets_resolve_in_file_order_for_errors() {
    // Both sets are bad; the error is the first one in the file, not in name order.
    assert_eq!(
        err("version = 1\n[sets]\nz = [\"bad/1\"]\na = [\"bad/2\"]\n"),
        "policy.toml:3:6: bad CIDR/address 'bad/1': 'bad' is not an IPv4 or IPv6 address"
    );
}

#[test]
fn same_port_in_two_rules() {
    let base = r#"version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "tcp"
ports = [22, 80]
from = ["admins"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["2001:db8:a::/48", "203.0.113.0/24", "admins"]
[[ports]]
proto = "udp"
ports = [22, "1-100"]
"#;
    // Same `from` as a set (other order, duplicates), and udp is another port space.
    let p = ok(base);
    assert_eq!(p.rules.len(), 3);
    assert_eq!(
        p.rules[0].from,
        Some(nets(&["203.0.113.0/24", "2001:db8:a::/48"]))
    );
    assert_eq!(
        p.rules[1].from,
        Some(nets(&["2001:db8:a::/48", "203.0.113.0/24"]))
    );
    assert_eq!(
        err(&format!(
            "{base}[[ports]]\nproto = \"tcp\"\nports = [443, \"20-30\"]\n"
        )),
        "policy.toml:17:15: tcp port 22 is also in the rule at line 4, which has a \
         different `from`; a port has one source list (merge the rules, or give them the \
         same `from`)"
    );
    assert_eq!(
        err(&format!(
            "{base}[[ports]]\nproto = \"udp\"\nports = [53]\nfrom = [\"admins\"]\n"
        )),
        "policy.toml:17:10: udp port 53 is also in the rule at line 12, which has a \
         different `from`; a port has one source list (merge the rules, or give them the \
         same `from`)"
    );
    // Two open rules may share ports.
    let p = ok(&format!(
        "{base}[[ports]]\nproto = \"udp\"\nports = [\"50-60\"]\n"
    ));
    assert_eq!(p.rules[3].ports, vec![range(50, 60)]);
    assert_eq!(
        err(&format!(
            "{base}[[ports]]\nproto = \"tcp\"\nports = [80]\nfrom = [\"203.0.113.0/24\"]\n"
        )),
        "policy.toml:17:10: tcp port 80 is also in the rule at line 4, which has a \
         different `from`; a port has one source list (merge the rules, or give them the \
         same `from`)"
    );
}

/// `to`: the same port open to all on one address and to admins on another; a rule whose
/// destinations overlap another's with other sources, `to = []` and host bits are errors
/// where they are.
#[test]
fn to_lists_give_a_port_one_rule_per_destination() {
    let two = r#"version = 1
[sets]
admins = ["203.0.113.0/24"]
[[ports]]
proto = "tcp"
ports = [80, 873]
to = ["198.51.100.1", "2001:db8:1::1"]
[[ports]]
proto = "tcp"
ports = [80]
from = ["admins"]
to = ["203.0.113.1"]
"#;
    let p = ok(two);
    let at = |a: &str| a.parse().unwrap();
    assert_eq!(
        p.rule_for(Proto::Tcp, 80, at("198.51.100.1")).unwrap().line,
        4
    );
    assert_eq!(
        p.rule_for(Proto::Tcp, 80, at("2001:db8:1::1"))
            .unwrap()
            .line,
        4
    );
    assert_eq!(
        p.rule_for(Proto::Tcp, 80, at("203.0.113.1")).unwrap().line,
        8
    );
    assert!(p.rule_for(Proto::Tcp, 80, at("198.51.100.9")).is_none());
    assert!(p.rule_for(Proto::Tcp, 873, at("203.0.113.1")).is_none());
    for (edit, at, words) in [
        (
            two.replace("to = [\"203.0.113.1\"]", "to = [\"198.51.100.0/24\"]"),
            ":10:10",
            "line 4, for destinations",
        ),
        (
            two.replace("to = [\"203.0.113.1\"]\n", ""),
            ":10:10",
            "line 4, for destinations",
        ),
        (
            two.replace("to = [\"203.0.113.1\"]", "to = []"),
            ":12:6",
            "`to = []` matches no address",
        ),
        (
            two.replace("to = [\"203.0.113.1\"]", "to = [\"203.0.113.1/24\"]"),
            ":12:",
            "203.0.113.0/24",
        ),
    ] {
        let e = Policy::parse(&edit, Path::new("policy.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(at) && e.contains(words), "{edit}: {e}");
    }
}
