//! The CLI's contract around attaching: exit codes and messages for bad input, a second
//! attach, attach modes (native, skb fallback on a jumbo MTU), non-root users, and detach
//! (all interfaces or one) giving the ports back and leaving no pins.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use mirror_xdp_tests::cli::{
    assert_exit, attach_policy, cli_bin, interfaces, reason, run, run_ok, stats, status,
    try_attach, write_policy,
};
use mirror_xdp_tests::pinned::names;
use mirror_xdp_tests::probe::{ProbeResult, tcp_connect};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, banner};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, assert_enforcing, tcp_sweep};
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [443]
"#;

/// A listed port and an unlisted one, both with a listener.
const OPEN: u16 = 443;
const CLOSED: u16 = 25;

fn assert_nothing_attached(bed: &Testbed, what: &str) {
    let r = run(bed, &["status"]);
    assert_eq!(r.code, Some(1), "{what}: status must fail: {r:?}");
    assert!(r.stderr.contains("nothing is attached"), "{what}: {r:?}");
}

/// Whether the kernel shows an XDP program on the server's `dev` (pins aside).
fn xdp_on(bed: &Testbed, dev: &str) -> bool {
    let out = bed
        .server
        .run_ok("ip", &["link", "show", "dev", dev])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn invalid_policy_is_refused_with_its_position() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    // The bad CIDR is on line 5, column 8.
    let text = "version = 1\n\n[sets]\nadmins = [\"203.0.113.0/24\"]\nbad = [\"198.51.100.0/33\"]\n\n[[ports]]\nproto = \"tcp\"\nports = [80]\n";
    let path = write_policy(&bed, "bad.toml", text);
    let r = try_attach(&bed, &path, &[]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains("bad.toml:5:8:"),
        "position missing: {r:?}"
    );
    assert_nothing_attached(&bed, "after a refused policy");
}

#[test]
fn invalid_limits_are_refused_with_their_position() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let text = format!("{POLICY}\n[limits]\nper_source_pps = 100\nsource_prefix_v4 = 33\n");
    let line = text.lines().count();
    let path = write_policy(&bed, "limits.toml", &text);
    let r = try_attach(&bed, &path, &[]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains(&format!("limits.toml:{line}:")),
        "expected line {line}: {r:?}"
    );
    assert_nothing_attached(&bed, "after refusing a bad limit");
}

#[test]
fn second_attach_fails_and_the_first_stays() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let path = attach_policy(&bed, POLICY);
    let r = try_attach(&bed, &path, &[]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("already attached"), "{r:?}");
    assert_eq!(interfaces(&status(&bed)).len(), 1);
    assert_enforcing(&bed, OPEN, CLOSED, "after a refused second attach");
}

#[test]
fn native_mode_works_on_veth() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let path = write_policy(&bed, "policy.toml", POLICY);
    let r = try_attach(&bed, &path, &["--xdp-mode", "native"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        interfaces(&status(&bed)),
        [(SERVER_IF.to_string(), "native".to_string())]
    );
    assert_enforcing(&bed, OPEN, CLOSED, "native mode");
}

#[test]
fn jumbo_mtu_attaches_in_native_mode() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    // A jumbo link, as on a mirror's back-end network: veth's native XDP takes an MTU above
    // about a page only from a multi-buffer (frags) program.
    for (ns, dev) in [(&bed.server, SERVER_IF), (&bed.client, CLIENT_IF)] {
        ns.run_ok("ip", &["link", "set", dev, "mtu", "9000"])
            .expect("jumbo mtu");
    }
    let path = write_policy(&bed, "policy.toml", POLICY);
    let r = try_attach(&bed, &path, &["--xdp-mode", "native"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        interfaces(&status(&bed)),
        [(SERVER_IF.to_string(), "native".to_string())]
    );
    assert_enforcing(&bed, OPEN, CLOSED, "native mode at MTU 9000");
}

#[test]
fn non_root_is_refused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let out = bed
        .server
        .nsenter_command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cli_bin())
        .arg("status")
        .envs(bed.cli_env())
        .output()
        .expect("running setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("root"), "{stderr}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    // No root or testbed needed: argument parsing fails before anything else.
    let out = Command::new(cli_bin())
        .arg("bogus-subcommand")
        .output()
        .expect("running mirror-xdp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bogus-subcommand"), "{stderr}");
}

