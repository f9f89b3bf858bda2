//! Crash safety with injected faults (`MIRROR_XDP_FAULT`, see
//! `mirror-xdp/src/lifecycle/fault.rs`; the CLI must be built with `--features test-support`,
//! as `cargo xtask test` does): `attach`, `reload` (each step of both of its paths, the spare
//! and the fresh one, chosen deliberately), `detach` and `run` adopting are killed with SIGKILL
//! at every step. Real traffic then shows that the interface enforces the old policy or the new one entirely
//! (never none, never a mix), and the next command recovers: it succeeds and leaves no pin
//! of a dead generation, no half-built generation and no pending state behind. Each matrix
//! runs on both egress hooks: `auto` (TCX where the kernel has it) and the tc clsact filter,
//! whose extra steps (the qdisc, the filter) are killed too; after detach no filter of ours
//! and no qdisc it added is left.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use mirror_xdp::lifecycle::fault;
use mirror_xdp_tests::cli::{Run, cli_bin, generation, run, run_ok, status, write_policy};
use mirror_xdp_tests::egress_hook::{self, HOOKS};
use mirror_xdp_tests::pinned::names;
use mirror_xdp_tests::probe::UdpResult;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::UdpEchoSet;
use mirror_xdp_tests::sweep::{parallel, udp_probe_within};
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::wait_until;

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
    in_force_from(bed, CLIENT_V4.into())
}

/// [`in_force`] over the second link.
fn in_force_on_second(bed: &Testbed) -> InForce {
    in_force_from(bed, CLIENT2_V4.into())
}

