//! Crash safety with injected faults (`MIRROR_XDP_FAULT`, see `mirror-xdp/src/fault.rs`):
//! `attach`, `reload`, `detach` and `run` adopting are killed with SIGKILL at every step. Real
//! traffic then shows that the interface enforces the old policy or the new one entirely
//! (never none, never a mix), and the next command recovers: it succeeds and leaves no pin
//! of a dead generation, no half-built generation and no pending state behind.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mirror_xdp::fault;
use mirror_xdp_tests::cli::{Run, cli_bin, root_or_skip, run, run_ok, status, write_policy};
use mirror_xdp_tests::pinned::names;
use mirror_xdp_tests::probe::UdpResult;
use mirror_xdp_tests::servers::UdpEchoSet;
use mirror_xdp_tests::sweep::{parallel, udp_probe_within};
use mirror_xdp_tests::testbed::*;

/// Open in policy A only, and in policy B only; both have UDP echo listeners.
const A_PORT: u16 = 7001;
const B_PORT: u16 = 7002;
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// SYN cookies make attach and detach change a sysctl too, so its steps are covered.
fn policy(port: u16) -> String {
    format!(
        "version = 1\n\n[limits]\nglobal_syn_rate = 100000\nsyn_cookies = true\n\n\
         [[ports]]\nproto = \"udp\"\nports = [{port}]\n"
    )
}

/// What the interface enforces, as traffic shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InForce {
    /// Both ports answer: no policy judges.
    Nothing,
    /// A answers, B is dropped.
    PolicyA,
    /// B answers, A is dropped.
    PolicyB,
    /// Neither answers: no consistent state of any command.
    Neither,
}

fn in_force(bed: &Testbed) -> InForce {
    let answered = parallel(&[A_PORT, B_PORT], |&port| {
        match udp_probe_within(&bed.client, CLIENT_V4.into(), port, PROBE_TIMEOUT) {
            UdpResult::Answered => true,
            UdpResult::NoAnswer => false,
            UdpResult::Refused => panic!("probing udp/{port}: refused"),
        }
    });
    match (answered[0], answered[1]) {
        (true, true) => InForce::Nothing,
        (true, false) => InForce::PolicyA,
        (false, true) => InForce::PolicyB,
        (false, false) => InForce::Neither,
    }
}

/// Runs the CLI with `MIRROR_XDP_FAULT=step` and asserts that it died of SIGKILL there.
fn crash(bed: &Testbed, step: &str, args: &[&str]) {
    let out: Output = bed
        .cli_command(&cli_bin())
        .env(fault::ENV, step)
        .args(args)
        .output()
        .expect("starting mirror-xdp");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{args:?} with {step}: not killed at the step: {:?}",
        Run::from(out)
    );
}

fn attach_args(policy: &Path) -> Vec<&str> {
    vec![
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        policy.to_str().expect("UTF-8 path"),
    ]
}

fn syncookies(bed: &Testbed) -> String {
    bed.server.sysctl("net.ipv4.tcp_syncookies")
}

/// An attached enforcer with nothing left over: one generation (the record's), two links,
/// no pending state.
fn assert_clean_attached(bed: &Testbed, what: &str) {
    let generation = status(bed)["policy"]["generation"]
        .as_u64()
        .expect("generation in status");
    let pins = names(bed.bpffs_dir(), "");
    let generations: Vec<&String> = pins.iter().filter(|n| n.starts_with("gen-")).collect();
    assert_eq!(
        generations,
        [&format!("gen-{generation}")],
        "{what}: {pins:?}"
    );
    let links: Vec<&String> = pins.iter().filter(|n| n.starts_with("link_")).collect();
    assert_eq!(
        links,
        [
            &format!("link_egress_{SERVER_IF}"),
            &format!("link_xdp_{SERVER_IF}")
        ],
        "{what}"
    );
    let program_pins = names(&bed.bpffs_dir().join(format!("gen-{generation}")), "");
    assert!(
        program_pins.contains(&"prog_xdp".to_string()),
        "{what}: {program_pins:?}"
    );
    assert!(
        !bed.state_dir().join("pending").exists(),
        "{what}: pending left"
    );
}

/// Nothing attached, nothing left: no pins, no state, the sysctl as it was.
fn assert_clean_detached(bed: &Testbed, sysctl_before: &str, what: &str) {
    assert_eq!(names(bed.bpffs_dir(), ""), Vec::<String>::new(), "{what}");
    let state = names(bed.state_dir(), "");
    assert!(
        !state.contains(&"state.json".to_string()) && !state.contains(&"pending".to_string()),
        "{what}: {state:?}"
    );
    assert_eq!(syncookies(bed), sysctl_before, "{what}: tcp_syncookies");
    assert_eq!(in_force(bed), InForce::Nothing, "{what}");
}

fn stderr_has(r: &Run, text: &str, what: &str) {
    assert!(r.stderr.contains(text), "{what}: no {text:?} in {r:?}");
}

