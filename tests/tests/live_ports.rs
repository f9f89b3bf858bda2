//! `mirror-xdp port` in the veth testbed: live rules open and close ports within a second
//! without re-attaching, with or without `--from`, survive reload and detach + attach, are
//! listed with their origin and counted by `stats`, and clashes with the policy are refused.
//! With `--to` a live rule applies to some of the host's addresses only.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{
    Run, assert_exit, attach_policy, generation, list_json, port_counts, reason, run, run_ok,
    stats, write_policy,
};
use mirror_xdp_tests::probe::{UdpResult, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, assert_blocked, assert_open, udp_probe_within};
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::stretched;
use serde_json::{Value, json};

/// Web open to all, SSH for the admin network; nothing on 8081-8083 or 5000.
const POLICY: &str = r#"
version = 1

[sets]
admins = ["203.0.113.0/24"]

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
"#;

const TCP_PORTS: [u16; 5] = [22, 80, 8081, 8082, 8083];

fn client() -> IpAddr {
    CLIENT_V4.into()
}

fn admin() -> IpAddr {
    ADMIN_V4.into()
}

/// Runs a `port` change, checks it exits 0 within a second ([`stretched`] in the VM), and
/// returns its output.
fn change(bed: &Testbed, args: &[&str]) -> Run {
    let started = Instant::now();
    let r = run_ok(bed, args);
    let took = started.elapsed();
    println!("mirror-xdp {}: {took:?}", args.join(" "));
    assert!(
        took < stretched(Duration::from_secs(1)),
        "{args:?} took {took:?}"
    );
    r
}

/// The rules of `port list --json`, without the order.
fn list(bed: &Testbed) -> Vec<Value> {
    list_json(bed, "port", "ports")
}

/// What every test expects once 8081 (any source) and 8082 (admins only) are live.
fn assert_live_rules_in_force(bed: &Testbed, what: &str) {
    assert_open(bed, client(), 8081, what);
    assert_open(bed, admin(), 8082, what);
    assert_blocked(bed, client(), 8082, what);
    assert_open(bed, client(), 80, what);
    assert_blocked(bed, client(), 8083, what);
}

#[test]
fn live_rules_open_at_once_and_survive_reload_and_reattach() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &TCP_PORTS).expect("tcp listeners");
    let policy = attach_policy(&bed, POLICY);
    assert_blocked(&bed, client(), 8081, "before any live rule");

    change(&bed, &["port", "allow", "8081/tcp"]);
    assert_open(&bed, client(), 8081, "right after `port allow 8081/tcp`");
    change(
        &bed,
        &["port", "allow", "8082/tcp", "--from", "203.0.113.0/24"],
    );
    assert_live_rules_in_force(&bed, "after both allows");
    let again = change(&bed, &["port", "allow", "8081/tcp"]);
    assert!(again.stdout.contains("already in place"), "{again:?}");

    // `stats` counts the live port as it counts the policy's.
    let s = stats(&bed);
    let (passed, _) = port_counts(&s, "tcp", 8081).unwrap_or_else(|| panic!("no 8081: {s:#}"));
    assert!(passed > 0, "{s:#}");
    assert!(port_counts(&s, "tcp", 8082).is_some(), "{s:#}");

    let rules = list(&bed);
    for want in [
        json!({"proto": "tcp", "ports": 8081, "from": null, "origin": "live"}),
        json!({"proto": "tcp", "ports": 8082, "from": ["203.0.113.0/24"], "origin": "live"}),
        json!({"proto": "tcp", "ports": 80, "from": null, "origin": "policy"}),
        json!({"proto": "tcp", "ports": 22, "from": ["203.0.113.0/24"], "origin": "policy"}),
    ] {
        assert!(rules.contains(&want), "{want} missing from {rules:#?}");
    }
    assert_eq!(rules.len(), 4, "{rules:#?}");
    let human = run_ok(&bed, &["port", "list"]);
    assert!(human.stdout.contains("live    tcp    8081"), "{human:?}");

    let before = generation(&bed);
    run_ok(&bed, &["reload"]);
    assert_eq!(generation(&bed), before + 1);
    assert_live_rules_in_force(&bed, "after reload");

    run_ok(&bed, &["detach"]);
    assert_open(&bed, client(), 8082, "detached");
    let path = policy.to_str().expect("UTF-8 path");
    run_ok(&bed, &["attach", "--iface", SERVER_IF, "--policy", path]);
    assert_live_rules_in_force(&bed, "after detach + attach");

    change(&bed, &["port", "remove", "8081/tcp"]);
    assert_blocked(&bed, client(), 8081, "after `port remove 8081/tcp`");
    assert!(port_counts(&stats(&bed), "tcp", 8081).is_none());
    assert!(list(&bed).iter().all(|r| r["ports"] != 8081));
    change(&bed, &["port", "remove", "8082/tcp"]);
    assert_blocked(&bed, admin(), 8082, "after `port remove 8082/tcp`");
    // Removing a live rule leaves the policy's ports as they were.
    assert_open(&bed, admin(), 22, "policy port after the removals");
    assert_blocked(&bed, client(), 22, "policy port after the removals");

    use std::os::unix::fs::PermissionsExt;
    let file = bed.state_dir().join("live-ports.json");
    let mode = std::fs::metadata(&file).expect("state file").permissions();
    assert_eq!(mode.mode() & 0o777, 0o600, "{}", file.display());
}

