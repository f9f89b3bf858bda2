//! `mirror-xdp trace` on the veth testbed: lines for the packets its filter matches and no
//! others, from the kernel as the enforcer judges them; it stops by itself after --count
//! lines and cleanly on Ctrl-C (SIGINT), switching the kernel's trace off; while it runs
//! every matching packet is either shown or counted as left out by the rate bound; a
//! second trace is refused while one runs; it stops when its output closes, and a killed
//! trace's lease runs out.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mirror_xdp::kernel::maps::monotonic_ns;
use mirror_xdp_tests::cli::{assert_exit, attach_policy, cli_bin, run};
use mirror_xdp_tests::netns::ChildGuard;
use mirror_xdp_tests::pinned::{trace_buckets, trace_filter};
use mirror_xdp_tests::probe::tcp_connect;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::PROBE_TIMEOUT;
use mirror_xdp_tests::testbed::*;

const POLICY: &str = r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80]
"#;

/// A running trace, its standard output and error going to files.
struct Trace {
    child: ChildGuard,
    out: PathBuf,
    err: PathBuf,
}

impl Trace {
    /// Starts `trace ARGS` and waits until it says the kernel's trace is on.
    fn start(bed: &Testbed, name: &str, args: &[&str]) -> Trace {
        let out = bed.work_dir().join(format!("{name}.out"));
        let err = bed.work_dir().join(format!("{name}.err"));
        let mut cmd = bed.cli_command(&cli_bin());
        cmd.arg("trace")
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()));
        let trace = Trace {
            child: ChildGuard::spawn(&mut cmd).expect("starting trace"),
            out,
            err,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !trace.stderr().contains("trace: on") {
            assert!(
                Instant::now() < deadline,
                "trace never came on: {}",
                trace.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        trace
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) for the trace to end by itself; its exit code.
    fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "trace still runs after {within:?}: {}\n{}",
            self.stdout(),
            self.stderr()
        );
    }
}

fn filter_on(bed: &Testbed) -> bool {
    trace_filter(&bed.bpffs_dir().join("mx_tracef_v1"))
        .expect("trace filter")
        .on
        != 0
}

#[test]
fn trace_shows_what_its_filter_matches_and_stops_after_count() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[80]).expect("listener");
    attach_policy(&bed, POLICY);
    assert!(!filter_on(&bed), "no trace runs yet");
    let mut trace = Trace::start(
        &bed,
        "count",
        &[
            "--source",
            "198.51.100.2/32",
            "--port",
            "3306/tcp",
            "--count",
            "2",
        ],
    );
    assert!(filter_on(&bed));
    let connect = |src: IpAddr, port| {
        let dst = Testbed::server_addr_for(src);
        tcp_connect(&bed.client, src, SocketAddr::new(dst, port), PROBE_TIMEOUT).unwrap()
    };
    // Another source to the port, and the source to another port: not traced.
    connect(ADMIN_V4.into(), 3306);
    assert!(connect(CLIENT_V4.into(), 80).is_open());
    // Two SYNs the enforcer drops: the two lines.
    connect(CLIENT_V4.into(), 3306);
    connect(CLIENT_V4.into(), 3306);
    assert_eq!(
        trace.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        trace.stderr()
    );
    let out = trace.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for line in &lines {
        assert!(
            line.contains(" mxs0 drop port_closed (step 14) 198.51.100.2:"),
            "{line}"
        );
        assert!(line.ends_with(" -> 198.51.100.1:3306 tcp SYN"), "{line}");
    }
    assert!(
        trace
            .stderr()
            .contains("trace: 2 lines; 0 matching packets left out"),
        "{}",
        trace.stderr()
    );
    assert!(!filter_on(&bed), "the trace left the kernel's trace on");
}

