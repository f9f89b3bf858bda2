//! `mirror-xdp source` racing `mirror-xdp reload`: every live deny given while reloads swap
//! generations is enforced by the generation in force as soon as the command returns, not
//! written into one a reload has just replaced.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{attach_policy, generation, run, run_ok};
use mirror_xdp_tests::probe::ProbeResult;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::tcp_probe;
use mirror_xdp_tests::testbed::{CLIENT_IF, Testbed};

const PORT: u16 = 8080;

/// Port 8080 open to every source.
const POLICY: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [8080]
"#;

/// How many distinct addresses are denied, one `source deny` each.
const DENIES: u8 = 30;
/// Bounds of the reload loop: it stops when the denies are done, or at these.
const MAX_RELOADS: u32 = 300;
const DEADLINE: Duration = Duration::from_secs(180);

/// The client's extra addresses: `DENIES` to deny and one that stays open (the control).
fn client_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 100 + i)
}

#[test]
fn denies_racing_reloads_are_all_enforced_by_the_generation_in_force() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    for i in 0..=DENIES {
        let addr = format!("{}/24", client_addr(i));
        bed.client
            .run_ok("ip", &["addr", "add", &addr, "dev", CLIENT_IF])
            .expect("adding a client address");
    }
    attach_policy(&bed, POLICY);
    let first_generation = generation(&bed);

    let denies_done = AtomicBool::new(false);
    let started = Instant::now();
    let (reloads, leaked) = std::thread::scope(|scope| {
        let reloader = scope.spawn(|| {
            let mut reloads = 0;
            while !denies_done.load(Ordering::Acquire)
                && reloads < MAX_RELOADS
                && started.elapsed() < DEADLINE
            {
                // Forced: a probe that got through is a session the lock-out check guards.
                let r = run(&bed, &["reload", "--force"]);
                assert_eq!(r.code, Some(0), "reload {reloads} failed: {r:?}");
                reloads += 1;
            }
            reloads
        });
        // Each deny turns an empty live set into a non-empty one (the case a generation
        // built without it gets wrong), is probed at once, and is removed again.
        let denier = scope.spawn(|| {
            let _stop = StopOnDrop(&denies_done);
            let mut leaked = Vec::new();
            for i in 0..DENIES {
                let src = client_addr(i);
                let prefix = format!("{src}/32");
                run_ok(&bed, &["source", "deny", &prefix]);
                let probe = tcp_probe(&bed.client, IpAddr::V4(src), PORT);
                if probe != ProbeResult::Timeout {
                    leaked.push((src, probe));
                }
                run_ok(&bed, &["source", "remove", &prefix]);
            }
            leaked
        });
        let leaked = denier
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let reloads = reloader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (reloads, leaked)
    });
    println!("{reloads} reloads ran during the {DENIES} denies");
    assert!(
        leaked.is_empty(),
        "{} of {DENIES} sources got through right after their `source deny` returned, \
         while reloads ran: {leaked:?}",
        leaked.len()
    );
    // Without reloads during the denies there was no race to lose.
    assert!(
        reloads >= 5,
        "only {reloads} reloads ran during the {DENIES} denies"
    );
    assert!(
        generation(&bed) > first_generation,
        "the reloads did not swap generations"
    );
    // The probes can tell: a source no entry names gets through.
    let control = client_addr(DENIES);
    let r = tcp_probe(&bed.client, IpAddr::V4(control), PORT);
    assert!(r.is_open(), "the control {control} should be open: {r:?}");
}

/// Tells the reload loop to stop when the deny loop ends, even by a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
