//! Session-ticket keys: our own [`ProducesTickets`], so that several
//! processes (and machines) can share keys from a file.
//!
//! Two sources of keys:
//!
//! - **A ticket-key file** (`ticket_key_file`): one key per line, 96 hex
//!   digits (48 random bytes: a 16-byte key name, then a 32-byte AES-256-GCM
//!   key), `#` comments and blank lines ignored. The **first key encrypts**,
//!   **every key decrypts**. Rotation is the operator's: put a new key first,
//!   keep the old one second, reload; drop the old one a ticket lifetime
//!   later. The file must not be accessible to "other" users.
//! - **In-memory keys** (no file): a random key, replaced every rotation
//!   period; the previous key still decrypts for one more period.
//!
//! A ticket is `name (16) || nonce (12) || AES-256-GCM(plain) || tag (16)`,
//! with the name as associated data. Key material is never logged: errors
//! name the file and the line, never its content, and `Debug` prints only
//! how many keys there are.
//!
//! Everything that depends on time takes `now` (Unix seconds), so tests move
//! the clock instead of sleeping.

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use rustls::server::ProducesTickets;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default rotation period of in-memory keys, and the lifetime hint sent
/// with every ticket: 6 hours (rustls's own default lifetime).
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(6 * 3600);
/// Bytes of one key in the file: 16 (name) + 32 (AES-256-GCM key).
pub const KEY_BYTES: usize = NAME_LEN + 32;
const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Why a ticket-key file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum TicketKeyError {
    /// The file could not be read.
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Other users may read or write the file.
    Permissions {
        /// File.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A line is not a key (its content is deliberately not repeated).
    BadLine {
        /// File.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// No key in the file.
    Empty {
        /// File.
        path: PathBuf,
    },
    /// The AEAD key could not be built or the RNG failed.
    Crypto(String),
}

impl fmt::Display for TicketKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketKeyError::Read { path, source } => {
                write!(f, "{}: cannot read ticket-key file: {source}", path.display())
            }
            TicketKeyError::Permissions { path, mode } => write!(
                f,
                "{}: ticket-key file is accessible to other users (mode {:o}); run `chmod o-rwx {}` (0600 or 0640)",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            TicketKeyError::BadLine { path, line, problem } => write!(
                f,
                "{}:{line}: not a ticket key: {problem} (each line is {} hex digits, e.g. from `openssl rand -hex {KEY_BYTES}`)",
                path.display(),
                KEY_BYTES * 2
            ),
            TicketKeyError::Empty { path } => write!(
                f,
                "{}: ticket-key file holds no key (add a line from `openssl rand -hex {KEY_BYTES}`)",
                path.display()
            ),
            TicketKeyError::Crypto(e) => write!(f, "ticket keys: {e}"),
        }
    }
}

impl std::error::Error for TicketKeyError {}

