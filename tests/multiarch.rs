//! Issue 17: one `raypack bake` gives a linux/amd64 + linux/arm64 image index, built on an
//! amd64 host without QEMU or Docker. The bases are the stand-in for rayproject/ray and its
//! arm64 twin (scripts/lib/standin.sh: the same pins, aarch64 wheels), pushed as rayproject
//! publishes them — one tag per architecture (`…-aarch64`) — and, under another tag, as one
//! multi-platform index. The arm64 image's Python runs under qemu-aarch64-static (user-mode
//! emulation, started directly: no binfmt_misc).

mod common;
use common::*;

use std::path::{Path, PathBuf};

const PLATFORMS: &str = "platforms = [\"linux/amd64\", \"linux/arm64\"]";

/// examples/hello on `base` for both platforms, pushing to a fresh repository, with the
/// acceptance requirement set (hashed; numpy, ruff, jaraco.*, pydantic, …).
fn project(tag: &str, base: &str) -> (tempfile::TempDir, PathBuf, String) {
    let (t, dir, repository) = hello_pushing(tag, base, PLATFORMS, "");
    std::fs::copy(
        repo().join("tests/data/acceptance/requirements.txt"),
        dir.join("requirements.txt"),
    )
    .unwrap();
    (t, dir, repository)
}

fn bake(dir: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    run(raypack()
        .env("RAYPACK_CACHE_DIR", cache)
        .arg("-C")
        .arg(dir)
        .args(["--output", "json", "bake"])
        .args(args))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The ELF machine of every `.so` under `dir` (e_machine: 62 x86-64, 183 aarch64).
fn elf_machines(dir: &Path) -> std::collections::BTreeMap<u16, usize> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.to_string_lossy().contains(".so") {
                let bytes = std::fs::read(&p).unwrap();
                if bytes.len() > 20 && &bytes[..4] == b"\x7fELF" {
                    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
                    *out.entry(machine).or_default() += 1;
                }
            }
        }
    }
    out
}

/// `skopeo copy --override-arch ARCH` of the index, unpacked with umoci.
fn pull_arch(tmp: &Path, image: &str, arch: &str) -> PathBuf {
    let layout = tmp.join(format!("pulled-{arch}"));
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--override-arch",
        arch,
        &format!("docker://{image}"),
        &format!("oci:{}:img", layout.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = tmp.join(format!("bundle-{arch}"));
    unpack(&layout, "img", &bundle);
    bundle
}

const SITE_PACKAGES: &str = "rootfs/home/ray/anaconda3/lib/python3.11/site-packages";
const IMPORTS: &str = "import requests, yaml, numpy, pydantic, click, jaraco.functools, more_itertools, platform; numpy.ones(3).sum(); print('imports ok', platform.machine())";

/// qemu-aarch64-static, which the harness installs (required in CI).
fn qemu() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/qemu-aarch64-static");
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "qemu-aarch64-static is missing (scripts/services install adds qemu-user-static)"
    );
    None
}

/// Runs the arm64 image's Python under user-mode emulation in the sandbox: qemu is bound
/// into /tmp and started directly on the image's interpreter, with the image's environment.
fn sandbox_arm64(tmp: &Path, bundle: &Path, qemu: &Path, code: &str) -> (bool, String) {
    sandbox_exec(
        tmp,
        bundle,
        "/home/ray/app",
        &image_env(bundle),
        &[(qemu, "/tmp/qemu-aarch64")],
        &[
            "/tmp/qemu-aarch64",
            "/home/ray/anaconda3/bin/python",
            "-c",
            code,
        ],
    )
}

