//! raypack installs the way Python users install their tools (issue 21): the wheel maturin
//! builds from this workspace (`pyproject.toml`) installs into a fresh venv with no index, puts
//! `raypack` on its PATH, names its version and git revision, and runs the README's main job;
//! its manylinux tag is one the binary's glibc symbol versions actually satisfy.
//!
//! Needs `RAYPACK_TEST_MATURIN` and `RAYPACK_TEST_UV` (the harness's tools venv) and
//! `RAYPACK_TEST_PYTHON`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The highest `GLIBC_2.N` symbol version the ELF file at `path` names (its `.dynstr` lists
/// every version it needs).
fn max_glibc_minor(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    let re = regex::bytes::Regex::new(r"GLIBC_2\.([0-9]+)").unwrap();
    re.captures_iter(&bytes)
        .filter_map(|c| std::str::from_utf8(&c[1]).ok()?.parse().ok())
        .max()
        .expect("a dynamically linked binary needs some glibc version")
}

#[test]
fn the_wheel_installs_into_a_fresh_venv_and_runs_the_main_job() {
    let maturin = service("RAYPACK_TEST_MATURIN");
    let uv = service("RAYPACK_TEST_UV");
    let python = service("RAYPACK_TEST_PYTHON");
    let t = tempfile::tempdir().unwrap();
    let wheels = t.path().join("wheels");

    // scripts/release, on the dev profile (the same binary the other tests run, so nothing is
    // rebuilt): maturin's wheel with the binary stripped, and the debug sections beside it.
    let released = release(&maturin, &wheels);
    let (wheel, debug) = (released[0].clone(), released[1].clone());
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        name.starts_with(&format!("raypack-{version}-py3-none-manylinux_")),
        "{name}"
    );

    // The tag's glibc level covers every symbol version the binary needs.
    let tag_minor: u32 = name
        .split("manylinux_2_")
        .nth(1)
        .and_then(|r| r.split('_').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no manylinux_2_N tag in {name}"));
    let unpacked = t.path().join("unpacked");
    let f = std::fs::File::open(&wheel).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    z.extract(&unpacked).unwrap();
    let binary = unpacked
        .join(format!("raypack-{version}.data"))
        .join("scripts")
        .join("raypack");
    let needs = max_glibc_minor(&binary);
    assert!(
        needs <= tag_minor,
        "{name}: the binary needs GLIBC_2.{needs}, the tag promises 2.{tag_minor}"
    );

    // Stripped: no debug sections and no symbol table in what users install...
    let sections = tool("readelf", &["-SW"], &binary);
    for gone in [".debug_info", ".debug_line", ".symtab"] {
        assert!(
            !sections.contains(gone),
            "{gone} left in the wheel's binary"
        );
    }
    assert!(
        std::fs::metadata(&binary).unwrap().len() < std::fs::metadata(&debug).unwrap().len(),
        "the stripped binary is not smaller than its debug file"
    );
    // ...and the .debug file is that binary's: same GNU build-id, named by its debuglink, and
    // it maps the binary's addresses to source lines.
    let build_id = |p: &Path| {
        let notes = tool("readelf", &["-n"], p);
        notes
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no build-id in {}", p.display()))
    };
    assert_eq!(build_id(&binary), build_id(&debug));
    let link = tool("readelf", &["-p", ".gnu_debuglink"], &binary);
    let debug_name = debug.file_name().unwrap().to_string_lossy().into_owned();
    assert!(link.contains(&debug_name), "debuglink: {link}");
    let symbols = tool("nm", &["-C"], &debug);
    let main = symbols
        .lines()
        .find(|l| l.ends_with(" raypack::cli::main"))
        .expect("raypack::cli::main in the debug file's symbols");
    let addr = format!("0x{}", main.split_whitespace().next().unwrap());
    let out = run(Command::new("addr2line").arg("-e").arg(&debug).arg(&addr));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("src/cli/mod.rs:"), "{addr} -> {line}");

    // Reproducible: a second release of the same tree is the same wheel, byte for byte.
    let again = release(&maturin, &t.path().join("again"));
    assert_eq!(
        std::fs::read(&again[0]).unwrap(),
        std::fs::read(&wheel).unwrap(),
        "two releases of one tree made different wheels"
    );

    // A fresh venv, no index: only the wheel.
    let venv = t.path().join("venv");
    let out = run(Command::new(&uv)
        .args(["venv", "--no-config", "--python"])
        .arg(&python)
        .arg(&venv));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(Command::new(&uv)
        .args([
            "pip",
            "install",
            "--no-config",
            "--offline",
            "--no-index",
            "--python",
        ])
        .arg(venv.join("bin/python"))
        .arg(&wheel));
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = venv.join("bin/raypack");
    assert!(installed.is_file(), "no raypack on the venv's PATH");

    let out = run(Command::new(&installed).arg("--version"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with(&format!("raypack {version}")), "{text}");
    if let Some(rev) = git_head() {
        assert!(text.contains(&rev[..12]), "{text} (HEAD is {rev})");
    }

    // The README's main job, on a copy of examples/hello (it writes its local store there).
    let hello = t.path().join("hello");
    copy_dir(&root().join("examples/hello"), &hello);
    let out = run(Command::new(&installed)
        .arg("-C")
        .arg(&hello)
        .arg("env")
        .env("RAYPACK_CACHE_DIR", t.path().join("cache")));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("working_dir") && stdout.contains("hello-"),
        "{stdout}"
    );
    assert!(hello.join(".raypack/store").is_dir());

    // The man page renders.
    let out = run(Command::new(&installed).arg("man"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH raypack"));
}

/// Runs `scripts/release --dev OUT` with the harness's maturin (and the python of its venv, which
/// has `wheel`); returns the wheel and the debug file it printed.
fn release(maturin: &str, out: &Path) -> Vec<PathBuf> {
    let tools = Path::new(maturin).parent().unwrap();
    let out = run(Command::new(root().join("scripts/release"))
        .arg("--dev")
        .arg(out)
        .env("MATURIN", maturin)
        .env("TOOLS_PYTHON", tools.join("python")));
    assert!(out.status.success(), "scripts/release:\n{}", stderr(&out));
    let printed: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(printed.len(), 2, "{printed:?}");
    assert!(
        printed[0].extension().is_some_and(|x| x == "whl"),
        "{printed:?}"
    );
    assert!(
        printed[1].extension().is_some_and(|x| x == "debug"),
        "{printed:?}"
    );
    printed
}

/// `PROGRAM ARGS... FILE`'s stdout (binutils: readelf, nm).
fn tool(program: &str, args: &[&str], file: &Path) -> String {
    let out = run(Command::new(program).args(args).arg(file));
    assert!(out.status.success(), "{program}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commit the tests are built from, when this is a git checkout.
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_name() == ".raypack" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
