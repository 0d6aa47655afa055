//! `raypack bake` on the stand-in rayproject base (built by scripts/lib/standin.sh, pushed to
//! the harness registry): push, read back with skopeo, unpack with umoci, run in bubblewrap.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// examples/hello with a recipe pointing at the stand-in base and a fresh repository.
fn project(repo_tag: &str) -> (tempfile::TempDir, PathBuf, String) {
    hello_pushing(
        repo_tag,
        &service("RAYPACK_TEST_BASE"),
        "",
        "env = { MODE = \"prod\" }",
    )
}

fn bake(dir: &Path, args: &[&str]) -> std::process::Output {
    let cache = dir.parent().unwrap().join("blob-cache");
    // examples/hello's requirements are unpinned: its code runs on the base's packages.
    run(raypack()
        .env("RAYPACK_CACHE_DIR", cache)
        .arg("-C")
        .arg(dir)
        .args(["bake", "--skip-deps"])
        .args(args))
}

const SITE_PACKAGES: &str = "rootfs/home/ray/anaconda3/lib/python3.11/site-packages";

/// dist-info directories of `name` (normalized prefix match) in an unpacked site-packages.
fn dist_infos(sp: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".dist-info") && n.to_lowercase().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Completed blob uploads to `repo` (path after the registry) in the registry's access log.
fn uploads(repo_path: &str) -> usize {
    let log = std::fs::read_to_string(service("RAYPACK_TEST_REGISTRY_LOG")).unwrap_or_default();
    log.lines()
        .filter(|l| {
            l.contains(&format!("\"PUT /v2/{repo_path}/blobs/uploads/")) && l.contains("\" 201 ")
        })
        .count()
}