/// The acceptance set baked for both platforms from rayproject-style per-architecture base
/// tags: one index whose entries skopeo pulls per architecture; each platform's native code
/// is its own architecture's; the code layer is one blob in both; the amd64 image runs in the
/// sandbox and the arm64 one under emulation; the same inputs give the same index digest.
#[test]
fn acceptance_set_bakes_into_one_amd64_and_arm64_index() {
    let (t, dir, repo) = project("multi", &service("RAYPACK_TEST_BASE"));
    let cache = t.path().join("cache");
    let out = bake(&dir, &cache, &["--push", "--explain"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["bake"];
    let digest = b["digest"].as_str().unwrap();
    assert_eq!(b["reference"], format!("{repo}@{digest}"));
    let platforms = b["platforms"].as_array().unwrap();
    let by_platform: std::collections::BTreeMap<&str, &serde_json::Value> = platforms
        .iter()
        .map(|p| (p["platform"].as_str().unwrap(), p))
        .collect();
    assert_eq!(
        by_platform.keys().copied().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(
        by_platform["linux/arm64"]["base_tag"], "2.60.0-py311-cpu-aarch64",
        "{b}"
    );
    assert_ne!(
        by_platform["linux/amd64"]["base_digest"],
        by_platform["linux/arm64"]["base_digest"]
    );
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(
            err.contains(&format!("{p}:")),
            "--explain per platform:\n{err}"
        );
        let installed: Vec<&str> = by_platform[p]["dependencies"]["installed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert!(
            installed.contains(&"numpy") && installed.contains(&"ruff"),
            "{p}: {installed:?}"
        );
    }
    // Each platform's SBOM refers to that platform's manifest: listed under the referrers tag
    // of its digest (this registry has no referrers API), as an artifact whose subject it is.
    for p in platforms {
        let sbom = &p["sbom"][0];
        let referrer = sbom["referrer"].as_str().unwrap();
        let tag = sbom["attached"]["tag_schema"]
            .as_str()
            .unwrap_or_else(|| panic!("{sbom}"));
        assert_eq!(tag, p["digest"].as_str().unwrap().replacen(':', "-", 1));
        let (_, listing) = inspect_raw(&format!("{repo}:{tag}"));
        assert!(listing.to_string().contains(referrer), "{listing}");
        let (_, artifact) = inspect_raw(&format!("{repo}@{referrer}"));
        assert_eq!(artifact["subject"]["digest"], p["digest"], "{artifact}");
        assert_eq!(artifact["artifactType"], "application/spdx+json");
    }
    // raypack.lock: a pin per platform, the arm64 one naming the tag it came from.
    let lock = std::fs::read_to_string(dir.join("raypack.lock")).unwrap();
    assert_eq!(lock.matches("[[base]]").count(), 2, "{lock}");
    assert!(
        lock.contains("tag = \"2.60.0-py311-cpu-aarch64\""),
        "{lock}"
    );

    // The registry's view: an OCI index under the tag, naming both platform manifests.
    let (bytes, index) = inspect_raw(&format!("{repo}:v1"));
    assert_eq!(sha256(&bytes), digest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (
                "amd64".to_string(),
                by_platform["linux/amd64"]["digest"]
                    .as_str()
                    .unwrap()
                    .to_string()
            ),
            (
                "arm64".to_string(),
                by_platform["linux/arm64"]["digest"]
                    .as_str()
                    .unwrap()
                    .to_string()
            ),
        ]
    );
    // One code layer blob in both manifests (the last layer); the dependency layers differ.
    let layers = |arch: &str| -> Vec<String> {
        let d = &entries.iter().find(|e| e.0 == arch).unwrap().1;
        let (_, m) = inspect_raw(&format!("{repo}@{d}"));
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (amd, arm) = (layers("amd64"), layers("arm64"));
    assert_eq!(amd.last(), arm.last(), "the code layer is shared");
    assert_eq!(amd.last().unwrap(), b["code_layer"].as_str().unwrap());
    assert_ne!(amd[..amd.len() - 1], arm[..arm.len() - 1]);

    // Each architecture pulls its own manifest; its native code is its own.
    let amd_bundle = pull_arch(t.path(), &format!("{repo}:v1"), "amd64");
    let arm_bundle = pull_arch(t.path(), &format!("{repo}:v1"), "arm64");
    let amd_elf = elf_machines(&amd_bundle.join(SITE_PACKAGES));
    let arm_elf = elf_machines(&arm_bundle.join(SITE_PACKAGES));
    assert!(amd_elf.keys().eq([&62u16]), "amd64 image: {amd_elf:?}");
    assert!(arm_elf.keys().eq([&183u16]), "arm64 image: {arm_elf:?}");
    assert!(
        elf_machines(&arm_bundle.join(SITE_PACKAGES).join("numpy"))[&183] > 0,
        "numpy's extensions are aarch64"
    );

    let (ok, text) = sandbox(
        t.path(),
        &amd_bundle,
        &format!("python -c \"{IMPORTS}\" && ruff --version && python -m pip check"),
    );
    assert!(
        ok && text.contains("imports ok x86_64") && text.contains("No broken requirements"),
        "{text}"
    );
    if let Some(qemu) = qemu() {
        let (ok, text) = sandbox_arm64(t.path(), &arm_bundle, &qemu, IMPORTS);
        assert!(ok && text.contains("imports ok aarch64"), "{text}");
    }

    // Reproducible: the same inputs, written as an OCI layout from a fresh cache, give the
    // same index; the layout names the index.
    let layout = t.path().join("layout");
    let out = bake(
        &dir,
        &t.path().join("cache2"),
        &["--oci-layout", layout.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["bake"]["digest"].as_str().unwrap(), digest);
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index_json["manifests"][0]["digest"], digest);
    assert_eq!(
        index_json["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
}

/// A base published as one multi-platform index: each platform's manifest is picked from it
/// and pinned with the index digest; a docker tar (one platform) is refused before anything
/// is built; unpinned requirements are locked once for both platforms and each image gets
/// its own architecture's wheels; the emitted RayJob pins the baked index and passes the CRD
/// validator.
#[test]
fn a_multi_platform_base_index_and_the_kuberay_yaml() {
    let (t, dir, repo) = project("multi-index", &service("RAYPACK_TEST_BASE_MULTI"));
    let cache = t.path().join("cache");
    let out = bake(&dir, &cache, &["--skip-deps", "--tar", "x.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a docker tar holds one platform's image"),
        "{}",
        stderr(&out)
    );

    // Unpinned requirements: one lock for both platforms, each image from its own wheels.
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            "requirements = [\"numpy>=2,<2.5\", \"pyyaml\"]",
        );
    assert!(text.contains("numpy>=2"), "{text}");
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let out = bake(&dir, &cache, &["--push", "--emit", "rayjob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = v["bake"]["digest"].as_str().unwrap();
    let pylock = std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap();
    assert!(
        pylock.contains("manylinux_2_28_x86_64.whl") || pylock.contains("manylinux_2_17_x86_64"),
        "{pylock}"
    );
    assert!(pylock.contains("aarch64.whl"), "{pylock}");
    let platforms = v["bake"]["platforms"].as_array().unwrap();
    for p in platforms {
        let installed = p["dependencies"]["installed"].to_string();
        assert!(
            installed.contains("\"numpy\""),
            "{}: {installed}",
            p["platform"]
        );
    }
    let layers = |i: usize| platforms[i]["layers"].as_array().unwrap().clone();
    let (amd, arm) = (layers(0), layers(1));
    assert_eq!(amd.last(), arm.last(), "one code layer");
    assert_ne!(
        amd[amd.len() - 2],
        arm[arm.len() - 2],
        "each platform's own numpy"
    );
    let lock: toml::Table = std::fs::read_to_string(dir.join("raypack.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let pins = lock["base"].as_array().unwrap();
    assert_eq!(pins.len(), 2);
    assert_eq!(pins[0]["index_digest"], pins[1]["index_digest"]);
    assert_ne!(pins[0]["digest"], pins[1]["digest"]);
    assert!(pins.iter().all(|p| p.get("tag").is_none()), "{pins:?}");

    let yaml = raypack::spec::to_yaml(&v["manifest"]);
    assert!(yaml.contains(&format!("{repo}@{digest}")), "{yaml}");
    let (ok, text) = validate_kuberay(&yaml);
    assert!(ok, "{text}\n{yaml}");
}

/// A lock that has a wheel for amd64 only: the arm64 build fails naming the package, its
/// version and the platform, and nothing is pushed.
#[test]
fn a_wheel_missing_for_arm64_is_an_error_and_nothing_is_pushed() {
    let (t, dir, repo) = project("multi-missing", &service("RAYPACK_TEST_BASE"));
    use_pypi_pylock(&dir, &[("numpy", "2.4.6")]);
    let out = bake(&dir, &t.path().join("cache"), &["--push"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("numpy") && err.contains("2.4.6") && err.contains("aarch64"),
        "{err}"
    );
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{repo}:v1"))
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "something was pushed");
    assert!(
        String::from_utf8_lossy(&inspect.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}
