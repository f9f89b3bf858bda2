//! What stands behind a reason: the rule, the source entry, the ban, the limit or the
//! setting that made the model's verdict (docs/semantics.md names the step of each reason).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use mirror_xdp_common::{LimiterState, Reason, config_flag};
use serde::Serialize;

use super::query::Target;
use crate::live::ports::LivePorts;
use crate::live::sources::{Clock, LiveSet};
use crate::model::ModelState;
use crate::policy::{Action, Policy, SourceList};

/// What decided a verdict (README, "explain").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DecidedBy {
    /// A `[[ports]]` or `[[protocols]]` rule of the policy file.
    Rule {
        file: PathBuf,
        line: usize,
        /// The rule's table as written.
        text: Vec<String>,
    },
    /// An entry of `sources.allow` or `sources.deny`, maybe through a set or a set file.
    Set {
        list: &'static str,
        entry: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        set: Option<String>,
        file: PathBuf,
        line: usize,
    },
    /// A live entry: a `source` or `port` command's (`cli`) or a CrowdSec decision's.
    Live {
        origin: &'static str,
        /// `allow`, `deny`, `port` or `protocol`.
        action: &'static str,
        entry: String,
        /// Unix seconds; absent: never.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        decision: Option<i64>,
    },
    /// A ban a limit gave the source's prefix.
    Ban {
        prefix: String,
        expires_in_secs: u64,
        ban_seconds: u64,
    },
    Limit(Bucket),
    /// A `[settings]` key.
    Setting {
        setting: &'static str,
        value: String,
    },
}

/// A limit's bucket for one source as the kernel holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// `per_source_pps`, `per_source_syn_rate` or `global_syn_rate`.
    pub limit: &'static str,
    /// Per second, and the burst.
    pub rate: u64,
    pub burst: u64,
    /// The prefix the bucket counts (`source_prefix_v4`/`_v6`); `all` for the global one.
    pub counts: String,
    /// Packets it admits at once now.
    pub tokens: u64,
    /// When it admits one again, while it admits none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_in_ms: Option<u64>,
}

/// What the explanation knows beside the policy: the live entries and the kernel's state.
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub live: &'a LiveSet,
    pub live_ports: &'a LivePorts,
    /// The state before the packet (the kernel's buckets).
    pub state: &'a ModelState,
    pub clock: Clock,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub target: Target,
}

