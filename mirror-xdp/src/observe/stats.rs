//! The counters of an attached enforcer in the shape of `stats --json` (README, "Command
//! line"), and as a table for people; rates between two readings (`stats --watch`); the rows
//! to show (`--nonzero`, `--top`).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use mirror_xdp_common::{config_flag, port_index, protocol_index};
use serde::Serialize;

use crate::{
    compile::proto_slot,
    kernel::maps::{LimiterUsage, Maps, MapsError},
    policy::{Proto, protocols},
    state::{InterfaceRecord, PolicyRecord, Record},
};

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub mode: &'static str,
    pub interfaces: Vec<InterfaceRecord>,
    pub policy: PolicyRecord,
    /// Every reason, in verdict order.
    pub reasons: serde_json::Map<String, serde_json::Value>,
    pub ports: Vec<PortStats>,
    /// The IP protocols `[[protocols]]` rules list.
    pub protocols: Vec<ProtocolStats>,
    /// The per-source limiter table: sources tracked, created, evicted by a full table.
    pub limiter: LimiterUsage,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortStats {
    pub proto: &'static str,
    pub port: u16,
    pub pass_packets: u64,
    pub drop_packets: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtocolStats {
    /// Its name (`vrrp`), or its number for protocols without one.
    pub protocol: String,
    pub pass_packets: u64,
    pub drop_packets: u64,
}

/// The counters of a reason, in the order `stats` shows them.
pub const REASON_FIELDS: [&str; 4] = ["packets", "bytes", "drop_packets", "drop_bytes"];

/// Per-second rates between two readings, in the shape of [`Stats`]' counters.
#[derive(Clone, Debug, Serialize)]
pub struct Rates {
    /// Seconds between the two readings.
    pub interval_secs: f64,
    /// Per reason: `REASON_FIELDS` per second.
    pub reasons: serde_json::Map<String, serde_json::Value>,
    pub ports: Vec<PortRates>,
    pub protocols: Vec<ProtocolRates>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortRates {
    pub proto: &'static str,
    pub port: u16,
    pub pass_packets: f64,
    pub drop_packets: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtocolRates {
    pub protocol: String,
    pub pass_packets: f64,
    pub drop_packets: f64,
}

/// Which rows to show: all, those with a nonzero number, the busiest ports. Rows of
/// reasons and of ports alike go with `nonzero`; `top` keeps the `top` port rows with the
/// most packets (passed and dropped), busiest first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rows {
    pub nonzero: bool,
    pub top: Option<usize>,
}

impl Rows {
    fn reasons(self, reasons: &mut serde_json::Map<String, serde_json::Value>) {
        if self.nonzero {
            reasons.retain(|_, v| REASON_FIELDS.iter().any(|f| number(v, f) > 0.0));
        }
    }

    fn ports<T>(self, rows: &mut Vec<T>, packets: impl Fn(&T) -> f64) {
        if self.nonzero {
            rows.retain(|r| packets(r) > 0.0);
        }
        if let Some(n) = self.top {
            // A stable sort: equally busy ports stay in rule order.
            rows.sort_by(|a, b| packets(b).total_cmp(&packets(a)));
            rows.truncate(n);
        }
    }
}

fn number(v: &serde_json::Value, field: &str) -> f64 {
    v.get(field).and_then(|n| n.as_f64()).unwrap_or(0.0)
}

impl Rates {
    /// Rates from `prev` to `cur`, `elapsed` apart. A counter that went down (a reset in
    /// between) counts from zero; a port `prev` did not list (a range port's first packets)
    /// was zero.
    pub fn between(prev: &Stats, cur: &Stats, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64().max(1e-3);
        // Three decimals: enough for a rate, and short JSON.
        let rate = |now: u64, before: u64| {
            (now.saturating_sub(before) as f64 / secs * 1000.0).round() / 1000.0
        };
        let mut reasons = serde_json::Map::new();
        for name in cur.reasons.keys() {
            let per_sec: serde_json::Map<_, _> = REASON_FIELDS
                .iter()
                .map(|f| {
                    let r = rate(cur.reason_count(name, f), prev.reason_count(name, f));
                    (f.to_string(), serde_json::json!(r))
                })
                .collect();
            reasons.insert(name.clone(), per_sec.into());
        }
        let before: HashMap<_, _> = prev.ports.iter().map(|p| ((p.proto, p.port), p)).collect();
        let ports = cur
            .ports
            .iter()
            .map(|p| {
                let (pass, drop) = before
                    .get(&(p.proto, p.port))
                    .map_or((0, 0), |b| (b.pass_packets, b.drop_packets));
                PortRates {
                    proto: p.proto,
                    port: p.port,
                    pass_packets: rate(p.pass_packets, pass),
                    drop_packets: rate(p.drop_packets, drop),
                }
            })
            .collect();
        let before: HashMap<_, _> = prev.protocols.iter().map(|p| (&p.protocol, p)).collect();
        let protocols = cur
            .protocols
            .iter()
            .map(|p| {
                let (pass, drop) = before
                    .get(&p.protocol)
                    .map_or((0, 0), |b| (b.pass_packets, b.drop_packets));
                ProtocolRates {
                    protocol: p.protocol.clone(),
                    pass_packets: rate(p.pass_packets, pass),
                    drop_packets: rate(p.drop_packets, drop),
                }
            })
            .collect();
        Rates {
            interval_secs: (secs * 1000.0).round() / 1000.0,
            reasons,
            ports,
            protocols,
        }
    }

    /// One rate of a reason (a `REASON_FIELDS` name); 0 when not there.
    pub fn reason_rate(&self, reason: &str, field: &str) -> f64 {
        self.reasons.get(reason).map_or(0.0, |v| number(v, field))
    }

    /// Keeps the rows `rows` selects, by their rates.
    pub fn select(&mut self, rows: Rows) {
        rows.reasons(&mut self.reasons);
        rows.ports(&mut self.ports, |p| p.pass_packets + p.drop_packets);
        rows.ports(&mut self.protocols, |p| p.pass_packets + p.drop_packets);
    }
}

impl Stats {
    /// Reads the counters. Ports of single-port rules are always listed; ports inside a
    /// range only when they saw packets, so a wide range does not flood the output.
    pub fn read(maps: &Maps, record: &Record) -> Result<Stats, MapsError> {
        let monitor = maps.config_flags()? & config_flag::MONITOR != 0;
        let mut reasons = serde_json::Map::new();
        for (reason, count) in maps.reason_counts()? {
            reasons.insert(
                reason.name().to_string(),
                serde_json::json!({
                    "packets": count.packets,
                    "bytes": count.bytes,
                    "drop_packets": count.drop_packets,
                    "drop_bytes": count.drop_bytes,
                }),
            );
        }
        let mut seen = BTreeSet::new();
        let mut ports = Vec::new();
        for rule in &record.ports {
            let proto = Proto::from(rule.proto);
            for port in rule.lo..=rule.hi {
                if !seen.insert((proto, port)) {
                    continue;
                }
                let count = maps.port_count(port_index(proto_slot(proto), port))?;
                let busy = count.pass_packets + count.drop_packets > 0;
                if rule.lo == rule.hi || busy {
                    ports.push(PortStats {
                        proto: proto.name(),
                        port,
                        pass_packets: count.pass_packets,
                        drop_packets: count.drop_packets,
                    });
                }
            }
        }
        let mut protocols = Vec::new();
        for protocol in &record.protocols {
            let count = maps.port_count(protocol_index(*protocol))?;
            protocols.push(ProtocolStats {
                protocol: protocols::name(*protocol),
                pass_packets: count.pass_packets,
                drop_packets: count.drop_packets,
            });
        }
        Ok(Stats {
            mode: if monitor { "monitor" } else { "enforce" },
            interfaces: record.interfaces.clone(),
            policy: record.policy.clone(),
            reasons,
            ports,
            protocols,
            limiter: maps.limiter_usage(record.limiter_entries)?,
        })
    }

    /// Keeps the rows `rows` selects, by their counts.
    pub fn select(&mut self, rows: Rows) {
        rows.reasons(&mut self.reasons);
        rows.ports(&mut self.ports, |p| {
            (p.pass_packets + p.drop_packets) as f64
        });
        rows.ports(&mut self.protocols, |p| {
            (p.pass_packets + p.drop_packets) as f64
        });
    }

    /// Keeps the rows `rates` lists, in its order: a `--watch --json` line lists the same
    /// rows in its totals and its rates.
    pub fn select_like(&mut self, rates: &Rates) {
        self.reasons
            .retain(|name, _| rates.reasons.contains_key(name));
        let mut by_key: HashMap<_, _> = std::mem::take(&mut self.ports)
            .into_iter()
            .map(|p| ((p.proto, p.port), p))
            .collect();
        self.ports = rates
            .ports
            .iter()
            .filter_map(|r| by_key.remove(&(r.proto, r.port)))
            .collect();
        let mut by_name: HashMap<_, _> = std::mem::take(&mut self.protocols)
            .into_iter()
            .map(|p| (p.protocol.clone(), p))
            .collect();
        self.protocols = rates
            .protocols
            .iter()
            .filter_map(|r| by_name.remove(&r.protocol))
            .collect();
    }

    /// One counter of a reason (`packets`, `bytes`, `drop_packets`, `drop_bytes`); 0 when
    /// the reason or the counter is not there.
    pub fn reason_count(&self, reason: &str, field: &str) -> u64 {
        self.reasons
            .get(reason)
            .and_then(|v| v.get(field))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    /// The counters as aligned tables.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let drop_word = if self.mode == "monitor" {
            "would drop"
        } else {
            "dropped"
        };
        let _ = writeln!(
            out,
            "mode {}  policy {} (generation {})",
            self.mode,
            self.policy.path.display(),
            self.policy.generation
        );
        for i in &self.interfaces {
            let _ = writeln!(
                out,
                "interface {} ({} mode, program {})",
                i.name, i.xdp_mode, i.prog_id
            );
        }
        let _ = writeln!(
            out,
            "\n{:<20} {:>12} {:>14} {:>12}",
            "reason", "packets", "bytes", drop_word
        );
        for name in self.reasons.keys() {
            let get = |k: &str| self.reason_count(name, k);
            let _ = writeln!(
                out,
                "{:<20} {:>12} {:>14} {:>12}",
                name,
                get("packets"),
                get("bytes"),
                get("drop_packets")
            );
        }
        let _ = writeln!(
            out,
            "\n{:<6} {:>6} {:>12} {:>12}",
            "proto", "port", "passed", drop_word
        );
        for p in &self.ports {
            let _ = writeln!(
                out,
                "{:<6} {:>6} {:>12} {:>12}",
                p.proto, p.port, p.pass_packets, p.drop_packets
            );
        }
        if !self.protocols.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<13} {:>12} {:>12}",
                "protocol", "passed", drop_word
            );
            for p in &self.protocols {
                let _ = writeln!(
                    out,
                    "{:<13} {:>12} {:>12}",
                    p.protocol, p.pass_packets, p.drop_packets
                );
            }
        }
        let l = &self.limiter;
        let _ = writeln!(
            out,
            "\nlimiter: {} of {} sources tracked, {} created, {} evicted by a full table",
            l.entries, l.capacity, l.created, l.evicted
        );
        out
    }
}
