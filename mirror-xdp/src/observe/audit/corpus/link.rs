//! Link-layer tricks: a packet to a refused port hidden behind 802.1Q and 802.1ad tags.
//! One or two tags are followed and judged like an untagged packet; more than two must not
//! carry a packet past the filter.

use super::{ALL_AIMS, Class, Corpus, REFUSED, segment};
use crate::observe::audit::frame::{ETHERTYPE_QINQ, ETHERTYPE_VLAN, ethernet, ip};
use crate::observe::audit::targets::TargetKind;

const VLAN: u16 = ETHERTYPE_VLAN;
const QINQ: u16 = ETHERTYPE_QINQ;

pub(super) fn add(c: &mut Corpus) {
    tagged(c, Class::Vlan, "802.1Q tag", &[VLAN], &ALL_AIMS);
    tagged(
        c,
        Class::Qinq,
        "802.1ad + 802.1Q tags",
        &[QINQ, VLAN],
        &ALL_AIMS,
    );
    tagged(c, Class::Qinq, "two 802.1Q tags", &[VLAN, VLAN], &REFUSED);
    // Past two tags the filter refuses to guess; only the refusals matter here.
    tagged(
        c,
        Class::VlanStacked,
        "three tags",
        &[QINQ, VLAN, VLAN],
        &REFUSED,
    );
    tagged(
        c,
        Class::VlanStacked,
        "four 802.1Q tags",
        &[VLAN; 4],
        &REFUSED,
    );
}

/// The class's frames from IPv4 sources to every kind in `kinds`, and from IPv6 sources to
/// a closed port and the open one.
fn tagged(c: &mut Corpus, class: Class, trick: &str, tags: &[u16], kinds: &[TargetKind]) {
    let v6_kinds: Vec<TargetKind> = kinds
        .iter()
        .copied()
        .filter(|k| matches!(k, TargetKind::Closed | TargetKind::Open))
        .collect();
    let aims = [c.aims(kinds, false), c.aims(&v6_kinds, true)].concat();
    for aim in aims {
        let frame = ethernet(tags, &ip(aim.src, aim.dst, segment(&aim)));
        c.port_probe(class, trick, &aim, frame);
    }
}
