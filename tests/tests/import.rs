//! `mirror-xdp import` against the real tools: a typical mirror guide's rules (HTTP, HTTPS
//! and rsync open, SSH from the admin network, a sync port range, a SYN limit, default
//! drop) built with the real iptables (with an ipset), ufw and nft in the server namespace,
//! probed, dumped, imported; then the firewall flushed, the imported policy attached, and
//! the same probes must get the same open/filtered answers.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

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
        "the SYN limit cannot be translated exactly: {imported:?}"
    );
    attach_policy(bed, &imported.stdout);
    let got = open_ports(bed);
    eprintln!("{format}: import reported\n{}", imported.stderr);
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
    for args in [
        &["create", "admins", "hash:net"][..],
        &["add", "admins", "203.0.113.0/24"],
    ] {
        bed.server.run_ok("ipset", args).expect("ipset");
    }
    for (tool, admins, icmp) in [
        (
            "iptables",
            &["-m", "set", "--match-set", "admins", "src"][..],
            "icmp",
        ),
        ("ip6tables", &["-s", "2001:db8:a::/48"], "ipv6-icmp"),
    ] {
        let ssh = [
            &["-A", "INPUT"][..],
            admins,
            &["-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
        ]
        .concat();
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
            &ssh,
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
        ("sh", &["-c", "ipset save; iptables-save; ip6tables-save"]),
        &[
            ("iptables", &["-P", "INPUT", "ACCEPT"]),
            ("iptables", &["-F", "INPUT"]),
            ("ip6tables", &["-P", "INPUT", "ACCEPT"]),
            ("ip6tables", &["-F", "INPUT"]),
            ("ipset", &["destroy", "admins"]),
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

/// ufw's configuration for one namespace: `ip netns exec` mounts /etc/netns/NAME/X over
/// /etc/X, so ufw there reads and writes copies, never the host's /etc/ufw. Removed on drop.
struct UfwConfig(PathBuf);

impl UfwConfig {
    fn new(ns: &str) -> Self {
        let dir = PathBuf::from("/etc/netns").join(ns);
        let config = UfwConfig(dir.clone());
        std::fs::create_dir_all(dir.join("default")).expect("/etc/netns/NAME");
        let copied = Command::new("cp")
            .args(["-a", "/etc/ufw"])
            .arg(dir.join("ufw"))
            .status()
            .expect("cp");
        assert!(copied.success(), "copying /etc/ufw (is ufw installed?)");
        // No kernel modules to load, no sysctls to set: the namespace's rules are the test.
        let defaults = std::fs::read_to_string("/etc/default/ufw").expect("/etc/default/ufw");
        let defaults: String = defaults
            .lines()
            .filter(|l| !l.starts_with("IPT_MODULES="))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.join("default/ufw"), defaults + "IPT_MODULES=\"\"\n").unwrap();
        std::fs::write(dir.join("ufw/sysctl.conf"), "").unwrap();
        config
    }
}

impl Drop for UfwConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mirror guide's rules made with ufw in the server namespace, then `dump` imported.
fn ufw_rules_imported_answer_probes_alike(dump: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _config = UfwConfig::new(bed.server.name());
    let commands: &[&[&str]] = &[
        &["default", "deny", "incoming"],
        &["allow", "80/tcp"],
        &["allow", "443/tcp"],
        &["allow", "873/tcp"],
        &[
            "allow",
            "from",
            "203.0.113.0/24",
            "to",
            "any",
            "port",
            "22",
            "proto",
            "tcp",
        ],
        &[
            "allow",
            "from",
            "2001:db8:a::/48",
            "to",
            "any",
            "port",
            "22",
            "proto",
            "tcp",
        ],
        &["limit", "30000:30010/tcp"],
        &["--force", "enable"],
    ];
    for args in commands {
        bed.server.run_ok("ufw", args).expect("ufw");
    }
    let reported = compare(
        &bed,
        "ufw",
        ("sh", &["-c", dump]),
        &[("ufw", &["--force", "disable"])],
    );
    assert!(reported.contains("per-source limit"), "{reported}");
}

#[test]
fn ufw_user_rules_imported_answer_probes_alike() {
    ufw_rules_imported_answer_probes_alike("cat /etc/ufw/user.rules /etc/ufw/user6.rules");
}

#[test]
fn ufw_show_added_imported_answers_probes_alike() {
    ufw_rules_imported_answer_probes_alike("ufw show added");
}
