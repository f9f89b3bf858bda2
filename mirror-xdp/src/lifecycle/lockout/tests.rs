//! Judging sessions against policies, live entries and monitor mode, and choosing which
//! sessions to judge.

use std::net::SocketAddr;
use std::path::Path;

use mirror_xdp_common::Reason;

use super::*;

const SSH: &str = "203.0.113.9 50122 198.51.100.1 22";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn policy(body: &str) -> Policy {
    Policy::parse(&format!("version = 1\n{body}"), Path::new("p.toml")).expect("valid policy")
}

fn ssh_session(client: &str) -> Session {
    Session {
        origin: Origin::Ssh,
        client: sa(client),
        server: sa("198.51.100.1:22"),
    }
}

fn inbound_session(client: &str, server: &str) -> Session {
    Session {
        origin: Origin::Established,
        client: sa(client),
        server: sa(server),
    }
}

fn findings(policy: &Policy, live: &LiveSet, sessions: &[Session]) -> Vec<Finding> {
    let clock = Clock {
        wall_ns: 1_800_000_000_000_000_000,
        mono_ns: 1_000_000_000_000,
    };
    judge(policy, &start_state(policy, live, &clock), sessions)
}

const SSH_FROM_ADMINS: &str = r#"
[[ports]]
proto = "tcp"
ports = [80, 443]

[[ports]]
proto = "tcp"
ports = [22]
from = ["192.0.2.0/24", "2001:db8:a::/48"]
"#;

#[test]
fn ssh_from_outside_the_from_list_is_a_lockout() {
    let p = policy(SSH_FROM_ADMINS);
    let found = findings(&p, &LiveSet::default(), &[ssh_session("203.0.113.9:50122")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason, Reason::SourceNotAllowed);
    assert_eq!(found[0].risk, Risk::Session);
    assert_eq!(
        found[0].message,
        "the current SSH session from 203.0.113.9:50122 to 198.51.100.1:22 would be dropped \
         (source_not_allowed: tcp port 22 admits only its `from` list, which does not hold \
         203.0.113.9)"
    );
}

#[test]
fn ssh_from_inside_the_from_list_is_safe_v4_and_v6() {
    let p = policy(SSH_FROM_ADMINS);
    let v6 = Session {
        origin: Origin::Ssh,
        client: sa("[2001:db8:a::10]:40000"),
        server: sa("[2001:db8:1::1]:22"),
    };
    let sessions = [ssh_session("192.0.2.7:50122"), v6];
    assert_eq!(findings(&p, &LiveSet::default(), &sessions), []);
}

#[test]
fn a_denied_source_is_a_lockout_even_on_an_open_port() {
    let p = policy(
        "[[ports]]\nproto = \"tcp\"\nports = [22, 443]\n[sources]\ndeny = [\"203.0.113.0/24\"]\n",
    );
    let sessions = [
        ssh_session("203.0.113.9:50122"),
        inbound_session("198.51.100.2:40000", "198.51.100.1:443"),
    ];
    let found = findings(&p, &LiveSet::default(), &sessions);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason, Reason::Denied);
    assert!(found[0].message.contains("203.0.113.9 is in sources.deny"));
}

#[test]
fn an_unlisted_port_under_default_drop_is_a_lockout() {
    let p = policy("[[ports]]\nproto = \"tcp\"\nports = [80]\n");
    let sessions = [
        inbound_session("[2001:db8:1::2]:41000", "[2001:db8:1::1]:2222"),
        inbound_session("198.51.100.2:40000", "198.51.100.1:80"),
    ];
    let found = findings(&p, &LiveSet::default(), &sessions);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason, Reason::PortClosed);
    assert_eq!(
        found[0].message,
        "the established connection from [2001:db8:1::2]:41000 to [2001:db8:1::1]:2222 \
         would be dropped (port_closed: no rule lists tcp port 2222 and settings.default \
         is \"drop\")"
    );
    let open = policy("[settings]\ndefault = \"pass\"\n[[ports]]\nproto = \"tcp\"\nports = [80]\n");
    assert_eq!(findings(&open, &LiveSet::default(), &sessions), []);
}

#[test]
fn trusted_sources_and_live_allows_make_it_safe() {
    let trusted = policy(&format!(
        "{SSH_FROM_ADMINS}[sources]\nallow = [\"203.0.113.0/24\"]\n"
    ));
    let session = [ssh_session("203.0.113.9:50122")];
    assert_eq!(findings(&trusted, &LiveSet::default(), &session), []);

    let p = policy(SSH_FROM_ADMINS);
    let mut live = LiveSet::default();
    live.allow(&["203.0.113.9/32".parse().unwrap()]);
    assert_eq!(findings(&p, &live, &session), []);
}

