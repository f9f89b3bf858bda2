//! The performance goals of the project, each with this run's figure and whether it is met.

use crate::control_plane;
use crate::end_to_end::{self, capacity, stats};
use crate::scaling;

pub struct Figures<'a> {
    /// Test-run cost of a closed-port drop over a bare XDP_DROP.
    pub closed_vs_drop: Option<f64>,
    /// Test-run costs over a bare XDP_DROP of the paths past the source lists.
    pub trusted_vs_drop: Option<f64>,
    pub source_not_allowed_vs_drop: Option<f64>,
    pub return_vs_drop: Option<f64>,
    /// Test-run cost of an allowed packet over xdp-filter's for the same rules.
    pub allowed_vs_filter: Option<f64>,
    pub end_to_end: &'a end_to_end::Outcome,
    pub scaling: &'a [scaling::Row],
    /// The worst path with realistic lists: over a bare XDP_DROP, and over small lists.
    pub lists_worst: Option<(f64, f64)>,
    pub control: &'a control_plane::Outcome,
    /// A spoofed SYN flood: mirror-xdp's answers per receiving core-second over the kernel's
    /// own cookies, and the share of legitimate connects completed meanwhile.
    pub syn_flood: Option<(f64, f64)>,
    /// A download over a connection made from a cookie over one made normally (a guest's
    /// run: the host has no netem).
    pub cookie_download: Option<f64>,
    /// 100,000 CrowdSec decisions from one pull: ms until in force, the pull included.
    pub crowdsec: Option<f64>,
    /// A port no rule with `to` lists, in a policy with such rules over one without: the
    /// worst of those paths.
    pub destinations_worst: Option<f64>,
}

/// One goal: what, the figure, the bound, and whether the bound is an upper one.
struct Goal {
    what: &'static str,
    figure: Option<f64>,
    bound: f64,
    at_most: bool,
    unit: &'static str,
}

