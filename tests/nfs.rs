//! `raypack env --nfs` (issue 18), with a local directory standing in for the NFS mount: a
//! real Ray 2.60 head runs a job from exactly the printed runtime_env, importing a dependency
//! from the installed environment and a py_module from the snapshot, with workers in the
//! snapshot like a working_dir and nothing downloaded or pip-installed; an edit makes a new
//! snapshot sharing the unchanged files' inodes; concurrent installs of one lock share one
//! environment; a killed install leaves nothing under a final name; emitted manifests mount
//! the volume in every pod and pass the KubeRay CRD validator.
//!
//! Needs the harness's Ray head (`RAYPACK_TEST_RAY`) and PyPI for the wheels.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// examples/hello with a lock of packages the Ray venv lacks (one a PEP 420 namespace).
fn project() -> (tempfile::TempDir, PathBuf) {
    let (t, dir) = hello_copy();
    use_pypi_pylock(
        &dir,
        &[
            ("tabulate", "0.9.0"),
            ("jaraco.functools", "4.1.0"),
            ("more-itertools", "10.5.0"),
        ],
    );
    (t, dir)
}

/// A directory standing in for the mount, traversable by everyone (as a mount would be).
fn mount(t: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let m = t.join("mnt/shared");
    std::fs::create_dir_all(&m).unwrap();
    for p in [t, &t.join("mnt"), &m] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    m
}

fn nfs_env(dir: &Path, mount: &Path, cache: &Path) -> Command {
    let mut c = raypack();
    c.env("RAYPACK_CACHE_DIR", cache)
        .arg("-C")
        .arg(dir)
        .args(["--output", "json", "env", "--nfs"])
        .arg(mount);
    c
}

#[test]
fn ray_runs_a_job_from_the_snapshot_and_environment_without_downloads() {
    let ray = service("RAYPACK_TEST_RAY");
    let (t, dir) = project();
    let m = mount(t.path());
    std::fs::write(dir.join("notes.txt"), "read from the snapshot\n").unwrap();
    std::fs::write(
        dir.join("main.py"),
        r#"import os, sys
import ray

@ray.remote
def where():
    import tabulate, jaraco.functools, more_itertools, common
    return (tabulate.__file__, common.__file__, os.getcwd(), open("notes.txt").read().strip(),
            [p for p in sys.path if "runtime_resources" in p])

ray.init()
tab, com, cwd, notes, fetched = ray.get(where.remote())
print("driver cwd", os.getcwd())
print("worker tabulate", tab)
print("worker common", com)
print("worker cwd", cwd)
print("worker read", notes)
print("fetched", fetched)
"#,
    )
    .unwrap();
    let cache = t.path().join("cache");
    let out = run(nfs_env(&dir, &m, &cache).args(["--submit", &ray, "--timeout", "300"]));
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot = v["nfs"]["code"]["dir"].as_str().unwrap().to_string();
    let envdir = v["nfs"]["env"]["dir"].as_str().unwrap().to_string();
    assert!(snapshot.starts_with(&format!("{}/code/hello/", m.display())));
    assert!(envdir.starts_with(&format!("{}/envs/", m.display())));
    // What was submitted has no zips and no pip: only env_vars and the setup hook.
    let re = &v["nfs"]["runtime_env"];
    let mut keys: Vec<&str> = re.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["env_vars", "worker_process_setup_hook"], "{re}");
    assert_eq!(re["env_vars"]["GREETING_MODE"], "dev");
    // The job: the dependency from the environment, the py_module and the working dir from
    // the snapshot, workers in the snapshot, nothing fetched into Ray's runtime resources.
    assert!(
        err.contains(&format!("driver cwd {snapshot}")),
        "driver not in the snapshot:\n{err}"
    );
    assert!(
        err.contains(&format!("worker tabulate {envdir}/site-packages/tabulate")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "worker common {snapshot}/.raypack/py_modules/common/"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("worker cwd {snapshot}")), "{err}");
    assert!(err.contains("worker read read from the snapshot"), "{err}");
    assert!(err.contains("fetched []"), "{err}");

    // Published trees are complete and read-only; nothing temporary is left.
    let leftovers: Vec<_> = walk(&m)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let main = Path::new(&snapshot).join("main.py");
    assert_eq!(std::fs::metadata(&main).unwrap().mode() & 0o777, 0o444);

    // Unchanged: one stat each, nothing written again.
    let again = run(&mut nfs_env(&dir, &m, &cache));
    assert!(again.status.success(), "{}", stderr(&again));
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["nfs"]["code"]["created"], false);
    assert_eq!(w["nfs"]["env"]["created"], false);
    assert_eq!(w["nfs"]["runtime_env"], v["nfs"]["runtime_env"]);
}

