//! The counters of an attached enforcer in the shape of `stats --json` (README, "Command
//! line"), and as a table for people.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use mirror_xdp_common::{config_flag, port_index};
use serde::Serialize;

use crate::{
    compile::proto_slot,
    kernel::maps::{LimiterUsage, Maps, MapsError},
    policy::Proto,
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
        Ok(Stats {
            mode: if monitor { "monitor" } else { "enforce" },
            interfaces: record.interfaces.clone(),
            policy: record.policy.clone(),
            reasons,
            ports,
            limiter: maps.limiter_usage(record.limiter_entries)?,
        })
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
        let l = &self.limiter;
        let _ = writeln!(
            out,
            "\nlimiter: {} of {} sources tracked, {} created, {} evicted by a full table",
            l.entries, l.capacity, l.created, l.evicted
        );
        out
    }
}
