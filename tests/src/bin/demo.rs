//! `cargo xtask demo`: a throwaway testbed (two namespaces on a veth pair) with real servers,
//! every port probed from the client before and after `mirror-xdp attach`, a table of what
//! changed next to what the policy expects, the counters, and a clean teardown.
//!
//! Usage: demo --policy FILE --mirror-xdp BIN. Exits 1 if any port's after-state differs
//! from what the policy expects.
#![expect(
    unused_crate_dependencies,
    reason = "a binary of the tests package links all its dependencies and uses a few"
)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mirror_xdp::policy::{Policy, Proto};
use mirror_xdp_tests::{
    probe::{ProbeResult, UdpResult, tcp_connect, udp_probe},
    servers::{Nginx, RsyncDaemon, TcpListenerSet, UdpEchoSet},
    testbed::{ADMIN_V4, ADMIN_V6, CLIENT_V4, CLIENT_V6, SERVER_IF, Testbed},
};

/// TCP ports with a listener behind them: the mirror's services and a few that a mirror
/// should never expose (SMTP, MySQL, Redis, an alternate HTTPS).
const TCP_LISTEN: &[u16] = &[
    443, 22, 8080, 5000, 9000, 3128, 30001, 30005, 30010, 25, 3306, 6379, 8443,
];
/// UDP ports with an echo server: the syslog channel, and SNMP and memcached (classic
/// amplification vectors).
const UDP_LISTEN: &[u16] = &[5140, 161, 11211];
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

struct Row {
    proto: Proto,
    port: u16,
    src: IpAddr,
    who: &'static str,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: {e:#}");
        std::process::exit(1);
    }
}

/// A throwaway veth testbed: every port probed before and after `mirror-xdp attach`.
#[derive(Parser)]
#[command(name = "demo")]
struct Args {
    /// The policy to attach.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The mirror-xdp binary to run.
    #[arg(long = "mirror-xdp", value_name = "BIN")]
    mirror_xdp: PathBuf,
}

fn run() -> Result<()> {
    let args = Args::parse();
    let policy_path = std::fs::canonicalize(&args.policy)
        .with_context(|| format!("policy file {}", args.policy.display()))?;
    let bin = args.mirror_xdp;
    let policy = Policy::load(&policy_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("demo: building a testbed (namespaces, veth pair, servers)");
    let bed = Testbed::new()?;
    let _nginx = Nginx::start(&bed.server)?;
    let _rsync = RsyncDaemon::start(&bed.server)?;
    let _tcp = TcpListenerSet::start(&bed.server, TCP_LISTEN)?;
    let _udp = UdpEchoSet::start(&bed.server, UDP_LISTEN)?;

    let rows = rows();
    println!("demo: probing {} ports before attaching", rows.len());
    let before = probe_all(&bed, &rows)?;

    let policy_arg = policy_path.to_string_lossy().into_owned();
    let out = bed.cli(
        &bin,
        &["attach", "--iface", SERVER_IF, "--policy", &policy_arg],
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("mirror-xdp attach failed ({})", out.status);
    }
    println!("demo: probing again with mirror-xdp attached");
    let after = probe_all(&bed, &rows)?;

    println!(
        "\n{:<5} {:>5}  {:<22} {:<9} {:<9} {:<9}",
        "proto", "port", "from", "before", "after", "expected"
    );
    let mut wrong = 0;
    for ((row, b), a) in rows.iter().zip(&before).zip(&after) {
        let expected = expected(&policy, row);
        let mark = if *a == expected { "" } else { "  <-- differs" };
        if *a != expected {
            wrong += 1;
        }
        println!(
            "{:<5} {:>5}  {:<22} {:<9} {:<9} {:<9}{mark}",
            row.proto.name(),
            row.port,
            format!("{} ({})", row.src, row.who),
            b,
            a,
            expected
        );
    }

    println!("\ndemo: counters (mirror-xdp stats)");
    let stats = bed.cli(&bin, &["stats"]);
    print!("{}", String::from_utf8_lossy(&stats.stdout));

    let out = bed.cli(&bin, &["detach"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("demo: testbed removed");
    if wrong > 0 {
        bail!("{wrong} port(s) differ from what the policy expects");
    }
    println!("demo: every port behaves as the policy says");
    Ok(())
}

/// Every listening port from the ordinary client, plus the admin's view of SSH and the
/// IPv6 view of HTTP and SSH.
fn rows() -> Vec<Row> {
    let mut rows = vec![Row {
        proto: Proto::Tcp,
        port: 80,
        src: CLIENT_V4.into(),
        who: "client",
    }];
    rows.push(Row {
        proto: Proto::Tcp,
        port: 873,
        src: CLIENT_V4.into(),
        who: "client",
    });
    for &port in TCP_LISTEN {
        rows.push(Row {
            proto: Proto::Tcp,
            port,
            src: CLIENT_V4.into(),
            who: "client",
        });
    }
    for (port, src, who) in [
        (22, IpAddr::from(ADMIN_V4), "admin"),
        (80, CLIENT_V6.into(), "client"),
        (22, CLIENT_V6.into(), "client"),
        (22, ADMIN_V6.into(), "admin"),
    ] {
        rows.push(Row {
            proto: Proto::Tcp,
            port,
            src,
            who,
        });
    }
    for &port in UDP_LISTEN {
        rows.push(Row {
            proto: Proto::Udp,
            port,
            src: CLIENT_V4.into(),
            who: "client",
        });
    }
    rows
}

fn probe_all(bed: &Testbed, rows: &[Row]) -> Result<Vec<&'static str>> {
    rows.iter()
        .map(|row| {
            let dst = SocketAddr::new(Testbed::server_addr_for(row.src), row.port);
            Ok(match row.proto {
                Proto::Tcp => match tcp_connect(&bed.client, row.src, dst, PROBE_TIMEOUT)? {
                    ProbeResult::Open(_) => "open",
                    ProbeResult::Refused => "closed",
                    ProbeResult::Timeout => "filtered",
                },
                Proto::Udp => match udp_probe(&bed.client, row.src, dst, PROBE_TIMEOUT)? {
                    UdpResult::Answered => "open",
                    UdpResult::Refused => "closed",
                    UdpResult::NoAnswer => "filtered",
                },
            })
        })
        .collect()
}

/// What the policy says about a row: open if a rule lists the port and its `from` (if any)
/// holds the source, or the policy trusts the source or passes unlisted ports; otherwise
/// filtered (dropped without an answer).
fn expected(policy: &Policy, row: &Row) -> &'static str {
    let inside = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&row.src));
    if inside(&policy.allow) {
        return "open";
    }
    if inside(&policy.deny) {
        return "filtered";
    }
    let dst = Testbed::server_addr_for(row.src);
    let open = match policy.rule_for(row.proto, row.port, dst) {
        Some(rule) => rule.from.as_deref().is_none_or(inside),
        None => policy.settings.default == mirror_xdp::policy::Action::Pass,
    };
    if open || policy.settings.mode == mirror_xdp::policy::Mode::Monitor {
        "open"
    } else {
        "filtered"
    }
}
