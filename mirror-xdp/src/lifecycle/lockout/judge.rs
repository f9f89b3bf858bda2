//! Judging sessions with the reference model: the segment a client would send next, through
//! [`crate::model::classify`] with the policy and the live entries the enforcer would add.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use mirror_xdp_common::{
    Reason,
    wire::{IPV4_DONT_FRAGMENT, ethertype, ipproto},
};

use super::sessions::{Origin, Session};
use crate::compile;
use crate::live::sources::{Clock, LiveSet};
use crate::model::{self, ModelState, tcp_flag};
use crate::policy::Policy;

/// What a finding puts at risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Risk {
    /// The session's packets would be dropped: it hangs and dies.
    Session,
    /// The session survives but a new SSH login from the same address would be refused.
    NewLogins,
}

/// A session the policy would cut, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub session: Session,
    pub risk: Risk,
    pub reason: Reason,
    /// One line for the user, naming the session and the rule that drops it.
    pub message: String,
}

/// The model state the enforcer would start with: the policy's config, and the live
/// entries (`source allow|deny`) that `attach` restores. Flows and limiter buckets start
/// empty, as in a fresh enforcer.
pub fn start_state(policy: &Policy, live: &LiveSet, clock: &Clock) -> ModelState {
    ModelState {
        now_ns: clock.mono_ns,
        live_allow: live.allow.iter().copied().collect(),
        live_deny: live
            .deny
            .iter()
            .map(|(net, expires)| (*net, clock.deadline_ns(*expires)))
            .collect(),
        config: compile::config(policy, 1).expect("one CPU keeps any global_syn_rate"),
        ..ModelState::default()
    }
}

/// Judges every session; each on a fresh copy of `start`, so that thousands of connections
/// from one source do not trip its rate limit in the model when they would not in the kernel.
pub fn judge(policy: &Policy, start: &ModelState, sessions: &[Session]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for session in sessions {
        let ack = verdict(policy, start, session, tcp_flag::ACK);
        if let Some(reason) = ack {
            findings.push(finding(policy, session, Risk::Session, reason));
        } else if session.origin == Origin::Ssh
            && let Some(reason) = verdict(policy, start, session, tcp_flag::SYN)
        {
            // Only when the session itself survives: otherwise this says the same again.
            findings.push(finding(policy, session, Risk::NewLogins, reason));
        }
    }
    findings
}

/// The drop reason of the client's next segment with `flags`, or `None` if it gets through
/// (a SYN answered with a SYN cookie gets through too: the login completes).
fn verdict(policy: &Policy, start: &ModelState, session: &Session, flags: u8) -> Option<Reason> {
    let frame = segment(session.client, session.server, flags);
    let judgement = model::classify(&frame, policy, &mut start.clone());
    (!judgement.passes && !judgement.tx).then_some(judgement.reason)
}

fn finding(policy: &Policy, session: &Session, risk: Risk, reason: Reason) -> Finding {
    let (client, server) = (session.client, session.server);
    let why = format!("{}: {}", reason.name(), explain(policy, reason, session));
    let message = match (risk, session.origin) {
        (Risk::NewLogins, _) => format!(
            "new SSH logins from {} to {server} would be refused ({why})",
            client.ip()
        ),
        (Risk::Session, Origin::Ssh) => {
            format!("the current SSH session from {client} to {server} would be dropped ({why})")
        }
        (Risk::Session, Origin::Established) => {
            format!("the established connection from {client} to {server} would be dropped ({why})")
        }
    };
    Finding {
        session: *session,
        risk,
        reason,
        message,
    }
}

/// Which part of the policy drops the session, in the policy's own words.
fn explain(policy: &Policy, reason: Reason, session: &Session) -> String {
    let client = session.client.ip();
    let port = session.server.port();
    match reason {
        Reason::SourceNotAllowed => {
            format!("tcp port {port} admits only its `from` list, which does not hold {client}")
        }
        Reason::Denied if contains(&policy.deny, client) => {
            format!("{client} is in sources.deny")
        }
        Reason::Denied => format!("{client} is in a live `source deny` entry"),
        Reason::PortClosed => {
            format!("no rule lists tcp port {port} and settings.default is \"drop\"")
        }
        Reason::Banned | Reason::RateLimited | Reason::SynFlood => {
            "a [limits] setting drops it".to_string()
        }
        _ => "the policy drops it".to_string(),
    }
}

fn contains(nets: &[IpNet], addr: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(&addr))
}

/// An Ethernet + IP + TCP segment from `client` to `server` with `flags`, no payload. The
/// model reads no checksum, so they stay zero.
pub fn segment(client: SocketAddr, server: SocketAddr, flags: u8) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&client.port().to_be_bytes());
    tcp.extend_from_slice(&server.port().to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // sequence
    let ack = if flags & tcp_flag::ACK != 0 { 1u32 } else { 0 };
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags]);
    tcp.extend_from_slice(&[0xFF, 0xFF, 0, 0, 0, 0]); // window, checksum, urgent pointer
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    match (client.ip(), server.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&ethertype::IPV4.to_be_bytes());
            let total = (20 + tcp.len()) as u16;
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&total.to_be_bytes());
            frame.extend_from_slice(&[0, 0]); // identification
            frame.extend_from_slice(&IPV4_DONT_FRAGMENT.to_be_bytes());
            frame.extend_from_slice(&[64, ipproto::TCP, 0, 0]); // TTL, protocol, checksum
            frame.extend_from_slice(&src.octets());
            frame.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            frame.extend_from_slice(&ethertype::IPV6.to_be_bytes());
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[ipproto::TCP, 64]); // next header, hop limit
            frame.extend_from_slice(&v6(src).octets());
            frame.extend_from_slice(&v6(dst).octets());
        }
    }
    frame.extend_from_slice(&tcp);
    frame
}
