//! Wheel tags against `packaging` (in the test venv), and wheel installation against
//! `pip install --no-deps --target` for real wheels from PyPI.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use raypack::python::tags::Target;

#[test]
fn tags_match_packaging_for_several_targets() {
    let py = service("RAYPACK_TEST_PYTHON");
    for (platform, arch, pyv, glibc) in [
        ("linux/amd64", "x86_64", "3.11", "2_36"),
        ("linux/amd64", "x86_64", "3.10", "2_35"),
        ("linux/arm64", "aarch64", "3.12", "2_39"),
        ("linux/amd64", "x86_64", "3.13", "2_17"),
        ("linux/arm64", "aarch64", "3.9", "2_31"),
    ] {
        let minor: u32 = pyv[2..].parse().unwrap();
        let g: u32 = glibc[2..].parse().unwrap();
        let script = format!(
            "import packaging.tags as t, packaging._manylinux as m\n\
             m._get_glibc_version = lambda: (2, {g})\n\
             m._have_compatible_abi = lambda exe, archs: True\n\
             plats = ['linux_{arch}'] + list(m.platform_tags(['{arch}']))\n\
             tags = list(t.cpython_tags((3, {minor}), abis=['cp3{minor}'], platforms=plats)) + list(t.compatible_tags((3, {minor}), 'cp3{minor}', plats))\n\
             print('\\n'.join(str(x) for x in tags))\n"
        );
        let out = Command::new(&py).arg("-c").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let got = Target::new(platform, pyv, glibc).unwrap().tags();
        assert_eq!(got.len(), want.len(), "{platform} {pyv} {glibc}");
        assert_eq!(got, want, "{platform} {pyv} {glibc}");
    }
}

/// Downloads `name==version`'s best wheel for CPython 3.11 / manylinux_2_36 x86_64 from PyPI
/// ([`pypi_wheel_info`]), checking its sha256.
fn pypi_wheel(dir: &Path, name: &str, version: &str) -> PathBuf {
    let (fname, url, sha) = pypi_wheel_info(name, version);
    let bytes = reqwest::blocking_get_bytes(&url);
    assert_eq!(sha_hex(&bytes), sha, "{fname}");
    let path = dir.join(&fname);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Tiny blocking helpers over reqwest (the test needs no async).
mod reqwest {
    pub fn blocking_get_bytes(url: &str) -> Vec<u8> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let r = ::reqwest::Client::new()
                .get(url)
                .header("Accept", "application/vnd.pypi.simple.v1+json")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().await.unwrap().to_vec()
        })
    }
    pub fn blocking_get_json(url: &str) -> serde_json::Value {
        serde_json::from_slice(&blocking_get_bytes(url)).unwrap()
    }
}

/// relative path -> bytes, skipping bytecode.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel.contains("__pycache__") || rel.ends_with(".pyc") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn record_rows(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| {
            let (p, rest) = l.rsplit_once(',').and_then(|(a, _size)| {
                a.rsplit_once(',')
                    .map(|(p, h)| (p.to_string(), h.to_string()))
            })?;
            let _ = rest;
            Some((p.trim_matches('"').to_string(), l.to_string()))
        })
        .filter(|(p, _)| !p.ends_with(".pyc") && !p.contains("__pycache__"))
        .collect()
}

/// `(name, version, sha256s)` of every pin in tests/data/acceptance/requirements.txt.
fn acceptance_pins() -> Vec<(String, String, Vec<String>)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/acceptance/requirements.txt"),
    )
    .unwrap();
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let l = line.trim().trim_end_matches('\\').trim();
        if let Some(h) = l.strip_prefix("--hash=sha256:") {
            out.last_mut().unwrap().2.push(h.to_string());
        } else if let Some((n, v)) = l.split_once("==") {
            out.push((n.to_string(), v.to_string(), Vec::new()));
        }
    }
    out
}

