//! The tc clsact hook's netlink plumbing, for kernels without TCX (Linux before 6.6): read
//! which program a cls_bpf filter runs (`TCA_BPF_ID`), whether the clsact qdisc is there and
//! which filters it holds, and delete a filter or the qdisc. aya creates the qdisc and the
//! filter and replaces a filter's program; it neither dumps filters nor deletes qdiscs.
//! Nothing here knows whose filter is whose: the lifecycle decides that.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
    NlaBuffer, NlasIterator,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// The clsact qdisc's parent and handle (`TC_H_CLSACT`, `ffff:`).
const CLSACT_PARENT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// The clsact qdisc's two hooks (`TC_H_MIN_INGRESS`, `TC_H_MIN_EGRESS` under `ffff:`).
const INGRESS_PARENT: u32 = 0xFFFF_FFF2;
const EGRESS_PARENT: u32 = 0xFFFF_FFF3;
/// cls_bpf's attributes under `TCA_OPTIONS` (linux/pkt_cls.h).
const TCA_BPF_NAME: u16 = 3;
const TCA_BPF_ID: u16 = 11;

#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("{what} on {iface} (netlink): {source}")]
    Netlink {
        iface: String,
        what: &'static str,
        source: io::Error,
    },
}

/// One filter on a clsact hook, as a dump shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
    /// `bpf`, `matchall`, `u32`, ...
    pub kind: String,
    /// For cls_bpf: the program it runs and the name it was attached with.
    pub program_id: Option<u32>,
    pub program_name: Option<String>,
}

/// The filters on the egress hook of `iface`'s clsact qdisc (none without the qdisc).
pub fn egress_filters(iface: &str) -> Result<Vec<Filter>, TcError> {
    filters(iface, EGRESS_PARENT)
}

/// The filter with this priority and handle on `iface`'s egress hook, if any.
pub fn egress_filter(iface: &str, priority: u16, handle: u32) -> Result<Option<Filter>, TcError> {
    Ok(egress_filters(iface)?
        .into_iter()
        .find(|f| f.priority == priority && f.handle == handle))
}

/// Every filter on both hooks of `iface`'s clsact qdisc.
pub fn clsact_filters(iface: &str) -> Result<Vec<Filter>, TcError> {
    let mut found = filters(iface, INGRESS_PARENT)?;
    found.extend(filters(iface, EGRESS_PARENT)?);
    Ok(found)
}

/// Whether `iface` has a clsact qdisc.
pub fn clsact_exists(iface: &str) -> Result<bool, TcError> {
    let index = ifindex(iface)?;
    let mut msg = TcMessage::default();
    msg.header.index = index;
    let replies = request(
        RouteNetlinkMessage::GetQueueDiscipline(msg),
        NLM_F_DUMP,
        iface,
        "listing the qdiscs",
    )?;
    Ok(replies.iter().any(|m| match m {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            q.header.index == index && u32::from(q.header.parent) == CLSACT_PARENT
        }
        _ => false,
    }))
}

/// Deletes the filter with this priority and handle from `iface`'s egress hook. `false` if
/// there was none (already gone).
pub fn delete_egress_filter(iface: &str, priority: u16, handle: u32) -> Result<bool, TcError> {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex(iface)?;
    msg.header.parent = TcHandle::from(EGRESS_PARENT);
    msg.header.handle = TcHandle::from(handle);
    // Priority in the upper half; protocol 0 matches the filter whatever its protocol.
    msg.header.info = u32::from(priority) << 16;
    ignore_missing(request(
        RouteNetlinkMessage::DelTrafficFilter(msg),
        NLM_F_ACK,
        iface,
        "deleting the egress filter",
    ))
}

/// Deletes `iface`'s clsact qdisc, and with it every filter on it. `false` if there was none.
pub fn delete_clsact(iface: &str) -> Result<bool, TcError> {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex(iface)?;
    msg.header.parent = TcHandle::from(CLSACT_PARENT);
    msg.header.handle = TcHandle::from(CLSACT_HANDLE);
    msg.attributes.push(TcAttribute::Kind("clsact".into()));
    ignore_missing(request(
        RouteNetlinkMessage::DelQueueDiscipline(msg),
        NLM_F_ACK,
        iface,
        "deleting the clsact qdisc",
    ))
}