impl Context<'_> {
    /// What decided `reason` for this packet.
    pub fn decided_by(&self, reason: Reason) -> DecidedBy {
        let settings = &self.policy.settings;
        match reason {
            Reason::Trusted => self.source_entry(SourceList::Allow),
            Reason::Denied => self.source_entry(SourceList::Deny),
            Reason::Banned => DecidedBy::Ban {
                prefix: self.limiter_prefix().to_string(),
                expires_in_secs: self
                    .bucket_state()
                    .banned_until_ns
                    .saturating_sub(self.state.now_ns)
                    .div_ceil(1_000_000_000),
                ban_seconds: self.policy.limits.ban_seconds,
            },
            Reason::RateLimited => DecidedBy::Limit(self.pps_bucket()),
            Reason::SynFlood | Reason::SynCookie => {
                let source = self.syn_bucket();
                let refused_by_source = reason == Reason::SynFlood
                    && self.state.config.flags & config_flag::LIMIT_SYN != 0
                    && source.tokens == 0;
                DecidedBy::Limit(match refused_by_source {
                    true => source,
                    false => self.global_bucket(),
                })
            }
            Reason::Allowed | Reason::SourceNotAllowed => self.rule(),
            Reason::Icmp => setting("settings.icmp", action(settings.icmp)),
            Reason::Protocol => {
                setting("settings.other_protocols", action(settings.other_protocols))
            }
            Reason::PortClosed | Reason::Default => {
                setting("settings.default", action(settings.default))
            }
            Reason::Fragment => setting("settings.fragments", action(settings.fragments)),
            Reason::Return => setting("settings.return_traffic", "true".into()),
            // A first packet as `explain` builds it is never one of these.
            Reason::NonIp | Reason::Malformed | Reason::EgressDenied => {
                setting("the packet itself", reason.name().into())
            }
        }
    }

    /// The limits' buckets for this source (and, for TCP, the global SYN one).
    pub fn buckets(&self) -> Vec<Bucket> {
        let flags = self.state.config.flags;
        let mut buckets = Vec::new();
        if flags & config_flag::LIMIT_PPS != 0 {
            buckets.push(self.pps_bucket());
        }
        if let Target::Port(crate::policy::Proto::Tcp, _) = self.target {
            if flags & config_flag::LIMIT_SYN != 0 {
                buckets.push(self.syn_bucket());
            }
            if flags & config_flag::LIMIT_GLOBAL_SYN != 0 {
                buckets.push(self.global_bucket());
            }
        }
        buckets
    }

    /// The policy's entry for the source in `list`, else the live one.
    fn source_entry(&self, list: SourceList) -> DecidedBy {
        if let Some(at) = self.policy.locate_source(list, self.src) {
            return DecidedBy::Set {
                list: at.list,
                entry: at.entry.to_string(),
                set: at.set,
                file: at.file,
                line: at.line,
            };
        }
        let holds = |net: &IpNet| net.contains(&self.src);
        let live = |origin, action, net: &IpNet, expires: Option<u64>, decision| DecidedBy::Live {
            origin,
            action,
            entry: net.to_string(),
            expires,
            decision,
        };
        if list == SourceList::Allow {
            if let Some(net) = self.live.allow.iter().find(|n| holds(n)) {
                return live("cli", "allow", net, None, None);
            }
        } else {
            let in_force = |e| !self.clock.expired(e);
            if let Some((net, e)) = self
                .live
                .deny
                .iter()
                .find(|(n, e)| holds(n) && in_force(**e))
            {
                return live("cli", "deny", net, e.unix(), None);
            }
            let mut decisions = self.live.crowdsec.iter();
            if let Some((id, (net, e))) = decisions.find(|(_, (n, e))| holds(n) && in_force(*e)) {
                return live("crowdsec", "deny", net, e.unix(), Some(*id));
            }
        }
        setting(list.key(), "an entry that is no longer there".into())
    }

    /// The rule that lists the port or protocol for this destination: the policy's (live
    /// rules are merged in with line 0), or the live one.
    fn rule(&self) -> DecidedBy {
        let live = &self.live_ports;
        // A live rule with `--to` applies to its destinations only.
        let reaches = |to: &Option<Vec<crate::policy::ListItem>>| match to {
            None => true,
            Some(items) => self
                .policy
                .resolve(items)
                .is_ok_and(|nets| nets.iter().any(|n| n.contains(&self.dst))),
        };
        let (line, action, live) = match self.target {
            Target::Port(proto, port) => {
                let rule = self.policy.rule_for(proto, port, self.dst);
                let own = live.rules.iter().find(|r| {
                    r.spec.proto == proto && r.spec.ports.contains(port) && reaches(&r.to)
                });
                (
                    rule.map_or(0, |r| r.line),
                    "port",
                    own.map(ToString::to_string),
                )
            }
            Target::Protocol(n) => {
                let rule = self.policy.protocol_rule(n, self.dst);
                let own = live
                    .protocols
                    .iter()
                    .find(|r| r.protocol == n && reaches(&r.to));
                (
                    rule.map_or(0, |r| r.line),
                    "protocol",
                    own.map(ToString::to_string),
                )
            }
            Target::Icmp => (0, "", None),
        };
        match (line, live) {
            (0, Some(rule)) => DecidedBy::Live {
                origin: "cli",
                action,
                entry: rule,
                expires: None,
                decision: None,
            },
            (line, _) => DecidedBy::Rule {
                file: self.policy.files.policy.clone(),
                line,
                text: self.policy.table_text(line),
            },
        }
    }

    fn bucket_state(&self) -> LimiterState {
        let key = crate::model::limiter_key(self.src, &self.state.config);
        self.state.limiters.get(&key).copied().unwrap_or_default()
    }

    fn limiter_prefix(&self) -> IpNet {
        let config = &self.state.config;
        let len = match self.src {
            IpAddr::V4(_) => config.prefix_v4,
            IpAddr::V6(_) => config.prefix_v6,
        };
        IpNet::new(self.src, len).map_or_else(|_| IpNet::from(self.src), |n| n.trunc())
    }

    fn pps_bucket(&self) -> Bucket {
        let (c, l) = (&self.state.config, &self.policy.limits);
        let tat = self.bucket_state().pps_tat_ns;
        let gcra = (tat, c.pps_interval_ns, c.pps_tolerance_ns);
        self.bucket("per_source_pps", l.per_source_pps, l.per_source_burst, gcra)
    }

    fn syn_bucket(&self) -> Bucket {
        let (c, l) = (&self.state.config, &self.policy.limits);
        let tat = self.bucket_state().syn_tat_ns;
        let gcra = (tat, c.syn_interval_ns, c.syn_tolerance_ns);
        self.bucket(
            "per_source_syn_rate",
            l.per_source_syn_rate,
            l.per_source_syn_burst,
            gcra,
        )
    }

    fn global_bucket(&self) -> Bucket {
        let c = &self.state.config;
        let rate = self.policy.limits.global_syn_rate;
        let gcra = (
            self.state.global_syn_tat_ns,
            c.global_syn_interval_ns,
            c.global_syn_tolerance_ns,
        );
        let mut bucket = self.bucket("global_syn_rate", rate, rate, gcra);
        bucket.counts = "all sources (this CPU's share)".into();
        bucket
    }

    /// A limit's bucket from its GCRA state: (theoretical arrival time, interval,
    /// tolerance).
    fn bucket(&self, limit: &'static str, rate: u64, burst: u64, gcra: (u64, u64, u64)) -> Bucket {
        let (tat, interval, tolerance) = gcra;
        let (tokens, next) = room(tat, self.state.now_ns, interval, tolerance);
        Bucket {
            limit,
            rate,
            burst: if burst == 0 { rate } else { burst },
            counts: self.limiter_prefix().to_string(),
            tokens,
            next_in_ms: next.map(|ns| ns.div_ceil(1_000_000)),
        }
    }
}

