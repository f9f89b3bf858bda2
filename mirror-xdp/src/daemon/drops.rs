//! The drop log: reads the sampled drop events from the pinned ring buffer and logs each as
//! a line, at most `LINES_PER_SEC` lines a second (the rest are counted and summed up), so
//! neither the kernel's sampling nor this log can be flooded by an attack. Every line starts
//! with the event's time (RFC 3339 UTC, from its kernel timestamp). The ring buffer keeps
//! what no reader took, the drops while no daemon ran: those come first, marked as earlier,
//! at most `EARLIER_LINES` of them.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use aya::maps::{Map, MapData, RingBuf};
use mirror_xdp_common::{
    DropEvent, Reason, drop_event_flag, events::DROP_EVENT_V1_BYTES, ipproto, map_name,
};
use tokio::io::{Interest, unix::AsyncFd};
use tokio::time::Instant;

use crate::{observe::clock, state::Paths};

/// Lines the log shows per second; more events in the same second are only counted.
pub const LINES_PER_SEC: u32 = 20;
/// Lines shown of the drops from before the daemon started; the rest are counted.
pub const EARLIER_LINES: u32 = 20;

/// Opens the drop ring buffer of the attached enforcer.
pub fn open(paths: &Paths) -> Result<RingBuf<MapData>, String> {
    let path = paths.map_pin(map_name::DROPS, 0);
    let map = MapData::from_pin(&path)
        .and_then(Map::from_map_data)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    RingBuf::try_from(map).map_err(|e| format!("{}: {e}", path.display()))
}

/// Logs events until the process ends. Events stamped before `started_ns` (CLOCK_MONOTONIC
/// when the daemon started) are from before it.
pub async fn run(ring: RingBuf<MapData>, started_ns: u64, log: fn(&str)) {
    // SAFETY: the ring buffer owns its map descriptor, which stays open as long as it does.
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => return log(&format!("drop log off: cannot poll the ring buffer: {e}")),
    };
    let mut cap = Cap::new(Instant::now());
    let mut backlog = Backlog::new(started_ns);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let Ok(mut guard) = ready else {
                    return log("drop log off: polling the ring buffer failed");
                };
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    let Some(event) = decode(&item) else { continue };
                    if backlog.holds(&event) {
                        let (wall, ago) = clock::wall_of_monotonic(event.time_ns);
                        if let Some(l) = backlog.take(&event, wall, ago) {
                            log(&l);
                        }
                        continue;
                    }
                    if cap.admit(Instant::now(), &mut |l| log(l)) {
                        let (wall, _) = clock::wall_of_monotonic(event.time_ns);
                        log(&stamped(wall, None, &event));
                    }
                }
                if let Some(l) = backlog.summary(SystemTime::now()) {
                    log(&l);
                }
                guard.clear_ready();
            }
            _ = tick.tick() => cap.roll(Instant::now(), &mut |l| log(l)),
        }
    }
}

/// An event, or an older build's shorter one with `time_ns` zero.
fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < DROP_EVENT_V1_BYTES {
        return None;
    }
    let mut full = [0u8; size_of::<DropEvent>()];
    let n = bytes.len().min(full.len());
    full[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: a plain-integer struct, every bit pattern valid; read unaligned.
    Some(unsafe { std::ptr::read_unaligned(full.as_ptr().cast::<DropEvent>()) })
}

/// `2025-03-04T05:06:07.089Z drop port_closed 198.51.100.2 -> tcp/23`; with `earlier` (how
/// long ago), `... earlier (before this daemon started, 12.3 s ago): drop ...`.
fn stamped(wall: SystemTime, earlier: Option<Duration>, e: &DropEvent) -> String {
    let time = clock::rfc3339(wall);
    match earlier {
        None => format!("{time} {}", line(e)),
        Some(ago) => format!(
            "{time} earlier (before this daemon started, {:.1} s ago): {}",
            ago.as_secs_f64(),
            line(e)
        ),
    }
}

/// `drop port_closed 198.51.100.2 -> tcp/23`; `would-drop ...` in monitor mode; a packet
/// the host sent, `drop egress_denied host -> 203.0.113.5 tcp/8080`.
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
    if e.flags & drop_event_flag::EGRESS != 0 {
        return format!("{what} {reason} host -> {src} {dst}");
    }
    format!("{what} {reason} {src} -> {dst}")
}

/// The drops from before the daemon started: the first `EARLIER_LINES` are shown, marked,
/// the rest counted. An older build's events (no time) are from before too: `run` swaps its
/// program in before it reads.
struct Backlog {
    started_ns: u64,
    shown: u32,
    hidden: u64,
    untimed: u64,
}

impl Backlog {
    fn new(started_ns: u64) -> Backlog {
        Backlog {
            started_ns,
            shown: 0,
            hidden: 0,
            untimed: 0,
        }
    }

    /// Is this event from before the daemon started?
    fn holds(&self, e: &DropEvent) -> bool {
        e.time_ns < self.started_ns
    }

