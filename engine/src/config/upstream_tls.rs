//! The proxy's upstream-TLS settings (`upstream_tls`, `upstream_ca`,
//! `upstream_sni`, `upstream_cert`, `upstream_key`, `upstream_alpn`):
//! checked per source, then loaded (every file read, the client config
//! built) when the settings are resolved, so that a bad file stops the
//! start, or a reload, before anything changes.

use super::{ConfigError, Options, Origin, Sources};
use crate::services::proxy::upstream_tls::{UpstreamAlpn, UpstreamTls, UpstreamTlsSettings};
use crate::services::proxy::UpstreamAddr;
use std::sync::Arc;

impl Options {
    /// Checks of the upstream-TLS values present in one source.
    pub(super) fn check_upstream_tls(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if let Some(list) = &self.upstream_alpn {
            let names: Vec<&str> = list.iter().map(|s| s.trim()).collect();
            if names.iter().any(|n| n.is_empty()) {
                return Err(o.invalid(
                    "upstream_alpn",
                    "an empty protocol name",
                    "list protocol names such as `h2,http/1.1`, or `passthrough`",
                ));
            }
            if names.len() > 1 && names.contains(&"passthrough") {
                return Err(o.invalid(
                    "upstream_alpn",
                    "`passthrough` is listed with other protocols",
                    "give either `passthrough` alone (offer the client's protocol) or a list of \
                     protocols",
                ));
            }
        }
        if let Some(n) = &self.upstream_sni {
            let host = n.trim_start_matches('[').trim_end_matches(']');
            if rustls_pki_types::ServerName::try_from(host).is_err() {
                return Err(o.invalid(
                    "upstream_sni",
                    format!("`{n}` is not a DNS name or an IP address"),
                    "give the name in the upstream's certificate, e.g. backend.internal",
                ));
            }
        }
        Ok(())
    }

    /// The upstream-TLS settings as given (merged options).
    fn upstream_tls_settings(&self) -> UpstreamTlsSettings {
        UpstreamTlsSettings {
            ca: self.upstream_ca.clone(),
            sni: self.upstream_sni.clone(),
            cert: self.upstream_cert.clone(),
            key: self.upstream_key.clone(),
            alpn: self
                .upstream_alpn
                .as_deref()
                .map(UpstreamAlpn::from_list)
                .unwrap_or_default(),
        }
    }

    /// The upstream-TLS settings to load, if `upstream_tls` is on (merged
    /// options).
    pub(super) fn upstream_tls_wanted(&self) -> Option<UpstreamTlsSettings> {
        (self.upstream_tls == Some(true)).then(|| self.upstream_tls_settings())
    }

    /// The upstream-TLS settings given without `upstream_tls = true`.
    pub(super) fn upstream_tls_unused(&self) -> Vec<&'static str> {
        if self.upstream_tls == Some(true) {
            return Vec::new();
        }
        [
            ("upstream_ca", self.upstream_ca.is_some()),
            ("upstream_sni", self.upstream_sni.is_some()),
            ("upstream_cert", self.upstream_cert.is_some()),
            ("upstream_key", self.upstream_key.is_some()),
            ("upstream_alpn", self.upstream_alpn.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Loads the upstream TLS material (`upstreams` resolved); `None` when
/// `upstream_tls` is off.
pub(super) fn load_upstream_tls(
    wanted: Option<UpstreamTlsSettings>,
    src: &Sources,
    upstreams: &[UpstreamAddr],
) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
    let Some(settings) = wanted else {
        return Ok(None);
    };
    UpstreamTls::load(settings, upstreams)
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| {
            let field = e.field();
            src.of(|f| given(f, field)).invalid(field, &e, e.fix())
        })
}

/// Whether `field` was given in `o`.
fn given(o: &Options, field: &str) -> bool {
    match field {
        "upstream_ca" => o.upstream_ca.is_some(),
        "upstream_sni" => o.upstream_sni.is_some(),
        "upstream_cert" => o.upstream_cert.is_some(),
        "upstream_key" => o.upstream_key.is_some(),
        "upstream_alpn" => o.upstream_alpn.is_some(),
        _ => o.upstream_tls.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::flags;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn ca_pem() -> String {
        let k = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&k).expect("ca").pem()
    }

    fn proxy<'a>(more: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--service", "proxy", "--upstream", "127.0.0.1:9"];
        v.extend_from_slice(more);
        v
    }

    #[test]
    fn upstream_tls_is_off_by_default_and_loads_from_flags_or_the_file() {
        let s = flags(&proxy(&[])).resolve().expect("ok");
        assert!(s.proxy.tls.is_none());
        let ca = file(&ca_pem());
        let ca_path = ca.path().to_str().expect("utf8");
        let s = flags(&proxy(&[
            "--upstream-tls",
            "true",
            "--upstream-ca",
            ca_path,
        ]))
        .resolve()
        .expect("ok");
        let t = s.proxy.tls.expect("on");
        assert_eq!(t.settings.ca.as_deref(), Some(ca.path()));
        let toml = file(&format!(
            "upstream_tls = true\nupstream_ca = \"{ca_path}\"\nupstream_sni = \"b.test\"\n\
             upstream_alpn = [\"passthrough\"]\n"
        ));
        let p = toml.path().to_str().expect("utf8");
        let s = flags(&proxy(&["--config", p])).resolve().expect("ok");
        let t = s.proxy.tls.expect("on");
        assert_eq!(t.settings.sni.as_deref(), Some("b.test"));
        assert_eq!(
            t.settings.alpn,
            crate::services::proxy::upstream_tls::UpstreamAlpn::Passthrough
        );
        // The compiled-in roots when no CA is given.
        let s = flags(&proxy(&["--upstream-tls", "true"]))
            .resolve()
            .expect("ok");
        assert!(s.proxy.tls.is_some());
    }

    #[test]
    fn a_bad_upstream_tls_file_or_setting_names_the_flag_or_the_file_field() {
        let err = |args: &[&str]| {
            flags(&proxy(args))
                .resolve()
                .expect_err("refused")
                .to_string()
        };
        let junk = file("not a pem\n");
        let j = junk.path().to_str().expect("utf8");
        let e = err(&["--upstream-tls", "true", "--upstream-ca", j]);
        assert!(e.starts_with("flag --upstream-ca:") && e.contains(j), "{e}");
        let e = err(&["--upstream-tls", "true", "--upstream-cert", j]);
        assert!(
            e.starts_with("flag --upstream-key:") && e.contains("together"),
            "{e}"
        );
        let e = err(&["--upstream-alpn", "passthrough,h2"]);
        assert!(e.starts_with("flag --upstream-alpn:"), "{e}");
        let e = err(&["--upstream-sni", "a b"]);
        assert!(e.starts_with("flag --upstream-sni:"), "{e}");
        let toml = file(&format!("upstream_tls = true\nupstream_ca = \"{j}\"\n"));
        let p = toml.path().to_str().expect("utf8");
        let e = err(&["--config", p]);
        assert!(
            e.starts_with(&format!("{p}: field `upstream_ca`:")) && e.contains(j),
            "{e}"
        );
        // A file holding a key, not certificates.
        let k = rcgen::KeyPair::generate().expect("key");
        let key = file(&k.serialize_pem());
        let kp = key.path().to_str().expect("utf8");
        let e = err(&["--upstream-tls", "true", "--upstream-ca", kp]);
        assert!(e.starts_with("flag --upstream-ca:"), "{e}");
    }
}
