//! Connections this host opened, recorded on egress for return traffic.

/// A connection seen from this host: the key of the FLOWS map.
///
/// Addresses in network byte order; an IPv4 address fills the first 4 bytes, the rest zero.
/// Ports in network byte order as they stand in the packet.
// Aligned so that the programs copy its addresses in words, not bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: [u8; 2],
    pub remote_port: [u8; 2],
    /// `ipproto::TCP` or `ipproto::UDP`.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// The key of a flow between `local` and `remote` (addresses and ports as in the packet).
    #[inline(always)]
    pub fn new(
        local: ([u8; 16], [u8; 2]),
        remote: ([u8; 16], [u8; 2]),
        proto: u8,
        v6: bool,
    ) -> FlowKey {
        FlowKey {
            local_addr: local.0,
            remote_addr: remote.0,
            local_port: local.1,
            remote_port: remote.1,
            proto,
            family: if v6 { 6 } else { 4 },
            _pad: [0; 2],
        }
    }
}

/// Value of the FLOWS map: when the flow last saw a packet (`CLOCK_MONOTONIC` ns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub last_seen_ns: u64,
}

/// A flow idles out after this long without a packet (nanoseconds).
pub const FLOW_IDLE_NS_TCP: u64 = 3600 * 1_000_000_000;
pub const FLOW_IDLE_NS_UDP: u64 = 120 * 1_000_000_000;

/// The flow-ports array (one `u64` per `port_index(protocol slot, local port)`) keeps, per
/// local port, a time no older than the newest `last_seen_ns` of the flows on that port
/// minus this slack. A packet to a port whose time is 0, or older than the idle time plus
/// the slack, cannot be return traffic: the enforcer skips the flow-table lookup, the
/// costly part of the return check, for every port no recent flow used. The slack lets a
/// hit refresh the port's time at most once a second, and absorbs racing writers.
pub const FLOW_PORT_SLACK_NS: u64 = 2_000_000_000;

/// The flow-ports index of a flow's local port (`ipproto::TCP`, else UDP; the port as it
/// stands in the packet). The same index as the ports array's.
#[inline(always)]
pub fn flow_port_index(proto: u8, local_port: [u8; 2]) -> u32 {
    let slot = if proto == crate::ipproto::TCP {
        crate::PROTO_SLOT_TCP
    } else {
        crate::PROTO_SLOT_UDP
    };
    crate::port_index(slot, u16::from_be_bytes(local_port))
}
