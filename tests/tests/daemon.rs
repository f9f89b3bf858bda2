//! `mirror-xdp run` end to end: it enforces, serves metrics on the server namespace's
//! loopback, reloads when the policy is replaced editor-style or by a ConfigMap-style
//! `..data` symlink swap and on SIGHUP, keeps the old policy when the new one is invalid,
//! logs sampled drops without flooding (each line with its time, those from before it
//! started marked as earlier), and leaves protection in force when it is killed or
//! stopped; a restart adopts the attached enforcer without a gap and keeps its counters.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mirror_xdp::observe::clock::rfc3339;
use mirror_xdp_tests::cli::{
    attach_policy, cli_bin, generation, reason, stats, stats_when, status, write_policy,
};
use mirror_xdp_tests::egress_hook::{self, HOOKS};
use mirror_xdp_tests::flood::udp_blast;
use mirror_xdp_tests::metrics::{self, metric};
use mirror_xdp_tests::netns::ChildGuard;
use mirror_xdp_tests::probe::UdpResult;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::UdpEchoSet;
use mirror_xdp_tests::sweep::udp_probe_within;
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::{poll_until, stretched, wait_until};

const OPEN: u16 = 5140;
/// Echoed by a server, but closed by the first policy: answered once a policy opens it.
const LATER: u16 = 5141;
/// Closed by every policy (and echoed, so a packet that got through would be seen).
const CLOSED: u16 = 5142;
/// Nobody listens: the target of the drop-log flood.
const FLOODED: u16 = 5999;
const METRICS_PORT: u16 = 19472;

fn policy(udp_ports: &[u16]) -> String {
    let ports: Vec<String> = udp_ports.iter().map(u16::to_string).collect();
    format!(
        "version = 1\n\n[[ports]]\nproto = \"udp\"\nports = [{}]\n",
        ports.join(", ")
    )
}

/// `"tcp"` where a port number belongs: rejected at line 9.
const INVALID: &str = "version = 1\n\n[[ports]]\nproto = \"udp\"\nports = [5140]\n\n[[ports]]\nproto = \"udp\"\nports = [\"tcp\"]\n";

#[test]
fn run_reloads_on_edits_and_sighup_and_samples_drops() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, LATER, CLOSED]).expect("udp echo");
    let path = write_policy(&bed, "policy.toml", &policy(&[OPEN]));
    let (mut daemon, log) = spawn_run(&bed, &path);
    wait_enforced(&bed, &mut daemon, &log, LATER);

    let body = scrape(&bed).expect("metrics answer");
    assert!(
        metric(&body, "mirror_xdp_packets_total{reason=\"allowed\"}").is_some(),
        "{body}"
    );
    assert_eq!(
        metric(&body, "mirror_xdp_policy_generation"),
        Some(1),
        "{body}"
    );

    // Editor style: a new file renamed over the policy.
    replace(&path, &policy(&[OPEN, LATER]));
    let latency = poll_until(Duration::from_secs(5), || answered(&bed, LATER))
        .unwrap_or_else(|| panic!("port {LATER} not opened by the edit:\n{}", read(&log)));
    println!("reload after an editor-style rename: enforced within {latency:?}");
    assert!(latency <= stretched(Duration::from_secs(2)), "{latency:?}");
    assert_eq!(generation(&bed), 2);
    assert!(!answered(&bed, CLOSED));

    // An invalid policy: logged with file:line:col and counted; the old one stays.
    replace(&path, INVALID);
    poll_until(Duration::from_secs(5), || {
        scrape(&bed).and_then(|b| metric(&b, "mirror_xdp_reloads_total{result=\"error\"}"))
            == Some(1)
    })
    .unwrap_or_else(|| panic!("no failed reload counted:\n{}", read(&log)));
    let where_ = format!("{}:9:", path.display());
    assert!(
        read(&log).contains(&format!("reload failed: {where_}")),
        "{}",
        read(&log)
    );
    assert!(answered(&bed, LATER), "the old policy stays in force");
    assert!(!answered(&bed, CLOSED));
    assert_eq!(generation(&bed), 2);

    // Valid again, then SIGHUP: each a reload.
    replace(&path, &policy(&[OPEN, LATER]));
    poll_until(Duration::from_secs(5), || generation(&bed) == 3)
        .unwrap_or_else(|| panic!("fixed policy not reloaded:\n{}", read(&log)));
    daemon.signal(libc::SIGHUP).expect("SIGHUP");
    poll_until(Duration::from_secs(5), || generation(&bed) == 4)
        .unwrap_or_else(|| panic!("SIGHUP did not reload:\n{}", read(&log)));
    let body = scrape(&bed).expect("metrics");
    assert_eq!(
        metric(&body, "mirror_xdp_reloads_total{result=\"ok\"}"),
        Some(3),
        "{body}"
    );
    assert_eq!(
        metric(&body, "mirror_xdp_reloads_total{result=\"error\"}"),
        Some(1)
    );

    check_drop_log(&bed, &log);

    // SIGTERM: the daemon ends, the protection stays.
    daemon.signal(libc::SIGTERM).expect("SIGTERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", read(&log)));
    assert_eq!(status.code(), Some(0), "{}", read(&log));
    assert!(
        read(&log).contains("SIGTERM: stopping the daemon; the enforcer stays attached"),
        "{}",
        read(&log)
    );
    assert!(!answered(&bed, CLOSED), "still enforced after SIGTERM");
    assert!(answered(&bed, LATER));
    assert!(scrape(&bed).is_none(), "metrics stopped with the daemon");
    println!("daemon log:\n{}", read(&log));
}

