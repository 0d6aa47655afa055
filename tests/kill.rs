//! SIGKILL at several moments of `env` (file:// and S3) and `bake --push`, then a re-run:
//! nothing incomplete is ever visible under a final name, the re-run succeeds, and it leaves
//! no leftovers of the killed runs (issue 15).

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A project whose working dir takes a while to pack: `n` files of random bytes.
fn heavy_project(n: usize, size: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = hello_copy();
    let data = dir.join("blobs");
    std::fs::create_dir_all(&data).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        let mut b = vec![0u8; size];
        for chunk in b.chunks_mut(8) {
            // xorshift: incompressible, so deflate has real work to do.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let w = seed.to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        std::fs::write(data.join(format!("b{i:03}.bin")), b).unwrap();
    }
    (t, dir)
}

/// Runs `cmd` to completion and returns how long it took (it must succeed).
fn timed(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Starts `cmd` and SIGKILLs it after `after` (if it is still running).
fn kill_after(mut cmd: Command, after: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

/// The moments to kill at: spread over a full run's duration.
fn moments(full: Duration) -> Vec<Duration> {
    [0.05, 0.2, 0.4, 0.6, 0.8, 0.95]
        .iter()
        .map(|f| full.mul_f64(*f))
        .collect()
}

/// Every entry of the zip at `bytes` reads back with a matching CRC.
fn zip_is_complete(bytes: &[u8]) -> Result<usize, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(|e| e.to_string())?;
        std::io::copy(&mut f, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    Ok(z.len())
}

fn assert_file_store_complete(store: &Path) {
    for e in std::fs::read_dir(store).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            assert!(
                name.starts_with(".raypack-") && name.ends_with(".partial"),
                "unexpected temp file {name}"
            );
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        zip_is_complete(&bytes).unwrap_or_else(|e| panic!("{name} is incomplete: {e}"));
    }
}

#[test]
fn killed_env_into_a_file_store_never_leaves_a_broken_zip() {
    let (_t, dir) = heavy_project(24, 1 << 20);
    let store = tempfile::tempdir().unwrap();
    let env_into = |level: &str, store: &Path| {
        let mut c = raypack();
        c.env("RAYPACK_LEFTOVER_AGE", "0")
            .arg("-C")
            .arg(&dir)
            .args(["env", "--compression-level", level, "--store"])
            .arg(format!("file://{}", store.display()));
        c
    };
    let env = |level: &str| env_into(level, store.path());
    for level in ["0", "6"] {
        // A full run elsewhere measures how long one takes.
        let probe = tempfile::tempdir().unwrap();
        let full = timed(env_into(level, probe.path()));
        for (i, at) in moments(full).into_iter().enumerate() {
            // A different tree each time, so every run has something to write.
            std::fs::write(dir.join("main.py"), format!("print({i}, {level:?})\n")).unwrap();
            kill_after(env(level), at);
            assert_file_store_complete(store.path());
        }
        // The re-run succeeds and clears every leftover (RAYPACK_LEFTOVER_AGE=0).
        std::fs::write(dir.join("main.py"), format!("print('final', {level:?})\n")).unwrap();
        timed(env(level));
        assert_file_store_complete(store.path());
        let left: Vec<String> = std::fs::read_dir(store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            left.is_empty(),
            "leftovers after a successful run: {left:?}"
        );
    }
}

fn s3_cmd(dir: &Path, store: &str, endpoint: &str) -> Command {
    let mut c = raypack();
    for v in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"] {
        c.env_remove(v);
    }
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RAYPACK_LEFTOVER_AGE", "0")
        .arg("-C")
        .arg(dir)
        .args(["env", "--store", store]);
    c
}