#[test]
fn an_edit_makes_a_new_snapshot_that_shares_unchanged_files() {
    let (t, dir) = hello_copy();
    let m = mount(t.path());
    let cache = t.path().join("cache");
    // No dependencies: only the code.
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("requirements_file = \"requirements.txt\"\n", "");
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let first = run(&mut nfs_env(&dir, &m, &cache));
    assert!(first.status.success(), "{}", stderr(&first));
    let a: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(a["nfs"]["env"].is_null(), "{a}");
    std::fs::write(dir.join("helpers.py"), "CHANGED = True\n").unwrap();
    let second = run(&mut nfs_env(&dir, &m, &cache));
    assert!(second.status.success(), "{}", stderr(&second));
    let b: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    let (old, new) = (
        PathBuf::from(a["nfs"]["code"]["dir"].as_str().unwrap()),
        PathBuf::from(b["nfs"]["code"]["dir"].as_str().unwrap()),
    );
    assert_ne!(old, new);
    let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(old.join("main.py")), ino(new.join("main.py")));
    assert_eq!(
        ino(old.join(".raypack/py_modules/common/__init__.py")),
        ino(new.join(".raypack/py_modules/common/__init__.py"))
    );
    assert_ne!(ino(old.join("helpers.py")), ino(new.join("helpers.py")));
    assert_eq!(
        std::fs::read_to_string(new.join("helpers.py")).unwrap(),
        "CHANGED = True\n"
    );
    assert!(std::fs::read_to_string(old.join("helpers.py")).unwrap() != "CHANGED = True\n");
    let files = b["nfs"]["code"]["files"].as_u64().unwrap();
    assert_eq!(
        b["nfs"]["code"]["linked"].as_u64().unwrap(),
        files - 1,
        "{b}"
    );

    // gc: the old snapshot is unused. Younger than the minimum age: kept; a dry run lists
    // it; --delete removes it and nothing else.
    let gc = |args: &[&str]| {
        let out = run(raypack()
            .args(["--output", "json", "gc", "--nfs"])
            .arg(&m)
            .args(args));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let r = gc(&[]);
    assert_eq!(r["recent"][0], serde_json::json!(old), "{r}");
    assert_eq!(r["kept"][0], serde_json::json!(new), "{r}");
    let r = gc(&["--min-age-hours", "0"]);
    assert_eq!(r["removable"], serde_json::json!([old]), "{r}");
    assert!(old.is_dir(), "a dry run removed it");
    let r = gc(&["--min-age-hours", "0", "--delete"]);
    assert_eq!(r["removed"], true);
    assert!(!old.exists() && new.join("main.py").is_file());
}