/// 2,000 datagrams to a closed port: every one dropped, a few sampled in the kernel, fewer
/// still shown in the log.
fn check_drop_log(bed: &Testbed, log: &Path) {
    const SENT: u64 = 2000;
    let before = reason(&stats(bed), "port_closed", "drop_packets");
    let target = SocketAddr::from((SERVER_V4, FLOODED));
    let sent = udp_blast(
        &bed.client,
        CLIENT_V4.into(),
        target,
        SENT,
        Duration::from_secs(10),
    )
    .expect("blast");
    assert_eq!(sent, SENT);
    let line = format!("drop port_closed {CLIENT_V4} -> udp/{FLOODED}");
    // The kernel samples a burst of up to 100 events, more than the log's 20 lines a
    // second: the rest are summed up in a `... N more` line when the log's second is over.
    poll_until(Duration::from_secs(5), || {
        read(log)
            .lines()
            .any(|l| body(l).is_some_and(|b| b.starts_with("... ")))
    })
    .unwrap_or_else(|| panic!("no summary of hidden drop lines:\n{}", read(log)));
    let text = read(log);
    assert!(
        text.lines()
            .filter(|l| l.contains(&line))
            .all(|l| body(l) == Some(&line)),
        "each drop line starts with its time:\n{text}"
    );
    let shown = text.lines().filter(|l| body(l) == Some(&line)).count() as u64;
    let hidden: u64 = text
        .lines()
        .filter_map(|l| {
            body(l)?
                .strip_prefix("... ")?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let dropped = reason(&stats(bed), "port_closed", "drop_packets") - before;
    println!(
        "drop log: {SENT} sent, {dropped} dropped, {} sampled by the kernel, {shown} lines shown",
        shown + hidden
    );
    // veth may drop a few of a burst before XDP sees them.
    assert!(dropped >= SENT / 2, "{dropped}");
    assert!(shown > 0, "no drop lines:\n{text}");
    assert!(shown <= 300, "{shown} drop lines");
    // The kernel's bucket (100 a second per CPU, a burst of 100) let through far fewer
    // events than packets; the log's own cap then showed fewer still.
    assert!(shown + hidden < dropped / 2, "{} events", shown + hidden);
}

/// Drops while no daemon runs wait in the ring buffer: `run` logs them first, marked as
/// earlier with the time they happened, and stamps each later line with its drop's time.
#[test]
fn run_marks_drops_from_before_it_started() {
    const EARLY: u64 = 5;
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, CLOSED]).expect("udp echo");
    let path = attach_policy(&bed, &policy(&[OPEN]));
    // Millisecond timestamps, and the two clocks read apart: a little slack.
    let slack = Duration::from_millis(50);
    let first = rfc3339(SystemTime::now() - slack);
    let target = SocketAddr::from((SERVER_V4, FLOODED));
    let sent = udp_blast(
        &bed.client,
        CLIENT_V4.into(),
        target,
        EARLY,
        Duration::from_secs(5),
    )
    .expect("blast");
    assert_eq!(sent, EARLY);
    stats_when(&bed, Duration::from_secs(3), |s| {
        reason(s, "port_closed", "drop_packets") > 0
    });
    let last = rfc3339(SystemTime::now() + slack);
    // So that "how long ago" is at least a second.
    std::thread::sleep(Duration::from_secs(1));

    let (mut daemon, log) = spawn_run(&bed, &path);
    wait_enforced(&bed, &mut daemon, &log, CLOSED);
    // The first probes of the closed port may precede the daemon's start (the enforcer was
    // attached): probe again once it runs, until one is logged as new.
    poll_until(Duration::from_secs(5), || {
        read(&log).contains("running (pid")
    })
    .unwrap_or_else(|| panic!("not running:\n{}", read(&log)));
    let new = format!("drop port_closed {CLIENT_V4} -> udp/{CLOSED}");
    poll_until(Duration::from_secs(5), || {
        assert!(!answered(&bed, CLOSED), "a closed port answered");
        read(&log).lines().any(|l| body(l) == Some(&new))
    })
    .unwrap_or_else(|| panic!("no line for the drops after the start:\n{}", read(&log)));
    let text = read(&log);
    println!("daemon log:\n{text}");

    let old = format!("drop port_closed {CLIENT_V4} -> udp/{FLOODED}");
    let earlier: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.ends_with(&old))
        .map(|l| {
            let b = body(l).unwrap_or_else(|| panic!("no time: {l:?}"));
            let ago = b
                .strip_prefix("earlier (before this daemon started, ")
                .and_then(|r| r.strip_suffix(&format!(" s ago): {old}")))
                .unwrap_or_else(|| panic!("not marked as earlier: {l:?}"));
            (&l[..TIME_LEN], ago)
        })
        .collect();
    assert!(
        !earlier.is_empty() && earlier.len() as u64 <= EARLY,
        "{text}"
    );
    for (time, ago) in earlier {
        assert!(
            first.as_str() <= time && time <= last.as_str(),
            "{time} not in {first}..{last}"
        );
        let ago: f64 = ago.parse().unwrap_or_else(|_| panic!("{ago:?}"));
        assert!((1.0..60.0).contains(&ago), "{ago} s ago");
    }
    let now = rfc3339(SystemTime::now() + slack);
    for l in text.lines().filter(|l| body(l) == Some(&new)) {
        let time = &l[..TIME_LEN];
        assert!(
            last.as_str() < time && time <= now.as_str(),
            "{l:?} not in {last}..{now}"
        );
    }
}

