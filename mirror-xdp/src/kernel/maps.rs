//! Typed access to the enforcer's BPF maps, from a freshly loaded object or from the pins of
//! an attached enforcer. No map-name strings live anywhere else in user space.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key},
};
use mirror_xdp_common::{
    Config, Counter, FlowKey, FlowState, FromKeyV4, FromKeyV6, LimiterKey, LimiterState, LiveEntry,
    PortCounter, PortEntry, Reason, SourceEntry, SourceKeyV4, SourceKeyV6, ToKeyV4, ToKeyV6,
    capacity, config_flag, flows::flow_port_index, map_name, stats_index,
};

use std::os::fd::AsFd;

use aya::maps::IterableMap;

use crate::{compile::MapImage, kernel::batch, state::Paths};

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("map {name} is missing from the eBPF object")]
    Missing { name: &'static str },
    #[error("cannot open pinned map {path}: {source}")]
    OpenPin {
        path: std::path::PathBuf,
        source: MapError,
    },
    #[error("writing map {name}: {source}")]
    Batch {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("map {name}: {source}")]
    Access {
        name: &'static str,
        source: MapError,
    },
}

/// All maps of one enforcer.
pub struct Maps {
    pub config: Array<MapData, Config>,
    pub ports: Array<MapData, PortEntry>,
    pub sources_v4: HashMap<MapData, SourceKeyV4, SourceEntry>,
    pub blocks_v4: Array<MapData, u64>,
    pub sources_v6: HashMap<MapData, SourceKeyV6, SourceEntry>,
    pub blocks_v6: Array<MapData, u64>,
    pub live_allow_v4: LpmTrie<MapData, [u8; 4], LiveEntry>,
    pub live_allow_v6: LpmTrie<MapData, [u8; 16], LiveEntry>,
    pub live_deny_v4: LpmTrie<MapData, [u8; 4], LiveEntry>,
    pub live_deny_v6: LpmTrie<MapData, [u8; 16], LiveEntry>,
    /// A bit per IPv4 /24 block near a live entry.
    pub live_blocks_v4: Array<MapData, u64>,
    /// A bit per hashed IPv6 /48 near a live entry.
    pub live_blocks_v6: Array<MapData, u64>,
    pub from_v4: LpmTrie<MapData, FromKeyV4, u32>,
    pub from_v6: LpmTrie<MapData, FromKeyV6, u32>,
    /// Rules with `to`: (slot, destination) to the slot's entry there.
    pub to_v4: LpmTrie<MapData, ToKeyV4, PortEntry>,
    pub to_v6: LpmTrie<MapData, ToKeyV6, PortEntry>,
    /// `[[egress.ports]]` by (protocol, destination port).
    pub egress_ports: Array<MapData, PortEntry>,
    /// The egress program's drops, per CPU (`egress_denied`).
    pub egress_stats: PerCpuArray<MapData, Counter>,
    pub flows: HashMap<MapData, FlowKey, FlowState>,
    /// Per (protocol, local port): a recent flow's time (`mirror_xdp_common::flows`).
    pub flow_ports: Array<MapData, u64>,
    pub limits: HashMap<MapData, LimiterKey, LimiterState>,
    /// Limiter entries created, per CPU.
    pub limiter_new: PerCpuArray<MapData, u64>,
    pub global_syn: PerCpuArray<MapData, u64>,
    pub stats: PerCpuArray<MapData, Counter>,
    pub port_stats: PerCpuArray<MapData, PortCounter>,
    pub protocol_stats: PerCpuArray<MapData, PortCounter>,
    /// When a SYN last went to the kernel, per (family, port): the SYN cookie keepalive.
    pub syn_keepalive: Array<MapData, u64>,
}

/// How full the per-source limiter table is (`stats`, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimiterUsage {
    pub capacity: u32,
    pub entries: u64,
    pub created: u64,
    pub evicted: u64,
}

/// Packets and bytes of one reason, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonCount {
    pub packets: u64,
    pub bytes: u64,
    /// Of those, dropped (in monitor mode: would have been dropped).
    pub drop_packets: u64,
    pub drop_bytes: u64,
}

