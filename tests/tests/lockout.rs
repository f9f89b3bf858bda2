//! Lock-out safety end to end (README, "Safety and limits"; exit 3): `check` and `attach`
//! refuse a policy that would drop an established connection held open to port 22 of the
//! server namespace, or the session named by `SSH_CONNECTION`; `--force` attaches anyway
//! (and the connection then really is cut); a policy that admits the client, or monitor
//! mode, is not refused.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use mirror_xdp_tests::cli::{Run, cli_bin, run, write_policy};
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::testbed::*;
use socket2::{Domain, Protocol, Socket, Type};

const SSH_PORT: u16 = 22;
const SSH_ENV: &str = "198.51.100.2 50000 198.51.100.1 22";

/// Port 22 only from the admin networks: CLIENT_V4 and CLIENT_V6 are outside.
const RESTRICTED: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "tcp"
ports = [22]
from = ["203.0.113.0/24", "2001:db8:a::/48"]
"#;

const ADMITTING: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "tcp"
ports = [22]
from = ["203.0.113.0/24", "2001:db8:a::/48", "198.51.100.0/24", "2001:db8:1::/64"]
"#;

/// A connection to the server's port 22 kept open: the listener (so the port counts as
/// listening), the accepted end in the server namespace, and the client's end.
struct Held {
    _listener: TcpListener,
    server_end: TcpStream,
    client_end: TcpStream,
}

