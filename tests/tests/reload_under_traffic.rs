//! `mirror-xdp reload` under steady traffic in the veth testbed: 100 policy swaps (fewer in
//! the VM matrix) lose no allowed datagram and leak no denied one, measured against a
//! baseline run without reloads.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{attach_policy_on, generation, write_policy};
use mirror_xdp_tests::egress_hook::HOOKS;
use mirror_xdp_tests::reload::*;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpCounter, UdpEchoSet};
use mirror_xdp_tests::sweep::assert_enforcing;
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::{poll_until, slowdown, stretched, wait_until};

/// Between two datagrams of one sender: 500 per second each, far below what veth takes.
const INTERVAL: Duration = Duration::from_millis(2);
/// How long the echo reader may wait for late echoes after the senders stop (it stops as
/// soon as every datagram sent has come back).
const STRAGGLERS: Duration = Duration::from_secs(2);
/// Upper bound of one traffic run ([`stretched`] in the VM); reaching it fails the run
/// (the reloads took too long).
fn traffic_limit() -> Duration {
    stretched(Duration::from_secs(240))
}

/// 100 on the host; under emulation a reload takes seconds, not milliseconds, so the VM
/// matrix swaps 100 / [`slowdown`] times (each swap is still a chance to lose a datagram
/// sent every 2 ms). Even, so that the swaps end on the policy they started from.
fn reload_count() -> usize {
    let n = (100 / slowdown() as usize).max(4);
    n - n % 2
}

const MAGIC: &[u8; 8] = b"mx-rload";

/// What one run of steady traffic saw.
#[derive(Debug, Default)]
struct Traffic {
    allowed_sent: u64,
    /// Distinct sequence numbers that came back.
    echoed: u64,
    /// Sequence numbers sent but never echoed.
    lost: Vec<u64>,
    duplicates: u64,
    denied_sent: u64,
    /// Datagrams the receiver behind the denied port got during the run.
    leaked: u64,
    /// Sends that failed (not counted as sent) and receive errors other than timeouts.
    send_errors: u64,
    recv_errors: u64,
    /// A sender stopped at its count or time bound instead of when asked to.
    hit_limit: bool,
    elapsed: Duration,
}

/// Sends once per [`INTERVAL`] until `stop` is set or the bounds ([`traffic_limit`], and
/// the count that fits in it) are reached; `send(i)` says whether datagram `i` went out.
/// Returns how many were tried and whether a bound ended the loop.
fn paced(stop: &AtomicBool, mut send: impl FnMut(u64) -> bool) -> (u64, bool) {
    let limit = traffic_limit();
    let max = (limit.as_micros() / INTERVAL.as_micros()) as u64;
    let started = Instant::now();
    let mut next = started;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        if i >= max || started.elapsed() >= limit {
            return (i, true);
        }
        send(i);
        i += 1;
        // A steady rate, no catching up in bursts after a late wake-up.
        next += INTERVAL;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    (i, false)
}

