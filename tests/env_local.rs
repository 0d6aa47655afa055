//! `raypack env` against file:// stores: layout, determinism, incremental re-runs, bad input.

mod common;
use common::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `cmd -C dir [--output json] env --store file://store`.
fn env_into(mut cmd: Command, dir: &Path, store: &Path, json: bool) -> Output {
    cmd.arg("-C").arg(dir);
    if json {
        cmd.args(["--output", "json"]);
    }
    run(cmd
        .args(["env", "--store"])
        .arg(format!("file://{}", store.display())))
}

fn env_json(dir: &Path, store: &Path) -> serde_json::Value {
    let out = env_into(raypack(), dir, store, true);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn zip_names(p: &Path) -> Vec<(String, u32)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(p).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let f = z.by_index(i).unwrap();
            (
                f.name().unwrap().to_string(),
                f.unix_mode().unwrap() & 0o777,
            )
        })
        .collect()
}

fn uri_path(uri: &str) -> std::path::PathBuf {
    url::Url::parse(uri).unwrap().to_file_path().unwrap()
}

#[test]
fn zips_have_ray_layouts_and_modes() {
    let (_t, dir) = hello_copy();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("main.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = tempfile::tempdir().unwrap();
    let v = env_json(&dir, store.path());
    let wd = v["runtime_env"]["working_dir"].as_str().unwrap();
    assert!(wd.contains("/hello-") && wd.ends_with(".zip"));
    let names = zip_names(&uri_path(wd));
    assert_eq!(
        names,
        vec![
            ("pkg/helpers.py".to_string(), 0o644),
            ("pkg/main.py".to_string(), 0o755),
            ("pkg/raypack.toml".to_string(), 0o644),
            ("pkg/requirements.txt".to_string(), 0o644)
        ],
        "working dir wraps everything in one dir and does not repeat the py_module"
    );
    let m = v["runtime_env"]["py_modules"][0].as_str().unwrap();
    assert!(m.contains("/hello-common-"));
    let names: Vec<String> = zip_names(&uri_path(m)).into_iter().map(|n| n.0).collect();
    assert_eq!(
        names,
        vec!["pkg/common/__init__.py", "pkg/common/greeting.py"]
    );
    // Content survives.
    let mut z = zip::ZipArchive::new(std::fs::File::open(uri_path(m)).unwrap()).unwrap();
    let mut s = String::new();
    z.by_name("pkg/common/greeting.py")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(
        s,
        std::fs::read_to_string(dir.join("libs/common/greeting.py")).unwrap()
    );
    assert_eq!(
        v["runtime_env"]["pip"],
        serde_json::json!(["requests>=2.31"])
    );
    assert_eq!(v["runtime_env"]["env_vars"]["GREETING_MODE"], "dev");
}

/// Issue 14 (a monorepo): a py_module may be a single `.py` file or a glob over a source root
/// (`src/*`); each ships as its own zip in Ray's layout, and the working dir does not repeat
/// a package (a single file it keeps, so a script can still be run by its path). Two entries with one import name are refused, naming both.
#[test]
fn py_modules_take_single_files_and_source_root_globs() {
    let (_t, dir) = hello_copy();
    for (f, text) in [
        ("tools/helper_mod.py", "X = 1\n"),
        ("lib/src/alpha/__init__.py", ""),
        ("lib/src/beta.py", "B = 2\n"),
        ("lib/src/README.md", "docs\n"),
        ("lib/src/beta_pkg.egg-info/PKG-INFO", ""),
        ("other/beta.py", ""),
    ] {
        std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
        std::fs::write(dir.join(f), text).unwrap();
    }
    let recipe = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    let line = "py_modules = [\"libs/common\"]";
    assert!(recipe.contains(line));
    std::fs::write(
        dir.join("raypack.toml"),
        recipe.replace(
            line,
            "py_modules = [\"libs/common\", \"tools/helper_mod.py\", \"lib/src/*\"]",
        ),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let v = env_json(&dir, store.path());
    let modules: Vec<Vec<String>> = v["runtime_env"]["py_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            zip_names(&uri_path(u.as_str().unwrap()))
                .into_iter()
                .map(|n| n.0)
                .collect()
        })
        .collect();
    assert_eq!(
        modules,
        vec![
            vec!["pkg/common/__init__.py", "pkg/common/greeting.py"],
            vec!["pkg/helper_mod.py"],
            vec!["pkg/alpha/__init__.py"],
            vec!["pkg/beta.py"],
        ]
    );
    let roles: Vec<&str> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "working_dir",
            "py_module:common",
            "py_module:helper_mod",
            "py_module:alpha",
            "py_module:beta"
        ]
    );
    let wd: Vec<String> = zip_names(&uri_path(v["runtime_env"]["working_dir"].as_str().unwrap()))
        .into_iter()
        .map(|n| n.0)
        .collect();
    // A package is not repeated; a single file is (`python lib/src/beta.py` must still run).
    assert!(
        !wd.contains(&"pkg/lib/src/alpha/__init__.py".to_string()),
        "{wd:?}"
    );
    for kept in [
        "pkg/tools/helper_mod.py",
        "pkg/lib/src/beta.py",
        "pkg/lib/src/README.md",
    ] {
        assert!(wd.contains(&kept.to_string()), "{kept} missing from {wd:?}");
    }

    std::fs::write(
        dir.join("raypack.toml"),
        recipe.replace(
            line,
            "py_modules = [\"lib/src/*\", \"other/beta.py\", \"lib/nope/*\"]",
        ),
    )
    .unwrap();
    let out = env_into(raypack(), &dir, store.path(), false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("two py_modules are named `beta`"), "{err}");
    assert!(
        err.contains("lib/src/beta.py") && err.contains("other/beta.py"),
        "{err}"
    );
    assert!(
        err.contains("py_module `lib/nope/*` matches nothing importable"),
        "{err}"
    );
}

