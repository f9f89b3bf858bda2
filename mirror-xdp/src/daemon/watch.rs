//! Noticing policy changes: inotify on the folders of the policy file and its set files
//! (not on the files: editors replace a file by renaming a new one over it, and a Kubernetes
//! ConfigMap swaps its `..data` symlink, so a watch on the old file would see nothing),
//! debounced, plus a content fingerprint so that events that change nothing cause no reload.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::io::{Interest, unix::AsyncFd};
use tokio::time::Instant;

/// Quiet time after the last event before the change counts: a save is several events
/// (create, writes, rename), and a ConfigMap update several more.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Events that never stop (a file rewritten in a loop) delay a reload at most this long.
const MAX_DELAY: Duration = Duration::from_secs(2);

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// The policy file and the set files it names, as the reload will read them.
pub fn files(policy: &Path) -> Vec<PathBuf> {
    let mut out = vec![policy.to_path_buf()];
    if let Ok(text) = std::fs::read_to_string(policy)
        && let Ok(value) = text.parse::<toml::Table>()
    {
        let dir = policy.parent().unwrap_or(Path::new(""));
        let mut names = Vec::new();
        set_files(&toml::Value::Table(value), &mut names);
        out.extend(names.into_iter().map(|n| dir.join(n)));
    }
    out
}

/// Every `{ file = "..." }` value in the policy, wherever it stands.
fn set_files(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            if t.len() == 1
                && let Some(toml::Value::String(name)) = t.get("file")
            {
                out.push(name.clone());
            }
            t.values().for_each(|v| set_files(v, out));
        }
        toml::Value::Array(a) => a.iter().for_each(|v| set_files(v, out)),
        _ => {}
    }
}

