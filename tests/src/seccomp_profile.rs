//! Loads a Docker/OCI seccomp profile (`docs/deploy/seccomp-io_uring.json`)
//! into BPF programs, to run the engine under it as a container runtime
//! would: install the programs in the child between fork and exec
//! (`CommandExt::pre_exec` with [`seccompiler::apply_filter`], which only
//! makes the `prctl` and `seccomp` calls).
//!
//! What is translated: the default action (`SCMP_ACT_ERRNO` with
//! `defaultErrnoRet`), every `SCMP_ACT_ALLOW` entry that applies to this
//! architecture without extra capabilities (entries that `includes` caps
//! are left out, as for a container with Docker's default capabilities,
//! none of which they name; `minKernel` is taken as met), with its argument
//! checks (`SCMP_CMP_EQ`, `_NE`, `_MASKED_EQ`), and `SCMP_ACT_ERRNO`
//! entries (as a second program). Names this architecture does not have
//! are skipped, as libseccomp does.

use seccompiler::BpfProgram;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Docker's name for this machine's architecture.
pub const DOCKER_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "amd64"
};

fn applies_here(e: &Value) -> bool {
    let inc = match e.get("includes") {
        None => return true,
        Some(i) => i,
    };
    if inc.get("caps").is_some() {
        return false;
    }
    match inc.get("arches") {
        Some(a) => a
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == DOCKER_ARCH)),
        None => true,
    }
}

fn condition(a: &Value) -> Result<Value, String> {
    let (index, value) = (&a["index"], a["value"].as_u64().unwrap_or(0));
    let (op, val) = match a["op"].as_str() {
        Some("SCMP_CMP_EQ") => (json!("eq"), value),
        Some("SCMP_CMP_NE") => (json!("ne"), value),
        Some("SCMP_CMP_MASKED_EQ") => (
            json!({ "masked_eq": value }),
            a["valueTwo"].as_u64().unwrap_or(0),
        ),
        other => return Err(format!("unsupported op {other:?}")),
    };
    Ok(json!({ "index": index, "type": "qword", "op": op, "val": val }))
}

/// Whether seccompiler knows `name` on this architecture.
fn known(name: &str, arch: seccompiler::TargetArch) -> bool {
    let probe = json!({ "p": {
        "mismatch_action": { "errno": 1 }, "match_action": "allow",
        "filter": [{ "syscall": name }] } });
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_ok()
}

/// The programs for `profile` (JSON text), leaving out the calls named in
/// `without` (e.g. the three io_uring calls, to get Docker's current
/// default). Install them in order (the allow-list allows `seccomp`).
pub fn compile(profile: &str, without: &[&str]) -> Result<Vec<BpfProgram>, String> {
    let p: Value = serde_json::from_str(profile).map_err(|e| e.to_string())?;
    let arch: seccompiler::TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("{e:?}"))?;
    let default_errno = p["defaultErrnoRet"].as_u64().unwrap_or(1);
    if p["defaultAction"] != "SCMP_ACT_ERRNO" {
        return Err("only SCMP_ACT_ERRNO default actions are supported".into());
    }
    let mut allow = Vec::new();
    let mut errno: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for e in p["syscalls"].as_array().ok_or("no syscalls")? {
        if !applies_here(e) {
            continue;
        }
        let args = match e.get("args").and_then(Value::as_array) {
            Some(a) => Some(a.iter().map(condition).collect::<Result<Vec<_>, _>>()?),
            None => None,
        };
        for name in e["names"].as_array().ok_or("no names")? {
            let name = name.as_str().ok_or("a name is not a string")?;
            if without.contains(&name) || !known(name, arch) {
                continue;
            }
            let mut rule = json!({ "syscall": name });
            if let Some(a) = &args {
                rule["args"] = json!(a);
            }
            match e["action"].as_str() {
                Some("SCMP_ACT_ALLOW") => allow.push(rule),
                Some("SCMP_ACT_ERRNO") => errno
                    .entry(e["errnoRet"].as_u64().unwrap_or(default_errno))
                    .or_default()
                    .push(rule),
                other => return Err(format!("unsupported action {other:?}")),
            }
        }
    }
    let mut filters = serde_json::Map::new();
    for (i, (code, rules)) in errno.into_iter().enumerate() {
        filters.insert(
            format!("b_errno{i}"),
            json!({ "mismatch_action": "allow", "match_action": { "errno": code }, "filter": rules }),
        );
    }
    filters.insert(
        "a_allow".into(),
        json!({ "mismatch_action": { "errno": default_errno }, "match_action": "allow", "filter": allow }),
    );
    let mut map =
        seccompiler::compile_from_json(Value::Object(filters).to_string().as_bytes(), arch)
            .map_err(|e| e.to_string())?;
    // The allow-list first, then the errno programs: when two filters
    // answer with the same action (ERRNO), the kernel takes the data of the
    // one installed last (so `clone3` gets ENOSYS, not the default EPERM).
    let mut names: Vec<String> = map.keys().cloned().collect();
    names.sort();
    Ok(names.iter().filter_map(|n| map.remove(n)).collect())
}
