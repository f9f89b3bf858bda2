//! `mirror-xdp trace`: switches the XDP program's trace on with a filter, reads its records
//! and says each as a line, and switches it off again (README, "trace"). The filter's lease
//! is renewed while the trace runs, so one that dies without switching off stops costing
//! anything within `LEASE_NS`.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use ipnet::IpNet;
use mirror_xdp_common::{
    Reason, TraceBucket, TraceEvent, TraceFilter, ipproto, map_name, trace_flag,
};

use crate::kernel::maps::monotonic_ns;
use crate::model::icmp_essential;
use crate::observe::clock;
use crate::observe::explain::Target;
use crate::policy::{Proto, protocols};
use crate::state::Paths;

/// How long the filter stays on without a renewal.
pub const LEASE_NS: u64 = 3_000_000_000;
/// The lines per second per CPU a trace shows unless told otherwise, and the most.
pub const DEFAULT_RATE: u64 = 1000;
pub const MAX_RATE: u64 = 100_000;
const LOCK_FILE: &str = "trace.lock";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}")]
    Input(String),
    #[error("another `mirror-xdp trace` is running (it holds {0})")]
    Busy(std::path::PathBuf),
    #[error(
        "cannot open {path}: {source}; nothing is attached, or the enforcer was attached by a \
         build without trace: `mirror-xdp reload` with this build adds it"
    )]
    Open {
        path: std::path::PathBuf,
        source: aya::maps::MapError,
    },
    #[error("trace map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("{path}: {source}")]
    Lock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The filter for a source prefix, a destination port or protocol, and a rate per CPU.
pub fn filter(
    source: Option<IpNet>,
    target: Option<Target>,
    rate: u64,
) -> Result<TraceFilter, TraceError> {
    if !(1..=MAX_RATE).contains(&rate) {
        return Err(TraceError::Input(format!(
            "--rate {rate}: from 1 to {MAX_RATE} lines a second per CPU"
        )));
    }
    let mut f = TraceFilter {
        on: 1,
        interval_ns: 1_000_000_000 / rate,
        ..TraceFilter::default()
    };
    // A burst of a second's worth.
    f.tolerance_ns = (rate - 1) * f.interval_ns;
    if let Some(net) = source {
        let net = net.trunc();
        let (addr, mask, family) = match (net.addr(), net.netmask()) {
            (IpAddr::V4(a), IpAddr::V4(m)) => (pad(&a.octets()), pad(&m.octets()), 4),
            (IpAddr::V6(a), IpAddr::V6(m)) => (a.octets(), m.octets(), 6),
            _ => unreachable!("a prefix's netmask is of its family"),
        };
        (f.addr, f.mask, f.family) = (addr, mask, family);
    }
    match target {
        None => {}
        Some(Target::Port(proto, port)) => {
            f.proto = match proto {
                Proto::Tcp => ipproto::TCP,
                Proto::Udp => ipproto::UDP,
            };
            f.port = port.to_be_bytes();
        }
        Some(Target::Protocol(n)) => f.proto = n,
        Some(Target::Icmp) => {
            f.proto = match f.family {
                4 => ipproto::ICMP,
                6 => ipproto::ICMPV6,
                _ => {
                    return Err(TraceError::Input(
                        "--port icmp needs a --source to tell ICMP from ICMPv6 (or give 1 or 58)"
                            .into(),
                    ));
                }
            }
        }
    }
    Ok(f)
}