    /// The line for an earlier event, or None once enough were shown (it is counted).
    fn take(&mut self, e: &DropEvent, wall: SystemTime, ago: Duration) -> Option<String> {
        if e.time_ns == 0 {
            self.untimed += 1;
            return None;
        }
        if self.shown >= EARLIER_LINES {
            self.hidden += 1;
            return None;
        }
        self.shown += 1;
        Some(stamped(wall, Some(ago), e))
    }

    /// Says how many earlier drops were not shown, once they are read.
    fn summary(&mut self, now: SystemTime) -> Option<String> {
        let (hidden, untimed) = (self.hidden, self.untimed);
        if hidden + untimed == 0 {
            return None;
        }
        (self.hidden, self.untimed) = (0, 0);
        let why = if untimed == 0 {
            format!("at most {EARLIER_LINES} lines of them")
        } else {
            format!("{untimed} of them from an older build's program, which kept no time")
        };
        Some(format!(
            "{} ... {} more drops from before this daemon started not shown ({why})",
            clock::rfc3339(now),
            hidden + untimed
        ))
    }
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
                "{} ... {} more drops not shown (at most {LINES_PER_SEC} lines a second)",
                clock::rfc3339(SystemTime::now()),
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
            time_ns: 5_000_000_000,
        }
    }

    fn v4() -> [u8; 16] {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[198, 51, 100, 2]);
        v4
    }

    /// 2025-03-04T05:06:07.089Z
    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_741_064_767_089)
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
        let mut egress = event(4, v4, ipproto::TCP, 8080, Reason::EgressDenied);
        egress.flags = drop_event_flag::EGRESS;
        assert_eq!(
            line(&egress),
            "drop egress_denied host -> 198.51.100.2 tcp/8080"
        );
        let e = event(4, v4, 47, 0, Reason::Protocol);
        assert_eq!(line(&e), "drop protocol 198.51.100.2 -> proto/47");
        // SAFETY: a 32-byte struct of integers and byte arrays, no padding left implicit.
        let bytes = unsafe { std::mem::transmute::<DropEvent, [u8; 32]>(e) };
        assert_eq!(decode(&bytes), Some(e));
        // An older build's record: no time.
        let old = decode(&bytes[..DROP_EVENT_V1_BYTES]).expect("a 24-byte record");
        assert_eq!(old, DropEvent { time_ns: 0, ..e });
        assert_eq!(decode(&bytes[..20]), None);
    }

    #[test]
    fn every_line_starts_with_its_time_and_earlier_ones_say_so() {
        let e = event(4, v4(), ipproto::UDP, 5999, Reason::PortClosed);
        assert_eq!(
            stamped(wall(), None, &e),
            "2025-03-04T05:06:07.089Z drop port_closed 198.51.100.2 -> udp/5999"
        );
        assert_eq!(
            stamped(wall(), Some(Duration::from_millis(12_340)), &e),
            "2025-03-04T05:06:07.089Z earlier (before this daemon started, 12.3 s ago): \
             drop port_closed 198.51.100.2 -> udp/5999"
        );
    }

    #[test]
    fn drops_from_before_the_start_are_marked_then_counted() {
        let started = 10_000_000_000;
        let mut backlog = Backlog::new(started);
        let before = DropEvent {
            time_ns: started - 1,
            ..event(4, v4(), ipproto::UDP, 5999, Reason::PortClosed)
        };
        let after = DropEvent {
            time_ns: started,
            ..before
        };
        let untimed = DropEvent {
            time_ns: 0,
            ..before
        };
        assert!(backlog.holds(&before) && backlog.holds(&untimed));
        assert!(!backlog.holds(&after));
        assert_eq!(backlog.summary(wall()), None);
        let ago = Duration::from_secs(3);
        let shown: Vec<String> = (0..EARLIER_LINES + 5)
            .filter_map(|_| backlog.take(&before, wall(), ago))
            .collect();
        assert_eq!(shown.len(), EARLIER_LINES as usize);
        assert!(
            shown
                .iter()
                .all(|l| l.contains(" earlier (before this daemon started, 3.0 s ago): ")),
            "{shown:?}"
        );
        assert_eq!(backlog.take(&untimed, wall(), ago), None);
        assert_eq!(
            backlog.summary(wall()).as_deref(),
            Some(
                "2025-03-04T05:06:07.089Z ... 6 more drops from before this daemon started not \
                 shown (1 of them from an older build's program, which kept no time)"
            )
        );
        // Said once.
        assert_eq!(backlog.summary(wall()), None);
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
        assert_eq!(logged.len(), 1);
        let (time, rest) = logged[0].split_once(' ').expect("a time first");
        assert_eq!(time.len(), "2025-03-04T05:06:07.089Z".len(), "{time}");
        assert!(time.ends_with('Z'), "{time}");
        assert_eq!(
            rest,
            format!(
                "... {} more drops not shown (at most {LINES_PER_SEC} lines a second)",
                500 - LINES_PER_SEC
            )
        );
    }
}
