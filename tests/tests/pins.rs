//! Versioned pins (`lifecycle/compat.rs`): a pinned map of another layout version, or
//! of this build's name in another layout, is refused with what to do (exit 1) by every
//! command that would reuse or read it, and the policy in force stays as it was; a policy
//! generation of another version is migrated by a reload.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mirror_xdp_common::map_name;
use mirror_xdp_tests::cli::{Run, attach_policy, run, run_ok, write_policy};
use mirror_xdp_tests::probe::UdpResult;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::UdpEchoSet;
use mirror_xdp_tests::sweep::udp_probe_within;
use mirror_xdp_tests::testbed::*;

const OPEN: u16 = 7101;
const CLOSED: u16 = 7102;

fn policy(port: u16) -> String {
    format!("version = 1\n\n[[ports]]\nproto = \"udp\"\nports = [{port}]\n")
}

fn answered(bed: &Testbed, port: u16) -> bool {
    let timeout = Duration::from_millis(400);
    udp_probe_within(&bed.client, CLIENT_V4.into(), port, timeout) == UdpResult::Answered
}

/// Pins a new map of the given shape at `path` (bpftool; names are at most 15 characters).
fn fake_map(path: &Path, kind: &str, key: u32, value: u32) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let out = Command::new("bpftool")
        .args([
            "map",
            "create",
            path.to_str().unwrap(),
            "type",
            kind,
            "key",
            &key.to_string(),
            "value",
            &value.to_string(),
            "entries",
            "16",
            "name",
            &name[..name.len().min(15)],
        ])
        .output()
        .expect("starting bpftool");
    assert!(out.status.success(), "bpftool map create: {out:?}");
}

fn assert_refused(r: &Run, pin: &str, advice: &str, what: &str) {
    assert_eq!(r.code, Some(1), "{what}: {r:?}");
    assert!(
        r.stderr.contains(pin) && r.stderr.contains(advice),
        "{what}: the message should name {pin} and say {advice:?}: {r:?}"
    );
}

#[test]
fn a_shared_map_of_another_version_or_layout_is_refused_never_reused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, CLOSED]).expect("udp echo");
    attach_policy(&bed, &policy(OPEN));
    let other = write_policy(&bed, "other.toml", &policy(CLOSED));
    let other = other.to_str().unwrap();

    // An older version of the flows map beside this build's.
    let old = bed.bpffs_dir().join("mx_flows_v0");
    fake_map(&old, "hash", 4, 4);
    for args in [&["reload", "--policy", other][..], &["status"], &["stats"]] {
        let r = run(&bed, args);
        assert_refused(&r, "mx_flows_v0", "mirror-xdp detach", &format!("{args:?}"));
        assert!(r.stderr.contains(map_name::FLOWS), "{r:?}");
    }
    assert!(
        answered(&bed, OPEN) && !answered(&bed, CLOSED),
        "policy kept"
    );
    std::fs::remove_file(&old).expect("removing the fake");

    // This build's name, another layout: aya would reuse it as it is.
    let flows = bed.bpffs_dir().join(map_name::FLOWS);
    std::fs::remove_file(&flows).expect("unpinning the flows map");
    fake_map(&flows, "lru_hash", 4, 4);
    for args in [&["reload", "--policy", other][..], &["status"], &["stats"]] {
        let r = run(&bed, args);
        assert_refused(
            &r,
            map_name::FLOWS,
            "does not have the layout",
            &format!("{args:?}"),
        );
    }
    assert!(
        answered(&bed, OPEN) && !answered(&bed, CLOSED),
        "policy kept"
    );
    // The way out the message gives: detach removes every pin of ours, the fake too.
    run_ok(&bed, &["detach"]);
    assert!(!bed.bpffs_dir().exists(), "pins left after detach");
    assert!(answered(&bed, CLOSED), "detached");
}

#[test]
fn a_generation_of_another_version_is_not_read_and_a_reload_migrates_it() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, CLOSED]).expect("udp echo");
    attach_policy(&bed, &policy(OPEN));
    // Generation 1 as an older build would have left it: its config map of version 1.
    let generation = bed.bpffs_dir().join("gen-1");
    std::fs::remove_file(generation.join(map_name::CONFIG)).expect("unpinning the config");
    fake_map(&generation.join("mx_config_v1"), "array", 4, 8);
    for args in [&["status"][..], &["stats"]] {
        let r = run(&bed, args);
        assert_refused(
            &r,
            "mx_config_v1",
            "mirror-xdp reload",
            &format!("{args:?}"),
        );
    }
    assert!(
        answered(&bed, OPEN) && !answered(&bed, CLOSED),
        "policy kept"
    );

    // A reload builds generation 2 in this build's layout and removes generation 1.
    let other = write_policy(&bed, "other.toml", &policy(CLOSED));
    run_ok(&bed, &["reload", "--policy", other.to_str().unwrap()]);
    assert!(!generation.exists(), "generation 1 left");
    let status = run_ok(&bed, &["status"]);
    assert!(status.stdout.contains("generation 2"), "{status:?}");
    assert!(
        answered(&bed, CLOSED) && !answered(&bed, OPEN),
        "migrated policy"
    );
    run_ok(&bed, &["detach"]);
}
