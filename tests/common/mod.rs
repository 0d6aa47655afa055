//! Shared helpers for the integration tests: the raypack binary, project copies, and the
//! addresses of the servers `scripts/test` starts on 127.0.0.1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The address of a test service exported by `scripts/test` / `scripts/services start`.
/// A missing service is a failure, never a skip.
pub fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs the servers that scripts/test starts \
             (run `scripts/test`, or `eval \"$(scripts/services start)\"` first)"
        ),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the stand-in base ships: its Python environment's pins (normalized name → version),
/// read from the hashed lock `scripts/lib/standin.sh` installs (`scripts/locks/standin.txt`).
/// Tests that talk about "what the base has" ask this, never a version typed into the test.
pub fn standin_pins() -> std::collections::BTreeMap<String, String> {
    let path = repo().join("scripts/locks/standin.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let pins: std::collections::BTreeMap<String, String> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty())
        .map(|l| {
            let (name, version) = l
                .trim_end_matches(['\\', ' '])
                .split_once("==")
                .unwrap_or_else(|| panic!("{}: not a pin: {l:?}", path.display()));
            (raypack::python::wheel::normalize(name), version.to_string())
        })
        .collect();
    assert!(pins.contains_key("ray"), "{}: no ray pin", path.display());
    pins
}

/// The stand-in base's version of `name` (see [`standin_pins`]).
pub fn standin_version(name: &str) -> String {
    standin_pins()
        .remove(name)
        .unwrap_or_else(|| panic!("the stand-in base does not ship {name}"))
}

pub fn raypack() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_raypack"));
    c.env_remove("RAYPACK_LOG");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("raypack runs");
    eprintln!("--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copies a directory tree (files and dirs only), skipping `.raypack/`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == ".raypack" || name == "__pycache__" {
            continue;
        }
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// A fresh copy of examples/hello in a temp dir.
pub fn hello_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("hello");
    copy_tree(&repo().join("examples/hello"), &p);
    (t, p)
}

/// A short unique prefix for objects in shared buckets.
pub fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{n}", std::process::id())
}

