//! ACME settings (`acme_*`): their checks and defaults. What they do is in
//! `crate::acme`; each default and the reason for it in
//! `docs/operations.md`.

use super::{ConfigError, Options, Origin, Sources};
use crate::acme::{AcmeSettings, LETS_ENCRYPT};

impl Options {
    /// Checks the ACME values present in one source.
    pub(super) fn check_acme(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        for name in self.acme_domain.iter().flatten() {
            check_domain(name).map_err(|p| {
                o.invalid(
                    "acme_domain",
                    format!("`{name}`: {p}"),
                    "give a DNS name this server answers for, e.g. example.com",
                )
            })?;
        }
        if let Some(u) = &self.acme_directory {
            if !u.starts_with("https://") || u.len() <= "https://".len() {
                return Err(o.invalid(
                    "acme_directory",
                    format!("`{u}` is not an https:// URL"),
                    format!("give the ACME server's directory URL, e.g. {LETS_ENCRYPT}"),
                ));
            }
        }
        if let Some(e) = &self.acme_email {
            let (user, host) = e.split_once('@').unwrap_or(("", ""));
            if user.is_empty() || host.is_empty() || e.contains(char::is_whitespace) {
                return Err(o.invalid(
                    "acme_email",
                    format!("`{e}` is not an e-mail address"),
                    "give an address such as ops@example.com (without mailto:)",
                ));
            }
        }
        Ok(())
    }

    /// Cross-field checks on merged options; `None` without `acme_domain`
    /// (and a warning for each other `acme_*` given).
    pub(super) fn acme_settings(
        &self,
        src: &Sources,
        warnings: &mut Vec<String>,
    ) -> Result<Option<AcmeSettings>, ConfigError> {
        let mut domains: Vec<String> = self
            .acme_domain
            .iter()
            .flatten()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect();
        domains.sort();
        domains.dedup();
        if domains.is_empty() {
            let given = [
                ("acme_directory", self.acme_directory.is_some()),
                ("acme_email", self.acme_email.is_some()),
                ("acme_cache", self.acme_cache.is_some()),
                ("acme_ca", self.acme_ca.is_some()),
            ];
            for (field, _) in given.iter().filter(|(_, set)| *set) {
                warnings.push(format!(
                    "`{field}` has no effect without `acme_domain` (no certificate is ordered): \
                     give acme_domain, or remove {field}"
                ));
            }
            return Ok(None);
        }
        let Some(cache) = self.acme_cache.clone() else {
            return Err(src.of(|f| f.acme_domain.is_some()).invalid(
                "acme_cache",
                "acme_domain is given but no cache directory",
                "give acme_cache, a directory for the ACME account and certificates (without \
                 it every restart would order again and hit the CA's rate limits)",
            ));
        };
        if self
            .alpn
            .as_ref()
            .is_some_and(|l| l.iter().all(|p| p.trim().is_empty()))
        {
            return Err(src.of(|f| f.alpn.is_some()).invalid(
                "alpn",
                "an empty ALPN list with acme_domain: ACME adds acme-tls/1, and clients \
                 offering other protocols would then be refused",
                "give alpn, e.g. http/1.1",
            ));
        }
        if let Some(ca) = &self.acme_ca {
            crate::tls::load_certs(ca).map_err(|e| {
                src.of(|f| f.acme_ca.is_some()).invalid(
                    "acme_ca",
                    e.to_string(),
                    "give a PEM file of CA certificates",
                )
            })?;
        }
        Ok(Some(AcmeSettings {
            domains,
            directory: self
                .acme_directory
                .clone()
                .unwrap_or_else(|| LETS_ENCRYPT.into()),
            email: self.acme_email.clone(),
            cache,
            ca: self.acme_ca.clone(),
        }))
    }
}