fn access(name: &'static str) -> impl Fn(MapError) -> MapsError {
    move |source| MapsError::Access { name, source }
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Maps, MapsError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(MapsError::Missing { name });
        Maps::from_source(&mut take)
    }

    /// Opens the maps pinned in `dir` by an attached enforcer: the shared maps and those of
    /// the newest generation (commands that change a generation's maps hold the live-entry
    /// lock, which a reload holds too, so the newest is the one in force).
    pub fn open_pinned(dir: &Path) -> Result<Maps, MapsError> {
        let paths = Paths {
            bpffs: dir.to_path_buf(),
            state_dir: PathBuf::new(),
        };
        // A reload pins its new generation's maps one by one: the newest complete one.
        let complete = |g: &u64| {
            map_name::PER_GENERATION
                .iter()
                .all(|name| paths.map_pin(name, *g).exists())
        };
        let generation = paths
            .pinned_generations()
            .into_iter()
            .rev()
            .find(complete)
            .unwrap_or(1);
        let mut open = |name: &'static str| {
            let path = paths.map_pin(name, generation);
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| MapsError::OpenPin { path, source })
        };
        Maps::from_source(&mut open)
    }

    /// Opens the shared maps pinned in `paths.bpffs` and the policy maps pinned in
    /// `generation_dir` (a generation being built).
    pub fn open_in(paths: &Paths, generation_dir: &Path) -> Result<Maps, MapsError> {
        let mut open = |name: &'static str| {
            let path = if map_name::PER_GENERATION.contains(&name) {
                generation_dir.join(name)
            } else {
                paths.map_pin(name, 0)
            };
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| MapsError::OpenPin { path, source })
        };
        Maps::from_source(&mut open)
    }

    fn from_source(
        get: &mut dyn FnMut(&'static str) -> Result<Map, MapsError>,
    ) -> Result<Maps, MapsError> {
        macro_rules! typed {
            ($name:expr) => {
                get($name)?.try_into().map_err(access($name))?
            };
        }
        Ok(Maps {
            config: typed!(map_name::CONFIG),
            ports: typed!(map_name::PORTS),
            sources_v4: typed!(map_name::SOURCES_V4),
            blocks_v4: typed!(map_name::BLOCKS_V4),
            sources_v6: typed!(map_name::SOURCES_V6),
            blocks_v6: typed!(map_name::BLOCKS_V6),
            live_allow_v4: typed!(map_name::LIVE_ALLOW_V4),
            live_allow_v6: typed!(map_name::LIVE_ALLOW_V6),
            live_deny_v4: typed!(map_name::LIVE_DENY_V4),
            live_deny_v6: typed!(map_name::LIVE_DENY_V6),
            live_blocks_v4: typed!(map_name::LIVE_BLOCKS_V4),
            live_blocks_v6: typed!(map_name::LIVE_BLOCKS_V6),
            from_v4: typed!(map_name::FROM_V4),
            from_v6: typed!(map_name::FROM_V6),
            to_v4: typed!(map_name::TO_V4),
            to_v6: typed!(map_name::TO_V6),
            egress_ports: typed!(map_name::EGRESS_PORTS),
            egress_stats: typed!(map_name::EGRESS_STATS),
            flows: typed!(map_name::FLOWS),
            flow_ports: typed!(map_name::FLOW_PORTS),
            limits: typed!(map_name::LIMITS),
            limiter_new: typed!(map_name::LIMITER_NEW),
            global_syn: typed!(map_name::GLOBAL_SYN),
            stats: typed!(map_name::STATS),
            port_stats: typed!(map_name::PORT_STATS),
            protocol_stats: typed!(map_name::PROTOCOL_STATS),
            syn_keepalive: typed!(map_name::SYN_KEEPALIVE),
        })
    }

    /// Writes a compiled policy into maps that hold none yet and returns the config to
    /// [`Maps::enable`] once everything else (live entries) is in place: until then the
    /// program judges nothing, so no packet meets half a policy.
    pub fn write_fresh(&mut self, image: &MapImage) -> Result<Config, MapsError> {
        for (index, entry) in &image.ports {
            self.ports
                .set(*index, entry, 0)
                .map_err(access(map_name::PORTS))?;
        }
        for (index, entry) in &image.egress_ports {
            self.egress_ports
                .set(*index, entry, 0)
                .map_err(access(map_name::EGRESS_PORTS))?;
        }
        // Batched: a million-prefix list loads in well under a second this way; the IPv4
        // host table (the slowest: an allocation per entry) in a thread of its own.
        let sources_v4 = self.sources_v4.map().fd().as_fd();
        std::thread::scope(|scope| {
            let hosts = scope.spawn(|| batch::update_batch_parallel(sources_v4, &image.sources_v4));
            let blocks =
                batch::update_batch(self.blocks_v4.map().fd().as_fd(), &image.blocks_v4.nonzero)
                    .map_err(|source| MapsError::Batch {
                        name: map_name::BLOCKS_V4,
                        source,
                    });
            let hosts = hosts
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                .map_err(|source| MapsError::Batch {
                    name: map_name::SOURCES_V4,
                    source,
                });
            blocks.and(hosts)
        })?;
        batch::update_batch_parallel(self.sources_v6.map().fd().as_fd(), &image.sources_v6)
            .map_err(|source| MapsError::Batch {
                name: map_name::SOURCES_V6,
                source,
            })?;
        batch::update_batch(self.blocks_v6.map().fd().as_fd(), &image.blocks_v6.nonzero).map_err(
            |source| MapsError::Batch {
                name: map_name::BLOCKS_V6,
                source,
            },
        )?;
        for (from_id, net) in &image.from_v4 {
            let data = FromKeyV4 {
                from_id: (*from_id as u32).to_be_bytes(),
                addr: net.network().octets(),
            };
            let key = Key::new(32 + net.prefix_len() as u32, data);
            self.from_v4
                .insert(&key, 1, 0)
                .map_err(access(map_name::FROM_V4))?;
        }
        for (from_id, net) in &image.from_v6 {
            let data = FromKeyV6 {
                from_id: (*from_id as u32).to_be_bytes(),
                addr: net.network().octets(),
            };
            let key = Key::new(32 + net.prefix_len() as u32, data);
            self.from_v6
                .insert(&key, 1, 0)
                .map_err(access(map_name::FROM_V6))?;
        }
        // Before the slots are read with `HAS_TO`: the program is not judging yet anyway.
        for (index, net, entry) in &image.to_v4 {
            let data = ToKeyV4 {
                from_id: index.to_be_bytes(),
                addr: net.network().octets(),
            };
            let key = Key::new(32 + net.prefix_len() as u32, data);
            self.to_v4
                .insert(&key, entry, 0)
                .map_err(access(map_name::TO_V4))?;
        }
        for (index, net, entry) in &image.to_v6 {
            let data = ToKeyV6 {
                from_id: index.to_be_bytes(),
                addr: net.network().octets(),
            };
            let key = Key::new(32 + net.prefix_len() as u32, data);
            self.to_v6
                .insert(&key, entry, 0)
                .map_err(access(map_name::TO_V6))?;
        }
        Ok(image.config)
    }

    /// Writes the config with `LOADED` set: the program starts judging.
    pub fn enable(&mut self, config: &Config) -> Result<(), MapsError> {
        let config = Config {
            flags: config.flags | config_flag::LOADED,
            ..*config
        };
        self.set_config(&config)
    }

    pub fn config(&self) -> Result<Config, MapsError> {
        self.config.get(&0, 0).map_err(access(map_name::CONFIG))
    }

    pub fn set_config(&mut self, config: &Config) -> Result<(), MapsError> {
        self.config
            .set(0, config, 0)
            .map_err(access(map_name::CONFIG))
    }

    /// The config flags in force.
    pub fn config_flags(&self) -> Result<u32, MapsError> {
        Ok(self.config()?.flags)
    }

    /// Counters per reason, summed over CPUs: the XDP program's, and the egress
    /// program's drops (`egress_denied`, never a pass).
    pub fn reason_counts(&self) -> Result<Vec<(Reason, ReasonCount)>, MapsError> {
        let add = |acc: Counter, c: &Counter| Counter {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        };
        let sum = |reason, dropped| -> Result<Counter, MapsError> {
            let values = match reason {
                Reason::EgressDenied if dropped => self
                    .egress_stats
                    .get(&0, 0)
                    .map_err(access(map_name::EGRESS_STATS))?,
                Reason::EgressDenied => return Ok(Counter::default()),
                _ => self
                    .stats
                    .get(&stats_index(reason, dropped), 0)
                    .map_err(access(map_name::STATS))?,
            };
            Ok(values.iter().fold(Counter::default(), add))
        };
        Reason::ALL
            .iter()
            .map(|&reason| {
                let passed = sum(reason, false)?;
                let dropped = sum(reason, true)?;
                Ok((
                    reason,
                    ReasonCount {
                        packets: passed.packets + dropped.packets,
                        bytes: passed.bytes + dropped.bytes,
                        drop_packets: dropped.packets,
                        drop_bytes: dropped.bytes,
                    },
                ))
            })
            .collect()
    }

    /// Pass and drop counts of one ports-array slot (a port's or a protocol's), summed
    /// over CPUs.
    pub fn port_count(&self, index: u32) -> Result<PortCounter, MapsError> {
        let (protocol, at, name) = slot_counter(index);
        let counters = if protocol {
            &self.protocol_stats
        } else {
            &self.port_stats
        };
        let values = counters.get(&at, 0).map_err(access(name))?;
        Ok(values
            .iter()
            .fold(PortCounter::default(), |acc, c| PortCounter {
                pass_packets: acc.pass_packets + c.pass_packets,
                drop_packets: acc.drop_packets + c.drop_packets,
            }))
    }

    /// Zeroes every per-reason counter and the counters of the ports-array `port_slots` (on every
    /// CPU). Packets counted between a caller's last read and this are lost: per-CPU arrays
    /// offer no read-and-clear.
    pub fn reset_counters(
        &mut self,
        port_slots: impl Iterator<Item = u32>,
    ) -> Result<(), MapsError> {
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, source)| MapsError::Batch {
            name: map_name::STATS,
            source,
        })?;
        // PerCpuValues is not Clone, and `set` takes it by value: a fresh one per slot.
        fn zeroes<T: aya::Pod + Default + Clone>(
            name: &'static str,
            nr_cpus: usize,
        ) -> Result<aya::maps::PerCpuValues<T>, MapsError> {
            aya::maps::PerCpuValues::try_from(vec![T::default(); nr_cpus])
                .map_err(|source| MapsError::Batch { name, source })
        }
        for index in 0..capacity::STATS {
            let values = zeroes::<Counter>(map_name::STATS, nr_cpus)?;
            self.stats
                .set(index, values, 0)
                .map_err(access(map_name::STATS))?;
        }
        let values = zeroes::<Counter>(map_name::EGRESS_STATS, nr_cpus)?;
        self.egress_stats
            .set(0, values, 0)
            .map_err(access(map_name::EGRESS_STATS))?;
        for slot in port_slots {
            let (protocol, at, name) = slot_counter(slot);
            let counters = if protocol {
                &mut self.protocol_stats
            } else {
                &mut self.port_stats
            };
            let values = zeroes::<PortCounter>(name, nr_cpus)?;
            counters.set(at, values, 0).map_err(access(name))?;
        }
        Ok(())
    }

    /// Records a flow as if this host had opened it, last seen at `last_seen_ns`
    /// (`CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`): for tests and tools.
    pub fn insert_flow(&mut self, key: &FlowKey, last_seen_ns: u64) -> Result<(), MapsError> {
        self.flows
            .insert(key, FlowState { last_seen_ns }, 0)
            .map_err(access(map_name::FLOWS))?;
        // The port's time must not be older than its newest flow, as the egress program
        // keeps it, or the enforcer would skip the lookup that finds this flow.
        let index = flow_port_index(key.proto, key.local_port);
        let seen = self
            .flow_ports
            .get(&index, 0)
            .map_err(access(map_name::FLOW_PORTS))?;
        self.flow_ports
            .set(index, seen.max(last_seen_ns), 0)
            .map_err(access(map_name::FLOW_PORTS))
    }

    /// The limiter table's use, `capacity` its size: sources present, sources created
    /// since attach, and of those, how many a full table evicted (created less present:
    /// nothing else removes an entry). Counting the entries walks the table's keys.
    pub fn limiter_usage(&self, capacity: u32) -> Result<LimiterUsage, MapsError> {
        let created: u64 = self
            .limiter_new
            .get(&0, 0)
            .map_err(access(map_name::LIMITER_NEW))?
            .iter()
            .sum();
        let mut entries = 0u64;
        for key in self.limits.keys() {
            key.map_err(access(map_name::LIMITS))?;
            entries += 1;
        }
        Ok(LimiterUsage {
            capacity,
            entries,
            created,
            evicted: created.saturating_sub(entries),
        })
    }

    /// How many slots the ports array has: the ports', then the protocols'.
    pub const RULE_SLOTS: u32 = capacity::RULE_SLOTS;
}

/// Where a ports-array slot's counters are: in the protocol counters (past the port slots)
/// or the port counters, at which index, in the map of which name.
fn slot_counter(index: u32) -> (bool, u32, &'static str) {
    match index.checked_sub(capacity::PORTS) {
        None => (false, index, map_name::PORT_STATS),
        Some(protocol) => (true, protocol, map_name::PROTOCOL_STATS),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, for flow timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