/// `2025-03-04T05:06:07.089Z`
const TIME_LEN: usize = 24;

/// A drop-log line without the time it starts with; None if it does not start with one.
fn body(line: &str) -> Option<&str> {
    let (time, rest) = line.split_once(' ')?;
    let b = time.as_bytes();
    let stamped = b.len() == TIME_LEN && b[10] == b'T' && b[19] == b'.' && time.ends_with('Z');
    stamped.then_some(rest)
}

#[test]
fn run_restart_adopts_without_a_gap() {
    run_restart_adopts(HOOKS[0]);
}

#[test]
fn run_restart_adopts_without_a_gap_on_the_tc_hook() {
    run_restart_adopts(HOOKS[1]);
}

fn run_restart_adopts(hook: &str) {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, CLOSED]).expect("udp echo");
    let path = write_policy(&bed, "policy.toml", &policy(&[OPEN]));
    let (mut first, first_log) = spawn_run_on(&bed, &path, hook);
    wait_enforced(&bed, &mut first, &first_log, CLOSED);
    for _ in 0..10 {
        assert!(answered(&bed, OPEN));
    }
    let allowed_before = reason(&stats(&bed), "allowed", "packets");
    assert!(allowed_before >= 10);

    // SIGKILL: no chance to clean up, and nothing to clean up: the pins hold on.
    first.signal(libc::SIGKILL).expect("SIGKILL");
    first
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .expect("killed");
    assert!(!answered(&bed, CLOSED), "still enforced after SIGKILL");

    // Restart while probes run: the closed port never answers, the open one always does.
    let stop = AtomicBool::new(false);
    let (echoes_sent, closed_tries) = (AtomicU32::new(0), AtomicU32::new(0));
    // Both probe loops have gone `echoes` and `tries` further than they were.
    let probed = |echoes: u32, tries: u32| {
        echoes_sent.load(Ordering::Relaxed) >= echoes
            && closed_tries.load(Ordering::Relaxed) >= tries
    };
    let (second, second_log, echoes, leaks, adopt_time) = std::thread::scope(|s| {
        let echoes = s.spawn(|| bed.client.enter(|| echo_loop(&stop, &echoes_sent)));
        let leaks = s.spawn(|| {
            let mut leaks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                closed_tries.fetch_add(1, Ordering::Relaxed);
                if answered_within(&bed, CLOSED, Duration::from_millis(30)) {
                    leaks += 1;
                }
            }
            (closed_tries.load(Ordering::Relaxed), leaks)
        });
        wait_until(
            Duration::from_secs(5),
            "the probes before the restart",
            || probed(5, 2),
        );
        let started = Instant::now();
        let (second, log) = spawn_run_on(&bed, &path, hook);
        let adopted = poll_until(Duration::from_secs(10), || {
            read(&log).contains("adopted the enforcer")
        });
        // Keep probing a little after the swap: 20 echoes and 5 closed-port probes more.
        let (echoes_then, tries_then) = (
            echoes_sent.load(Ordering::Relaxed),
            closed_tries.load(Ordering::Relaxed),
        );
        wait_until(
            Duration::from_secs(10),
            "the probes after the restart",
            || probed(echoes_then + 20, tries_then + 5),
        );
        stop.store(true, Ordering::Relaxed);
        let adopted = adopted.map(|_| started.elapsed());
        (
            second,
            log,
            echoes.join().expect("echo loop"),
            leaks.join().expect("closed-port loop"),
            adopted,
        )
    });
    let log = read(&second_log);
    let adopt_time = adopt_time.unwrap_or_else(|| panic!("no adoption:\n{log}"));
    let (sent, answered_echoes) = echoes;
    let (tries, leaked) = leaks;
    println!(
        "restart: adopted {adopt_time:?} after the start; {answered_echoes}/{sent} echoes answered, \
         {leaked}/{tries} closed-port probes got through"
    );
    assert!(sent >= 50, "{sent}");
    assert_eq!(
        answered_echoes, sent,
        "an allowed port stopped answering\n{log}"
    );
    assert!(tries > 0);
    assert_eq!(
        leaked, 0,
        "the closed port answered during the restart\n{log}"
    );
    assert!(log.contains("(generation 1 -> 2"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("attached to")),
        "a restart must not re-attach: {log}"
    );
    assert_eq!(generation(&bed), 2);
    let allowed_after = reason(&stats(&bed), "allowed", "packets");
    assert!(
        allowed_after >= allowed_before + u64::from(sent),
        "counters kept: {allowed_before} before, {allowed_after} after"
    );
    let body = scrape(&bed).expect("metrics of the restarted daemon");
    assert_eq!(metric(&body, "mirror_xdp_policy_generation"), Some(2));
    let want = egress_hook::expected(hook, &bed.server, SERVER_IF);
    assert_eq!(status(&bed)["interfaces"][0]["egress"], want);
    if want == "tc" {
        // The adoption replaced the program of our one filter: no second filter.
        let ours = egress_hook::our_filters(&bed.server, SERVER_IF);
        assert_eq!(ours.len(), 1, "{ours:?}");
    }
    drop(first);
    drop(second);
}