/// Runs `during` on this thread while the client sends sequence-numbered datagrams to the
/// echo port (and reads the echoes) and datagrams to the denied port, both at one per
/// [`INTERVAL`]; then stops the senders, waits (at most [`STRAGGLERS`]) for the echoes still
/// on their way, and reports.
fn with_traffic<R>(
    bed: &Testbed,
    receiver: &UdpCounter,
    during: impl FnOnce() -> R,
) -> (Traffic, R) {
    let echo_dst = SocketAddr::from((SERVER_V4, ECHO_PORT));
    let denied_dst = SocketAddr::from((SERVER_V4, DENIED_PORT));
    let (allowed, denied) = bed.client.enter(|| {
        let allowed = UdpSocket::bind((CLIENT_V4, 0)).expect("binding the allowed sender");
        allowed
            .connect(echo_dst)
            .expect("connecting to the echo port");
        let denied = UdpSocket::bind((CLIENT_V4, 0)).expect("binding the denied sender");
        (allowed, denied)
    });
    let reader = allowed.try_clone().expect("cloning the allowed socket");
    reader
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    let stop_senders = AtomicBool::new(false);
    let stop_reader = AtomicBool::new(false);
    let send_errors = AtomicU64::new(0);
    // Echoes read so far, duplicates included.
    let echoes_read = AtomicU64::new(0);
    let leaked_before = receiver.count();
    let started = Instant::now();

    let (sent, echoes, denied_sent, recv_errors, hit_limit, out) = std::thread::scope(|scope| {
        let allowed_thread = scope.spawn(|| {
            let mut sent = Vec::new();
            let mut payload = [0u8; 32];
            payload[..8].copy_from_slice(MAGIC);
            let (_, hit) = paced(&stop_senders, |seq| {
                payload[8..16].copy_from_slice(&seq.to_be_bytes());
                match allowed.send(&payload) {
                    Ok(_) => {
                        sent.push(seq);
                        true
                    }
                    Err(_) => {
                        send_errors.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                }
            });
            (sent, hit)
        });
        let denied_thread = scope.spawn(|| {
            let mut sent = 0u64;
            let (_, hit) = paced(&stop_senders, |_| {
                match denied.send_to(b"mirror-xdp reload: must not arrive", denied_dst) {
                    Ok(_) => {
                        sent += 1;
                        true
                    }
                    Err(_) => {
                        send_errors.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                }
            });
            (sent, hit)
        });
        let reader_thread = scope.spawn(|| {
            let mut seqs = Vec::new();
            let mut errors = 0u64;
            let mut buf = [0u8; 64];
            let bound = traffic_limit() + Duration::from_secs(5);
            while !stop_reader.load(Ordering::Relaxed) && started.elapsed() < bound {
                match reader.recv(&mut buf) {
                    Ok(32) if &buf[..8] == MAGIC => {
                        seqs.push(u64::from_be_bytes(buf[8..16].try_into().unwrap()));
                        echoes_read.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => errors += 1,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => errors += 1,
                }
            }
            (seqs, errors)
        });

        let out = during();
        stop_senders.store(true, Ordering::Relaxed);
        let (sent, hit_a) = allowed_thread.join().expect("allowed sender");
        let (denied_sent, hit_d) = denied_thread.join().expect("denied sender");
        // A datagram lost for good leaves this to time out, and the report shows it lost.
        poll_until(STRAGGLERS, || {
            echoes_read.load(Ordering::Relaxed) >= sent.len() as u64
        });
        stop_reader.store(true, Ordering::Relaxed);
        let (echoes, recv_errors) = reader_thread.join().expect("echo reader");
        (sent, echoes, denied_sent, recv_errors, hit_a || hit_d, out)
    });

    let mut seen = vec![false; sent.last().map_or(0, |&s| s as usize + 1)];
    let mut duplicates = 0;
    for &seq in &echoes {
        match seen.get_mut(seq as usize) {
            Some(slot) if *slot => duplicates += 1,
            Some(slot) => *slot = true,
            None => duplicates += 1,
        }
    }
    let lost: Vec<u64> = sent
        .iter()
        .copied()
        .filter(|&s| !seen[s as usize])
        .collect();
    let traffic = Traffic {
        allowed_sent: sent.len() as u64,
        echoed: sent.len() as u64 - lost.len() as u64,
        lost,
        duplicates,
        denied_sent,
        leaked: receiver.count() - leaked_before,
        send_errors: send_errors.load(Ordering::Relaxed),
        recv_errors,
        hit_limit,
        elapsed: started.elapsed(),
    };
    (traffic, out)
}

fn assert_clean(t: &Traffic, what: &str) {
    assert!(
        !t.hit_limit,
        "{what}: traffic hit its bound ({:?}): {t:?}",
        traffic_limit()
    );
    assert!(
        t.allowed_sent > 0 && t.denied_sent > 0,
        "{what}: nothing sent: {t:?}"
    );
    assert_eq!(t.send_errors, 0, "{what}: sends failed: {t:?}");
    assert!(
        t.lost.is_empty(),
        "{what}: {} of {} allowed datagrams never echoed, first sequence numbers {:?}",
        t.lost.len(),
        t.allowed_sent,
        &t.lost[..t.lost.len().min(20)]
    );
    assert_eq!(
        t.leaked, 0,
        "{what}: {} of {} datagrams to the denied udp {DENIED_PORT} reached the server",
        t.leaked, t.denied_sent
    );
}

#[test]
fn reloads_under_traffic_lose_and_leak_nothing() {
    reloads_under_traffic(HOOKS[0]);
}

#[test]
fn reloads_under_traffic_lose_and_leak_nothing_on_the_tc_hook() {
    reloads_under_traffic(HOOKS[1]);
}

fn reloads_under_traffic(hook: &str) {
    require_root();
    let test_started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO_PORT]).expect("udp echo");
    let _tcp = TcpListenerSet::start(&bed.server, &[A_ONLY, B_ONLY]).expect("tcp listeners");
    let receiver = UdpCounter::start(&bed.server, DENIED_PORT).expect("udp counter");

    // Before attaching: the receiver does count what reaches it, so a leak would show.
    let probe = bed
        .client
        .enter(|| UdpSocket::bind((CLIENT_V4, 0)))
        .expect("probe socket");
    for _ in 0..5 {
        probe
            .send_to(b"preflight", (SERVER_V4, DENIED_PORT))
            .expect("preflight send");
    }
    wait_until(
        Duration::from_secs(3),
        &format!("the receiver on udp {DENIED_PORT} counting 5 datagrams without a policy"),
        || receiver.count() >= 5,
    );
    assert_eq!(receiver.count(), 5);

    write_deny_file(&bed, "deny-10k.txt", 10_000, &[]);
    let a = attach_policy_on(&bed, POLICY_A, hook);
    let b = write_policy(&bed, "b.toml", POLICY_B);

    // The two policies do differ where they should.
    assert_enforcing(&bed, A_ONLY, B_ONLY, "policy A");
    reload_ok(&bed, &b);
    assert_enforcing(&bed, B_ONLY, A_ONLY, "policy B");
    reload_ok(&bed, &a);
    assert_enforcing(&bed, A_ONLY, B_ONLY, "policy A again");

    // Baseline: the same traffic without reloads must already be loss-free, or a loss
    // below would say nothing about reload.
    let (baseline, ()) = with_traffic(&bed, &receiver, || {
        // The traffic's length, not a wait for anything: two seconds of it without reloads.
        std::thread::sleep(Duration::from_secs(2));
    });
    eprintln!(
        "baseline (no reloads, {:?}): allowed {} sent / {} echoed, denied {} sent / {} leaked",
        baseline.elapsed,
        baseline.allowed_sent,
        baseline.echoed,
        baseline.denied_sent,
        baseline.leaked
    );
    assert_clean(
        &baseline,
        "baseline without reloads (veth or the host is losing packets)",
    );

    let generation_before = generation(&bed);
    let reloads = reload_count();
    let (traffic, runs) = with_traffic(&bed, &receiver, || {
        let mut runs = Vec::with_capacity(reloads);
        for i in 0..reloads {
            let policy = if i % 2 == 0 { &b } else { &a };
            let started = Instant::now();
            let r = reload(&bed, policy);
            let wall = started.elapsed();
            let failed = r.code != Some(0);
            runs.push((r, wall));
            if failed {
                break;
            }
        }
        runs
    });
    for (i, (r, _)) in runs.iter().enumerate() {
        assert_eq!(r.code, Some(0), "reload {} of {reloads}: {r:?}", i + 1);
    }
    assert_eq!(runs.len(), reloads);
    let mut reported: Vec<u64> = runs
        .iter()
        .map(|(r, _)| reported_ms(r).unwrap_or_else(|| panic!("no time in {r:?}")))
        .collect();
    let walls: Vec<Duration> = runs.iter().map(|(_, w)| *w).collect();
    let (med, min, max) = spread(&mut reported);
    let (wmed, wmin, wmax) = spread_ms(&walls);
    eprintln!(
        "{reloads} reloads under traffic in {:?}: allowed {} sent / {} echoed \
         ({} lost, {} duplicates), denied {} sent / {} leaked; reload (CLI-reported) median {med} ms, \
         min {min} ms, max {max} ms; wall median {wmed} ms, min {wmin} ms, max {wmax} ms",
        traffic.elapsed,
        traffic.allowed_sent,
        traffic.echoed,
        traffic.lost.len(),
        traffic.duplicates,
        traffic.denied_sent,
        traffic.leaked
    );
    assert_clean(&traffic, &format!("during {reloads} reloads"));
    assert_eq!(
        traffic.recv_errors, 0,
        "unexpected echoes or errors: {traffic:?}"
    );

    // Ended on A (B, A, ... B, A); every reload counted as a generation.
    assert_eq!(generation(&bed), generation_before + reloads as u64);
    assert_enforcing(&bed, A_ONLY, B_ONLY, "after the reloads (policy A)");
    assert_eq!(
        pinned_generations(&bed),
        [format!("gen-{}", generation(&bed))]
    );
    eprintln!(
        "reload under traffic (--egress-hook {hook}): test took {:?}",
        test_started.elapsed()
    );
}
