//! Attack traffic from the client namespace: SYN floods from the live-frames generator
//! (`mirror_xdp::kernel::trafficgen`), UDP blasts from a socket, and a legitimate client connecting
//! over and over; every flood bounded in packets and seconds.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mirror_xdp::kernel::trafficgen::{Flood, Randomise, Sent, TrafficGen, ifindex};

use crate::frames::{Frame, Ipv4, Ipv6, L4, tcp_flag};
use crate::netns::{Netns, checked};
use crate::probe::{ProbeResult, tcp_connect};
use crate::testbed::{CLIENT_IF, SERVER_IF, SERVER_V4, SERVER_V6, Testbed};

/// The MAC address of `dev` in `ns`.
pub fn mac(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let out = checked(Command::new("ip").args(["-n", ns.name(), "-j", "link", "show", dev]))?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = doc[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {dev} in {}", ns.name()))?;
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {text}"))
}

/// A frame from `src` to the server (same family) carrying `l4`, addressed (MACs included)
/// so the server's stack takes it as its own: the template of a flood.
pub fn template(bed: &Testbed, src: IpAddr, l4: L4) -> Result<Vec<u8>> {
    let mut frame = match src {
        IpAddr::V4(src) => Frame::ipv4(Ipv4::new(src, SERVER_V4, l4)),
        IpAddr::V6(src) => Frame::ipv6(Ipv6::new(src, SERVER_V6, l4)),
    };
    frame.src_mac = mac(&bed.client, CLIENT_IF)?;
    frame.dst_mac = mac(&bed.server, SERVER_IF)?;
    Ok(frame.build())
}

/// A TCP SYN from `src` to the server's `port`.
pub fn syn_template(bed: &Testbed, src: IpAddr, port: u16) -> Result<Vec<u8>> {
    template(bed, src, L4::tcp(40000, port, tcp_flag::SYN))
}

/// Sends `count` copies of `template` (randomised as asked) out of the client veth within
/// `limit`, at `rate_pps` or as fast as possible. The server end must run native XDP (or
/// have GRO on) for the frames to arrive.
pub fn send_frames(
    bed: &Testbed,
    template: &[u8],
    randomise: Randomise,
    count: u64,
    rate_pps: Option<u64>,
    limit: Duration,
) -> Result<Sent> {
    bed.client.enter(|| {
        let mut generator = TrafficGen::load()?;
        let flood = Flood {
            template,
            ifindex: ifindex(CLIENT_IF)?,
            count,
            time_limit: limit,
            rate_pps,
            randomise,
        };
        Ok(generator.send(&flood)?)
    })
}

/// A bounded SYN flood at the server's `port`.
#[derive(Clone, Copy, Debug)]
pub struct SynFlood {
    /// The source; its low `src_bits` bits are drawn at random for each SYN.
    pub src: IpAddr,
    pub src_bits: u32,
    pub port: u16,
    pub count: u64,
    /// SYNs per second; `None` as fast as the generator goes.
    pub rate_pps: Option<u64>,
    pub limit: Duration,
}

/// Sends the flood, with random source ports and sequence numbers.
pub fn syn_flood(bed: &Testbed, f: SynFlood) -> Result<Sent> {
    let template = syn_template(bed, f.src, f.port)?;
    let randomise = Randomise {
        src_bits: f.src_bits,
        sport: true,
        seq: true,
    };
    send_frames(bed, &template, randomise, f.count, f.rate_pps, f.limit)
}

/// Fires `count` datagrams from `src` at `dst` as fast as the socket takes them (within
/// `limit`); returns how many were sent.
pub fn udp_blast(
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    count: u64,
    limit: Duration,
) -> Result<u64> {
    ns.enter(|| {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))?;
        let started = Instant::now();
        let mut sent = 0;
        while sent < count && started.elapsed() < limit {
            match socket.send_to(b"mirror-xdp blast", dst) {
                Ok(_) => sent += 1,
                // A full socket buffer: the kernel is behind, try again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => bail!("blasting {dst} from {src}: {e}"),
            }
        }
        Ok(sent)
    })
}

/// Connections a client completed (banner received) out of those it tried.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connects {
    pub ok: u32,
    pub tried: u32,
}

impl Connects {
    pub fn rate(&self) -> f64 {
        f64::from(self.ok) / f64::from(self.tried.max(1))
    }
}

/// Sequential connects from `src` to `dst` (each bounded by `timeout`) until `max` were
/// tried, `stop` is set, or `limit` passes.
pub fn connect_loop(
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
    max: u32,
    stop: &AtomicBool,
    limit: Duration,
) -> Result<Connects> {
    let started = Instant::now();
    let mut c = Connects::default();
    while c.tried < max && !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        c.tried += 1;
        if let ProbeResult::Open(banner) = tcp_connect(ns, src, dst, timeout)?
            && !banner.is_empty()
        {
            c.ok += 1;
        }
    }
    Ok(c)
}

/// The IPv4/TCP/UDP counters of `ns` (`/proc/net/snmp`), keyed `Tcp.InSegs` and the like:
/// whether the server's stack took a flood's packets or threw them out as broken.
pub fn snmp(ns: &Netns) -> Result<std::collections::HashMap<String, u64>> {
    // /proc/net follows the process's namespace; thread-self follows this thread's.
    let text = ns.enter(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::collections::HashMap::new();
    for pair in lines.chunks_exact(2) {
        let (mut names, values) = (pair[0].split_whitespace(), pair[1].split_whitespace());
        let group = names.next().unwrap_or_default().trim_end_matches(':');
        for (name, value) in names.zip(values.skip(1)) {
            if let Ok(v) = value.parse::<i64>() {
                out.insert(format!("{group}.{name}"), v.max(0) as u64);
            }
        }
    }
    Ok(out)
}

/// Frames `dev` in `ns` could not hand to its veth peer's queue (`ethtool -S`,
/// `tx_queue_N_xdp_xmit_errors`): lost before any XDP program saw them, which happens when
/// the peer's NAPI runs on another CPU (busy with other traffic) and its ring fills.
pub fn xdp_xmit_errors(ns: &Netns, dev: &str) -> Result<u64> {
    let out = ns.run_ok("ethtool", &["-S", dev])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(name, _)| name.ends_with("xdp_xmit_errors"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum())
}
