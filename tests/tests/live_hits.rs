//! Live-entry hit counts are exact when several CPUs hit one entry at the same time: the
//! program counts with atomic adds, not a load and a store that lose racing hits (root: BPF
//! test runs, one thread pinned to each CPU).
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::{net::SocketAddr, path::Path, thread};

use aya::programs::{TestRun, TestRunOptions};
use ipnet::IpNet;
use mirror_xdp::{
    lifecycle::lockout::segment,
    live::sources::{Action, Expiry, Hits, LiveSet},
    observe::testrun::{TestProgram, XDP_DROP},
    policy::Policy,
};
use mirror_xdp_common::tcp_flag;
use mirror_xdp_tests::require_root;

const POLICY: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80]
"#;

/// Runs per thread and CPU: millions of hits racing on one entry.
const REPEAT: u32 = 2_000_000;

/// Pins the calling thread to `cpu`, so that the threads' test runs overlap on distinct CPUs.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "pin to CPU {cpu}: {}", std::io::Error::last_os_error());
}

fn check_exact_hits(source: &str, server: &str, entry: &str) {
    require_root();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "needs two CPUs to race hits, found {cpus}");
    let policy = Policy::parse(POLICY, Path::new("live_hits")).expect("valid policy");
    let mut program = TestProgram::load(&policy).expect("load the XDP program");
    let mut set = LiveSet::default();
    let entry: IpNet = entry.parse().expect("prefix");
    set.deny(&[entry], Expiry::Never);
    let flags = set.apply(&mut program.maps).expect("apply the live set");
    let mut config = program.maps.config().expect("config");
    config.flags |= flags;
    program.maps.set_config(&config).expect("config");

    let client: SocketAddr = source.parse().expect("client");
    let server: SocketAddr = server.parse().expect("server");
    let frame = segment(client, server, tcp_flag::SYN);
    let xdp = program.xdp();
    thread::scope(|scope| {
        for cpu in 0..cpus {
            let frame = &frame;
            scope.spawn(move || {
                pin_to(cpu);
                let mut opts = TestRunOptions::new();
                opts.data_in = Some(frame);
                opts.repeat = REPEAT;
                let result = xdp.test_run(opts).expect("test run");
                assert_eq!(result.return_value, XDP_DROP, "a denied source drops");
            });
        }
    });
    let hits = Hits::read(&program.maps).expect("read hits");
    assert_eq!(
        hits.get(Action::Deny, &entry),
        cpus as u64 * REPEAT as u64,
        "hits of {entry} after {cpus} CPUs x {REPEAT} runs"
    );
}

/// The IPv4 tries hold values 4-byte aligned: the count is two 32-bit halves.
#[test]
fn live_deny_hits_are_exact_across_cpus_v4() {
    check_exact_hits("192.0.2.7:40000", "198.51.100.1:80", "192.0.2.0/24");
}

#[test]
fn live_deny_hits_are_exact_across_cpus_v6() {
    check_exact_hits(
        "[2001:db8:9::7]:40000",
        "[2001:db8:1::1]:80",
        "2001:db8:9::/48",
    );
}
