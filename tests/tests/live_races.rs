//! `mirror-xdp source` racing `mirror-xdp reload`: every live deny given while reloads swap
//! generations ends up enforced by the generation in force, not in one a reload has just
//! replaced.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirror_xdp_tests::cli::{attach_policy, generation, root_or_skip, run, run_ok};
use mirror_xdp_tests::probe::ProbeResult;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::{parallel, tcp_probe};
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
    if !root_or_skip() {
        return;
    }
    let bed = Testbed::new().expect("testbed");
    let _tcp = TcpListenerSet::start(&bed.server, &[PORT]).expect("tcp listener");
    let control = client_addr(DENIES);
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
    let reloads = std::thread::scope(|scope| {
        let reloader = scope.spawn(|| {
            let mut reloads = 0;
            while !denies_done.load(Ordering::Acquire)
                && reloads < MAX_RELOADS
                && started.elapsed() < DEADLINE
            {
                let r = run(&bed, &["reload"]);
                assert_eq!(r.code, Some(0), "reload {reloads} failed: {r:?}");
                reloads += 1;
            }
            reloads
        });
        let denier = scope.spawn(|| {
            for i in 0..DENIES {
                let prefix = format!("{}/32", client_addr(i));
                let r = run(&bed, &["source", "deny", &prefix]);
                if r.code != Some(0) {
                    denies_done.store(true, Ordering::Release);
                    panic!("source deny {prefix} failed: {r:?}");
                }
            }
            denies_done.store(true, Ordering::Release);
        });
        denier
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        reloader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    // Without reloads during the denies there was no race to lose.
    assert!(
        reloads >= 5,
        "only {reloads} reloads ran during the {DENIES} denies"
    );
    assert!(
        generation(&bed) > first_generation,
        "the reloads did not swap generations"
    );

    let sources: Vec<u8> = (0..=DENIES).collect();
    let results = parallel(&sources, |&i| {
        let src = client_addr(i);
        (src, tcp_probe(&bed.client, IpAddr::V4(src), PORT))
    });
    let (control_result, denied) = results.split_last().expect("probes ran");
    assert!(
        control_result.1.is_open(),
        "the control {control} (never denied) should be open: {control_result:?}"
    );
    let leaked: Vec<&(Ipv4Addr, ProbeResult)> = denied
        .iter()
        .filter(|(_, r)| *r != ProbeResult::Timeout)
        .collect();
    assert!(
        leaked.is_empty(),
        "{} of {DENIES} denied sources got through after {reloads} concurrent reloads: {leaked:?}",
        leaked.len()
    );
    // And the entries the file keeps are all in the list.
    let listed = run_ok(&bed, &["source", "list", "--json"]).stdout;
    for i in 0..DENIES {
        let prefix = format!("\"{}/32\"", client_addr(i));
        assert!(listed.contains(&prefix), "{prefix} not listed: {listed}");
    }
}
