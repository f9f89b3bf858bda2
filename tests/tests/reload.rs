//! `mirror-xdp reload` in the veth testbed: an invalid policy changes nothing (and is
//! counted); reload times for a small and a 100,000-entry policy; counters survive a
//! reload and exactly one generation stays pinned; a prepared spare generation is used, and
//! a reload without one still works. Under traffic: tests/tests/reload_under_traffic.rs.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{
    attach_policy, generation, port_counts, reason, run, stats_when, status, write_policy,
};
use mirror_xdp_tests::pinned::names;
use mirror_xdp_tests::probe::ProbeResult;
use mirror_xdp_tests::reload::*;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet, banner};
use mirror_xdp_tests::sweep::{assert_enforcing, tcp_probe};
use mirror_xdp_tests::testbed::*;

#[test]
fn invalid_policy_changes_nothing_and_is_counted() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[A_ONLY, B_ONLY]).expect("tcp listeners");
    let a = attach_policy(&bed, POLICY_A);
    assert_enforcing(&bed, A_ONLY, B_ONLY, "attached");
    let before = status(&bed);

    // Would open 9090 if it were valid; the bad CIDR is on line 5, column 8.
    let text = "version = 1\n\n[sets]\nadmins = [\"203.0.113.0/24\"]\nbad = [\"198.51.100.0/33\"]\n\n[[ports]]\nproto = \"tcp\"\nports = [9090]\n";
    let bad = write_policy(&bed, "bad.toml", text);
    let r = reload(&bed, &bad);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("bad.toml:5:8"), "position missing: {r:?}");
    assert!(r.stderr.contains("unchanged"), "no 'unchanged': {r:?}");

    let after = status(&bed);
    assert_eq!(
        after["policy"]["generation"],
        before["policy"]["generation"]
    );
    assert_eq!(after["policy"]["path"], before["policy"]["path"]);
    assert_eq!(
        after["policy"]["path"].as_str().map(Path::new),
        Some(std::path::absolute(&a).unwrap().as_path()),
        "{after:#}"
    );
    assert_eq!(after, before, "status changed after a refused reload");
    assert_enforcing(&bed, A_ONLY, B_ONLY, "after the refused reload");

    let record = state_record(&bed);
    assert_eq!(record["reloads"]["error"], 1, "{record:#}");
    assert_eq!(record["reloads"]["ok"], 0, "{record:#}");
    let generation = before["policy"]["generation"].as_u64().unwrap();
    assert_eq!(
        pinned_generations(&bed),
        [format!("gen-{generation}")],
        "a refused reload leaves no generation behind"
    );
}

#[test]
fn reload_times_for_small_and_large_policies() {
    require_root();
    let test_started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[A_ONLY]).expect("tcp listeners");

    // Ten rules, no source lists.
    let mut small = String::from("version = 1\n");
    for port in 8080..8085 {
        small.push_str(&format!("\n[[ports]]\nproto = \"tcp\"\nports = [{port}]\n"));
    }
    for port in 5140..5145 {
        small.push_str(&format!("\n[[ports]]\nproto = \"udp\"\nports = [{port}]\n"));
    }
    // The same rules and a deny set file of 100,000 prefixes, one of them the admin client
    // (so the big policy being in force is visible).
    write_deny_file(&bed, "deny-100k.txt", 99_999, &[&format!("{ADMIN_V4}/32")]);
    let big = format!("{small}\n[sources]\ndeny = [{{ file = \"deny-100k.txt\" }}]\n");
    let small = attach_policy(&bed, &small);
    let big = write_policy(&bed, "big.toml", &big);

    let (mut small_ms, mut big_ms) = (Vec::new(), Vec::new());
    let (mut small_wall, mut big_wall) = (Vec::new(), Vec::new());
    for round in 1..=5 {
        let (ms, wall) = reload_ok(&bed, &big);
        big_ms.push(ms);
        big_wall.push(wall);
        assert_eq!(
            tcp_probe(&bed.client, ADMIN_V4.into(), A_ONLY),
            ProbeResult::Timeout,
            "round {round}: the 100k policy denies the admin client"
        );
        let (ms, wall) = reload_ok(&bed, &small);
        small_ms.push(ms);
        small_wall.push(wall);
        assert_eq!(
            tcp_probe(&bed.client, ADMIN_V4.into(), A_ONLY),
            ProbeResult::Open(banner(A_ONLY)),
            "round {round}: the 10-rule policy lets the admin client in"
        );
    }
    for (what, ms, wall) in [
        ("10-rule policy", &mut small_ms, &small_wall),
        ("100,000-entry policy", &mut big_ms, &big_wall),
    ] {
        let (med, min, max) = spread(ms);
        let (wmed, wmin, wmax) = spread_ms(wall);
        eprintln!(
            "reload of the {what}, 5 runs: CLI-reported median {med} ms, min {min} ms, max {max} ms; \
             wall median {wmed} ms, min {wmin} ms, max {wmax} ms"
        );
    }
    eprintln!("reload times: test took {:?}", test_started.elapsed());
}

