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
//! - **A shared secret** (`ticket_secret_file`): every instance of a fleet
//!   derives the key of period *n* = ⌊unix time / period⌋ with HKDF-SHA256
//!   from the secret and *n* ([`derive()`]); it encrypts under *n* and
//!   decrypts under *n − 1*, *n* and *n + 1* (clock skew between machines).
//!   Keys change at the period boundary, read from the wall clock on each
//!   ticket (one comparison). Nothing to distribute but the one secret.
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
/// Default period of keys derived from a shared secret: 12 hours. A ticket
/// resumes for one to two periods (its own and the next).
pub const DEFAULT_SECRET_ROTATION: Duration = Duration::from_secs(12 * 3600);
/// Shortest shared secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// HKDF salt: names the purpose, so the same secret used elsewhere yields
/// unrelated keys.
const HKDF_SALT: &[u8] = b"uringtls session-ticket keys v1";
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
    /// The shared-secret file may be read or written by group or others.
    SecretPermissions {
        /// File.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The shared secret is shorter than [`MIN_SECRET_BYTES`].
    SecretTooShort {
        /// File.
        path: PathBuf,
        /// Its length in bytes (after trailing line ends).
        len: usize,
    },
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
            TicketKeyError::SecretPermissions { path, mode } => write!(
                f,
                "{}: ticket secret file is accessible to group or others (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            TicketKeyError::SecretTooShort { path, len } => write!(
                f,
                "{}: ticket secret is {len} bytes, fewer than {MIN_SECRET_BYTES}; write a longer one, \
                 e.g. `openssl rand -base64 48 > {}` (the same file on every instance)",
                path.display(),
                path.display()
            ),
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

/// A shared secret (the bytes of a `ticket_secret_file`). `Debug` shows
/// nothing of it; the bytes are overwritten when it is dropped.
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        // Not secret-dependent timing that matters here (both are ours), but
        // cheap to do right.
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

impl Secret {
    /// A secret from bytes, refused below [`MIN_SECRET_BYTES`] (`path`
    /// names the file in the error).
    pub fn new(path: &Path, mut bytes: Vec<u8>) -> Result<Secret, TicketKeyError> {
        // A text file's line end is not part of the secret (an editor adds
        // one, `openssl rand -base64` writes one).
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.len() < MIN_SECRET_BYTES {
            let len = bytes.len();
            drop(Secret(bytes));
            return Err(TicketKeyError::SecretTooShort {
                path: path.to_owned(),
                len,
            });
        }
        Ok(Secret(bytes))
    }
}

/// Reads and checks a shared-secret file: mode 0600 or stricter (like a
/// private key), then at least [`MIN_SECRET_BYTES`] bytes.
pub fn load_secret(path: &Path) -> Result<Secret, TicketKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| TicketKeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_err)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TicketKeyError::SecretPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Secret::new(path, std::fs::read(path).map_err(read_err)?)
}

/// HKDF output length for one key (name and AEAD key).
struct KeyLen;

impl aws_lc_rs::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_BYTES
    }
}

/// The key of period `n` (of `period_secs` seconds) from `secret`:
/// HKDF-SHA256, salt `uringtls session-ticket keys v1`, info `uringtls ticket key` ‖ period
/// length ‖ *n* (both big-endian u64). The first 16 bytes name the key (they
/// travel in every ticket), the other 32 are the AES-256-GCM key; HKDF
/// output bytes are independent, so the name reveals nothing of the key.
pub fn derive(secret: &Secret, period_secs: u64, n: u64) -> Result<TicketKey, TicketKeyError> {
    let mut okm = derive_bytes(secret, period_secs, n)?;
    let key = TicketKey::from_bytes(&okm);
    okm.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&okm);
    key
}

/// The bytes of [`derive()`]'s key (name, then AES key): for audits and the
/// log-hygiene test, which looks for them in the logs.
pub fn derive_bytes(
    secret: &Secret,
    period_secs: u64,
    n: u64,
) -> Result<[u8; KEY_BYTES], TicketKeyError> {
    use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
    let fail = |_| TicketKeyError::Crypto("HKDF failed".into());
    let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(&secret.0);
    let (p, n) = (period_secs.to_be_bytes(), n.to_be_bytes());
    let info: [&[u8]; 3] = [b"uringtls ticket key", &p, &n];
    let mut okm = [0u8; KEY_BYTES];
    prk.expand(&info, KeyLen)
        .map_err(fail)?
        .fill(&mut okm)
        .map_err(fail)?;
    Ok(okm)
}

/// Where the keys come from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// A ticket-key file.
    File,
    /// Random keys rotating in memory.
    Memory,
    /// Keys derived from a shared secret per period.
    Secret,
}

