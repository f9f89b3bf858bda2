//! Reading a pinned map of an attached enforcer from a test: how full the limiter table is.

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData};
use mirror_xdp_common::{LimiterKey, LimiterState};

/// The entries a pinned limiter table (an LRU hash) holds now, and its capacity.
pub fn limiter_fill(pin: &Path) -> Result<(usize, u32)> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    let capacity = data.info()?.max_entries();
    let table: HashMap<MapData, LimiterKey, LimiterState> = Map::from_map_data(data)?.try_into()?;
    Ok((table.keys().count(), capacity))
}