#[test]
fn concurrent_installs_of_one_lock_share_one_environment() {
    let (t, dir) = project();
    let m = mount(t.path());
    let cache = t.path().join("cache");
    // Warm the wheel cache first so that both runs race on the install itself.
    let mut c = raypack();
    c.env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["env", "--deps", "bundle", "--dry-run"]);
    let _ = run(&mut c);
    let children: Vec<_> = (0..2)
        .map(|_| {
            nfs_env(&dir, &m, &cache)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut created = 0;
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        created += usize::from(v["nfs"]["env"]["created"] == true);
    }
    assert!(created <= 1, "both claim to have published the environment");
    let envs: Vec<_> = std::fs::read_dir(m.join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert!(!envs[0].starts_with(".tmp-"), "{envs:?}");
    let sp = m.join("envs").join(&envs[0]).join("site-packages");
    assert!(sp.join("tabulate-0.9.0.dist-info/RECORD").is_file());
}

#[test]
fn a_killed_install_leaves_nothing_under_a_final_name() {
    let (t, dir) = hello_copy();
    let m = mount(t.path());
    let cache = t.path().join("cache");
    // Large enough that the install takes a while: numpy and pandas.
    use_pypi_pylock(
        &dir,
        &[
            ("numpy", "2.2.6"),
            ("pandas", "2.2.3"),
            ("python-dateutil", "2.9.0.post0"),
            ("pytz", "2025.2"),
            ("tzdata", "2025.2"),
            ("six", "1.17.0"),
        ],
    );
    let mut child = nfs_env(&dir, &m, &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let envs = m.join("envs");
    let started = std::time::Instant::now();
    let mut caught = false;
    while started.elapsed() < std::time::Duration::from_secs(600) {
        let tmp = std::fs::read_dir(&envs)
            .ok()
            .into_iter()
            .flatten()
            .any(|e| {
                e.map(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    .unwrap_or(false)
            });
        if tmp {
            // Let it write some files, then kill it.
            std::thread::sleep(std::time::Duration::from_millis(50));
            child.kill().unwrap();
            caught = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.wait();
    assert!(caught, "the install finished before it could be killed");
    let finals: Vec<_> = std::fs::read_dir(&envs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    assert!(finals.is_empty(), "a killed install published {finals:?}");
    let out = run(&mut nfs_env(&dir, &m, &cache));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sp = PathBuf::from(v["nfs"]["env"]["dir"].as_str().unwrap()).join("site-packages");
    for d in ["numpy-2.2.6.dist-info", "pandas-2.2.3.dist-info"] {
        assert!(sp.join(d).join("RECORD").is_file(), "{d}");
    }
}

#[test]
fn emitted_manifests_mount_the_volume_in_every_pod_and_validate() {
    let (t, dir) = hello_copy();
    let m = mount(t.path());
    let cache = t.path().join("cache");
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("requirements_file = \"requirements.txt\"\n", "")
        + &format!(
            "\n[nfs]\npath = \"{}\"\nserver = \"nfs.example.internal\"\nexport = \"/exports/raypack\"\n",
            m.display()
        );
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    for emit in ["rayjob", "raycluster"] {
        let out = run(raypack()
            .env("RAYPACK_CACHE_DIR", &cache)
            .arg("-C")
            .arg(&dir)
            .args(["env", "--nfs", "--emit", emit]));
        assert!(out.status.success(), "{}", stderr(&out));
        let yaml = stdout(&out);
        let (ok, why) = validate_kuberay(&yaml);
        assert!(ok, "{emit}: {why}\n{yaml}");
        let doc: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let spec = if emit == "rayjob" {
            assert!(
                doc["spec"]["entrypoint"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("cd {}/code/hello/", m.display())),
                "{doc}"
            );
            let sub = &doc["spec"]["submitterPodTemplate"]["spec"];
            assert_eq!(sub["volumes"][0]["nfs"]["server"], "nfs.example.internal");
            &doc["spec"]["rayClusterSpec"]
        } else {
            &doc["spec"]
        };
        let mut pods = vec![&spec["headGroupSpec"]["template"]["spec"]];
        for w in spec["workerGroupSpecs"].as_array().unwrap() {
            pods.push(&w["template"]["spec"]);
        }
        for p in pods {
            assert_eq!(p["volumes"][0]["nfs"]["path"], "/exports/raypack", "{p}");
            assert_eq!(
                p["containers"][0]["volumeMounts"][0]["mountPath"],
                serde_json::json!(m.display().to_string()),
                "{p}"
            );
        }
    }
    // Without the volume in [nfs], --emit says what is missing.
    let recipe = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    let cut = recipe.find("server =").unwrap();
    std::fs::write(dir.join("raypack.toml"), &recipe[..cut]).unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["env", "--nfs", "--emit", "rayjob"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the volume in [nfs]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_mount_is_a_clear_error() {
    let (t, dir) = hello_copy();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["env", "--nfs"])
        .arg(t.path().join("not-mounted")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a directory; mount the shared volume there first"),
        "{}",
        stderr(&out)
    );
    let out = run(raypack().arg("-C").arg(&dir).args(["env", "--nfs"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--nfs needs a path"),
        "{}",
        stderr(&out)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn a_relative_mount_path_is_made_absolute_and_the_recipes_pythonpath_comes_last() {
    let (t, dir) = hello_copy();
    let m = mount(t.path());
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("requirements_file = \"requirements.txt\"\n", "")
        .replace(
            "env_vars = { GREETING_MODE = \"dev\" }",
            "env_vars = { GREETING_MODE = \"dev\", PYTHONPATH = \"/opt/extra\" }",
        );
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let out = run(raypack()
        .current_dir(t.path())
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "env", "--nfs", "mnt/shared"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pp = v["nfs"]["runtime_env"]["env_vars"]["PYTHONPATH"]
        .as_str()
        .unwrap();
    assert!(
        pp.starts_with(&format!("{}/code/hello/", m.display())),
        "{pp}"
    );
    assert!(pp.ends_with(":/opt/extra"), "{pp}");
}
