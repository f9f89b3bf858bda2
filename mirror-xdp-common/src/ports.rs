//! The rules: a (protocol, port) array whose last slots are the other IP protocols' rules
//! (`[[protocols]]`), and the `from` sets of restricted rules.

/// Index into the ports array: `proto_slot << 16 | port`.
pub const PROTO_SLOT_TCP: u32 = 0;
pub const PROTO_SLOT_UDP: u32 = 1;
/// The `[[protocols]]` rules: `PROTO_SLOT_OTHER << 16 | IP protocol number`.
pub const PROTO_SLOT_OTHER: u32 = 2;
/// The egress rules' slots in the TO tries: `egress_index`. Their own array (EGRESS_PORTS)
/// is indexed like the ports array's first two protocols.
pub const PROTO_SLOT_EGRESS: u32 = 3;

/// The TO tries' index of the egress rule slot `index` (a ports-array index of TCP or UDP).
#[inline(always)]
pub fn egress_index(index: u32) -> u32 {
    index + (PROTO_SLOT_EGRESS << 16)
}

#[inline(always)]
pub fn port_index(proto_slot: u32, port: u16) -> u32 {
    (proto_slot << 16) | port as u32
}

/// The ports-array index of IP protocol `protocol`'s rule.
#[inline(always)]
pub fn protocol_index(protocol: u8) -> u32 {
    port_index(PROTO_SLOT_OTHER, protocol as u16)
}

/// One (protocol, port) slot of the ports array, or one IP protocol's slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortEntry {
    /// `port_flag::*` bits; 0 means no rule lists this port.
    pub flags: u16,
    /// With `port_flag::HAS_FROM`: the id of the rule's `from` set in the FROM tries.
    pub from_id: u16,
}

pub mod port_flag {
    /// A rule lists this port.
    pub const LISTED: u16 = 1 << 0;
    /// The rule has a `from` list: the source must match `from_id` in the FROM tries.
    pub const HAS_FROM: u16 = 1 << 1;
    /// Rules with `to` list this slot: the TO tries, keyed by the slot and the destination,
    /// hold the entry for their destinations; elsewhere this entry stands (listed or not).
    pub const HAS_TO: u16 = 1 << 2;
}

/// LPM key of the FROM_V4 trie: `from_id` then the address, both network byte order.
/// The prefix length counts the 32 bits of `from_id` too.
// Aligned so that the programs copy its addresses in words, not bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromKeyV4 {
    /// Big-endian `from_id`.
    pub from_id: [u8; 4],
    pub addr: [u8; 4],
}

/// LPM key of the TO_V4 trie: the ports-array index in place of `from_id`, then the
/// destination address; its value is the [`PortEntry`] for those destinations.
pub type ToKeyV4 = FromKeyV4;
/// LPM key of the TO_V6 trie, like [`ToKeyV4`].
pub type ToKeyV6 = FromKeyV6;

/// LPM key data of the FROM_V6 trie, like [`FromKeyV4`].
// Aligned so that the programs copy its addresses in words, not bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromKeyV6 {
    pub from_id: [u8; 4],
    pub addr: [u8; 16],
}
