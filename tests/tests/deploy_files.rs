//! The files under `docs/deploy/`: the container seccomp profile (Docker's
//! default plus the three io_uring calls, and enough for the engine's own
//! allow-list) and the Kubernetes manifests (they parse, and meet the
//! "restricted" Pod Security Standard).

use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use uringtls_tests::seccomp_profile;

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/deploy")
        .join(name)
}

fn profile() -> Value {
    let text = std::fs::read_to_string(deploy("seccomp-io_uring.json")).expect("profile");
    serde_json::from_str(&text).expect("the profile is valid JSON")
}

fn names(entry: &Value) -> Vec<&str> {
    entry["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().expect("a name"))
        .collect()
}

/// Docker's name for this machine's architecture.
const DOCKER_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "amd64"
};

/// Calls the profile allows on this architecture whatever the arguments
/// or capabilities.
fn unconditional(p: &Value) -> BTreeSet<&str> {
    let this_arch = |e: &Value| match e.get("includes") {
        None => true,
        Some(inc) => {
            inc.as_object().is_some_and(|o| o.len() == 1)
                && inc["arches"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == DOCKER_ARCH))
        }
    };
    p["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .filter(|e| e["action"] == "SCMP_ACT_ALLOW")
        .filter(|e| e.get("args").is_none() && e.get("excludes").is_none() && this_arch(e))
        .flat_map(names)
        .collect()
}

const IO_URING: [&str; 3] = ["io_uring_enter", "io_uring_register", "io_uring_setup"];

#[test]
fn the_seccomp_profile_is_a_default_deny_profile_plus_exactly_the_three_io_uring_calls() {
    let p = profile();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(p["defaultErrnoRet"], 1, "EPERM, as Docker's default");
    let arches: Vec<&str> = p["archMap"]
        .as_array()
        .expect("archMap")
        .iter()
        .map(|a| a["architecture"].as_str().expect("arch"))
        .collect();
    assert!(arches.contains(&"SCMP_ARCH_X86_64") && arches.contains(&"SCMP_ARCH_AARCH64"));
    let entries = p["syscalls"].as_array().expect("syscalls");
    let with_uring: Vec<&Value> = entries
        .iter()
        .filter(|e| names(e).iter().any(|n| n.starts_with("io_uring")))
        .collect();
    assert_eq!(with_uring.len(), 1, "one entry names io_uring calls");
    let mut got = names(with_uring[0]);
    got.sort_unstable();
    assert_eq!(got, IO_URING, "and only those three");
    assert_eq!(with_uring[0]["action"], "SCMP_ACT_ALLOW");
    let allowed = unconditional(&p);
    // Docker's default keeps these behind capabilities, a kernel version or
    // argument checks, or out entirely.
    for gated in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "ptrace",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "add_key",
        "keyctl",
        "request_key",
        "userfaultfd",
        "open_by_handle_at",
        "reboot",
        "chroot",
        "clone",
        "clone3",
        "socket",
        "personality",
        "acct",
        "swapon",
        "pivot_root",
        "iopl",
    ] {
        assert!(
            !allowed.contains(gated),
            "{gated} must not be allowed unconditionally"
        );
    }
    for basic in [
        "read",
        "write",
        "futex",
        "mmap",
        "epoll_pwait",
        "accept4",
        "execve",
    ] {
        assert!(
            allowed.contains(basic),
            "{basic}: not Docker's default any more?"
        );
    }
}

#[test]
fn the_engines_own_allow_list_fits_inside_the_container_profile() {
    let p = profile();
    let allowed = unconditional(&p);
    let entries = p["syscalls"].as_array().expect("syscalls");
    // `socket` (all but AF_VSOCK) and `clone` (no namespace flags) are
    // allowed with argument checks that the engine's own calls pass.
    let conditional = |name: &str| {
        entries.iter().any(|e| {
            e["action"] == "SCMP_ACT_ALLOW"
                && names(e).contains(&name)
                && e.get("args").is_some()
                && e.get("includes").is_none()
        })
    };
    for name in uringtls::__private::seccomp_allowed_names() {
        let ok = allowed.contains(name)
            || (matches!(name, "socket" | "clone") && conditional(name))
            // ENOSYS from Docker's profile too: glibc then uses clone.
            || name == "clone3";
        assert!(
            ok,
            "the engine makes `{name}`, which the container profile refuses"
        );
    }
    // The engine needs io_uring_setup only before its own filter.
    assert!(allowed.is_superset(&IO_URING.into_iter().collect()));
}

