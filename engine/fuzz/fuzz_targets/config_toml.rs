//! Config parsing: arbitrary TOML through the engine's real path (a config
//! file, `Options::resolve`: deserialize, check, merge, validate).
//!
//! Inputs that name files or users are skipped: the target must not read
//! `/dev/zero`. Upstream hostnames are kept: the config layer does not
//! resolve them (the proxy does, when it starts). Checks: no panic; every
//! error says something (the operator gets a message, not a blank line).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use uringtls::__private::Options;

fn file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("uringtls-fuzz-{}.toml", std::process::id()))
    })
}

/// True when resolving `o` would touch the file system or users.
fn reaches_outside(o: &Options) -> bool {
    o.cert.is_some()
        || o.key.is_some()
        || o.client_ca.is_some()
        || o.ticket_key_file.is_some()
        || o.extra_cert.is_some()
        || o.user.is_some()
        || o.group.is_some()
        // `[[listener]]` tables name files and upstreams too.
        || o.listener.iter().flatten().any(|t| {
            toml::Value::Table(t.clone())
                .try_into::<Options>()
                .map_or(true, |l| reaches_outside(&l))
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match toml::from_str::<Options>(text) {
        Ok(o) if reaches_outside(&o) => return,
        Ok(_) | Err(_) => {}
    }
    if std::fs::write(file(), text).is_err() {
        return;
    }
    let opts = Options {
        config: Some(file().clone()),
        ..Options::default()
    };
    if let Err(e) = opts.resolve() {
        assert!(!e.to_string().trim().is_empty(), "empty error message");
    }
});
