//! The shipped deployment files of bench-client (docs/deploy/): the
//! Kubernetes Indexed Job parses as YAML and says what the fleet needs, its
//! shell turns the 0-based completion index into a 1-based `--worker`, and
//! it agrees with the Containerfile's unprivileged user. (No Kubernetes
//! schema validator is packaged by Debian; the fields are checked here.)

use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn docs() -> Vec<Yaml> {
    YamlLoader::load_from_str(&read("docs/deploy/bench-client-job.yaml"))
        .expect("bench-client-job.yaml is valid YAML")
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in bench-client-job.yaml"))
}

fn env<'a>(container: &'a Yaml, name: &str) -> &'a str {
    container["env"]
        .as_vec()
        .expect("env list")
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_job_is_indexed_with_n_workers_starting_together_and_writing_to_a_shared_volume() {
    let docs = docs();
    let job = of_kind(&docs, "Job");
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_i64().expect("completions");
    assert_eq!(
        spec["parallelism"].as_i64(),
        Some(n),
        "parallelism = completions"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    let c = &pod["containers"][0];
    assert_eq!(
        env(c, "WORKERS").parse::<i64>().ok(),
        Some(n),
        "WORKERS = completions"
    );
    assert_eq!(
        env(c, "START_AT"),
        "@START_AT@",
        "filled in at creation (sed)"
    );
    let script = c["args"][0].as_str().expect("shell script");
    for needle in [
        "$((JOB_COMPLETION_INDEX + 1))",
        "--worker \"$I/$WORKERS\"",
        "--start-at \"$START_AT\"",
        "--hlog \"/results/",
        "--json \"/results/",
    ] {
        assert!(
            script.contains(needle),
            "the script lacks {needle}:\n{script}"
        );
    }
    // The outputs' folder is a volume backed by the claim of the same file,
    // writable by every pod at once.
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["mountPath"].as_str(), Some("/results"));
    let volume = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let claim = of_kind(&docs, "PersistentVolumeClaim");
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"].as_str(),
        claim["metadata"]["name"].as_str()
    );
    let modes = claim["spec"]["accessModes"].as_vec().expect("accessModes");
    assert!(modes.iter().any(|m| m.as_str() == Some("ReadWriteMany")));
}

#[test]
fn the_jobs_shell_gives_worker_1_of_n_to_completion_index_0() {
    let docs = docs();
    let job = of_kind(&docs, "Job");
    let n = job["spec"]["completions"].as_i64().expect("completions");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let dir = tempfile::tempdir().expect("tempdir");
    // A stand-in bench-client that prints its arguments, and the volume
    // moved into the temporary folder.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let fake = bin.join("bench-client");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\"\n").expect("write");
    uringtls_tests::set_mode(&fake, 0o755);
    let results = dir.path().join("results");
    let script = c["args"][0]
        .as_str()
        .expect("script")
        .replace("/results", results.to_str().expect("utf8"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for index in 0..n {
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .env("PATH", &path)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("WORKERS", env(c, "WORKERS"))
            .env("START_AT", "1767225600")
            .env("TARGET", env(c, "TARGET"))
            .env("RUN", env(c, "RUN"))
            .output()
            .expect("sh");
        let args = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let worker = format!("--worker {}/{n} ", index + 1);
        assert!(args.contains(&worker), "index {index}: {args}");
        assert!(args.contains("--start-at 1767225600 "), "{args}");
        assert!(
            args.contains(&format!("worker-{}.hlog", index + 1)),
            "{args}"
        );
    }
    assert!(
        results.join(env(c, "RUN")).is_dir(),
        "the script makes the run's folder"
    );
}

#[test]
fn the_job_runs_the_containerfiles_unprivileged_user_from_a_multi_stage_build() {
    let cf = read("docs/deploy/bench-client.Containerfile");
    let stages = cf.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage build: {stages} FROM lines");
    let user = cf
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: i64 = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .expect("numeric uid");
    assert_ne!(uid, 0, "not root");
    let docs = docs();
    let sc = &of_kind(&docs, "Job")["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(sc["runAsUser"].as_i64(), Some(uid));
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
}
