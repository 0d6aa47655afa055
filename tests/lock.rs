//! `raypack lock` against the real PyPI, compared with `uv pip compile` for the same target
//! (CPython 3.11, manylinux_2_36, x86_64: the stand-in base).
//!
//! Needs network to PyPI, `RAYPACK_TEST_UV` (uv 0.13.9) and `RAYPACK_TEST_PYTHON` (a Python
//! with packaging 26.3); `target_comes_from_the_base_image` also needs `RAYPACK_TEST_BASE`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const TARGET: [&str; 4] = ["--python-version", "3.11", "--manylinux", "2_36"];

/// The stand-in's installed distributions as `name==version` lines (what `--installed` takes):
/// the hashed lock the stand-in is built from.
fn standin_installed() -> String {
    standin_pins()
        .iter()
        .map(|(n, v)| {
            format!(
                "{n}=={v}
"
            )
        })
        .collect()
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lock-cache")
}

/// The numeric release segments of a version (`3.10` → [3, 10]).
fn release(v: &str) -> Vec<u64> {
    v.split('.').map_while(|p| p.parse().ok()).collect()
}

/// A project whose recipe asks for `reqs`.
fn project(reqs: &[&str]) -> (tempfile::TempDir, PathBuf) {
    project_with_base(reqs, "rayproject/ray:2.60.0-py311-cpu")
}

fn project_with_base(reqs: &[&str], base: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    write_recipe(&dir, reqs, base);
    (t, dir)
}

fn write_recipe(dir: &Path, reqs: &[&str], base: &str) {
    let list: Vec<String> = reqs
        .iter()
        .map(|r| toml::Value::String(r.to_string()).to_string())
        .collect();
    std::fs::write(
        dir.join("raypack.toml"),
        format!(
            "[project]\nname = \"p\"\n\n[code]\nworking_dir = \".\"\n\n[dependencies]\nrequirements = [{}]\n\n[base]\nimage = \"{base}\"\n",
            list.join(", ")
        ),
    )
    .unwrap();
}

fn lock(dir: &Path, args: &[&str]) -> Output {
    run(raypack()
        .env("RAYPACK_CACHE_DIR", cache_dir())
        .arg("-C")
        .arg(dir)
        .arg("lock")
        .args(args))
}

fn locked_ok(dir: &Path, args: &[&str]) -> String {
    let out = lock(dir, args);
    assert!(out.status.success(), "lock failed: {}", stderr(&out));
    std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap()
}

/// Every wheel in the lock is for the target, hashed, sized, with a files.pythonhosted.org URL.
fn assert_wheels_fit_target(text: &str) {
    let doc: toml::Table = text.parse().unwrap();
    for p in doc["packages"].as_array().unwrap() {
        let wheels = p["wheels"].as_array().unwrap();
        assert_eq!(wheels.len(), 1, "one wheel per package: {p}");
        let w = &wheels[0];
        let name = w["name"].as_str().unwrap();
        assert!(
            name.ends_with("-any.whl") || name.contains("x86_64"),
            "{name} is not for x86_64"
        );
        assert!(!name.contains("musllinux"), "{name}");
        assert!(
            !name.contains("-cp3") || name.contains("-cp311-") || name.contains("abi3"),
            "{name} is not for CPython 3.11"
        );
        assert_eq!(w["hashes"]["sha256"].as_str().unwrap().len(), 64);
        assert!(w["size"].as_integer().unwrap() > 0);
        assert!(
            w["url"]
                .as_str()
                .unwrap()
                .starts_with("https://files.pythonhosted.org/")
        );
        assert!(w["upload-time"].is_datetime());
    }
}

