//! The shared layer cache (issue 20): dependency layers found by content key in a registry, so
//! that a fresh CI machine (an empty `RAYPACK_CACHE_DIR`) downloads no wheel and builds no
//! fragment, and concurrent bakes never lose each other's entries.
mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The acceptance lock: real PyPI wheels, one of them (click) replacing the stand-in's
/// version, so the layer carries whiteouts that a cache entry must carry too.
const PINS: &[(&str, &str)] = &[
    ("click", "8.1.7"),
    ("tabulate", "0.9.0"),
    ("jaraco.functools", "4.1.0"),
    ("more-itertools", "10.5.0"),
];

fn bake_json(dir: &Path, cache: &Path, args: &[&str]) -> serde_json::Value {
    bake_json_with(dir, cache, args, &|_| {})
}

/// [`bake_json`] with `setup` applied to the command (a store's endpoint and credentials).
fn bake_json_with(
    dir: &Path,
    cache: &Path,
    args: &[&str],
    setup: &dyn Fn(&mut std::process::Command),
) -> serde_json::Value {
    let mut cmd = raypack();
    setup(&mut cmd);
    let out = run(cmd
        .env("RAYPACK_CACHE_DIR", cache)
        .arg("-v")
        .arg("-C")
        .arg(dir)
        .args(["--output", "json", "bake"])
        .args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set_tag(dir: &Path, tag: &str) {
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    assert!(text.contains("tags = [\"v1\"]"), "{text}");
    std::fs::write(
        dir.join("raypack.toml"),
        text.replace("tags = [\"v1\"]", &format!("tags = [\"{tag}\"]")),
    )
    .unwrap();
}

fn dep_layers(v: &serde_json::Value) -> Vec<String> {
    v["bake"]["dependencies"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The sha256 (hex) of every wheel a pylock.toml pins.
fn locked_wheel_hashes(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("pylock.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in v["packages"].as_array().unwrap() {
        for w in p["wheels"].as_array().unwrap() {
            out.push(w["hashes"]["sha256"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(out.len(), PINS.len());
    out
}

/// What a machine's cache downloaded and built: wheel blobs among `hashes`, fragment files.
fn downloaded(cache: &Path, hashes: &[String]) -> (usize, usize) {
    let wheels = hashes
        .iter()
        .filter(|h| cache.join("blobs/sha256").join(h).exists())
        .count();
    let fragments = walk(&cache.join("fragments")).len();
    (wheels, fragments)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `[key K]` of every dependency layer in an image's config history.
fn history_keys(reference: &str) -> Vec<String> {
    let out = skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| {
            let t = h["created_by"].as_str()?;
            let tail = t.rsplit_once("[key ")?.1;
            Some(tail.split([' ', ']']).next()?.to_string())
        })
        .collect()
}

fn tags_of(repo: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_fresh_machine_rebakes_from_the_shared_cache_without_a_wheel() {
    let base = service("RAYPACK_TEST_BASE");
    let (t, dir, repo) = hello_pushing("shared", &base, "", "");
    use_pypi_pylock(&dir, PINS);
    let hashes = locked_wheel_hashes(&dir);

    // Machine A: builds and pushes; the cache (the target repository by default) records
    // the plan and its layer.
    let a_cache = t.path().join("machine-a");
    let a = bake_json(&dir, &a_cache, &["--push"]);
    let sc = &a["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], false, "{a}");
    assert_eq!(sc["entries_written"], 2, "a plan and one layer: {a}");
    let (wheels, fragments) = downloaded(&a_cache, &hashes);
    assert_eq!(wheels, PINS.len(), "A downloads the wheels");
    assert!(fragments >= PINS.len(), "A builds a fragment per wheel");
    let a_layers = dep_layers(&a);
    let a_whiteouts = a["bake"]["dependencies"]["replaced"][0]["whiteouts"].clone();
    assert!(a_whiteouts.as_u64().unwrap() > 1, "{a}");
    let keys = history_keys(a["bake"]["reference"].as_str().unwrap());
    assert_eq!(keys.len(), 1, "{keys:?}");
    let tags = tags_of(&repo);
    assert!(
        tags.contains(&format!("raypack-cache-layer-{}", keys[0])),
        "{tags:?}"
    );
    assert_eq!(
        tags.iter()
            .filter(|t| t.starts_with("raypack-cache-plan-"))
            .count(),
        1,
        "{tags:?}"
    );

    // Machine B: an empty cache, the same lock, a new tag and a code change (a new image):
    // no wheel downloaded, no fragment built, the same dependency layer.
    set_tag(&dir, "v2");
    std::fs::write(dir.join("CHANGED.txt"), "machine b\n").unwrap();
    let b_cache = t.path().join("machine-b");
    let b = bake_json(&dir, &b_cache, &["--push"]);
    let sc = &b["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], true, "{b}");
    assert_eq!(sc["layers_reused"], 1, "{b}");
    assert_eq!(sc["entries_written"], 0, "{b}");
    assert_eq!(
        downloaded(&b_cache, &hashes),
        (0, 0),
        "B downloads and builds nothing"
    );
    assert_ne!(b["bake"]["digest"], a["bake"]["digest"], "the code changed");
    assert_eq!(dep_layers(&b), a_layers);
    assert_eq!(
        b["bake"]["dependencies"]["replaced"][0]["whiteouts"],
        a_whiteouts
    );
    // Nor did B download the dependency layer: it is referenced, already in the repository.
    for d in &a_layers {
        assert!(
            !b_cache
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
                .exists(),
            "B downloaded layer {d}"
        );
    }
    assert_eq!(history_keys(b["bake"]["reference"].as_str().unwrap()), keys);
    // --explain says so too.
    let explained = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("machine-b2"))
        .arg("-C")
        .arg(&dir)
        .args(["bake", "--push", "--explain"]));
    assert!(explained.status.success(), "{}", stderr(&explained));
    assert!(
        stderr(&explained).contains(&format!(
            "shared layer cache {}: the whole plan was there (no wheel downloaded), 1 layer(s) reused",
            repo
        )),
        "{}",
        stderr(&explained)
    );

    // Machine C: another repository of the registry, the cache named explicitly: the layer
    // is mounted across repositories, still without a download; the image runs.
    let other = format!(
        "{}/raypack-test/{}",
        service("RAYPACK_TEST_REGISTRY"),
        unique("shared-c")
    );
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    std::fs::write(dir.join("raypack.toml"), text.replace(&repo, &other)).unwrap();
    let c_cache = t.path().join("machine-c");
    let c = bake_json(&dir, &c_cache, &["--push", "--cache", &repo]);
    let sc = &c["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], true, "{c}");
    assert_eq!(downloaded(&c_cache, &hashes), (0, 0));
    assert_eq!(dep_layers(&c), a_layers);
    assert!(c["bake"]["pushed"]["mounted"].as_u64().unwrap() >= 1, "{c}");

    let bundle = pull_and_unpack(t.path(), c["bake"]["reference"].as_str().unwrap());
    let check = "python -c 'import importlib.metadata as m, click, tabulate, jaraco.functools, more_itertools; assert m.version(\"click\") == \"8.1.7\"; print(\"imports ok\")' && tabulate --help > /dev/null && python -m pip check";
    let (ok, text) = sandbox(t.path(), &bundle, check);
    assert!(ok, "{text}");
    assert!(
        text.contains("imports ok") && text.contains("No broken requirements"),
        "{text}"
    );
}

#[test]
fn concurrent_bakes_keep_every_cache_entry_and_a_broken_entry_is_a_miss() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let base = service("RAYPACK_TEST_BASE");
    let cache_repo = format!("{registry}/raypack-test/{}", unique("layer-cache"));
    // Four projects: two with the same dependencies (the same plan and layer keys, written
    // at the same moment), two with their own; all sharing wheels.
    let sets: [&[(&str, &str)]; 4] = [
        &[("tabulate", "0.9.0"), ("more-itertools", "10.5.0")],
        &[("tabulate", "0.9.0"), ("more-itertools", "10.5.0")],
        &[
            ("tabulate", "0.9.0"),
            ("jaraco.functools", "4.1.0"),
            ("more-itertools", "10.5.0"),
        ],
        &[("click", "8.1.7"), ("more-itertools", "10.5.0")],
    ];
    let projects: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, pins)| {
            let (t, dir, repo) = hello_pushing(&format!("conc{i}"), &base, "", "");
            use_pypi_pylock(&dir, pins);
            std::fs::write(dir.join("WHICH.txt"), format!("project {i}\n")).unwrap();
            (t, dir, repo)
        })
        .collect();
    let children: Vec<_> = projects
        .iter()
        .map(|(t, dir, _)| {
            raypack()
                .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
                .arg("-C")
                .arg(dir)
                .args(["--output", "json", "bake", "--push", "--cache", &cache_repo])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    // Every key any bake used is in the cache.
    let tags = tags_of(&cache_repo);
    let mut layer_keys = std::collections::BTreeSet::new();
    for v in &outs {
        assert_eq!(
            v["bake"]["dependencies"]["shared_cache"]["plan_hit"], false,
            "{v}"
        );
        for k in history_keys(v["bake"]["reference"].as_str().unwrap()) {
            assert!(
                tags.contains(&format!("raypack-cache-layer-{k}")),
                "{k} lost: {tags:?}"
            );
            layer_keys.insert(k);
        }
    }
    assert_eq!(layer_keys.len(), 3, "projects 0 and 1 share their layer");
    let plans: Vec<&String> = tags
        .iter()
        .filter(|t| t.starts_with("raypack-cache-plan-"))
        .collect();
    assert_eq!(plans.len(), 3, "{tags:?}");
    // And each entry works: every project re-baked on a fresh machine hits its plan.
    for (i, (t, dir, _)) in projects.iter().enumerate() {
        let again = bake_json(
            dir,
            &t.path().join("fresh"),
            &["--push", "--cache", &cache_repo],
        );
        assert_eq!(
            again["bake"]["dependencies"]["shared_cache"]["plan_hit"], true,
            "project {i}: {again}"
        );
        assert_eq!(dep_layers(&again), dep_layers(&outs[i]));
        assert_eq!(again["bake"]["digest"], outs[i]["bake"]["digest"]);
    }

    // A broken entry (another artifact pushed over a plan's tag) is a miss: the bake builds
    // the layers again and writes the entry back.
    let (t, dir, _) = &projects[3];
    let plan_tags: Vec<String> = plans.iter().map(|s| s.to_string()).collect();
    for tag in &plan_tags {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--src-tls-verify=false",
            &format!("docker://{base}"),
            &format!("docker://{cache_repo}:{tag}"),
        ]);
    }
    let rebuilt = bake_json(
        dir,
        &t.path().join("after-break"),
        &["--push", "--cache", &cache_repo],
    );
    let sc = &rebuilt["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], false, "{rebuilt}");
    assert_eq!(
        sc["layers_reused"], 1,
        "its layer entry is still sound: {rebuilt}"
    );
    assert_eq!(rebuilt["bake"]["digest"], outs[3]["bake"]["digest"]);
    let healed = bake_json(
        dir,
        &t.path().join("after-heal"),
        &["--push", "--cache", &cache_repo],
    );
    assert_eq!(
        healed["bake"]["dependencies"]["shared_cache"]["plan_hit"], true,
        "{healed}"
    );
}

/// Machine A pushes with the cache in an object store; machine B (empty cache) pushes the same
/// lock to another repository: the plan is found in the store, no wheel is downloaded and no
/// fragment built, and the layer comes from the store (B's target does not have it). Returns
/// B's blob cache.
fn store_cache_round_trip(
    url: &str,
    setup: &dyn Fn(&mut std::process::Command),
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = service("RAYPACK_TEST_BASE");
    let (t, dir, repo) = hello_pushing("store-cache", &base, "", "");
    use_pypi_pylock(&dir, PINS);
    let hashes = locked_wheel_hashes(&dir);
    let bake_with = |cache: &Path| bake_json_with(&dir, cache, &["--push", "--cache", url], setup);
    let a = bake_with(&t.path().join("a"));
    let sc = &a["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], false, "{a}");
    assert_eq!(sc["entries_written"], 2, "{a}");
    assert_eq!(sc["repository"], url, "{a}");

    let other = format!(
        "{}/raypack-test/{}",
        service("RAYPACK_TEST_REGISTRY"),
        unique("store-cache-b")
    );
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    std::fs::write(dir.join("raypack.toml"), text.replace(&repo, &other)).unwrap();
    let b_cache = t.path().join("b");
    let b = bake_with(&b_cache);
    let sc = &b["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], true, "{b}");
    assert_eq!(
        downloaded(&b_cache, &hashes),
        (0, 0),
        "B downloads and builds nothing"
    );
    assert_eq!(dep_layers(&b), dep_layers(&a));
    for d in dep_layers(&a) {
        assert!(
            b_cache
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
                .exists(),
            "the layer came from the store"
        );
    }
    assert!(
        b["bake"]["pushed"]["uploaded"].as_u64().unwrap() >= 1,
        "{b}"
    );
    (t, dir, b_cache)
}

#[test]
fn an_s3_bucket_is_a_shared_layer_cache() {
    let endpoint = service("RAYPACK_TEST_S3");
    let bucket = service("RAYPACK_TEST_BUCKET");
    let url = format!("s3://{bucket}/{}", unique("layer-cache"));
    store_cache_round_trip(&url, &|c| s3_env(c, &endpoint, "testing"));
}

#[test]
fn a_gcs_bucket_is_a_shared_layer_cache() {
    let base = service("RAYPACK_TEST_GCS");
    let url = format!("gs://raypack-test/{}", unique("layer-cache"));
    store_cache_round_trip(&url, &|c| {
        c.env("STORAGE_EMULATOR_HOST", &base);
    });
}

#[test]
fn a_directory_is_a_shared_layer_cache_and_a_corrupt_entry_is_a_miss() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let (t, dir, _) = store_cache_round_trip(&url, &|_| {});
    let plans = walk(&shared.path().join("raypack-cache/v1/plan"));
    assert_eq!(plans.len(), 1, "{plans:?}");
    // Nothing half-written is left beside the entries.
    assert!(
        walk(shared.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".partial")),
        "{:?}",
        walk(shared.path())
    );
    std::fs::write(&plans[0], b"{ not json").unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("c"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--cache", &url]));
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sc = &c["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], false, "{c}");
    assert_eq!(sc["layers_reused"], 1, "the layer entry is sound: {c}");
    assert_eq!(sc["entries_written"], 1, "the plan is written again: {c}");
    let healed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plans[0]).unwrap()).unwrap();
    assert_eq!(healed["kind"], "plan");
}

/// A lock that changed keeps its heavy layer: machine A records what its heavy wheels ship
/// (facts entries); machine B, with a different lock, computes the same key for scipy's layer
/// from those facts and reuses it without downloading scipy; only the changed layer's wheels
/// are downloaded.
#[test]
fn a_changed_lock_reuses_the_heavy_layer_without_downloading_its_wheel() {
    let base = service("RAYPACK_TEST_BASE");
    let (t, dir, repo) = hello_pushing("facts", &base, "", "");
    let heavy = ("scipy", "1.16.3");
    use_pypi_pylock(&dir, &[heavy, ("numpy", "2.4.6"), ("tabulate", "0.9.0")]);
    let a = bake_json(&dir, &t.path().join("a"), &["--push"]);
    let layers = a["bake"]["dependencies"]["layers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(layers.len(), 2, "scipy alone, the rest together: {a}");
    assert_eq!(
        layers[0]["distributions"],
        serde_json::json!(["scipy"]),
        "{a}"
    );
    let facts: Vec<String> = tags_of(&repo)
        .into_iter()
        .filter(|t| t.starts_with("raypack-cache-facts-"))
        .collect();
    assert_eq!(
        facts.len(),
        2,
        "scipy's and numpy's (tabulate is small): {facts:?}"
    );
    let scipy_sha = {
        let text = std::fs::read_to_string(dir.join("pylock.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some("scipy"))
            .unwrap()["wheels"][0]["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        t.path().join("a/blobs/sha256").join(&scipy_sha).exists(),
        "A has scipy's wheel where B's check looks for it"
    );

    // Machine B: the lock gained a package, so the plan is new and the small layer changes.
    std::fs::write(
        dir.join("pylock.toml"),
        pypi_pylock(&[
            heavy,
            ("numpy", "2.4.6"),
            ("tabulate", "0.9.0"),
            ("more-itertools", "10.5.0"),
        ]),
    )
    .unwrap();
    set_tag(&dir, "v2");
    let b_cache = t.path().join("b");
    let b = bake_json(&dir, &b_cache, &["--push"]);
    let sc = &b["bake"]["dependencies"]["shared_cache"];
    assert_eq!(sc["plan_hit"], false, "{b}");
    assert_eq!(sc["layers_reused"], 1, "{b}");
    let b_layers = b["bake"]["dependencies"]["layers"].as_array().unwrap();
    assert_eq!(b_layers[0]["digest"], layers[0]["digest"], "{b}");
    assert_ne!(b_layers[1]["digest"], layers[1]["digest"], "{b}");
    assert!(
        !b_cache.join("blobs/sha256").join(&scipy_sha).exists(),
        "B downloaded scipy"
    );
    // The scipy layer B pushed by reference runs with the layer B built.
    let bundle = pull_and_unpack(t.path(), b["bake"]["reference"].as_str().unwrap());
    let (ok, text) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import scipy.linalg, numpy, tabulate, more_itertools; print(scipy.linalg.det(numpy.eye(3)))'",
    );
    assert!(ok && text.contains("1.0"), "{text}");
}