/// The documents of a YAML file as JSON values (PyYAML converts: the
/// tests crate has no YAML parser).
fn yaml_documents(name: &str) -> Option<Vec<Value>> {
    if !uringtls_tests::require_tool("python3") {
        return None;
    }
    let script = "import sys, json, yaml\n\
                  print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(deploy(name))
        .output()
        .expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'yaml'") {
        assert!(!uringtls_tests::in_ci(), "CI needs PyYAML (python3-yaml)");
        eprintln!("skipping: python3 has no yaml module");
        return None;
    }
    assert!(out.status.success(), "{name} does not parse as YAML: {err}");
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn check_restricted(name: &str, seccomp: &str) {
    let Some(docs) = yaml_documents(name) else {
        return;
    };
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["Secret", "Deployment", "Service"], "{name}");
    let pod = &docs[1]["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{name}");
    assert!(psc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{name}");
    assert_eq!(psc["seccompProfile"]["type"], seccomp, "{name}");
    if seccomp == "Localhost" {
        assert_eq!(
            psc["seccompProfile"]["localhostProfile"], "profiles/uringtls-io_uring.json",
            "{name}"
        );
    }
    for c in pod["containers"].as_array().expect("containers") {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert_eq!(
            sc["capabilities"]["add"],
            serde_json::json!(["NET_BIND_SERVICE"]),
            "{name}"
        );
        assert!(sc.get("privileged").is_none_or(|p| p == false), "{name}");
        // The engine's flags in the manifest are ones it knows.
        for a in c["args"].as_array().expect("args") {
            let flag = a.as_str().expect("arg").split('=').next().expect("flag");
            let known = [
                "--listen",
                "--cert",
                "--key",
                "--metrics-listen",
                "--insecure-key-permissions",
            ];
            assert!(known.contains(&flag), "{name}: unexpected flag {flag}");
        }
    }
    // Restricted allows only these volume types (hostPath is refused).
    for v in pod["volumes"].as_array().expect("volumes") {
        let kinds: Vec<&String> = v.as_object().expect("volume").keys().collect();
        assert!(
            kinds
                .iter()
                .all(|k| ["name", "secret", "configMap", "emptyDir", "projected"]
                    .contains(&k.as_str())),
            "{name}: {kinds:?}"
        );
    }
    let secret = pod["volumes"][0]["secret"]["secretName"]
        .as_str()
        .expect("secret");
    assert_eq!(
        docs[0]["metadata"]["name"], secret,
        "{name}: the pod mounts the Secret"
    );
    assert_eq!(docs[0]["type"], "kubernetes.io/tls");
}

#[test]
fn the_kubernetes_manifests_parse_and_meet_the_restricted_pod_security_standard() {
    check_restricted("uringtls-deployment.yaml", "Localhost");
    check_restricted("uringtls-deployment-runtime-default.yaml", "RuntimeDefault");
}

/// Installs `programs` in the child between fork and exec, as a container
/// runtime does.
fn under(cmd: &mut std::process::Command, programs: Vec<seccompiler::BpfProgram>) {
    // SAFETY: the closure only makes the prctl and seccomp calls
    // (seccompiler::apply_filter) on programs compiled before the fork, and
    // allocates nothing unless a call fails.
    unsafe {
        cmd.pre_exec(move || {
            for p in &programs {
                seccompiler::apply_filter(p)
                    .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
            }
            Ok(())
        });
    }
}

#[test]
fn the_engine_serves_under_the_container_profile_and_without_io_uring_names_the_cause() {
    let text = std::fs::read_to_string(deploy("seccomp-io_uring.json")).expect("profile");
    let certs = uringtls_tests::test_certs();
    let (cert, key) = (
        certs.cert.to_str().expect("utf8"),
        certs.key.to_str().expect("utf8"),
    );
    let args = ["--cert", cert, "--key", key, "--shards", "2"];
    let programs = seccomp_profile::compile(&text, &[]).expect("the profile loads");
    // `auto` (named, so that the harness's backend override leaves it):
    // io_uring is allowed by this profile, so the rings are restricted.
    let auto = [&args[..], &["--io-backend", "auto"]].concat();
    let e = uringtls_tests::start_engine_with(&auto, |cmd| under(cmd, programs));
    let cfg = uringtls_tests::any_cert_client_config();
    let mut c = uringtls_tests::connect_to(e.addr(), &cfg, "localhost").expect("connect");
    std::io::Write::write_all(&mut c, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let (status, _, _) = uringtls_tests::read_response(&mut c).expect("response");
    assert!(status.contains("200"), "{status}");
    // The runtime's filters and the engine's own, stacked.
    let st = std::fs::read_to_string(format!("/proc/{}/status", e.pid())).expect("status");
    let filters = st
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:\t"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .expect("Seccomp_filters");
    assert!(filters >= 4, "{st}");
    e.wait_for_stderr("sandbox: ring restrictions on, seccomp on, landlock on");
    assert!(!e.stderr().contains("seccomp denied"), "{}", e.stderr());

    // Docker's current default: the same without the three io_uring calls.
    // With `--io-backend auto` (the default) the engine serves on epoll...
    let programs = seccomp_profile::compile(&text, &IO_URING).expect("the profile loads");
    let e = uringtls_tests::start_engine_with(&auto, |cmd| under(cmd, programs));
    let mut c = uringtls_tests::connect_to(e.addr(), &cfg, "localhost").expect("connect");
    std::io::Write::write_all(&mut c, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let (status, _, _) = uringtls_tests::read_response(&mut c).expect("response");
    assert!(status.contains("200"), "{status}");
    e.wait_for_stderr("io_uring is unavailable: serving on the epoll backend");
    e.wait_for_stderr("sandbox: ring restrictions off, seccomp on, landlock on");
    assert!(!e.stderr().contains("seccomp denied"), "{}", e.stderr());
    drop(e);
    // ...and with `--io-backend uring` it refuses to start, naming the cause.
    let programs = seccomp_profile::compile(&text, &IO_URING).expect("the profile loads");
    let mut cmd = std::process::Command::new(uringtls_tests::engine_bin());
    cmd.args(["--listen", "127.0.0.1:0", "--io-backend", "uring"])
        .args(args);
    under(&mut cmd, programs);
    let out = cmd.output().expect("run the engine");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("blocked by a seccomp policy"), "{err}");
}
