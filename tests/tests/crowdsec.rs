//! The CrowdSec bouncer of `mirror-xdp run` against the real CrowdSec: Debian's crowdsec
//! 1.4.6, its Local API on the server namespace's loopback, decisions made with `cscli`.
//! Bans of an IPv4 address, an IPv4 range and an IPv6 range filter their sources within a
//! poll and lift on delete; a live `source allow` wins; the LAPI killed changes nothing
//! and its return resyncs; a daemon restart resyncs; a reload without `[crowdsec]` removes
//! its entries; 100,000 imported decisions come into force from one pull; HTTPS with a
//! private CA; a key file others can read is refused.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirror_xdp_tests::cli::{cli_bin, run, run_ok, write_policy};
use mirror_xdp_tests::crowdsec::{self, Lapi, feed_csv, pull_line};
use mirror_xdp_tests::metrics::{metric, scrape};
use mirror_xdp_tests::netns::{ChildGuard, Netns};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::TcpListenerSet;
use mirror_xdp_tests::sweep::tcp_probe;
use mirror_xdp_tests::testbed::*;
use mirror_xdp_tests::wait::{poll_until, stretched, wait_until};

const HTTP: u16 = 80;
const METRICS_PORT: u16 = 19473;

/// A testbed with a web server, a LAPI, and a bouncer key in a root-only file.
struct Bed {
    bed: Testbed,
    lapi: Lapi,
    policy: PathBuf,
    _http: TcpListenerSet,
}

impl Bed {
    fn new() -> Bed {
        Bed::with(Lapi::start)
    }

    /// With the LAPI over HTTPS.
    fn tls() -> Bed {
        Bed::with(Lapi::start_tls)
    }

    fn with(start: fn(&Netns, &Path) -> anyhow::Result<Lapi>) -> Bed {
        let bed = Testbed::new().expect("testbed");
        let http = TcpListenerSet::start(&bed.server, &[HTTP]).expect("listener");
        let lapi = start(&bed.server, &bed.work_dir().join("crowdsec")).expect("LAPI");
        let key = crowdsec::key_file(&lapi, bed.work_dir()).expect("bouncer key");
        let text = crowdsec::policy(&lapi, &key, HTTP, "1s");
        let policy = write_policy(&bed, "policy.toml", &text);
        Bed {
            bed,
            lapi,
            policy,
            _http: http,
        }
    }

    /// `run` with its log; returns once the first pull is applied.
    fn daemon(&self) -> (ChildGuard, PathBuf) {
        self.daemon_env(&[])
    }

    fn daemon_env(&self, env: &[(&str, &str)]) -> (ChildGuard, PathBuf) {
        let (mut daemon, log) = self.spawn(env);
        poll_until(Duration::from_secs(120), || {
            if let Err(e) = daemon.ensure_running() {
                panic!("{e}:\n{}", read(&log));
            }
            self.pulls() > 0
        })
        .unwrap_or_else(|| panic!("no pull applied:\n{}", read(&log)));
        (daemon, log)
    }

    /// `run` with more environment variables, without waiting.
    fn spawn(&self, env: &[(&str, &str)]) -> (ChildGuard, PathBuf) {
        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        let policy = self.policy.to_str().expect("UTF-8 path");
        let args = [
            "run",
            "--iface",
            SERVER_IF,
            "--policy",
            policy,
            "--metrics",
            &metrics,
        ];
        self.bed.spawn_cli_env(&cli_bin(), &args, env).expect("run")
    }

    fn metrics(&self) -> String {
        scrape(&self.bed.server, METRICS_PORT).unwrap_or_default()
    }

    fn pulls(&self) -> u64 {
        metric(&self.metrics(), "mirror_xdp_crowdsec_pulls_total").unwrap_or(0)
    }

    fn open(&self, src: IpAddr) -> bool {
        tcp_probe(&self.bed.client, src, HTTP).is_open()
    }

    /// Polls until `src` is open (or filtered); returns how long that took.
    fn until(&self, src: IpAddr, open: bool, what: &str, log: &Path) -> Duration {
        poll_until(Duration::from_secs(15), || self.open(src) == open)
            .unwrap_or_else(|| panic!("{what}: {src} not {}:\n{}", state(open), read(log)))
    }

    fn cscli(&self, args: &[&str]) {
        self.lapi.cscli(args).expect("cscli");
    }

    /// A CrowdSec ban of an hour on the client's IPv4 address.
    fn ban_client_v4(&self) {
        self.cscli(&[
            "decisions",
            "add",
            "--ip",
            "198.51.100.2",
            "--duration",
            "1h",
        ]);
    }

    /// [`Bed::ban_client_v4`], then waits until the client is filtered.
    fn ban_client(&self, log: &Path) {
        self.ban_client_v4();
        self.until(IpAddr::from(CLIENT_V4), false, "the ban", log);
    }

