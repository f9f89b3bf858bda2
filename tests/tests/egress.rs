//! `[egress]`: with `default = "drop"` the server may open connections only to what its
//! egress rules list. Its rsync to the upstream mirror works, IPv4 and IPv6; its curl to
//! another port and its rsync to another address of the upstream are dropped (counted as
//! `egress_denied`); clients' connections to the server still get their replies; monitor
//! mode counts what it would drop and sends it; with `default = "pass"` everything goes
//! out again. The daemon's drop log shows the drops; `check` warns when DNS cannot go out.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::IpAddr;
use std::time::Duration;

use mirror_xdp_tests::cli::{attach_policy, cli_bin, reason, run_ok, stats, write_policy};
use mirror_xdp_tests::probe::{curl, rsync};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{NGINX_INDEX, Nginx, RSYNC_FILE, RsyncDaemon};
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::poll_until;

/// HTTP served to clients; out, rsync to the upstream's mirror addresses only.
const POLICY: &str = r#"
version = 1
[sets]
upstream = ["198.51.100.2", "2001:db8:1::2"]
[[ports]]
proto = "tcp"
ports = [80]
[egress]
default = "drop"
[[egress.ports]]
proto = "tcp"
ports = [873]
to = ["upstream"]
[[egress.ports]]
proto = "udp"
ports = [53, 123]
"#;

/// The server's rsync of the upstream's module from `dst`: whether it listed the file.
fn syncs(bed: &Testbed, dst: IpAddr) -> bool {
    rsync(&bed.server, None, dst).is_ok_and(|files| files.iter().any(|f| f == RSYNC_FILE))
}

/// The server's curl of the upstream's web server at `dst`.
fn fetches(bed: &Testbed, dst: IpAddr) -> bool {
    curl(&bed.server, None, dst).is_ok_and(|body| body == NGINX_INDEX)
}

#[test]
fn the_server_reaches_only_what_its_egress_rules_list() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    // The upstream (the client namespace) serves rsync and HTTP; the server serves HTTP.
    let _upstream_rsync = RsyncDaemon::start(&bed.client).expect("upstream rsync daemon");
    let _upstream_web = Nginx::start(&bed.client).expect("upstream nginx");
    let _web = Nginx::start(&bed.server).expect("server nginx");
    let (v4, v6): (IpAddr, IpAddr) = (CLIENT_V4.into(), CLIENT_V6.into());
    assert!(
        fetches(&bed, v4) && syncs(&bed, ADMIN_V4.into()),
        "before attach"
    );
    let policy = attach_policy(&bed, POLICY);

    assert!(syncs(&bed, v4), "rsync to the upstream, IPv4");
    assert!(syncs(&bed, v6), "rsync to the upstream, IPv6");
    let before = reason(&stats(&bed), "egress_denied", "drop_packets");
    assert!(!fetches(&bed, v4), "HTTP out is not listed");
    assert!(!fetches(&bed, v6), "HTTP out is not listed, IPv6");
    assert!(!syncs(&bed, ADMIN_V4.into()), "rsync to another address");
    let denied = reason(&stats(&bed), "egress_denied", "drop_packets") - before;
    // Each refused connect is its SYN and the kernel's retries of it.
    assert!(denied >= 3, "egress_denied counted {denied}");

    // Clients connecting in get their replies: egress rules judge what the host opens.
    for (src, dst) in [
        (IpAddr::from(CLIENT_V4), IpAddr::from(SERVER_V4)),
        (CLIENT_V6.into(), SERVER_V6.into()),
    ] {
        let body = curl(&bed.client, Some(src), dst).expect("a client's HTTP to the server");
        assert_eq!(body, NGINX_INDEX);
    }

    // Monitor mode counts what it would drop, and sends it.
    let text = std::fs::read_to_string(&policy).expect("policy");
    let monitor = text.replacen(
        "version = 1",
        "version = 1\n[settings]\nmode = \"monitor\"",
        1,
    );
    let path = write_policy(&bed, "policy.toml", &monitor);
    run_ok(
        &bed,
        &["reload", "--policy", path.to_str().expect("utf-8 path")],
    );
    let before = reason(&stats(&bed), "egress_denied", "drop_packets");
    assert!(fetches(&bed, v4), "monitor mode sends what it would drop");
    let would = reason(&stats(&bed), "egress_denied", "drop_packets") - before;
    assert!(would >= 1, "monitor mode counted {would}");

    let open = text.replace("default = \"drop\"", "default = \"pass\"");
    let path = write_policy(&bed, "policy.toml", &open);
    run_ok(
        &bed,
        &["reload", "--policy", path.to_str().expect("utf-8 path")],
    );
    assert!(fetches(&bed, v4) && fetches(&bed, v6), "default = \"pass\"");
}

/// The daemon's drop log names the egress drops (the host, where it tried to go), and
/// `check` warns when a dropping `[egress]` lets no DNS out.
#[test]
fn egress_drops_reach_the_drop_log_and_check_warns_about_dns() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _upstream_web = Nginx::start(&bed.client).expect("upstream nginx");
    let path = write_policy(&bed, "policy.toml", POLICY);
    let policy = path.to_str().expect("utf-8 path");
    let args = ["run", "--iface", SERVER_IF, "--policy", policy];
    let (_daemon, log) = bed.spawn_cli(&cli_bin(), &args).expect("starting run");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    poll_until(Duration::from_secs(20), || read().contains("running (pid"))
        .unwrap_or_else(|| panic!("the daemon is not running:\n{}", read()));
    let line = format!("drop egress_denied host -> {CLIENT_V4} tcp/80");
    poll_until(Duration::from_secs(10), || {
        assert!(!fetches(&bed, CLIENT_V4.into()), "HTTP out is not listed");
        read().contains(&line)
    })
    .unwrap_or_else(|| panic!("no {line:?} in the drop log:\n{}", read()));

    let check = run_ok(&bed, &["check", "--policy", policy]);
    assert!(!check.stderr.contains("DNS"), "{check:?}");
    let no_dns = POLICY.replace("ports = [53, 123]", "ports = [123]");
    let path = write_policy(&bed, "no-dns.toml", &no_dns);
    let check = run_ok(&bed, &["check", "--policy", path.to_str().expect("utf-8")]);
    assert!(
        check
            .stderr
            .contains("no egress rule lists udp/53: this host's DNS lookups will fail"),
        "{check:?}"
    );
}
