//! The benchmark harness's Python helpers that have unit tests of their
//! own (`tuning/compare/test_*.py`): run them, so that a change to what
//! compare.py reports is checked with the rest of the suite.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_compare_harness_unit_tests_pass() {
    if !uringtls_tests::require_tool("python3") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuning/compare");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s"])
        .arg(&dir)
        .args(["-p", "test_*.py", "-v"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tuning/compare unit tests failed:\n{err}"
    );
    // Discovery that finds nothing also exits 0: make sure the tests ran.
    assert!(
        err.contains("\nRan ") && !err.contains("\nRan 0 tests"),
        "no test ran:\n{err}"
    );
}