#[test]
fn set_names_ranges_and_udp() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &TCP_PORTS).expect("tcp listeners");
    let _udp = UdpEchoSet::start(&bed.server, &[5000, 5001]).expect("udp echo");
    attach_policy(&bed, POLICY);
    let udp = |port: u16| udp_probe_within(&bed.client, client(), port, PROBE_TIMEOUT);
    assert_eq!(udp(5001), UdpResult::NoAnswer);

    change(&bed, &["port", "allow", "8083/tcp", "--from", "admins"]);
    assert_open(&bed, admin(), 8083, "--from admins");
    assert_blocked(&bed, client(), 8083, "--from admins");
    change(&bed, &["port", "allow", "5000-5001/udp"]);
    assert_eq!(udp(5001), UdpResult::Answered);
    let rules = list(&bed);
    assert!(
        rules.contains(
            &json!({"proto": "udp", "ports": "5000-5001", "from": null, "origin": "live"})
        ),
        "{rules:#?}"
    );
    assert!(
        rules.contains(
            &json!({"proto": "tcp", "ports": 8083, "from": ["admins"], "origin": "live"})
        ),
        "{rules:#?}"
    );
    // A range goes as a whole.
    assert_exit(
        &run(&bed, &["port", "remove", "5001/udp"]),
        2,
        "part of the live rule 5000-5001/udp",
    );
    change(&bed, &["port", "remove", "5000-5001/udp"]);
    assert_eq!(udp(5001), UdpResult::NoAnswer);
    // The admin set, changed in the policy, changes the live rule at the next reload.
    let moved = POLICY.replace("203.0.113.0/24", "198.51.100.0/24");
    write_policy(&bed, "policy.toml", &moved);
    run_ok(&bed, &["reload"]);
    assert_open(&bed, client(), 8083, "admins moved to the client's network");
    assert_blocked(&bed, admin(), 8083, "admins moved to the client's network");
}

