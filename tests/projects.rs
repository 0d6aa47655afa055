//! Real public Ray projects, vendored under `tests/data/projects/` with their licences (see each
//! `SOURCE.md`): what a new user of each would run — `init`, `check`, `lock` (compared with
//! `uv pip compile`), `bake` with the project's own KubeRay YAML through `--resolve`, the baked
//! image imported and `pip check`ed in the sandbox.

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// nginyc/mlflow-with-ray-serve-demo (MIT): a Ray Serve app serving MLflow models, with its own
/// RayService YAML and a uv-managed pyproject.
const SERVE_DEMO: &str = "tests/data/projects/mlflow-ray-serve-demo";
const SERVE_DEMO_YAML: &str = "examples/rayservice-py312.kuberay.yml";

/// A copy of a vendored project (the tree is never written to).
fn copy_project(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("project");
    copy_tree(&repo().join(rel), &dir);
    (t, dir)
}

fn init(dir: &Path) -> String {
    let out = run(raypack().arg("-C").arg(dir).arg("init"));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read_to_string(dir.join("raypack.toml")).unwrap()
}

/// `init` finds the name, the dependencies, the Python (3.12 from `.python-version`) and both
/// Serve applications; `check` accepts the recipe and rejects a misspelt Serve module.
#[test]
fn serve_demo_init_finds_the_serve_app_and_check_rejects_a_missing_module() {
    let (_t, dir) = copy_project(SERVE_DEMO);
    let recipe = init(&dir);
    for want in [
        "name = \"ray-serve-demo\"",
        "\"ray[serve]\"",
        "\"mlflow\"",
        "image = \"rayproject/ray:2.60.0-py312-cpu\"",
        "kind = \"RayService\"",
        "serve = { import_path = \"mlray.app:app\" }",
        "mlray.batching_app:app",
    ] {
        assert!(recipe.contains(want), "{want} missing from:\n{recipe}");
    }
    let out = run(raypack().arg("-C").arg(&dir).arg("check"));
    assert!(out.status.success(), "{}", stderr(&out));

    std::fs::write(
        dir.join("raypack.toml"),
        recipe.replace("mlray.app:app", "mlray.ap:app"),
    )
    .unwrap();
    let out = run(raypack().arg("-C").arg(&dir).arg("check"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("mlray.ap"), "{}", stderr(&out));
}

/// The project's requirements as `init` wrote them.
fn serve_demo_requirements() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(SERVE_DEMO).join("pyproject.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc["project"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A copy of the project whose recipe asks for `requirements` on `base`.
fn serve_demo_on(base: &str, requirements: &[String], extra: &str) -> (tempfile::TempDir, PathBuf) {
    let (t, dir) = copy_project(SERVE_DEMO);
    let list: Vec<String> = requirements
        .iter()
        .map(|r| toml::Value::String(r.clone()).to_string())
        .collect();
    std::fs::write(
        dir.join("raypack.toml"),
        format!(
            "[project]\nname = \"ray-serve-demo\"\n\n[code]\nworking_dir = \".\"\n\n[dependencies]\nrequirements = [{}]\n\n[base]\nimage = \"{base}\"\n{extra}",
            list.join(", ")
        ),
    )
    .unwrap();
    (t, dir)
}

const TARGET: [&str; 4] = ["--python-version", "3.11", "--manylinux", "2_36"];

/// `lock` agrees with `uv pip compile` on the project's requirements; against the stand-in
/// base it keeps the base's Ray, and a `fastapi` pin that excludes what the base's
/// `ray[serve]` needs is an error naming fastapi, not a silent swap of the cluster's Ray.
#[test]
fn serve_demo_lock_matches_uv_keeps_the_base_ray_and_names_a_fastapi_conflict() {
    let reqs = serve_demo_requirements();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("projects-lock-cache");
    let lock = |dir: &Path, args: &[&str]| {
        run(raypack()
            .env("RAYPACK_CACHE_DIR", &cache)
            .arg("-C")
            .arg(dir)
            .arg("lock")
            .args(TARGET)
            .args(args))
    };

    // Plain resolution (no base): the same pins as uv.
    let (_t, dir) = serve_demo_on("rayproject/ray:2.60.0-py311-cpu", &reqs, "");
    let out = lock(&dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = versions(&std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap());
    let refs: Vec<&str> = reqs.iter().map(String::as_str).collect();
    let theirs = uv_compile(&refs);
    let diff: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|n| ours.get(*n) != theirs.get(*n))
        .map(|n| format!("{n}: raypack {:?}, uv {:?}", ours.get(n), theirs.get(n)))
        .collect();
    assert!(diff.is_empty(), "differs from uv:\n{}", diff.join("\n"));
    assert!(ours.len() > 80, "{} pins", ours.len());

    // Against the stand-in's installed set: Ray stays the base's.
    let installed = dir.join("installed.txt");
    let pins = standin_pins();
    std::fs::write(
        &installed,
        pins.iter()
            .map(|(n, v)| format!("{n}=={v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let inst = ["--installed", installed.to_str().unwrap()];
    let (_t2, dir) = serve_demo_on("rayproject/ray:2.60.0-py311-cpu", &reqs, "");
    let out = lock(&dir, &inst);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = versions(&std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap());
    assert_eq!(ours.get("ray"), Some(&standin_version("ray")));

    // A fastapi pin below what ray[serve] 2.60.0 needs: an error naming fastapi.
    let mut conflicting = reqs.clone();
    conflicting.push("fastapi<0.125".into());
    let (_t3, dir) = serve_demo_on("rayproject/ray:2.60.0-py311-cpu", &conflicting, "");
    let out = lock(&dir, &inst);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("fastapi") && err.contains("ray"), "{err}");
    assert!(!dir.join("pylock.raypack.toml").exists());
}

/// `bake` of the project (its requirements locked against the stand-in base), then its own
/// RayService YAML through `--resolve`: the images pinned to the baked digest, both
/// `rayVersion`s set to the image's Ray, every other line as the project wrote it, and the
/// KubeRay CRDs accept it. In the image the Serve app imports, `pip check` passes and
/// `ray --version` is that rayVersion.
#[test]
fn serve_demo_bakes_and_resolves_its_own_rayservice() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let repo_name = format!("{registry}/projects/{}", unique("serve-demo"));
    let (t, dir) = serve_demo_on(
        &service("RAYPACK_TEST_BASE"),
        &serve_demo_requirements(),
        &format!("\n[image]\nrepository = \"{repo_name}\"\n"),
    );
    // The user points their manifest at their repository once.
    let original = std::fs::read_to_string(dir.join(SERVE_DEMO_YAML))
        .unwrap()
        .replace("rayproject/ray:2.47.1-py312", &format!("{repo_name}:dev"));
    let yaml = t.path().join("rayservice.yaml");
    std::fs::write(&yaml, &original).unwrap();

    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", shared_cache())
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--resolve"])
        .arg(&yaml));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    let ray_version = v["bake"]["ray_version"].as_str().unwrap().to_string();
    assert_eq!(ray_version, standin_version("ray"));
    let resolved = v["resolved"].as_str().unwrap();

    let (ok, report) = validate_kuberay(resolved);
    assert!(ok, "{report}\n{resolved}");
    let before: Vec<&str> = original.lines().collect();
    let after: Vec<&str> = resolved.lines().collect();
    assert_eq!(before.len(), after.len());
    let mut images = 0;
    let mut versions_set = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == a {
            continue;
        }
        if b.trim_start().starts_with("- image:") {
            assert_eq!(a.trim_start(), format!("- image: {image}"));
            images += 1;
        } else if b.trim_start().starts_with("rayVersion:") {
            assert_eq!(a.trim_start(), format!("rayVersion: {ray_version}"));
            versions_set += 1;
        } else {
            panic!("--resolve changed a line it does not own:\n{b}\n{a}");
        }
    }
    // Head and worker images; the manifest says rayVersion twice.
    assert_eq!((images, versions_set), (2, 2));
    assert!(resolved.contains("# Uncomment the following lines to use MLflow with credentials"));

    let bundle = pull_and_unpack(t.path(), &image);
    let (ok, text) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import mlray.app, mlray.mlflow, mlflow, sklearn; print(\"imports ok\")' && python -m pip check && ray --version",
    );
    assert!(
        ok && text.contains("imports ok")
            && text.contains("No broken requirements")
            && text.contains(&format!("ray, version {ray_version}")),
        "{text}"
    );
}

/// Wheels, fragments and layers shared by this file's tests (one download of the project's
/// stack per run; each test's outputs are still its own).
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("projects-cache")
}

