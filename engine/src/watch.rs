//! Reload on file change: the certificate, key, CA, ticket-key and
//! ticket-secret files (and `cert_dir`) are watched with inotify, and a
//! change triggers the same reload as SIGHUP (same validation: a bad or
//! half-written file is refused, logged and counted, the running material
//! keeps serving, and the next change is tried again).
//!
//! ```text
//!  inotify (parent dirs) ─▶ watch thread: events, 100 ms quiet (at most 1 s)
//!     ─▶ fingerprint of the watched files (mode + content) changed?
//!     ─▶ yes: raise SIGHUP ─▶ the signal loop reloads (see `crate::reload`)
//! ```
//!
//! The **parent directories** are watched, not the files: editors write a
//! new file and rename it over the old one, and Kubernetes Secret volumes
//! hold `NAME -> ..data/NAME` symlinks whose `..data ->
//! ..2026_12_07_…` symlink is replaced atomically with rename(2); neither
//! changes the original inode. The directory of each file's resolved path
//! is watched too (a symlink into another directory whose file is edited
//! in place). Only events that can change a file are asked of the kernel
//! ([`MASK`]: no opens, reads or writes before the close), so the reload's
//! own reads and a log held open and appended to beside the files wake
//! nothing, and the reading thread passes on only events that name what
//! is loaded ([`Names::concerns`]). The fingerprint makes the watcher
//! indifferent to what noise is left: only a change of what would be
//! loaded triggers a reload. Paths are logged, contents never.
//!
//! Two threads: `inotify` blocks reading the inotify descriptor and hands
//! the events that count to `file-watch`, which settles, fingerprints and
//! rewatches.

use crate::config::Settings;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why files cannot be watched (reload then needs SIGHUP).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// inotify could not be set up.
    #[error("cannot set up inotify: {0}")]
    Inotify(std::io::Error),
    /// A watch thread could not be started.
    #[error("cannot start the file-watch thread: {0}")]
    Spawn(std::io::Error),
}

/// The events asked of the kernel for each watched directory: those that
/// can change what a path holds (a write ending in a close, a new, removed
/// or renamed entry, a mode change, the directory itself removed or
/// moved). Not opens, reads, closes after reading, or each write of a file
/// still open for writing.
const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Quiet time after the last event before the files are looked at (a
/// Kubernetes swap or an editor's save is several events).
const QUIET: Duration = Duration::from_millis(100);
/// Longest wait for quiet, under a stream of events.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// The files a configuration loads (what a reload re-reads), and
/// directories whose listing counts too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// Files.
    pub files: Vec<PathBuf>,
    /// Directories of `NAME.pem` + `NAME.key` pairs (`cert_dir`).
    pub dirs: Vec<PathBuf>,
}

impl Watched {
    /// What `s` loads.
    pub fn of(s: &Settings) -> Watched {
        let t = &s.tls;
        let mut files: Vec<PathBuf> = [&t.cert, &t.key, &t.client_ca, &t.ticket_key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        files.extend(t.ticket_secret_file.iter().cloned());
        for p in &t.extra_certs {
            files.push(p.cert.clone());
            files.push(p.key.clone());
        }
        if let Some(u) = &s.proxy.tls {
            files.extend(u.settings.files().cloned());
        }
        let mut w = Watched {
            files,
            dirs: t.cert_dir.iter().cloned().collect(),
        };
        // Each `[[listener]]`'s own files too.
        for l in &s.listeners {
            let o = Watched::of(&l.settings);
            w.files.extend(o.files);
            w.dirs.extend(o.dirs);
        }
        w
    }

    /// The directories to watch: each file's parent, and the parent of
    /// its resolved path; each `cert_dir` and its resolved path.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        for f in &self.files {
            out.extend(f.parent().map(dir_or_dot));
            if let Ok(real) = std::fs::canonicalize(f) {
                out.extend(real.parent().map(Path::to_owned));
            }
        }
        for d in &self.dirs {
            out.insert(d.clone());
            out.extend(std::fs::canonicalize(d).ok());
        }
        out
    }

    /// The names whose events can change what is loaded (see
    /// [`Names::concerns`]), as the files resolve now.
    fn names(&self) -> Names {
        let mut names = BTreeSet::new();
        for f in &self.files {
            for p in [Some(f.clone()), std::fs::canonicalize(f).ok()]
                .into_iter()
                .flatten()
            {
                names.extend(p.components().map(|c| c.as_os_str().to_owned()));
            }
        }
        let dirs = self
            .dirs
            .iter()
            .flat_map(|d| [Some(d.clone()), std::fs::canonicalize(d).ok()])
            .flatten()
            .collect();
        Names { names, dirs }
    }

    /// SHA-256 over the mode and content of every file (following
    /// symlinks) and the listing and files of every directory; a missing
    /// or unreadable file counts as such.
    pub fn fingerprint(&self) -> Vec<u8> {
        use std::os::unix::fs::PermissionsExt;
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut file = |p: &Path| {
            h.update(p.as_os_str().as_encoded_bytes());
            match (std::fs::metadata(p), std::fs::read(p)) {
                (Ok(m), Ok(b)) => {
                    h.update(&m.permissions().mode().to_be_bytes());
                    h.update(&(b.len() as u64).to_be_bytes());
                    h.update(&b);
                }
                _ => h.update(b"\0missing"),
            }
        };
        for f in &self.files {
            file(f);
        }
        for d in &self.dirs {
            let mut names: Vec<PathBuf> = std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for n in names {
                file(&n);
            }
        }
        h.finish().as_ref().to_vec()
    }
}

