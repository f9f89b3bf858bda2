//! The embedded eBPF object against user space, without root: every map the object defines
//! is one that `mirror_xdp_common::map_name::ALL` names and the other way round, of the
//! kind user space opens it as, with the key and value sizes of the shared types user
//! space reads and writes through it. A layout drift between the two crates fails here,
//! not at load time on a server.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the mirror-xdp package and uses a few"
)]

use std::{collections::BTreeMap, mem::size_of};

use mirror_xdp_common::{
    Config, Counter, DropBucket, FlowKey, FlowState, FromKeyV4, FromKeyV6, LimiterKey,
    LimiterState, LiveEntry, PortCounter, PortEntry, SourceEntry, SourceKeyV4, SourceKeyV6,
    ToKeyV4, ToKeyV6, TraceBucket, TraceFilter, events::DROP_RING_BYTES, map_name,
};

/// The object `mirror-xdp` embeds: its build script leaves it in this package's OUT_DIR.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mirror-xdp"));

/// `bpf_map_type` values of the kinds the programs use.
mod map_type {
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const LRU_HASH: u32 = 9;
    pub const LPM_TRIE: u32 = 11;
    pub const RINGBUF: u32 = 27;
}

/// An LPM trie key: the prefix length (`u32`), then the key data.
const fn lpm<T>() -> usize {
    size_of::<u32>() + size_of::<T>()
}

/// What user space expects of each map: kind, key size, value size.
fn expected() -> BTreeMap<&'static str, (u32, usize, usize)> {
    use map_type::*;
    let index = size_of::<u32>();
    BTreeMap::from([
        (map_name::CONFIG, (ARRAY, index, size_of::<Config>())),
        (map_name::PORTS, (ARRAY, index, size_of::<PortEntry>())),
        (
            map_name::SOURCES_V4,
            (HASH, size_of::<SourceKeyV4>(), size_of::<SourceEntry>()),
        ),
        (map_name::BLOCKS_V4, (ARRAY, index, size_of::<u64>())),
        (map_name::BLOCKS_V6, (ARRAY, index, size_of::<u64>())),
        (
            map_name::SOURCES_V6,
            (HASH, size_of::<SourceKeyV6>(), size_of::<SourceEntry>()),
        ),
        (
            map_name::LIVE_ALLOW_V4,
            (LPM_TRIE, lpm::<[u8; 4]>(), size_of::<LiveEntry>()),
        ),
        (
            map_name::LIVE_ALLOW_V6,
            (LPM_TRIE, lpm::<[u8; 16]>(), size_of::<LiveEntry>()),
        ),
        (
            map_name::LIVE_DENY_V4,
            (LPM_TRIE, lpm::<[u8; 4]>(), size_of::<LiveEntry>()),
        ),
        (
            map_name::LIVE_DENY_V6,
            (LPM_TRIE, lpm::<[u8; 16]>(), size_of::<LiveEntry>()),
        ),
        (map_name::LIVE_BLOCKS_V4, (ARRAY, index, size_of::<u64>())),
        (map_name::LIVE_BLOCKS_V6, (ARRAY, index, size_of::<u64>())),
        (
            map_name::FROM_V4,
            (LPM_TRIE, lpm::<FromKeyV4>(), size_of::<u32>()),
        ),
        (
            map_name::TO_V4,
            (LPM_TRIE, lpm::<ToKeyV4>(), size_of::<PortEntry>()),
        ),
        (
            map_name::TO_V6,
            (LPM_TRIE, lpm::<ToKeyV6>(), size_of::<PortEntry>()),
        ),
        (
            map_name::EGRESS_PORTS,
            (ARRAY, index, size_of::<PortEntry>()),
        ),
        (
            map_name::EGRESS_STATS,
            (PERCPU_ARRAY, index, size_of::<Counter>()),
        ),
        (
            map_name::FROM_V6,
            (LPM_TRIE, lpm::<FromKeyV6>(), size_of::<u32>()),
        ),
        (
            map_name::FLOWS,
            (LRU_HASH, size_of::<FlowKey>(), size_of::<FlowState>()),
        ),
        (map_name::FLOW_PORTS, (ARRAY, index, size_of::<u64>())),
        (
            map_name::LIMITS,
            (LRU_HASH, size_of::<LimiterKey>(), size_of::<LimiterState>()),
        ),
        (
            map_name::LIMITER_NEW,
            (PERCPU_ARRAY, index, size_of::<u64>()),
        ),
        (
            map_name::GLOBAL_SYN,
            (PERCPU_ARRAY, index, size_of::<u64>()),
        ),
        (map_name::STATS, (PERCPU_ARRAY, index, size_of::<Counter>())),
        (
            map_name::PORT_STATS,
            (PERCPU_ARRAY, index, size_of::<PortCounter>()),
        ),
        (
            map_name::PROTOCOL_STATS,
            (PERCPU_ARRAY, index, size_of::<PortCounter>()),
        ),
        (map_name::SYN_KEEPALIVE, (ARRAY, index, size_of::<u64>())),
        (map_name::DROPS, (RINGBUF, 0, 0)),
        (
            map_name::DROP_BUCKET,
            (PERCPU_ARRAY, index, size_of::<DropBucket>()),
        ),
        (
            map_name::TRACE_FILTER,
            (ARRAY, index, size_of::<TraceFilter>()),
        ),
        (map_name::TRACE, (RINGBUF, 0, 0)),
        (
            map_name::TRACE_BUCKET,
            (PERCPU_ARRAY, index, size_of::<TraceBucket>()),
        ),
    ])
}

fn object_maps() -> BTreeMap<String, aya_obj::Map> {
    assert!(
        !OBJECT.is_empty(),
        "the embedded eBPF object is empty (built with MIRROR_XDP_SKIP_EBPF?): nothing to check"
    );
    let object = aya_obj::Object::parse(OBJECT).expect("the embedded eBPF object parses");
    object
        .maps
        .into_iter()
        // `.rodata`, `.bss` and the like: the compiler's data sections, not maps of ours.
        .filter(|(name, _)| !name.starts_with('.'))
        .collect()
}

#[test]
fn object_defines_exactly_the_maps_user_space_names() {
    let maps = object_maps();
    let in_object: Vec<&str> = maps.keys().map(String::as_str).collect();
    let mut named: Vec<&str> = map_name::ALL.to_vec();
    named.sort_unstable();
    assert_eq!(in_object, named);
    let mut expected: Vec<&str> = expected().into_keys().collect();
    expected.sort_unstable();
    assert_eq!(expected, named, "this test's table covers every map");
}

#[test]
fn map_keys_and_values_have_the_shared_types_sizes() {
    let maps = object_maps();
    for (name, (kind, key, value)) in expected() {
        let map = maps
            .get(name)
            .unwrap_or_else(|| panic!("map {name} is missing from the object"));
        assert_eq!(map.map_type(), kind, "map {name}: kind");
        assert_eq!(map.key_size() as usize, key, "map {name}: key size");
        assert_eq!(map.value_size() as usize, value, "map {name}: value size");
    }
}

#[test]
fn drop_ring_has_the_shared_size() {
    let maps = object_maps();
    let ring = maps.get(map_name::DROPS).expect("the drop ring buffer");
    assert_eq!(ring.max_entries(), DROP_RING_BYTES);
}