/// Issue 14 #2: the dependency bundle of the project, locked against the stand-in base, leaves
/// out what the base ships (Ray and its stack) and bundles the rest; a job on the real Ray head
/// (whose environment has everything the stand-in has) imports the Serve app and MLflow from
/// it. `env --resolve` puts the same runtime_env into the project's RayService.
#[test]
fn serve_demo_bundle_leaves_the_base_out_and_runs_on_ray() {
    let ray = service("RAYPACK_TEST_RAY");
    let (t, dir) = serve_demo_on(
        &service("RAYPACK_TEST_BASE"),
        &serve_demo_requirements(),
        "\n[cluster]\nkind = \"RayJob\"\nentrypoint = \"python bundle_job.py\"\n",
    );
    std::fs::write(
        dir.join("bundle_job.py"),
        r#"import ray

@ray.remote
def check():
    import mlray.app, mlflow, sklearn
    return mlflow.__file__, ray.__version__

ray.init()
print("bundle job ok", ray.get(check.remote()))
"#,
    )
    .unwrap();
    let store = t.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let store_url = format!("file://{}", store.display());
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", shared_cache())
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "env", "--deps", "bundle", "--explain"])
        .args(["--store", &store_url, "--submit", &ray, "--timeout", "600"]));
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(err.contains("bundle job ok"), "{err}");
    assert!(
        err.contains("py_modules_files"),
        "mlflow from the bundle: {err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |key: &str| -> Vec<String> {
        v["bundle"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().split("==").next().unwrap().to_string())
            .collect()
    };
    let (bundled, kept) = (names("bundled"), names("kept"));
    assert!(kept.contains(&"ray".to_string()), "{kept:?}");
    assert!(!bundled.contains(&"ray".to_string()), "{bundled:?}");
    assert!(bundled.contains(&"mlflow".to_string()), "{bundled:?}");
    let pins = standin_pins();
    // Kept means the base ships it: the stand-in's pins, or the installer Python comes with.
    for k in kept
        .iter()
        .filter(|k| !matches!(k.as_str(), "pip" | "setuptools" | "wheel"))
    {
        assert!(pins.contains_key(k), "{k} kept but not in the base");
    }
    let deps = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "py_module:dependencies")
        .unwrap()
        .clone();
    assert_eq!(deps["kept"].as_u64(), Some(kept.len() as u64));

    // The project's RayService gets the same runtime_env (the bundle as a py_module), and the
    // applications keep their env_vars.
    let yaml = dir.join(SERVE_DEMO_YAML);
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", shared_cache())
        .arg("-C")
        .arg(&dir)
        .args([
            "env",
            "--deps",
            "bundle",
            "--store",
            &store_url,
            "--resolve",
        ])
        .arg(&yaml));
    assert!(out.status.success(), "{}", stderr(&out));
    let resolved = stdout(&out);
    let (ok, report) = validate_kuberay(&resolved);
    assert!(ok, "{report}");
    let doc: serde_json::Value = serde_norway::from_str(&resolved).unwrap();
    let cfg: serde_json::Value =
        serde_norway::from_str(doc["spec"]["serveConfigV2"].as_str().unwrap()).unwrap();
    for app in cfg["applications"].as_array().unwrap() {
        let re = &app["runtime_env"];
        assert_eq!(re["py_modules"][0], deps["uri"], "{re}");
        assert!(re["working_dir"].as_str().unwrap().starts_with("file://"));
        assert!(re.get("pip").is_none(), "{re}");
        assert!(re["env_vars"]["MODEL_URI"].is_string(), "{re}");
    }
}