#[test]
fn detach_restores_reachability_and_removes_pins() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    attach_policy(&bed, POLICY);
    assert_enforcing(&bed, OPEN, CLOSED, "attached");
    assert!(xdp_on(&bed, SERVER_IF));

    run_ok(&bed, &["detach"]);
    assert!(
        !xdp_on(&bed, SERVER_IF),
        "XDP still on {SERVER_IF} after detach"
    );
    assert_eq!(
        tcp_sweep(&bed.client, CLIENT_V4.into(), &[CLOSED]),
        [(CLOSED, ProbeResult::Open(banner(CLOSED)))],
        "after detach"
    );
    assert_nothing_attached(&bed, "after detach");
    let pins = names(bed.bpffs_dir(), "");
    assert!(
        pins.is_empty(),
        "pins left in {}: {pins:?}",
        bed.bpffs_dir().display()
    );
    let r = run(&bed, &["detach"]);
    assert_eq!(r.code, Some(1), "detach with nothing attached: {r:?}");
}

/// One rule for "not attached" (README, "Command line"): nothing attached, or an interface
/// that is not attached, is an operational failure (exit 1) for `detach` and `audit` alike.
#[test]
fn not_attached_is_an_operational_failure() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    for args in [
        &["detach", "--iface", "mxnope0"][..],
        &["audit", "--iface", SERVER_IF],
    ] {
        let r = run(&bed, args);
        assert_exit(&r, 1, "nothing is attached");
    }
    attach_policy(&bed, POLICY);
    for command in ["detach", "audit"] {
        let r = run(&bed, &[command, "--iface", "mxnope0"]);
        assert_exit(&r, 1, "interface mxnope0 is not attached");
    }
    assert_eq!(interfaces(&status(&bed)).len(), 1, "still attached");
    run_ok(&bed, &["detach"]);
}

#[test]
fn two_interfaces_attach_and_detach_one_at_a_time() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    bed.add_second_link().expect("second link");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let second = IpAddr::from(CLIENT2_V4);
    let dst = SocketAddr::from((SERVER2_V4, CLOSED));
    let closed_via_second = || {
        tcp_connect(&bed.client, second, dst, PROBE_TIMEOUT).expect("probe over the second link")
    };
    assert_eq!(
        closed_via_second(),
        ProbeResult::Open(banner(CLOSED)),
        "before attach"
    );

    let path = write_policy(&bed, "policy.toml", POLICY);
    let policy = path.to_str().unwrap();
    run_ok(
        &bed,
        &[
            "attach", "--iface", SERVER_IF, "--iface", "mxs1", "--policy", policy,
        ],
    );
    let names: Vec<String> = interfaces(&status(&bed)).into_iter().map(|i| i.0).collect();
    assert_eq!(names, [SERVER_IF, "mxs1"]);
    assert_eq!(closed_via_second(), ProbeResult::Timeout, "mxs1 attached");
    assert_enforcing(&bed, OPEN, CLOSED, "mxs0 attached");

    run_ok(&bed, &["detach", "--iface", "mxs1"]);
    let names: Vec<String> = interfaces(&status(&bed)).into_iter().map(|i| i.0).collect();
    assert_eq!(names, [SERVER_IF]);
    assert!(!xdp_on(&bed, "mxs1") && xdp_on(&bed, SERVER_IF));
    assert_eq!(
        closed_via_second(),
        ProbeResult::Open(banner(CLOSED)),
        "mxs1 detached"
    );
    assert_enforcing(&bed, OPEN, CLOSED, "mxs0 still attached");
    let r = run(&bed, &["detach", "--iface", "mxs1"]);
    assert_eq!(r.code, Some(1), "mxs1 is no longer attached: {r:?}");
}

