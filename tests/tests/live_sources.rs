//! `mirror-xdp source` in the veth testbed: live denies and allows take effect at once,
//! TTLs run out in the kernel without any command, entries survive detach + attach, and
//! lists of 10,000 entries apply in seconds, all or nothing.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::Write;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{Run, assert_exit, attach_policy, cli_bin, list_json, run, run_ok};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::{assert_blocked, assert_open, tcp_probe};
use mirror_xdp_tests::testbed::*;
use serde_json::Value;

const PORT: u16 = 8080;

/// Port 8080 open to all, except the admin client's address, which the policy denies.
const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [8080]

[sources]
deny = ["203.0.113.10"]
"#;

/// The entries of `source list --json`.
fn list(bed: &Testbed) -> Vec<Value> {
    list_json(bed, "source", "sources")
}

fn live_entries(bed: &Testbed) -> Vec<Value> {
    list(bed)
        .into_iter()
        .filter(|e| e["origin"] == "live")
        .collect()
}

fn entry<'a>(entries: &'a [Value], prefix: &str, origin: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["prefix"] == prefix && e["origin"] == origin)
}

/// Runs the CLI with `input` on its standard input; returns the run and how long it took.
fn run_with_stdin(bed: &Testbed, args: &[&str], input: &str) -> (Run, Duration) {
    let started = Instant::now();
    let mut child = bed
        .cli_command(&cli_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mirror-xdp");
    // The CLI reads all of standard input before it answers, so writing first is safe.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("writing stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("waiting for mirror-xdp");
    (out.into(), started.elapsed())
}

#[test]
fn deny_takes_effect_at_once_counts_hits_and_goes_away() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    attach_policy(&bed, POLICY);
    let client = IpAddr::from(CLIENT_V4);
    let prefix = format!("{CLIENT_V4}/32");
    assert_open(&bed, client, PORT, "before any live entry");

    run_ok(&bed, &["source", "deny", &prefix]);
    assert_blocked(&bed, client, PORT, "right after `source deny`");
    let entries = list(&bed);
    let live = entry(&entries, &prefix, "live").expect("the live deny is listed");
    assert_eq!(live["action"], "deny");
    assert_eq!(live["expires"], Value::Null);
    assert!(live["hits"].as_u64().unwrap_or(0) > 0, "no hits: {live}");
    let policy = entry(&entries, "203.0.113.10/32", "policy").expect("policy entry listed");
    assert_eq!(policy["action"], "deny");
    assert_eq!(policy["hits"], Value::Null);
    let human = run_ok(&bed, &["source", "list"]);
    assert!(human.stdout.contains(&prefix), "{human:?}");

    run_ok(&bed, &["source", "remove", &prefix]);
    assert_open(&bed, client, PORT, "after `source remove`");
    assert_exit(
        &run(&bed, &["source", "remove", &prefix]),
        2,
        "not a live entry",
    );
    assert_exit(
        &run(&bed, &["source", "remove", "203.0.113.10"]),
        2,
        "policy file",
    );

    // Bad input changes nothing and says why.
    assert_exit(
        &run(&bed, &["source", "deny", "198.51.100.2/24"]),
        2,
        "did you mean 198.51.100.0/24",
    );
    assert_exit(
        &run(&bed, &["source", "deny", &prefix, "--ttl", "0"]),
        2,
        "zero",
    );
    assert_exit(
        &run(&bed, &["source", "deny", &prefix, "--ttl", "1h30"]),
        2,
        "not a duration",
    );
    assert!(live_entries(&bed).is_empty());
}

#[test]
fn a_ttl_runs_out_in_the_kernel_without_any_command() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    attach_policy(&bed, POLICY);
    let client = IpAddr::from(CLIENT_V4);
    let prefix = format!("{CLIENT_V4}/32");

    run_ok(&bed, &["source", "deny", &prefix, "--ttl", "2s"]);
    let added = Instant::now();
    assert_blocked(&bed, client, PORT, "within the TTL");
    let live = live_entries(&bed);
    assert!(live[0]["expires"].as_u64().is_some(), "{live:?}");
    // The expiry is rounded up to a whole second: open again after 2-3 s.
    let deadline = added + Duration::from_secs(6);
    let reopened = loop {
        if tcp_probe(&bed.client, client, PORT).is_open() {
            break added.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "still blocked 6 s after a 2 s TTL"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("2 s TTL: open again after {reopened:?}");
    assert!(reopened >= Duration::from_millis(1500), "{reopened:?}");
    // The next command prunes it from the list.
    assert!(live_entries(&bed).is_empty());
}

#[test]
fn a_live_allow_wins_over_the_policy_deny_and_a_live_deny() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    attach_policy(&bed, POLICY);
    let admin = IpAddr::from(ADMIN_V4);
    assert_blocked(&bed, admin, PORT, "denied by the policy");
    run_ok(&bed, &["source", "allow", "203.0.113.10"]);
    assert_open(&bed, admin, PORT, "live allow of a policy-denied source");
    run_ok(&bed, &["source", "deny", "203.0.113.0/24"]);
    assert_open(&bed, admin, PORT, "live allow and live deny");
    run_ok(&bed, &["source", "remove", "203.0.113.10"]);
    assert_blocked(&bed, admin, PORT, "after removing the allow");
}