    /// `source list --json`'s CrowdSec rows: (prefix, expires).
    fn listed(&self) -> Vec<String> {
        let out = run_ok(&self.bed, &["source", "list", "--json"]);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        doc["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .filter(|r| r["origin"] == "crowdsec")
            .map(|r| r["prefix"].as_str().expect("prefix").to_string())
            .collect()
    }
}

fn state(open: bool) -> &'static str {
    if open { "open" } else { "filtered" }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn bans_filter_their_sources_within_a_poll_and_lift_on_delete() {
    require_root();
    let b = Bed::new();
    let (_daemon, log) = b.daemon();
    let (v4, v6, other) = (
        IpAddr::from(CLIENT_V4),
        IpAddr::from(CLIENT_V6),
        IpAddr::from(ADMIN_V4),
    );
    for src in [v4, v6, other] {
        assert!(b.open(src), "{src} before any decision");
    }
    let cases: [(&[&str], IpAddr, &str); 3] = [
        (&["--ip", "198.51.100.2"], v4, "198.51.100.2/32"),
        (&["--range", "198.51.100.0/24"], v4, "198.51.100.0/24"),
        (&["--range", "2001:db8:1::/48"], v6, "2001:db8:1::/48"),
    ];
    for (decision, src, prefix) in cases {
        b.cscli(&[&["decisions", "add"], decision, &["--duration", "1h"]].concat());
        let took = b.until(src, false, &format!("{decision:?}"), &log);
        println!("{decision:?}: {src} filtered {took:?} after the decision");
        assert!(took <= stretched(Duration::from_secs(4)), "{took:?}");
        assert_eq!(b.listed(), [prefix], "{}", read(&log));
        let removed = run(&b.bed, &["source", "remove", prefix]);
        assert_eq!(removed.code, Some(2), "{removed:?}");
        assert!(removed.stderr.contains("CrowdSec denies it"), "{removed:?}");
        assert!(b.open(other), "{other} is not in {prefix}");
        b.cscli(&[&["decisions", "delete"], decision].concat());
        let took = b.until(src, true, &format!("delete {decision:?}"), &log);
        println!("delete {decision:?}: {src} open again {took:?} after");
        assert!(b.listed().is_empty(), "{}", read(&log));
    }

    // A captcha is not a ban; a live allow wins over a ban.
    b.cscli(&[
        "decisions",
        "add",
        "--ip",
        "198.51.100.2",
        "--type",
        "captcha",
    ]);
    b.cscli(&[
        "decisions",
        "add",
        "--ip",
        "2001:db8:1::2",
        "--duration",
        "1h",
    ]);
    b.until(v6, false, "the IPv6 ban", &log);
    assert!(b.open(v4), "a captcha decision filtered {v4}");
    run_ok(&b.bed, &["source", "allow", "2001:db8:1::2/128"]);
    assert!(b.open(v6), "a live allow must win over a CrowdSec ban");
    let body = b.metrics();
    assert_eq!(
        metric(&body, "mirror_xdp_crowdsec_decisions"),
        Some(1),
        "{body}"
    );
    assert_eq!(
        metric(&body, "mirror_xdp_crowdsec_ignored_total{why=\"type\"}"),
        Some(1),
        "{body}"
    );
    assert_eq!(metric(&body, "mirror_xdp_crowdsec_up"), Some(1), "{body}");
}

#[test]
fn the_lapi_down_changes_nothing_and_it_resyncs_when_back_and_after_a_restart() {
    require_root();
    let mut b = Bed::new();
    let (mut daemon, log) = b.daemon();
    let (v4, v6) = (IpAddr::from(CLIENT_V4), IpAddr::from(CLIENT_V6));
    b.ban_client(&log);

    b.lapi.kill();
    wait_until(Duration::from_secs(10), "failed pulls counted", || {
        metric(
            &b.metrics(),
            "mirror_xdp_crowdsec_errors_total{kind=\"connect\"}",
        )
        .unwrap_or(0)
            >= 2
    });
    assert!(
        !b.open(v4),
        "the LAPI's outage lifted a ban:\n{}",
        read(&log)
    );
    assert!(b.open(v6));
    assert_eq!(metric(&b.metrics(), "mirror_xdp_crowdsec_up"), Some(0));
    assert_eq!(
        read(&log).matches("cannot reach the LAPI").count(),
        1,
        "each kind of failure is logged once:\n{}",
        read(&log)
    );

    b.lapi.restart().expect("LAPI back");
    b.cscli(&["decisions", "delete", "--ip", "198.51.100.2"]);
    b.until(v4, true, "the delete after the LAPI came back", &log);
    assert!(
        read(&log).contains("(the LAPI answers again)"),
        "{}",
        read(&log)
    );

    // A ban made while the daemon is stopped is pulled in full at its next start; its
    // entries in force stay while it is stopped.
    b.cscli(&[
        "decisions",
        "add",
        "--range",
        "2001:db8:1::/48",
        "--duration",
        "1h",
    ]);
    b.until(v6, false, "the IPv6 range ban", &log);
    daemon.signal(libc::SIGTERM).expect("SIGTERM");
    daemon
        .wait_timeout(Duration::from_secs(10))
        .expect("daemon stops");
    assert!(!b.open(v6), "stopping the daemon lifted a ban");
    b.cscli(&["decisions", "delete", "--range", "2001:db8:1::/48"]);
    b.ban_client_v4();
    let (_daemon, log) = b.daemon();
    b.until(
        v6,
        true,
        "the delete made while the daemon was stopped",
        &log,
    );
    b.until(v4, false, "the ban made while the daemon was stopped", &log);
}

#[test]
fn a_policy_without_crowdsec_removes_its_entries_and_one_with_it_brings_them_back() {
    require_root();
    let b = Bed::new();
    let (_daemon, log) = b.daemon();
    let v4 = IpAddr::from(CLIENT_V4);
    b.ban_client(&log);
    let with = std::fs::read_to_string(&b.policy).unwrap();
    let without = &with[..with.find("[crowdsec]").expect("a [crowdsec] table")];
    write_policy(&b.bed, "policy.toml", without);
    b.until(v4, true, "the reload without [crowdsec]", &log);
    assert!(b.listed().is_empty(), "{}", read(&log));
    assert!(
        read(&log).contains("its 1 denied prefixes removed"),
        "{}",
        read(&log)
    );
    assert!(
        !b.metrics().contains("mirror_xdp_crowdsec"),
        "{}",
        b.metrics()
    );
    write_policy(&b.bed, "policy.toml", &with);
    b.until(v4, false, "the reload with [crowdsec] again", &log);
    assert_eq!(b.listed(), ["198.51.100.2/32"], "{}", read(&log));
}

#[test]
fn a_hundred_thousand_decisions_come_into_force_from_one_pull() {
    require_root();
    let b = Bed::new();
    // The client among 99,999 other addresses and ranges, IPv4 and IPv6.
    let csv = feed_csv("198.51.100.2", 100_000, 0);
    let file = b.bed.work_dir().join("decisions.csv");
    std::fs::write(&file, csv).unwrap();
    b.cscli(&["decisions", "import", "-i", file.to_str().unwrap()]);

    let (_daemon, log) = b.daemon();
    let body = b.metrics();
    assert_eq!(
        metric(&body, "mirror_xdp_crowdsec_decisions"),
        Some(100_000),
        "{body}"
    );
    assert!(!b.open(IpAddr::from(CLIENT_V4)));
    assert!(b.open(IpAddr::from(CLIENT_V6)));
    let text = read(&log);
    let (pull, applied) = text
        .lines()
        .filter(|l| l.contains("full state"))
        .find_map(pull_line)
        .map(|(new, pull, applied)| {
            assert_eq!(new, 100_000, "{text}");
            (pull, applied)
        })
        .unwrap_or_else(|| panic!("no full-state pull logged:\n{text}"));
    println!("100,000 decisions: pulled in {pull} ms, in force {applied} ms later");
    assert!(
        Duration::from_millis(applied) <= stretched(Duration::from_secs(2)),
        "{text}"
    );
}

#[test]
fn decisions_come_over_https_from_a_lapi_behind_a_private_ca() {
    require_root();
    let b = Bed::tls();
    let ca = b
        .lapi
        .ca()
        .expect("a TLS LAPI")
        .to_str()
        .expect("UTF-8 path");
    // The system's CAs alone do not know the LAPI's: nothing is pulled.
    let (mut daemon, log) = b.spawn(&[("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")]);
    wait_until(
        Duration::from_secs(30),
        "a refused certificate counted",
        || {
            metric(
                &b.metrics(),
                "mirror_xdp_crowdsec_errors_total{kind=\"connect\"}",
            )
            .unwrap_or(0)
                >= 1
        },
    );
    assert_eq!(b.pulls(), 0, "{}", read(&log));
    assert!(
        read(&log).contains("cannot reach the LAPI"),
        "{}",
        read(&log)
    );
    daemon.stop().expect("stop");
    // With its CA in the store (here SSL_CERT_FILE), the LAPI is trusted.
    let (_daemon, log) = b.daemon_env(&[("SSL_CERT_FILE", ca)]);
    b.ban_client_v4();
    b.until(IpAddr::from(CLIENT_V4), false, "a ban over HTTPS", &log);
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let key = bed.work_dir().join("crowdsec.key");
    std::fs::write(&key, "0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("http://127.0.0.1:{}", crowdsec::PORT);
    let text = format!(
        "version = 1\n\n[crowdsec]\nurl = \"{url}\"\napi_key_file = \"{}\"\n",
        key.display()
    );
    let policy = write_policy(&bed, "policy.toml", &text);
    let args = [
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        policy.to_str().unwrap(),
    ];
    let r = run(&bed, &args);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("chmod 600"), "{r:?}");
    let status = run(&bed, &["status"]);
    assert_eq!(status.code, Some(1), "refused before attaching: {status:?}");
}
