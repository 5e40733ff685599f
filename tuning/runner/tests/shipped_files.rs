//! The files shipped in tuning/ stay usable: every experiment parses and
//! expands, every sysctl profile parses and comments each setting.

use std::path::{Path, PathBuf};
use tuning_runner::experiment::Experiment;
use tuning_runner::matrix::expand;
use tuning_runner::sysctl::{load_conf, parse_conf};

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tuning/ folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_experiment_parses_and_expands() {
    let exps = files("experiments", "toml");
    assert!(exps.len() >= 3, "{exps:?}");
    for p in exps {
        let e = Experiment::load(&p).unwrap();
        let base = p.parent().unwrap().to_path_buf();
        let cells = expand(&e, &move |f| load_conf(&base.join(f))).unwrap();
        assert!(
            cells.len() >= 2,
            "{}: one cell compares nothing",
            p.display()
        );
    }
}

#[test]
fn every_profile_setting_has_a_comment_saying_what_it_does_and_when_it_hurts() {
    let confs = files("sysctl", "conf");
    assert!(confs.len() >= 3, "{confs:?}");
    for p in confs {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!parse_conf(&text).unwrap().is_empty());
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() || l.starts_with('#') {
                continue;
            }
            let comment: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|c| c.starts_with('#'))
                .copied()
                .collect();
            assert!(
                comment.iter().any(|c| c.contains("Hurts")),
                "{}: `{l}` has no `Hurts:` comment above it",
                p.display()
            );
        }
    }
}