/// How many packets a GCRA bucket admits at once at `now` (the model's `conforms`), and
/// when it admits one again if none.
pub fn room(tat: u64, now: u64, interval: u64, tolerance: u64) -> (u64, Option<u64>) {
    let backlog = tat.saturating_sub(now);
    if backlog > tolerance {
        return (0, Some(backlog - tolerance));
    }
    ((tolerance - backlog) / interval.max(1) + 1, None)
}

fn setting(setting: &'static str, value: String) -> DecidedBy {
    DecidedBy::Setting { setting, value }
}

fn action(a: Action) -> String {
    match a {
        Action::Pass => "pass",
        Action::Drop => "drop",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_one_per_interval() {
        // 10/s with a burst of 5: interval 100 ms, tolerance 400 ms.
        let (interval, tolerance) = (100_000_000, 400_000_000);
        assert_eq!(room(0, 1_000, interval, tolerance), (5, None));
        // Two packets spent: the theoretical arrival time is 200 ms ahead.
        assert_eq!(
            room(1_200_000_000, 1_000_000_000, interval, tolerance),
            (3, None)
        );
        assert_eq!(
            room(1_400_000_000, 1_000_000_000, interval, tolerance),
            (1, None)
        );
        // All spent: the next one conforms when the backlog is back to the tolerance.
        assert_eq!(
            room(1_450_000_000, 1_000_000_000, interval, tolerance),
            (0, Some(50_000_000))
        );
    }
}
