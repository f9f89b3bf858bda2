//! Why a packet got its verdict: the reason names, in verdict order (README, "What happens
//! to a packet").

/// A verdict reason. The kernel writes `reason as u32`; user space turns codes back with
/// [`Reason::from_code`]. Reasons that can pass or drop (`icmp`, `fragment`, `protocol`) are
/// one reason each; the counters keep the dropped packets in a slot of their own.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NonIp = 0,
    Malformed = 1,
    Trusted = 2,
    Denied = 3,
    Banned = 4,
    RateLimited = 5,
    Icmp = 6,
    Fragment = 7,
    Return = 8,
    SourceNotAllowed = 9,
    SynFlood = 10,
    Allowed = 11,
    PortClosed = 12,
    Default = 13,
    Protocol = 14,
    /// Answered with a SYN cookie SYN-ACK (XDP_TX) instead of dropped: appended last so the
    /// codes above keep their numbers.
    SynCookie = 15,
    /// A connection this host opens that no egress rule lists, with `[egress] default =
    /// "drop"`: the egress program's only reason.
    EgressDenied = 16,
}

/// How many reasons there are.
pub const COUNT: usize = 17;
/// The reasons the XDP program gives: all but `EgressDenied`.
pub const XDP_COUNT: usize = 16;

impl Reason {
    pub const ALL: [Reason; COUNT] = [
        Reason::NonIp,
        Reason::Malformed,
        Reason::Trusted,
        Reason::Denied,
        Reason::Banned,
        Reason::RateLimited,
        Reason::Icmp,
        Reason::Fragment,
        Reason::Return,
        Reason::SourceNotAllowed,
        Reason::SynFlood,
        Reason::Allowed,
        Reason::PortClosed,
        Reason::Default,
        Reason::Protocol,
        Reason::SynCookie,
        Reason::EgressDenied,
    ];

    /// The name used by `stats --json`, the Prometheus labels and the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NonIp => "non_ip",
            Reason::Malformed => "malformed",
            Reason::Trusted => "trusted",
            Reason::Denied => "denied",
            Reason::Banned => "banned",
            Reason::RateLimited => "rate_limited",
            Reason::Icmp => "icmp",
            Reason::Fragment => "fragment",
            Reason::Return => "return",
            Reason::SourceNotAllowed => "source_not_allowed",
            Reason::SynFlood => "syn_flood",
            Reason::Allowed => "allowed",
            Reason::PortClosed => "port_closed",
            Reason::Default => "default",
            Reason::Protocol => "protocol",
            Reason::SynCookie => "syn_cookie",
            Reason::EgressDenied => "egress_denied",
        }
    }

    pub fn from_code(code: u32) -> Option<Reason> {
        Reason::ALL.get(code as usize).copied()
    }
}