/// Runs `validate.py` (vendored KubeRay v1.7.0 CRDs) on a YAML text; returns its output.
pub fn validate_kuberay(yaml: &str) -> (bool, String) {
    use std::io::Write;
    let py = std::env::var("RAYPACK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(py)
        .arg(repo().join("tests/kuberay-crds/validate.py"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs validate.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The best wheel of `name==version` for CPython 3.11 / manylinux_2_36 x86_64 on PyPI's
/// simple API (PEP 691 JSON): (filename, url, sha256).
pub fn pypi_wheel_info(name: &str, version: &str) -> (String, String, String) {
    use raypack::python::tags::Target;
    use raypack::python::wheel::{WheelName, best_wheel, normalize};
    let url = format!("https://pypi.org/simple/{}/", normalize(name));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v: serde_json::Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .header("Accept", "application/vnd.pypi.simple.v1+json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.json().await.unwrap()
    });
    let prio = Target::new("linux/amd64", "3.11", "2_36")
        .unwrap()
        .priorities();
    let files: Vec<(&serde_json::Value, WheelName)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| WheelName::parse(f["filename"].as_str()?).map(|w| (f, w)))
        .filter(|(_, w)| w.version == version)
        .collect();
    let names: Vec<WheelName> = files.iter().map(|(_, w)| w.clone()).collect();
    let best = best_wheel(&names, &prio).unwrap_or_else(|| panic!("{name} {version}: no wheel"));
    let (f, _) = files.iter().find(|(_, w)| w == best).unwrap();
    (
        f["filename"].as_str().unwrap().to_string(),
        f["url"].as_str().unwrap().to_string(),
        f["hashes"]["sha256"].as_str().unwrap().to_string(),
    )
}

/// A static HTTP/1.1 server on 127.0.0.1 for index tests: fixed routes, optional basic auth,
/// a request log. It serves at most `max_requests` connections or until its 120 s deadline,
/// then stops by itself (and with the test process).
pub struct StaticServer {
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl StaticServer {
    /// `routes`: path → (content type, body). `auth`: the expected `user:password`.
    pub fn start(
        routes: std::collections::BTreeMap<String, (String, Vec<u8>)>,
        auth: Option<&str>,
        max_requests: usize,
    ) -> StaticServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let expected = auth.map(|a| {
            use base64::Engine;
            format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        });
        let l = log.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let mut served = 0;
            while served < max_requests && std::time::Instant::now() < deadline {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                };
                served += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut authz = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                        authz = Some(v.trim().to_string());
                    }
                }
                l.lock().unwrap().push(path.clone());
                let (status, ctype, body) = if expected.is_some()
                    && authz.as_deref()
                        != expected
                            .as_deref()
                            .map(|e| e.to_ascii_lowercase())
                            .as_deref()
                {
                    (
                        "401 Unauthorized",
                        "text/plain".to_string(),
                        b"auth".to_vec(),
                    )
                } else {
                    match routes.get(&path) {
                        Some((c, b)) => ("200 OK", c.clone(), b.clone()),
                        None => ("404 Not Found", "text/plain".to_string(), b"no".to_vec()),
                    }
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        StaticServer { base, log }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A minimal valid wheel `name-version-py3-none-any.whl` with module `name` (value `marker`).
pub fn tiny_wheel(name: &str, version: &str, marker: &str) -> (String, Vec<u8>) {
    tiny_wheel_requiring(name, version, marker, &[])
}

/// [`tiny_wheel`] whose METADATA lists `requires` as `Requires-Dist`.
pub fn tiny_wheel_requiring(
    name: &str,
    version: &str,
    marker: &str,
    requires: &[&str],
) -> (String, Vec<u8>) {
    use std::io::Write;
    let filename = format!("{name}-{version}-py3-none-any.whl");
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        let di = format!("{name}-{version}.dist-info");
        let files = [
            (format!("{name}/__init__.py"), format!("MARKER = {marker:?}\n")),
            (
                format!("{di}/METADATA"),
                format!(
                    "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{}",
                    requires
                        .iter()
                        .map(|r| format!("Requires-Dist: {r}\n"))
                        .collect::<String>()
                ),
            ),
            (
                format!("{di}/WHEEL"),
                "Wheel-Version: 1.0\nGenerator: raypack-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_string(),
            ),
        ];
        let mut record = String::new();
        for (p, body) in &files {
            z.start_file(p.as_str(), o).unwrap();
            z.write_all(body.as_bytes()).unwrap();
            use base64::Engine;
            use sha2::Digest;
            record.push_str(&format!(
                "{p},sha256={},{}\n",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(body.as_bytes())),
                body.len()
            ));
        }
        record.push_str(&format!("{di}/RECORD,,\n"));
        z.start_file(format!("{di}/RECORD"), o).unwrap();
        z.write_all(record.as_bytes()).unwrap();
        z.finish().unwrap();
    }
    (filename, buf.into_inner())
}

/// A PEP 751 lock with one wheel per package: `(name, version, wheel filename, url, sha256)`.
pub fn pylock_text(packages: &[(&str, &str, &str, &str, &str)]) -> String {
    let mut lock = String::from("lock-version = \"1.0\"\ncreated-by = \"raypack-tests\"\n");
    for (name, version, file, url, sha) in packages {
        lock.push_str(&format!("\n[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\n\n[[packages.wheels]]\nname = \"{file}\"\nurl = \"{url}\"\nhashes = {{ sha256 = \"{sha}\" }}\n"));
    }
    lock
}

/// A PEP 751 lock of real PyPI wheels ([`pypi_wheel_info`]) for `(name, version)` pins.
pub fn pypi_pylock(pins: &[(&str, &str)]) -> String {
    let infos: Vec<(String, String, String)> =
        pins.iter().map(|(n, v)| pypi_wheel_info(n, v)).collect();
    let rows: Vec<(&str, &str, &str, &str, &str)> = pins
        .iter()
        .zip(&infos)
        .map(|((n, v), (f, u, s))| (*n, *v, f.as_str(), u.as_str(), s.as_str()))
        .collect();
    pylock_text(&rows)
}

/// Makes the project in `dir` take its dependencies from a `pylock.toml` of real PyPI wheels
/// for `pins` ([`pypi_pylock`]) instead of its requirements.txt.
pub fn use_pypi_pylock(dir: &Path, pins: &[(&str, &str)]) {
    std::fs::write(dir.join("pylock.toml"), pypi_pylock(pins)).unwrap();
    let recipe = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    let from = "requirements_file = \"requirements.txt\"";
    assert!(
        recipe.contains(from),
        "no `{from}` to replace in the recipe"
    );
    let recipe = recipe.replace(from, "requirements_file = \"pylock.toml\"");
    std::fs::write(dir.join("raypack.toml"), recipe).unwrap();
}

/// Runs skopeo (the independent registry client) and asserts it succeeded.
pub fn skopeo(args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Pulls `image` with skopeo and unpacks it with umoci (which applies whiteouts) under `dir`;
/// returns the bundle (rootfs at `bundle/rootfs`).
pub fn pull_and_unpack(dir: &Path, image: &str) -> PathBuf {
    let layout = dir.join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:img", layout.display()),
    ]);
    let bundle = dir.join("bundle");
    unpack(&layout, "img", &bundle);
    bundle
}

