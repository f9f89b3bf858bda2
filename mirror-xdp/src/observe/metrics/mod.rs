//! Prometheus metrics: the counters of [`Stats`] in the text exposition format 0.0.4, and a
//! tiny HTTP server for them ([`serve`], in `metrics/http.rs`).
//!
//! A daemon renders on every scrape, so the numbers are as fresh as `stats`:
//!
//! ```ignore
//! let stop = Arc::new(AtomicBool::new(false));
//! let handle = metrics::serve(addr, move || metrics::scrape_pinned(&paths), stop.clone())?;
//! // ... on shutdown:
//! stop.store(true, Ordering::Relaxed);
//! handle.join().ok();
//! ```

mod http;

use std::fmt::Write as _;

use mirror_xdp_common::Reason;

pub use http::{serve, serve_listener};

use crate::{
    kernel::maps::Maps,
    observe::stats::Stats,
    state::{Paths, Record},
};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Policy reloads so far, as the state record keeps them (the maps do not know them).
pub use crate::state::ReloadCounts;

/// The metrics of one counter snapshot. Every reason gets its lines, zero or not, so a
/// series never appears out of nowhere and `rate()` sees its start.
pub fn render(stats: &Stats, reloads: ReloadCounts) -> String {
    let mut out = String::new();
    for (name, field, help) in [
        (
            "mirror_xdp_packets_total",
            "packets",
            "Packets judged by the XDP program, per verdict reason.",
        ),
        (
            "mirror_xdp_bytes_total",
            "bytes",
            "Bytes (whole frames) judged by the XDP program, per verdict reason.",
        ),
        (
            "mirror_xdp_dropped_packets_total",
            "drop_packets",
            "Packets dropped per verdict reason (in monitor mode: that would have been dropped).",
        ),
    ] {
        header(&mut out, name, help, "counter");
        for reason in Reason::ALL {
            let value = stats.reason_count(reason.name(), field);
            sample(&mut out, name, &[("reason", reason.name())], value);
        }
    }

    header(
        &mut out,
        "mirror_xdp_port_packets_total",
        "Packets to a port a rule lists, per protocol, port and verdict (drop: would-be drops in monitor mode).",
        "counter",
    );
    for p in &stats.ports {
        let port = p.port.to_string();
        for (verdict, value) in [("pass", p.pass_packets), ("drop", p.drop_packets)] {
            let labels = [("proto", p.proto), ("port", &port), ("verdict", verdict)];
            sample(&mut out, "mirror_xdp_port_packets_total", &labels, value);
        }
    }

    header(
        &mut out,
        "mirror_xdp_protocol_packets_total",
        "Packets of an IP protocol a [[protocols]] rule lists, per protocol and verdict (drop: would-be drops in monitor mode).",
        "counter",
    );
    for p in &stats.protocols {
        for (verdict, value) in [("pass", p.pass_packets), ("drop", p.drop_packets)] {
            let labels = [("protocol", p.protocol.as_str()), ("verdict", verdict)];
            sample(
                &mut out,
                "mirror_xdp_protocol_packets_total",
                &labels,
                value,
            );
        }
    }

    header(
        &mut out,
        "mirror_xdp_policy_generation",
        "Generation of the policy in force (1 at attach, +1 per reload).",
        "gauge",
    );
    sample(
        &mut out,
        "mirror_xdp_policy_generation",
        &[],
        stats.policy.generation,
    );

    header(
        &mut out,
        "mirror_xdp_reloads_total",
        // The state record counts them, whoever reloaded: not only this daemon.
        "Policy reloads since the enforcer was attached (the reload command, the daemon's \
         reloads and adoptions), per result.",
        "counter",
    );
    for (result, value) in [("ok", reloads.ok), ("error", reloads.error)] {
        sample(
            &mut out,
            "mirror_xdp_reloads_total",
            &[("result", result)],
            value,
        );
    }

    let limiter = [
        (
            "mirror_xdp_limiter_entries",
            "Sources the per-source limiter table tracks now.",
            "gauge",
            stats.limiter.entries,
        ),
        (
            "mirror_xdp_limiter_capacity",
            "Size of the per-source limiter table (attach --limiter-entries).",
            "gauge",
            stats.limiter.capacity as u64,
        ),
        (
            "mirror_xdp_limiter_evictions_total",
            "Sources the full limiter table forgot to make room (a flood of spoofed sources).",
            "counter",
            stats.limiter.evicted,
        ),
    ];
    for (name, help, kind, value) in limiter {
        header(&mut out, name, help, kind);
        sample(&mut out, name, &[], value);
    }

    header(
        &mut out,
        "mirror_xdp_info",
        "The enforcer's mode: enforce drops, monitor only counts.",
        "gauge",
    );
    sample(&mut out, "mirror_xdp_info", &[("mode", stats.mode)], 1);

    header(
        &mut out,
        "mirror_xdp_interface_info",
        "Interfaces the enforcer is attached to, with XDP mode, egress hook and program id.",
        "gauge",
    );
    for i in &stats.interfaces {
        let prog_id = i.prog_id.to_string();
        let labels = [
            ("iface", i.name.as_str()),
            ("xdp_mode", i.xdp_mode.as_str()),
            ("egress", i.egress.name()),
            ("prog_id", prog_id.as_str()),
        ];
        sample(&mut out, "mirror_xdp_interface_info", &labels, 1);
    }
    out
}