/// What an event must name to count: every component of the watched
/// files' paths and of their resolved paths, and the `cert_dir`s.
#[derive(Default)]
struct Names {
    names: BTreeSet<std::ffi::OsString>,
    dirs: Vec<PathBuf>,
}

impl Names {
    /// Whether a change at one of `paths` (an event's) can change what
    /// is loaded: a `cert_dir` or a path in one, or named as a component of
    /// a watched file's path or of its resolved path (the file itself, a
    /// symlink or directory on the way), or a name starting with `..`
    /// (Kubernetes swaps `..data` and `..2026_…` entries). An event
    /// without paths (the kernel's queue overflowed) always counts. Other
    /// files in the same directories (logs, editors' swap files) do not:
    /// they would otherwise cost a settle and a fingerprint each.
    fn concerns(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty()
            || paths.iter().any(|p| {
                let name = p.file_name().unwrap_or_default();
                name.as_encoded_bytes().starts_with(b"..")
                    || self.names.contains(name)
                    || self.dirs.iter().any(|d| d == p || p.parent() == Some(d))
            })
    }
}

fn dir_or_dot(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p.to_owned()
    }
}

enum Msg {
    /// Events that count arrived (or the kernel's queue overflowed, and
    /// any may have).
    Fs,
    Update(Watched),
}

/// What both threads use: which directory each watch descriptor is, and
/// which names count. The `file-watch` thread holds the lock while it adds
/// a watch and records it, so an event for a new watch is never read
/// before its directory is known.
#[derive(Default)]
struct Shared {
    dirs: HashMap<WatchDescriptor, PathBuf>,
    names: Names,
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running watcher; dropping it does not stop the thread (it lives as
/// long as the process).
pub struct FileWatcher {
    tx: mpsc::Sender<Msg>,
}

impl FileWatcher {
    /// Watches what `s` loads; `on_change` runs on the watch thread when
    /// it changed (the binary raises SIGHUP).
    pub fn start(
        s: &Settings,
        on_change: impl Fn(&[PathBuf]) + Send + 'static,
    ) -> Result<FileWatcher, WatchError> {
        let (tx, rx) = mpsc::channel();
        let inotify = Inotify::init().map_err(WatchError::Inotify)?;
        let watches = inotify.watches();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let watched = Watched::of(s);
        // Watch first, so that no change is missed between `start`
        // returning and the threads getting to run.
        let mut dirs = BTreeMap::new();
        rewatch(&mut watches.clone(), &mut dirs, &shared, &watched);
        let (fs_tx, reader) = (tx.clone(), shared.clone());
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || read_events(inotify, &reader, &fs_tx))
            .map_err(WatchError::Spawn)?;
        std::thread::Builder::new()
            .name("file-watch".into())
            .spawn(move || run(watches, dirs, shared, watched, rx, on_change))
            .map_err(WatchError::Spawn)?;
        Ok(FileWatcher { tx })
    }

    /// Watches what `s` loads from now on (after a reload applied it).
    pub fn update(&self, s: &Settings) {
        let _ = self.tx.send(Msg::Update(Watched::of(s)));
    }
}

/// The `inotify` thread: reads events as they come and tells `file-watch`
/// once per read in which one counts. Ends when the descriptor fails
/// (logged: reload then needs SIGHUP) or the `file-watch` thread is gone.
fn read_events(mut inotify: Inotify, shared: &Mutex<Shared>, tx: &mpsc::Sender<Msg>) {
    let mut buf = [0u8; 4096];
    loop {
        let events = match inotify.read_events_blocking(&mut buf) {
            Ok(events) => events,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "file watch stopped; reload with SIGHUP");
                return;
            }
        };
        let counts = counts(&lock(shared), events);
        if counts && tx.send(Msg::Fs).is_err() {
            return;
        }
    }
}

