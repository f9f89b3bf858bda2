//! TCP tricks: data offsets that lie about the header length, and the flag combinations
//! of stealth scans (NULL, FIN, Xmas and friends).

use super::{Class, Corpus, REFUSED, target_text};
use crate::observe::audit::frame::{ethernet, flag, ip, tcp};
use crate::observe::audit::intent::Meaning;
use crate::observe::audit::targets::TargetKind;
use crate::policy::Proto;

pub(super) fn add(c: &mut Corpus) {
    data_offsets(c);
    scans(c);
}

/// Offsets below the minimum (0, 4) and beyond the segment (15 and 6 words in 20 bytes).
fn data_offsets(c: &mut Corpus) {
    let aims = [c.aims(&REFUSED, false), c.aims(&[TargetKind::Closed], true)].concat();
    for aim in aims {
        for (trick, doff) in [
            ("TCP data offset 0", 0u8),
            ("TCP data offset 4", 4),
            ("TCP data offset 15 in a 20-byte segment", 15),
            ("TCP data offset 6 in a 20-byte segment", 6),
        ] {
            let mut segment = tcp(aim.port, flag::SYN, 5, &[]);
            segment.bytes[12] = doff << 4;
            let frame = ethernet(&[], &ip(aim.src, aim.dst, segment));
            c.port_probe(Class::TcpDataOffset, trick, &aim, frame);
        }
    }
}

fn scans(c: &mut Corpus) {
    use flag::*;
    let aims = [c.aims(&REFUSED, false), c.aims(&[TargetKind::Closed], true)].concat();
    for aim in aims {
        for (trick, flags) in [
            ("NULL scan (no flags)", 0),
            ("FIN scan", FIN),
            ("Xmas scan (FIN, PSH, URG)", FIN | PSH | URG),
            ("SYN+FIN", SYN | FIN),
            ("SYN+RST", SYN | RST),
            ("all flags", 0x3F),
            ("ACK scan", ACK),
        ] {
            let frame = ethernet(&[], &ip(aim.src, aim.dst, tcp(aim.port, flags, 5, &[])));
            let label = format!("{trick} to {}", target_text(&aim));
            let meaning = Meaning::Port(Proto::Tcp, aim.port);
            c.probe(Class::TcpFlagScans, label, aim.src, meaning, frame);
        }
    }
}