/// Reads the attached enforcer from its pins and state file (reload counts included) and
/// renders its metrics: a ready-made `source` for [`serve`]. Opening the pins on every
/// scrape costs a few dozen syscalls and follows a reload that replaced the record.
pub fn scrape_pinned(paths: &Paths) -> Result<String, String> {
    let record = Record::load(paths)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "nothing is attached (no state in {})",
                paths.state_dir.display()
            )
        })?;
    let maps = Maps::open_pinned(&paths.bpffs).map_err(|e| e.to_string())?;
    let stats = Stats::read(&maps, &record).map_err(|e| e.to_string())?;
    Ok(render(&stats, record.reloads))
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values: backslash, double quote and line feed are escaped (format 0.0.4).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed are escaped; quotes stay as they are.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{
        observe::stats::{PortStats, ProtocolStats},
        state::{InterfaceRecord, PolicyRecord},
    };

    fn stats() -> Stats {
        let mut reasons = serde_json::Map::new();
        // Only two reasons filled in: the others must still get zero lines.
        reasons.insert(
            "allowed".into(),
            serde_json::json!({"packets": 10, "bytes": 640, "drop_packets": 0, "drop_bytes": 0}),
        );
        reasons.insert(
            "port_closed".into(),
            serde_json::json!({"packets": 5, "bytes": 300, "drop_packets": 5, "drop_bytes": 300}),
        );
        Stats {
            mode: "enforce",
            interfaces: vec![InterfaceRecord {
                name: "eth0".into(),
                xdp_mode: "native".into(),
                egress: Default::default(),
                prog_id: 42,
            }],
            policy: PolicyRecord {
                path: PathBuf::from("/etc/mirror-xdp/policy.toml"),
                generation: 3,
            },
            reasons,
            ports: vec![PortStats {
                proto: "tcp",
                port: 80,
                pass_packets: 10,
                drop_packets: 2,
            }],
            protocols: vec![ProtocolStats {
                protocol: "vrrp".into(),
                pass_packets: 7,
                drop_packets: 3,
            }],
            limiter: Default::default(),
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn exact_sample_lines() {
        let text = render(&stats(), ReloadCounts { ok: 2, error: 1 });
        let l = lines(&text);
        for want in [
            "# HELP mirror_xdp_packets_total Packets judged by the XDP program, per verdict reason.",
            "# TYPE mirror_xdp_packets_total counter",
            "mirror_xdp_packets_total{reason=\"allowed\"} 10",
            "mirror_xdp_packets_total{reason=\"port_closed\"} 5",
            "mirror_xdp_packets_total{reason=\"non_ip\"} 0",
            "mirror_xdp_bytes_total{reason=\"allowed\"} 640",
            "mirror_xdp_dropped_packets_total{reason=\"port_closed\"} 5",
            "mirror_xdp_dropped_packets_total{reason=\"allowed\"} 0",
            "# TYPE mirror_xdp_port_packets_total counter",
            "mirror_xdp_port_packets_total{proto=\"tcp\",port=\"80\",verdict=\"pass\"} 10",
            "mirror_xdp_port_packets_total{proto=\"tcp\",port=\"80\",verdict=\"drop\"} 2",
            "# TYPE mirror_xdp_protocol_packets_total counter",
            "mirror_xdp_protocol_packets_total{protocol=\"vrrp\",verdict=\"pass\"} 7",
            "mirror_xdp_protocol_packets_total{protocol=\"vrrp\",verdict=\"drop\"} 3",
            "# TYPE mirror_xdp_policy_generation gauge",
            "mirror_xdp_policy_generation 3",
            "# HELP mirror_xdp_reloads_total Policy reloads since the enforcer was attached \
             (the reload command, the daemon's reloads and adoptions), per result.",
            "# TYPE mirror_xdp_reloads_total counter",
            "mirror_xdp_reloads_total{result=\"ok\"} 2",
            "mirror_xdp_reloads_total{result=\"error\"} 1",
            "# TYPE mirror_xdp_info gauge",
            "mirror_xdp_info{mode=\"enforce\"} 1",
            "# TYPE mirror_xdp_interface_info gauge",
            "mirror_xdp_interface_info{iface=\"eth0\",xdp_mode=\"native\",egress=\"tcx\",prog_id=\"42\"} 1",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn every_reason_once_per_family_and_every_metric_typed() {
        let text = render(&stats(), ReloadCounts::default());
        for family in [
            "mirror_xdp_packets_total",
            "mirror_xdp_bytes_total",
            "mirror_xdp_dropped_packets_total",
        ] {
            for reason in Reason::ALL {
                let prefix = format!("{family}{{reason=\"{}\"}} ", reason.name());
                let n = text.lines().filter(|l| l.starts_with(&prefix)).count();
                assert_eq!(n, 1, "{prefix}in\n{text}");
            }
        }
        // Every sample's family has exactly one TYPE line, before its first sample.
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!typed.contains(&name), "second TYPE for {name}");
                typed.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(&name), "{name} sampled before its TYPE");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("eth0.100"), "eth0.100");
        let mut s = stats();
        s.interfaces[0].name = "we\"ird\\if\n".into();
        let text = render(&s, ReloadCounts::default());
        assert!(
            text.lines().any(|l| l
                == "mirror_xdp_interface_info{iface=\"we\\\"ird\\\\if\\n\",xdp_mode=\"native\",egress=\"tcx\",prog_id=\"42\"} 1"),
            "{text}"
        );
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }

    #[test]
    fn monitor_mode_and_no_interfaces() {
        let mut s = stats();
        s.mode = "monitor";
        s.interfaces.clear();
        s.ports.clear();
        let text = render(&s, ReloadCounts::default());
        assert!(text.contains("\nmirror_xdp_info{mode=\"monitor\"} 1\n"));
        assert!(!text.contains("mirror_xdp_interface_info{"));
        assert!(!text.contains("mirror_xdp_port_packets_total{"));
        // The families stay declared, so dashboards see them typed even when empty.
        assert!(text.contains("# TYPE mirror_xdp_port_packets_total counter\n"));
    }
}