/// packaging 26.3's PEP 751 validator accepts the file.
fn assert_valid_pylock(path: &Path) {
    let py = service("RAYPACK_TEST_PYTHON");
    let out = Command::new(py)
        .arg("-c")
        .arg("import sys, tomllib\nfrom packaging.pylock import Pylock\np = Pylock.from_dict(tomllib.load(open(sys.argv[1], 'rb')))\nprint(len(p.packages))")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "packaging.pylock rejects {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Locks `reqs`, checks the lock, and compares it with uv pip compile: same names, and each
/// version the same as uv's (differences are listed in the failure).
fn compare_with_uv(reqs: &[&str], must_contain: &[&str]) -> BTreeMap<String, String> {
    let (_t, dir) = project(reqs);
    let text = locked_ok(&dir, &TARGET);
    assert_wheels_fit_target(&text);
    assert_valid_pylock(&dir.join("pylock.raypack.toml"));
    let ours = versions(&text);
    let theirs = uv_compile(reqs);
    for n in must_contain {
        assert!(ours.contains_key(*n), "{n} missing from {ours:?}");
    }
    let diff: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|n| ours.get(*n) != theirs.get(*n))
        .map(|n| format!("{n}: raypack {:?}, uv {:?}", ours.get(n), theirs.get(n)))
        .collect();
    assert!(
        diff.is_empty(),
        "differs from uv pip compile:\n{}",
        diff.join("\n")
    );
    // The library reader bake uses reads every package back with one wheel for the target.
    let target = raypack::python::tags::Target::new("linux/amd64", "3.11", "2_36").unwrap();
    let pins =
        raypack::python::pinned::from_pylock(&dir.join("pylock.raypack.toml"), &target).unwrap();
    assert_eq!(pins.len(), ours.len());
    ours
}

#[test]
fn web_stack_matches_uv() {
    compare_with_uv(
        &["requests>=2.31", "fastapi", "uvicorn[standard]", "httpx"],
        &[
            "requests",
            "urllib3",
            "starlette",
            "pydantic-core",
            "uvloop",
            "httptools",
        ],
    );
}

#[test]
fn data_stack_matches_uv() {
    let v = compare_with_uv(
        &["pandas>=2", "pyarrow", "polars", "fsspec"],
        &["pandas", "numpy", "pyarrow", "python-dateutil", "tzdata"],
    );
    assert!(v["pandas"].starts_with('2') || v["pandas"].starts_with('3'));
}

#[test]
fn ml_stack_matches_uv() {
    // xgboost pulls nvidia-nccl-cu12 only on Linux non-aarch64: a marker on the target.
    compare_with_uv(
        &["scikit-learn", "xgboost"],
        &[
            "scikit-learn",
            "xgboost",
            "scipy",
            "numpy",
            "joblib",
            "threadpoolctl",
            "nvidia-nccl-cu12",
        ],
    );
}

#[test]
fn extras_and_markers_match_uv() {
    let v = compare_with_uv(
        &[
            "requests[socks]",
            "pydantic[email]>=2",
            "tomli; python_version < '3.11'",
            "exceptiongroup; python_version < '3.11'",
            "uvloop; sys_platform == 'linux'",
            "pywin32; sys_platform == 'win32'",
            "colorama; platform_system == 'Windows'",
        ],
        &["pysocks", "email-validator", "dnspython", "uvloop"],
    );
    for absent in ["tomli", "exceptiongroup", "pywin32", "colorama"] {
        assert!(
            !v.contains_key(absent),
            "{absent} does not apply to the target"
        );
    }
}

