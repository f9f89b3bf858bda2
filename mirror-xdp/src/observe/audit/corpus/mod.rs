//! The audit's corpus: evasive frames in classes, each built around the live policy's own
//! ports and sources (see [`super::targets`]) and labelled with the verdict the policy
//! intends (see [`super::intent`]). docs/audit.md explains each class's intent.

mod ipv4;
mod ipv6;
mod jumbo;
mod link;
mod protocols;
mod tcp;

use std::net::IpAddr;

use serde::Serialize;

use super::frame::{self, Payload};
use super::intent::{Intent, Meaning, PolicyView};
use super::targets::{Aim, TargetKind, Targets};
use crate::policy::Proto;

/// A class of evasive frames: one header trick, aimed at the policy's refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Vlan,
    Qinq,
    VlanStacked,
    Ipv4Options,
    Ipv4TinyFragment,
    Ipv4OverlappingFragment,
    NonFirstFragment,
    Ipv6ExtChain,
    Ipv6ExtLong,
    Ipv6ExtUnknown,
    Ipv6FragmentFirst,
    TcpDataOffset,
    TcpFlagScans,
    ZeroBroadcastAddress,
    Ipv4MappedIpv6,
    IpInIp,
    MultiBuffer,
    ListedProtocol,
}

impl Class {
    pub const ALL: [Class; 18] = [
        Class::Vlan,
        Class::Qinq,
        Class::VlanStacked,
        Class::Ipv4Options,
        Class::Ipv4TinyFragment,
        Class::Ipv4OverlappingFragment,
        Class::NonFirstFragment,
        Class::Ipv6ExtChain,
        Class::Ipv6ExtLong,
        Class::Ipv6ExtUnknown,
        Class::Ipv6FragmentFirst,
        Class::TcpDataOffset,
        Class::TcpFlagScans,
        Class::ZeroBroadcastAddress,
        Class::Ipv4MappedIpv6,
        Class::IpInIp,
        Class::MultiBuffer,
        Class::ListedProtocol,
    ];

    /// The name in the report (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Class::Vlan => "vlan",
            Class::Qinq => "qinq",
            Class::VlanStacked => "vlan-stacked",
            Class::Ipv4Options => "ipv4-options",
            Class::Ipv4TinyFragment => "ipv4-tiny-fragment",
            Class::Ipv4OverlappingFragment => "ipv4-overlapping-fragment",
            Class::NonFirstFragment => "non-first-fragment",
            Class::Ipv6ExtChain => "ipv6-ext-chain",
            Class::Ipv6ExtLong => "ipv6-ext-long",
            Class::Ipv6ExtUnknown => "ipv6-ext-unknown",
            Class::Ipv6FragmentFirst => "ipv6-fragment-first",
            Class::TcpDataOffset => "tcp-data-offset",
            Class::TcpFlagScans => "tcp-flag-scans",
            Class::ZeroBroadcastAddress => "zero-broadcast-address",
            Class::Ipv4MappedIpv6 => "ipv4-mapped-ipv6",
            Class::IpInIp => "ip-in-ip",
            Class::MultiBuffer => "multi-buffer",
            Class::ListedProtocol => "listed-protocol",
        }
    }
}

/// One frame of the corpus and what the policy intends for it.
#[derive(Clone, Debug)]
pub struct Probe {
    pub class: Class,
    /// What the frame is, for people: "802.1Q tag: TCP SYN to closed port 23 from ...".
    pub label: String,
    pub frame: Vec<u8>,
    pub intent: Intent,
}

/// Every probe of the corpus for this policy, class by class.
pub fn build(view: &PolicyView, targets: &Targets) -> Vec<Probe> {
    let mut corpus = Corpus {
        view,
        targets,
        probes: Vec::new(),
    };
    link::add(&mut corpus);
    ipv4::add(&mut corpus);
    ipv6::add(&mut corpus);
    tcp::add(&mut corpus);
    jumbo::add(&mut corpus);
    protocols::add(&mut corpus);
    corpus.probes
}

/// The corpus being built: the builders of each family add their classes' probes.
struct Corpus<'a> {
    view: &'a PolicyView,
    targets: &'a Targets,
    probes: Vec<Probe>,
}

/// Aims at every refusal: closed, from-restricted, denied.
const REFUSED: [TargetKind; 3] = [
    TargetKind::Closed,
    TargetKind::Restricted,
    TargetKind::Denied,
];
/// The refusals and the open-port control.
const ALL_AIMS: [TargetKind; 4] = [
    TargetKind::Closed,
    TargetKind::Restricted,
    TargetKind::Denied,
    TargetKind::Open,
];

impl Corpus<'_> {
    fn aims(&self, kinds: &[TargetKind], v6: bool) -> Vec<Aim> {
        self.targets.aims(kinds, v6)
    }

    /// Adds a frame that means a TCP segment from `aim.src` to `aim.port` at `aim.dst`.
    fn port_probe(&mut self, class: Class, trick: &str, aim: &Aim, frame: Vec<u8>) {
        let meaning = Meaning::Port(Proto::Tcp, aim.port);
        let label = format!("{trick}: {}", describe(aim));
        self.probe_to(class, label, (aim.src, aim.dst), meaning, frame);
    }

    /// Adds a frame from `src` to the targets' destination of its family.
    fn probe(
        &mut self,
        class: Class,
        label: String,
        src: IpAddr,
        meaning: Meaning,
        frame: Vec<u8>,
    ) {
        let dst = match src {
            IpAddr::V4(_) => self.targets.dst_v4.into(),
            IpAddr::V6(_) => self.targets.dst_v6.into(),
        };
        self.probe_to(class, label, (src, dst), meaning, frame);
    }

    fn probe_to(
        &mut self,
        class: Class,
        label: String,
        (src, dst): (IpAddr, IpAddr),
        meaning: Meaning,
        frame: Vec<u8>,
    ) {
        let intent = self.view.intent(src, dst, meaning);
        self.probes.push(Probe {
            class,
            label,
            frame,
            intent,
        });
    }
}

/// The segment an aim sends: a plain ACK to an open port (traffic that must pass, and that
/// no SYN limit counts), a SYN everywhere else (a connection attempt, what a bypass is for).
fn segment(aim: &Aim) -> Payload {
    frame::tcp(aim.port, flags_for(aim), 5, &[])
}

fn flags_for(aim: &Aim) -> u8 {
    if aim.kind == TargetKind::Open {
        frame::flag::ACK | frame::flag::PSH
    } else {
        frame::flag::SYN
    }
}

fn describe(aim: &Aim) -> String {
    let what = if aim.kind == TargetKind::Open {
        "TCP ACK"
    } else {
        "TCP SYN"
    };
    format!("{what} to {}", target_text(aim))
}

/// "closed port 23 from 198.51.100.200", "port 80 from denied 192.0.2.1".
fn target_text(aim: &Aim) -> String {
    let (port, source) = match aim.kind {
        TargetKind::Open => ("open port", ""),
        TargetKind::Closed => ("closed port", ""),
        TargetKind::Restricted => ("from-restricted port", ""),
        TargetKind::Denied => ("port", "denied "),
    };
    format!("{port} {} from {source}{}", aim.port, aim.src)
}

/// The aim with another source (zero, broadcast and mapped addresses).
fn from_source(aim: &Aim, src: IpAddr) -> Aim {
    Aim { src, ..*aim }
}

#[cfg(test)]
mod tests;
