//! Bulk map writes through `BPF_MAP_UPDATE_BATCH`, which aya 0.14 does not offer.
//!
//! Loading a million source entries one `BPF_MAP_UPDATE_ELEM` at a time costs a syscall
//! each; a batch hands the kernel tens of thousands per syscall. Kernels or map types
//! without batch support get the per-element path instead.
//!
//! Callers pass the map's fd. For a typed aya map it comes through `IterableMap::map`
//! (implemented by `HashMap`, `Array`, `LpmTrie`, ...):
//!
//! ```ignore
//! use std::os::fd::AsFd;
//! use aya::maps::IterableMap;
//! update_batch(sources_v4.map().fd().as_fd(), &entries)?;
//! ```
//!
//! or, from a `MapData`, `map_data.fd().as_fd()`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

/// Entries per `BPF_MAP_UPDATE_BATCH` call: large enough that the syscall cost vanishes,
/// small enough that the staging arrays stay a few MiB.
const CHUNK: usize = 65_536;

/// Consecutive transient failures without progress before giving up, so a map that keeps
/// failing (say, a bucket lock held by a stuck program) cannot hang the loader.
const MAX_STALLS: u32 = 1_000;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The kernel's internal "operation not supported" (not in libc): what it returns for a
/// batch command on a map type that has no batch implementation.
const ENOTSUPP: i32 = 524;

