//! `mirror-xdp explain`: the verdict the attached enforcer would give the first packet of a
//! new connection, and what decided it (README, "explain").
//!
//! The reference model ([`crate::model`]) judges the packet with what the enforcer holds
//! now: the policy in force with the live port rules, the live source entries, and the
//! kernel's config and the source's limiter bucket, ban and SYN state read from the pinned
//! maps. Then [`decided`] names the rule, entry, ban, limit or setting behind the reason.

mod decided;
mod query;

use std::net::IpAddr;

use mirror_xdp_common::{LimiterState, limits::syn_keepalive_index};
use serde::Serialize;

use crate::kernel::maps::{Maps, MapsError};
use crate::live::ports::LivePorts;
use crate::live::sources::{Clock, LiveSet};
use crate::model::{self, ModelState};
use crate::policy::Proto;
use crate::state::{Paths, Record, in_force};
pub use decided::{Bucket, DecidedBy};
pub use query::Target;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NotAttached(std::path::PathBuf),
    #[error("{0}")]
    Input(String),
    #[error("the policy in force cannot be read: {0}")]
    Policy(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Live(#[from] crate::live::sources::LiveError),
    #[error(transparent)]
    Maps(#[from] MapsError),
}

/// One question: a new connection from `src` to `target` at `dst` (default: an address of
/// the attached interfaces).
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub src: IpAddr,
    pub target: Target,
    pub dst: Option<IpAddr>,
}

/// The answer (the JSON of `explain --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `pass` or `drop`: what happens to the packet (monitor mode passes everything).
    pub verdict: &'static str,
    pub reason: &'static str,
    /// Monitor mode: the enforcer would drop it.
    pub would_drop: bool,
    pub decided_by: DecidedBy,
    pub source: IpAddr,
    pub destination: IpAddr,
    /// `tcp/443`, `udp/53`, `icmp`, `vrrp`.
    pub target: String,
    /// The limits' buckets for this source now.
    pub limits: Vec<Bucket>,
}

/// Explains `query` against the enforcer attached with `paths`.
pub fn explain(paths: &Paths, query: Query) -> Result<Explanation, ExplainError> {
    let record =
        Record::load(paths)?.ok_or_else(|| ExplainError::NotAttached(paths.state_dir.clone()))?;
    let dst = match query.dst {
        Some(dst) => dst,
        None => interface_address(&record, query.src)?,
    };
    if dst.is_ipv4() != query.src.is_ipv4() {
        return Err(ExplainError::Input(format!(
            "source {} and destination {dst} are of different address families",
            query.src
        )));
    }
    let live_ports = LivePorts::load(paths)?;
    let policy = in_force::policy(paths, &record)
        .map_err(|e| ExplainError::Policy(e.to_string()))?
        .with_live_ports(&live_ports)
        .map_err(|e| ExplainError::Policy(e.to_string()))?;
    let live = LiveSet::load(paths)?;
    let clock = Clock::now();
    let maps = Maps::open_pinned(&paths.bpffs)?;
    let state = kernel_state(&maps, &live, &clock, &query)?;

    let judgement = model::classify(
        &query.target.first_packet(query.src, dst),
        &policy,
        &mut state.clone(),
    );
    let context = decided::Context {
        policy: &policy,
        live: &live,
        live_ports: &live_ports,
        state: &state,
        clock,
        src: query.src,
        dst,
        target: query.target,
    };
    Ok(Explanation {
        verdict: if judgement.passes || judgement.tx {
            "pass"
        } else {
            "drop"
        },
        reason: judgement.reason.name(),
        would_drop: judgement.dropped && judgement.passes,
        decided_by: context.decided_by(judgement.reason),
        source: query.src,
        destination: dst,
        target: query.target.label(query.src.is_ipv6()),
        limits: context.buckets(),
    })
}

/// What the model needs from the kernel and the state files for this source: the config,
/// the live entries, the source's bucket, the global SYN bucket and the SYN keepalive.
/// No flows: the packet opens a connection, it answers none.
fn kernel_state(
    maps: &Maps,
    live: &LiveSet,
    clock: &Clock,
    query: &Query,
) -> Result<ModelState, ExplainError> {
    let access = |name| move |source| MapsError::Access { name, source };
    let config = maps.config()?;
    let mut state = ModelState {
        now_ns: clock.mono_ns,
        live_allow: live.allow.iter().copied().collect(),
        live_deny: live
            .denies()
            .into_iter()
            .map(|(net, expires)| (net, clock.deadline_ns(expires)))
            .collect(),
        config,
        ..ModelState::default()
    };
    let key = model::limiter_key(query.src, &config);
    match maps.limits.get(&key, 0) {
        Ok(bucket) => {
            state.limiters.insert(key, bucket);
        }
        Err(aya::maps::MapError::KeyNotFound) => {
            state.limiters.insert(key, LimiterState::default());
        }
        Err(e) => return Err(access(mirror_xdp_common::map_name::LIMITS)(e).into()),
    }
    // The packet lands on one CPU's share of the global budget: the fullest one is the
    // one most likely to take it, and the answer for every CPU while they agree.
    let global = maps
        .global_syn
        .get(&0, 0)
        .map_err(access(mirror_xdp_common::map_name::GLOBAL_SYN))?;
    state.global_syn_tat_ns = global.iter().copied().min().unwrap_or(0);
    if let Target::Port(Proto::Tcp, port) = query.target {
        let v6 = query.src.is_ipv6();
        let last = maps
            .syn_keepalive
            .get(&syn_keepalive_index(v6, port), 0)
            .map_err(access(mirror_xdp_common::map_name::SYN_KEEPALIVE))?;
        state.syn_keepalive.insert((v6, port), last);
    }
    Ok(state)
}

/// The first address of the source's family on the attached interfaces (a global one
/// before a link-local one).
fn interface_address(record: &Record, src: IpAddr) -> Result<IpAddr, ExplainError> {
    let names: Vec<&str> = record.interfaces.iter().map(|i| i.name.as_str()).collect();
    let mut found: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(|e| {
            ExplainError::Input(format!(
                "cannot read the interfaces' addresses ({e}); give --dst"
            ))
        })?
        .filter(|entry| names.contains(&entry.interface_name.as_str()))
        .filter_map(|entry| entry.address)
        .filter_map(
            |addr| match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
                _ => None,
            },
        )
        .filter(|a| a.is_ipv6() == src.is_ipv6())
        .collect();
    found.sort_by_key(|a| matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()));
    found.first().copied().ok_or_else(|| {
        ExplainError::Input(format!(
            "the attached interfaces ({}) have no IPv{} address; give --dst",
            names.join(", "),
            if src.is_ipv6() { 6 } else { 4 }
        ))
    })
}
