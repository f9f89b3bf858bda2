//! The corpus against the reference model: every frame is well formed where it means to
//! be, the example policy's verdicts match the intent, and a policy that passes what the
//! filter cannot read is caught.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Class, Probe, build};
use crate::live::sources::LiveSet;
use crate::model::{IpPacket, ModelState, Parsed, classify, parse};
use crate::observe::audit::intent::PolicyView;
use crate::observe::audit::targets::Targets;
use crate::policy::Policy;
use mirror_xdp_common::wire::checksum;

fn example() -> Policy {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/mirror.toml"
    ));
    Policy::load(path).expect("the example policy validates")
}

fn with(policy_text_edit: impl Fn(String) -> String) -> Policy {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/mirror.toml"
    ));
    let text = policy_text_edit(std::fs::read_to_string(path).unwrap());
    Policy::parse(&text, path).expect("the edited policy validates")
}

fn corpus(policy: &Policy) -> (PolicyView, Targets, Vec<Probe>) {
    let view = PolicyView::new(policy.clone(), &LiveSet::default(), 0);
    let targets = Targets::pick(&view);
    let probes = build(&view, &targets);
    (view, targets, probes)
}

/// The classes in which the model's verdict differs from the intent.
fn model_findings(policy: &Policy, probes: &[Probe]) -> BTreeSet<Class> {
    let config = crate::compile::compile(policy, 1).unwrap().config;
    probes
        .iter()
        .filter(|p| {
            let mut state = ModelState {
                config,
                ..ModelState::default()
            };
            classify(&p.frame, policy, &mut state).passes == p.intent.drop
        })
        .map(|p| p.class)
        .collect()
}

