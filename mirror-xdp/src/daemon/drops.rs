//! The drop log: reads the sampled drop events from the pinned ring buffer and logs each as
//! a line, at most `LINES_PER_SEC` lines a second (the rest are counted and summed up), so
//! neither the kernel's sampling nor this log can be flooded by an attack.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aya::maps::{Map, MapData, RingBuf};
use mirror_xdp_common::{DropEvent, Reason, drop_event_flag, ipproto, map_name};
use tokio::io::{Interest, unix::AsyncFd};
use tokio::time::Instant;

use crate::state::Paths;

/// Lines the log shows per second; more events in the same second are only counted.
pub const LINES_PER_SEC: u32 = 20;

/// Opens the drop ring buffer of the attached enforcer.
pub fn open(paths: &Paths) -> Result<RingBuf<MapData>, String> {
    let path = paths.map_pin(map_name::DROPS, 0);
    let map = MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    RingBuf::try_from(map).map_err(|e| format!("{}: {e}", path.display()))
}

/// Logs events until the process ends.
pub async fn run(ring: RingBuf<MapData>, log: fn(&str)) {
    // SAFETY: the ring buffer owns its map descriptor, which stays open as long as it does.
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => return log(&format!("drop log off: cannot poll the ring buffer: {e}")),
    };
    let mut cap = Cap::new(Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let Ok(mut guard) = ready else {
                    return log("drop log off: polling the ring buffer failed");
                };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(event) = decode(&item)
                        && cap.admit(Instant::now(), &mut |l| log(l))
                    {
                        log(&line(&event));
                    }
                }
                guard.clear_ready();
            }
            _ = tick.tick() => cap.roll(Instant::now(), &mut |l| log(l)),
        }
    }
}

fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: enough bytes for a plain-integer struct; read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DropEvent>()) })
}

/// `drop port_closed 198.51.100.2 -> tcp/23`; `would-drop ...` in monitor mode.
pub fn line(e: &DropEvent) -> String {
    let what = if e.flags & drop_event_flag::WOULD_DROP != 0 {
        "would-drop"
    } else {
        "drop"
    };
    let reason = Reason::from_code(e.reason as u32).map_or("unknown", Reason::name);
    let src = if e.family == 6 {
        Ipv6Addr::from(e.src).to_string()
    } else {
        Ipv4Addr::new(e.src[0], e.src[1], e.src[2], e.src[3]).to_string()
    };
    let port = u16::from_be_bytes(e.dport);
    let dst = match e.proto {
        ipproto::TCP => format!("tcp/{port}"),
        ipproto::UDP => format!("udp/{port}"),
        ipproto::ICMP => "icmp".to_string(),
        ipproto::ICMPV6 => "icmpv6".to_string(),
        n => format!("proto/{n}"),
    };
    format!("{what} {reason} {src} -> {dst}")
}

/// The log's own limit: `LINES_PER_SEC` lines per one-second window, then a count.
struct Cap {
    window: Instant,
    shown: u32,
    hidden: u64,
}

impl Cap {
    fn new(now: Instant) -> Cap {
        Cap {
            window: now,
            shown: 0,
            hidden: 0,
        }
    }

    /// May this event be logged? Counts it if not.
    fn admit(&mut self, now: Instant, log: &mut dyn FnMut(&str)) -> bool {
        self.roll(now, log);
        if self.shown < LINES_PER_SEC {
            self.shown += 1;
            true
        } else {
            self.hidden += 1;
            false
        }
    }

    /// Starts a new window once a second is over, saying how many events the last one hid.
    fn roll(&mut self, now: Instant, log: &mut dyn FnMut(&str)) {
        if now.duration_since(self.window) < Duration::from_secs(1) {
            return;
        }
        if self.hidden > 0 {
            log(&format!(
                "... {} more drops not shown (at most {LINES_PER_SEC} lines a second)",
                self.hidden
            ));
        }
        *self = Cap::new(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(family: u8, src: [u8; 16], proto: u8, port: u16, reason: Reason) -> DropEvent {
        DropEvent {
            src,
            dport: port.to_be_bytes(),
            family,
            proto,
            reason: reason as u8,
            flags: 0,
            _pad: [0; 2],
        }
    }

    #[test]
    fn lines_name_reason_source_and_port() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[198, 51, 100, 2]);
        let e = event(4, v4, ipproto::TCP, 23, Reason::PortClosed);
        assert_eq!(line(&e), "drop port_closed 198.51.100.2 -> tcp/23");
        let v6: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let mut e = event(6, v6.octets(), ipproto::UDP, 5353, Reason::SourceNotAllowed);
        e.flags = drop_event_flag::WOULD_DROP;
        assert_eq!(
            line(&e),
            "would-drop source_not_allowed 2001:db8:1::2 -> udp/5353"
        );
        let e = event(4, v4, 47, 0, Reason::Protocol);
        assert_eq!(line(&e), "drop protocol 198.51.100.2 -> proto/47");
        // SAFETY: a 24-byte struct of integers and byte arrays, no padding left implicit.
        let bytes = unsafe { std::mem::transmute::<DropEvent, [u8; 24]>(e) };
        assert_eq!(decode(&bytes), Some(e));
        assert_eq!(decode(&bytes[..20]), None);
    }

    #[test]
    fn the_cap_shows_a_second_s_worth_then_counts() {
        let start = Instant::now();
        let mut cap = Cap::new(start);
        let mut logged = Vec::new();
        let shown = (0..500)
            .filter(|_| cap.admit(start, &mut |l| logged.push(l.to_string())))
            .count();
        assert_eq!(shown, LINES_PER_SEC as usize);
        assert!(logged.is_empty());
        cap.roll(start + Duration::from_millis(999), &mut |l| {
            logged.push(l.to_string())
        });
        assert!(logged.is_empty());
        assert!(cap.admit(start + Duration::from_secs(1), &mut |l| {
            logged.push(l.to_string())
        }));
        assert_eq!(
            logged,
            [format!(
                "... {} more drops not shown (at most {LINES_PER_SEC} lines a second)",
                500 - LINES_PER_SEC
            )]
        );
    }
}