/// One ticket key: a public name and a secret AEAD key.
pub struct TicketKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// A key from 48 bytes (name, then AES-256 key).
    pub fn from_bytes(b: &[u8; KEY_BYTES]) -> Result<TicketKey, TicketKeyError> {
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&b[..NAME_LEN]);
        let unbound = UnboundKey::new(&AES_256_GCM, &b[NAME_LEN..])
            .map_err(|_| TicketKeyError::Crypto("cannot build an AES-256-GCM key".into()))?;
        Ok(TicketKey {
            name,
            key: LessSafeKey::new(unbound),
        })
    }

    /// A fresh random key.
    pub fn random() -> Result<TicketKey, TicketKeyError> {
        let mut b = [0u8; KEY_BYTES];
        aws_lc_rs::rand::fill(&mut b)
            .map_err(|_| TicketKeyError::Crypto("random generator failed".into()))?;
        TicketKey::from_bytes(&b)
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        // One buffer: encrypt the body where it lies, then append the tag.
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.name),
                &mut out[NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn open(&self, nonce: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&self.name), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

/// Reads and checks a ticket-key file: permissions first, then every line.
pub fn load_file(path: &Path) -> Result<Vec<TicketKey>, TicketKeyError> {
    check_permissions(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| TicketKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn check_permissions(path: &Path) -> Result<(), TicketKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TicketKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(TicketKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Parses the file format (see the module docs).
pub fn parse(path: &Path, text: &str) -> Result<Vec<TicketKey>, TicketKeyError> {
    let mut keys: Vec<TicketKey> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| TicketKeyError::BadLine {
            path: path.to_owned(),
            line: i + 1,
            problem,
        };
        let bytes = decode_hex(line).ok_or_else(|| bad("not hexadecimal".into()))?;
        let arr: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(format!("{} bytes, expected {KEY_BYTES}", b.len())))?;
        let key = TicketKey::from_bytes(&arr)?;
        if keys.iter().any(|k| k.name == key.name) {
            return Err(bad("the same key name appears twice".into()));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(TicketKeyError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The keys in use at one moment; replaced whole (never mutated).
struct KeySet {
    /// First encrypts, all decrypt. Shared, so a rotation keeps the
    /// previous key without copying secret bytes.
    keys: Vec<Arc<TicketKey>>,
    /// Unix seconds at which in-memory keys rotate (`u64::MAX`: never).
    rotate_at: u64,
}

/// The ticketer every shard shares (through the one `ServerConfig`).
///
/// Encrypting and decrypting read the current key set through an
/// [`ArcSwap`] (no lock); only a rotation takes a mutex, with `try_lock`, so
/// a busy shard never waits for another one that is rotating.
pub struct TicketKeys {
    set: ArcSwap<KeySet>,
    /// `Some`: in-memory keys rotating at this period. `None`: from a file.
    rotation: Option<Duration>,
    lifetime: u32,
    rotating: Mutex<()>,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("keys", &self.set.load().keys.len())
            .field("rotation", &self.rotation)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A duration as a ticket lifetime hint (whole seconds, at least 1).
pub fn lifetime_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

impl TicketKeys {
    /// In-memory keys: a random key now, a new one every `period`.
    pub fn rotating(period: Duration, now: u64) -> Result<TicketKeys, TicketKeyError> {
        let set = KeySet {
            keys: vec![Arc::new(TicketKey::random()?)],
            rotate_at: now.saturating_add(period.as_secs().max(1)),
        };
        Ok(TicketKeys {
            set: ArcSwap::from_pointee(set),
            rotation: Some(period),
            lifetime: lifetime_secs(period),
            rotating: Mutex::new(()),
        })
    }

    /// Keys from a file (already loaded with [`load_file`]); `lifetime` is
    /// the hint sent to clients.
    pub fn from_keys(keys: Vec<TicketKey>, lifetime: Duration) -> TicketKeys {
        TicketKeys {
            set: ArcSwap::from_pointee(KeySet {
                keys: keys.into_iter().map(Arc::new).collect(),
                rotate_at: u64::MAX,
            }),
            rotation: None,
            lifetime: lifetime_secs(lifetime),
            rotating: Mutex::new(()),
        }
    }

    /// The lifetime hint sent with tickets (seconds).
    pub fn lifetime_secs(&self) -> u32 {
        self.lifetime
    }

    /// Whether the keys come from a file.
    pub fn is_from_file(&self) -> bool {
        self.rotation.is_none()
    }

    /// Installs new keys from a reloaded file. Tickets under a key that is
    /// still listed keep resuming; those under a dropped key do not.
    pub fn replace(&self, keys: Vec<TicketKey>) {
        let keys = keys.into_iter().map(Arc::new).collect();
        self.set.store(Arc::new(KeySet {
            keys,
            rotate_at: u64::MAX,
        }));
    }

    /// How many keys decrypt right now.
    pub fn key_count(&self) -> usize {
        self.set.load().keys.len()
    }

    fn current(&self, now: u64) -> arc_swap::Guard<Arc<KeySet>> {
        let set = self.set.load();
        if now < set.rotate_at {
            return set;
        }
        let (Some(period), Ok(_lock)) = (self.rotation, self.rotating.try_lock()) else {
            return set;
        };
        let set = self.set.load();
        if now < set.rotate_at {
            return set;
        }
        let Ok(fresh) = TicketKey::random() else {
            return set;
        };
        let mut keys = vec![Arc::new(fresh)];
        // The previous key decrypts for one more period; older ones go
        // (all of them, if no ticket was handled for a whole period).
        if now < set.rotate_at.saturating_add(period.as_secs()) {
            keys.extend(set.keys.first().cloned());
        }
        self.set.store(Arc::new(KeySet {
            keys,
            rotate_at: now.saturating_add(period.as_secs().max(1)),
        }));
        self.set.load()
    }

    /// Encrypts `plain` with the first key as of `now`.
    pub fn encrypt_at(&self, now: u64, plain: &[u8]) -> Option<Vec<u8>> {
        self.current(now).keys.first()?.seal(plain)
    }

    /// Decrypts a ticket made by any current key as of `now`.
    pub fn decrypt_at(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let set = self.current(now);
        let key = set.keys.iter().find(|k| k.name[..] == *name)?;
        key.open(nonce, sealed)
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let t = self.encrypt_at(unix_now(), plain);
        if t.is_some() {
            crate::metrics::tls_counts::note_ticket_issued();
        }
        t
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let p = self.decrypt_at(unix_now(), cipher);
        crate::metrics::tls_counts::note_ticket_decrypt(p.is_some());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HOUR: u64 = 3600;

    fn hex_key(seed: u8) -> String {
        (0..KEY_BYTES)
            .map(|i| format!("{:02x}", seed.wrapping_add(i as u8)))
            .collect()
    }

    fn keys(lines: &[String]) -> Vec<TicketKey> {
        parse(Path::new("t.keys"), &lines.join("\n")).expect("parse")
    }

    #[test]
    fn first_key_encrypts_and_every_key_decrypts() {
        let old = TicketKeys::from_keys(keys(&[hex_key(1)]), DEFAULT_ROTATION);
        let ticket = old.encrypt_at(0, b"session").expect("seal");
        let both = TicketKeys::from_keys(keys(&[hex_key(2), hex_key(1)]), DEFAULT_ROTATION);
        assert_eq!(
            both.decrypt_at(0, &ticket).as_deref(),
            Some(&b"session"[..])
        );
        let fresh = both.encrypt_at(0, b"x").expect("seal");
        assert!(
            old.decrypt_at(0, &fresh).is_none(),
            "new tickets use the first key"
        );
    }

    #[test]
    fn ticket_under_a_dropped_key_no_longer_decrypts() {
        let k = TicketKeys::from_keys(keys(&[hex_key(2), hex_key(1)]), DEFAULT_ROTATION);
        let t = TicketKeys::from_keys(keys(&[hex_key(1)]), DEFAULT_ROTATION)
            .encrypt_at(0, b"s")
            .expect("seal");
        assert!(k.decrypt_at(0, &t).is_some());
        k.replace(keys(&[hex_key(2)]));
        assert!(k.decrypt_at(0, &t).is_none());
    }

    #[test]
    fn tampered_or_short_tickets_are_refused() {
        let k = TicketKeys::from_keys(keys(&[hex_key(1)]), DEFAULT_ROTATION);
        let mut t = k.encrypt_at(0, b"session").expect("seal");
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(k.decrypt_at(0, &t).is_none());
        assert!(k.decrypt_at(0, &t[..20]).is_none());
        assert!(k.decrypt_at(0, &[]).is_none());
    }

    #[test]
    fn in_memory_keys_rotate_and_the_previous_key_decrypts_for_one_more_period() {
        let k = TicketKeys::rotating(Duration::from_secs(HOUR), 0).expect("keys");
        let t0 = k.encrypt_at(10, b"a").expect("seal");
        let t1 = k.encrypt_at(HOUR + 1, b"b").expect("seal");
        assert_eq!(k.key_count(), 2);
        assert!(
            k.decrypt_at(HOUR + 2, &t0).is_some(),
            "previous key still decrypts"
        );
        assert!(
            k.decrypt_at(2 * HOUR + 5, &t0).is_none(),
            "two rotations later it is gone"
        );
        assert!(k.decrypt_at(2 * HOUR + 5, &t1).is_some());
        assert_eq!(k.lifetime(), HOUR as u32);
    }

    #[test]
    fn after_a_long_quiet_spell_no_old_key_survives() {
        let k = TicketKeys::rotating(Duration::from_secs(HOUR), 0).expect("keys");
        let t = k.encrypt_at(0, b"a").expect("seal");
        assert!(k.decrypt_at(10 * HOUR, &t).is_none());
        assert_eq!(k.key_count(), 1);
    }

    #[test]
    fn bad_line_is_named_by_number_without_echoing_its_content() {
        let secret = "ab".repeat(KEY_BYTES - 1);
        let text = format!("# comment\n\n{}\n{secret}\n", hex_key(1));
        let e = parse(Path::new("t.keys"), &text).unwrap_err().to_string();
        assert!(e.starts_with("t.keys:4: not a ticket key: 47 bytes"), "{e}");
        assert!(!e.contains(&secret));
        let e = parse(Path::new("t.keys"), "zz").unwrap_err().to_string();
        assert!(e.contains("not hexadecimal"), "{e}");
        let e = parse(Path::new("t.keys"), "# nothing\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no key"), "{e}");
    }

    #[test]
    fn world_readable_file_is_refused_and_private_file_loads() {
        use std::os::unix::fs::PermissionsExt;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "{}", hex_key(7)).expect("write");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_file(f.path()).unwrap_err().to_string();
        assert!(e.contains("chmod o-rwx"), "{e}");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert_eq!(load_file(f.path()).expect("load").len(), 1);
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let k = TicketKeys::from_keys(keys(&[hex_key(1)]), DEFAULT_ROTATION);
        let d = format!("{k:?}");
        assert!(d.contains("keys: 1") && !d.contains("0102"), "{d}");
    }
}