pub fn table(f: &Figures) -> String {
    // Drops per receiving core-second of a row of the end-to-end table.
    let rate = |name: &str| {
        f.end_to_end
            .rows
            .iter()
            .find(|r| r.name.starts_with(name))
            .map(|r| capacity(stats(&r.receiver_ns).0))
    };
    let mirror = rate("mirror-xdp");
    let vs = |other: &str| mirror.zip(rate(other)).map(|(m, o)| m / o);
    let cost = |prefixes: usize| {
        f.scaling
            .iter()
            .find(|r| r.prefixes == prefixes)
            .map(|r| r.median_ns as f64)
    };
    let goals = [
        Goal {
            what: "closed-port drop vs a bare XDP_DROP (test run)",
            figure: f.closed_vs_drop,
            bound: 1.3,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "allowed packet vs xdp-filter, same rules (test run)",
            figure: f.allowed_vs_filter,
            bound: 0.3,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "trusted source vs a bare XDP_DROP (test run)",
            figure: f.trusted_vs_drop,
            bound: 2.0,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "source_not_allowed vs a bare XDP_DROP (test run)",
            figure: f.source_not_allowed_vs_drop,
            bound: 2.0,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "return traffic vs a bare XDP_DROP (test run)",
            figure: f.return_vs_drop,
            bound: 2.5,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "end-to-end drop rate vs a bare XDP_DROP",
            figure: vs("bare XDP_DROP"),
            bound: 0.97,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "end-to-end drop rate vs nftables netdev ingress",
            figure: vs("nftables"),
            bound: 4.0,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "end-to-end drop rate vs iptables raw PREROUTING",
            figure: vs("iptables"),
            bound: 4.5,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "every path with realistic lists vs a bare XDP_DROP (test run, worst path)",
            figure: f.lists_worst.map(|(vs_drop, _)| vs_drop),
            bound: 2.0,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "every path with realistic lists vs small lists (test run, worst path)",
            figure: f.lists_worst.map(|(_, vs_small)| vs_small),
            bound: 1.3,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "1,000,000 deny prefixes vs 10 (test run, varying sources)",
            figure: cost(1_000_000)
                .zip(cost(10))
                .map(|(big, small)| big / small),
            bound: 2.0,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "reload of a 100,000-prefix policy to an update of it (until in force)",
            figure: Some(stats(&f.control.reload_update_ms).0),
            bound: 100.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "1,000,000 prefixes loaded (`attach`, all of it)",
            figure: Some(stats(&f.control.attach_1m_ms).0),
            bound: 2000.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "1,000,000 IPv4 /32s loaded (`attach`, all of it)",
            figure: Some(stats(&f.control.attach_1m_hosts_ms).0),
            bound: 1000.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "1,000,000 IPv6 prefixes loaded (`attach`, all of it)",
            figure: Some(stats(&f.control.attach_1m_v6_ms).0),
            bound: 2000.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "100,000 live deny entries from standard input (`source deny --file -`)",
            figure: Some(stats(&f.control.live_100k_ms).0),
            bound: 200.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "a port no `to` rule lists, with `to` rules in the policy vs without (worst)",
            figure: f.destinations_worst,
            bound: 1.1,
            at_most: true,
            unit: "x",
        },
        Goal {
            what: "100,000 CrowdSec decisions from one pull, until in force (pull included)",
            figure: f.crowdsec,
            bound: 2000.0,
            at_most: true,
            unit: " ms",
        },
        Goal {
            what: "SYN flood: cookies answered per receiving core-second vs the kernel's own",
            figure: f.syn_flood.map(|(ratio, _)| ratio),
            bound: 5.0,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "SYN flood: legitimate connects completed with mirror-xdp's cookies",
            figure: f.syn_flood.map(|(_, share)| share * 100.0),
            bound: 100.0,
            at_most: false,
            unit: "%",
        },
        Goal {
            what: "64 MiB over 50 ms of delay: a cookie connection vs a normal one (guest)",
            figure: f.cookie_download,
            bound: 0.8,
            at_most: false,
            unit: "x",
        },
        Goal {
            what: "kernel memory at default sizes, bench policy (spare included)",
            figure: Some(f.control.maps.iter().map(|m| m.2).sum::<u64>() as f64 / (1 << 20) as f64),
            bound: 32.0,
            at_most: true,
            unit: " MiB",
        },
    ];
    let mut t = String::from("| goal | bound | this run | met |\n|---|---:|---:|---|\n");
    for g in goals {
        let (figure, met) = match g.figure {
            Some(x) => {
                let met = if g.at_most {
                    x <= g.bound
                } else {
                    x >= g.bound
                };
                (fmt(x, g.unit), if met { "yes" } else { "**no**" })
            }
            None => ("not measured".to_string(), "?"),
        };
        let bound = format!(
            "{} {}",
            if g.at_most { "≤" } else { "≥" },
            fmt(g.bound, g.unit)
        );
        t.push_str(&format!("| {} | {bound} | {figure} | {met} |\n", g.what));
    }
    // What bounds the end-to-end ratios here: the veth receive path's own cost per frame.
    let bare = rate("bare XDP_DROP");
    let ceiling = |other: &str| bare.zip(rate(other)).map(|(b, o)| b / o);
    let floor_ns = f
        .end_to_end
        .rows
        .iter()
        .find(|r| r.name.starts_with("bare XDP_DROP"))
        .map(|r| stats(&r.receiver_ns).0);
    if let (Some(nft), Some(ipt), Some(ns)) = (ceiling("nftables"), ceiling("iptables"), floor_ns) {
        t.push_str(&format!(
            "\nOn this testbed a bare `XDP_DROP` program itself drops {nft:.2}x the frames per \
             core-second of nftables and {ipt:.2}x those of iptables: the veth receive path \
             (taking the frame from the peer, running XDP, recycling the page to the sending \
             CPU) costs {ns:.0} ns per frame before any program judges it, and every XDP row \
             pays it. No XDP program can beat those ratios here; on a NIC, where that path is \
             much shorter, the ratios grow.\n"
        ));
    }
    t
}

fn fmt(x: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{x:.2}x")
    } else if unit == "%" || unit == " MiB" {
        format!("{x:.1}{unit}")
    } else {
        format!("{x:.0}{unit}")
    }
}