#[test]
fn one_edit_changes_one_uri_and_rerun_uploads_nothing() {
    let (_t, dir) = hello_copy();
    let store = tempfile::tempdir().unwrap();
    let a = env_json(&dir, store.path());
    let count = || std::fs::read_dir(store.path()).unwrap().count();
    assert_eq!(count(), 2);
    let stamp = |v: &serde_json::Value| -> Vec<(String, std::time::SystemTime)> {
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let u = p["uri"].as_str().unwrap().to_string();
                let m = std::fs::metadata(uri_path(&u)).unwrap().modified().unwrap();
                (u, m)
            })
            .collect()
    };
    let before = stamp(&a);
    let b = env_json(&dir, store.path());
    assert_eq!(stamp(&b), before, "unchanged re-run rewrote an object");
    assert!(
        b["packages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["uploaded"] == false)
    );
    assert_eq!(count(), 2);
    // Edit a file of the py_module: only its URI changes.
    std::fs::write(dir.join("libs/common/__init__.py"), "VERSION = \"2\"\n").unwrap();
    let c = env_json(&dir, store.path());
    assert_eq!(
        c["runtime_env"]["working_dir"],
        a["runtime_env"]["working_dir"]
    );
    assert_ne!(
        c["runtime_env"]["py_modules"][0],
        a["runtime_env"]["py_modules"][0]
    );
    assert_eq!(count(), 3);
    // chmod +x of a working-dir file changes only the working dir URI.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("helpers.py"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let d = env_json(&dir, store.path());
    assert_ne!(
        d["runtime_env"]["working_dir"],
        c["runtime_env"]["working_dir"]
    );
    assert_eq!(
        d["runtime_env"]["py_modules"],
        c["runtime_env"]["py_modules"]
    );
    assert_eq!(count(), 4);
    // No temp files are left in the store.
    for e in std::fs::read_dir(store.path()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(n.ends_with(".zip") && !n.starts_with('.'), "{n}");
    }
}