/// Ray pins pydantic >=2.5,<3 and protobuf >=3.20.3; the user narrows both below what the base
/// ships. Without the base this matches uv; with it, everything else stays at the base's
/// version and the two are reported as replacements; --no-replace-base fails naming the chain.
#[test]
fn ray_pinned_packages_against_the_base() {
    let reqs = ["ray[default]==2.60.0", "pydantic>=2.5,<2.10", "protobuf<6"];
    let plain = compare_with_uv(&reqs, &["ray", "pydantic", "protobuf", "grpcio"]);
    assert!(plain["pydantic"].starts_with("2.9"));

    let (_t, dir) = project(&reqs);
    let installed = dir.join("installed.txt");
    std::fs::write(&installed, standin_installed()).unwrap();
    let inst = installed.to_str().unwrap();
    let out = lock(
        &dir,
        &[&TARGET[..], &["--installed", inst, "--output", "json"]].concat(),
    );
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["base_known"], true);
    let t = &j["targets"][0];
    let base: BTreeMap<String, String> = standin_pins();
    let mut replaced: Vec<String> = t["replacements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    replaced.sort();
    // pydantic-core follows pydantic (pinned ==); protobuf<6 also takes google-api-core and
    // friends below the base's versions (their newer releases need protobuf>=6).
    for n in ["protobuf", "pydantic", "pydantic-core"] {
        assert!(replaced.iter().any(|r| r == n), "{n} not replaced: {t}");
    }
    for r in t["replacements"].as_array().unwrap() {
        let n = r["name"].as_str().unwrap();
        assert_eq!(r["base"].as_str(), base.get(n).map(String::as_str), "{r}");
        assert!(!r["required_by"].as_array().unwrap().is_empty(), "{r}");
    }
    // Issue 23 #2: a replacement names what excludes the base's version. google-api-core is
    // not excluded by anyone's range: its base version needs a protobuf the user excluded.
    let gac = t["replacements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "google-api-core")
        .expect("google-api-core is replaced");
    let why = gac["required_by"].to_string();
    assert!(
        why.contains(&format!(
            "google-api-core {} needs protobuf",
            base["google-api-core"]
        )) && why.contains("the requirements (protobuf<6)")
            && !why.contains("ray 2.60.0"),
        "{gac}"
    );
    let pyd = t["replacements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pydantic")
        .unwrap();
    assert_eq!(pyd["base"].as_str(), Some(base["pydantic"].as_str()));
    assert!(pyd["locked"].as_str().unwrap().starts_with("2.9"));
    assert!(
        pyd["required_by"].as_array().unwrap().iter().any(|r| r
            .as_str()
            .unwrap()
            .contains("the requirements (pydantic>=2.5, <2.10)")),
        "{pyd}"
    );
    // Everything else the base ships stays at the base's version.
    let mut kept = 0;
    for p in t["packages"].as_array().unwrap() {
        let n = p["name"].as_str().unwrap();
        if let Some(bv) = base.get(n)
            && !replaced.iter().any(|r| r == n)
        {
            assert_eq!(
                p["version"].as_str().unwrap(),
                bv,
                "{n} should stay at the base's version"
            );
            assert_eq!(p["in_base"], true);
            kept += 1;
        }
    }
    assert!(kept >= 40, "only {kept} kept from the base");
    let text = std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap();
    assert!(
        text.contains("[[tool.raypack.replaces]]\nname = \"protobuf\""),
        "{text}"
    );

    // The same with --no-replace-base: an error naming the base version and who needs another.
    let out = lock(
        &dir,
        &[&TARGET[..], &["--installed", inst, "--no-replace-base"]].concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the base image ships pydantic {}",
            base["pydantic"]
        )) || err.contains(&format!(
            "the base image ships protobuf {}",
            base["protobuf"]
        )),
        "{err}"
    );
    assert!(err.contains("--no-replace-base"), "{err}");
    assert!(err.contains("you require"), "{err}");
}

/// Base preferences: a version the base ships is kept even when newer ones exist.
#[test]
fn base_versions_are_preferred() {
    let (_t, dir) = project(&["requests>=2.31"]);
    let newest = versions(&locked_ok(&dir, &TARGET))["requests"].clone();
    assert_ne!(newest, "2.31.0", "test premise: a newer requests exists");
    std::fs::write(
        dir.join("installed.txt"),
        "requests==2.31.0\nurllib3==1.26.18\n",
    )
    .unwrap();
    let inst = dir.join("installed.txt");
    let text = locked_ok(
        &dir,
        &[
            &TARGET[..],
            &["--upgrade", "--installed", inst.to_str().unwrap()],
        ]
        .concat(),
    );
    let v = versions(&text);
    assert_eq!(v["requests"], "2.31.0");
    assert_eq!(v["urllib3"], "1.26.18");
    assert!(
        text.contains("kept-from-base = [\"requests\", \"urllib3\"]"),
        "{text}"
    );
}

#[test]
fn unsatisfiable_set_is_explained() {
    let (_t, dir) = project(&["ray[default]==2.60.0", "pydantic<2"]);
    let out = lock(&dir, &TARGET);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot all be met"), "{err}");
    assert!(err.contains("you require pydantic <2"), "{err}");
    assert!(err.contains("you require ray[default] ==2.60.0"), "{err}");
    assert!(
        err.contains("ray[default] 2.60.0 depends on pydantic >=2.5.0, <3"),
        "{err}"
    );
    assert!(!err.contains("DerivationTree"), "{err}");
    assert!(!dir.join("pylock.raypack.toml").exists());
}