#[test]
fn baked_image_runs_the_entrypoint_in_a_sandbox() {
    let (t, dir, repo) = project("run");
    let out = bake(&dir, &["--push", "--emit", "rayjob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    let (ok, report) = validate_kuberay(&yaml);
    assert!(ok, "{report}\n{yaml}");
    let doc: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    let rcs = &doc["spec"]["rayClusterSpec"];
    let image = rcs["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(image.starts_with(&format!("{repo}@sha256:")), "{image}");
    assert_eq!(
        rcs["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"],
        image
    );
    assert_eq!(
        doc["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"],
        image
    );
    assert_eq!(
        rcs["rayVersion"], "2.60.0",
        "from the base's io.ray.ray-version label"
    );
    assert!(dir.join("raypack.lock").is_file(), "the base is pinned");

    // skopeo reads it by digest; umoci unpacks it.
    let bundle = pull_and_unpack(t.path(), &image);
    let rootfs = bundle.join("rootfs");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(rootfs.join("home/ray/app/main.py")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (1000, 100),
        "code owned by the base's user"
    );
    assert!(
        rootfs
            .join("home/ray/app/.raypack/py_modules/common/greeting.py")
            .is_file()
    );
    let home = std::fs::metadata(rootfs.join("home/ray")).unwrap();
    assert_eq!(
        (home.uid(), home.gid()),
        (1000, 100),
        "the base's /home/ray keeps its owner"
    );

    // Run the [cluster] entrypoint as uid 1000 with the image config's Env and WorkingDir.
    let rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let env: Vec<String> = rt["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let cwd = rt["process"]["cwd"].as_str().unwrap().to_string();
    assert_eq!(cwd, "/home/ray/app");
    assert!(env.iter().any(|e| e == "MODE=prod"), "{env:?}");
    let mut env = env;
    env.extend([
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0".to_string(),
        "RAY_USAGE_STATS_ENABLED=0".to_string(),
    ]);
    let (ok, text) = sandbox_with(t.path(), &bundle, &cwd, &env, "python main.py");
    assert!(ok, "{text}");
    assert!(text.contains("hello, RAYPACK! (common v1)"), "{text}");
}

#[test]
fn bakes_are_reproducible_and_an_edit_changes_only_the_code_layer() {
    let (_t1, d1, repo) = project("repro");
    let (_t2, d2, _) = project("repro2");
    // Same repository in both recipes; different mtimes and modes on the second copy.
    let r1 = std::fs::read_to_string(d1.join("raypack.toml")).unwrap();
    std::fs::write(d2.join("raypack.toml"), &r1).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5_000_000);
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
    let json = |d: &Path, args: &[&str]| -> serde_json::Value {
        let cache = d.parent().unwrap().join("blob-cache");
        let out = run(raypack()
            .env("RAYPACK_CACHE_DIR", cache)
            .arg("-C")
            .arg(d)
            .args(["--output", "json", "bake", "--skip-deps"])
            .args(args));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a = json(&d1, &["--push"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = json(&d2, &[]);
    assert_eq!(
        a["bake"]["digest"], b["bake"]["digest"],
        "same inputs, same image digest"
    );
    let repo_path = repo.split_once('/').unwrap().1.to_string();
    let before = uploads(&repo_path);
    // One edit: only the code layer changes, and only it and the config are uploaded.
    std::fs::write(
        d1.join("helpers.py"),
        "def shout(n):\n    return n.title()\n",
    )
    .unwrap();
    let c = json(&d1, &["--push"]);
    let la: Vec<&serde_json::Value> = a["bake"]["layers"].as_array().unwrap().iter().collect();
    let lc: Vec<&serde_json::Value> = c["bake"]["layers"].as_array().unwrap().iter().collect();
    assert_eq!(la.len(), lc.len());
    assert_eq!(
        la[..la.len() - 1],
        lc[..lc.len() - 1],
        "base layers unchanged"
    );
    assert_ne!(la.last(), lc.last(), "code layer changed");
    assert_eq!(c["bake"]["pushed"]["uploaded"], 2, "code layer + config");
    // The image's two, and the new image's SBOM (its referrer's empty config is already there).
    assert_eq!(c["bake"]["sbom"].as_array().unwrap().len(), 1);
    assert_eq!(
        uploads(&repo_path) - before,
        3,
        "registry saw exactly three blob uploads"
    );
}

#[test]
fn emitted_manifests_validate_and_pin_one_digest() {
    let (_t, dir, repo) = project("emit");
    let mut text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    text.push_str("serve = { import_path = \"serve_app:app\" }\n");
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    std::fs::copy(
        common::repo().join("examples/hello-serve/serve_app.py"),
        dir.join("serve_app.py"),
    )
    .unwrap();
    for emit in ["raycluster", "rayjob", "rayservice"] {
        let out = bake(&dir, &["--emit", emit]);
        assert!(out.status.success(), "{emit}: {}", stderr(&out));
        let yaml = stdout(&out);
        let (ok, report) = validate_kuberay(&yaml);
        assert!(ok, "{emit}: {report}\n{yaml}");
        let images: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert!(images.len() >= 2, "{yaml}");
        assert!(
            images
                .iter()
                .all(|i| *i == images[0] && i.starts_with(&format!("{repo}@sha256:"))),
            "{images:?}"
        );
    }
    let out = bake(&dir, &["--emit", "helm-values"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_norway::from_str(&stdout(&out)).unwrap();
    assert!(v["image"]["tag"].as_str().unwrap().starts_with("sha256:"));

    // The prepull DaemonSet: valid against Kubernetes' own apps/v1 schema (kubernetes-validate,
    // strict: no unknown fields), pulling the image by the same digest.
    let out = bake(&dir, &["--emit", "prepull"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    let file = dir.join("prepull.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let validator = std::path::Path::new(&service("RAYPACK_TEST_UV"))
        .parent()
        .unwrap()
        .join("kubernetes-validate");
    let check = run(Command::new(validator).arg("--strict").arg(&file));
    assert!(
        check.status.success()
            && format!("{}{}", stdout(&check), stderr(&check))
                .contains(" passed for resource daemonset/"),
        "{}{}\n{yaml}",
        stdout(&check),
        stderr(&check)
    );
    let ds: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(ds["kind"], "DaemonSet");
    let init = ds["spec"]["template"]["spec"]["initContainers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(init.starts_with(&format!("{repo}@sha256:")), "{init}");
    assert_eq!(
        ds["spec"]["template"]["spec"]["tolerations"][0]["operator"],
        "Exists"
    );
}

#[test]
fn tar_and_layout_outputs_are_readable() {
    let (t, dir, _) = project("outputs");
    let tarball = t.path().join("img.tar");
    let layout = t.path().join("layout");
    let out = bake(
        &dir,
        &[
            "--tar",
            tarball.to_str().unwrap(),
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = stdout(&out).trim().rsplit('@').next().unwrap().to_string();
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", layout.display())]);
    assert_eq!(raypack::oci::sha256_digest(&raw.stdout), digest);
    let cfg = skopeo(&[
        "inspect",
        "--config",
        &format!("docker-archive:{}", tarball.display()),
    ]);
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    assert_eq!(cfg["config"]["WorkingDir"], "/home/ray/app");
    assert_eq!(
        cfg["config"]["Labels"]["io.ray.ray-version"], "2.60.0",
        "base labels kept"
    );
    assert!(
        cfg["config"]["Labels"]["org.opencontainers.image.base.digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // The SBOM (SPDX by default) beside each output, naming this image.
    for beside in [
        t.path().join("img.tar.spdx.json"),
        t.path().join("layout.spdx.json"),
    ] {
        let sbom: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&beside).unwrap()).unwrap();
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3", "{}", beside.display());
        assert_eq!(
            sbom["packages"][0]["versionInfo"],
            serde_json::json!(digest)
        );
    }
}

#[test]
fn bad_bases_fail_clearly_and_push_nothing() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let (_t, dir, repo) = project("bad");
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    let base = service("RAYPACK_TEST_BASE");
    let manifest_exists = |r: &str| {
        let (host_repo, _) = r.split_once('@').unwrap_or((r, ""));
        let path = host_repo.split_once('/').unwrap().1;
        let url = format!("http://{registry}/v2/{path}/tags/list");
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout) == "200")
            .unwrap_or(false)
    };
    for (bad_base, want) in [
        (
            format!("{registry}/raypack-test/no-such-base:1.0"),
            "not found",
        ),
        (
            "127.0.0.1:9/rayproject/ray:2.60.0-py311-cpu".to_string(),
            "127.0.0.1:9/rayproject/ray",
        ),
    ] {
        std::fs::write(dir.join("raypack.toml"), text.replace(&base, &bad_base)).unwrap();
        let _ = std::fs::remove_file(dir.join("raypack.lock"));
        let out = bake(&dir, &["--push"]);
        assert_eq!(out.status.code(), Some(1), "{bad_base}");
        assert!(stderr(&out).contains(want), "{bad_base}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert!(!manifest_exists(&repo), "something was pushed to {repo}");
    }
    // A base for another platform, with no tag for this one: the stand-in's arm64 tag asked
    // for amd64 (the catalog knows only `-aarch64` tags for arm64; an amd64 base tag asked for
    // arm64 finds its `-aarch64` twin, tests/multiarch.rs).
    std::fs::write(
        dir.join("raypack.toml"),
        text.replace(
            &service("RAYPACK_TEST_BASE"),
            &service("RAYPACK_TEST_BASE_ARM64"),
        ),
    )
    .unwrap();
    let out = bake(&dir, &["--push", "--platform", "linux/amd64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("built for linux/arm64, not linux/amd64"),
        "{}",
        stderr(&out)
    );
    assert!(!manifest_exists(&repo));
    // A base that is not a Ray image: no Python raypack can find, not in the catalog.
    let t = tempfile::tempdir().unwrap();
    let cache = raypack::cache::BlobCache::new(t.path());
    let tar = t.path().join("l.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/hi", &b"hi"[..]).unwrap();
        b.finish().unwrap();
    }
    let (blob, diff) =
        raypack::oci::image::gzip_layer(&tar, raypack::oci::media::Family::Oci, &cache).unwrap();
    let cfg = raypack::oci::image::minimal_config(
        &raypack::oci::media::Platform::parse("linux/amd64").unwrap(),
        &[diff],
    );
    let img = raypack::oci::image::Image::assemble(
        raypack::oci::media::Family::Oci,
        &cfg,
        vec![blob],
        None,
        &cache,
    )
    .unwrap();
    let nopy = format!("{registry}/raypack-test/{}:1", unique("nopython"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(
        raypack::oci::client::Registry::new(Default::default())
            .unwrap()
            .push_image(
                &raypack::oci::reference::Reference::parse(&nopy).unwrap(),
                &img,
                &["1".into()],
                &[],
            ),
    )
    .unwrap();
    std::fs::write(dir.join("raypack.toml"), text.replace(&base, &nopy)).unwrap();
    let _ = std::fs::remove_file(dir.join("raypack.lock"));
    let out = bake(&dir, &["--push"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in raypack's catalog") && stderr(&out).contains("[base]"),
        "{}",
        stderr(&out)
    );
    assert!(!manifest_exists(&repo));
}

#[test]
fn pinned_dependencies_are_installed_as_their_own_layer_and_work() {
    let (t, dir, repo) = project("deps");
    // A PEP 751 lock with real PyPI wheels: a console script, a PEP 420 namespace package and
    // its dependency.
    use_pypi_pylock(
        &dir,
        &[
            ("tabulate", "0.9.0"),
            ("jaraco.functools", "4.1.0"),
            ("more-itertools", "10.5.0"),
        ],
    );
    let cache = t.path().join("blob-cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    assert!(image.starts_with(&repo));
    let layers = v["bake"]["layers"].as_array().unwrap().len();
    assert_eq!(layers, 3, "base + dependencies + code");

    // Bake again: the dependency layer comes from the cache, byte-identical.
    let again = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake"]));
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["bake"]["digest"], v["bake"]["digest"]);

    // Another machine (an empty cache) pushing the same wheels: the first push recorded the
    // plan in the shared layer cache (the target repository), so nothing is downloaded.
    let elsewhere = t.path().join("other-cache");
    let third = run(raypack()
        .env("RAYPACK_CACHE_DIR", &elsewhere)
        .arg("-v")
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push"]));
    assert!(third.status.success(), "{}", stderr(&third));
    let x: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(x["bake"]["digest"], v["bake"]["digest"]);
    assert_eq!(
        x["bake"]["dependencies"]["shared_cache"]["plan_hit"], true,
        "{x}"
    );
    assert!(
        !elsewhere.join("fragments").exists(),
        "no wheel was installed on the second machine"
    );

    // Without the shared cache (`--cache none`): the dependency layer is fetched from the
    // image already at the target, not installed and compressed again.
    let fourth_cache = t.path().join("fourth-cache");
    let fourth = run(raypack()
        .env("RAYPACK_CACHE_DIR", &fourth_cache)
        .arg("-v")
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--cache", "none"]));
    assert!(fourth.status.success(), "{}", stderr(&fourth));
    let y: serde_json::Value = serde_json::from_slice(&fourth.stdout).unwrap();
    assert_eq!(y["bake"]["digest"], v["bake"]["digest"]);
    assert!(
        stderr(&fourth).contains("reusing the published layer of"),
        "{}",
        stderr(&fourth)
    );
    assert!(y["bake"]["dependencies"]["shared_cache"].is_null(), "{y}");
    assert!(
        !fourth_cache.join("fragments").exists(),
        "no wheel was installed on the third machine"
    );

    let bundle = pull_and_unpack(t.path(), &image);
    let sp = bundle.join("rootfs/home/ray/anaconda3/lib/python3.11/site-packages");
    assert_eq!(
        std::fs::read_to_string(sp.join("tabulate-0.9.0.dist-info/INSTALLER")).unwrap(),
        "raypack\n"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(sp.join("jaraco/functools/__init__.py")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 100));
    let script =
        std::fs::read_to_string(bundle.join("rootfs/home/ray/anaconda3/bin/tabulate")).unwrap();
    assert!(
        script.starts_with("#!/home/ray/anaconda3/bin/python\n"),
        "{script}"
    );

    let check = "python -c 'import tabulate, jaraco.functools, more_itertools; print(\"imports ok\")' && tabulate --help > /dev/null && echo 'script ok' && python -m pip check";
    let (ok, text) = sandbox(t.path(), &bundle, check);
    assert!(ok, "{text}");
    assert!(
        text.contains("imports ok")
            && text.contains("script ok")
            && text.contains("No broken requirements"),
        "{text}"
    );
}

#[test]
fn unpinned_requirements_are_locked_against_the_base_and_kept_from_it() {
    // examples/hello asks for `requests>=2.31`; the stand-in base ships a newer requests.
    let (_t, dir, _repo) = project("unpinned");
    let cache = dir.parent().unwrap().join("c");
    let bake = || {
        run(raypack()
            .env("RAYPACK_CACHE_DIR", &cache)
            .arg("-C")
            .arg(&dir)
            .args(["--output", "json", "bake"]))
    };
    let out = bake();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("locked the requirements into pylock.raypack.toml (commit it)"),
        "{}",
        stderr(&out)
    );
    let lock = std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap();
    let base_requests = standin_version("requests");
    assert!(
        lock.contains(&format!(
            "name = \"requests\"\nversion = \"{base_requests}\""
        )),
        "{lock}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&str> = v["bake"]["dependencies"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&"requests"), "{v}");
    assert!(
        v["bake"]["dependencies"]["installed"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{v}"
    );
    // Unchanged requirements: the lock is used as it is.
    let again = bake();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("locked the requirements")
            && !stderr(&again).contains("re-locked"),
        "{}",
        stderr(&again)
    );
    // Users commit the lock files: not 0600 like a temp file.
    use std::os::unix::fs::PermissionsExt;
    for f in ["pylock.raypack.toml", "raypack.lock"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap(),
        lock
    );
}

#[test]
fn acceptance_set_installs_what_the_base_lacks_and_runs() {
    let (t, dir, repo) = project("accept");
    // uv-compiled, hashed: requests, pyyaml, numpy, pydantic, click, jaraco.* (namespace),
    // ruff (.data/scripts) and their dependencies.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/acceptance/requirements.txt"),
        dir.join("requirements.txt"),
    )
    .unwrap();
    let cache = t.path().join("blob-cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--explain"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deps = &v["bake"]["dependencies"];
    let names = |k: &str| -> Vec<String> {
        deps[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The stand-in base ships Ray 2.60's dependencies: these pins match its versions.
    let base = standin_pins();
    let reqs = std::fs::read_to_string(dir.join("requirements.txt")).unwrap();
    for kept in ["click", "requests", "pyyaml", "pydantic", "pydantic-core"] {
        assert!(
            reqs.contains(&format!("\n{kept}=={} ", base[kept])),
            "tests/data/acceptance/requirements.txt must pin {kept} at the stand-in's {} \
             (scripts/locks/standin.txt)",
            base[kept]
        );
    }
    for kept in ["click", "requests", "pyyaml", "pydantic", "pydantic-core"] {
        assert!(names("kept").contains(&kept.to_string()), "{deps}");
    }
    for new in ["numpy", "ruff", "jaraco-functools", "jaraco-context"] {
        assert!(names("installed").contains(&new.to_string()), "{deps}");
    }
    assert!(names("replaced").is_empty(), "{deps}");
    let explain = stderr(&out);
    assert!(
        explain.contains("kept from the base (") && explain.contains("numpy 2.4.6"),
        "{explain}"
    );
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    assert!(image.starts_with(&repo));

    let bundle = pull_and_unpack(t.path(), &image);
    let sp = bundle.join(SITE_PACKAGES);
    // Kept means not installed again: one click, the base's.
    let click = format!("click-{}.dist-info", base["click"]);
    assert_eq!(dist_infos(&sp, "click-"), vec![click.clone()]);
    assert_ne!(
        std::fs::read_to_string(sp.join(&click).join("INSTALLER")).unwrap_or_default(),
        "raypack\n"
    );
    let check = "python -c 'import requests, yaml, numpy, pydantic, click, jaraco.functools, jaraco.context, more_itertools; numpy.ones(3).sum(); print(\"imports ok\")' && ruff --version && normalizer --version && python -m pip check";
    let (ok, text) = sandbox(t.path(), &bundle, check);
    assert!(ok, "{text}");
    assert!(
        text.contains("imports ok")
            && text.contains("ruff 0.17.6")
            && text.contains("No broken requirements"),
        "{text}"
    );
}

#[test]
fn downgrading_a_base_package_leaves_one_version_visible() {
    let (t, dir, _repo) = project("downgrade");
    use_pypi_pylock(&dir, &[("click", "8.1.7")]);
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("blob-cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["bake"]["dependencies"]["replaced"][0];
    assert_eq!(
        (r["name"].as_str(), r["from"].as_str(), r["to"].as_str()),
        (
            Some("click"),
            Some(standin_version("click").as_str()),
            Some("8.1.7")
        ),
        "{v}"
    );
    assert!(r["whiteouts"].as_u64().unwrap() > 1, "{r}");

    let bundle = pull_and_unpack(t.path(), v["bake"]["reference"].as_str().unwrap());
    let sp = bundle.join(SITE_PACKAGES);
    assert_eq!(dist_infos(&sp, "click-"), vec!["click-8.1.7.dist-info"]);
    let check = "python -c 'import importlib.metadata as m, click; vs = [d.version for d in m.distributions() if d.metadata[\"Name\"].lower() == \"click\"]; assert vs == [\"8.1.7\"], vs; assert m.version(\"click\") == \"8.1.7\"; print(\"one click\")' && python -m pip check";
    let (ok, text) = sandbox(t.path(), &bundle, check);
    assert!(ok, "{text}");
    assert!(
        text.contains("one click") && text.contains("No broken requirements"),
        "{text}"
    );
}

/// Bakes `requirements` (unpinned: bake locks them against the stand-in's installed
/// distributions) onto the stand-in base, then inside the sandbox imports `modules` and runs
/// `pip check`.
fn lock_bake_and_check(tag: &str, requirements: &[&str], modules: &[&str]) {
    let (t, dir, _repo) = project(tag);
    let list = requirements
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            &format!("requirements = [{list}]"),
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--explain"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundle = pull_and_unpack(t.path(), v["bake"]["reference"].as_str().unwrap());
    let check = format!(
        "python -c 'import {}; print(\"imports ok\")' && python -m pip check",
        modules.join(", ")
    );
    let (ok, text) = sandbox(t.path(), &bundle, &check);
    assert!(
        ok && text.contains("imports ok") && text.contains("No broken requirements"),
        "{}\n{text}",
        stderr(&out)
    );
}

#[test]
fn locked_web_stack_bakes_and_passes_pip_check() {
    lock_bake_and_check(
        "lock-web",
        &["requests>=2.31", "fastapi", "uvicorn[standard]", "httpx"],
        &["requests", "fastapi", "uvicorn", "httpx", "uvloop"],
    );
}

#[test]
fn locked_data_stack_bakes_and_passes_pip_check() {
    lock_bake_and_check(
        "lock-data",
        &["pandas>=2", "pyarrow", "polars", "fsspec"],
        &["pandas", "pyarrow", "polars", "fsspec"],
    );
}

#[test]
fn locked_ml_stack_bakes_and_passes_pip_check() {
    lock_bake_and_check(
        "lock-ml",
        &["scikit-learn", "xgboost"],
        &["sklearn", "xgboost"],
    );
}

#[test]
fn locked_extras_and_markers_bake_and_pass_pip_check() {
    lock_bake_and_check(
        "lock-extras",
        &[
            "requests[socks]",
            "pydantic[email]>=2",
            "tomli; python_version < '3.11'",
            "uvloop; sys_platform == 'linux'",
            "colorama; platform_system == 'Windows'",
        ],
        &["requests", "socks", "pydantic", "email_validator", "uvloop"],
    );
}

#[test]
fn locked_set_replacing_rays_pins_bakes_and_passes_pip_check() {
    lock_bake_and_check(
        "lock-ray",
        &["ray[default]==2.60.0", "pydantic>=2.5,<2.10", "protobuf<6"],
        &["ray", "pydantic", "google.protobuf"],
    );
}

/// Issue 14 #3: with no [image] tags, the push still tags the image (registries collect
/// untagged manifests): `raypack-` + 16 hex of its digest, said on stderr, and skopeo can
/// inspect it by that tag.
#[test]
fn a_push_without_tags_gets_a_tag_from_the_digest() {
    let (_t, dir, repo) = project("notags");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("tags = [\"v1\"]\n", "");
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = bake(&dir, &["--push", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = v["bake"]["digest"].as_str().unwrap().to_string();
    let tag = format!("raypack-{}", &digest.trim_start_matches("sha256:")[..16]);
    assert_eq!(
        v["bake"]["pushed"]["tags"][0].as_str(),
        Some(tag.as_str()),
        "{v}"
    );
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{repo}:{tag}"),
    ]);
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(meta["Digest"].as_str(), Some(digest.as_str()));
    // The text form says which tag it chose and why.
    let out = bake(&dir, &["--push"]);
    assert!(
        stderr(&out).contains(&format!("tag {tag} (no [image] tags")),
        "{}",
        stderr(&out)
    );
}

/// Issue 23 #1: with `[dependencies] replace_ray = true` the image runs the locked Ray, and the
/// printed rayVersion and the image's io.ray.ray-version label follow it (they named the base's
/// Ray while `ray --version` printed another).
#[test]
fn a_replaced_ray_is_what_rayversion_and_the_label_name() {
    let (t, dir, _repo) = project("replace-ray");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            "requirements = [\"ray==2.55.1\"]\nreplace_ray = true",
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("blob-cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--emit", "rayjob"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bake"]["ray_version"].as_str(), Some("2.55.1"), "{v}");
    assert_eq!(
        v["manifest"]["spec"]["rayClusterSpec"]["rayVersion"].as_str(),
        Some("2.55.1"),
        "{v}"
    );
    let image = v["bake"]["reference"].as_str().unwrap().to_string();
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    let meta: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        meta["Labels"]["io.ray.ray-version"].as_str(),
        Some("2.55.1"),
        "{meta}"
    );
    let bundle = pull_and_unpack(t.path(), &image);
    let (ok, text) = sandbox(t.path(), &bundle, "ray --version");
    assert!(ok && text.contains("2.55.1"), "{text}");
}

/// Issue 20: `[image] compression = "zstd"` on a base whose own layers are zstd (the stand-in
/// recompressed by skopeo): the base's installed set is read through its zstd layer, every
/// layer bake adds is `tar+zstd` and decodes with the `zstd` tool to its diff_id, skopeo
/// converts the image back to gzip for umoci and the sandbox runs it, and the digest is
/// reproducible.
#[test]
fn zstd_layers_on_a_zstd_base_decode_unpack_and_run() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let zbase = format!(
        "{registry}/zstd-{}/rayproject/ray:2.60.0-py311-cpu",
        unique("b")
    );
    let (t, dir, repo) = project("zstd");
    // Recompressed into a layout (a registry-to-registry copy would reuse the gzip blob).
    let zlayout = t.path().join("zstd-base");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-compress",
        "--dest-compress-format",
        "zstd",
        &format!("docker://{}", service("RAYPACK_TEST_BASE")),
        &format!("oci:{}:base", zlayout.display()),
    ]);
    assert!(out.status.success());
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:base", zlayout.display()),
        &format!("docker://{zbase}"),
    ]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(&service("RAYPACK_TEST_BASE"), &zbase)
        .replace(
            "tags = [\"v1\"]",
            "tags = [\"v1\"]\ncompression = \"zstd\"\ncompression_level = 9",
        );
    assert!(
        text.contains("compression = \"zstd\"") && text.contains(&zbase),
        "{text}"
    );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    std::fs::copy(
        common::repo().join("tests/data/acceptance/requirements.txt"),
        dir.join("requirements.txt"),
    )
    .unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = v["bake"]["digest"].as_str().unwrap().to_string();
    // The base's click is kept: its installed set was read through its zstd layer.
    let kept = v["bake"]["dependencies"]["kept"].to_string();
    assert!(kept.contains("\"click\""), "{kept}");

    // Every layer is zstd (the base's, recompressed, and raypack's).
    let layout = t.path().join("as-pushed");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{repo}:v1"),
        &format!("oci:{}:img", layout.display()),
    ]);
    assert!(out.status.success());
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(layers.len() >= 3, "{manifest}");
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{manifest}"
        );
        // The zstd tool, an independent decoder, gives the config's diff_id.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc {} | sha256sum",
                blob(l["digest"].as_str().unwrap()).display()
            ))
            .output()
            .unwrap();
        let sum = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            format!("sha256:{}", sum.split_whitespace().next().unwrap_or("")),
            config["rootfs"]["diff_ids"][i].as_str().unwrap(),
            "layer {i}"
        );
    }

    // umoci reads gzip only: skopeo (containers/image) decodes the zstd layers into gzip.
    let gz = t.path().join("gz");
    let out = skopeo(&[
        "copy",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:img", layout.display()),
        &format!("oci:{}:img", gz.display()),
    ]);
    assert!(out.status.success());
    let bundle = t.path().join("bundle");
    unpack(&gz, "img", &bundle);
    let (ok, text) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import requests, yaml, numpy, pydantic, jaraco.functools; print(\"imports ok\")' && ruff --version && python -m pip check",
    );
    assert!(
        ok && text.contains("imports ok") && text.contains("No broken requirements"),
        "{text}"
    );

    // Reproducible: from a fresh cache, the same digest.
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache2"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--oci-layout"])
        .arg(t.path().join("again")));
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["bake"]["digest"].as_str().unwrap(), digest);
}