#[test]
fn install_matches_pip_target_for_real_wheels() {
    let venv = PathBuf::from(service("RAYPACK_TEST_VENV"));
    let t = tempfile::tempdir().unwrap();
    // The committed acceptance set (tests/data/acceptance, compiled by uv with hashes):
    // requests, pyyaml, numpy, pydantic(-core), click, a namespace package (jaraco.*), ruff
    // (.data/scripts) and their dependencies.
    let wheels: Vec<PathBuf> = acceptance_pins()
        .iter()
        .map(|(name, version, hashes)| {
            let p = pypi_wheel(t.path(), name, version);
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(&p).unwrap(),
            ));
            assert!(hashes.contains(&sha), "{name}: {sha} is not in the lock");
            p
        })
        .collect();
    assert!(wheels.len() >= 15, "{wheels:?}");
    let ours = t.path().join("ours");
    let out = run(raypack()
        .args([
            "install",
            "--python",
            "/opt/py/bin/python",
            "--manylinux",
            "2_36",
            "--target",
        ])
        .arg(&ours)
        .args(&wheels));
    assert!(out.status.success(), "{}", stderr(&out));
    let pips = t.path().join("pip");
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--no-index",
            "--target",
        ])
        .arg(&pips)
        .args(&wheels)
        .env_remove("PIP_FIND_LINKS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compared modulo what the issue allows (INSTALLER, launcher text, bytecode) and pip's
    // direct_url.json, which PEP 610 asks for only because pip installed from local paths.
    let skip = |p: &str| p.ends_with("/INSTALLER") || p.ends_with("/direct_url.json");
    let launcher = |p: &str| p.starts_with("bin/") && p != "bin/ruff";
    let a: BTreeMap<String, Vec<u8>> = tree(&ours).into_iter().filter(|(k, _)| !skip(k)).collect();
    let b: BTreeMap<String, Vec<u8>> = tree(&pips).into_iter().filter(|(k, _)| !skip(k)).collect();
    let only_a: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only raypack: {only_a:?}; only pip: {only_b:?}"
    );
    for (k, va) in &a {
        if launcher(k) {
            continue;
        }
        if k.ends_with("/RECORD") {
            let ra: BTreeMap<String, String> = record_rows(va)
                .into_iter()
                .filter(|(p, _)| !skip(p))
                .collect();
            let rb: BTreeMap<String, String> = record_rows(&b[k])
                .into_iter()
                .filter(|(p, _)| !skip(p))
                .collect();
            assert_eq!(
                ra.keys().collect::<Vec<_>>(),
                rb.keys().collect::<Vec<_>>(),
                "{k}: RECORD paths"
            );
            for (p, row) in &ra {
                if p.starts_with("../../bin/") && !p.ends_with("/ruff") {
                    continue; // launcher text differs
                }
                assert_eq!(row, &rb[p], "{k}: RECORD row for {p}");
            }
            continue;
        }
        assert!(va == &b[k], "{k} differs from pip's");
    }
    // The console script points at the interpreter raypack was told about.
    let script = String::from_utf8_lossy(&a["bin/normalizer"]).to_string();
    assert!(
        script.starts_with("#!/opt/py/bin/python\n")
            && script.contains("from charset_normalizer.cli import"),
        "{script}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(ours.join("bin/ruff"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

#[test]
fn hostile_wheels_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let mk = |name: &str, entries: &[(&str, &str)]| -> PathBuf {
        let p = t.path().join(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        for (n, body) in entries {
            z.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut z, body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        p
    };
    let meta = (
        "evil-1.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n\n",
    );
    let wheel = (
        "evil-1.0.dist-info/WHEEL",
        "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    );
    for (file, entries, want) in [
        (
            "evil-1.0-py3-none-any.whl",
            vec![meta, wheel, ("../../etc/passwd", "x")],
            "outside its target",
        ),
        (
            "evil-1.0-py3-none-any.whl",
            vec![meta, wheel, ("/etc/passwd", "x")],
            "outside its target",
        ),
        (
            "evil-1.0-py3-none-any.whl",
            vec![
                (
                    "evil-1.0.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n\n",
                ),
                wheel,
            ],
            "METADATA says other 1.0",
        ),
        (
            "evil-1.0-py3-none-any.whl",
            vec![meta, wheel, ("x-1.0.dist-info/METADATA", "")],
            "2 .dist-info directories",
        ),
        (
            "evil-1.0-cp311-cp311-macosx_11_0_arm64.whl",
            vec![meta, wheel],
            "not installable on CPython 3.11",
        ),
        // A newline in a name would write RECORD lines of its own (pip uninstall deletes
        // what RECORD lists).
        (
            "evil-1.0-py3-none-any.whl",
            vec![meta, wheel, ("evil/a\n../../../../etc/passwd,,\nb.py", "x")],
            "outside its target",
        ),
        (
            "evil-1.0-py3-none-any.whl",
            vec![meta, wheel, ("evil/a", "x"), ("evil/a/b.py", "y")],
            "`evil/a` is both a file and a directory",
        ),
        (
            "evil-1.0-py3-none-any.whl",
            vec![
                (
                    "requests-1.0.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n\n",
                ),
                ("requests-1.0.dist-info/WHEEL", wheel.1),
            ],
            "`requests-1.0.dist-info` belongs to another project than evil",
        ),
    ] {
        let _ = std::fs::remove_file(t.path().join(file));
        let w = mk(file, &entries);
        let dir = t.path().join("target");
        let out = run(raypack().args(["install", "--target"]).arg(&dir).arg(&w));
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert!(
            stderr(&out).contains(want),
            "{file}: want `{want}` in {}",
            stderr(&out)
        );
        assert!(!dir.join("etc").exists());
    }
}

/// Runs `env --deps bundle` on examples/hello with `file` (name, content) as its
/// requirements_file; asserts exit 1 and that the store stayed empty; returns stderr.
fn bundle_fails(name: &str, content: &str) -> String {
    let (_t, dir) = hello_copy();
    std::fs::write(dir.join(name), content).unwrap();
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace("requirements.txt", name);
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", cache.path())
        .arg("-C")
        .arg(&dir)
        .args(["env", "--deps", "bundle", "--store"])
        .arg(format!("file://{}", store.path().display())));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let left: Vec<_> = std::fs::read_dir(store.path()).unwrap().collect();
    assert!(left.is_empty(), "published despite the error: {left:?}");
    err
}

/// sha256 of `filename` as PyPI's simple API lists it.
fn pypi_sha(project: &str, filename: &str) -> String {
    let v = reqwest::blocking_get_json(&format!("https://pypi.org/simple/{project}/"));
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == filename)
        .unwrap_or_else(|| panic!("{filename} not on PyPI"))["hashes"]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_download_that_does_not_match_its_hash_is_fatal_and_named() {
    let (file, url, _) = pypi_wheel_info("tabulate", "0.9.0");
    let wrong = "0".repeat(64);
    let err = bundle_fails(
        "pylock.toml",
        &pylock_text(&[("tabulate", "0.9.0", &file, &url, &wrong)]),
    );
    assert!(
        err.contains(&file) && err.contains(&wrong) && err.contains("discarded"),
        "{err}"
    );
}

#[test]
fn no_wheel_for_the_target_names_the_tags_it_has() {
    let sha = pypi_sha("pywin32", "pywin32-306-cp311-cp311-win32.whl");
    let err = bundle_fails(
        "requirements.txt",
        &format!("pywin32==306 --hash=sha256:{sha}\n"),
    );
    assert!(
        err.contains("pywin32 306: no wheel for")
            && err.contains("cp311-cp311-win32")
            && err.contains("sdists are not built"),
        "{err}"
    );
}

#[test]
fn a_yanked_only_version_is_refused_with_the_reason() {
    let sha = pypi_sha("requests", "requests-2.32.0-py3-none-any.whl");
    let err = bundle_fails(
        "requirements.txt",
        &format!("requests==2.32.0 --hash=sha256:{sha}\n"),
    );
    assert!(
        err.contains("requests==2.32.0")
            && err.contains("yanked")
            && err.contains("CVE-2024-35195"),
        "{err}"
    );
}

#[test]
fn pins_whose_hashes_the_index_does_not_list_are_refused() {
    let err = bundle_fails(
        "requirements.txt",
        &format!("tabulate==0.9.0 --hash=sha256:{}\n", "1".repeat(64)),
    );
    assert!(
        err.contains("tabulate==0.9.0") && err.contains("none of its 1 --hash values"),
        "{err}"
    );
}

#[test]
fn an_unreachable_index_is_a_clear_error_without_its_credentials() {
    // Port 9 on loopback: nothing listens, the connection is refused.
    let err = bundle_fails(
        "requirements.txt",
        &format!(
            "--index-url http://alice:s3cret-canary-9@127.0.0.1:9/simple\ntabulate==0.9.0 --hash=sha256:{}\n",
            "1".repeat(64)
        ),
    );
    assert!(
        err.contains("127.0.0.1:9") && err.contains("cannot reach the index for tabulate"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-canary-9") && !err.contains("alice"),
        "{err}"
    );
}

#[test]
fn a_malformed_lock_points_at_the_line() {
    let err = bundle_fails(
        "pylock.toml",
        "lock-version = \"1.0\"\n[[packages]\nname = \"x\"\n",
    );
    assert!(
        err.contains("pylock.toml:2:") && err.contains("not valid TOML"),
        "{err}"
    );
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
}

/// PEP 503 HTML page for one project.
fn html_page(files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let mut s = String::from("<!DOCTYPE html><html><body>\n");
    for (href, name) in files {
        s.push_str(&format!("<a href=\"{href}\">{name}</a><br/>\n"));
    }
    s.push_str("</body></html>\n");
    ("text/html; charset=utf-8".into(), s.into_bytes())
}

/// The dependency bundle in `store` holds each `(module, marker)`: module `pkg/<module>`
/// whose `__init__.py` contains the marker its wheel was built with.
fn assert_bundle_markers(store: &Path, markers: &[(&str, &str)]) {
    use std::io::Read;
    let zip = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-deps-"))
        .expect("bundle zip");
    let mut z = ::zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    for (module, marker) in markers {
        let mut s = String::new();
        z.by_name(&format!("pkg/{module}/__init__.py"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.contains(marker), "{module}: {s}");
    }
}

#[test]
fn html_indexes_credentials_find_links_and_per_package_pinning() {
    use std::collections::BTreeMap;
    let (alpha, alpha_bytes) = tiny_wheel("alpha", "1.0", "private alpha");
    // The public index carries an impostor with the same name and version.
    let (_, impostor) = tiny_wheel("alpha", "1.0", "impostor");
    let (beta, beta_bytes) = tiny_wheel("beta", "2.0", "public beta");
    let (gamma, gamma_bytes) = tiny_wheel("gamma", "3.0", "find-links gamma");

    // Private index: PEP 503 HTML, relative hrefs with #sha256, basic auth from URL userinfo.
    let mut private = BTreeMap::new();
    private.insert(
        "/simple/alpha/".to_string(),
        html_page(&[(
            &format!("../../files/{alpha}#sha256={}", sha_hex(&alpha_bytes)),
            &alpha,
        )]),
    );
    private.insert(
        format!("/files/{alpha}"),
        ("application/octet-stream".into(), alpha_bytes.clone()),
    );
    let private = StaticServer::start(private, Some("alice:pa ss@word"), 20);
    // Public index: HTML too, credentials from a netrc file.
    let mut public = BTreeMap::new();
    public.insert(
        "/simple/alpha/".to_string(),
        html_page(&[(
            &format!("/files/{alpha}#sha256={}", sha_hex(&impostor)),
            &alpha,
        )]),
    );
    public.insert(
        format!("/files/{alpha}"),
        ("application/octet-stream".into(), impostor),
    );
    public.insert(
        "/simple/beta/".to_string(),
        html_page(&[(
            &format!("/files/{beta}#sha256={}", sha_hex(&beta_bytes)),
            &beta,
        )]),
    );
    public.insert(
        format!("/files/{beta}"),
        ("application/octet-stream".into(), beta_bytes.clone()),
    );
    let public = StaticServer::start(public, Some("bob:hunter2-canary"), 20);

    let (t, dir) = hello_copy();
    std::fs::create_dir_all(dir.join("wheels")).unwrap();
    std::fs::write(dir.join("wheels").join(&gamma), &gamma_bytes).unwrap();
    std::fs::write(
        dir.join("requirements.txt"),
        format!(
            "--index-url {}/simple\n--find-links wheels\nalpha==1.0 --hash=sha256:{}\nbeta==2.0 --hash=sha256:{}\ngamma==3.0 --hash=sha256:{}\n",
            public.base,
            sha_hex(&alpha_bytes),
            sha_hex(&beta_bytes),
            sha_hex(&gamma_bytes)
        ),
    )
    .unwrap();
    let private_url = private
        .base
        .replace("http://", "http://alice:pa%20ss%40word@");
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            &format!("requirements_file = \"requirements.txt\"\npackage_indexes = {{ alpha = \"{private_url}/simple\" }}"),
        );
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let netrc = t.path().join("netrc");
    let host = public
        .base
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        &netrc,
        format!("machine {host} login bob password hunter2-canary\n"),
    )
    .unwrap();
    let store = t.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let out = run(raypack()
        .env("NETRC", &netrc)
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["-vv", "env", "--deps", "bundle", "--store"])
        .arg(format!("file://{}", store.display())));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("hunter2-canary") && !err.contains("pa ss") && !err.contains("pa%20ss"),
        "{err}"
    );
    // alpha came from its pinned index only: the public index was never asked for it.
    assert!(
        private.requests().contains(&"/simple/alpha/".to_string()),
        "{:?}",
        private.requests()
    );
    assert!(
        !public.requests().iter().any(|p| p.contains("alpha")),
        "{:?}",
        public.requests()
    );
    // The bundle holds the right bytes for all three.
    assert_bundle_markers(
        &store,
        &[
            ("alpha", "private alpha"),
            ("beta", "public beta"),
            ("gamma", "find-links gamma"),
        ],
    );
}