/// Listens on [::]:22 dual-stack in the server namespace, so IPv4 connections show in
/// /proc/net/tcp6 as IPv4-mapped addresses, and connects from `client` in the client one.
fn hold(bed: &Testbed, client: IpAddr) -> Held {
    let listener = bed.server.enter(|| {
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.set_only_v6(false).expect("dual stack");
        s.set_reuse_address(true).expect("reuseaddr");
        let any: SocketAddr = "[::]:22".parse().unwrap();
        s.bind(&any.into()).expect("bind [::]:22");
        s.listen(16).expect("listen");
        TcpListener::from(s)
    });
    let server = SocketAddr::new(Testbed::server_addr_for(client), SSH_PORT);
    let client_end = bed.client.enter(|| {
        let s = Socket::new(
            Domain::for_address(server),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .expect("socket");
        s.bind(&SocketAddr::new(client, 0).into())
            .expect("bind client");
        s.connect_timeout(&server.into(), Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connect {client} -> {server}: {e}"));
        TcpStream::from(s)
    });
    let (server_end, peer) = listener.accept().expect("accept");
    assert_eq!(peer.ip().to_canonical(), client);
    Held {
        _listener: listener,
        server_end,
        client_end,
    }
}

/// An IPv6 connection from CLIENT_V6 to the listener of an earlier [`hold`], left in its
/// accept queue: established all the same.
fn hold_v6(bed: &Testbed) -> TcpStream {
    let server = SocketAddr::new(SERVER_V6.into(), SSH_PORT);
    bed.client.enter(|| {
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.bind(&SocketAddr::new(CLIENT_V6.into(), 0).into())
            .expect("bind");
        s.connect_timeout(&server.into(), Duration::from_secs(3))
            .expect("connect v6");
        TcpStream::from(s)
    })
}

impl Held {
    /// Whether a message from the client reaches the server within a second.
    fn client_gets_through(&mut self) -> bool {
        self.client_end.write_all(b"ping").expect("client write");
        self.server_end
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 4];
        match self.server_end.read_exact(&mut buf) {
            Ok(()) => &buf == b"ping",
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("server read: {e}"),
        }
    }
}

/// `mirror-xdp ARGS` in the server namespace with `SSH_CONNECTION` as given (the test
/// runner's own, if it runs over SSH, is removed so it cannot change the outcome).
fn cli(bed: &Testbed, ssh: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = bed.cli_command(&cli_bin());
    cmd.env_remove("SSH_CONNECTION");
    if let Some(value) = ssh {
        cmd.env("SSH_CONNECTION", value);
    }
    cmd.args(args).output().expect("starting mirror-xdp").into()
}

fn check(bed: &Testbed, ssh: Option<&str>, policy: &str, extra: &[&str]) -> Run {
    let path = write_policy(bed, "policy.toml", policy);
    let mut args = vec!["check", "--policy", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli(bed, ssh, &args)
}

fn attach(bed: &Testbed, ssh: Option<&str>, policy: &str, extra: &[&str]) -> Run {
    let path = write_policy(bed, "policy.toml", policy);
    let mut args = vec![
        "attach",
        "--iface",
        SERVER_IF,
        "--policy",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cli(bed, ssh, &args)
}

fn assert_refused(r: &Run, names: &[&str], what: &str) {
    assert_eq!(r.code, Some(3), "{what}: {r:?}");
    assert!(
        r.stderr
            .contains("refusing: this policy would lock you out"),
        "{what}: {r:?}"
    );
    for name in names {
        assert!(r.stderr.contains(name), "{what}: {name} not named: {r:?}");
    }
}

fn attached(bed: &Testbed) -> bool {
    let r = run(bed, &["status"]);
    let xdp = bed
        .server
        .run_ok("ip", &["link", "show", "dev", SERVER_IF])
        .expect("ip link show");
    let on_link = String::from_utf8_lossy(&xdp.stdout).contains("prog/xdp");
    assert_eq!(
        r.code == Some(0),
        on_link,
        "status and the link disagree: {r:?}"
    );
    on_link
}

#[test]
fn an_established_connection_is_protected_and_force_overrides() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let mut v4 = hold(&bed, CLIENT_V4.into());
    let _v6 = hold_v6(&bed);
    let sessions = [
        "established connection from 198.51.100.2:",
        "to 198.51.100.1:22 would be dropped (source_not_allowed",
        "established connection from [2001:db8:1::2]:",
        "to [2001:db8:1::1]:22 would be dropped",
    ];

    let r = check(&bed, None, RESTRICTED, &[]);
    assert!(r.stdout.contains("valid"), "{r:?}");
    assert_refused(&r, &sessions, "check");
    let r = attach(&bed, None, RESTRICTED, &[]);
    assert_refused(&r, &sessions, "attach");
    assert!(!attached(&bed), "a refused attach attaches nothing");

    let r = check(&bed, None, RESTRICTED, &["--force"]);
    assert_eq!(r.code, Some(0), "check --force: {r:?}");
    let r = attach(&bed, None, RESTRICTED, &["--force"]);
    assert_eq!(r.code, Some(0), "attach --force: {r:?}");
    assert!(
        r.stderr
            .contains("warning: the established connection from 198.51.100.2:")
    );
    assert!(r.stderr.contains("applying it anyway (--force)"), "{r:?}");
    assert!(attached(&bed));
    // The check was right: the client's segments are dropped now.
    assert!(
        !v4.client_gets_through(),
        "the forced policy cuts the session"
    );
}

#[test]
fn the_ssh_connection_variable_is_protected() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let session = ["the current SSH session from 198.51.100.2:50000 to 198.51.100.1:22"];
    assert_refused(
        &check(&bed, Some(SSH_ENV), RESTRICTED, &[]),
        &session,
        "check",
    );
    let r = attach(&bed, Some(SSH_ENV), RESTRICTED, &[]);
    assert_refused(&r, &session, "attach");
    assert!(!attached(&bed));
    // Without the variable and with no connection there is nothing to protect.
    assert_eq!(check(&bed, None, RESTRICTED, &[]).code, Some(0));
}

#[test]
fn a_policy_that_admits_the_client_attaches_and_the_session_lives() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let mut held = hold(&bed, CLIENT_V4.into());
    let r = check(&bed, Some(SSH_ENV), ADMITTING, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = attach(&bed, Some(SSH_ENV), ADMITTING, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stderr.contains("would be dropped"), "{r:?}");
    assert!(attached(&bed));
    assert!(
        held.client_gets_through(),
        "the admitted session still works"
    );
}

#[test]
fn monitor_mode_is_never_refused() {
    require_root();
    let bed = Testbed::new().expect("testbed");
    let _held = hold(&bed, CLIENT_V4.into());
    let monitor = RESTRICTED.replace(
        "version = 1\n",
        "version = 1\n[settings]\nmode = \"monitor\"\n",
    );
    let r = check(&bed, Some(SSH_ENV), &monitor, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = attach(&bed, Some(SSH_ENV), &monitor, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(attached(&bed));
}