fn pad(v4: &[u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(v4);
    out
}

/// The attached enforcer's trace maps, switched on while this lives.
pub struct Tracer {
    filter: Array<MapData, TraceFilter>,
    buckets: PerCpuArray<MapData, TraceBucket>,
    pub ring: Option<RingBuf<MapData>>,
    on: TraceFilter,
    skipped_before: u64,
    _lock: File,
}

impl Tracer {
    /// Opens the maps, takes the trace lock and drops the records a trace before this one
    /// left.
    pub fn open(paths: &Paths, on: TraceFilter) -> Result<Tracer, TraceError> {
        let open = |name: &'static str| {
            let path = paths.map_pin(name, 0);
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| TraceError::Open { path, source })
        };
        let filter = Array::try_from(open(map_name::TRACE_FILTER)?)
            .map_err(|e| TraceError::Map(map_name::TRACE_FILTER, e))?;
        let buckets = PerCpuArray::try_from(open(map_name::TRACE_BUCKET)?)
            .map_err(|e| TraceError::Map(map_name::TRACE_BUCKET, e))?;
        let mut ring = RingBuf::try_from(open(map_name::TRACE)?)
            .map_err(|e| TraceError::Map(map_name::TRACE, e))?;
        // After the maps: with nothing attached, that is the message.
        let lock_path = paths.state_dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| TraceError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        lock.try_lock().map_err(|_| TraceError::Busy(lock_path))?;
        while ring.next().is_some() {}
        let mut tracer = Tracer {
            filter,
            buckets,
            ring: Some(ring),
            on,
            skipped_before: 0,
            _lock: lock,
        };
        tracer.skipped_before = tracer.skipped()?;
        Ok(tracer)
    }

    /// Switches the trace on, or renews its lease.
    pub fn renew(&mut self) -> Result<(), TraceError> {
        let f = TraceFilter {
            until_ns: monotonic_ns() + LEASE_NS,
            ..self.on
        };
        self.filter
            .set(0, f, 0)
            .map_err(|e| TraceError::Map(map_name::TRACE_FILTER, e))
    }

    /// Switches the trace off.
    pub fn off(&mut self) -> Result<(), TraceError> {
        self.filter
            .set(0, TraceFilter::default(), 0)
            .map_err(|e| TraceError::Map(map_name::TRACE_FILTER, e))
    }

    /// Matching packets left out (over the rate, or the ring buffer full) since `open`.
    pub fn skipped(&self) -> Result<u64, TraceError> {
        let per_cpu = self
            .buckets
            .get(&0, 0)
            .map_err(|e| TraceError::Map(map_name::TRACE_BUCKET, e))?;
        Ok(per_cpu.iter().map(|b| b.skipped).sum::<u64>() - self.skipped_before)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.off();
    }
}

/// A record as read from the ring buffer.
pub fn decode(bytes: &[u8]) -> Option<TraceEvent> {
    (bytes.len() >= size_of::<TraceEvent>()).then(|| {
        // SAFETY: a plain-integer struct, every bit pattern valid; read unaligned.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TraceEvent>()) }
    })
}

/// Interface names by index, looked up once each.
#[derive(Default)]
pub struct Interfaces(HashMap<u32, String>);