/// Issue 16: one index client for locking and pinning. `raypack lock` resolves from a PEP 503
/// HTML-only index with basic auth from URL userinfo (pinned per package), an HTML index whose
/// credentials come from netrc, and a find-links directory; the dependency found only in
/// find-links comes from a wheel's METADATA. No credential reaches the output or the lock, and
/// the lock then installs (`env --deps bundle` downloads through the redacted URLs).
#[test]
fn lock_resolves_from_html_indexes_with_credentials_and_find_links() {
    use std::collections::BTreeMap;
    let (alpha, alpha_bytes) = tiny_wheel_requiring("alpha", "1.0", "private alpha", &["gamma>=3"]);
    let (_, impostor) = tiny_wheel("alpha", "1.0", "impostor");
    let (beta1, beta1_bytes) = tiny_wheel("beta", "1.0", "old beta");
    let (beta2, beta2_bytes) = tiny_wheel("beta", "2.0", "public beta");
    let (gamma, gamma_bytes) = tiny_wheel("gamma", "3.0", "find-links gamma");

    let mut private = BTreeMap::new();
    private.insert(
        "/simple/alpha/".to_string(),
        html_page(&[(
            &format!("../../files/{alpha}#sha256={}", sha_hex(&alpha_bytes)),
            &alpha,
        )]),
    );
    private.insert(
        format!("/files/{alpha}"),
        ("application/octet-stream".into(), alpha_bytes.clone()),
    );
    let private = StaticServer::start(private, Some("alice:pa ss@word"), 40);
    let mut public = BTreeMap::new();
    public.insert(
        "/simple/alpha/".to_string(),
        html_page(&[(
            &format!("/files/{alpha}#sha256={}", sha_hex(&impostor)),
            &alpha,
        )]),
    );
    public.insert(
        "/simple/beta/".to_string(),
        html_page(&[
            (
                &format!("/files/{beta1}#sha256={}", sha_hex(&beta1_bytes)),
                &beta1,
            ),
            (
                &format!("/files/{beta2}#sha256={}", sha_hex(&beta2_bytes)),
                &beta2,
            ),
        ]),
    );
    public.insert(
        format!("/files/{beta1}"),
        ("application/octet-stream".into(), beta1_bytes),
    );
    public.insert(
        format!("/files/{beta2}"),
        ("application/octet-stream".into(), beta2_bytes.clone()),
    );
    let public = StaticServer::start(public, Some("bob:hunter2-canary"), 40);

    let (t, dir) = hello_copy();
    std::fs::create_dir_all(dir.join("wheels")).unwrap();
    std::fs::write(dir.join("wheels").join(&gamma), &gamma_bytes).unwrap();
    std::fs::write(
        dir.join("requirements.txt"),
        format!(
            "--index-url {}/simple\n--find-links wheels\nalpha\nbeta>=1\n",
            public.base
        ),
    )
    .unwrap();
    let private_url = private
        .base
        .replace("http://", "http://alice:pa%20ss%40word@");
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            &format!("requirements_file = \"requirements.txt\"\npackage_indexes = {{ alpha = \"{private_url}/simple\" }}"),
        );
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let host = public
        .base
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let netrc = t.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine {host} login bob password hunter2-canary\n"),
    )
    .unwrap();
    let secret_free = |what: &str, text: &str| {
        for s in ["hunter2-canary", "pa ss", "pa%20ss", "alice", "bob"] {
            assert!(!text.contains(s), "{s} in {what}:\n{text}");
        }
    };

    let out = run(raypack()
        .env("NETRC", &netrc)
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args([
            "-vv",
            "lock",
            "--python-version",
            "3.11",
            "--manylinux",
            "2_36",
        ]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    secret_free("stderr", &err);
    secret_free("stdout", &String::from_utf8_lossy(&out.stdout));
    let lock = std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap();
    secret_free("the lock", &lock);
    let pins = versions(&lock);
    assert_eq!(
        pins,
        [("alpha", "1.0"), ("beta", "2.0"), ("gamma", "3.0")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        "{lock}"
    );
    // The private alpha's bytes (not the impostor's), from the private index only; gamma from
    // the find-links directory.
    assert!(lock.contains(&sha_hex(&alpha_bytes)), "{lock}");
    assert!(!lock.contains(&sha_hex(&impostor)), "{lock}");
    assert!(
        lock.contains(&format!("index = \"{}/simple\"", private.base)),
        "{lock}"
    );
    assert!(
        lock.contains(&sha_hex(&gamma_bytes)) && lock.contains("file://"),
        "{lock}"
    );
    assert!(
        !public.requests().iter().any(|p| p.contains("alpha")),
        "{:?}",
        public.requests()
    );

    // The lock installs: the bundle downloads alpha and beta through the URLs the lock
    // records (without credentials), authenticated from what the recipe and netrc say.
    let store = t.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let out = run(raypack()
        .env("NETRC", &netrc)
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["env", "--deps", "bundle", "--store"])
        .arg(format!("file://{}", store.display())));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    secret_free("stderr", &err);
    assert_bundle_markers(
        &store,
        &[
            ("alpha", "private alpha"),
            ("beta", "public beta"),
            ("gamma", "find-links gamma"),
        ],
    );
}

#[test]
fn a_broken_download_resumes_with_a_range_request() {
    use std::io::{BufRead, BufReader, Write};
    let (name, bytes) = tiny_wheel("resumed", "1.0", &"x".repeat(50_000));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (b, s2) = (bytes.clone(), seen.clone());
    // Two connections at most: the first breaks halfway, the second must ask for the rest.
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(2).enumerate() {
            let mut s = stream.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').parse::<usize>().unwrap());
                }
            }
            s2.lock().unwrap().push(format!("{range:?}"));
            if i == 0 {
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len());
                let _ = s.write_all(&b[..b.len() / 2]);
            } else {
                let from = range.unwrap_or(0);
                let _ = write!(
                    s,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                    b.len() - 1,
                    b.len(),
                    b.len() - from
                );
                let _ = s.write_all(&b[from..]);
            }
        }
    });
    let t = tempfile::tempdir().unwrap();
    let lock = t.path().join("pylock.toml");
    std::fs::write(
        &lock,
        pylock_text(&[(
            "resumed",
            "1.0",
            &name,
            &format!("{base}/{name}"),
            &sha_hex(&bytes),
        )]),
    )
    .unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .args(["install", "-r"])
        .arg(&lock)
        .arg("--target")
        .arg(t.path().join("dir")));
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], "None");
    let resumed_at: usize = seen[1]
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert_eq!(resumed_at, bytes.len() / 2, "{seen:?}");
    assert!(t.path().join("dir/resumed/__init__.py").is_file());
}

