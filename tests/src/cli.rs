//! Driving the `mirror-xdp` binary from tests: finding it, writing policies, attaching, and
//! reading `status --json` / `stats --json` of a testbed's enforcer.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::testbed::{SERVER_IF, Testbed};
use crate::wait::stretched;

/// The CLI under test: `MIRROR_XDP_BIN` if set, else `mirror-xdp` in the cargo profile
/// folder this test executable was built into (`target/<profile>/deps/<test>` ->
/// `target/<profile>/mirror-xdp`), so `cargo test --release` tests the release build.
pub fn cli_bin() -> PathBuf {
    let bin = match std::env::var_os("MIRROR_XDP_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("path of the test executable");
            let profile = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable lives in target/<profile>/deps");
            profile.join("mirror-xdp")
        }
    };
    assert!(
        bin.is_file(),
        "{} does not exist; build it first: cargo build --release -p mirror-xdp \
         (or point MIRROR_XDP_BIN at it)",
        bin.display()
    );
    bin
}

/// A finished CLI run: exit code (None if killed by a signal) and its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `mirror-xdp ARGS` in the testbed's server namespace with its pin and state dirs.
pub fn run(bed: &Testbed, args: &[&str]) -> Run {
    bed.cli(&cli_bin(), args).into()
}

/// Like [`run`], but panics with the CLI's output unless it exits 0.
pub fn run_ok(bed: &Testbed, args: &[&str]) -> Run {
    let r = run(bed, args);
    assert_eq!(r.code, Some(0), "mirror-xdp {args:?} failed: {r:?}");
    r
}

/// Writes `text` as `name` in the testbed's work dir and returns its path.
pub fn write_policy(bed: &Testbed, name: &str, text: &str) -> PathBuf {
    let path = bed.work_dir().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// `attach --iface mxs0 --policy FILE EXTRA...`, unchecked.
pub fn try_attach(bed: &Testbed, policy: &Path, extra: &[&str]) -> Run {
    let policy = policy.to_str().expect("UTF-8 policy path");
    let mut args = vec!["attach", "--iface", SERVER_IF, "--policy", policy];
    args.extend_from_slice(extra);
    run(bed, &args)
}

/// Writes the policy and attaches it to the server's veth with `--egress-hook hook`; panics
/// unless that works and `status` shows the hook `hook` asks for on this kernel.
pub fn attach_policy_on(bed: &Testbed, text: &str, hook: &str) -> PathBuf {
    let path = write_policy(bed, "policy.toml", text);
    let r = try_attach(bed, &path, &["--egress-hook", hook]);
    assert_eq!(r.code, Some(0), "attach --egress-hook {hook} failed: {r:?}");
    let want = crate::egress_hook::expected(hook, &bed.server, SERVER_IF);
    let doc = status(bed);
    assert_eq!(doc["interfaces"][0]["egress"], want, "{doc}");
    path
}

/// Writes the policy and attaches it to the server's veth; panics unless that works.
pub fn attach_policy(bed: &Testbed, text: &str) -> PathBuf {
    let path = write_policy(bed, "policy.toml", text);
    let r = try_attach(bed, &path, &[]);
    assert_eq!(r.code, Some(0), "attach failed: {r:?}");
    path
}

fn json(bed: &Testbed, command: &str) -> Value {
    let r = run_ok(bed, &[command, "--json"]);
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("`{command} --json` is not JSON ({e}): {}", r.stdout))
}

/// `stats --json` (README, "Command line").
pub fn stats(bed: &Testbed) -> Value {
    json(bed, "stats")
}

/// `status --json`.
pub fn status(bed: &Testbed) -> Value {
    json(bed, "status")
}

/// `policy.generation` of `status --json`; panics if it is missing.
pub fn generation(bed: &Testbed) -> u64 {
    let s = status(bed);
    s["policy"]["generation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no policy.generation in {s:#}"))
}

/// `NOUN list --json` (`port`, `source`): the array under `key` (`ports`, `sources`).
pub fn list_json(bed: &Testbed, noun: &str, key: &str) -> Vec<Value> {
    let r = run_ok(bed, &[noun, "list", "--json"]);
    let doc: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("`{noun} list --json` is not JSON ({e}): {}", r.stdout));
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {doc:#}"))
        .clone()
}

/// Panics unless the run exited with `code` and its stderr contains `needle`.
#[track_caller]
pub fn assert_exit(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, Some(code), "{r:?}");
    assert!(r.stderr.contains(needle), "stderr lacks {needle:?}: {r:?}");
}

/// `reasons.<reason>.<field>` of a stats document; panics if the reason or field is missing,
/// since `stats --json` lists every reason (README, "Command line").
pub fn reason(stats: &Value, reason: &str, field: &str) -> u64 {
    stats["reasons"][reason][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no reasons.{reason}.{field} in {stats:#}"))
}

/// `(pass_packets, drop_packets)` of the `ports` entry for proto/port, if listed.
pub fn port_counts(stats: &Value, proto: &str, port: u16) -> Option<(u64, u64)> {
    stats["ports"].as_array()?.iter().find_map(|p| {
        (p["proto"] == proto && p["port"] == port).then(|| {
            (
                p["pass_packets"].as_u64().unwrap_or(0),
                p["drop_packets"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// (passed, dropped) of a protocol `[[protocols]]` lists, by its name in `stats --json`.
pub fn protocol_counts(stats: &Value, protocol: &str) -> Option<(u64, u64)> {
    stats["protocols"].as_array()?.iter().find_map(|p| {
        (p["protocol"] == protocol).then(|| {
            (
                p["pass_packets"].as_u64().unwrap_or(0),
                p["drop_packets"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// Reads stats until `done` holds or `timeout` passes (veth delivers asynchronously, so the
/// last packets sent may be counted a moment after the sender returns); returns the last.
pub fn stats_when(bed: &Testbed, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + stretched(timeout);
    loop {
        let s = stats(bed);
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interface names and XDP modes of a `status --json` / `stats --json` document.
pub fn interfaces(doc: &Value) -> Vec<(String, String)> {
    doc["interfaces"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap_or_default().to_string(),
                        i["xdp_mode"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
