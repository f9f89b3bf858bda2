//! Noticing policy changes: inotify on the folders of the policy file and its set files
//! (not on the files: editors replace a file by renaming a new one over it, and a Kubernetes
//! ConfigMap swaps its `..data` symlink, so a watch on the old file would see nothing),
//! debounced, plus a content fingerprint so that events that change nothing cause no reload.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::io::{Interest, unix::AsyncFd};
use tokio::time::Instant;

use crate::policy::bounded;

/// Quiet time after the last event before the change counts: a save is several events
/// (create, writes, rename), and a ConfigMap update several more.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Events that never stop (a file rewritten in a loop) delay a reload at most this long.
const MAX_DELAY: Duration = Duration::from_secs(2);

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Room for many events with a full-length name (the inotify crate reads them unaligned).
const EVENT_BUFFER: usize = 16 * 1024;

/// The policy file and the set files it names, as the reload will read them.
pub fn files(policy: &Path) -> Vec<PathBuf> {
    let mut out = vec![policy.to_path_buf()];
    if let Ok(bytes) = bounded::read_file(policy)
        && let Ok(text) = String::from_utf8(bytes)
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
        // Bounded: a set file that is /dev/zero must not hang the daemon (the reload
        // refuses it and says why).
        match bounded::read_file(&file) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.to_string().hash(&mut h),
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
    inotify: AsyncFd<Inotify>,
    /// Watch -> folder and the names of interest in it.
    watches: HashMap<WatchDescriptor, (PathBuf, HashSet<OsString>)>,
    /// A folder went away (deleted, moved): re-add the watches on the next refresh.
    stale: bool,
    /// When the pending change counts, and when its first event came.
    due: Option<Instant>,
    first: Option<Instant>,
}

impl Watcher {
    pub fn new(policy: &Path) -> std::io::Result<Watcher> {
        // Non-blocking and close-on-exec, as AsyncFd needs.
        let inotify = Inotify::init()?;
        // SAFETY: the Inotify owns its descriptor and closes it only when dropped, which the
        // AsyncFd does; `as_raw_fd` returns that one descriptor throughout.
        let inotify = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }?;
        Ok(Watcher {
            policy: policy.to_path_buf(),
            inotify,
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
        let mut watches = self.inotify.get_ref().watches();
        if self.stale {
            for wd in self.watches.keys() {
                // An already removed watch (its folder is gone) only returns EINVAL.
                let _ = watches.remove(wd.clone());
            }
            self.watches.clear();
            self.stale = false;
        }
        let mut kept = HashMap::new();
        for (dir, names) in wanted {
            // Adding a watch on a folder already watched returns its descriptor again.
            match watches.add(&dir, MASK) {
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
                let _ = watches.remove(wd.clone());
            }
        }
        self.watches = kept;
        let mut dirs: Vec<PathBuf> = self.watches.values().map(|(d, _)| d.clone()).collect();
        dirs.sort();
        (dirs, problems)
    }

    /// Waits until a change to the policy or its set files has settled. Cancel-safe (a
    /// `select!` branch): pending state lives in `self`.
    pub async fn changed(&mut self) {
        loop {
            let due = self.due;
            tokio::select! {
                ready = self.inotify.readable_mut() => {
                    let relevant = match ready {
                        Ok(mut guard) => {
                            // Used and dropped before the next await: not kept in the future.
                            let mut buffer = [0u8; EVENT_BUFFER];
                            match guard.try_io(|inotify| inotify.get_mut().read_events(&mut buffer)) {
                                Ok(Ok(events)) => {
                                    let events = events.map(|e| (e.wd, e.mask, e.name));
                                    relevant(&self.watches, &mut self.stale, events)
                                }
                                Ok(Err(_)) => true,
                                Err(_would_block) => false,
                            }
                        }
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
}

/// Whether the events may change what a reload reads: a name of interest in a watched
/// folder changed, a folder went away (then `stale` is set), or events were lost.
fn relevant<'a>(
    watches: &HashMap<WatchDescriptor, (PathBuf, HashSet<OsString>)>,
    stale: &mut bool,
    events: impl Iterator<Item = (WatchDescriptor, EventMask, Option<&'a OsStr>)>,
) -> bool {
    let mut any = false;
    for (wd, mask, name) in events {
        if mask.contains(EventMask::Q_OVERFLOW) {
            any = true;
            continue;
        }
        if mask.intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            *stale = true;
            any = true;
            continue;
        }
        if let (Some((_, names)), Some(name)) = (watches.get(&wd), name)
            && names.contains(name)
        {
            any = true;
        }
    }
    any
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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

    /// Runs `f` on a current-thread runtime with timers and I/O.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Whether `changed` returns within `limit`.
    async fn changes_within(watcher: &mut Watcher, limit: Duration) -> bool {
        tokio::time::timeout(limit, watcher.changed()).await.is_ok()
    }

    #[test]
    fn a_renamed_policy_is_noticed_and_an_unrelated_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, "version = 1\n").unwrap();
        block_on(async {
            let mut watcher = Watcher::new(&policy).unwrap();
            let (dirs, problems) = watcher.refresh();
            assert_eq!(dirs, [dir.path()]);
            assert!(problems.is_empty(), "{problems:?}");

            std::fs::write(dir.path().join("notes.txt"), "unrelated").unwrap();
            assert!(!changes_within(&mut watcher, 3 * DEBOUNCE).await);

            // An editor's save: a new file renamed over the policy.
            let new = dir.path().join(".policy.toml.swp");
            std::fs::write(&new, "version = 1\n# edited\n").unwrap();
            std::fs::rename(&new, &policy).unwrap();
            assert!(changes_within(&mut watcher, MAX_DELAY * 2).await);
        });
    }

    #[test]
    fn a_removed_folder_marks_the_watches_stale_and_refresh_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("conf");
        std::fs::create_dir(&sub).unwrap();
        let policy = sub.join("policy.toml");
        std::fs::write(&policy, "version = 1\n").unwrap();
        block_on(async {
            let mut watcher = Watcher::new(&policy).unwrap();
            assert_eq!(watcher.refresh().0, std::slice::from_ref(&sub));
            std::fs::remove_dir_all(&sub).unwrap();
            assert!(changes_within(&mut watcher, MAX_DELAY * 2).await);
            assert!(watcher.stale);
            let (dirs, problems) = watcher.refresh();
            assert!(dirs.is_empty(), "{dirs:?}");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with(&format!("cannot watch {}", sub.display())));
        });
    }
}