/// Issue 15 #2: a nested `-r` in a hashed requirements file is installed (it was dropped:
/// 0 dependencies, exit 0), by `install -r` and by `env --deps bundle` alike.
#[test]
fn nested_requirement_files_are_installed_not_dropped() {
    let sha = pypi_sha("tabulate", "tabulate-0.9.0-py3-none-any.whl");
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("reqs")).unwrap();
    std::fs::write(
        t.path().join("reqs/base.txt"),
        format!("tabulate==0.9.0 \\\n    --hash=sha256:{sha}\n"),
    )
    .unwrap();
    let top = t.path().join("requirements.txt");
    std::fs::write(&top, "# the real pins live elsewhere\n-r reqs/base.txt\n").unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .args(["install", "-r"])
        .arg(&top)
        .arg("--target")
        .arg(t.path().join("dir")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(t.path().join("dir/tabulate/__init__.py").is_file());

    let (_h, dir) = hello_copy();
    std::fs::create_dir_all(dir.join("reqs")).unwrap();
    std::fs::copy(t.path().join("reqs/base.txt"), dir.join("reqs/base.txt")).unwrap();
    std::fs::write(dir.join("requirements.txt"), "-r reqs/base.txt\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache"))
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "env", "--deps", "bundle", "--store"])
        .arg(format!("file://{}", store.path().display())));
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle = std::fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().contains("deps"))
        .unwrap_or_else(|| panic!("no deps bundle in the store: {}", stdout(&out)));
    let mut z = zip::ZipArchive::new(std::fs::File::open(&bundle).unwrap()).unwrap();
    let names: Vec<String> = (0..z.len())
        .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("tabulate/__init__.py")),
        "{names:?}"
    );
    // Issue 15 #10: the bundle's line counts the files in the zip, not the wheels.
    let line = stderr(&out)
        .lines()
        .find(|l| l.contains("py_module:dependencies"))
        .unwrap_or_default()
        .to_string();
    let files: usize = line
        .split("1 wheels, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no file count in {line:?}"));
    assert!(files > 5 && !line.contains(" 0 B)"), "{line}");
}