#[test]
fn trace_is_bounded_in_rate_and_stops_on_ctrl_c() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, POLICY);
    let mut trace = Trace::start(
        &bed,
        "rate",
        &[
            "--source",
            "2001:db8:1::/64",
            "--port",
            "5140/udp",
            "--rate",
            "5",
        ],
    );
    let second = run(&bed, &["trace", "--count", "1"]);
    assert_exit(&second, 1, "another `mirror-xdp trace` is running");
    const SENT: u64 = 60;
    let started = Instant::now();
    bed.client
        .enter(|| {
            let socket = UdpSocket::bind(SocketAddr::new(CLIENT_V6.into(), 0))?;
            for _ in 0..SENT {
                socket.send_to(b"trace me", SocketAddr::new(SERVER_V6.into(), 5140))?;
            }
            anyhow::Ok(())
        })
        .unwrap();
    // Until the lines stop coming (the bucket allows 5 a second per CPU).
    let deadline = Instant::now() + Duration::from_secs(5);
    while trace.stdout().lines().count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed().as_secs() + 1;
    // SAFETY: kill(2) on the trace this test started, by its id.
    let sent = unsafe { libc::kill(trace.child.pid() as i32, libc::SIGINT) };
    assert_eq!(sent, 0, "SIGINT to the trace");
    assert_eq!(
        trace.wait(Duration::from_secs(5)),
        Some(0),
        "{}",
        trace.stderr()
    );
    assert!(!filter_on(&bed), "Ctrl-C left the kernel's trace on");

    let out = trace.stdout();
    let shown = out.lines().count() as u64;
    for line in out.lines() {
        assert!(
            line.contains(" drop port_closed (step 14) [2001:db8:1::2]:"),
            "{line}"
        );
        assert!(line.ends_with(" -> [2001:db8:1::1]:5140 udp"), "{line}");
    }
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(
        shown >= 5 && shown <= 5 * cpus * elapsed,
        "{shown} lines in {elapsed} s: {out}"
    );
    // Every matching packet was shown or counted as left out.
    let err = trace.stderr();
    let summary = format!(
        "trace: {shown} lines; {} matching packets left out",
        SENT - shown
    );
    assert!(err.contains(&summary), "wanted {summary:?}: {err}");
}

/// The trace's per-CPU buckets as (next record's time, left out) pairs.
fn buckets(bed: &Testbed) -> Vec<(u64, u64)> {
    trace_buckets(&bed.bpffs_dir().join("mx_traceb_v1"))
        .expect("trace buckets")
        .iter()
        .map(|b| (b.tat_ns, b.skipped))
        .collect()
}

/// A SYN from the client to port 80 (a listener answers).
fn syn(bed: &Testbed) {
    let at = SocketAddr::new(SERVER_V4.into(), 80);
    assert!(
        tcp_connect(&bed.client, CLIENT_V4.into(), at, PROBE_TIMEOUT)
            .expect("tcp probe")
            .is_open()
    );
}

#[test]
fn trace_stops_when_its_output_closes_and_a_killed_ones_lease_runs_out() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _web = TcpListenerSet::start(&bed.server, &[80]).expect("listener");
    attach_policy(&bed, POLICY);

    // `trace | head -0`: the first line finds its output closed, and the trace ends.
    let err = bed.work_dir().join("piped.err");
    let mut cmd = bed.cli_command(&cli_bin());
    cmd.args(["trace", "--port", "80/tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()));
    let mut piped = ChildGuard::spawn(&mut cmd).expect("starting trace");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("trace: on")
    {
        assert!(Instant::now() < deadline, "trace never came on");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(piped.take_stdout());
    syn(&bed);
    let status = piped
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("trace runs on with its output closed");
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    assert!(
        !filter_on(&bed),
        "a closed output left the kernel's trace on"
    );

    // A trace killed outright cannot switch the trace off: its lease does, 3 s after its
    // last renewal. Until then the program writes records (a bucket moves on).
    let mut killed = Trace::start(&bed, "killed", &["--port", "80/tcp"]);
    killed
        .child
        .signal(libc::SIGKILL)
        .expect("SIGKILL to the trace");
    killed.wait(Duration::from_secs(5));
    let filter = trace_filter(&bed.bpffs_dir().join("mx_tracef_v1")).expect("trace filter");
    assert!(filter.on != 0, "nothing switched the trace off");
    let before = buckets(&bed);
    syn(&bed);
    if monotonic_ns() < filter.until_ns {
        assert_ne!(buckets(&bed), before, "within the lease the SYN is traced");
    } else {
        eprintln!("the lease ran out before the SYN was made: not checked");
    }
    while monotonic_ns() <= filter.until_ns {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = buckets(&bed);
    for _ in 0..3 {
        syn(&bed);
    }
    assert_eq!(buckets(&bed), before, "past the lease nothing is traced");
    // The next trace takes over the lapsed one.
    let mut next = Trace::start(&bed, "next", &["--port", "80/tcp", "--count", "1"]);
    syn(&bed);
    assert_eq!(
        next.wait(Duration::from_secs(5)),
        Some(0),
        "{}",
        next.stderr()
    );
    assert!(
        next.stdout()
            .contains(" pass allowed (step 13) 198.51.100.2:"),
        "{}",
        next.stdout()
    );
}