/// Per-CPU map types, whose values are an array per possible CPU: a plain `V` per entry
/// would be misread, so they are refused.
const PERCPU_MAP_TYPES: [u32; 4] = [
    5,  // BPF_MAP_TYPE_PERCPU_HASH
    6,  // BPF_MAP_TYPE_PERCPU_ARRAY
    10, // BPF_MAP_TYPE_LRU_PERCPU_HASH
    21, // BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
];

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: entries offered. Out (after the loop ran): entries written.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The map element member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading fields of `struct bpf_map_info`; the kernel copies only what is asked for.
#[repr(C)]
#[derive(Default)]
struct MapInfoHead {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

const _: () = assert!(size_of::<BatchAttr>() == 56);
const _: () = assert!(size_of::<ElemAttr>() == 32);
const _: () = assert!(size_of::<InfoAttr>() == 16);

/// The `bpf(2)` syscall with one of the attribute structs above.
///
/// # Safety
///
/// `attr` must be the attribute layout of `cmd`, and every pointer in it valid for what
/// the command reads or writes.
unsafe fn sys_bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<()> {
    // SAFETY: forwarded to the caller; `attr` is live and exactly `size_of::<A>()` bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            size_of::<A>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// [`update_batch`] from several threads at once, a share of the entries each: a hash map
/// takes its bucket locks and free elements per CPU, so a million entries fill about as
/// many times faster as there are CPUs (up to four threads).
pub fn update_batch_parallel<K: Pod + Sync, V: Pod + Sync>(
    map_fd: BorrowedFd<'_>,
    entries: &[(K, V)],
) -> io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads == 1 || entries.len() < 2 * CHUNK {
        return update_batch(map_fd, entries);
    }
    let share = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(share)
            .map(|part| scope.spawn(move || update_batch(map_fd, part)))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Writes `entries` into the map (`BPF_ANY`: insert or replace), in batches where the kernel
/// supports them and one by one where it does not.
///
/// The key and value sizes are checked against the map first, since the kernel reads the
/// packed arrays with its own sizes. On error the map holds some of the entries (those
/// before the failing one, in order).
pub fn update_batch<K: Pod, V: Pod>(map_fd: BorrowedFd<'_>, entries: &[(K, V)]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    check_layout::<K, V>(map_fd)?;

    let mut keys: Vec<K> = Vec::with_capacity(CHUNK.min(entries.len()));
    let mut values: Vec<V> = Vec::with_capacity(keys.capacity());
    let mut done = 0;
    let mut stalls = 0;
    while done < entries.len() {
        let chunk = &entries[done..entries.len().min(done + CHUNK)];
        keys.clear();
        keys.extend(chunk.iter().map(|(k, _)| *k));
        values.clear();
        values.extend(chunk.iter().map(|(_, v)| *v));

        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map_fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the batch layout; `keys` and `values` hold `count` packed elements of the
        // map's key and value sizes (checked above) and outlive the call.
        let result = unsafe { sys_bpf(BPF_MAP_UPDATE_BATCH, &mut attr) };
        let err = match result {
            Ok(()) => {
                done += chunk.len();
                stalls = 0;
                continue;
            }
            Err(err) => err,
        };
        // The kernel writes the count back only once its loop ran, and then it is below the
        // count offered; an untouched count means nothing was written.
        let written = if (attr.count as usize) < chunk.len() {
            attr.count as usize
        } else {
            0
        };
        done += written;
        match err.raw_os_error() {
            Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP) if done == 0 => {
                // No batch command (before 5.6) or none for this map type.
                return update_each(map_fd, entries);
            }
            Some(code) if transient(code) => {
                stalls = if written == 0 { stalls + 1 } else { 0 };
                if stalls > MAX_STALLS {
                    return Err(err);
                }
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

/// Errors after which the same write can succeed: a signal, or a bucket lock held by a
/// program running on this CPU.
fn transient(code: i32) -> bool {
    matches!(code, libc::EINTR | libc::EAGAIN | libc::EBUSY)
}

/// One `BPF_MAP_UPDATE_ELEM` per entry.
fn update_each<K: Pod, V: Pod>(map_fd: BorrowedFd<'_>, entries: &[(K, V)]) -> io::Result<()> {
    for (key, value) in entries {
        let mut stalls = 0;
        loop {
            let mut attr = ElemAttr {
                map_fd: map_fd.as_raw_fd() as u32,
                key: key as *const K as u64,
                value: value as *const V as u64,
                ..ElemAttr::default()
            };
            // SAFETY: the element layout; key and value are of the map's sizes (checked by
            // the caller) and live across the call.
            match unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } {
                Ok(()) => break,
                Err(err) => match err.raw_os_error() {
                    Some(code) if transient(code) && stalls < MAX_STALLS => stalls += 1,
                    _ => return Err(err),
                },
            }
        }
    }
    Ok(())
}

/// The map's type, key size and value size, via `BPF_OBJ_GET_INFO_BY_FD`.
fn map_info(map_fd: BorrowedFd<'_>) -> io::Result<MapInfoHead> {
    let mut info = MapInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: map_fd.as_raw_fd() as u32,
        info_len: size_of::<MapInfoHead>() as u32,
        info: &mut info as *mut MapInfoHead as u64,
    };
    // SAFETY: the info layout; the kernel writes at most `info_len` bytes to `info`.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info)
}

/// Refuses keys and values whose sizes differ from the map's, and per-CPU maps.
fn check_layout<K: Pod, V: Pod>(map_fd: BorrowedFd<'_>) -> io::Result<()> {
    let info = map_info(map_fd)?;
    if PERCPU_MAP_TYPES.contains(&info.map_type) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "map type {} is per-CPU; batch writes of one value per key do not fit it",
                info.map_type
            ),
        ));
    }
    if info.key_size as usize != size_of::<K>() || info.value_size as usize != size_of::<V>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "map has {}-byte keys and {}-byte values, the entries {} and {}",
                info.key_size,
                info.value_size,
                size_of::<K>(),
                size_of::<V>()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::maps::{HashMap, IterableMap, LpmTrie, MapData, lpm_trie::Key};
    use mirror_xdp_common::{SourceEntry, SourceKeyV4};
    use std::os::fd::AsFd;
    use std::time::Instant;

    /// LPM tries must be created without preallocation.
    const BPF_F_NO_PREALLOC: u32 = 1;

    /// Creating maps needs CAP_BPF: these tests are `#[ignore]`d, so a plain `cargo test`
    /// lists them as ignored, and `cargo xtask test` runs them (`--ignored`) as root. Run
    /// without root they fail.
    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "creating BPF maps needs root: run `cargo xtask test` as root"
        );
    }

    fn entries(n: u32) -> Vec<(SourceKeyV4, SourceEntry)> {
        (0..n)
            .map(|i| {
                let key = SourceKeyV4 {
                    tier: 8 * (1 + i % 4),
                    addr: i.wrapping_mul(2_654_435_761).to_be_bytes(),
                };
                let value = SourceEntry {
                    flags: (i % 3) as u8 + 1,
                    next: (i % 2) as u8 * 8,
                    _pad: [0; 2],
                };
                (key, value)
            })
            .collect()
    }

    type SourcesV4 = HashMap<MapData, SourceKeyV4, SourceEntry>;

    fn check_sample(map: &SourcesV4, entries: &[(SourceKeyV4, SourceEntry)]) {
        for (key, value) in entries.iter().step_by(97) {
            assert_eq!(map.get(key, 0).expect("inserted"), *value);
        }
        let (last_key, last_value) = entries.last().unwrap();
        assert_eq!(map.get(last_key, 0).unwrap(), *last_value);
        let absent = SourceKeyV4 {
            tier: 9,
            addr: [1, 2, 3, 4],
        };
        assert!(map.get(&absent, 0).is_err());
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn batch_insert_200k_and_read_back() {
        require_root();
        let entries = entries(200_000);
        let map = SourcesV4::create(250_000, 0).expect("create hash map");
        let start = Instant::now();
        update_batch(map.map().fd().as_fd(), &entries).expect("batch update");
        println!("update_batch: 200,000 entries in {:?}", start.elapsed());
        assert_eq!(map.keys().count(), entries.len());
        check_sample(&map, &entries);

        // Replacing is allowed (BPF_ANY).
        let mut changed = entries[..10].to_vec();
        changed.iter_mut().for_each(|(_, v)| v.flags = 0);
        update_batch(map.map().fd().as_fd(), &changed).unwrap();
        assert_eq!(map.get(&changed[3].0, 0).unwrap().flags, 0);
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn per_element_fallback_writes_the_same() {
        require_root();
        let entries = entries(200_000);
        let map = SourcesV4::create(250_000, 0).expect("create hash map");
        let start = Instant::now();
        update_each(map.map().fd().as_fd(), &entries).expect("element updates");
        println!("update_each: 200,000 entries in {:?}", start.elapsed());
        assert_eq!(map.keys().count(), entries.len());
        check_sample(&map, &entries);
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn a_full_map_fails_with_the_first_entries_written() {
        require_root();
        let entries = entries(1_500);
        let map = SourcesV4::create(1_000, 0).expect("create hash map");
        let err = update_batch(map.map().fd().as_fd(), &entries).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::E2BIG), "{err}");
        assert_eq!(map.keys().count(), 1_000);
        assert_eq!(map.get(&entries[999].0, 0).unwrap(), entries[999].1);
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn wrong_sizes_are_refused_before_writing() {
        require_root();
        let map = SourcesV4::create(16, 0).expect("create hash map");
        let err = update_batch(map.map().fd().as_fd(), &[(0u64, 0u64)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(map.keys().count(), 0);
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn lpm_tries_take_batches_or_fall_back() {
        require_root();
        let trie = LpmTrie::<MapData, [u8; 4], u32>::create(4_096, BPF_F_NO_PREALLOC)
            .expect("create LPM trie");
        let entries: Vec<(Key<[u8; 4]>, u32)> = (0..3_000u32)
            .map(|i| (Key::new(24, (i << 8).to_be_bytes()), i))
            .collect();
        update_batch(trie.map().fd().as_fd(), &entries).expect("update");
        for i in [0u32, 1, 1_234, 2_999] {
            let key = Key::new(32, ((i << 8) | 7).to_be_bytes());
            assert_eq!(trie.get(&key, 0).unwrap(), i);
        }
    }

    /// A map created with a raw `BPF_MAP_CREATE`, for types aya cannot create.
    fn create_raw(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // map_type, key_size, value_size, max_entries, then zeros (flags, name, ...).
        let mut attr = [0u32; 18];
        attr[..4].copy_from_slice(&[map_type, key_size, value_size, max_entries]);
        // SAFETY: the map-create layout; no pointers in the fields set.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                0,
                attr.as_mut_ptr(),
                size_of_val(&attr) as libc::c_uint,
            )
        };
        assert!(fd >= 0, "BPF_MAP_CREATE: {}", io::Error::last_os_error());
        // SAFETY: a fresh fd owned by nobody else.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
    }

    /// One `BPF_MAP_LOOKUP_ELEM` of a u32 value under a u32 key.
    fn lookup_u32(map_fd: BorrowedFd<'_>, key: u32) -> Option<u32> {
        let mut value = 0u32;
        let mut attr = ElemAttr {
            map_fd: map_fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &mut value as *mut u32 as u64,
            ..ElemAttr::default()
        };
        // SAFETY: the element layout; key and value are 4 bytes like the map's.
        unsafe { sys_bpf(1, &mut attr) }.ok().map(|()| value)
    }

    #[test]
    #[ignore = "needs root (BPF maps): cargo xtask test runs it"]
    fn maps_without_batch_support_fall_back_to_single_updates() {
        require_root();
        // A device hash has no batch operations (ENOTSUPP); its values are ifindexes, and
        // the loopback device is 1 in every network namespace.
        const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
        let map = create_raw(BPF_MAP_TYPE_DEVMAP_HASH, 4, 4, 64);
        let entries: Vec<(u32, u32)> = (0..40).map(|i| (i * 7, 1)).collect();
        update_batch(map.as_fd(), &entries).expect("falls back");
        assert_eq!(lookup_u32(map.as_fd(), 7 * 39), Some(1));
        assert_eq!(lookup_u32(map.as_fd(), 5), None);
    }
}
