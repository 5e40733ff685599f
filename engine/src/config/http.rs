//! Limits of the `http` service on what a client may send: the body size
//! and the time to read one whole request. The fields live in [`Options`]
//! with the rest (flags and TOML alike); their checks and defaults live here
//! and in `docs/operations.md`.

use super::{ConfigError, Options, Origin};
use std::time::Duration;

pub use crate::services::http::DEFAULT_REQUEST_TIMEOUT;

/// Resolved request limits of the `http` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body (`Content-Length`), bytes; `413` beyond.
    pub max_body: usize,
    /// Time from a request's first byte to the end of its body.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: crate::services::http::DEFAULT_MAX_BODY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl Options {
    /// Checks the request limits present in one source.
    pub(super) fn check_http(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if let Some(b) = self.max_body {
            if b.0 == 0 {
                return Err(o.invalid(
                    "max_body",
                    "0 bytes",
                    "use a positive size such as `1MiB` (the default); unlike nginx's \
                     client_max_body_size, 0 does not mean unlimited: give a large size instead",
                ));
            }
            if usize::try_from(b.0).is_err() {
                return Err(o.invalid(
                    "max_body",
                    format!("{b} does not fit this machine's address size"),
                    "use a smaller size",
                ));
            }
        }
        if self.request_timeout.is_some_and(|d| d.0.is_zero()) {
            return Err(o.invalid(
                "request_timeout",
                "a zero timeout",
                "use a positive duration such as `60s`",
            ));
        }
        Ok(())
    }

    /// The request limits from merged options.
    pub(super) fn http_limits(&self) -> HttpLimits {
        let d = HttpLimits::default();
        HttpLimits {
            max_body: self
                .max_body
                .and_then(|b| usize::try_from(b.0).ok())
                .unwrap_or(d.max_body),
            request_timeout: self.request_timeout.map_or(d.request_timeout, |t| t.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    use crate::config::tests::flags;

    #[test]
    fn request_limits_default_to_one_mebibyte_and_sixty_seconds() {
        let s = flags(&[]).resolve().expect("ok");
        assert_eq!(s.http.max_body, 1 << 20);
        assert_eq!(s.http.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn request_limits_come_from_the_file_and_flags_override_them() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"max_body = \"64KiB\"\nrequest_timeout = \"20s\"\n")
            .expect("write");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(
            s.http,
            HttpLimits {
                max_body: 64 << 10,
                request_timeout: Duration::from_secs(20)
            }
        );
        let s = flags(&[
            "--config",
            path,
            "--max-body",
            "2000",
            "--request-timeout",
            "5s",
        ])
        .resolve()
        .expect("ok");
        assert_eq!(s.http.max_body, 2000);
        assert_eq!(s.http.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_request_limits_name_their_source() {
        let e = flags(&["--max-body", "0"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("flag --max-body: 0 bytes;"), "{e}");
        let e = Options::try_parse_from(["uringtls", "--max-body", "1 parsec"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown size unit `parsec`"), "{e}");
        let e = flags(&["--request-timeout", "0s"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flag --request-timeout: a zero timeout"),
            "{e}"
        );
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"max_body = \"lots\"\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let e = flags(&["--config", path])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains(path) && e.contains("max_body"), "{e}");
    }
}