/// A hash of what a reload would read: equal fingerprints mean a reload would change nothing.
pub fn fingerprint(policy: &Path) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for file in files(policy) {
        file.hash(&mut h);
        match std::fs::read(&file) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// The names in each folder whose change may change a file: the file's own name and, for a
/// symlink to a relative path, the first component of the target (`..data` of a ConfigMap).
fn interest(files: &[PathBuf]) -> HashMap<PathBuf, HashSet<OsString>> {
    let mut out: HashMap<PathBuf, HashSet<OsString>> = HashMap::new();
    for file in files {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let names = out.entry(dir.to_path_buf()).or_default();
        names.insert(name.to_os_string());
        if let Ok(target) = std::fs::read_link(file)
            && let Some(Component::Normal(first)) = target.components().next()
        {
            names.insert(first.to_os_string());
        }
    }
    out
}

/// Watches the folders of the policy and its set files.
pub struct Watcher {
    policy: PathBuf,
    fd: AsyncFd<OwnedFd>,
    /// Watch descriptor -> folder and the names of interest in it.
    watches: HashMap<i32, (PathBuf, HashSet<OsString>)>,
    /// A folder went away (deleted, moved): re-add the watches on the next refresh.
    stale: bool,
    /// When the pending change counts, and when its first event came.
    due: Option<Instant>,
    first: Option<Instant>,
}

impl Watcher {
    pub fn new(policy: &Path) -> std::io::Result<Watcher> {
        // SAFETY: no pointers; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the descriptor, which stays open as long as it does.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Watcher {
            policy: policy.to_path_buf(),
            fd,
            watches: HashMap::new(),
            stale: false,
            due: None,
            first: None,
        })
    }

    /// Points the watches at the folders the policy names now (its set files may have
    /// changed). Returns the folders watched, and a message for each that cannot be.
    pub fn refresh(&mut self) -> (Vec<PathBuf>, Vec<String>) {
        let wanted = interest(&files(&self.policy));
        let mut problems = Vec::new();
        if self.stale {
            for wd in self.watches.keys() {
                // SAFETY: plain integers; an already removed watch only returns EINVAL.
                unsafe { libc::inotify_rm_watch(self.fd.get_ref().as_raw_fd(), *wd) };
            }
            self.watches.clear();
            self.stale = false;
        }
        let mut kept = HashMap::new();
        for (dir, names) in wanted {
            match self.add_watch(&dir) {
                Ok(wd) => {
                    kept.insert(wd, (dir, names));
                }
                Err(e) => {
                    problems.push(format!("cannot watch {}: {e}", dir.display()));
                    // Try again on the next refresh.
                    self.stale = true;
                }
            }
        }
        for wd in self.watches.keys() {
            if !kept.contains_key(wd) {
                // SAFETY: as above.
                unsafe { libc::inotify_rm_watch(self.fd.get_ref().as_raw_fd(), *wd) };
            }
        }
        self.watches = kept;
        let mut dirs: Vec<PathBuf> = self.watches.values().map(|(d, _)| d.clone()).collect();
        dirs.sort();
        (dirs, problems)
    }

    fn add_watch(&self, dir: &Path) -> std::io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the kernel copies it.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.get_ref().as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Waits until a change to the policy or its set files has settled. Cancel-safe (a
    /// `select!` branch): pending state lives in `self`.
    pub async fn changed(&mut self) {
        loop {
            let due = self.due;
            tokio::select! {
                ready = self.fd.readable() => {
                    let relevant = match ready {
                        Ok(mut guard) => match guard.try_io(|fd| read_events(fd.get_ref())) {
                            Ok(Ok(events)) => self.relevant(&events),
                            Ok(Err(_)) => true,
                            Err(_would_block) => false,
                        },
                        // Not expected of inotify; check the files rather than miss a change.
                        Err(_) => true,
                    };
                    if relevant {
                        let now = Instant::now();
                        let first = *self.first.get_or_insert(now);
                        self.due = Some((now + DEBOUNCE).min(first + MAX_DELAY));
                    }
                }
                () = sleep_until(due), if due.is_some() => {
                    self.due = None;
                    self.first = None;
                    return;
                }
            }
        }
    }

    fn relevant(&mut self, events: &[Event]) -> bool {
        let mut any = false;
        for e in events {
            if e.mask & libc::IN_Q_OVERFLOW != 0 {
                any = true;
                continue;
            }
            if e.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                self.stale = true;
                any = true;
                continue;
            }
            if let Some((_, names)) = self.watches.get(&e.wd)
                && names.contains(e.name.as_os_str())
            {
                any = true;
            }
        }
        any
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Event {
    wd: i32,
    mask: u32,
    name: OsString,
}

/// Reads the queued events (WouldBlock when there are none).
fn read_events(fd: &OwnedFd) -> std::io::Result<Vec<Event>> {
    // Aligned for `inotify_event`; room for many events with a full-length name.
    #[repr(C, align(8))]
    struct Buf([u8; 16 * 1024]);
    let mut buf = Buf([0; 16 * 1024]);
    // SAFETY: reading into a buffer we own, of the length given.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.0.as_mut_ptr().cast(), buf.0.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(parse_events(&buf.0[..n as usize]))
}

/// Splits a read of `inotify_event` records: wd, mask, cookie, len, then `len` name bytes
/// (NUL-padded).
fn parse_events(bytes: &[u8]) -> Vec<Event> {
    const HEAD: usize = 16;
    let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEAD <= bytes.len() {
        let len = word(at + 12) as usize;
        let end = (at + HEAD + len).min(bytes.len());
        let name = &bytes[at + HEAD..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(Event {
            wd: word(at) as i32,
            mask: word(at + 4),
            name: OsStr::from_bytes(name).to_os_string(),
        });
        at += HEAD + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_files_are_found_anywhere_and_resolved_beside_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            r#"version = 1
[sets]
peers = { file = "peers.txt" }
[[ports]]
proto = "tcp"
ports = [22]
from = ["peers", { file = "/etc/admins.txt" }]
[sources]
deny = ["192.0.2.0/24", { file = "sub/block.txt" }]
"#,
        )
        .unwrap();
        let mut found = files(&policy);
        found.sort();
        let mut want = vec![
            policy.clone(),
            dir.path().join("peers.txt"),
            PathBuf::from("/etc/admins.txt"),
            dir.path().join("sub/block.txt"),
        ];
        want.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn fingerprint_follows_content_not_events() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("p.toml");
        let set = dir.path().join("s.txt");
        std::fs::write(&policy, "version = 1\n[sets]\ns = { file = \"s.txt\" }\n").unwrap();
        std::fs::write(&set, "192.0.2.1\n").unwrap();
        let a = fingerprint(&policy);
        // Rewritten with the same bytes (an editor's save without changes): same.
        std::fs::write(&set, "192.0.2.1\n").unwrap();
        assert_eq!(fingerprint(&policy), a);
        std::fs::write(&set, "192.0.2.2\n").unwrap();
        assert_ne!(fingerprint(&policy), a);
    }

    #[test]
    fn a_configmap_symlink_makes_its_first_component_interesting() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::write(d.join("..v1/policy.toml"), "version = 1\n").unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/policy.toml", d.join("policy.toml")).unwrap();
        let got = interest(&[d.join("policy.toml")]);
        let names = &got[d];
        assert!(names.contains(OsStr::new("policy.toml")));
        assert!(names.contains(OsStr::new("..data")));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn events_parse_with_padded_names() {
        let mut bytes = Vec::new();
        for (wd, mask, name) in [
            (1i32, libc::IN_MOVED_TO, "policy.toml"),
            (2, libc::IN_IGNORED, ""),
        ] {
            let padded = if name.is_empty() { 0 } else { 16 };
            bytes.extend_from_slice(&wd.to_ne_bytes());
            bytes.extend_from_slice(&mask.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(padded, 0);
            bytes.extend_from_slice(&n);
        }
        let events = parse_events(&bytes);
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].wd, events[0].mask), (1, libc::IN_MOVED_TO));
        assert_eq!(events[0].name, "policy.toml");
        assert_eq!((events[1].wd, events[1].name.len()), (2, 0));
    }
}
