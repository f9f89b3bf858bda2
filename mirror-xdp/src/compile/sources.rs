//! Static source lists (`sources.allow`, `sources.deny`) compiled into the tiered hash
//! entries described in `mirror_xdp_common::sources`.

use ipnet::{Ipv4Net, Ipv6Net};
use mirror_xdp_common::{SourceEntry, SourceKeyV4, SourceKeyV6};

/// The SOURCES_V4 entries for prefixes tagged with `source_flag` bits.
pub fn tiers_v4(_prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
    todo!("being written")
}

/// The SOURCES_V6 entries for prefixes tagged with `source_flag` bits.
pub fn tiers_v6(_prefixes: &[(Ipv6Net, u8)]) -> Vec<(SourceKeyV6, SourceEntry)> {
    todo!("being written")
}
