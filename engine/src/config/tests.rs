//! Helpers shared by the configuration's unit tests.

use super::Options;
use clap::Parser;
use std::io::Write;

/// Options parsed from these flags (after the program name).
pub(crate) fn flags(args: &[&str]) -> Options {
    let mut v = vec!["uringtls"];
    v.extend_from_slice(args);
    Options::try_parse_from(v).expect("parse")
}

pub(crate) fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    f.write_all(text.as_bytes()).expect("write");
    f
}

/// A config file holding `text`, refused: (its path, the error).
pub(crate) fn refused_file(text: &str) -> (String, String) {
    let f = file(text);
    let path = f.path().to_str().expect("utf8").to_owned();
    let e = flags(&["--config", &path])
        .resolve()
        .expect_err("refused")
        .to_string();
    (path, e)
}