#[tokio::test]
async fn killed_env_into_s3_never_leaves_a_broken_object_or_a_pending_upload() {
    let endpoint = service("RAYPACK_TEST_S3");
    // 40 MiB: above the single-PUT limit, so the working dir goes up as a multipart upload.
    let (_t, dir) = heavy_project(40, 1 << 20);
    let prefix = unique("kill");
    let store = format!("s3://raypack-test/{prefix}");
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .force_path_style(true)
            .build(),
    );
    let check_objects = || async {
        let list = s3
            .list_objects_v2()
            .bucket("raypack-test")
            .prefix(format!("{prefix}/"))
            .send()
            .await
            .unwrap();
        for o in list.contents() {
            let key = o.key().unwrap();
            let body = s3
                .get_object()
                .bucket("raypack-test")
                .key(key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            zip_is_complete(&body).unwrap_or_else(|e| panic!("{key} is incomplete: {e}"));
        }
    };
    let probe = format!("s3://raypack-test/{prefix}-probe");
    let full = timed(s3_cmd(&dir, &probe, &endpoint));
    for (i, at) in moments(full).into_iter().enumerate() {
        std::fs::write(dir.join("main.py"), format!("print({i})\n")).unwrap();
        kill_after(s3_cmd(&dir, &store, &endpoint), at);
        check_objects().await;
    }
    std::fs::write(dir.join("main.py"), "print('final')\n").unwrap();
    timed(s3_cmd(&dir, &store, &endpoint));
    check_objects().await;
    let pending = s3
        .list_multipart_uploads()
        .bucket("raypack-test")
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .unwrap();
    assert!(
        pending.uploads().is_empty(),
        "pending uploads after a successful run: {:?}",
        pending.uploads()
    );
}

/// `curl` of a loopback URL: (HTTP status, body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--noproxy", "*", "-s", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The registry's view of `repo_path`: every tag's manifest has all its blobs, and every tag's
/// index (the SBOM referrers' tag) lists only manifests the registry has.
fn assert_registry_complete(registry: &str, repo_path: &str) {
    let (code, body) = curl(&[], &format!("http://{registry}/v2/{repo_path}/tags/list"));
    if code != 200 {
        return; // nothing pushed yet
    }
    let tags: serde_json::Value = serde_json::from_str(&body).unwrap();
    for tag in tags["tags"].as_array().into_iter().flatten() {
        let tag = tag.as_str().unwrap();
        let (code, body) = curl(
            &[
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json",
            ],
            &format!("http://{registry}/v2/{repo_path}/manifests/{tag}"),
        );
        assert_eq!(code, 200, "{repo_path}:{tag}: {body}");
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(listed) = m["manifests"].as_array() {
            for d in listed {
                let digest = d["digest"].as_str().unwrap();
                let (code, _) = curl(
                    &[
                        "-I",
                        "-H",
                        "Accept: application/vnd.oci.image.manifest.v1+json",
                    ],
                    &format!("http://{registry}/v2/{repo_path}/manifests/{digest}"),
                );
                assert_eq!(
                    code, 200,
                    "{repo_path}:{tag} lists manifest {digest}, which the registry lacks"
                );
            }
            continue;
        }
        let blobs =
            std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
        for b in blobs {
            let digest = b["digest"].as_str().unwrap();
            let (code, _) = curl(
                &["-I"],
                &format!("http://{registry}/v2/{repo_path}/blobs/{digest}"),
            );
            assert_eq!(
                code, 200,
                "{repo_path}:{tag} names blob {digest}, which the registry lacks"
            );
        }
    }
}

#[test]
fn killed_bake_push_never_publishes_a_manifest_before_its_blobs() {
    let base = service("RAYPACK_TEST_BASE");
    let registry = service("RAYPACK_TEST_REGISTRY");
    let (t, dir) = heavy_project(12, 1 << 20);
    let repo_path = format!("raypack-test/{}", unique("kill-bake"));
    let repo = format!("{registry}/{repo_path}");
    let text = std::fs::read_to_string(dir.join("raypack.toml"))
        .unwrap()
        .replace(
            "image = \"rayproject/ray:2.60.0-py311-cpu\"",
            &format!("image = \"{base}\"\n\n[image]\nrepository = \"{repo}\"\ntags = [\"v1\"]"),
        );
    std::fs::write(dir.join("raypack.toml"), text).unwrap();
    let bake = || {
        let mut c = raypack();
        c.env("RAYPACK_CACHE_DIR", t.path().join("cache"))
            .arg("-C")
            .arg(&dir)
            .args(["bake", "--skip-deps", "--push"]);
        c
    };
    let full = timed(bake());
    for (i, at) in moments(full).into_iter().enumerate() {
        std::fs::write(dir.join("main.py"), format!("print({i})\n")).unwrap();
        kill_after(bake(), at);
        assert_registry_complete(&registry, &repo_path);
    }
    std::fs::write(dir.join("main.py"), "print('final')\n").unwrap();
    timed(bake());
    assert_registry_complete(&registry, &repo_path);
}