/// The keys in use at one moment; replaced whole (never mutated).
struct KeySet {
    /// First encrypts, all decrypt. Shared, so a rotation keeps the
    /// previous key without copying secret bytes.
    keys: Vec<Arc<TicketKey>>,
    /// Unix seconds at which in-memory keys rotate (`u64::MAX`: never).
    rotate_at: u64,
    /// Derived keys: the secret, and the start of the period the first
    /// key belongs to (keys are derived again outside
    /// `valid_from..rotate_at`, e.g. after the clock was set back).
    derived: Option<(Arc<Secret>, u64)>,
}

impl KeySet {
    /// The keys of the period holding `now`: that period's first (it
    /// encrypts), then the previous and the next.
    fn derived(secret: Arc<Secret>, period: u64, now: u64) -> Result<KeySet, TicketKeyError> {
        let period = period.max(1);
        let n = now / period;
        let mut keys = vec![Arc::new(derive(&secret, period, n)?)];
        if let Some(prev) = n.checked_sub(1) {
            keys.push(Arc::new(derive(&secret, period, prev)?));
        }
        keys.push(Arc::new(derive(&secret, period, n.saturating_add(1))?));
        Ok(KeySet {
            keys,
            rotate_at: n.saturating_add(1).saturating_mul(period),
            derived: Some((secret, n.saturating_mul(period))),
        })
    }

    fn is_current(&self, now: u64) -> bool {
        now < self.rotate_at && self.derived.as_ref().is_none_or(|(_, from)| now >= *from)
    }
}