#[test]
fn live_denies_count_until_they_expire() {
    let p = policy("[[ports]]\nproto = \"tcp\"\nports = [22]\n");
    let session = [ssh_session("203.0.113.9:50122")];
    let mut live = LiveSet::default();
    live.deny(
        &["203.0.113.0/24".parse().unwrap()],
        crate::live::sources::Expiry::Never,
    );
    let found = findings(&p, &live, &session);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("live `source deny`"), "{found:?}");
    // The test clock's wall time is 1.8e9 s: an entry that ran out before is harmless.
    let mut expired = LiveSet::default();
    expired.deny(
        &["203.0.113.0/24".parse().unwrap()],
        crate::live::sources::Expiry::At(1_700_000_000),
    );
    assert_eq!(findings(&p, &expired, &session), []);
}

#[test]
fn a_dropped_syn_alone_is_a_new_logins_finding() {
    let p = policy(&format!(
        "{SSH_FROM_ADMINS}[limits]\nglobal_syn_rate = 10\n"
    ));
    let live = LiveSet::default();
    let clock = Clock {
        wall_ns: 0,
        mono_ns: 1_000_000_000,
    };
    // A fresh enforcer admits the first SYN; one whose global budget is spent does not.
    let mut spent = start_state(&p, &live, &clock);
    spent.global_syn_tat_ns = u64::MAX / 2;
    let found = judge(&p, &spent, &[ssh_session("192.0.2.7:50122")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].risk, found[0].reason),
        (Risk::NewLogins, Reason::SynFlood)
    );
    assert!(
        found[0]
            .message
            .starts_with("new SSH logins from 192.0.2.7 to 198.51.100.1:22 would be refused"),
        "{found:?}"
    );
    let inbound = [inbound_session("192.0.2.7:50122", "198.51.100.1:22")];
    assert_eq!(judge(&p, &spent, &inbound), [], "only the admin's session");
}

#[test]
fn monitor_mode_never_locks_out() {
    let p = policy(&format!(
        "[settings]\nmode = \"monitor\"\n{SSH_FROM_ADMINS}"
    ));
    let session = [ssh_session("203.0.113.9:50122")];
    assert_eq!(findings(&p, &LiveSet::default(), &session), []);
    let dir = std::path::PathBuf::from("/nonexistent/mirror-xdp-test");
    let paths = Paths {
        bpffs: dir.clone(),
        state_dir: dir,
    };
    let mut notes = Vec::new();
    assert_eq!(check(&p, &paths, &mut |m| notes.push(m.to_string())), []);
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_segment_parses_as_the_session() {
    use crate::model::{IpPacket, L4, Parsed, parse, tcp_flag};
    for (client, server) in [
        ("203.0.113.9:50122", "198.51.100.1:22"),
        ("[2001:db8:a::10]:40000", "[2001:db8:1::1]:22"),
    ] {
        let frame = segment(sa(client), sa(server), tcp_flag::ACK);
        let Ok(Parsed::Ip(IpPacket {
            src,
            l4: L4::Tcp {
                dst_port, flags, ..
            },
            ..
        })) = parse(&frame)
        else {
            panic!("{client}: {:?}", parse(&frame));
        };
        assert_eq!((src, dst_port, flags), (sa(client).ip(), 22, tcp_flag::ACK));
    }
}

#[test]
fn sessions_skip_loopback_foreign_servers_and_duplicates() {
    let local: HashSet<IpAddr> = ["198.51.100.1".parse().unwrap()].into();
    let socket = |local: &str, remote: &str, state| TcpSocket {
        local: sa(local),
        remote: sa(remote),
        state,
    };
    let sockets = [
        socket("0.0.0.0:22", "0.0.0.0:0", 0x0A),
        socket("198.51.100.1:22", "203.0.113.9:50122", 0x01),
        socket("198.51.100.1:22", "198.51.100.1:40000", 0x01),
        socket("127.0.0.1:22", "127.0.0.1:40001", 0x01),
        socket("198.51.100.1:22", "198.51.100.2:40002", 0x01),
    ];
    let mut notes = Vec::new();
    let mut note = |m: &str| notes.push(m.to_string());
    let got = sessions_from(Some(SSH), &sockets, Some(&local), &mut note);
    assert_eq!(
        got,
        [
            ssh_session("203.0.113.9:50122"),
            inbound_session("198.51.100.2:40002", "198.51.100.1:22"),
        ]
    );
    let foreign = sessions_from(
        Some("203.0.113.9 1 192.0.2.1 22"),
        &[],
        Some(&local),
        &mut note,
    );
    assert_eq!(foreign, []);
    let bad = sessions_from(Some("nonsense"), &[], Some(&local), &mut note);
    assert_eq!(bad, []);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("192.0.2.1 is not an address of this network namespace"));
    assert!(notes[1].contains("ignoring SSH_CONNECTION \"nonsense\""));
}

#[test]
fn the_refusal_says_how_to_override_it() {
    // `refuse_lockout` reads this process's environment and /proc/net, so it runs in the
    // namespace test (tests/tests/lockout.rs); here only its error text.
    let p = policy(SSH_FROM_ADMINS);
    let found = findings(&p, &LiveSet::default(), &[ssh_session("203.0.113.9:50122")]);
    let err = LockoutRefused { findings: found };
    assert_eq!(
        err.to_string(),
        "refusing: this policy would lock you out (use --force to apply it anyway)"
    );
}