impl Interfaces {
    pub fn name(&mut self, index: u32) -> &str {
        self.0.entry(index).or_insert_with(|| {
            let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname needs.
            let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
            if name.is_null() {
                return format!("if{index}");
            }
            // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
            unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// `2026-12-04T10:11:12.345Z mxs0 drop port_closed (step 14) 198.51.100.2:41234 ->
/// 198.51.100.1:3306 tcp SYN`.
pub fn line(e: &TraceEvent, iface: &str) -> String {
    let (wall, _) = clock::wall_of_monotonic(e.time_ns);
    let reason = Reason::from_code(u32::from(e.reason)).unwrap_or(Reason::Malformed);
    let verdict = if e.flags & trace_flag::TX != 0 {
        "syn-cookie"
    } else if e.flags & trace_flag::MONITOR != 0 {
        "would-drop"
    } else if e.flags & trace_flag::DROP != 0 {
        "drop"
    } else {
        "pass"
    };
    let (src, dst) = addresses(e);
    let (sport, dport) = (u16::from_be_bytes(e.sport), u16::from_be_bytes(e.dport));
    let what = match e.proto {
        ipproto::TCP => format!(
            "{} -> {} tcp {}",
            at(src, sport),
            at(dst, dport),
            tcp_flags(e.tcp_flags)
        ),
        ipproto::UDP => format!("{} -> {} udp", at(src, sport), at(dst, dport)),
        ipproto::ICMP | ipproto::ICMPV6 => {
            let name = if e.proto == ipproto::ICMP {
                "icmp"
            } else {
                "icmpv6"
            };
            format!("{src} -> {dst} {name} type {}", e.icmp_type)
        }
        other => format!("{src} -> {dst} {}", protocols::name(other)),
    };
    format!(
        "{} {iface} {verdict} {} (step {}) {what}",
        clock::rfc3339(wall),
        reason.name(),
        step(reason, e, src)
    )
}

fn addresses(e: &TraceEvent) -> (IpAddr, IpAddr) {
    let v4 = |b: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    match e.family {
        6 => (Ipv6Addr::from(e.src).into(), Ipv6Addr::from(e.dst).into()),
        _ => (v4(&e.src), v4(&e.dst)),
    }
}

fn at(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

fn tcp_flags(flags: u8) -> String {
    const NAMES: [(u8, &str); 6] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// The step of docs/semantics.md's verdict order that gave `reason`.
pub fn step(reason: Reason, e: &TraceEvent, src: IpAddr) -> u8 {
    let port_protocol = matches!(e.proto, ipproto::TCP | ipproto::UDP);
    match reason {
        Reason::NonIp => 1,
        Reason::Malformed => 2,
        Reason::Trusted => 3,
        Reason::Denied => 4,
        Reason::Banned => 5,
        Reason::RateLimited => 6,
        Reason::Icmp if icmp_essential(src, e.icmp_type) => 7,
        Reason::Icmp => 8,
        Reason::Fragment => 9,
        Reason::Return => 10,
        Reason::SourceNotAllowed if port_protocol => 11,
        Reason::SynFlood | Reason::SynCookie => 12,
        Reason::Allowed if port_protocol => 13,
        Reason::PortClosed | Reason::Default => 14,
        Reason::SourceNotAllowed | Reason::Allowed | Reason::Protocol => 15,
        Reason::EgressDenied => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_holds_the_prefix_masked_and_the_port_in_network_order() {
        let f = filter(
            Some("198.51.100.7/24".parse().unwrap()),
            Target::parse("873/tcp").ok(),
            10,
        )
        .unwrap();
        assert_eq!((f.on, f.family, f.proto, f.port), (1, 4, 6, [3, 105]));
        assert_eq!(f.addr[..4], [198, 51, 100, 0]);
        assert_eq!(f.mask[..4], [255, 255, 255, 0]);
        assert_eq!(f.mask[4..], [0; 12]);
        assert_eq!((f.interval_ns, f.tolerance_ns), (100_000_000, 900_000_000));
        let any = filter(None, None, DEFAULT_RATE).unwrap();
        assert_eq!(
            (any.family, any.proto, any.port, any.mask),
            (0, 0, [0, 0], [0; 16])
        );
        let v6 = filter(
            Some("2001:db8::/32".parse().unwrap()),
            Target::parse("icmp").ok(),
            1,
        )
        .unwrap();
        assert_eq!((v6.family, v6.proto, v6.tolerance_ns), (6, 58, 0));
        assert!(filter(None, Target::parse("icmp").ok(), 1).is_err());
        assert!(filter(None, None, 0).is_err());
    }

    #[test]
    fn a_record_reads_as_one_line_with_its_step() {
        let mut e = TraceEvent {
            family: 4,
            proto: ipproto::TCP,
            reason: Reason::PortClosed as u8,
            flags: trace_flag::DROP,
            tcp_flags: 0x02,
            sport: 41234u16.to_be_bytes(),
            dport: 3306u16.to_be_bytes(),
            ..TraceEvent::default()
        };
        e.src[..4].copy_from_slice(&[198, 51, 100, 2]);
        e.dst[..4].copy_from_slice(&[198, 51, 100, 1]);
        let l = line(&e, "eth0");
        assert!(
            l.ends_with(
                " eth0 drop port_closed (step 14) 198.51.100.2:41234 -> 198.51.100.1:3306 tcp SYN"
            ),
            "{l}"
        );
        e.proto = 112;
        e.reason = Reason::SourceNotAllowed as u8;
        e.flags = trace_flag::DROP | trace_flag::MONITOR;
        assert!(line(&e, "eth0").ends_with(
            " would-drop source_not_allowed (step 15) 198.51.100.2 -> 198.51.100.1 vrrp"
        ));
    }
}