/// Whether any of `events` (one read's) counts: it names what is loaded
/// ([`Names::concerns`]), or events were lost.
fn counts<'a>(s: &Shared, events: impl IntoIterator<Item = inotify::Event<&'a OsStr>>) -> bool {
    let mut counts = false;
    for e in events {
        if e.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: any of them may have counted.
            counts = true;
        } else if e.mask.contains(EventMask::IGNORED) {
            // A watch removed: changes nothing (a directory's own removal
            // comes as DELETE_SELF).
        } else if let Some(dir) = s.dirs.get(&e.wd) {
            let path = e.name.map_or_else(|| dir.clone(), |n| dir.join(n));
            counts |= s.names.concerns(std::slice::from_ref(&path));
        }
    }
    counts
}

fn run(
    mut watches: Watches,
    mut dirs: BTreeMap<PathBuf, WatchDescriptor>,
    shared: Arc<Mutex<Shared>>,
    mut watched: Watched,
    rx: mpsc::Receiver<Msg>,
    on_change: impl Fn(&[PathBuf]),
) {
    tracing::info!(
        directories = ?dirs.keys().collect::<Vec<_>>(),
        "watching certificate, key and ticket files for changes (--watch-files)"
    );
    let mut last = watched.fingerprint();
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Update(w) => apply(w, &mut watched, &mut last),
            Msg::Fs => {
                settle(&rx, &mut watched, &mut last);
                let now = watched.fingerprint();
                if now != last {
                    last = now;
                    tracing::info!(files = ?watched.files, dirs = ?watched.dirs, "watched files changed; reloading");
                    on_change(&watched.files);
                }
            }
        }
        // A Kubernetes swap moves the resolved paths to a new directory.
        rewatch(&mut watches, &mut dirs, &shared, &watched);
    }
}

/// After a reload applied `w`: a new set of files is fingerprinted anew;
/// the same set keeps the last fingerprint (a change that lands between
/// the reload's reads and now is then still seen as one).
fn apply(w: Watched, watched: &mut Watched, last: &mut Vec<u8>) {
    if w != *watched {
        *watched = w;
        *last = watched.fingerprint();
    }
}

/// Waits for [`QUIET`] without an event (at most [`MAX_SETTLE`]).
fn settle(rx: &mpsc::Receiver<Msg>, watched: &mut Watched, last: &mut Vec<u8>) {
    let end = Instant::now() + MAX_SETTLE;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(QUIET.min(left)) {
            Ok(Msg::Update(w)) => apply(w, watched, last),
            Ok(Msg::Fs) => {}
            Err(_) => return,
        }
    }
}

