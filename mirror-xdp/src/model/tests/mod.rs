//! Unit tests of the reference model: the example policy and helpers they share.

mod egress;
mod headers;
mod limits;
mod steps;
mod syncookie;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use mirror_xdp_common::{Reason, ipproto};

use super::test_frames::*;
use super::*;
use crate::policy::{Limits, PortRange, PortRule, Settings};

pub(super) const ADMIN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
pub(super) const ADMIN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 5);
pub(super) const BAD4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
pub(super) const BAD6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9);
pub(super) const PEER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub(super) const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(super) const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub(super) const LOCAL4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

pub(super) const SYN: u8 = tcp_flag::SYN;

pub(super) fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

pub(super) fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect()
}

/// An example policy without limits: web/rsync open, SSH for admins, 9000 for one peer net.
pub(super) fn policy() -> Policy {
    Policy {
        path: PathBuf::from("/etc/mirror-xdp/policy.toml"),
        settings: Settings::default(),
        rules: vec![
            PortRule {
                proto: Proto::Tcp,
                ports: ports(&[(80, 80), (443, 443), (873, 873), (30001, 30010)]),
                from: None,
                to: None,
                line: 0,
            },
            PortRule {
                proto: Proto::Tcp,
                ports: ports(&[(22, 22)]),
                from: Some(nets(&["203.0.113.0/24", "2001:db8:a::/48"])),
                to: None,
                line: 0,
            },
            PortRule {
                proto: Proto::Tcp,
                ports: ports(&[(9000, 9000)]),
                from: Some(nets(&["198.51.100.0/24"])),
                to: None,
                line: 0,
            },
            PortRule {
                proto: Proto::Udp,
                ports: ports(&[(5140, 5140)]),
                from: None,
                to: None,
                line: 0,
            },
        ],
        allow: nets(&["203.0.113.0/24", "2001:db8:a::/48"]),
        deny: nets(&["192.0.2.0/24", "2001:db8:bad::/48"]),
        limits: Limits::default(),
        global_syn_rate_at: None,
        sets: Default::default(),
        crowdsec: None,
        protocols: Vec::new(),
        egress: Default::default(),
        files: Default::default(),
    }
}

pub(super) fn with(f: impl FnOnce(&mut Settings)) -> Policy {
    let mut p = policy();
    f(&mut p.settings);
    p
}

/// The judgement under `policy` with no flows.
pub(super) fn judge_with(frame: &[u8], policy: &Policy) -> Judgement {
    classify(frame, policy, &mut ModelState::default())
}

pub(super) fn judge(frame: &[u8]) -> Judgement {
    judge_with(frame, &policy())
}

#[track_caller]
pub(super) fn passes(j: Judgement, reason: Reason) {
    assert_eq!(
        (j.reason, j.dropped, j.passes),
        (reason, false, true),
        "{j:?}"
    );
}

#[track_caller]
pub(super) fn drops(j: Judgement, reason: Reason) {
    assert_eq!(
        (j.reason, j.dropped, j.passes),
        (reason, true, false),
        "{j:?}"
    );
}

pub(super) fn v4(src: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(&[], IPV4, &ipv4(src, LOCAL4, proto, &[], 0, l4))
}

pub(super) fn v6(src: Ipv6Addr, next: u8, rest: &[u8]) -> Vec<u8> {
    eth(&[], IPV6, &ipv6(src, LOCAL6, next, rest))
}

pub(super) fn tcp4(src: Ipv4Addr, dport: u16) -> Vec<u8> {
    v4(src, ipproto::TCP, &tcp(40000, dport, SYN))
}