/// Issue 15 #7: `check` and `env` read the requirements file and refuse what no command can
/// use, naming file:line; nothing reaches a printed runtime_env.
#[test]
fn check_and_env_refuse_unusable_requirement_lines_with_file_and_line() {
    for (text, want) in [
        (
            "requests\n-e .\n",
            "requirements.txt:2: `-e .`: editable installs",
        ),
        (
            "requests\nthis is not a requirement!\n",
            "requirements.txt:2: `this is not",
        ),
        (
            "requests\n-r /nonexistent/passwd.txt\n",
            "requirements.txt:2:",
        ),
        (
            "file:///tmp/x.whl\n",
            "requirements.txt:1: `file:///tmp/x.whl` is a path or URL",
        ),
    ] {
        let (_t, dir) = hello_copy();
        std::fs::write(dir.join("requirements.txt"), text).unwrap();
        for args in [&["check"][..], &["env", "--dry-run"][..]] {
            let out = run(raypack().arg("-C").arg(&dir).args(args));
            assert_eq!(out.status.code(), Some(1), "{args:?} {text:?}");
            assert!(
                stderr(&out).contains(want),
                "{args:?}: want {want:?} in {}",
                stderr(&out)
            );
            assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        }
    }
}

/// Issue 15 #3: index credentials in a requirements file never reach the printed runtime_env.
#[test]
fn index_credentials_in_a_requirements_file_are_not_printed() {
    let (_t, dir) = hello_copy();
    std::fs::write(
        dir.join("requirements.txt"),
        "--index-url https://user:CANARY-TOKEN-91@pypi.example.invalid/simple\n--extra-index-url=https://__token__:CANARY-TOKEN-92@x.example.invalid/simple\nrequests>=2.31\n",
    )
    .unwrap();
    let out = run(raypack().arg("-C").arg(&dir).args([
        "env",
        "--dry-run",
        "--deps",
        "pip",
        "--emit",
        "rayjob",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("CANARY"), "{text}");
    assert!(
        stdout(&out).contains("--index-url https://pypi.example.invalid/simple"),
        "{}",
        stdout(&out)
    );
}

/// A wheel whose member `lie` declares (zip64) an uncompressed size of 1 TiB while holding
/// its few real bytes; written by hand, as no zip library writes such a lie.
fn wheel_declaring_a_terabyte(path: &Path, lie: &str) {
    use flate2::{Compression, write::DeflateEncoder};
    use std::io::Write;
    let di = "evil-1.0.dist-info";
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("evil/__init__.py".into(), b"x = 1\n".to_vec()),
        (
            format!("{di}/METADATA"),
            b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n\n".to_vec(),
        ),
        (
            format!("{di}/WHEEL"),
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
        ),
    ];
    if lie.contains(".data/scripts/") {
        files.push((lie.into(), b"#!python\nprint(1)\n".to_vec()));
    }
    let (mut body, mut central) = (Vec::new(), Vec::new());
    for (name, data) in &files {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        let c = enc.finish().unwrap();
        let crc = crc32fast::hash(data);
        let offset = body.len() as u32;
        let (extra, usize_, csize, ver) = if name == lie {
            let mut x = vec![1u8, 0, 16, 0];
            x.extend((1u64 << 40).to_le_bytes());
            x.extend((c.len() as u64).to_le_bytes());
            (x, u32::MAX, u32::MAX, 45u16)
        } else {
            (Vec::new(), data.len() as u32, c.len() as u32, 20u16)
        };
        let le16 = |v: u16| v.to_le_bytes();
        let le32 = |v: u32| v.to_le_bytes();
        body.extend(le32(0x04034b50));
        for v in [ver, 0, 8, 0, 0x21] {
            body.extend(le16(v));
        }
        for v in [crc, csize, usize_] {
            body.extend(le32(v));
        }
        body.extend(le16(name.len() as u16));
        body.extend(le16(extra.len() as u16));
        body.extend(name.as_bytes());
        body.extend(&extra);
        body.extend(&c);
        central.extend(le32(0x02014b50));
        for v in [(3 << 8) | ver, ver, 0, 8, 0, 0x21] {
            central.extend(le16(v));
        }
        for v in [crc, csize, usize_] {
            central.extend(le32(v));
        }
        for v in [name.len() as u16, extra.len() as u16, 0, 0, 0] {
            central.extend(le16(v));
        }
        central.extend(le32(0o100644 << 16));
        central.extend(le32(offset));
        central.extend(name.as_bytes());
        central.extend(&extra);
    }
    let cd_offset = body.len() as u32;
    let n = files.len() as u16;
    body.extend(&central);
    body.extend(0x06054b50u32.to_le_bytes());
    for v in [0u16, 0, n, n] {
        body.extend(v.to_le_bytes());
    }
    body.extend((central.len() as u32).to_le_bytes());
    body.extend(cd_offset.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    std::fs::write(path, body).unwrap();
}

/// Issue 15 #4: sizes a wheel declares are never trusted for allocation (a 1 TiB zip64 member
/// aborted the process), and a `#!python` script over a few MiB is refused, not read whole.
#[test]
fn declared_sizes_are_not_trusted_and_huge_scripts_are_refused() {
    let t = tempfile::tempdir().unwrap();
    for (lie, want) in [
        (
            "evil/__init__.py",
            "member evil/__init__.py declares 1099511627776 bytes but holds 6",
        ),
        (
            "evil-1.0.data/scripts/evil",
            "script evil-1.0.data/scripts/evil is over 8 MiB (1099511627776 bytes declared)",
        ),
    ] {
        let w = t.path().join("evil-1.0-py3-none-any.whl");
        wheel_declaring_a_terabyte(&w, lie);
        let dir = t.path().join(format!("target-{}", lie.len()));
        let out = run(raypack().args(["install", "--target"]).arg(&dir).arg(&w));
        assert_eq!(out.status.code(), Some(1), "{lie}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{lie}: {}", stderr(&out));
    }
    let w = t.path().join("big-1.0-py3-none-any.whl");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&w).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (n, body) in [
        (
            "big-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n\n".to_vec(),
        ),
        (
            "big-1.0.dist-info/WHEEL",
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec(),
        ),
        ("big-1.0.data/scripts/big", {
            let mut s = b"#!python\n".to_vec();
            s.resize(9 << 20, b'#');
            s
        }),
    ] {
        z.start_file(n, deflated).unwrap();
        std::io::Write::write_all(&mut z, &body).unwrap();
    }
    z.finish().unwrap();
    let out = run(raypack()
        .args(["install", "--target"])
        .arg(t.path().join("big"))
        .arg(&w));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("script big-1.0.data/scripts/big is over 8 MiB"),
        "{}",
        stderr(&out)
    );
}