#[test]
fn clashes_policy_ports_and_bad_input_are_refused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &TCP_PORTS).expect("tcp listeners");
    assert_exit(
        &run(&bed, &["port", "allow", "8081/tcp"]),
        1,
        "nothing is attached",
    );
    attach_policy(&bed, POLICY);

    assert_exit(
        &run(&bed, &["port", "remove", "80/tcp"]),
        2,
        "comes from the policy file",
    );
    assert_exit(
        &run(&bed, &["port", "allow", "22/tcp"]),
        2,
        "tcp port 22 is in the policy rule at line 11",
    );
    assert_blocked(&bed, client(), 22, "after a refused allow");
    // The same sources as the policy's rule: a harmless duplicate.
    change(&bed, &["port", "allow", "22/tcp", "--from", "admins"]);
    change(&bed, &["port", "remove", "22/tcp"]);
    assert_open(&bed, admin(), 22, "the policy's rule stays");
    assert_blocked(&bed, client(), 22, "the policy's rule stays");

    change(&bed, &["port", "allow", "8082/tcp", "--from", "admins"]);
    assert_exit(
        &run(&bed, &["port", "allow", "8080-8090/tcp"]),
        2,
        "tcp port 8082 is in the live rule 8082/tcp",
    );
    assert_blocked(&bed, client(), 8081, "after a refused allow");
    assert_exit(
        &run(&bed, &["port", "remove", "8081/tcp"]),
        2,
        "8081/tcp is not a live rule",
    );

    for (args, needle) in [
        (vec!["0/tcp"], "port 0 is out of range"),
        (vec!["70000/tcp"], "port 70000 is out of range"),
        (vec!["8090-8080/tcp"], "reversed range"),
        (vec!["8081/icmp"], "unknown protocol 'icmp'"),
        (vec!["8081"], "names no protocol"),
        (
            vec!["8081/tcp", "--from", "10.1.2.3/8"],
            "did you mean 10.0.0.0/8",
        ),
        (vec!["8081/tcp", "--from", "peers"], "unknown set 'peers'"),
    ] {
        let mut full = vec!["port", "allow"];
        full.extend(args);
        assert_exit(&run(&bed, &full), 2, needle);
    }
    let live: Vec<Value> = list(&bed)
        .into_iter()
        .filter(|r| r["origin"] == "live")
        .collect();
    assert_eq!(live.len(), 1, "{live:#?}");

    // A policy edit that clashes with a live rule: the reload is refused, nothing changes,
    // until the live rule goes.
    let before = generation(&bed);
    let clash = format!("{POLICY}\n[[ports]]\nproto = \"tcp\"\nports = [8082]\n");
    write_policy(&bed, "policy.toml", &clash);
    let r = run(&bed, &["reload"]);
    assert_exit(&r, 2, "mirror-xdp port remove 8082/tcp");
    assert_eq!(generation(&bed), before);
    assert_blocked(&bed, client(), 8082, "refused reload");
    change(&bed, &["port", "remove", "8082/tcp"]);
    run_ok(&bed, &["reload"]);
    assert_open(&bed, client(), 8082, "the policy's rule after the reload");
}

/// The file on disk is not the policy in force: a `port remove` after an edit that was
/// not reloaded must close what the policy in force does not list, and `status` and
/// `port list` say the file differs while it does.
#[test]
fn port_commands_judge_by_the_policy_in_force_not_the_edited_file() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[80, 8443]).expect("tcp listeners");
    let policy = attach_policy(&bed, POLICY);
    let in_force = generation(&bed);
    change(&bed, &["port", "allow", "8443/tcp", "--from", "admins"]);
    assert_open(&bed, admin(), 8443, "live rule for the admins");
    assert_blocked(&bed, client(), 8443, "live rule for the admins");

    // 8443 public in the file, not reloaded.
    let edited = POLICY.replace("ports = [80]", "ports = [80, 8443]");
    std::fs::write(&policy, &edited).expect("edit the policy");
    let status = run_ok(&bed, &["status"]);
    assert!(status.stdout.contains("changed on disk"), "{status:?}");
    let removed = change(&bed, &["port", "remove", "8443/tcp"]);
    assert!(
        removed
            .stdout
            .contains("removed live rule 8443/tcp from admins: closed"),
        "{removed:?}"
    );
    assert_blocked(&bed, client(), 8443, "removed, the edit not reloaded");
    assert_blocked(&bed, admin(), 8443, "removed, the edit not reloaded");
    let listed = run_ok(&bed, &["port", "list"]);
    assert!(!listed.stdout.contains("8443"), "{listed:?}");
    assert!(listed.stderr.contains("changed on disk"), "{listed:?}");

    // The edit undone: nothing of 8443 anywhere, and still the same generation.
    std::fs::write(&policy, POLICY).expect("undo the edit");
    assert_blocked(&bed, client(), 8443, "edit undone");
    assert_blocked(&bed, admin(), 8443, "edit undone");
    assert!(!list(&bed).iter().any(|r| r["ports"] == 8443));
    assert_eq!(generation(&bed), in_force);
    let status = run_ok(&bed, &["status"]);
    assert!(!status.stdout.contains("changed on disk"), "{status:?}");

    // A reload of the edited file opens 8443 to all: the file is read when reloading.
    std::fs::write(&policy, &edited).expect("edit again");
    run_ok(&bed, &["reload"]);
    assert_open(&bed, client(), 8443, "reloaded with 8443 public");
}

/// `port allow --to`: the server's public address (198.51.100.1, 2001:db8:1::1) and its
/// admin address (203.0.113.1). The policy opens 80 on the public address only.
const TWO_ADDRESSES: &str = r#"
version = 1

[sets]
admins = ["203.0.113.10", "2001:db8:a::10"]
public = ["198.51.100.1", "2001:db8:1::1"]

[[ports]]
proto = "tcp"
ports = [80]
to = ["public"]
"#;

