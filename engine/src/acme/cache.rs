//! The cache directory (`--acme-cache`): account and certificates, kept
//! across restarts and shared by the instances that use the same
//! directory.
//!
//! ```text
//!  DIR/                      0700
//!    account-<hash>.json     0600  account key and URL, one per directory URL
//!    NAME.pem                0600  chain, leaf first, then the private key
//!    NAME.lock                     flock: held by the instance ordering NAME
//!    NAME.challenge          0600  TLS-ALPN-01 certificate and key while NAME
//!                                  is being validated (for the other instances)
//! ```
//!
//! A certificate and its key are one file, written to a temporary name and
//! renamed: a reader never sees a new chain with an old key. The lock makes
//! the instances sharing a directory order a name one at a time; the
//! others pick the result up from the file, and answer the validation
//! from `NAME.challenge` when it reaches them instead of the orderer
//! (instances behind one address: a load balancer, or `SO_REUSEPORT`).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What went wrong with the cache directory or one of its files; each
/// message names the path and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The directory could not be created (`flag`: name `--acme-cache`).
    #[error("{}: cannot create the ACME cache directory: {source}{}", dir.display(), if *flag { " (flag --acme-cache)" } else { "" })]
    Create {
        /// The directory.
        dir: PathBuf,
        /// Whether the message names the flag.
        flag: bool,
        /// Cause.
        source: std::io::Error,
    },
    /// The path is not a directory.
    #[error("{}: --acme-cache must be a directory (it holds the account key and certificate keys)", .0.display())]
    NotADirectory(PathBuf),
    /// The directory is open to group or others.
    #[error("{}: the ACME cache directory is open to group or others (mode {:04o}); it holds \
             private keys: run `chmod 700 {}` (or pass --insecure-key-permissions true)", dir.display(), mode & 0o7777, dir.display())]
    OpenDirectory {
        /// The directory.
        dir: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A cached key file is open to group or others.
    #[error(transparent)]
    OpenFile(#[from] crate::process::KeyPermissionError),
    /// The directory could not be given to the `--user`.
    #[error("{}: cannot give it to user `{user}`: {source}", dir.display())]
    Chown {
        /// The directory.
        dir: PathBuf,
        /// The user.
        user: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The directory belongs to another user than `--user`.
    #[error("{}: the ACME cache belongs to uid {owner}, but uringtls drops to user `{user}` \
             (--user), which must write it: run `chown -R {user} {}` (flag --acme-cache)", dir.display(), dir.display())]
    Owner {
        /// The directory.
        dir: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The user uringtls drops to.
        user: String,
    },
    /// Reading, listing or removing a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing a private file failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Locking a name's order failed (other than "held elsewhere").
    #[error("{}: flock: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A cached PEM file cannot be parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: rustls_pki_types::pem::Error,
    },
    /// A cached PEM file has no usable private key.
    #[error("{}: no usable private key: {source}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: rustls_pki_types::pem::Error,
    },
    /// A cached PEM file has no certificate.
    #[error("{}: no CERTIFICATE block", .0.display())]
    NoCertificate(PathBuf),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A cache directory checked at start.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A cached certificate: chain (leaf first) and key.
pub struct Cached {
    /// Chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Cache {
    /// Creates `dir` (mode 0700) if missing; refuses a directory or cached
    /// file that group or others may use (unless `insecure`), as key files.
    pub fn open(dir: &Path, insecure: bool) -> Result<Cache, CacheError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| CacheError::Create {
                    dir: dir.to_owned(),
                    flag: true,
                    source,
                })?;
        }
        let m = fs::metadata(dir).map_err(io_at(dir))?;
        if !m.is_dir() {
            return Err(CacheError::NotADirectory(dir.to_owned()));
        }
        if !insecure && m.mode() & 0o077 != 0 {
            return Err(CacheError::OpenDirectory {
                dir: dir.to_owned(),
                mode: m.mode(),
            });
        }
        let entries = fs::read_dir(dir).map_err(io_at(dir))?;
        for e in entries.flatten() {
            let p = e.path();
            let secret = p
                .extension()
                .is_some_and(|x| x == "pem" || x == "json" || x == "challenge");
            if secret && !insecure {
                crate::process::check_key_permissions(&p)?;
            }
        }
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    /// With `--user`: the control thread writes the cache after the drop,
    /// so the directory must belong to that user. A missing one is created
    /// for it (mode 0700); one owned by someone else is refused.
    pub fn prepare_for_user(dir: &Path, uid: u32, gid: u32) -> Result<(), CacheError> {
        let user = crate::process::privileges::user_name(uid);
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| CacheError::Create {
                    dir: dir.to_owned(),
                    flag: false,
                    source,
                })?;
            return std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|source| {
                CacheError::Chown {
                    dir: dir.to_owned(),
                    user,
                    source,
                }
            });
        }
        let owner = fs::metadata(dir).map_err(io_at(dir))?.uid();
        if owner != uid {
            return Err(CacheError::Owner {
                dir: dir.to_owned(),
                owner,
                user,
            });
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// The account file for an ACME directory URL.
    pub fn account_path(&self, directory: &str) -> PathBuf {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
        let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("account-{hex}.json"))
    }

    /// The cached certificate for `name`; `Ok(None)` when there is none.
    pub fn load(&self, name: &str) -> Result<Option<Cached>, CacheError> {
        read_pem(&self.cert_path(name))
    }

    /// Where the challenge certificate of `name` is published.
    pub fn challenge_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.challenge"))
    }

    /// Publishes (or, with `None`, withdraws) `name`'s challenge
    /// certificate and key (PEM) for the other instances.
    pub fn publish_challenge(&self, name: &str, pem: Option<&str>) -> Result<(), CacheError> {
        let path = Self::challenge_path(&self.dir, name);
        match pem {
            Some(text) => write_private(&path, text.as_bytes()),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(&path)(e)),
                _ => Ok(()),
            },
        }
    }

    /// Writes `name`'s chain (PEM, leaf first) and key (PEM) as one file,
    /// mode 0600, replacing the old one atomically.
    pub fn store(&self, name: &str, chain_pem: &str, key_pem: &str) -> Result<(), CacheError> {
        let mut text = String::with_capacity(chain_pem.len() + key_pem.len() + 1);
        text.push_str(chain_pem.trim_end());
        text.push('\n');
        text.push_str(key_pem);
        write_private(&self.cert_path(name), text.as_bytes())
    }

    /// Reads a small private file (the account).
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// Writes a private file (mode 0600) atomically.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        write_private(path, bytes)
    }

    /// Takes `name`'s order lock if no other process holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<OrderLock>, CacheError> {
        let path = self.dir.join(format!("{name}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at(&path))?;
        // SAFETY: flock on a descriptor this `File` owns and keeps open; no
        // memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(Some(OrderLock(f)));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(CacheError::Lock { path, source: e })
        }
    }
}

