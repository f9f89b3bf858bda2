//! Looking at an attached enforcer's pins from a test: which folders and pins exist, how
//! full the limiter table is, the trace filter and its buckets.

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use mirror_xdp_common::{LimiterKey, LimiterState, TraceBucket, TraceFilter};

/// The entries a pinned limiter table (an LRU hash) holds now, and its capacity.
pub fn limiter_fill(pin: &Path) -> Result<(usize, u32)> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    let capacity = data.info()?.max_entries();
    let table: HashMap<MapData, LimiterKey, LimiterState> = Map::from_map_data(data)?.try_into()?;
    Ok((table.keys().count(), capacity))
}

/// The trace filter an enforcer holds now (`on` is zero while no trace runs).
pub fn trace_filter(pin: &Path) -> Result<TraceFilter> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    let array: Array<MapData, TraceFilter> = Map::from_map_data(data)?.try_into()?;
    Ok(array.get(&0, 0)?)
}

/// The trace's per-CPU buckets: each moves on when the program writes a record on that
/// CPU, and counts the matching packets it left out.
pub fn trace_buckets(pin: &Path) -> Result<Vec<TraceBucket>> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    let array: PerCpuArray<MapData, TraceBucket> = Map::from_map_data(data)?.try_into()?;
    Ok(array.get(&0, 0)?.iter().copied().collect())
}

/// The names in `dir` that start with `prefix` (`""` for all), sorted; empty if `dir` does
/// not exist (the CLI removes its pin dir when it detaches the last interface).
pub fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    found.sort();
    found
}