#[test]
fn missing_package_and_version_name_the_requirement() {
    let (_t, dir) = project(&["requests", "raypack-no-such-project-xyz>=1"]);
    let out = lock(&dir, &TARGET);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("you require raypack-no-such-project-xyz >=1"),
        "{err}"
    );
    assert!(
        err.contains(
            "raypack-no-such-project-xyz is not on the package index (https://pypi.org/simple)"
        ),
        "{err}"
    );

    write_recipe(
        &dir,
        &["requests==0.0.999"],
        "rayproject/ray:2.60.0-py311-cpu",
    );
    let out = lock(&dir, &TARGET);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("you require requests ==0.0.999"), "{err}");
    assert!(
        err.contains("no version of requests ==0.0.999 has a wheel"),
        "{err}"
    );

    // A version with only an sdist for the target is named as such.
    write_recipe(&dir, &["pyyaml==5.4.1"], "rayproject/ray:2.60.0-py311-cpu");
    let err = stderr(&lock(&dir, &TARGET));
    assert!(
        err.contains("5.4.1 only offer sdists or wheels for other platforms"),
        "{err}"
    );
}

#[test]
fn relock_is_byte_identical_and_locked_detects_staleness() {
    let (_t, dir) = project(&["httpx", "idna<3.8"]);
    let first = locked_ok(&dir, &TARGET);
    let path = dir.join("pylock.raypack.toml");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = lock(&dir, &TARGET);
    assert!(stderr(&out).contains("unchanged"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        mtime,
        "not rewritten"
    );

    let out = lock(&dir, &[&TARGET[..], &["--locked"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));

    // Dropping `idna<3.8` keeps the locked idna (a preference) until --upgrade-package idna.
    let idna = versions(&first)["idna"].clone();
    assert!(release(&idna) < release("3.8"));
    write_recipe(&dir, &["httpx"], "rayproject/ray:2.60.0-py311-cpu");
    let out = lock(&dir, &[&TARGET[..], &["--locked"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is stale"), "{}", stderr(&out));
    let kept = locked_ok(&dir, &TARGET);
    assert_eq!(versions(&kept)["idna"], idna);
    let upgraded = locked_ok(
        &dir,
        &[&TARGET[..], &["--upgrade-package", "idna"]].concat(),
    );
    assert!(
        release(&versions(&upgraded)["idna"]) >= release("3.8"),
        "{upgraded}"
    );
    assert_eq!(versions(&upgraded)["httpx"], versions(&kept)["httpx"]);
}

#[test]
fn multi_platform_lock_has_both_targets() {
    let (_t, dir) = project(&[
        "numpy<2.4",
        "xgboost",
        "uvloop; platform_machine == 'x86_64'",
    ]);
    let text = locked_ok(
        &dir,
        &[&TARGET[..], &["--platform", "linux/amd64,linux/arm64"]].concat(),
    );
    let path = dir.join("pylock.raypack.toml");
    assert_valid_pylock(&path);
    let doc: toml::Table = text.parse().unwrap();
    assert_eq!(doc["environments"].as_array().unwrap().len(), 2);
    let pkg = |n: &str| {
        doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("{n} in {text}"))
            .clone()
    };
    assert_eq!(
        pkg("uvloop").get("marker").and_then(|m| m.as_str()),
        Some("platform_machine == 'x86_64'")
    );
    let numpy = pkg("numpy");
    assert!(
        numpy.get("marker").is_none(),
        "same version on both targets"
    );
    assert_eq!(
        numpy["wheels"].as_array().unwrap().len(),
        2,
        "one wheel per target"
    );
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let t = raypack::python::tags::Target::new(platform, "3.11", "2_36").unwrap();
        let pins = raypack::python::pinned::from_pylock(&path, &t).unwrap();
        for n in ["numpy", "xgboost"] {
            let w = pins.iter().find(|w| w.name == n).unwrap();
            assert!(w.filename.contains(arch), "{}", w.filename);
        }
        assert_eq!(pins.iter().any(|w| w.name == "uvloop"), arch == "x86_64");
    }
}

/// Metadata by range requests on the wheel's central directory equals the PEP 658 file.
#[test]
fn range_request_metadata_equals_pep658() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = tempfile::tempdir().unwrap();
        let client =
            raypack::python::index::IndexClient::new(raypack::http::client().unwrap(), t.path());
        let page = client
            .project("https://pypi.org/simple", "idna")
            .await
            .unwrap()
            .unwrap();
        let f = page
            .files
            .iter()
            .rev()
            .find(|f| f.filename.ends_with("py3-none-any.whl"))
            .expect("an idna wheel");
        let fetcher = raypack::python::metadata::MetadataFetcher::new(client.clone());
        let by_range = fetcher
            .from_range(f)
            .await
            .unwrap()
            .expect("range answered");
        // The same bytes as in the whole wheel, and as the PEP 658 file where it is served.
        let whole = client.get(&f.url).await.unwrap();
        assert_eq!(
            by_range,
            raypack::python::metadata::metadata_from_zip(&whole).unwrap()
        );
        if let Ok(pep658) = client.get(&format!("{}.metadata", f.url)).await {
            assert_eq!(by_range, pep658);
        }
        let (m, src) = fetcher.fetch(f).await.unwrap();
        let expected = if f.core_metadata.is_some() {
            raypack::python::metadata::Source::Pep658
        } else {
            raypack::python::metadata::Source::Range
        };
        assert_eq!(src, expected);
        assert_eq!(m.name, "idna");
        let (_, src) = fetcher.fetch(f).await.unwrap();
        assert_eq!(src, raypack::python::metadata::Source::Cache);
    });
}