/// A chain (leaf first) and key from one PEM file; `Ok(None)` if missing.
pub fn read_pem(path: &Path) -> Result<Option<Cached>, CacheError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CacheError::Pem {
            path: path.to_owned(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| CacheError::NoKey {
        path: path.to_owned(),
        source,
    })?;
    if chain.is_empty() {
        return Err(CacheError::NoCertificate(path.to_owned()));
    }
    Ok(Some(Cached { chain, key }))
}

/// Held while ordering a name; released on drop (the file is closed).
#[derive(Debug)]
pub struct OrderLock(#[allow(dead_code)] File);

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        CacheError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_private_and_an_open_one_is_refused() {
        let base = tempfile::tempdir().expect("tmp");
        let dir = base.path().join("acme");
        Cache::open(&dir, false).expect("created");
        let mode = fs::metadata(&dir).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = Cache::open(&dir, false).unwrap_err();
        assert!(
            matches!(e, CacheError::OpenDirectory { mode, .. } if mode & 0o777 == 0o755),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("chmod 700") && e.contains("mode 0755"), "{e}");
        assert!(Cache::open(&dir, true).is_ok());
    }

    #[test]
    fn a_group_readable_certificate_file_is_refused_like_a_key_file() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let p = dir.path().join("a.test.pem");
        fs::write(&p, "x").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = Cache::open(dir.path(), false).unwrap_err();
        assert!(matches!(e, CacheError::OpenFile(_)), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("a.test.pem") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_stored_certificate_loads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Cache::open(dir.path(), true).expect("open");
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("cert");
        c.store("a.test", &ck.cert.pem(), &ck.signing_key.serialize_pem())
            .expect("store");
        let got = c.load("a.test").expect("load").expect("some");
        assert_eq!(got.chain[0].as_ref(), ck.cert.der().as_ref());
        assert_eq!(got.key.secret_der(), ck.signing_key.serialize_der());
        let mode = fs::metadata(dir.path().join("a.test.pem"))
            .expect("meta")
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(c.load("b.test").expect("none").is_none());
    }

    #[test]
    fn with_user_the_cache_must_be_that_users_and_a_missing_one_is_given_to_it() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: chown needs root");
            return;
        }
        let base = tempfile::tempdir().expect("tmp");
        let dir = base.path().join("acme");
        Cache::prepare_for_user(&dir, 65534, 65534).expect("created");
        let m = fs::metadata(&dir).expect("meta");
        assert_eq!((m.uid(), m.mode() & 0o777), (65534, 0o700));
        let e = Cache::prepare_for_user(base.path(), 65534, 65534).unwrap_err();
        assert!(matches!(e, CacheError::Owner { owner: 0, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("chown -R") && e.contains("--acme-cache"), "{e}");
    }

    #[test]
    fn only_one_holder_of_a_names_lock_at_a_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Cache::open(dir.path(), true).expect("open");
        let held = c.try_lock("a.test").expect("lock").expect("free");
        // flock locks belong to the open file description: a second open
        // (as another process would do) is refused while the first holds.
        assert!(c.try_lock("a.test").expect("try").is_none());
        assert!(c.try_lock("b.test").expect("try").is_some());
        drop(held);
        assert!(c.try_lock("a.test").expect("try").is_some());
    }
}
