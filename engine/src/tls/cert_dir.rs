//! `cert_dir`: every `NAME.pem` (chain) + `NAME.key` (private key) pair of
//! a directory, chosen by SNI against the certificate's subjectAltNames like
//! an `extra_cert`. Read at start and at every reload (SIGHUP, or a change
//! seen by the file watcher), so pairs added or removed are picked up.
//!
//! Pairs are taken in name order. A `NAME.pem` without its `NAME.key` (a
//! pair being copied in) is skipped with a warning; a `.key` alone is
//! ignored. Anything else in the directory (dot files such as Kubernetes'
//! `..data`, other extensions) is ignored. A pair that does not load (bad
//! PEM, key not matching) refuses the whole configuration, as a bad
//! `--cert` does, so a reload keeps serving the previous set. Keys must not
//! be accessible to group or others (mode 0600 or 0400).

use super::{CertPair, TlsError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The pairs in `dir`, in name order.
pub fn pairs(dir: &Path) -> Result<Vec<CertPair>, TlsError> {
    let list_err = |e: std::io::Error| {
        TlsError::CertDir {
        path: dir.to_owned(),
        detail: format!("cannot list the certificate directory: {e} (give a readable directory of NAME.pem + NAME.key pairs)"),
    }
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(list_err)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for stem in names.iter().filter_map(|n| n.strip_suffix(".pem")) {
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        if !cert.is_file() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&key) else {
            tracing::warn!(cert = %cert.display(), "no {stem}.key beside {stem}.pem; pair skipped until it appears");
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::CertDir {
                path: key.clone(),
                detail: format!(
                    "private key is accessible to group or others (mode {:04o}); run `chmod 600 {}`",
                    mode & 0o7777,
                    key.display()
                ),
            });
        }
        out.push(CertPair { cert, key });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_found_in_name_order_and_halves_and_dot_files_are_skipped() {
        let d = tempfile::tempdir().expect("tmp");
        let put = |n: &str, mode: u32| {
            let p = d.path().join(n);
            std::fs::write(&p, "x").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        put("b.pem", 0o644);
        put("b.key", 0o600);
        put("a.pem", 0o644);
        put("a.key", 0o400);
        put("half.pem", 0o644);
        put("alone.key", 0o600);
        put("..data", 0o644);
        put("notes.txt", 0o644);
        let got: Vec<_> = pairs(d.path())
            .expect("pairs")
            .into_iter()
            .map(|p| p.cert.file_name().expect("name").to_owned())
            .collect();
        assert_eq!(got, ["a.pem", "b.pem"]);
        put("b.key", 0o640);
        let e = pairs(d.path()).expect_err("readable key").to_string();
        assert!(e.contains("b.key") && e.contains("chmod 600"), "{e}");
        let e = pairs(&d.path().join("nope"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("cannot list the certificate directory"), "{e}");
    }
}
