//! Shared helpers for the integration tests: the raypack binary, project copies, and the
//! addresses of the servers `scripts/test` starts on 127.0.0.1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The address of a test service exported by `scripts/test` / `scripts/services start`.
/// A missing service is a failure, never a skip.
pub fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs the servers that scripts/test starts \
             (run `scripts/test`, or `eval \"$(scripts/services start)\"` first)"
        ),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn raypack() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_raypack"));
    c.env_remove("RAYPACK_LOG");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("raypack runs");
    eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copies a directory tree (files and dirs only), skipping `.raypack/`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == ".raypack" || name == "__pycache__" {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// A fresh copy of examples/hello in a temp dir.
pub fn hello_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("hello");
    copy_tree(&repo().join("examples/hello"), &p);
    (t, p)
}

/// A short unique prefix for objects in shared buckets.
pub fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{n}", std::process::id())
}

/// Runs `validate.py` (vendored KubeRay v1.7.0 CRDs) on a YAML text; returns its output.
pub fn validate_kuberay(yaml: &str) -> (bool, String) {
    use std::io::Write;
    let py = std::env::var("RAYPACK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(py)
        .arg(repo().join("tests/kuberay-crds/validate.py"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs validate.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The best wheel of `name==version` for CPython 3.11 / manylinux_2_36 x86_64 on PyPI's
/// simple API (PEP 691 JSON): (filename, url, sha256).
pub fn pypi_wheel_info(name: &str, version: &str) -> (String, String, String) {
    use raypack::python::tags::Target;
    use raypack::python::wheel::{WheelName, best_wheel, normalize};
    let url = format!("https://pypi.org/simple/{}/", normalize(name));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v: serde_json::Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .header("Accept", "application/vnd.pypi.simple.v1+json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.json().await.unwrap()
    });
    let prio = Target::new("linux/amd64", "3.11", "2_36")
        .unwrap()
        .priorities();
    let files: Vec<(&serde_json::Value, WheelName)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| WheelName::parse(f["filename"].as_str()?).map(|w| (f, w)))
        .filter(|(_, w)| w.version == version)
        .collect();
    let names: Vec<WheelName> = files.iter().map(|(_, w)| w.clone()).collect();
    let best = best_wheel(&names, &prio).unwrap_or_else(|| panic!("{name} {version}: no wheel"));
    let (f, _) = files.iter().find(|(_, w)| w == best).unwrap();
    (
        f["filename"].as_str().unwrap().to_string(),
        f["url"].as_str().unwrap().to_string(),
        f["hashes"]["sha256"].as_str().unwrap().to_string(),
    )
}