/// Whether a TCP connect from `src` to `dst`:`port` completes.
fn reaches(bed: &Testbed, src: IpAddr, dst: IpAddr, port: u16) -> bool {
    tcp_connect(&bed.client, src, SocketAddr::new(dst, port), PROBE_TIMEOUT)
        .expect("tcp probe")
        .is_open()
}

#[test]
fn live_rules_with_to_apply_to_their_destinations_only() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[80, 8080]).expect("tcp listeners");
    let (public4, public6) = (IpAddr::from(SERVER_V4), IpAddr::from(SERVER_V6));
    let admin_address = IpAddr::from(SERVER_ADMIN_V4);
    let client6 = IpAddr::from(CLIENT_V6);
    attach_policy(&bed, TWO_ADDRESSES);
    assert!(!reaches(&bed, client(), public4, 8080));

    // 8080 on the public addresses (a set of the policy), both families.
    change(&bed, &["port", "allow", "8080/tcp", "--to", "public"]);
    let in_force = |what: &str| {
        assert!(reaches(&bed, client(), public4, 8080), "{what}");
        assert!(reaches(&bed, client6, public6, 8080), "{what}");
        assert!(!reaches(&bed, client(), admin_address, 8080), "{what}");
        assert!(!reaches(&bed, admin(), admin_address, 8080), "{what}");
        // 80 on the admin address for the admins, next to the policy's public 80.
        assert!(reaches(&bed, admin(), admin_address, 80), "{what}");
        assert!(!reaches(&bed, client(), admin_address, 80), "{what}");
        assert!(reaches(&bed, client(), public4, 80), "{what}");
    };
    change(
        &bed,
        &[
            "port",
            "allow",
            "80/tcp",
            "--from",
            "admins",
            "--to",
            "203.0.113.1",
        ],
    );
    in_force("right after both allows");
    // `explain` names the rule for the destination asked about.
    let explain = |dst: &str| -> Value {
        let args = ["explain", "203.0.113.10", "80/tcp", "--dst", dst, "--json"];
        serde_json::from_str(&run_ok(&bed, &args).stdout).expect("explain --json")
    };
    let by = explain("203.0.113.1");
    assert_eq!(
        (
            &by["reason"],
            &by["decided_by"]["kind"],
            &by["decided_by"]["entry"]
        ),
        (
            &json!("allowed"),
            &json!("live"),
            &json!("80/tcp from admins to 203.0.113.1/32")
        ),
        "{by:#}"
    );
    let by = explain("198.51.100.1");
    assert_eq!(
        (&by["decided_by"]["kind"], &by["decided_by"]["line"]),
        (&json!("rule"), &json!(8)),
        "{by:#}"
    );
    let s = stats(&bed);
    assert!(reason(&s, "source_not_allowed", "packets") > 0, "{s:#}");

    let rules = list(&bed);
    let want =
        json!({"proto": "tcp", "ports": 8080, "from": null, "to": ["public"], "origin": "live"});
    assert!(rules.contains(&want), "{want} missing from {rules:#?}");

    // Addresses the policy's rule for 80 covers take no live rule with other sources.
    let clash = run(
        &bed,
        &[
            "port",
            "allow",
            "80/tcp",
            "--from",
            "admins",
            "--to",
            "198.51.100.0/24",
        ],
    );
    assert_exit(&clash, 2, "for destinations this rule's cover too");
    let host_bits = run(
        &bed,
        &["port", "allow", "8080/tcp", "--to", "198.51.100.1/24"],
    );
    assert_exit(&host_bits, 2, "198.51.100.0/24");

    run_ok(&bed, &["reload"]);
    in_force("after reload");

    // Another destination for 8080 replaces the rule: now the admin address only.
    let moved = change(&bed, &["port", "allow", "8080/tcp", "--to", "203.0.113.1"]);
    assert!(moved.stdout.contains("updated"), "{moved:?}");
    assert!(!reaches(&bed, client(), public4, 8080));
    assert!(reaches(&bed, client(), admin_address, 8080));
    change(&bed, &["port", "remove", "8080/tcp"]);
    assert!(!reaches(&bed, client(), admin_address, 8080));
    change(&bed, &["port", "remove", "80/tcp"]);
    assert!(!reaches(&bed, admin(), admin_address, 80));
    assert!(
        reaches(&bed, client(), public4, 80),
        "the policy's rule stays"
    );
}
