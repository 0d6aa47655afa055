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

/// `raypack env --deps bundle` of `dir` into the file store `tmp/store` (`extra` after
/// `bundle`, e.g. `--explain`; `--output json` when `json`), submitted to the Ray head and
/// followed for at most `timeout` seconds.
fn submit_bundle(
    tmp: &Path,
    dir: &Path,
    json: bool,
    extra: &[&str],
    timeout: &str,
) -> std::process::Output {
    let store = tmp.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let mut cmd = raypack();
    cmd.env("RAYPACK_CACHE_DIR", shared_cache())
        .arg("-C")
        .arg(dir);
    if json {
        cmd.args(["--output", "json"]);
    }
    run(cmd
        .args(["env", "--deps", "bundle"])
        .args(extra)
        .args(["--store", &format!("file://{}", store.display())])
        .args([
            "--submit",
            &service("RAYPACK_TEST_RAY"),
            "--timeout",
            timeout,
        ]))
}

/// Issue 14 #2: the dependency bundle of the project, locked against the stand-in base, leaves
/// out what the base ships (Ray and its stack) and bundles the rest; a job on the real Ray head
/// (whose environment has everything the stand-in has) imports the Serve app and MLflow from
/// it. `env --resolve` puts the same runtime_env into the project's RayService.
#[test]
fn serve_demo_bundle_leaves_the_base_out_and_runs_on_ray() {
    service("RAYPACK_TEST_RAY"); // the Ray head: missing is a failure before any work
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
    let out = submit_bundle(t.path(), &dir, true, &["--explain"], "600");
    let store_url = format!("file://{}", t.path().join("store").display());
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

/// ray-project/ray's e2e-xgboost example (Apache-2.0): Ray Train + XGBoost + MLflow, the
/// project issue 14 was found on.
const XGBOOST: &str = "tests/data/projects/e2e-xgboost";
/// ray-project/ray's Tune + MLflow example (Apache-2.0), a single script.
const TUNE: &str = "tests/data/projects/tune-mlflow";

/// e2e-xgboost's requirements.txt leaves Ray to "Anyscale's base image", which ships
/// `ray[data,train,serve]`; the stand-in base has `ray[default]` only, so the recipe asks for
/// the extras the code imports (what a user on a plain rayproject image would write).
fn xgboost_on_standin(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let (t, dir, _) = init_with_base(XGBOOST, &service("RAYPACK_TEST_BASE"), extra);
    std::fs::write(
        dir.join("requirements-cluster.txt"),
        "-r requirements.txt\nray[data,train]\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            "requirements_file = \"requirements-cluster.txt\"",
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    (t, dir)
}

/// A copy of `rel` with the recipe `init` wrote, its base replaced by `base` and `extra`
/// appended; returns the recipe text too.
fn init_with_base(rel: &str, base: &str, extra: &str) -> (tempfile::TempDir, PathBuf, String) {
    let (t, dir) = copy_project(rel);
    let recipe = init(&dir);
    let text: String = recipe
        .lines()
        .filter(|l| !l.starts_with("# Python "))
        .map(|l| {
            if l.starts_with("image = ") {
                format!("image = \"{base}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        + extra;
    std::fs::write(dir.join("raypack.toml"), &text).unwrap();
    (t, dir, recipe)
}

/// The requirement lines of a requirements.txt (comments and blanks dropped).
fn requirement_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Locks `dir` for the stand-in's target (no base contents) and compares with uv.
fn lock_matches_uv(dir: &Path, reqs: &[String]) -> std::collections::BTreeMap<String, String> {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("projects-lock-cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(dir)
        .arg("lock")
        .args(TARGET));
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
    ours
}

/// `init` finds requirements.txt and picks `python -m dist_xgboost.train` (not the Serve
/// script, which calls serve.run itself); `lock` agrees with uv; a package published only as
/// an sdist (gpustat) is an error naming it and what to do.
#[test]
fn e2e_xgboost_init_lock_and_an_sdist_only_package() {
    let (_t, dir, recipe) = init_with_base(XGBOOST, "rayproject/ray:2.60.0-py311-cpu", "");
    for want in [
        "requirements_file = \"requirements.txt\"",
        "kind = \"RayJob\"",
        "entrypoint = \"python -m dist_xgboost.train\"",
    ] {
        assert!(recipe.contains(want), "{want} missing from:\n{recipe}");
    }
    assert!(!recipe.contains("RayService"), "{recipe}");
    let out = run(raypack().arg("-C").arg(&dir).arg("check"));
    assert!(out.status.success(), "{}", stderr(&out));

    let reqs = requirement_lines(&dir.join("requirements.txt"));
    let ours = lock_matches_uv(&dir, &reqs);
    for n in ["mlflow", "xgboost", "scikit-learn", "matplotlib"] {
        assert!(ours.contains_key(n), "{n} missing: {ours:?}");
    }

    let mut with_sdist = std::fs::read_to_string(dir.join("requirements.txt")).unwrap();
    with_sdist.push_str("gpustat==1.1.1\n");
    std::fs::write(dir.join("requirements.txt"), with_sdist).unwrap();
    let out = run(raypack()
        .env(
            "RAYPACK_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("projects-lock-cache"),
        )
        .arg("-C")
        .arg(&dir)
        .arg("lock")
        .args(TARGET));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("gpustat")
            && err.contains("sdist")
            && err.contains("pip wheel --no-deps gpustat"),
        "{err}"
    );
}

/// The baked image of e2e-xgboost imports the project's modules with Ray Train's XGBoost
/// integration, and passes `pip check`.
#[test]
fn e2e_xgboost_bakes_and_imports_in_the_image() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let repo_name = format!("{registry}/projects/{}", unique("e2e-xgboost"));
    let (t, dir) = xgboost_on_standin(&format!("\n[image]\nrepository = \"{repo_name}\"\n"));
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", shared_cache())
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bake"]["dependencies"]["bytecode"], "cpython-311", "{v}");
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    let bundle = pull_and_unpack(t.path(), &image);
    let (ok, text) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import dist_xgboost.train, dist_xgboost.infer, dist_xgboost.data, xgboost, mlflow, sklearn, ray.train.xgboost; print(\"imports ok\")' && python -m pip check",
    );
    assert!(
        ok && text.contains("imports ok") && text.contains("No broken requirements"),
        "{text}"
    );
}

/// The driver a test runs instead of `python -m dist_xgboost.train`: the same `main()`, with
/// what cannot run here replaced — the dataset (upstream reads it from a public S3 bucket; it
/// is scikit-learn's bundled breast-cancer set, loaded locally), the GPU and the five workers
/// (one CPU worker), `CheckpointConfig(checkpoint_frequency=…)` (written for Ray 2.44; Ray
/// 2.60's Train v2 refuses it) — and its own `ray.init(runtime_env=…)` left to the job's
/// runtime_env, which already carries the project.
const XGBOOST_JOB: &str = r#"import ray
import sklearn.datasets

import dist_xgboost.train as train


def local_data():
    frame = sklearn.datasets.load_breast_cancer(as_frame=True).frame
    ds = ray.data.from_pandas(frame)
    tr, rest = ds.train_test_split(test_size=0.3, shuffle=True, seed=42)
    va, te = rest.train_test_split(test_size=0.5, shuffle=True, seed=42)
    return tr, va, te


def checkpoint_config(**kwargs):
    # The example targets Ray 2.44; Ray 2.60's Train v2 refuses this argument.
    kwargs.pop("checkpoint_frequency", None)
    return original_checkpoint_config(**kwargs)


original_checkpoint_config = train.CheckpointConfig
train.CheckpointConfig = checkpoint_config
ray.init()
ray.init = lambda *a, **k: None
train.prepare_data = local_data
train.USE_GPU = False
train.NUM_WORKERS = 1
train.main()
"#;

/// e2e-xgboost trains on the real Ray head from a base-aware dependency bundle: Ray Train runs
/// XGBoost on a Ray Data dataset and logs the run to MLflow.
#[test]
fn e2e_xgboost_trains_on_ray_from_a_bundle() {
    service("RAYPACK_TEST_RAY"); // the Ray head: missing is a failure before any work
    let (t, dir) = xgboost_on_standin("");
    std::fs::write(dir.join("raypack_job.py"), XGBOOST_JOB).unwrap();
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("python -m dist_xgboost.train", "python raypack_job.py");
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = submit_bundle(t.path(), &dir, true, &[], "900");
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(err.contains("Training complete"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundled: Vec<&str> = v["bundle"]["bundled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        bundled.iter().any(|b| b.starts_with("xgboost==")),
        "{bundled:?}"
    );
    assert!(
        !bundled.iter().any(|b| b.starts_with("ray==")),
        "{bundled:?}"
    );
}

/// The Tune + MLflow example runs its smoke test on the real Ray head with MLflow from the
/// bundle (Ray Tune's own dependencies come from the base where it has them).
#[test]
fn tune_mlflow_example_runs_on_ray_from_a_bundle() {
    service("RAYPACK_TEST_RAY"); // the Ray head: missing is a failure before any work
    // MLflow 3.x refuses its file store unless told (the example's smoke test uses one): what
    // a user of today's MLflow adds to the job's environment.
    let (t, dir, recipe) = init_with_base(
        TUNE,
        &service("RAYPACK_TEST_BASE"),
        "\n[env]\nenv_vars = { MLFLOW_ALLOW_FILE_STORE = \"true\" }\n",
    );
    assert!(
        recipe.contains("entrypoint = \"python mlflow_example.py\""),
        "{recipe}"
    );
    // The example's own dependencies, which it does not list anywhere.
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements = []",
            "requirements = [\"mlflow\", \"ray[tune]\"]",
        )
        .replace(
            "python mlflow_example.py\"",
            "python mlflow_example.py --smoke-test\"",
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = submit_bundle(t.path(), &dir, true, &[], "900");
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(err.contains("mlflow"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&str> = v["bundle"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(kept.iter().any(|k| k.starts_with("ray==")), "{kept:?}");
}

/// pdavis327/ray-workshop's Ray Data lab (MIT): read a CSV shipped in the working dir, add a
/// column with map_batches, write Parquet.
const RAY_DATA: &str = "tests/data/projects/ray-data-iris";

/// `init` finds the lab script as `python -m extras.scripts.scale_data` (the CSV it reads is
/// small, so nothing is excluded); `lock` agrees with uv; the full set (codeflare-sdk pins an
/// older Ray) is refused on a Ray 2.60 base with the chain that says why; with the pins
/// upstream's job uses, the job runs on the Ray head from a base-aware bundle and writes its
/// Parquet output.
#[test]
fn ray_data_lab_runs_on_ray_from_a_bundle() {
    service("RAYPACK_TEST_RAY"); // the Ray head: missing is a failure before any work
    let (t, dir, recipe) = init_with_base(RAY_DATA, "rayproject/ray:2.60.0-py311-cpu", "");
    for want in [
        "name = \"ray-workshop\"",
        "entrypoint = \"python -m extras.scripts.scale_data\"",
        "\"pyarrow>=14.0.0\"",
        "image = \"rayproject/ray:2.60.0-py312-cpu\"",
    ] {
        assert!(recipe.contains(want), "{want} missing from:\n{recipe}");
    }
    assert!(!recipe.contains("excludes"), "{recipe}");
    let reqs: Vec<String> = {
        let doc: toml::Table = std::fs::read_to_string(dir.join("pyproject.toml"))
            .unwrap()
            .parse()
            .unwrap();
        doc["project"]["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    lock_matches_uv(&dir, &reqs);

    // On the stand-in, with the output directory the script reads from the environment.
    let out_dir = t.path().join("out");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "image = \"rayproject/ray:2.60.0-py311-cpu\"",
            &format!("image = \"{}\"", service("RAYPACK_TEST_BASE")),
        )
        + &format!(
            "\n[env]\nenv_vars = {{ OUTPUT_DIR = \"{}\" }}\n",
            out_dir.display()
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    std::fs::remove_file(dir.join("pylock.raypack.toml")).unwrap();
    let bundle_and_submit = || submit_bundle(t.path(), &dir, false, &[], "600");

    // The workshop's full set cannot run on this cluster: every codeflare-sdk release pins
    // an older Ray (==2.55.1, ==2.58.0) than the base's 2.60.0, which raypack never swaps.
    let out = bundle_and_submit();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    for want in [
        "codeflare-sdk",
        "ray ==2.55.1",
        "ray ==2.58.0",
        "never replaces it",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert!(!out_dir.exists(), "nothing ran");

    // What upstream's lab submits (its job runtime_env pins pyarrow>=14 and pandas>=2).
    let mut doc: toml::Table = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .parse()
        .unwrap();
    doc["dependencies"]["requirements"] =
        toml::Value::Array(vec!["pyarrow>=14".into(), "pandas>=2".into()]);
    std::fs::write(dir.join("raypack.toml"), toml::to_string(&doc).unwrap()).unwrap();
    let out = bundle_and_submit();
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(err.contains("petal_area"), "{err}");
    assert!(err.contains("Done. Wrote"), "{err}");
    let parquet: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert!(
        !parquet.is_empty(),
        "no Parquet written to {}",
        out_dir.display()
    );
}

/// IBM/data-prep-kit (Apache-2.0), a monorepo: the NOOP transform's Ray project
/// (`transforms/universal/noop/ray`) depends by name on three other projects of the repository
/// (the transform's pure-Python half and the two data-processing libraries), each a src layout
/// of single-file modules or namespace packages. Its input, test1.parquet, has 7 rows.
const DPK: &str = "tests/data/projects/data-prep-kit";
const DPK_NOOP: &str = "transforms/universal/noop/ray";

/// A copy of the monorepo as a git checkout (init finds the repository by `.git`), with the
/// NOOP transform's recipe as `init` wrote it; returns the transform's directory and the recipe.
fn dpk_init() -> (tempfile::TempDir, PathBuf, String) {
    let (t, root) = copy_project(DPK);
    let git = run(std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&root));
    assert!(git.status.success(), "{}", stderr(&git));
    let dir = root.join(DPK_NOOP);
    let recipe = init(&dir);
    (t, dir, recipe)
}

/// The NOOP transform's recipe on the stand-in base, without the project's `ray[default]`
/// pin (Ray comes from the cluster's image): what a user moving it to Ray 2.60 writes.
fn dpk_on_standin(dir: &Path, recipe: &str, extra: &str) {
    let text: String = recipe
        .lines()
        .filter(|l| !l.starts_with("# The Ray that"))
        .map(|l| {
            if l.starts_with("image = ") {
                format!("image = \"{}\"\n", service("RAYPACK_TEST_BASE"))
            } else {
                format!("{}\n", l.replace("\"ray[default]==2.36.1\", ", ""))
            }
        })
        .collect::<String>()
        + extra;
    assert!(!text.contains("2.36.1"), "{text}");
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
}

/// `init` in a monorepo's project: the dependencies that are projects of the repository ship
/// from source as py_modules (src layouts as `src/*`, single-file modules and namespace
/// packages), their own requirements take their place, the base follows the project's Ray pin;
/// `check` accepts it and `lock` agrees with uv on the merged requirements.
#[test]
fn data_prep_kit_monorepo_init_ships_local_projects_and_locks_like_uv() {
    let (_t, dir, recipe) = dpk_init();
    for want in [
        "name = \"dpk-noop-transform-ray\"",
        "py_modules = [\"src/*\", \"../python/src/*\", \"../../../../data-processing-lib/ray/src/*\", \"../../../../data-processing-lib/python/src/*\"]",
        "#   data-prep-toolkit-ray: ../../../../data-processing-lib/ray",
        "#   dpk-noop-transform-python: ../python",
        "requirements = [\"ray[default]==2.36.1\", \"fastapi>=0.110.2\", \"pillow>=10.3.0\", \"numpy < 1.29.0\", \"pyarrow==16.1.0\", \"boto3==1.34.69\", \"argparse\", \"mmh3\", \"psutil\"]",
        "image = \"rayproject/ray:2.36.1-py311-cpu\"",
        "entrypoint = \"python src/noop_local_ray.py\"",
    ] {
        assert!(recipe.contains(want), "{want} missing from:\n{recipe}");
    }
    assert!(!recipe.contains("data-prep-toolkit=="), "{recipe}");
    let out = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "check"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = v["py_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    for want in [
        "noop_transform_ray.py",
        "noop_transform.py",
        "data_processing_ray",
        "data_processing",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let doc: toml::Table = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let reqs: Vec<String> = doc["dependencies"]["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    lock_matches_uv(&dir, &reqs);
}

/// The monorepo project baked on the stand-in: the project's Ray pin is refused with the
/// base's Ray named; without it, the image imports every shipped module (the transform's
/// single-file modules, the namespace package `data_processing_ray`) and passes `pip check`.
#[test]
fn data_prep_kit_monorepo_bakes_and_imports_in_the_image() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let repo_name = format!("{registry}/projects/{}", unique("dpk-noop"));
    let (t, dir, recipe) = dpk_init();
    let image_table = format!("\n[image]\nrepository = \"{repo_name}\"\n");
    let bake = || {
        run(raypack()
            .env("RAYPACK_CACHE_DIR", shared_cache())
            .arg("-C")
            .arg(&dir)
            .args(["--output", "json", "bake", "--push"]))
    };
    let pinned = recipe.replace(
        "image = \"rayproject/ray:2.36.1-py311-cpu\"",
        &format!("image = \"{}\"", service("RAYPACK_TEST_BASE")),
    ) + &image_table;
    std::fs::write(dir.join("raypack.toml"), pinned).unwrap();
    let out = bake();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("ray[default]==2.36.1") || err.contains("ray ==2.36.1"),
        "{err}"
    );
    assert!(err.contains("2.60.0"), "{err}");

    std::fs::remove_file(dir.join("pylock.raypack.toml")).ok();
    dpk_on_standin(&dir, &recipe, &image_table);
    let out = bake();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    let bundle = pull_and_unpack(t.path(), &image);
    let (ok, text) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import noop_transform_ray, noop_transform, data_processing.utils, data_processing_ray.runtime.ray, pyarrow, mmh3; print(\"imports ok\")' && python -m pip check",
    );
    assert!(
        ok && text.contains("imports ok") && text.contains("No broken requirements"),
        "{text}"
    );
}

/// The NOOP transform runs on the real Ray head through the project's own launcher CLI, its
/// modules from py_modules zips and its dependencies from a base-aware bundle, and copies its
/// input to the output folder with the run's metadata (the launcher exits 0 even when the
/// transform fails, so the output is what is checked).
#[test]
fn data_prep_kit_noop_runs_on_ray_from_a_bundle() {
    service("RAYPACK_TEST_RAY"); // the Ray head: missing is a failure before any work
    let (t, dir, recipe) = dpk_init();
    let out_dir = t.path().join("noop-out");
    dpk_on_standin(&dir, &recipe, "");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "entrypoint = \"python src/noop_local_ray.py\"",
            &format!(
                "entrypoint = \"python src/noop_transform_ray.py --run_locally True --data_local_config \\\"{{'input_folder': 'test-data/input', 'output_folder': '{}'}}\\\" --runtime_worker_options \\\"{{'num_cpus': 0.5}}\\\" --runtime_num_workers 1 --noop_sleep_sec 0\"",
                out_dir.display()
            ),
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = submit_bundle(t.path(), &dir, true, &[], "600");
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["runtime_env"]["py_modules"].as_array().unwrap().len(),
        11,
        "10 modules and the bundle: {v}"
    );
    let written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap_or_else(|e| panic!("no output in {}: {e}\n{err}", out_dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        written.contains(&"test1.parquet".to_string())
            && written.contains(&"metadata.json".to_string()),
        "{written:?}\n{err}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["job details"]["status"], "success", "{meta}");
    assert_eq!(meta["job_output_stats"]["result_files"], 1, "{meta}");
    // The input's 7 rows (upstream's test1.parquet), all copied.
    assert_eq!(meta["job_output_stats"]["source_doc_count"], 7, "{meta}");
    assert_eq!(meta["job_output_stats"]["result_doc_count"], 7, "{meta}");
}