#[test]
fn run_follows_a_configmap_symlink_swap() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[OPEN, LATER]).expect("udp echo");
    // The layout kubelet gives a mounted ConfigMap.
    let dir = bed.work_dir().join("configmap");
    let version = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("policy.toml"), text).unwrap();
    };
    version("..v1", &policy(&[OPEN]));
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.toml", dir.join("policy.toml")).unwrap();
    let path = dir.join("policy.toml");
    let (mut daemon, log) = spawn_run(&bed, &path);
    wait_enforced(&bed, &mut daemon, &log, LATER);

    // kubelet's update: the new version beside the old, then `..data` swapped atomically.
    version("..v2", &policy(&[OPEN, LATER]));
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let latency = poll_until(Duration::from_secs(5), || answered(&bed, LATER))
        .unwrap_or_else(|| panic!("the ..data swap was not applied:\n{}", read(&log)));
    println!("reload after a ConfigMap swap: enforced within {latency:?}");
    assert!(latency <= stretched(Duration::from_secs(2)), "{latency:?}");
    assert_eq!(generation(&bed), 2);
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    // Removing the old version changes nothing the policy reads: no reload. The test is
    // that nothing happens, so it can only wait: 800 ms is past the 300 ms debounce and the
    // reload that would follow (an edit is in force about 0.55 s after it is made).
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(generation(&bed), 2, "{}", read(&log));
}

