//! Lock-out safety (README, "Safety and limits"): before a policy is applied, judge the
//! admin's SSH session and the host's established inbound TCP connections with the
//! reference model, and refuse (exit 3) a policy that would drop them, unless forced.
//!
//! XDP runs before sshd sees a packet, so a policy that drops the admin's session cuts the
//! only way to fix it; checking costs a few milliseconds.

mod judge;
mod sessions;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;

pub use judge::{Finding, Risk, judge, segment, start_state};
pub use sessions::{
    Origin, Session, TcpSocket, inbound, local_addresses, parse_proc_net_tcp, parse_ssh_connection,
};

use crate::live::sources::{Clock, LiveSet};
use crate::policy::{Mode, Policy};
use crate::state::Paths;

/// Findings printed at most: closing port 443 on a busy mirror would name thousands.
const SHOWN: usize = 20;

/// The files of the network namespace this process runs in (`/proc/net` is `/proc/self/net`).
const PROC_TCP: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The refusal: the policy would cut the sessions in `findings`.
#[derive(Debug, thiserror::Error)]
#[error("refusing: this policy would lock you out (use --force to apply it anyway)")]
pub struct LockoutRefused {
    pub findings: Vec<Finding>,
}

/// What `attach`, `check`, `reload` and `run` call once the policy has validated: prints
/// each finding through `progress` and refuses, or with `force` prints them as warnings and lets
/// the caller go on. Notes (an unreadable file, a malformed `SSH_CONNECTION`) go to `progress` too.
pub fn refuse_lockout(
    policy: &Policy,
    paths: &Paths,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LockoutRefused> {
    let sessions = collect(progress);
    refuse_lockout_of(policy, paths, force, &sessions, progress)
}

/// [`refuse_lockout`] for sessions [`collect`]ed already (a reload reads them while it
/// parses the policy).
pub fn refuse_lockout_of(
    policy: &Policy,
    paths: &Paths,
    force: bool,
    sessions: &[Session],
    progress: &mut dyn FnMut(&str),
) -> Result<(), LockoutRefused> {
    let findings = check_sessions(policy, paths, sessions, progress);
    if findings.is_empty() {
        return Ok(());
    }
    let prefix = if force { "warning: " } else { "" };
    for finding in findings.iter().take(SHOWN) {
        progress(&format!("{prefix}{}", finding.message));
    }
    if findings.len() > SHOWN {
        progress(&format!("{prefix}... and {} more", findings.len() - SHOWN));
    }
    if force {
        progress("warning: applying it anyway (--force)");
        return Ok(());
    }
    Err(LockoutRefused { findings })
}

/// The sessions of this host that `policy` would cut, with the live source entries of the
/// enforcer at `paths` applied as `attach` would restore them.
pub fn check(policy: &Policy, paths: &Paths, progress: &mut dyn FnMut(&str)) -> Vec<Finding> {
    // Monitor mode passes every packet; nothing to judge.
    if policy.settings.mode == Mode::Monitor {
        return Vec::new();
    }
    let sessions = collect(progress);
    check_sessions(policy, paths, &sessions, progress)
}

/// [`check`] for sessions [`collect`]ed already.
pub fn check_sessions(
    policy: &Policy,
    paths: &Paths,
    sessions: &[Session],
    progress: &mut dyn FnMut(&str),
) -> Vec<Finding> {
    if policy.settings.mode == Mode::Monitor {
        return Vec::new();
    }
    // An unreadable live set (check runs without root) only loses entries that could make
    // a session safe or unsafe: judge by the policy alone rather than not at all.
    let live = LiveSet::load(paths).unwrap_or_else(|e| {
        progress(&format!(
            "note: live source entries not considered in the lock-out check: {e}"
        ));
        LiveSet::default()
    });
    judge(policy, &start_state(policy, &live, &Clock::now()), sessions)
}

/// The SSH session of this command's environment and the established inbound connections
/// of this network namespace.
pub fn collect(progress: &mut dyn FnMut(&str)) -> Vec<Session> {
    let ssh = std::env::var("SSH_CONNECTION").ok();
    let mut sockets = Vec::new();
    for file in PROC_TCP {
        match std::fs::read_to_string(file) {
            Ok(text) => sockets.extend(parse_proc_net_tcp(&text)),
            // No tcp6 when IPv6 is disabled.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => progress(&format!(
                "note: cannot read {file} ({e}); its connections are not checked"
            )),
        }
    }
    sessions_from(
        ssh.as_deref(),
        &sockets,
        local_addresses().as_ref(),
        progress,
    )
}

/// The sessions worth judging. Without the local addresses (`None`) every session counts.
fn sessions_from(
    ssh: Option<&str>,
    sockets: &[TcpSocket],
    local: Option<&HashSet<IpAddr>>,
    progress: &mut dyn FnMut(&str),
) -> Vec<Session> {
    // Traffic from this host to itself runs over loopback, which no enforcer is attached to.
    let from_here = |ip: IpAddr| ip.is_loopback() || local.is_some_and(|l| l.contains(&ip));
    let mut out: Vec<Session> = Vec::new();
    if let Some(value) = ssh {
        match parse_ssh_connection(value) {
            None => progress(&format!(
                "note: ignoring SSH_CONNECTION \"{value}\": not \"client_ip client_port server_ip server_port\""
            )),
            // A session to an address of another namespace (or host) never crosses the
            // interfaces of this one.
            Some((_, server)) if !from_here(server.ip()) && local.is_some() => progress(&format!(
                "note: SSH_CONNECTION's server address {} is not an address of this network namespace; that session is not checked",
                server.ip()
            )),
            Some((client, _)) if from_here(client.ip()) => {}
            Some((client, server)) => out.push(Session {
                origin: Origin::Ssh,
                client,
                server,
            }),
        }
    }
    for session in inbound(sockets) {
        let known = out
            .iter()
            .any(|s| s.client == session.client && s.server == session.server);
        if !known && !from_here(session.client.ip()) {
            out.push(session);
        }
    }
    out
}
