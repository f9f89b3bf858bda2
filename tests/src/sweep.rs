//! Probing the testbed's server: one port, or many at once. A dropped probe costs its whole
//! timeout, so sweeps run in parallel threads and take about one timeout however many ports
//! they cover.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::netns::Netns;
use crate::probe::{ProbeResult, UdpResult, tcp_connect, udp_probe};
use crate::servers::banner;
use crate::testbed::{CLIENT_V4, Testbed};

/// Short enough to keep suites fast, long enough for an unloaded veth (sub-millisecond RTT).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// `f` applied to every item, each on its own thread; results in item order.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|i| scope.spawn(|| f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// One TCP connect from `src` in `ns` to `port` of the server address on `src`'s network,
/// waiting [`PROBE_TIMEOUT`].
pub fn tcp_probe(ns: &Netns, src: IpAddr, port: u16) -> ProbeResult {
    let dst = SocketAddr::new(Testbed::server_addr_for(src), port);
    tcp_connect(ns, src, dst, PROBE_TIMEOUT)
        .unwrap_or_else(|e| panic!("probing tcp {dst} from {src}: {e:#}"))
}

/// One UDP probe (a datagram, then wait up to `timeout` for the echo) like [`tcp_probe`].
pub fn udp_probe_within(ns: &Netns, src: IpAddr, port: u16, timeout: Duration) -> UdpResult {
    let dst = SocketAddr::new(Testbed::server_addr_for(src), port);
    udp_probe(ns, src, dst, timeout)
        .unwrap_or_else(|e| panic!("probing udp {dst} from {src}: {e:#}"))
}

/// TCP connects from `src` in `ns` to each port of the server address on `src`'s network.
pub fn tcp_sweep(ns: &Netns, src: IpAddr, ports: &[u16]) -> Vec<(u16, ProbeResult)> {
    parallel(ports, |&port| (port, tcp_probe(ns, src, port)))
}

/// UDP probes (one datagram, wait for the echo) like [`tcp_sweep`].
pub fn udp_sweep(ns: &Netns, src: IpAddr, ports: &[u16]) -> Vec<(u16, UdpResult)> {
    parallel(ports, |&port| {
        (port, udp_probe_within(ns, src, port, PROBE_TIMEOUT))
    })
}

/// Panics unless a TCP connect from `src` to `port` completes.
#[track_caller]
pub fn assert_open(bed: &Testbed, src: IpAddr, port: u16, what: &str) {
    let r = tcp_probe(&bed.client, src, port);
    assert!(
        r.is_open(),
        "{what}: {src} -> {port} should be open, got {r:?}"
    );
}

/// Panics unless a TCP connect from `src` to `port` times out (dropped, not refused).
#[track_caller]
pub fn assert_blocked(bed: &Testbed, src: IpAddr, port: u16, what: &str) {
    let r = tcp_probe(&bed.client, src, port);
    assert_eq!(
        r,
        ProbeResult::Timeout,
        "{what}: {src} -> {port} should be dropped"
    );
}

/// Panics unless, from the ordinary IPv4 client, the banner listener on `open` answers with
/// its banner and `closed` times out: the enforcer is in force.
#[track_caller]
pub fn assert_enforcing(bed: &Testbed, open: u16, closed: u16, what: &str) {
    assert_eq!(
        tcp_sweep(&bed.client, CLIENT_V4.into(), &[open, closed]),
        [
            (open, ProbeResult::Open(banner(open))),
            (closed, ProbeResult::Timeout)
        ],
        "{what}"
    );
}