#[test]
fn attach_killed_at_each_step_enforces_nothing_or_all_and_attach_recovers() {
    if !root_or_skip() {
        return;
    }
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let sysctl_before = syncookies(&bed);
    let linked_from = fault::ATTACH
        .iter()
        .position(|s| *s == "attach:xdp-linked")
        .expect("step");
    for (i, step) in fault::ATTACH.iter().enumerate() {
        crash(&bed, step, &attach_args(&a));
        // Before the XDP link nothing was attached before (the old state); from it on, the
        // whole policy.
        let want = if i < linked_from {
            InForce::Nothing
        } else {
            InForce::PolicyA
        };
        assert_eq!(in_force(&bed), want, "after a crash at {step}");
        let last = i + 1 == fault::ATTACH.len();
        if last {
            // The state file is written: the attach is complete.
            run_ok(&bed, &["status"]);
        } else {
            if i >= linked_from {
                let r = run(&bed, &["status"]);
                assert_eq!(r.code, Some(1), "status after {step}: {r:?}");
                stderr_has(&r, "an attach did not finish", step);
            }
            let r = run(&bed, &attach_args(&a));
            assert_eq!(r.code, Some(0), "attach after a crash at {step}: {r:?}");
            if i > 0 {
                stderr_has(&r, "note: ", step);
            }
        }
        assert_eq!(in_force(&bed), InForce::PolicyA, "recovered from {step}");
        assert_clean_attached(&bed, step);
        run_ok(&bed, &["detach"]);
        assert_clean_detached(&bed, &sysctl_before, step);
    }
}

#[test]
fn reload_killed_at_each_step_keeps_one_policy_whole_and_the_next_command_recovers() {
    if !root_or_skip() {
        return;
    }
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let b = write_policy(&bed, "b.toml", &policy(B_PORT));
    run_ok(&bed, &attach_args(&a));
    let swapped_from = fault::RELOAD
        .iter()
        .position(|s| *s == "reload:xdp-swapped")
        .expect("step");
    let split = fault::RELOAD
        .iter()
        .position(|s| *s == "reload:egress-swapped")
        .expect("step");
    let (mut old, mut new) = ((&a, InForce::PolicyA), (&b, InForce::PolicyB));
    for (i, step) in fault::RELOAD.iter().enumerate() {
        let generation = status(&bed)["policy"]["generation"].as_u64().unwrap();
        let target = new.0.to_str().unwrap();
        crash(&bed, step, &["reload", "--policy", target]);
        // XDP judges; until its link is swapped, the old policy does, entirely.
        let want = if i < swapped_from { old.1 } else { new.1 };
        assert_eq!(in_force(&bed), want, "after a crash at {step}");
        // The next command finishes the swap once it has begun (the egress link is the
        // first), or throws the half-built generation away.
        let finished = i >= split;
        let recovering = if i % 2 == 0 {
            run(&bed, &["status"])
        } else {
            run(&bed, &["reload", "--policy", target])
        };
        assert_eq!(recovering.code, Some(0), "after {step}: {recovering:?}");
        if finished && i + 1 < fault::RELOAD.len() {
            stderr_has(&recovering, "did not finish", step);
        }
        let reloaded = i % 2 == 1;
        let want = if finished || reloaded { new.1 } else { old.1 };
        assert_eq!(in_force(&bed), want, "recovered from {step}");
        let now = status(&bed)["policy"]["generation"].as_u64().unwrap();
        let expected = generation + u64::from(finished) + u64::from(reloaded);
        assert_eq!(now, expected, "generation after {step}");
        assert_clean_attached(&bed, step);
        if finished || reloaded {
            std::mem::swap(&mut old, &mut new);
        }
    }
    run_ok(&bed, &["detach"]);
}

#[test]
fn detach_killed_at_each_step_leaves_the_policy_or_nothing_and_is_finished_later() {
    if !root_or_skip() {
        return;
    }
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let sysctl_before = syncookies(&bed);
    for (i, step) in fault::DETACH.iter().enumerate() {
        run_ok(&bed, &attach_args(&a));
        assert_eq!(in_force(&bed), InForce::PolicyA, "attached before {step}");
        crash(&bed, step, &["detach"]);
        // The XDP link goes first: from then on the interface is detached (the new state).
        assert_eq!(in_force(&bed), InForce::Nothing, "after a crash at {step}");
        // Either the next detach finishes it, or the next attach does and then attaches.
        if i % 2 == 0 {
            let r = run_ok(&bed, &["detach"]);
            stderr_has(&r, "did not finish", step);
        } else {
            let r = run_ok(&bed, &attach_args(&a));
            stderr_has(&r, "did not finish", step);
            assert_eq!(in_force(&bed), InForce::PolicyA, "re-attached after {step}");
            assert_clean_attached(&bed, step);
            run_ok(&bed, &["detach"]);
        }
        assert_clean_detached(&bed, &sysctl_before, step);
    }
}

#[test]
fn run_adopting_finishes_a_reload_that_was_killed_half_way() {
    if !root_or_skip() {
        return;
    }
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let b = write_policy(&bed, "b.toml", &policy(B_PORT));
    run_ok(&bed, &attach_args(&a));
    let run_args = |policy: &PathBuf| {
        vec![
            "run".to_string(),
            "--iface".into(),
            SERVER_IF.into(),
            "--policy".into(),
            policy.display().to_string(),
            "--metrics".into(),
            "127.0.0.1:19473".into(),
        ]
    };
    // The daemon adopts by reloading B, and dies after its egress link swap.
    let args = run_args(&b);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crash(&bed, "reload:egress-swapped", &args);
    assert_eq!(in_force(&bed), InForce::PolicyA, "after the crash");

    // Restarted, it finishes that swap, then adopts with its own policy (B again).
    let (mut daemon, log) = bed.spawn_cli(&cli_bin(), &args).expect("starting run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("running (pid")
    {
        daemon.ensure_running().expect("run exited");
        assert!(Instant::now() < deadline, "run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("did not finish"), "{text}");
    assert!(text.contains("adopted the enforcer"), "{text}");
    assert_eq!(in_force(&bed), InForce::PolicyB, "after adopting");
    daemon.stop().expect("stopping run");
    // Generation 1 attached, 2 finished by recovery, 3 the adoption's own reload.
    assert_eq!(status(&bed)["policy"]["generation"], 3);
    assert_clean_attached(&bed, "run");
    run_ok(&bed, &["detach"]);
}