/// A name TLS-ALPN-01 can validate: a DNS name, no wildcard, no address.
fn check_domain(name: &str) -> Result<(), &'static str> {
    let n = name.trim().trim_end_matches('.');
    if n.starts_with("*.") {
        return Err("wildcards need the DNS-01 challenge, which uringtls does not answer");
    }
    if n.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address, not a DNS name");
    }
    if !n.contains('.') && n != "localhost" {
        return Err("not a fully qualified name");
    }
    rustls_pki_types::DnsName::try_from(n)
        .map(drop)
        .map_err(|_| "not a valid DNS name")
}

#[cfg(test)]
mod tests {
    use super::super::tests::flags;

    fn err(args: &[&str]) -> String {
        flags(args).resolve().unwrap_err().to_string()
    }

    #[test]
    fn acme_settings_come_from_flags_with_the_documented_defaults() {
        let s = flags(&[
            "--acme-domain",
            "B.example.com",
            "--acme-domain",
            "a.example.com",
            "--acme-cache",
            "/var/lib/uringtls/acme",
        ])
        .resolve()
        .expect("valid");
        let a = s.acme.expect("acme on");
        assert_eq!(a.domains, ["a.example.com", "b.example.com"]);
        assert_eq!(a.directory, crate::acme::LETS_ENCRYPT);
        assert_eq!(a.email, None);
        assert!(flags(&[]).resolve().expect("valid").acme.is_none());
    }

    #[test]
    fn acme_settings_come_from_the_file_too_and_a_file_mistake_names_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("u.toml");
        std::fs::write(
            &path,
            "acme_domain = [\"a.example.com\", \"b.example.com\"]\nacme_cache = \"/c\"\n\
             acme_email = \"ops@example.com\"\n\
             acme_directory = \"https://acme-staging-v02.api.letsencrypt.org/directory\"\n",
        )
        .expect("write");
        let p = path.to_str().expect("utf8");
        let a = flags(&["--config", p]).resolve().expect("valid").acme;
        let a = a.expect("acme on");
        assert_eq!(a.domains, ["a.example.com", "b.example.com"]);
        assert_eq!(a.directory, crate::acme::LETS_ENCRYPT_STAGING);
        assert_eq!(a.email.as_deref(), Some("ops@example.com"));
        std::fs::write(&path, "acme_domain = [\"*.example.com\"]\n").expect("write");
        let e = err(&["--config", p]);
        assert!(e.contains("u.toml") && e.contains("acme_domain"), "{e}");
    }

    #[test]
    fn acme_mistakes_are_named_before_anything_binds() {
        let e = err(&["--acme-domain", "a.example.com"]);
        assert!(e.contains("--acme-cache"), "{e}");
        let e = err(&["--acme-domain", "*.example.com", "--acme-cache", "/x"]);
        assert!(e.contains("--acme-domain") && e.contains("DNS-01"), "{e}");
        let e = err(&["--acme-domain", "10.0.0.1", "--acme-cache", "/x"]);
        assert!(e.contains("--acme-domain"), "{e}");
        let e = err(&["--acme-directory", "http://ca.test/dir"]);
        assert!(e.contains("--acme-directory") && e.contains("https"), "{e}");
        let e = err(&["--acme-email", "mailto:"]);
        assert!(e.contains("--acme-email"), "{e}");
        let e = err(&[
            "--acme-domain",
            "a.example.com",
            "--acme-cache",
            "/x",
            "--acme-ca",
            "/nonexistent/ca.pem",
        ]);
        assert!(
            e.contains("--acme-ca") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let e = err(&[
            "--acme-domain",
            "a.example.com",
            "--acme-cache",
            "/x",
            "--alpn",
            "",
        ]);
        assert!(e.contains("--alpn") && e.contains("acme-tls/1"), "{e}");
    }

    #[test]
    fn acme_settings_without_a_domain_are_warned_about() {
        let s = flags(&["--acme-email", "ops@example.com"])
            .resolve()
            .expect("valid");
        assert!(s.acme.is_none());
        assert!(
            s.warnings.iter().any(|w| w.contains("acme_email")),
            "{:?}",
            s.warnings
        );
    }
}