#[test]
fn reload_keeps_counters_and_one_generation() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO_PORT]).expect("udp echo");
    write_deny_file(&bed, "deny-10k.txt", 10_000, &[]);
    let a = attach_policy(&bed, POLICY_A);
    let b = write_policy(&bed, "b.toml", POLICY_B);
    let g0 = generation(&bed);
    assert_eq!(
        pinned_generations(&bed),
        [format!("gen-{g0}")],
        "after attach"
    );

    // IPv4 UDP only, so the `allowed` counter holds exactly the datagrams echoed here.
    let socket = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, 0)))
        .expect("client socket");
    socket
        .connect((SERVER_V4, ECHO_PORT))
        .expect("connecting to the echo port");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let echo_batch = |n: u64| {
        let mut buf = [0u8; 64];
        for i in 0..n {
            let payload = format!("counted {i}");
            socket.send(payload.as_bytes()).expect("send");
            match socket.recv(&mut buf) {
                Ok(len) => assert_eq!(&buf[..len], payload.as_bytes()),
                Err(e) => panic!("datagram {i} not echoed: {e}"),
            }
        }
    };
    let allowed = |at_least: u64| {
        let s = stats_when(&bed, Duration::from_secs(3), |s| {
            reason(s, "allowed", "packets") >= at_least
        });
        (
            reason(&s, "allowed", "packets"),
            port_counts(&s, "udp", ECHO_PORT),
        )
    };

    const BATCH: u64 = 50;
    echo_batch(BATCH);
    assert_eq!(
        allowed(BATCH),
        (BATCH, Some((BATCH, 0))),
        "before any reload"
    );

    let mut expected = BATCH;
    for (k, policy) in [&b, &a, &b].into_iter().enumerate() {
        let k = k as u64 + 1;
        reload_ok(&bed, policy);
        assert_eq!(generation(&bed), g0 + k, "after reload {k}");
        assert_eq!(
            pinned_generations(&bed),
            [format!("gen-{}", g0 + k)],
            "after reload {k}"
        );
        assert_eq!(
            allowed(expected),
            (expected, Some((expected, 0))),
            "reload {k} kept the counters"
        );
        echo_batch(BATCH);
        expected += BATCH;
        assert_eq!(
            allowed(expected),
            (expected, Some((expected, 0))),
            "counting goes on after reload {k}"
        );
    }
    let record = state_record(&bed);
    assert_eq!(record["reloads"]["ok"], 3, "{record:#}");
    assert_eq!(record["reloads"]["error"], 0, "{record:#}");
}

/// The spare folders (`spare-N-BUILD`) in the testbed's pin dir (if any), sorted.
fn spares(bed: &Testbed) -> Vec<String> {
    names(bed.bpffs_dir(), "spare-")
}

