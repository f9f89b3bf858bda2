//! Probing many ports at once: a dropped probe costs its whole timeout, so probes run in
//! parallel threads and a sweep takes about one timeout however many ports it covers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::netns::Netns;
use crate::probe::{ProbeResult, UdpResult, tcp_connect, udp_probe};
use crate::testbed::Testbed;

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

/// TCP connects from `src` in `ns` to each port of the server address on `src`'s network.
pub fn tcp_sweep(ns: &Netns, src: IpAddr, ports: &[u16]) -> Vec<(u16, ProbeResult)> {
    let dst = Testbed::server_addr_for(src);
    parallel(ports, |&port| {
        let r = tcp_connect(ns, src, SocketAddr::new(dst, port), PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("probing tcp {dst}:{port} from {src}: {e:#}"));
        (port, r)
    })
}

/// UDP probes (one datagram, wait for the echo) like [`tcp_sweep`].
pub fn udp_sweep(ns: &Netns, src: IpAddr, ports: &[u16]) -> Vec<(u16, UdpResult)> {
    let dst = Testbed::server_addr_for(src);
    parallel(ports, |&port| {
        let r = udp_probe(ns, src, SocketAddr::new(dst, port), PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("probing udp {dst}:{port} from {src}: {e:#}"));
        (port, r)
    })
}