/// The ticketer every shard shares (through the one `ServerConfig`).
///
/// Encrypting and decrypting read the current key set through an
/// [`ArcSwap`] (no lock); only a rotation takes a mutex, with `try_lock`, so
/// a busy shard never waits for another one that is rotating.
pub struct TicketKeys {
    set: ArcSwap<KeySet>,
    /// `Some`: in-memory or derived keys rotating at this period. `None`:
    /// from a file.
    rotation: Option<Duration>,
    source: KeySource,
    lifetime: u32,
    rotating: Mutex<()>,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("keys", &self.set.load().keys.len())
            .field("rotation", &self.rotation)
            .field("source", &self.source)
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
            derived: None,
        };
        Ok(TicketKeys {
            set: ArcSwap::from_pointee(set),
            rotation: Some(period),
            source: KeySource::Memory,
            lifetime: lifetime_secs(period),
            rotating: Mutex::new(()),
        })
    }

    /// Keys derived from a shared `secret`, a new one every `period` of
    /// the wall clock (see [`derive()`]); `period` is also the lifetime hint
    /// (a ticket resumes for one to two periods).
    pub fn from_secret(
        secret: Secret,
        period: Duration,
        now: u64,
    ) -> Result<TicketKeys, TicketKeyError> {
        let set = KeySet::derived(Arc::new(secret), period.as_secs(), now)?;
        Ok(TicketKeys {
            set: ArcSwap::from_pointee(set),
            rotation: Some(period),
            source: KeySource::Secret,
            lifetime: lifetime_secs(period),
            rotating: Mutex::new(()),
        })
    }

    /// Installs a new shared secret (from a reloaded file); the keys of the
    /// current window are derived from it at once.
    pub fn replace_secret(&self, secret: Secret, now: u64) -> Result<(), TicketKeyError> {
        let period = self.rotation.map_or(1, |p| p.as_secs());
        let set = KeySet::derived(Arc::new(secret), period, now)?;
        self.set.store(Arc::new(set));
        Ok(())
    }

    /// Whether `secret` is the one in use (a reload with an unchanged file
    /// keeps the keys as they are).
    pub fn uses_secret(&self, secret: &Secret) -> bool {
        self.set
            .load()
            .derived
            .as_ref()
            .is_some_and(|(s, _)| **s == *secret)
    }

    /// Where the keys come from.
    pub fn source(&self) -> KeySource {
        self.source
    }

    /// Keys from a file (already loaded with [`load_file`]); `lifetime` is
    /// the hint sent to clients.
    pub fn from_keys(keys: Vec<TicketKey>, lifetime: Duration) -> TicketKeys {
        TicketKeys {
            set: ArcSwap::from_pointee(KeySet {
                keys: keys.into_iter().map(Arc::new).collect(),
                rotate_at: u64::MAX,
                derived: None,
            }),
            rotation: None,
            source: KeySource::File,
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
        self.source == KeySource::File
    }

    /// Installs new keys from a reloaded file. Tickets under a key that is
    /// still listed keep resuming; those under a dropped key do not.
    pub fn replace(&self, keys: Vec<TicketKey>) {
        let keys = keys.into_iter().map(Arc::new).collect();
        self.set.store(Arc::new(KeySet {
            keys,
            rotate_at: u64::MAX,
            derived: None,
        }));
    }

    /// How many keys decrypt right now.
    pub fn key_count(&self) -> usize {
        self.set.load().keys.len()
    }

    fn current(&self, now: u64) -> arc_swap::Guard<Arc<KeySet>> {
        let set = self.set.load();
        if set.is_current(now) {
            return set;
        }
        let (Some(period), Ok(_lock)) = (self.rotation, self.rotating.try_lock()) else {
            return set;
        };
        let set = self.set.load();
        if set.is_current(now) {
            return set;
        }
        if let Some((secret, _)) = &set.derived {
            // Period boundary: the next window's keys, from the same secret.
            let Ok(next) = KeySet::derived(secret.clone(), period.as_secs(), now) else {
                return set;
            };
            self.set.store(Arc::new(next));
            return self.set.load();
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
            derived: None,
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

    fn secret(seed: u8) -> Secret {
        Secret::new(Path::new("t.secret"), vec![seed; 40]).expect("secret")
    }

    fn fleet(seed: u8, period: u64, now: u64) -> TicketKeys {
        TicketKeys::from_secret(secret(seed), Duration::from_secs(period), now).expect("keys")
    }

    #[test]
    fn instances_with_the_same_secret_decrypt_each_others_tickets() {
        let (a, b) = (fleet(1, HOUR, 5 * HOUR), fleet(1, HOUR, 5 * HOUR));
        let t = a.encrypt_at(5 * HOUR + 1, b"s").expect("seal");
        assert_eq!(b.decrypt_at(5 * HOUR + 2, &t).as_deref(), Some(&b"s"[..]));
        let other = fleet(2, HOUR, 5 * HOUR);
        assert!(
            other.decrypt_at(5 * HOUR + 2, &t).is_none(),
            "another secret"
        );
        let other_period = fleet(1, 2 * HOUR, 5 * HOUR);
        assert!(other_period.decrypt_at(5 * HOUR + 2, &t).is_none());
    }

    #[test]
    fn derived_keys_accept_the_previous_and_next_period_and_nothing_older() {
        let k = fleet(1, HOUR, 0);
        let t = k.encrypt_at(10 * HOUR + 5, b"s").expect("seal");
        // Period 10's ticket: accepted in periods 9 (a peer whose clock is
        // behind), 10 and 11; refused from period 12 on.
        for (now, ok) in [
            (9 * HOUR, true),
            (10 * HOUR, true),
            (11 * HOUR + HOUR - 1, true),
            (12 * HOUR, false),
            (8 * HOUR + HOUR - 1, false),
        ] {
            assert_eq!(k.decrypt_at(now, &t).is_some(), ok, "at {now}");
        }
    }

    #[test]
    fn derived_keys_change_at_the_period_boundary_without_a_reload() {
        let k = fleet(1, 2, 100);
        let a = k.encrypt_at(101, b"a").expect("seal");
        let b = k.encrypt_at(102, b"b").expect("seal");
        assert_ne!(a[..NAME_LEN], b[..NAME_LEN], "a new key name in period 51");
        assert_eq!(
            &a[..NAME_LEN],
            &derive_name(1, 2, 50),
            "period n = floor(t / 2)"
        );
    }

    fn derive_name(seed: u8, period: u64, n: u64) -> [u8; NAME_LEN] {
        derive(&secret(seed), period, n).expect("derive").name
    }

    #[test]
    fn a_replaced_secret_takes_over_at_once() {
        let k = fleet(1, HOUR, 0);
        let old = k.encrypt_at(1, b"s").expect("seal");
        assert!(k.uses_secret(&secret(1)) && !k.uses_secret(&secret(2)));
        k.replace_secret(secret(2), 2).expect("replace");
        assert!(k.decrypt_at(3, &old).is_none());
        let new = k.encrypt_at(3, b"s").expect("seal");
        assert!(fleet(2, HOUR, 0).decrypt_at(3, &new).is_some());
    }

    #[test]
    fn short_or_shared_secret_files_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(&[b'x'; 31]).expect("write");
        f.write_all(b"\n").expect("write");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = load_secret(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("31 bytes, fewer than 32") && e.contains("openssl rand"),
            "{e}"
        );
        assert!(!e.contains("xxxx"), "the secret is not echoed: {e}");
        f.write_all(b"x").expect("write");
        assert!(load_secret(f.path()).is_ok());
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = load_secret(f.path()).unwrap_err().to_string();
        assert!(e.contains("mode 0640") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn debug_output_of_a_derived_ticketer_shows_no_secret() {
        let k = fleet(0x41, HOUR, 0);
        let d = format!("{k:?} {:?}", secret(0x41));
        assert!(!d.contains("AAAA") && !d.contains("65, 65"), "{d}");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let k = TicketKeys::from_keys(keys(&[hex_key(1)]), DEFAULT_ROTATION);
        let d = format!("{k:?}");
        assert!(d.contains("keys: 1") && !d.contains("0102"), "{d}");
    }
}