#[test]
fn a_spare_generation_is_used_and_a_reload_without_one_still_works() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[A_ONLY, B_ONLY]).expect("tcp listeners");
    write_deny_file(&bed, "deny-10k.txt", 10_000, &[]);
    let a = attach_policy(&bed, POLICY_A);
    let b = write_policy(&bed, "b.toml", POLICY_B);
    let spare = |bed: &Testbed, generation: u64| {
        let found = spares(bed);
        assert_eq!(found.len(), 1, "one spare: {found:?}");
        assert!(
            found[0].starts_with(&format!("spare-{generation}-")),
            "{found:?}"
        );
        bed.bpffs_dir().join(&found[0])
    };
    let first = spare(&bed, 2);

    // Taken: it becomes generation 2, and a spare for generation 3 is made.
    let (ms, wall) = reload_ok(&bed, &b);
    assert!(!first.exists(), "the spare became the new generation");
    assert_eq!(pinned_generations(&bed), ["gen-2"]);
    assert_enforcing(&bed, B_ONLY, A_ONLY, "policy B from the spare");
    eprintln!("reload from a spare: in force after {ms} ms, command {wall:?}");
    let second = spare(&bed, 3);

    // Gone (removed by hand): the reload loads and verifies its own programs.
    for pin in std::fs::read_dir(&second).expect("spare folder").flatten() {
        std::fs::remove_file(pin.path()).expect("removing a spare pin");
    }
    std::fs::remove_dir(&second).expect("removing the spare folder");
    let (ms, wall) = reload_ok(&bed, &a);
    assert_eq!(pinned_generations(&bed), ["gen-3"]);
    assert_enforcing(&bed, A_ONLY, B_ONLY, "policy A without a spare");
    eprintln!("reload without a spare: in force after {ms} ms, command {wall:?}");
    spare(&bed, 4);

    let r = run(&bed, &["detach"]);
    assert_eq!(r.code, Some(0), "detach: {r:?}");
    assert!(spares(&bed).is_empty(), "detach removes the spare");
}

/// `diff` is a dry run of `reload`: it shows what the edited file would change against the
/// policy in force (exit 1), changes nothing, and `reload` prints the same summary.
#[test]
fn diff_shows_what_a_reload_changes_and_reload_prints_the_same() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[A_ONLY, B_ONLY]).expect("tcp listeners");
    let policy = attach_policy(&bed, POLICY_A);
    let unchanged = run(&bed, &["diff"]);
    assert_eq!(unchanged.code, Some(0), "{unchanged:?}");
    assert!(unchanged.stdout.contains("no change"), "{unchanged:?}");

    // Opens 9090 and closes 8080.
    let edited = POLICY_A.replace("ports = [8080]", "ports = [9090]");
    std::fs::write(&policy, &edited).expect("edit the policy");
    let before = generation(&bed);
    let shown = run(&bed, &["diff"]);
    assert_eq!(shown.code, Some(1), "{shown:?}");
    let expected = ["- 8080/tcp closed", "+ 9090/tcp opened to any source"];
    for line in expected {
        assert!(shown.stdout.contains(line), "{line:?} missing: {shown:?}");
    }
    assert!(shown.stderr.contains("2 change(s)"), "{shown:?}");
    assert_eq!(generation(&bed), before, "diff changed nothing");
    assert_enforcing(&bed, A_ONLY, B_ONLY, "after diff");
    println!("diff output:\n{}", shown.stdout);

    let bad = write_policy(
        &bed,
        "bad.toml",
        "version = 1\n[[ports]]\nproto = \"tcp\"\n",
    );
    let r = run(&bed, &["diff", "--policy", bad.to_str().expect("UTF-8")]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("bad.toml"), "{r:?}");

    let r = reload(&bed, &policy);
    assert_eq!(r.code, Some(0), "{r:?}");
    for line in expected {
        assert!(
            r.stdout.contains(line),
            "{line:?} missing from the reload: {r:?}"
        );
    }
    println!("reload output:\n{}", r.stdout);
    assert_enforcing(&bed, B_ONLY, A_ONLY, "after the reload");
    let r = run(&bed, &["diff"]);
    assert_eq!(r.code, Some(0), "in force now: {r:?}");
}