/// Issue 15 #9: a server that streams far more than the lock's declared `size` is cut off
/// there (it was read to the end); nothing is kept.
#[test]
fn a_download_is_capped_at_the_declared_size() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent2 = sent.clone();
    // One connection (the cut-off is final, not retried): 64 MiB offered for 881 declared bytes.
    std::thread::spawn(move || {
        if let Some(Ok(mut s)) = listener.incoming().next() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let total = 64u64 << 20;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
            let chunk = vec![b'x'; 64 << 10];
            while sent2.load(std::sync::atomic::Ordering::Relaxed) < total {
                if s.write_all(&chunk).is_err() {
                    break;
                }
                sent2.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let t = tempfile::tempdir().unwrap();
    let lock = t.path().join("pylock.toml");
    let text = pylock_text(&[(
        "big",
        "1.0",
        "big-1.0-py3-none-any.whl",
        &format!("{base}/big-1.0-py3-none-any.whl"),
        &"0".repeat(64),
    )])
    .replace("hashes = {", "size = 881\nhashes = {");
    std::fs::write(&lock, text).unwrap();
    let cache = t.path().join("cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .args(["install", "-r"])
        .arg(&lock)
        .arg("--target")
        .arg(t.path().join("dir")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sent more than the 881 bytes the lock declares"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let n = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n < 32 << 20, "the server got to send {n} bytes");
    // Nothing kept: no partial file anywhere in the cache.
    let mut left = Vec::new();
    let mut dirs = vec![cache.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                left.push(p);
            }
        }
    }
    assert!(
        !left.iter().any(|p| p.to_string_lossy().ends_with(".part")),
        "{left:?}"
    );
    assert!(cache.is_dir());
}

/// Issue 15 #3: the recipe's `index_url` credentials are sent by `lock` and by the bundle's
/// downloads (files listed as URLs without userinfo on the index's host) — one credential
/// path for every index request — and appear nowhere in output or in the lock.
#[test]
fn lock_and_bundle_send_the_recipes_index_credentials() {
    use std::collections::BTreeMap;
    let (file, bytes) = tiny_wheel("tinyauth", "1.0", "private");
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": "tinyauth",
        "files": [{
            "filename": file,
            "url": format!("../../files/{file}"),
            "hashes": {"sha256": sha_hex(&bytes)},
            "size": bytes.len(),
        }],
    });
    let mut routes = BTreeMap::new();
    routes.insert(
        "/simple/tinyauth/".to_string(),
        (
            "application/vnd.pypi.simple.v1+json".to_string(),
            page.to_string().into_bytes(),
        ),
    );
    routes.insert(
        format!("/files/{file}"),
        ("application/octet-stream".to_string(), bytes.clone()),
    );
    let server = StaticServer::start(routes, Some("carol:lock-canary-5150"), 40);
    let (t, dir) = hello_copy();
    std::fs::write(dir.join("requirements.txt"), "tinyauth\n").unwrap();
    let index = server
        .base
        .replace("http://", "http://carol:lock-canary-5150@");
    let recipe = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "requirements_file = \"requirements.txt\"",
            &format!("requirements_file = \"requirements.txt\"\nindex_url = \"{index}/simple\""),
        );
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
    let cache = t.path().join("cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .env("NETRC", "/dev/null")
        .arg("-C")
        .arg(&dir)
        .args(["lock", "--python-version", "3.11", "--manylinux", "2_36"]));
    let mut seen = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{seen}");
    let lock = std::fs::read_to_string(dir.join("pylock.raypack.toml")).unwrap();
    assert!(lock.contains("name = \"tinyauth\""), "{lock}");
    let store = t.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .env("NETRC", "/dev/null")
        .arg("-C")
        .arg(&dir)
        .args(["-vv", "env", "--deps", "bundle", "--store"])
        .arg(format!("file://{}", store.display())));
    seen.push_str(&stdout(&out));
    seen.push_str(&stderr(&out));
    assert!(out.status.success(), "{seen}");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/files/")),
        "the wheel was never downloaded: {:?}",
        server.log.lock().unwrap()
    );
    assert!(
        !seen.contains("lock-canary") && !lock.contains("lock-canary"),
        "{seen}\n{lock}"
    );
}
