//! Recipes: every example in recipes/ passes `check`; every broken recipe fails with
//! file:line:col and a precise message; `init` writes a recipe that `check` accepts.

mod common;
use common::*;

#[test]
fn every_shipped_recipe_checks() {
    let mut n = 0;
    for e in std::fs::read_dir(repo().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = run(raypack().arg("check").arg("--recipe").arg(&p));
            assert!(
                out.status.success(),
                "{} failed: {}",
                p.display(),
                stderr(&out)
            );
            n += 1;
        }
    }
    assert!(n >= 4, "expected at least four recipes, found {n}");
}

#[test]
fn broken_recipes_fail_with_location_and_message() {
    let dir = repo().join("tests/broken-recipes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "corpus has {} recipes", files.len());
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .expect("first line is `# expect: L:C: message | help`");
        let (loc_msg, help) = match expect.split_once(" | ") {
            Some((a, b)) => (a, Some(b)),
            None => (expect, None),
        };
        let (loc, msg) = loc_msg.split_at(loc_msg.find(": ").unwrap());
        let msg = msg.trim_start_matches(": ");
        let out = run(raypack()
            .current_dir(repo())
            .arg("check")
            .arg("--recipe")
            .arg(p.strip_prefix(repo()).unwrap()));
        assert_eq!(out.status.code(), Some(1), "{}", p.display());
        let err = stderr(&out).replace('\n', " ");
        let err: String = err.split_whitespace().collect::<Vec<_>>().join(" ");
        let rel = p.strip_prefix(repo()).unwrap().display().to_string();
        assert!(
            err.contains(&format!("{rel}:{loc}: ")),
            "{rel}: want location {loc} in:\n{err}"
        );
        assert!(err.contains(msg), "{rel}: want `{msg}` in:\n{err}");
        if let Some(h) = help {
            assert!(err.contains(h), "{rel}: want help `{h}` in:\n{err}");
        }
        // The machine-readable form carries the same location.
        let out = run(raypack()
            .current_dir(repo())
            .args(["--output", "json", "check", "--recipe"])
            .arg(&rel));
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (l, c) = loc.split_once(':').unwrap();
        assert_eq!(v["problems"][0]["line"].to_string(), l, "{rel}");
        assert_eq!(v["problems"][0]["column"].to_string(), c, "{rel}");
    }
}

#[test]
fn init_writes_a_recipe_that_checks() {
    let (_t, dir) = hello_copy();
    std::fs::remove_file(dir.join("raypack.toml")).unwrap();
    let out = run(raypack().arg("-C").arg(&dir).arg("init"));
    assert!(out.status.success());
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    assert!(text.contains("py_modules = [\"libs/common\"]"), "{text}");
    assert!(
        text.contains("requirements_file = \"requirements.txt\""),
        "{text}"
    );
    assert!(text.contains("entrypoint = \"python main.py\""), "{text}");
    let out = run(raypack().arg("-C").arg(&dir).arg("check"));
    assert!(out.status.success(), "{}", stderr(&out));
    // A second init refuses to overwrite.
    let out = run(raypack().arg("-C").arg(&dir).arg("init"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"));
}

#[test]
fn pyproject_tool_table_is_a_recipe_and_raypack_toml_wins() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n\n[tool.raypack.project]\nname = \"from-pyproject\"\n",
    )
    .unwrap();
    let out = run(raypack()
        .arg("-C")
        .arg(t.path())
        .args(["--output", "json", "check"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "from-pyproject");
    std::fs::write(t.path().join("raypack.toml"), "[project]\nname = \"own\"\n").unwrap();
    let out = run(raypack()
        .arg("-C")
        .arg(t.path())
        .args(["--output", "json", "check"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "own");
    // Problems inside [tool.raypack] point into pyproject.toml.
    std::fs::remove_file(t.path().join("raypack.toml")).unwrap();
    std::fs::write(
        t.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n\n[tool.raypack.project]\nname = \"Bad\"\n",
    )
    .unwrap();
    let out = run(raypack().arg("-C").arg(t.path()).arg("check"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pyproject.toml:5:9:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cli_conventions() {
    for cmd in [
        "init",
        "check",
        "env",
        "bake",
        "lock",
        "login",
        "logout",
        "completions",
    ] {
        let out = run(raypack().args([cmd, "--help"]));
        assert!(out.status.success(), "{cmd} --help");
    }
    let out = run(raypack().arg("--no-such-flag"));
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = run(raypack().args(["completions", "bash"]));
    assert!(stdout(&out).contains("raypack"));
    let out = run(raypack().arg("-C").arg("/nonexistent-dir-xyz").arg("check"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no recipe in"));
}

#[test]
fn shipped_recipes_emit_valid_kuberay() {
    for (recipe, emit) in [
        ("recipes/cpu-rayjob.toml", "rayjob"),
        ("recipes/rayservice.toml", "rayservice"),
    ] {
        let out = run(raypack().current_dir(repo()).args([
            "env",
            "--dry-run",
            "--emit",
            emit,
            "--recipe",
            recipe,
        ]));
        assert!(out.status.success(), "{recipe}: {}", stderr(&out));
        let (ok, report) = validate_kuberay(&stdout(&out));
        assert!(ok, "{recipe}: {report}\n{}", stdout(&out));
    }
}

/// Issue 15 #10: invalid UTF-8 in a recipe is reported with its line and column.
#[test]
fn invalid_utf8_in_a_recipe_names_line_and_column() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("raypack.toml"),
        b"[project]\nname = \"d\xe9mo\"\n",
    )
    .unwrap();
    let out = run(raypack().arg("-C").arg(t.path()).arg("check"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("raypack.toml:2:10: not valid UTF-8 (byte 0xe9)"),
        "{}",
        stderr(&out)
    );
}

/// Issue 23 #4: a project whose pyproject.toml requires a newer Python than the base ships is
/// refused by `check` and `lock`, naming both (poetry's `python = "^3.12"` too).
#[test]
fn requires_python_is_checked_against_the_base() {
    for pyproject in [
        "[project]\nname = \"hello\"\nrequires-python = \">=3.12\"\n",
        "[tool.poetry.dependencies]\npython = \"^3.12\"\n",
    ] {
        let (_t, dir) = hello_copy();
        std::fs::write(dir.join("pyproject.toml"), pyproject).unwrap();
        let out = run(raypack().arg("-C").arg(&dir).arg("check"));
        assert_eq!(out.status.code(), Some(1), "{pyproject}");
        let err = stderr(&out);
        assert!(
            err.contains("pyproject.toml: the project requires Python")
                && err.contains("3.12")
                && err.contains("has Python 3.11"),
            "{err}"
        );
        // --installed: what the base has, so lock does not ask a registry for it.
        let installed = dir.join("installed.txt");
        std::fs::write(&installed, "").unwrap();
        let out = run(raypack()
            .arg("-C")
            .arg(&dir)
            .args(["lock", "--python-version", "3.11", "--manylinux", "2_36"])
            .arg("--installed")
            .arg(&installed));
        assert_eq!(out.status.code(), Some(1), "{pyproject}");
        assert!(stderr(&out).contains("has Python 3.11"), "{}", stderr(&out));
    }
    // A range the base satisfies passes.
    let (_t, dir) = hello_copy();
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"hello\"\nrequires-python = \">=3.10\"\n",
    )
    .unwrap();
    let out = run(raypack().arg("-C").arg(&dir).arg("check"));
    assert!(out.status.success(), "{}", stderr(&out));
}