#[test]
fn copies_with_other_mtimes_and_umask_give_identical_bytes() {
    let (_t1, d1) = hello_copy();
    let (_t2, d2) = hello_copy();
    // Different mtimes and permissions beyond the exec bit on the second copy.
    use std::os::unix::fs::PermissionsExt;
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    for f in ["main.py", "helpers.py", "libs/common/greeting.py"] {
        let p = d2.join(f);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let a = env_json(&d1, s1.path());
    let b = env_json(&d2, s2.path());
    for (pa, pb) in a["packages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["packages"].as_array().unwrap())
    {
        assert_eq!(pa["digest"], pb["digest"]);
        let na = pa["uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let nb = pb["uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(na, nb);
        let ba = std::fs::read(uri_path(pa["uri"].as_str().unwrap())).unwrap();
        let bb = std::fs::read(uri_path(pb["uri"].as_str().unwrap())).unwrap();
        assert_eq!(ba, bb, "zip bytes differ for {na}");
    }
}

#[test]
fn stat_cache_rerun_still_sees_same_size_same_mtime_edits() {
    let (_t, dir) = hello_copy();
    let store = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000);
    let f = dir.join("helpers.py");
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let a = env_json(&dir, store.path());
    // Same length, same mtime, new content: the ctime/inode part of the stamp catches it.
    let body = std::fs::read_to_string(&f)
        .unwrap()
        .replace("upper", "lower");
    std::fs::write(&f, body).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let b = env_json(&dir, store.path());
    assert_ne!(
        a["runtime_env"]["working_dir"],
        b["runtime_env"]["working_dir"]
    );
}

#[test]
fn default_store_is_local_and_printed_formats_agree() {
    let (_t, dir) = hello_copy();
    let y = run(raypack().arg("-C").arg(&dir).arg("env"));
    assert!(y.status.success());
    let j = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--format", "json"]));
    let from_yaml: serde_json::Value = serde_norway::from_str(&stdout(&y)).unwrap();
    let from_json: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(from_yaml, from_json);
    assert!(
        from_json["working_dir"]
            .as_str()
            .unwrap()
            .starts_with(&format!("file://{}", dir.join(".raypack/store").display()))
    );
    let uv = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--format", "json", "--deps", "uv"]));
    let v: serde_json::Value = serde_json::from_slice(&uv.stdout).unwrap();
    assert_eq!(v["uv"], serde_json::json!(["requests>=2.31"]));
    assert!(v.get("pip").is_none());
    let rj = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--emit", "rayjob"]));
    let (ok, report) = validate_kuberay(&stdout(&rj));
    assert!(ok, "{report}");
    let doc: serde_json::Value = serde_norway::from_str(&stdout(&rj)).unwrap();
    let inner: serde_json::Value =
        serde_norway::from_str(doc["spec"]["runtimeEnvYAML"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner, from_json,
        "the RayJob carries exactly the printed runtime_env"
    );
}

fn assert_store_empty(p: &Path) {
    let n: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(n.is_empty(), "store has {n:?}");
}

#[test]
fn escaping_symlink_is_refused_and_nothing_uploaded() {
    let (_t, dir) = hello_copy();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.join("link.txt")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = env_into(raypack(), &dir, store.path(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("link.txt") && stderr(&out).contains("outside the project"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    assert_store_empty(store.path());
}

#[test]
fn unknown_scheme_is_a_clear_error() {
    let (_t, dir) = hello_copy();
    let out = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--store", "hdfs://nn/x"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown store scheme `hdfs://`"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join(".raypack/store").exists());
}

#[test]
fn missing_file_store_directory_is_an_error() {
    let (_t, dir) = hello_copy();
    let out = run(raypack().arg("-C").arg(&dir).args([
        "env",
        "--store",
        "file:///nonexistent/raypack-store-xyz",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Issue 14 #5: Ray's 512 MiB limit applies only to packages uploaded through its GCS; the
/// s3/gs/file URIs raypack prints are downloaded whatever their size. Over it: a warning that
/// names the largest directories. An explicit `--max-package-size` is a hard limit, checked
/// before hashing.
#[test]
fn package_over_rays_gcs_limit_warns_and_an_explicit_limit_refuses() {
    let (_t, dir) = hello_copy();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let f = std::fs::File::create(dir.join("assets/huge.bin")).unwrap();
    f.set_len(513 * 1024 * 1024).unwrap(); // sparse
    let out = run(raypack().arg("-C").arg(&dir).args(["env", "--dry-run"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("over the 512.0 MiB Ray accepts for packages uploaded through its GCS")
            && err.contains("largest directories: assets/ 513.0 MiB in 1 files"),
        "{err}"
    );
    let store = tempfile::tempdir().unwrap();
    let out = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--max-package-size", "536870912", "--store"])
        .arg(format!("file://{}", store.path().display())));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("limit 512.0 MiB"), "{}", stderr(&out));
    assert_store_empty(store.path());
    // Over half an explicit limit: a warning, and it works.
    let f = std::fs::File::create(dir.join("assets/huge.bin")).unwrap();
    f.set_len(300 * 1024 * 1024).unwrap();
    let out = run(raypack().arg("-C").arg(&dir).args([
        "env",
        "--dry-run",
        "--max-package-size",
        "536870912",
    ]));
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("more than half of the limit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreadable_file_is_a_clear_error() {
    // As root every file is readable, so run raypack as `nobody` where possible.
    let (t, dir) = hello_copy();
    use std::os::unix::fs::PermissionsExt;
    let store = tempfile::tempdir().unwrap();
    for p in [t.path(), store.path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::write(dir.join("private.txt"), "x").unwrap();
    let is_root = unsafe_geteuid() == 0;
    let cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_raypack"));
        c
    } else {
        raypack()
    };
    // The project dir must be writable for .raypack/ state by that user.
    chmod_r(&dir);
    std::fs::set_permissions(
        dir.join("private.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let out = env_into(cmd, &dir, store.path(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("private.txt") && stderr(&out).contains("cannot read"),
        "{}",
        stderr(&out)
    );
    assert_store_empty(store.path());
}

fn chmod_r(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            chmod_r(&e.path());
        } else {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
    }
}

fn unsafe_geteuid() -> u32 {
    // Read from /proc to avoid a libc dependency.
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_lock_next_to_the_recipe_pins_the_pip_list() {
    let (t, dir) = hello_copy();
    let cache = t.path().join("cache");
    std::fs::write(t.path().join("installed.txt"), "").unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args([
            "lock",
            "--python-version",
            "3.11",
            "--manylinux",
            "2_35",
            "--installed",
        ])
        .arg(t.path().join("installed.txt")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "env", "--dry-run"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pip: Vec<&str> = v["runtime_env"]["pip"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pip.iter().any(|p| p.starts_with("requests==2.")), "{pip:?}");
    assert!(pip.iter().any(|p| p.starts_with("urllib3==")), "{pip:?}");
    assert!(!pip.contains(&"requests>=2.31"), "{pip:?}");
}

/// Issue 15 #9: what killed runs left in a file store (raypack's own `.raypack-*.partial`
/// files, over an hour old) is removed by the next run that writes; younger ones and other
/// programs' files are left alone.
#[test]
fn leftover_partial_files_of_killed_runs_are_swept() {
    let (_t, dir) = hello_copy();
    let store = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    let mk = |name: &str, aged: bool| {
        let p = store.path().join(name);
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        if aged {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        p
    };
    let stale = mk(".raypack-a1b2c3.partial", true);
    let stale_named = mk(".raypack-hello-0123.zip.x9y8.partial", true);
    let fresh = mk(".raypack-d4e5f6.partial", false);
    let foreign = mk(".someone-else.partial", true);
    env_json(&dir, store.path());
    assert!(!stale.exists() && !stale_named.exists());
    assert!(fresh.exists() && foreign.exists());
}

/// Issue 15 #9: a file store inside the working dir does not ship its own zips.
#[test]
fn a_store_inside_the_working_dir_is_not_shipped() {
    let (_t, dir) = hello_copy();
    let store = dir.join("published");
    std::fs::create_dir_all(&store).unwrap();
    let first = env_json(&dir, &store);
    // A second run after an edit: the new working_dir zip must not hold the first run's zips.
    std::fs::write(dir.join("main.py"), "print('edited')\n").unwrap();
    let second = env_json(&dir, &store);
    assert_ne!(first["packages"][0]["uri"], second["packages"][0]["uri"]);
    let zip = uri_path(second["packages"][0]["uri"].as_str().unwrap());
    let names = zip_names(&zip);
    assert!(
        !names.iter().any(|(n, _)| n.contains("published/")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|(n, _)| n.ends_with("main.py")),
        "{names:?}"
    );
}