/// `run` on the server's veth with the metrics on the server namespace's loopback.
fn spawn_run(bed: &Testbed, policy: &Path) -> (ChildGuard, PathBuf) {
    spawn_run_on(bed, policy, "auto")
}

/// `run` with `--egress-hook hook` (for a new attachment; an adoption keeps the hook).
fn spawn_run_on(bed: &Testbed, policy: &Path, hook: &str) -> (ChildGuard, PathBuf) {
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = [
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        policy.to_str().expect("UTF-8 path"),
        "--metrics",
        &metrics,
        "--egress-hook",
        hook,
    ];
    bed.spawn_cli(&cli_bin(), &args).expect("starting run")
}

/// Waits until `closed` (echoed, but closed by the policy) goes unanswered and the metrics
/// answer.
fn wait_enforced(bed: &Testbed, daemon: &mut ChildGuard, log: &Path, closed: u16) {
    let started = Instant::now();
    poll_until(Duration::from_secs(15), || {
        if let Err(e) = daemon.ensure_running() {
            panic!("{e}:\n{}", read(log));
        }
        !answered(bed, closed) && scrape(bed).is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "not enforcing after {:?}:\n{}",
            started.elapsed(),
            read(log)
        )
    });
    println!(
        "run: enforcing and serving metrics {:?} after the start",
        started.elapsed()
    );
}

fn answered(bed: &Testbed, port: u16) -> bool {
    answered_within(bed, port, Duration::from_millis(300))
}

fn answered_within(bed: &Testbed, port: u16, timeout: Duration) -> bool {
    udp_probe_within(&bed.client, CLIENT_V4.into(), port, timeout) == UdpResult::Answered
}

/// Echoes to the open port every 10 ms until `stop` (and at least 50), counting each send
/// in `progress`: (sent, answered). An echo counts whenever it comes back: a guest under
/// emulation can be busy for longer than the pace (a daemon's program load), and what the
/// test looks for is a datagram the enforcer dropped, which never comes back.
fn echo_loop(stop: &AtomicBool, progress: &AtomicU32) -> (u32, u32) {
    let socket = UdpSocket::bind((CLIENT_V4, 0)).expect("bind");
    socket.connect((SERVER_V4, OPEN)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answered = BTreeSet::new();
    let mut buf = [0u8; 64];
    // Takes one echo into `answered`: its number, or None on a timeout.
    let mut receive = |answered: &mut BTreeSet<u32>| match socket.recv(&mut buf) {
        Ok(n) => {
            let text = std::str::from_utf8(&buf[..n]).expect("an echo is text");
            let seq = text.strip_prefix("echo ").and_then(|s| s.parse().ok());
            let seq: u32 = seq.unwrap_or_else(|| panic!("not one of our echoes: {text:?}"));
            answered.insert(seq);
            Some(seq)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("echo: {e}"),
    };
    let mut sent = 0u32;
    while sent < 50 || !stop.load(Ordering::Relaxed) {
        socket
            .send(format!("echo {sent}").as_bytes())
            .expect("send");
        sent += 1;
        progress.store(sent, Ordering::Relaxed);
        // Until this echo is back or 300 ms have passed; earlier ones may come first.
        while let Some(seq) = receive(&mut answered) {
            if seq == sent - 1 {
                break;
            }
        }
        // The pace of the echoes (not a wait for anything).
        std::thread::sleep(Duration::from_millis(10));
    }
    // The echoes still on their way.
    socket
        .set_read_timeout(Some(stretched(Duration::from_secs(2))))
        .unwrap();
    while answered.len() < sent as usize && receive(&mut answered).is_some() {}
    (sent, answered.len() as u32)
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// GET /metrics on the server namespace's loopback; None if nothing answers.
fn scrape(bed: &Testbed) -> Option<String> {
    metrics::scrape(&bed.server, METRICS_PORT)
}