fn in_force_from(bed: &Testbed, src: std::net::IpAddr) -> InForce {
    let answered = parallel(&[A_PORT, B_PORT], |&port| {
        match udp_probe_within(&bed.client, src, port, PROBE_TIMEOUT) {
            UdpResult::Answered => true,
            UdpResult::NoAnswer => false,
            UdpResult::Refused => panic!("probing udp/{port} from {src}: refused"),
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

fn attach_args<'a>(policy: &'a Path, hook: &'a str) -> Vec<&'a str> {
    vec![
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        policy.to_str().expect("UTF-8 path"),
        "--egress-hook",
        hook,
    ]
}

/// The steps of `steps` that a command on the egress hook `got` (`tcx` or `tc`) reaches.
fn reached<'a>(steps: &[&'a str], got: &str) -> Vec<&'a str> {
    steps
        .iter()
        .copied()
        .filter(|s| got == "tc" || !fault::TC_ONLY.contains(s))
        .collect()
}

fn syncookies(bed: &Testbed) -> String {
    bed.server.sysctl("net.ipv4.tcp_syncookies")
}

/// An attached enforcer with nothing left over: one generation (the record's), the XDP link
/// and the egress hook `got` (a TCX link, or one tc filter of ours), no pending state.
fn assert_clean_attached(bed: &Testbed, got: &str, what: &str) {
    let doc = status(bed);
    assert_eq!(doc["interfaces"][0]["egress"], got, "{what}: {doc}");
    let generation = doc["policy"]["generation"]
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
    let egress_link = format!("link_egress_{SERVER_IF}");
    let xdp_link = format!("link_xdp_{SERVER_IF}");
    let filters = egress_hook::our_filters(&bed.server, SERVER_IF);
    match got {
        "tc" => {
            assert_eq!(links, [&xdp_link], "{what}");
            assert_eq!(filters.len(), 1, "{what}: our tc filter: {filters:?}");
        }
        _ => {
            assert_eq!(links, [&egress_link, &xdp_link], "{what}");
            assert!(
                filters.is_empty(),
                "{what}: a tc filter on TCX: {filters:?}"
            );
        }
    }
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

/// Nothing attached, nothing left: no pins, no state, no tc filter and no clsact qdisc (the
/// testbed's veth has none of its own), the sysctl as it was.
fn assert_clean_detached(bed: &Testbed, sysctl_before: &str, what: &str) {
    assert_eq!(names(bed.bpffs_dir(), ""), Vec::<String>::new(), "{what}");
    let qdiscs = egress_hook::qdiscs(&bed.server, SERVER_IF);
    assert!(!qdiscs.contains("clsact"), "{what}: {qdiscs}");
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
    attach_killed_at_each_step(HOOKS[0]);
}

#[test]
fn attach_killed_at_each_step_on_the_tc_hook_enforces_nothing_or_all_and_attach_recovers() {
    attach_killed_at_each_step(HOOKS[1]);
}

fn attach_killed_at_each_step(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let sysctl_before = syncookies(&bed);
    let got = egress_hook::expected(hook, &bed.server, SERVER_IF);
    let steps = reached(fault::ATTACH, got);
    let linked_from = steps
        .iter()
        .position(|s| *s == "attach:xdp-linked")
        .expect("step");
    for (i, step) in steps.iter().enumerate() {
        crash(&bed, step, &attach_args(&a, hook));
        let what = &format!("{step} (--egress-hook {hook})");
        // Before the XDP link nothing was attached before (the old state); from it on, the
        // whole policy.
        let want = if i < linked_from {
            InForce::Nothing
        } else {
            InForce::PolicyA
        };
        assert_eq!(in_force(&bed), want, "after a crash at {what}");
        let last = i + 1 == steps.len();
        if last {
            // The state file is written: the attach is complete.
            run_ok(&bed, &["status"]);
        } else {
            if i >= linked_from {
                let r = run(&bed, &["status"]);
                assert_eq!(r.code, Some(1), "status after {what}: {r:?}");
                stderr_has(&r, "an attach did not finish", what);
            }
            let r = run(&bed, &attach_args(&a, hook));
            assert_eq!(r.code, Some(0), "attach after a crash at {what}: {r:?}");
            if i > 0 {
                stderr_has(&r, "note: ", what);
            }
        }
        assert_eq!(in_force(&bed), InForce::PolicyA, "recovered from {what}");
        assert_clean_attached(&bed, got, what);
        run_ok(&bed, &["detach"]);
        assert_clean_detached(&bed, &sysctl_before, what);
    }
}

/// How a reload builds the next generation.
#[derive(Clone, Copy, Debug)]
enum ReloadPath {
    /// From the spare made ahead for it: only its maps are filled.
    Spare,
    /// From nothing: maps and programs are loaded and pinned.
    Fresh,
}

/// Makes the next reload take `path`. Spare: a spare for the next generation must exist; if
/// a crash used it up, a reload to the policy in force (`current`) makes one. Fresh: every
/// spare is removed.
fn choose_path(bed: &Testbed, path: ReloadPath, current: (&Path, InForce)) {
    let spares = |generation: u64| names(bed.bpffs_dir(), &format!("spare-{generation}-"));
    match path {
        ReloadPath::Spare => {
            if spares(generation(bed) + 1).is_empty() {
                run_ok(bed, &["reload", "--policy", current.0.to_str().unwrap()]);
                assert_eq!(in_force(bed), current.1, "reloaded to the policy in force");
            }
            let found = spares(generation(bed) + 1);
            assert_eq!(found.len(), 1, "a spare for the next generation: {found:?}");
        }
        ReloadPath::Fresh => {
            for spare in names(bed.bpffs_dir(), "spare-") {
                let dir = bed.bpffs_dir().join(spare);
                for pin in std::fs::read_dir(&dir).expect("spare folder").flatten() {
                    std::fs::remove_file(pin.path()).expect("removing a spare pin");
                }
                std::fs::remove_dir(&dir).expect("removing a spare folder");
            }
        }
    }
}

#[test]
fn reload_killed_at_each_step_of_both_paths_keeps_one_policy_whole_and_the_next_command_recovers() {
    reload_killed_at_each_step(HOOKS[0]);
}

#[test]
fn reload_killed_at_each_step_on_the_tc_hook_keeps_one_policy_whole_and_the_next_command_recovers()
{
    reload_killed_at_each_step(HOOKS[1]);
}

fn reload_killed_at_each_step(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let b = write_policy(&bed, "b.toml", &policy(B_PORT));
    run_ok(&bed, &attach_args(&a, hook));
    let got = egress_hook::expected(hook, &bed.server, SERVER_IF);
    let (mut old, mut new) = ((&a, InForce::PolicyA), (&b, InForce::PolicyB));
    let paths = [
        (ReloadPath::Spare, fault::RELOAD_SPARE),
        (ReloadPath::Fresh, fault::RELOAD_FRESH),
    ];
    let mut crashes = 0;
    for (path, build_steps) in paths {
        let steps = [build_steps, fault::RELOAD_SWAP].concat();
        for step in steps {
            let what = format!("{step} ({path:?} path, --egress-hook {hook})");
            choose_path(&bed, path, (old.0.as_path(), old.1));
            let before = generation(&bed);
            let target = new.0.to_str().unwrap();
            // Killed there, the reload took this path: its steps are on no other.
            crash(&bed, step, &["reload", "--policy", target]);
            crashes += 1;
            if let ReloadPath::Spare = path {
                let left = names(bed.bpffs_dir(), &format!("spare-{}-", before + 1));
                assert!(left.is_empty(), "{what}: the spare was not taken: {left:?}");
            }
            // XDP judges; until its link is swapped, the old policy does, entirely.
            let swap_step = fault::RELOAD_SWAP.iter().position(|s| *s == step);
            let want = match swap_step {
                Some(s) if s >= 1 => new.1,
                _ => old.1,
            };
            assert_eq!(in_force(&bed), want, "after a crash at {what}");
            // The next command finishes the swap once it has begun (the egress link is the
            // first), or throws the half-built generation away.
            let finished = swap_step.is_some();
            let reloaded = crashes % 2 == 0;
            let recovering = if reloaded {
                run(&bed, &["reload", "--policy", target])
            } else {
                run(&bed, &["status"])
            };
            assert_eq!(recovering.code, Some(0), "after {what}: {recovering:?}");
            if finished && step != "reload:state-written" {
                stderr_has(&recovering, "did not finish", &what);
            }
            let want = if finished || reloaded { new.1 } else { old.1 };
            assert_eq!(in_force(&bed), want, "recovered from {what}");
            let expected = before + u64::from(finished) + u64::from(reloaded);
            assert_eq!(generation(&bed), expected, "generation after {what}");
            assert_clean_attached(&bed, got, &what);
            if finished || reloaded {
                std::mem::swap(&mut old, &mut new);
            }
        }
    }
    run_ok(&bed, &["detach"]);
}

#[test]
fn detach_killed_at_each_step_leaves_the_policy_or_nothing_and_is_finished_later() {
    detach_killed_at_each_step(HOOKS[0]);
}

#[test]
fn detach_killed_at_each_step_on_the_tc_hook_leaves_the_policy_or_nothing_and_is_finished_later() {
    detach_killed_at_each_step(HOOKS[1]);
}

fn detach_killed_at_each_step(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let sysctl_before = syncookies(&bed);
    let got = egress_hook::expected(hook, &bed.server, SERVER_IF);
    for (i, step) in reached(fault::DETACH, got).into_iter().enumerate() {
        let what = &format!("{step} (--egress-hook {hook})");
        run_ok(&bed, &attach_args(&a, hook));
        assert_eq!(in_force(&bed), InForce::PolicyA, "attached before {what}");
        crash(&bed, step, &["detach"]);
        // The XDP link goes first: from then on the interface is detached (the new state).
        assert_eq!(in_force(&bed), InForce::Nothing, "after a crash at {what}");
        // Either the next detach finishes it, or the next attach does and then attaches.
        if i % 2 == 0 {
            let r = run_ok(&bed, &["detach"]);
            stderr_has(&r, "did not finish", what);
        } else {
            let r = run_ok(&bed, &attach_args(&a, hook));
            stderr_has(&r, "did not finish", what);
            assert_eq!(in_force(&bed), InForce::PolicyA, "re-attached after {what}");
            assert_clean_attached(&bed, got, what);
            run_ok(&bed, &["detach"]);
        }
        assert_clean_detached(&bed, &sysctl_before, what);
    }
}

#[test]
fn run_adopting_finishes_a_reload_that_was_killed_half_way() {
    run_adopting_finishes_a_killed_reload(HOOKS[0]);
}

#[test]
fn run_adopting_finishes_a_reload_that_was_killed_half_way_on_the_tc_hook() {
    run_adopting_finishes_a_killed_reload(HOOKS[1]);
}

fn run_adopting_finishes_a_killed_reload(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let b = write_policy(&bed, "b.toml", &policy(B_PORT));
    run_ok(&bed, &attach_args(&a, hook));
    let got = egress_hook::expected(hook, &bed.server, SERVER_IF);
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
    wait_until(Duration::from_secs(10), "run starting", || {
        daemon.ensure_running().expect("run exited");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("running (pid")
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("did not finish"), "{text}");
    assert!(text.contains("adopted the enforcer"), "{text}");
    assert_eq!(in_force(&bed), InForce::PolicyB, "after adopting");
    daemon.stop().expect("stopping run");
    // Generation 1 attached, 2 finished by recovery, 3 the adoption's own reload.
    assert_eq!(status(&bed)["policy"]["generation"], 3);
    assert_clean_attached(&bed, got, "run");
    run_ok(&bed, &["detach"]);
}

#[test]
fn adding_an_interface_killed_at_each_step_leaves_the_first_enforcing_and_is_rolled_back() {
    add_killed_at_each_step(HOOKS[0]);
}

#[test]
fn adding_an_interface_killed_at_each_step_on_the_tc_hook_is_rolled_back() {
    add_killed_at_each_step(HOOKS[1]);
}

/// `attach --iface mxs1` added to the enforcer on mxs0, killed at each step: mxs0 enforces
/// policy A throughout; the next attach rolls the half-done add back and adds mxs1 whole,
/// and `detach --iface mxs1` then leaves nothing of it.
fn add_killed_at_each_step(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    bed.add_second_link().expect("second link");
    let _echo = UdpEchoSet::start(&bed.server, &[A_PORT, B_PORT]).expect("udp echo");
    let a = write_policy(&bed, "a.toml", &policy(A_PORT));
    let got = egress_hook::expected(hook, &bed.server, SERVER_IF2);
    run_ok(&bed, &attach_args(&a, hook));
    let add = {
        let mut args = attach_args(&a, hook);
        args[2] = SERVER_IF2;
        args
    };
    // The add links the egress hook as attach does: on tc, attach's tc steps come with it.
    let mut steps: Vec<&str> = fault::ADD.to_vec();
    if got == "tc" {
        steps.splice(1..1, ["attach:tc-pending-written", "attach:clsact-added"]);
    }
    for step in steps {
        let what = &format!("{step} (--egress-hook {hook})");
        crash(&bed, step, &add);
        assert_eq!(
            in_force(&bed),
            InForce::PolicyA,
            "mxs0 after a crash at {what}"
        );
        if step == "add:state-written" {
            run_ok(&bed, &["status"]);
        } else {
            if step == "add:xdp-linked" {
                let r = run(&bed, &["status"]);
                assert_eq!(r.code, Some(1), "status after {what}: {r:?}");
                stderr_has(&r, "did not finish", what);
            }
            let r = run_ok(&bed, &add);
            stderr_has(&r, "rolled it back", what);
        }
        let doc = status(&bed);
        assert_eq!(doc["interfaces"][1]["name"], SERVER_IF2, "{what}: {doc}");
        assert_eq!(doc["interfaces"][1]["egress"], got, "{what}: {doc}");
        assert_eq!(
            in_force_on_second(&bed),
            InForce::PolicyA,
            "mxs1 added after {what}"
        );
        run_ok(&bed, &["detach", "--iface", SERVER_IF2]);
        let left: Vec<String> = names(bed.bpffs_dir(), "")
            .into_iter()
            .filter(|n| n.ends_with(SERVER_IF2))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        let filters = egress_hook::our_filters(&bed.server, SERVER_IF2);
        assert!(filters.is_empty(), "{what}: {filters:?}");
        assert!(!bed.state_dir().join("pending").exists(), "{what}");
        assert_eq!(
            in_force_on_second(&bed),
            InForce::Nothing,
            "mxs1 detached after {what}"
        );
        assert_eq!(
            in_force(&bed),
            InForce::PolicyA,
            "mxs0 at the end of {what}"
        );
    }
    run_ok(&bed, &["detach"]);
}