/// `attach --iface` with an enforcer attached adds the interface to it: the same generation
/// and maps (counters go on), the first interface's link untouched; an interface attached
/// already, or another policy, is refused and changes nothing.
#[test]
fn attach_adds_an_interface_to_the_running_enforcer() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    bed.add_second_link().expect("second link");
    let _tcp = TcpListenerSet::start(&bed.server, &[OPEN, CLOSED]).expect("tcp listeners");
    let via_second = |port: u16| {
        let dst = SocketAddr::from((SERVER2_V4, port));
        tcp_connect(&bed.client, CLIENT2_V4.into(), dst, PROBE_TIMEOUT).expect("probe")
    };
    let path = attach_policy(&bed, POLICY);
    let policy = path.to_str().unwrap();
    assert_enforcing(&bed, OPEN, CLOSED, "mxs0 attached");
    let before = status(&bed);

    let r = run_ok(&bed, &["attach", "--iface", SERVER_IF2, "--policy", policy]);
    assert!(
        r.stdout
            .contains("added to the enforcer in force (generation 1)"),
        "{r:?}"
    );
    let after = status(&bed);
    let names: Vec<String> = interfaces(&after).into_iter().map(|i| i.0).collect();
    assert_eq!(names, [SERVER_IF, SERVER_IF2]);
    assert_eq!(
        after["policy"]["generation"],
        before["policy"]["generation"]
    );
    // One program, the first interface's link as it was.
    assert_eq!(after["interfaces"][0], before["interfaces"][0]);
    assert_eq!(
        after["interfaces"][1]["prog_id"],
        before["interfaces"][0]["prog_id"]
    );
    assert_eq!(
        via_second(OPEN),
        ProbeResult::Open(banner(OPEN)),
        "mxs1 added"
    );
    // The same counters: a drop on mxs1 (and only there) counts where mxs0's do.
    let dropped_before = port_closed_drops(&bed);
    assert_eq!(via_second(CLOSED), ProbeResult::Timeout, "mxs1 added");
    assert!(port_closed_drops(&bed) > dropped_before);
    assert_enforcing(&bed, OPEN, CLOSED, "mxs0 after the add");

    let again = run(&bed, &["attach", "--iface", SERVER_IF2, "--policy", policy]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("already attached"), "{again:?}");
    let other = write_policy(&bed, "other.toml", &POLICY.replace("443", "8443"));
    run_ok(&bed, &["detach", "--iface", SERVER_IF2]);
    let r = run(
        &bed,
        &[
            "attach",
            "--iface",
            SERVER_IF2,
            "--policy",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains("adding an interface keeps that policy"),
        "{r:?}"
    );
    assert!(!xdp_on(&bed, SERVER_IF2), "a refused add links nothing");
    assert_eq!(
        via_second(CLOSED),
        ProbeResult::Open(banner(CLOSED)),
        "refused add"
    );
    assert_enforcing(&bed, OPEN, CLOSED, "mxs0 after the refused add");
}

/// Drops of closed ports so far, from `stats --json`.
fn port_closed_drops(bed: &Testbed) -> u64 {
    reason(&stats(bed), "port_closed", "packets")
}

#[test]
fn version_names_the_build_and_status_the_build_in_force() {
    require_root();
    let out = Command::new(cli_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let hash = version
        .lines()
        .find_map(|l| l.strip_prefix("eBPF object: sha256:"))
        .unwrap_or_else(|| panic!("no object hash: {version}"));
    assert!(
        version.lines().any(|l| l.starts_with("commit: ")),
        "{version}"
    );
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    assert_eq!(status(&bed)["ebpf_object"], format!("sha256:{hash}"));
    let text = run_ok(&bed, &["status"]).stdout;
    assert!(
        text.contains(&format!("eBPF object: sha256:{hash} (this binary's)")),
        "{text}"
    );
}

#[test]
fn status_shows_the_kernel_memory_of_every_pinned_map() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    let s = status(&bed);
    let listed: Vec<(String, u64)> = s["kernel_memory"]["maps"]
        .as_array()
        .unwrap_or_else(|| panic!("no kernel_memory.maps: {s}"))
        .iter()
        .map(|m| {
            (
                m["pin"].as_str().unwrap().to_string(),
                m["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    // Every map pin: the shared maps, the generation's and the spare's.
    let mut pins = Vec::new();
    for entry in std::fs::read_dir(bed.bpffs_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            for inner in std::fs::read_dir(entry.path()).unwrap().flatten() {
                let inner = inner.file_name().to_string_lossy().into_owned();
                if inner.starts_with("mx_") {
                    pins.push(format!("{name}/{inner}"));
                }
            }
        } else if name.starts_with("mx_") {
            pins.push(name);
        }
    }
    pins.sort();
    let names: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, pins);
    assert!(pins.iter().any(|p| p.starts_with("spare-")), "{pins:?}");
    // Each as bpftool reads it from the kernel.
    for (pin, bytes) in &listed {
        let out = Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(bed.bpffs_dir().join(pin))
            .output()
            .expect("bpftool");
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
        assert_eq!(info["bytes_memlock"].as_u64(), Some(*bytes), "{pin}");
    }
    let total: u64 = listed.iter().map(|(_, b)| b).sum();
    assert_eq!(s["kernel_memory"]["bytes"].as_u64(), Some(total));
    let text = run_ok(&bed, &["status"]).stdout;
    let mib = format!("{:.1} MiB in {} maps", total as f64 / 1048576.0, pins.len());
    assert!(text.contains(&format!("kernel memory: {mib}")), "{text}");
}