#[test]
fn live_entries_survive_detach_and_attach() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    let client = IpAddr::from(CLIENT_V4);
    let prefix = format!("{CLIENT_V4}/32");
    assert_exit(
        &run(&bed, &["source", "deny", &prefix]),
        1,
        "nothing is attached",
    );
    let policy = attach_policy(&bed, POLICY);
    run_ok(&bed, &["source", "deny", &prefix]);
    assert_blocked(&bed, client, PORT, "live deny");
    run_ok(&bed, &["detach"]);
    assert_open(&bed, client, PORT, "detached");
    let policy = policy.to_str().expect("UTF-8 path");
    run_ok(&bed, &["attach", "--iface", SERVER_IF, "--policy", policy]);
    assert_blocked(&bed, client, PORT, "after attaching again");
    assert!(entry(&list(&bed), &prefix, "live").is_some());

    use std::os::unix::fs::PermissionsExt;
    let file = bed.state_dir().join("live-sources.json");
    let mode = std::fs::metadata(&file)
        .expect("state file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
}

/// 10,000 addresses in 100.64.0.0/10, which the testbed never sends from.
fn bulk_list() -> String {
    let mut text = String::from("# generated\r\n\r\n");
    for i in 0..10_000u32 {
        text.push_str(&format!("100.64.{}.{}\r\n", i / 256, i % 256));
    }
    text
}

#[test]
fn ten_thousand_entries_from_stdin_take_seconds() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    attach_policy(&bed, POLICY);
    let list_text = bulk_list();

    let (r, took) = run_with_stdin(&bed, &["source", "deny", "--file", "-"], &list_text);
    assert_eq!(r.code, Some(0), "{r:?}");
    println!("deny --file - with 10,000 entries: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let started = Instant::now();
    assert_eq!(live_entries(&bed).len(), 10_000);
    println!("list --json of 10,000 entries: {:?}", started.elapsed());
    assert_open(&bed, CLIENT_V4.into(), PORT, "not in the bulk list");
    let started = Instant::now();
    run_ok(&bed, &["source", "deny", &format!("{CLIENT_V4}/32")]);
    println!("one more deny beside 10,000: {:?}", started.elapsed());
    assert_blocked(&bed, CLIENT_V4.into(), PORT, "one more deny beside 10,000");

    let (r, took) = run_with_stdin(&bed, &["source", "remove", "--file", "-"], &list_text);
    assert_eq!(r.code, Some(0), "{r:?}");
    println!("remove --file - with 10,000 entries: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(live_entries(&bed).len(), 1);
}

#[test]
fn a_bad_line_names_its_place_and_applies_nothing() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    attach_policy(&bed, POLICY);
    let path = bed.work_dir().join("block.txt");
    let text = format!("{CLIENT_V4}\n# comment\n10.1.2.3/8\n\nnot-an-address\n");
    std::fs::write(&path, text).expect("writing the list");
    let path = path.to_str().expect("UTF-8 path");
    let r = run(&bed, &["source", "deny", "--file", path]);
    assert_exit(&r, 2, &format!("{path}:3: "));
    assert!(r.stderr.contains(&format!("{path}:5: ")), "{r:?}");
    assert!(live_entries(&bed).is_empty());
    assert_open(&bed, CLIENT_V4.into(), PORT, "nothing applied");

    let (r, _) = run_with_stdin(
        &bed,
        &["source", "deny", "--file", "-"],
        "192.0.2.1\n::1/64\n",
    );
    assert_exit(&r, 2, "<stdin>:2: ");
    assert!(live_entries(&bed).is_empty());
}