/// Watches the directories `watched` needs now (see
/// [`Watched::directories`]) and no others, and recomputes the names that
/// count. Two paths to one directory share one watch descriptor: it is
/// removed with the last of them.
fn rewatch(
    watches: &mut Watches,
    dirs: &mut BTreeMap<PathBuf, WatchDescriptor>,
    shared: &Mutex<Shared>,
    watched: &Watched,
) {
    let want = watched.directories();
    let mut s = lock(shared);
    let gone: Vec<PathBuf> = dirs
        .keys()
        .filter(|d| !want.contains(*d))
        .cloned()
        .collect();
    for d in gone {
        if let Some(wd) = dirs.remove(&d) {
            if !dirs.values().any(|w| *w == wd) {
                let _ = watches.remove(wd.clone());
                s.dirs.remove(&wd);
            }
        }
    }
    for new in want {
        if dirs.contains_key(&new) {
            continue;
        }
        match watches.add(&new, MASK) {
            Ok(wd) => {
                s.dirs.entry(wd.clone()).or_insert_with(|| new.clone());
                dirs.insert(new, wd);
            }
            Err(e) => {
                tracing::warn!(dir = %new.display(), error = %e, "cannot watch directory: changes there need a SIGHUP");
            }
        }
    }
    s.names = watched.names();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_content_mode_and_directory_listing() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("c.pem");
        std::fs::write(&f, "a").expect("write");
        let cert_dir = d.path().join("certs");
        std::fs::create_dir(&cert_dir).expect("mkdir");
        let w = Watched {
            files: vec![f.clone()],
            dirs: vec![cert_dir.clone()],
        };
        let a = w.fingerprint();
        assert_eq!(a, w.fingerprint(), "stable");
        std::fs::write(&f, "b").expect("write");
        let b = w.fingerprint();
        assert_ne!(a, b, "content");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let c = w.fingerprint();
        assert_ne!(b, c, "mode");
        std::fs::write(cert_dir.join("x.pem"), "x").expect("write");
        assert_ne!(c, w.fingerprint(), "a file added to the directory");
        std::fs::remove_file(&f).expect("rm");
        assert_ne!(c, w.fingerprint(), "missing");
    }

    #[test]
    fn only_events_that_can_change_a_watched_file_count() {
        let d = tempfile::tempdir().expect("tmp");
        let real = d.path().join("..2026_12_07_00_00_00.1");
        std::fs::create_dir(&real).expect("mkdir");
        std::fs::write(real.join("tls.crt"), "c").expect("write");
        std::os::unix::fs::symlink(&real, d.path().join("..data")).expect("..data");
        let crt = d.path().join("tls.crt");
        std::os::unix::fs::symlink("..data/tls.crt", &crt).expect("tls.crt");
        let other = d.path().join("etc").join("live");
        std::fs::create_dir_all(&other).expect("mkdir");
        let cert_dir = d.path().join("certs");
        std::fs::create_dir(&cert_dir).expect("mkdir");
        let w = Watched {
            files: vec![crt.clone(), other.join("key.pem")],
            dirs: vec![cert_dir.clone()],
        };
        let n = w.names();
        let at = |p: &Path| n.concerns(&[p.to_path_buf()]);
        assert!(at(&crt), "the file itself");
        assert!(at(&d.path().join("..data")), "a Kubernetes swap");
        assert!(at(&d.path().join("..data_tmp")), "its temporary link");
        assert!(at(&real.join("tls.crt")), "the resolved file");
        assert!(at(&other.join("key.pem")), "a file that does not exist yet");
        assert!(
            at(&d.path().join("etc").join("live")),
            "a directory on the way"
        );
        assert!(at(&cert_dir.join("new.pem")), "anything in a cert_dir");
        assert!(at(&cert_dir), "a cert_dir itself (moved away)");
        assert!(n.concerns(&[]), "a queue overflow");
        assert!(!at(&d.path().join("access.log")), "a log beside the files");
        assert!(
            !at(&other.join("perf.data")),
            "another file in a watched directory"
        );
        assert!(
            n.concerns(&[d.path().join("access.log"), crt.clone()]),
            "a rename from an unrelated name onto a watched one"
        );
    }

    #[test]
    fn the_kernel_reports_only_changes_and_only_those_to_loaded_files_count() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let d = tempfile::tempdir().expect("tmp");
        let (cert, log) = (d.path().join("cert.pem"), d.path().join("access.log"));
        std::fs::write(&cert, "a").expect("write");
        std::fs::write(&log, "").expect("log");
        let w = Watched {
            files: vec![cert.clone()],
            dirs: vec![],
        };
        let mut inotify = Inotify::init().expect("inotify");
        let shared = Mutex::new(Shared::default());
        rewatch(&mut inotify.watches(), &mut BTreeMap::new(), &shared, &w);
        // Noise: the reload's own reads of the certificate, and a log
        // beside it appended to.
        for i in 0..20 {
            std::fs::read(&cert).expect("read");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log");
            writeln!(f, "line {i}").expect("append");
        }
        std::fs::write(&cert, "b").expect("the change");
        // Every event up to the certificate's (the kernel keeps their order).
        let mut seen: Vec<(String, EventMask, bool)> = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..100 {
            if seen.iter().any(|(n, ..)| n == "cert.pem") {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
            assert_eq!(ready, 1, "no event within 10 s of the certificate's change");
            let events = inotify.read_events(&mut buf).expect("read events");
            for e in events {
                let name = e.name.map(|n| n.to_string_lossy().into_owned());
                let counted = counts(&lock(&shared), std::iter::once(e.clone()));
                seen.push((name.unwrap_or_default(), e.mask, counted));
            }
        }
        let log_events: Vec<_> = seen.iter().filter(|(n, ..)| n == "access.log").collect();
        let cert_events: Vec<_> = seen.iter().filter(|(n, ..)| n == "cert.pem").collect();
        assert_eq!(log_events.len() + cert_events.len(), seen.len(), "{seen:?}");
        // Only the closes after writing: no opens, reads or single writes.
        assert!(
            seen.iter().all(|(_, m, _)| *m == EventMask::CLOSE_WRITE),
            "{seen:?}"
        );
        // (The kernel merges identical events still queued: the twenty
        // closes of the log may come as one.)
        assert!(!log_events.is_empty(), "{seen:?}");
        assert_eq!(cert_events.len(), 1, "{seen:?}");
        assert!(
            log_events.iter().all(|(.., c)| !c),
            "the log counted: {seen:?}"
        );
        assert!(cert_events[0].2, "the certificate's change did not count");
    }

    #[test]
    fn parents_and_resolved_parents_are_watched() {
        let d = tempfile::tempdir().expect("tmp");
        let real = d.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::fs::write(real.join("k"), "k").expect("write");
        let link = d.path().join("k");
        std::os::unix::fs::symlink(real.join("k"), &link).expect("symlink");
        let w = Watched {
            files: vec![link, PathBuf::from("relative.pem")],
            dirs: vec![],
        };
        let dirs = w.directories();
        let real = std::fs::canonicalize(real).expect("canon");
        assert!(dirs.contains(d.path()) && dirs.contains(&real), "{dirs:?}");
        assert!(dirs.contains(Path::new(".")), "{dirs:?}");
    }
}