/// Unpacks image `tag` of the OCI layout `layout` with umoci into the runtime bundle `bundle`.
pub fn unpack(layout: &Path, tag: &str, bundle: &Path) {
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `skopeo inspect --raw` of a reference in the harness registry: the manifest's exact bytes
/// and its JSON.
pub fn inspect_raw(reference: &str) -> (Vec<u8>, serde_json::Value) {
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let v = serde_json::from_slice(&out.stdout).unwrap();
    (out.stdout, v)
}

/// examples/hello on `base`, pushing to a fresh repository of the harness registry under tag
/// `v1`: `base_extra` goes in `[base]` after the image, `image_extra` in `[image]`. Returns the
/// temp dir, the project and the repository.
pub fn hello_pushing(
    tag: &str,
    base: &str,
    base_extra: &str,
    image_extra: &str,
) -> (tempfile::TempDir, PathBuf, String) {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let (t, dir) = hello_copy();
    let repo = format!("{registry}/raypack-test/{}", unique(tag));
    let line = "image = \"rayproject/ray:2.60.0-py311-cpu\"";
    let text = std::fs::read_to_string(dir.join("raypack.toml")).unwrap();
    assert!(text.contains(line), "{text}");
    let text = text.replace(
        line,
        &format!("image = \"{base}\"\n{base_extra}\n[image]\nrepository = \"{repo}\"\ntags = [\"v1\"]\n{image_extra}"),
    );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    (t, dir, repo)
}

/// Runs `script` with sh as ray (1000:100) inside the unpacked image, in bubblewrap with no
/// network; returns (success, stdout + stderr). bwrap as root cannot take --uid without a
/// user namespace, so setpriv drops to 1000:100 first; every parent of the rootfs must be
/// traversable by that user.
pub fn sandbox(tmp: &Path, bundle: &Path, script: &str) -> (bool, String) {
    sandbox_with(tmp, bundle, "/home/ray/app", &image_env(bundle), script)
}

/// The environment a container runtime gives the image's process: the image config's `Env`,
/// as umoci wrote it into the bundle's `config.json` (PATH, HOME, PYTHONPATH, …).
pub fn image_env(bundle: &Path) -> Vec<String> {
    let text = std::fs::read(bundle.join("config.json")).expect("an umoci bundle has config.json");
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let env: Vec<String> = v["process"]["env"]
        .as_array()
        .expect("config.json has process.env")
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    env
}

/// [`sandbox`] with the given working directory and environment.
pub fn sandbox_with(
    tmp: &Path,
    bundle: &Path,
    cwd: &str,
    env: &[String],
    script: &str,
) -> (bool, String) {
    sandbox_exec(tmp, bundle, cwd, env, &[], &["sh", "-c", script])
}

/// Runs `argv` as ray (1000:100) in the unpacked image (see [`sandbox`]) with exactly the
/// environment `env`, after binding each host file of `binds` read-only at its path inside
/// (under /tmp, a tmpfs: the rootfs itself is not the test user's to add files to).
pub fn sandbox_exec(
    tmp: &Path,
    bundle: &Path,
    cwd: &str,
    env: &[String],
    binds: &[(&Path, &str)],
    argv: &[&str],
) -> (bool, String) {
    use std::os::unix::fs::PermissionsExt;
    for p in [tmp, bundle] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=1000",
        "--regid=100",
        "--clear-groups",
        "bwrap",
        "--bind",
    ])
    .arg(bundle.join("rootfs"))
    .args(["/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
    .args(["--tmpfs", "/dev/shm"]);
    for (host, inside) in binds {
        cmd.arg("--ro-bind").arg(host).arg(inside);
    }
    cmd.args([
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-net",
        "--die-with-parent",
    ])
    .args([
        "--uid",
        "1000",
        "--gid",
        "100",
        "--chdir",
        cwd,
        "--clearenv",
    ]);
    for kv in env {
        let (k, v) = kv.split_once('=').expect("NAME=value");
        cmd.args(["--setenv", k, v]);
    }
    let out = cmd.args(argv).output().expect("bwrap runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// name → version of the packages in a lock (single target).
pub fn versions(text: &str) -> std::collections::BTreeMap<String, String> {
    let doc: toml::Table = text.parse().unwrap();
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn uv_compile(reqs: &[&str]) -> std::collections::BTreeMap<String, String> {
    let uv = service("RAYPACK_TEST_UV");
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("requirements.in");
    std::fs::write(&input, reqs.join("\n") + "\n").unwrap();
    let out = Command::new(uv)
        .args(["pip", "compile", "-q", "--no-header", "--no-annotate"])
        .args([
            "--python-platform",
            "x86_64-manylinux_2_36",
            "--python-version",
            "3.11",
        ])
        .arg(&input)
        .output()
        .expect("uv runs");
    assert!(
        out.status.success(),
        "uv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (n, v) = l.split_once("==").expect("name==version");
            (
                raypack::python::wheel::normalize(n.trim()),
                v.split(';').next().unwrap().trim().to_string(),
            )
        })
        .collect()
}

/// Points `cmd` at the S3 server `endpoint` (moto or s3s-fs) with the harness credentials,
/// and keeps any profile or credentials file of the host out of it.
pub fn s3_env(cmd: &mut std::process::Command, endpoint: &str, secret: &str) {
    for v in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}