#[test]
fn the_example_policy_yields_every_class_and_its_targets() {
    let (_, targets, probes) = corpus(&example());
    assert_eq!(targets.closed_port, Some(23));
    assert_eq!(targets.open_port, Some(80));
    assert_eq!(targets.restricted_port, Some(22));
    assert_eq!(targets.denied_v4, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(targets.denied_v6, None);
    assert!(targets.missing().is_empty(), "{:?}", targets.missing());
    // The example lists no protocol: `listed-protocol` has its own test.
    for class in Class::ALL
        .into_iter()
        .filter(|c| *c != Class::ListedProtocol)
    {
        assert!(
            probes.iter().any(|p| p.class == class),
            "no frame for {}",
            class.name()
        );
    }
    // Both intents are present: the refusals and the pass controls.
    assert!(probes.iter().any(|p| p.intent.drop));
    assert!(probes.iter().any(|p| !p.intent.drop));
}

#[test]
fn the_model_judges_every_frame_of_the_example_policy_as_intended() {
    let policy = example();
    let (_, _, probes) = corpus(&policy);
    assert_eq!(model_findings(&policy, &probes), BTreeSet::new());
}

#[test]
fn passing_other_protocols_lets_tunnels_and_unknown_headers_through() {
    let policy = with(|t| t.replace("other_protocols = \"drop\"", "other_protocols = \"pass\""));
    let (_, _, probes) = corpus(&policy);
    assert_eq!(
        model_findings(&policy, &probes),
        BTreeSet::from([Class::Ipv6ExtUnknown, Class::IpInIp])
    );
}

#[test]
fn a_listed_protocol_passes_from_its_sources_only() {
    let vrrp = "[[protocols]]\nprotocols = [\"vrrp\"]\nfrom = [\"198.18.0.0/24\", \"2001:db8:18::/48\"]\n\
                [[protocols]]\nprotocols = [\"esp\"]\n";
    let policy = with(|t| format!("{t}\n{vrrp}"));
    let (_, _, probes) = corpus(&policy);
    let listed: Vec<_> = probes
        .iter()
        .filter(|p| p.class == Class::ListedProtocol)
        .map(|p| (p.label.as_str(), p.intent.drop))
        .collect();
    // VRRP: two unnamed, a denied, two admitted sources; ESP: unnamed and denied.
    assert_eq!(listed.len(), 8, "{listed:#?}");
    let intent = |label: &str| listed.iter().find(|(l, _)| *l == label).map(|(_, d)| *d);
    assert_eq!(
        intent("protocol vrrp (112) from admitted 198.18.0.1"),
        Some(false)
    );
    assert_eq!(
        intent("protocol vrrp (112) from admitted 2001:db8:18::1"),
        Some(false)
    );
    assert_eq!(
        intent("protocol vrrp (112) from denied 192.0.2.1"),
        Some(true)
    );
    assert_eq!(
        intent("protocol esp (50) from denied 192.0.2.1"),
        Some(true)
    );
    assert!(
        listed
            .iter()
            .any(|(l, d)| l.starts_with("protocol vrrp (112) from unnamed") && *d)
    );
    assert!(
        listed
            .iter()
            .any(|(l, d)| l.starts_with("protocol esp (50) from unnamed") && !*d)
    );
    assert_eq!(model_findings(&policy, &probes), BTreeSet::new());
    // A rule that admits anyone where the policy meant the peers: a finding.
    let open = with(|t| format!("{t}\n{}", vrrp.replace("from = ", "# from = ")));
    let view = PolicyView::new(policy.clone(), &LiveSet::default(), 0);
    let targets = Targets::pick(&view);
    let probes = build(&view, &targets);
    assert_eq!(
        model_findings(&open, &probes),
        BTreeSet::from([Class::ListedProtocol])
    );
}

#[test]
fn rules_with_to_are_aimed_at_their_destination_and_audit_clean() {
    let policy = with(|t| {
        format!("{t}\n[[ports]]\nproto = \"tcp\"\nports = [8443]\nto = [\"198.51.100.7\"]\n")
    });
    let (_, targets, probes) = corpus(&policy);
    assert_eq!(targets.dst_v4, std::net::Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(model_findings(&policy, &probes), BTreeSet::new());
}

#[test]
fn passing_fragments_is_no_finding() {
    let policy = example();
    assert_eq!(policy.settings.fragments, crate::policy::Action::Pass);
    let (_, _, probes) = corpus(&policy);
    let fragments: Vec<_> = probes
        .iter()
        .filter(|p| p.class == Class::NonFirstFragment)
        .collect();
    // IPv4 and IPv6 from an unnamed source (passing by the setting), IPv4 from the denied
    // source (the example policy denies no IPv6 source).
    assert_eq!(fragments.len(), 3, "{fragments:#?}");
    assert!(fragments.iter().any(|p| !p.intent.drop));
    assert!(fragments.iter().any(|p| p.intent.drop));
    assert_eq!(model_findings(&policy, &probes), BTreeSet::new());
}

#[test]
fn default_pass_has_no_closed_port() {
    let policy = with(|t| t.replace("default = \"drop\"", "default = \"pass\""));
    let (_, targets, probes) = corpus(&policy);
    assert_eq!(targets.closed_port, None);
    assert!(targets.missing()[0].contains("no closed ports"));
    assert!(!probes.iter().any(|p| p.label.contains("closed port")));
    assert_eq!(model_findings(&policy, &probes), BTreeSet::new());
}

#[test]
fn frames_have_valid_lengths_and_ipv4_checksums() {
    let (_, _, probes) = corpus(&example());
    let mut checked = 0;
    for p in &probes {
        let Ok(Parsed::Ip(IpPacket { ip_offset, .. })) = parse(&p.frame) else {
            continue;
        };
        let packet = &p.frame[ip_offset..];
        match packet[0] >> 4 {
            4 => {
                let header_len = usize::from(packet[0] & 0x0F) * 4;
                assert_eq!(checksum(&[&packet[..header_len]]), 0, "{}", p.label);
                let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
                // Only link padding may follow the packet.
                assert!(
                    p.frame[ip_offset + total..].iter().all(|&b| b == 0),
                    "{}",
                    p.label
                );
                assert!(
                    ip_offset + total == p.frame.len() || p.frame.len() == 60,
                    "{}",
                    p.label
                );
            }
            _ => {
                let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
                assert!(ip_offset + 40 + payload <= p.frame.len(), "{}", p.label);
            }
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} frames parsed");
}

#[test]
fn malformed_tricks_are_malformed_to_the_model() {
    let (_, _, probes) = corpus(&example());
    for class in [
        Class::VlanStacked,
        Class::Ipv4TinyFragment,
        Class::TcpDataOffset,
        Class::Ipv6ExtLong,
    ] {
        for p in probes.iter().filter(|p| p.class == class) {
            assert!(
                parse(&p.frame).is_err(),
                "{} parses: {}",
                class.name(),
                p.label
            );
        }
    }
}