/// Without --python-version/--manylinux the target comes from the base image (the stand-in in
/// the local registry: Python 3.11, manylinux_2_36 from the catalog).
#[test]
fn target_comes_from_the_base_image() {
    let base = service("RAYPACK_TEST_BASE");
    let (_t, dir) = project_with_base(&["idna"], &base);
    let text = locked_ok(&dir, &[]);
    assert!(text.contains("python-version = \"3.11\""), "{text}");
    assert!(text.contains("manylinux = \"2_36\""), "{text}");
    assert!(text.contains("base-digest = \"sha256:"), "{text}");
}

/// A tiny PEP 691 index on 127.0.0.1 serving generated wheels: backtracking, yanked and
/// pre-release rules, incompatible wheels, metadata by range requests and by whole wheel (a
/// file host that ignores ranges), and a retried 503.
mod local_index {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::str::FromStr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use raypack::python::index::IndexClient;
    use raypack::python::resolve::{IndexConfig, ResolveError, ResolveRequest, resolve};
    use raypack::python::tags::Target;
    use sha2::{Digest, Sha256};

    struct Dist {
        filename: &'static str,
        requires: &'static [&'static str],
        yanked: bool,
    }

    fn wheel(name: &str, version: &str, requires: &[&str]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        z.start_file(format!("{name}/__init__.py"), o).unwrap();
        z.write_all(&vec![b'#'; 70_000]).unwrap();
        z.start_file(format!("{name}-{version}.dist-info/METADATA"), o)
            .unwrap();
        let mut m = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for r in requires {
            m.push_str(&format!("Requires-Dist: {r}\n"));
        }
        z.write_all(m.as_bytes()).unwrap();
        z.finish().unwrap();
        buf.into_inner()
    }

    struct Server {
        base: String,
        hits_503: Arc<AtomicUsize>,
        range_requests: Arc<AtomicUsize>,
    }

    fn serve(projects: BTreeMap<&'static str, Vec<Dist>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut pages: BTreeMap<String, String> = BTreeMap::new();
        for (project, dists) in &projects {
            let mut entries = Vec::new();
            for d in dists {
                let parts: Vec<&str> = d.filename.split('-').collect();
                let bytes = wheel(parts[0], parts[1], d.requires);
                // `lib` lives on a host that ignores Range headers.
                let dir = if *project == "lib" { "plain" } else { "files" };
                entries.push(serde_json::json!({
                    "filename": d.filename,
                    "url": format!("{base}/{dir}/{}", d.filename),
                    "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))},
                    "yanked": d.yanked,
                    "size": bytes.len(),
                    "upload-time": "2025-01-02T03:04:05.000006Z",
                }));
                files.insert(d.filename.to_string(), bytes);
            }
            pages.insert(
                project.to_string(),
                serde_json::json!({"meta": {"api-version": "1.1"}, "name": project, "files": entries})
                    .to_string(),
            );
        }
        let hits_503 = Arc::new(AtomicUsize::new(0));
        let range_requests = Arc::new(AtomicUsize::new(0));
        let (h, r) = (hits_503.clone(), range_requests.clone());
        let state = Arc::new(Mutex::new((files, pages)));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let state = state.clone();
                let (h, r) = (h.clone(), r.clone());
                std::thread::spawn(move || {
                    // One reader per connection: a new one per request could swallow the next
                    // request into a dropped buffer.
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let mut range = None;
                        loop {
                            let mut hdr = String::new();
                            reader.read_line(&mut hdr).unwrap();
                            if hdr.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = hdr.to_ascii_lowercase().strip_prefix("range: bytes=")
                            {
                                range = Some(v.trim().to_string());
                            }
                        }
                        let (files, pages) = &*state.lock().unwrap();
                        let (status, body, extra): (&str, Vec<u8>, String) = if let Some(p) =
                            path.strip_prefix("/simple/")
                        {
                            let name = p.trim_end_matches('/');
                            if name == "flaky" && h.fetch_add(1, Ordering::SeqCst) == 0 {
                                ("503 Service Unavailable", vec![], String::new())
                            } else {
                                match pages.get(name) {
                                    Some(pg) => (
                                        "200 OK",
                                        pg.clone().into_bytes(),
                                        "Content-Type: application/vnd.pypi.simple.v1+json\r\n"
                                            .into(),
                                    ),
                                    None => ("404 Not Found", vec![], String::new()),
                                }
                            }
                        } else if let Some(f) = path
                            .strip_prefix("/files/")
                            .or_else(|| path.strip_prefix("/plain/"))
                        {
                            match files.get(f) {
                                Some(b) if path.starts_with("/files/") && range.is_some() => {
                                    r.fetch_add(1, Ordering::SeqCst);
                                    let spec = range.unwrap();
                                    let len = b.len();
                                    let (start, end) = match spec.split_once('-').unwrap() {
                                        ("", n) => {
                                            (len - usize::from_str(n).unwrap().min(len), len - 1)
                                        }
                                        (a, e) => (
                                            usize::from_str(a).unwrap(),
                                            usize::from_str(e).unwrap().min(len - 1),
                                        ),
                                    };
                                    (
                                        "206 Partial Content",
                                        b[start..=end].to_vec(),
                                        format!("Content-Range: bytes {start}-{end}/{len}\r\n"),
                                    )
                                }
                                Some(b) => ("200 OK", b.clone(), String::new()),
                                None => ("404 Not Found", vec![], String::new()),
                            }
                        } else {
                            ("404 Not Found", vec![], String::new())
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n",
                            body.len()
                        );
                        if s.write_all(head.as_bytes()).is_err() || s.write_all(&body).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            base,
            hits_503,
            range_requests,
        }
    }

    fn d(filename: &'static str, requires: &'static [&'static str]) -> Dist {
        Dist {
            filename,
            requires,
            yanked: false,
        }
    }

    fn run(
        server: &Server,
        reqs: &[&str],
        cache: &std::path::Path,
    ) -> Result<BTreeMap<String, String>, ResolveError> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = IndexClient::new(raypack::http::client().unwrap(), cache);
            let req = ResolveRequest {
                requirements: raypack::python::resolve::parse_requirements(
                    &reqs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                )?,
                target: Target::new("linux/amd64", "3.11", "2_36").unwrap(),
                indexes: IndexConfig {
                    default: format!("{}/simple", server.base).into(),
                    extra: vec![],
                    per_package: Default::default(),
                    find_links: vec![],
                },
                preferences: Default::default(),
                installed: Default::default(),
                no_replace_base: false,
                pinned_to_base: Default::default(),
            };
            let r = resolve(&client, req).await?;
            Ok(r.packages
                .iter()
                .map(|p| (p.name.clone(), p.version.to_string()))
                .collect())
        })
    }

    #[test]
    fn backtracking_yanked_prereleases_ranges_and_retries() {
        let server = serve(BTreeMap::from([
            (
                "app",
                vec![
                    d(
                        "app-1.0-py3-none-any.whl",
                        &[
                            "lib>=1",
                            "extra-dep; extra == 'x'",
                            "winonly; sys_platform == 'win32'",
                        ],
                    ),
                    // The newest app needs lib>=3, which the root forbids: backtrack to 1.0.
                    d("app-2.0-py3-none-any.whl", &["lib>=3"]),
                    // A wheel for another platform only: not a candidate.
                    d("app-3.0-cp311-cp311-macosx_11_0_arm64.whl", &[]),
                ],
            ),
            (
                "lib",
                vec![
                    d("lib-1.0-py3-none-any.whl", &[]),
                    d("lib-2.0-py3-none-any.whl", &["pre", "mixed", "flaky"]),
                    Dist {
                        filename: "lib-2.5-py3-none-any.whl",
                        requires: &[],
                        yanked: true,
                    },
                    d("lib-3.0-py3-none-any.whl", &[]),
                ],
            ),
            ("pre", vec![d("pre-1.0b1-py3-none-any.whl", &[])]),
            (
                "mixed",
                vec![
                    d("mixed-1.0-py3-none-any.whl", &[]),
                    d("mixed-2.0rc1-py3-none-any.whl", &[]),
                ],
            ),
            ("flaky", vec![d("flaky-0.1-py3-none-any.whl", &[])]),
            ("extra-dep", vec![d("extra_dep-1.0-py3-none-any.whl", &[])]),
        ]));
        let cache = tempfile::tempdir().unwrap();
        let got = run(&server, &["app", "lib<3"], cache.path()).unwrap();
        let want: BTreeMap<String, String> = [
            ("app", "1.0"),
            ("flaky", "0.1"),
            ("lib", "2.0"),
            ("mixed", "1.0"),
            ("pre", "1.0b1"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(
            server.hits_503.load(Ordering::SeqCst),
            2,
            "one 503, one retry"
        );
        assert!(
            server.range_requests.load(Ordering::SeqCst) >= 2,
            "metadata by range"
        );

        // The extra pulls its dependency; `lib==2.5` (yanked) is allowed when pinned.
        let got = run(&server, &["app[x]", "lib==2.5"], cache.path());
        // app 1.0 and 2.0 need lib>=1 / lib>=3; lib 2.5 fits app 1.0.
        let got = got.unwrap();
        assert_eq!(got["lib"], "2.5");
        assert_eq!(got["extra-dep"], "1.0");
        assert!(!got.contains_key("winonly"));

        // A requirement naming a pre-release allows pre-releases of that project.
        let got = run(&server, &["mixed>=1.0b1"], cache.path()).unwrap();
        assert_eq!(got["mixed"], "2.0rc1");

        // Only a macOS wheel for app 3.0: explained as such.
        let err = run(&server, &["app>=3"], cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no version of app >=3 has a wheel"), "{err}");
        assert!(
            err.contains("3.0 only offer sdists or wheels for other platforms"),
            "{err}"
        );
    }
}

/// Issue 23: the base's Ray is a hard pin. A requirement set whose `fastapi` pin conflicts with
/// the base's `ray[serve]` fails naming fastapi (it used to swap Ray for 2.55.1);
/// `[dependencies] replace_ray = true` is the opt-in. With the conflict gone, a re-lock goes back to the base's Ray, even from a
/// previous lock that replaced it.
#[test]
fn the_bases_ray_is_a_hard_pin_and_a_replacement_is_re_decided() {
    let reqs = ["ray[serve]>=2.52.1,<3", "fastapi<0.125"];
    let (_t, dir) = project(&reqs);
    let installed = dir.join("installed.txt");
    std::fs::write(&installed, standin_installed()).unwrap();
    let inst = installed.to_str().unwrap();
    let base_ray = standin_version("ray");
    let out = lock(&dir, &[&TARGET[..], &["--installed", inst]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the base image ships ray {base_ray}"))
            && err.contains("replace_ray = true")
            && err.contains("fastapi"),
        "{err}"
    );
    // Opted in: Ray is replaced.
    let opt_in = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("raypack.toml"))
            .unwrap()
            .replace("[dependencies]\n", "[dependencies]\nreplace_ray = true\n");
        std::fs::write(dir.join("raypack.toml"), text).unwrap();
    };
    opt_in(&dir);
    let text = locked_ok(&dir, &[&TARGET[..], &["--installed", inst]].concat());
    let ray_line = |t: &str| {
        t.split("[[packages]]")
            .find(|p| p.contains("\nname = \"ray\"\n"))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .unwrap_or_default()
            .to_string()
    };
    assert_ne!(
        ray_line(&text),
        format!("version = \"{base_ray}\""),
        "{text}"
    );
    // The conflict removed: the re-lock goes back to the base's Ray (the previous lock's
    // replacement is decided again, not kept), even with replace_ray allowing another.
    write_recipe(
        &dir,
        &["ray[serve]>=2.52.1,<3"],
        "rayproject/ray:2.60.0-py311-cpu",
    );
    opt_in(&dir);
    let text = locked_ok(&dir, &[&TARGET[..], &["--installed", inst]].concat());
    assert_eq!(
        ray_line(&text),
        format!("version = \"{base_ray}\""),
        "{text}"
    );
}