fn ignore_missing(result: Result<Vec<RouteNetlinkMessage>, TcError>) -> Result<bool, TcError> {
    match result {
        Ok(_) => Ok(true),
        Err(TcError::Netlink { source, .. })
            if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) =>
        {
            // ENOENT: no such filter or qdisc; EINVAL: no clsact qdisc to find the hook on.
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn filters(iface: &str, parent: u32) -> Result<Vec<Filter>, TcError> {
    let index = ifindex(iface)?;
    let mut msg = TcMessage::default();
    msg.header.index = index;
    msg.header.parent = TcHandle::from(parent);
    let replies = match request(
        RouteNetlinkMessage::GetTrafficFilter(msg),
        NLM_F_DUMP,
        iface,
        "listing the clsact filters",
    ) {
        Ok(replies) => replies,
        // No clsact qdisc: no hook, so no filters.
        Err(TcError::Netlink { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewTrafficFilter(f)
                if f.header.index == index && u32::from(f.header.parent) == parent =>
            {
                Some(f)
            }
            _ => None,
        })
        // A dump shows each priority's classifier once on its own (handle 0), then its
        // filters.
        .filter(|f| u32::from(f.header.handle) != 0)
        .map(|f| filter(&f))
        .collect())
}

fn filter(msg: &TcMessage) -> Filter {
    let mut found = Filter {
        priority: (msg.header.info >> 16) as u16,
        handle: msg.header.handle.into(),
        kind: String::new(),
        program_id: None,
        program_name: None,
    };
    for attr in &msg.attributes {
        match attr {
            TcAttribute::Kind(kind) => found.kind = kind.clone(),
            TcAttribute::Options(options) => {
                for option in options {
                    // cls_bpf's options are not parsed by netlink-packet-route: one raw
                    // TCA_OPTIONS attribute holding them.
                    if let TcOption::Other(raw) = option {
                        let mut value = vec![0; raw.value_len()];
                        raw.emit_value(&mut value);
                        read_bpf_options(&value, &mut found);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

fn read_bpf_options(bytes: &[u8], found: &mut Filter) {
    for nla in NlasIterator::new(bytes).flatten() {
        let nla: NlaBuffer<&[u8]> = nla;
        let value = nla.value();
        match nla.kind() {
            TCA_BPF_ID if value.len() >= 4 => {
                found.program_id =
                    Some(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]))
            }
            TCA_BPF_NAME => {
                let name = value.split(|b| *b == 0).next().unwrap_or_default();
                found.program_name = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
}

/// Asks the kernel of this network namespace (/sys may show another one's interfaces).
fn ifindex(iface: &str) -> Result<i32, TcError> {
    nix::net::if_::if_nametoindex(iface)
        .map(|i| i as i32)
        .map_err(|_| TcError::NoSuchInterface(iface.to_string()))
}

/// Sends one request and collects the replies: up to the end of a dump, or up to the
/// acknowledgement (an error the kernel answers becomes `Err`).
fn request(
    message: RouteNetlinkMessage,
    flags: u16,
    iface: &str,
    what: &'static str,
) -> Result<Vec<RouteNetlinkMessage>, TcError> {
    let fail = |source: io::Error| TcError::Netlink {
        iface: iface.to_string(),
        what,
        source,
    };
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
    socket.bind_auto().map_err(fail)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(fail)?;

    let mut replies = Vec::new();
    loop {
        let (bytes, _) = socket.recv_from_full().map_err(fail)?;
        let mut offset = 0;
        while offset < bytes.len() {
            let reply: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&bytes[offset..])
                    .map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(e) => match e.code {
                    None => return Ok(replies),
                    Some(_) => return Err(fail(e.to_io())),
                },
                NetlinkPayload::InnerMessage(m) => replies.push(m),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::DefaultNla;

    /// A filter message as the kernel sends a cls_bpf filter in a dump: `TCA_KIND` "bpf" and
    /// the cls_bpf attributes nested, unparsed, in `TCA_OPTIONS`.
    fn bpf_filter_message(id: u32, name: &str) -> TcMessage {
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        // Emitted inside one TCA_OPTIONS, as the kernel nests them.
        let options = [
            DefaultNla::new(1, 7u32.to_ne_bytes().to_vec()),
            DefaultNla::new(TCA_BPF_NAME, name_bytes),
            DefaultNla::new(TCA_BPF_ID, id.to_ne_bytes().to_vec()),
        ]
        .map(TcOption::Other)
        .to_vec();
        let mut msg = TcMessage::default();
        msg.header.index = 3;
        msg.header.parent = TcHandle::from(EGRESS_PARENT);
        msg.header.handle = TcHandle::from(0x4d58);
        msg.header.info = (0x4d58 << 16) | 0x0300;
        msg.attributes.push(TcAttribute::Kind("bpf".into()));
        msg.attributes.push(TcAttribute::Options(options));
        msg
    }

    #[test]
    fn a_dumped_bpf_filter_gives_its_priority_handle_and_program() {
        // Through the wire format and back, as a dump delivers it.
        let sent = bpf_filter_message(4242, "mirror_egress");
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewTrafficFilter(sent)),
        );
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let received: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(msg)) =
            received.payload
        else {
            panic!("not a filter: {received:?}");
        };
        assert_eq!(
            filter(&msg),
            Filter {
                priority: 0x4d58,
                handle: 0x4d58,
                kind: "bpf".into(),
                program_id: Some(4242),
                program_name: Some("mirror_egress".into()),
            }
        );
    }

    #[test]
    fn a_filter_of_another_kind_has_no_program() {
        let mut msg = TcMessage::default();
        msg.header.info = 5 << 16;
        msg.header.handle = TcHandle::from(1);
        msg.attributes.push(TcAttribute::Kind("matchall".into()));
        let found = filter(&msg);
        assert_eq!((found.priority, found.kind.as_str()), (5, "matchall"));
        assert_eq!(found.program_id, None);
    }
}
