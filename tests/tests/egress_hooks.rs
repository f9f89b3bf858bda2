//! The egress program's hooks (`attach --egress-hook auto|tcx|tc`): `auto` picks what the
//! kernel accepts (checked against the test's own TCX probe, so the test holds on Linux 6.1
//! too), `status` says which; on the tc hook, attach and detach add and remove exactly our
//! filter (and the clsact qdisc only if attach added it and nothing else uses it), and other
//! tc filters and a clsact qdisc that was there before are left alone.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use mirror_xdp::lifecycle::egress::{TC_HANDLE, TC_PRIORITY};
use mirror_xdp_tests::cli::{run, run_ok, status, try_attach, write_policy};
use mirror_xdp_tests::egress_hook::{egress_filters, expected, our_filters, qdiscs};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = "version = 1\n\n[[ports]]\nproto = \"tcp\"\nports = [22]\n";

/// Someone else's filter: classic BPF through cls_bpf, "drop nothing" (returns 0: the
/// classifier does not match). It needs no module beyond the one the tc hook needs.
fn add_other_filter(bed: &Testbed, pref: u16) {
    let pref = pref.to_string();
    let out = bed.server.run(
        "tc",
        &[
            "filter",
            "add",
            "dev",
            SERVER_IF,
            "egress",
            "pref",
            &pref,
            "bpf",
            "bytecode",
            "1,6 0 0 0,",
        ],
    );
    assert!(out.status.success(), "adding another filter: {out:?}");
}

fn other_filter_lines(bed: &Testbed, pref: u16) -> Vec<String> {
    egress_filters(&bed.server, SERVER_IF)
        .lines()
        .filter(|l| l.contains(&format!("pref {pref} bpf")) && l.contains("bytecode"))
        .map(str::to_string)
        .collect()
}

#[test]
fn auto_takes_what_the_kernel_accepts_and_status_says_so() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    let want = expected("auto", &bed.server, SERVER_IF);
    let r = try_attach(&bed, &policy, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // Said once per interface, with the reason.
    let said: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("egress on {SERVER_IF}: ")))
        .collect();
    assert_eq!(said.len(), 1, "{r:?}");
    match want {
        "tcx" => assert!(said[0].contains("TCX link"), "{said:?}"),
        _ => assert!(said[0].contains("this kernel refused TCX"), "{said:?}"),
    }
    let doc = status(&bed);
    assert_eq!(doc["interfaces"][0]["egress"], want, "{doc}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(doc["kernel"], release.trim(), "{doc}");
    let text = run_ok(&bed, &["status"]).stdout;
    let hook_text = if want == "tcx" {
        "egress: TCX link"
    } else {
        "egress: tc clsact filter"
    };
    assert!(text.contains(hook_text), "{text}");
    assert_eq!(
        our_filters(&bed.server, SERVER_IF).len(),
        usize::from(want == "tc")
    );
    run_ok(&bed, &["detach"]);
}

#[test]
fn tc_hook_leaves_a_clsact_and_filters_it_did_not_add() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    let out = bed
        .server
        .run("tc", &["qdisc", "add", "dev", SERVER_IF, "clsact"]);
    assert!(out.status.success(), "adding clsact: {out:?}");
    add_other_filter(&bed, 5);
    let theirs = other_filter_lines(&bed, 5);
    assert_eq!(
        theirs.len(),
        1,
        "{}",
        egress_filters(&bed.server, SERVER_IF)
    );

    let r = try_attach(&bed, &policy, &["--egress-hook", "tc"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("tc clsact filter"), "{r:?}");
    assert_eq!(status(&bed)["interfaces"][0]["egress"], "tc");
    let ours = our_filters(&bed.server, SERVER_IF);
    assert_eq!(ours.len(), 1, "{}", egress_filters(&bed.server, SERVER_IF));
    assert!(ours[0].contains("direct-action"), "{ours:?}");
    assert_eq!(other_filter_lines(&bed, 5), theirs);

    // A reload replaces the program of the same filter: still one of ours, another id.
    run_ok(
        &bed,
        &["reload", "--policy", policy.to_str().expect("UTF-8 path")],
    );
    let reloaded = our_filters(&bed.server, SERVER_IF);
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_ne!(reloaded, ours, "the program id changes with the reload");
    assert_eq!(other_filter_lines(&bed, 5), theirs);

    run_ok(&bed, &["detach"]);
    assert!(our_filters(&bed.server, SERVER_IF).is_empty());
    assert_eq!(other_filter_lines(&bed, 5), theirs, "their filter stays");
    assert!(
        qdiscs(&bed.server, SERVER_IF).contains("clsact"),
        "their clsact stays"
    );
}

#[test]
fn tc_hook_removes_the_clsact_it_added_unless_another_filter_uses_it() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    assert!(!qdiscs(&bed.server, SERVER_IF).contains("clsact"));

    // Alone on the qdisc it added: detach removes both.
    let r = try_attach(&bed, &policy, &["--egress-hook", "tc"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(qdiscs(&bed.server, SERVER_IF).contains("clsact"));
    assert_eq!(
        status(&bed)["interfaces"][0]["tc_filter"]["clsact_created"],
        true
    );
    run_ok(&bed, &["detach"]);
    assert!(!qdiscs(&bed.server, SERVER_IF).contains("clsact"));
    assert_eq!(egress_filters(&bed.server, SERVER_IF).trim(), "");

    // Someone adds a filter to the qdisc attach added: detach leaves the qdisc and theirs.
    let r = try_attach(&bed, &policy, &["--egress-hook", "tc"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    add_other_filter(&bed, 7);
    let theirs = other_filter_lines(&bed, 7);
    let r = run_ok(&bed, &["detach"]);
    assert!(r.stderr.contains("left the clsact qdisc"), "{r:?}");
    assert!(our_filters(&bed.server, SERVER_IF).is_empty());
    assert_eq!(other_filter_lines(&bed, 7), theirs);
    assert!(qdiscs(&bed.server, SERVER_IF).contains("clsact"));
}

#[test]
fn tc_hook_refuses_a_priority_someone_else_holds_and_changes_nothing() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let policy = write_policy(&bed, "policy.toml", POLICY);
    let out = bed
        .server
        .run("tc", &["qdisc", "add", "dev", SERVER_IF, "clsact"]);
    assert!(out.status.success(), "adding clsact: {out:?}");
    add_other_filter(&bed, TC_PRIORITY);
    let before = egress_filters(&bed.server, SERVER_IF);

    let r = try_attach(&bed, &policy, &["--egress-hook", "tc"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let said = format!("priority {TC_PRIORITY} on {SERVER_IF} is taken");
    assert!(r.stderr.contains(&said), "{r:?}");
    assert_eq!(egress_filters(&bed.server, SERVER_IF), before);
    assert!(!before.contains(&format!("handle {TC_HANDLE:#x}")));
    let r = run(&bed, &["status"]);
    assert_eq!(r.code, Some(1), "nothing attached: {r:?}");
    assert!(
        std::fs::read_dir(bed.bpffs_dir()).map_or(true, |mut d| d.next().is_none()),
        "pins left after a refused attach"
    );
}
