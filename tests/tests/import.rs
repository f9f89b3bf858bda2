//! `mirror-xdp import` against the real tools: a typical mirror guide's rules (HTTP, HTTPS
//! and rsync open, SSH from the admin network, a sync port range, a SYN limit, default
//! drop) built with the real iptables and nft in the server namespace, probed, dumped,
//! imported; then the firewall flushed, the imported policy attached, and the same probes
//! must get the same open/filtered answers.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::IpAddr;

use mirror_xdp_tests::cli::{attach_policy, run, write_policy};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::tcp_sweep;
use mirror_xdp_tests::testbed::*;

/// Listeners behind every probed port: what a probe sees is the firewall's doing.
const PORTS: &[u16] = &[22, 80, 443, 873, 3306, 30000, 30005, 30010, 30011];

/// Each source's open ports, in [`PORTS`] order.
fn open_ports(bed: &Testbed) -> Vec<(IpAddr, Vec<u16>)> {
    let sources: [IpAddr; 4] = [
        CLIENT_V4.into(),
        ADMIN_V4.into(),
        CLIENT_V6.into(),
        ADMIN_V6.into(),
    ];
    sources
        .iter()
        .map(|&src| {
            let open = tcp_sweep(&bed.client, src, PORTS)
                .into_iter()
                .filter(|(_, r)| r.is_open())
                .map(|(port, _)| port)
                .collect();
            (src, open)
        })
        .collect()
}

/// Probes with the tool's rules in place, dumps them with `dump`, removes them with
/// `flush`, imports the dump and probes again with the policy attached; returns what
/// `import` reported on stderr.
fn compare(
    bed: &Testbed,
    format: &str,
    dump: (&str, &[&str]),
    flush: &[(&str, &[&str])],
) -> String {
    let _listeners = TcpListenerSet::start(&bed.server, PORTS).expect("listeners");
    let expected = open_ports(bed);
    let out = bed.server.run_ok(dump.0, dump.1).expect("dump the rules");
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    for (cmd, args) in flush {
        bed.server.run_ok(cmd, args).expect("flush the rules");
    }
    let file = write_policy(bed, "rules.txt", &rules);
    let imported = run(bed, &["import", format, &file.display().to_string()]);
    assert_eq!(
        imported.code,
        Some(1),
        "one rule (the SYN limit) cannot be translated: {imported:?}"
    );
    attach_policy(bed, &imported.stdout);
    let got = open_ports(bed);
    eprintln!("{format}: source, open ports with the tool's rules / with the imported policy");
    for ((src, want), (_, have)) in expected.iter().zip(&got) {
        eprintln!("  {src:<16} {want:?} / {have:?}");
    }
    assert_eq!(
        got, expected,
        "the imported policy answers otherwise:\n{rules}\n{}",
        imported.stdout
    );
    imported.stderr
}

#[test]
fn iptables_rules_imported_answer_probes_alike() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    for (tool, admins, icmp) in [
        ("iptables", "203.0.113.0/24", "icmp"),
        ("ip6tables", "2001:db8:a::/48", "ipv6-icmp"),
    ] {
        let rules: &[&[&str]] = &[
            &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            &[
                "-A",
                "INPUT",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
            &["-A", "INPUT", "-p", icmp, "-j", "ACCEPT"],
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--dports",
                "80,443,873",
                "-j",
                "ACCEPT",
            ],
            &[
                "-A", "INPUT", "-s", admins, "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
            ],
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--syn",
                "-m",
                "limit",
                "--limit",
                "50/s",
                "--dport",
                "30000:30010",
                "-j",
                "ACCEPT",
            ],
            &["-P", "INPUT", "DROP"],
        ];
        for rule in rules {
            bed.server.run_ok(tool, rule).expect(tool);
        }
    }
    let reported = compare(
        &bed,
        "iptables",
        ("sh", &["-c", "iptables-save; ip6tables-save"]),
        &[
            ("iptables", &["-P", "INPUT", "ACCEPT"]),
            ("iptables", &["-F", "INPUT"]),
            ("ip6tables", &["-P", "INPUT", "ACCEPT"]),
            ("ip6tables", &["-F", "INPUT"]),
        ],
    );
    assert!(reported.contains("rate limit"), "{reported}");
}

#[test]
fn nft_rules_imported_answer_probes_alike() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let commands: &[&[&str]] = &[
        &["add", "table", "inet", "mirror"],
        &[
            "add",
            "chain",
            "inet",
            "mirror",
            "input",
            "{ type filter hook input priority 0; policy drop; }",
        ],
        &[
            "add",
            "set",
            "inet",
            "mirror",
            "admins",
            "{ type ipv4_addr; flags interval; }",
        ],
        &[
            "add",
            "element",
            "inet",
            "mirror",
            "admins",
            "{ 203.0.113.0/24 }",
        ],
        &[
            "add",
            "rule",
            "inet",
            "mirror",
            "input",
            "ct",
            "state",
            "established,related",
            "accept",
        ],
        &[
            "add", "rule", "inet", "mirror", "input", "iifname", "lo", "accept",
        ],
        &[
            "add",
            "rule",
            "inet",
            "mirror",
            "input",
            "meta",
            "l4proto",
            "{ icmp, ipv6-icmp }",
            "accept",
        ],
        &[
            "add",
            "rule",
            "inet",
            "mirror",
            "input",
            "tcp",
            "dport",
            "{ 80, 443, 873 }",
            "accept",
        ],
        &[
            "add", "rule", "inet", "mirror", "input", "ip", "saddr", "@admins", "tcp", "dport",
            "22", "accept",
        ],
        &[
            "add",
            "rule",
            "inet",
            "mirror",
            "input",
            "ip6",
            "saddr",
            "2001:db8:a::/48",
            "tcp",
            "dport",
            "22",
            "accept",
        ],
        &[
            "add",
            "rule",
            "inet",
            "mirror",
            "input",
            "tcp",
            "dport",
            "30000-30010",
            "limit",
            "rate",
            "50/second",
            "accept",
        ],
    ];
    for args in commands {
        bed.server.run_ok("nft", args).expect("nft");
    }
    let reported = compare(
        &bed,
        "nft",
        ("nft", &["list", "ruleset"]),
        &[("nft", &["delete", "table", "inet", "mirror"])],
    );
    assert!(reported.contains("rate limit"), "{reported}");
}
