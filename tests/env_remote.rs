//! `raypack env` against real servers on 127.0.0.1: moto and s3s-fs (S3), fake-gcs-server
//! (GCS), and a Ray 2.60 head that runs jobs with exactly the runtime_env raypack printed.

mod common;
use common::*;
use std::process::Command;

async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// key -> last-modified, for every object under `prefix`.
async fn s3_listing(endpoint: &str, prefix: &str) -> std::collections::BTreeMap<String, String> {
    let c = s3_client(endpoint).await;
    let out = c
        .list_objects_v2()
        .bucket("raypack-test")
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap().to_string(),
                format!("{:?}", o.last_modified()),
            )
        })
        .collect()
}

fn env_cmd(dir: &std::path::Path, store: &str) -> Command {
    let mut c = raypack();
    c.arg("-C")
        .arg(dir)
        .args(["--output", "json", "env", "--store", store]);
    c
}

#[tokio::test]
async fn s3_upload_skip_and_one_edit() {
    let endpoint = service("RAYPACK_TEST_S3");
    let (_t, dir) = hello_copy();
    let prefix = unique("s3");
    let store = format!("s3://raypack-test/{prefix}");
    let mut c = env_cmd(&dir, &store);
    s3_env(&mut c, &endpoint, "testing");
    let out = run(&mut c);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wd = v["runtime_env"]["working_dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wd.starts_with(&format!("s3://raypack-test/{prefix}/hello-")),
        "{wd}"
    );
    let first = s3_listing(&endpoint, &prefix).await;
    assert_eq!(first.len(), 2, "{first:?}");
    // Unchanged re-run: the server sees no new write (last-modified has 1 s resolution).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut c = env_cmd(&dir, &store);
    s3_env(&mut c, &endpoint, "testing");
    assert!(run(&mut c).status.success());
    assert_eq!(s3_listing(&endpoint, &prefix).await, first);
    // One edit: exactly one new object, the old ones untouched.
    std::fs::write(
        dir.join("helpers.py"),
        "def shout(n):\n    return n.title()\n",
    )
    .unwrap();
    let mut c = env_cmd(&dir, &store);
    s3_env(&mut c, &endpoint, "testing");
    let out = run(&mut c);
    let v2: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(
        v2["runtime_env"]["working_dir"],
        v["runtime_env"]["working_dir"]
    );
    assert_eq!(
        v2["runtime_env"]["py_modules"],
        v["runtime_env"]["py_modules"]
    );
    let after = s3_listing(&endpoint, &prefix).await;
    assert_eq!(after.len(), 3);
    for (k, m) in &first {
        assert_eq!(after.get(k), Some(m), "{k} was rewritten");
    }
}

#[tokio::test]
async fn s3_multipart_upload_of_a_large_package() {
    let endpoint = service("RAYPACK_TEST_S3");
    let (_t, dir) = hello_copy();
    // 40 MiB of incompressible bytes -> a zip well above the 16 MiB single-PUT limit.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let data: Vec<u8> = (0..40 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("blob.bin"), &data).unwrap();
    let prefix = unique("mp");
    let mut c = env_cmd(&dir, &format!("s3://raypack-test/{prefix}"));
    s3_env(&mut c, &endpoint, "testing");
    let out = run(&mut c);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["runtime_env"]["working_dir"]
        .as_str()
        .unwrap()
        .trim_start_matches("s3://raypack-test/")
        .to_string();
    let client = s3_client(&endpoint).await;
    let obj = client
        .get_object()
        .bucket("raypack-test")
        .key(&key)
        .send()
        .await
        .unwrap();
    let body = obj.body.collect().await.unwrap().into_bytes();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("pkg/blob.bin").unwrap(), &mut got).unwrap();
    assert!(got == data, "multipart object round-trips");
}

#[tokio::test]
async fn s3_missing_bucket_and_wrong_credentials_fail_cleanly() {
    let moto = service("RAYPACK_TEST_S3");
    let sigv4 = service("RAYPACK_TEST_S3_SIGV4");
    let (_t, dir) = hello_copy();
    let mut c = env_cmd(&dir, "s3://raypack-no-such-bucket/x");
    s3_env(&mut c, &moto, "testing");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bucket `raypack-no-such-bucket` does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // s3s-fs verifies SigV4: a wrong secret is refused, and the secret never shows.
    let canary = "CANARY-secret-4b1d9e";
    let prefix = unique("denied");
    let mut c = env_cmd(&dir, &format!("s3://raypack-test/{prefix}"));
    s3_env(&mut c, &sigv4, canary);
    let out = run(c.arg("-vv"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("access denied"), "{err}");
    assert!(
        !err.contains(canary) && !stdout(&out).contains(canary),
        "secret leaked"
    );
    assert!(
        s3_listing(&sigv4, &prefix).await.is_empty(),
        "nothing uploaded"
    );
    // The right secret works against the same server.
    let mut c = env_cmd(&dir, &format!("s3://raypack-test/{prefix}"));
    s3_env(&mut c, &sigv4, "testing");
    assert!(run(&mut c).status.success());
    assert_eq!(s3_listing(&sigv4, &prefix).await.len(), 2);
}

async fn gcs_names(base: &str, prefix: &str) -> Vec<(String, String)> {
    let url = format!("{base}/storage/v1/b/raypack-test/o?prefix={prefix}");
    let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["name"].as_str().unwrap().to_string(),
                        o["generation"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn gcs_upload_skip_and_missing_bucket() {
    let base = service("RAYPACK_TEST_GCS");
    let (_t, dir) = hello_copy();
    let prefix = unique("gcs");
    let mut c = env_cmd(&dir, &format!("gs://raypack-test/{prefix}"));
    c.env("STORAGE_EMULATOR_HOST", &base);
    let out = run(&mut c);
    assert!(out.status.success());
    let first = gcs_names(&base, &prefix).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let mut c = env_cmd(&dir, &format!("gs://raypack-test/{prefix}"));
    c.env("STORAGE_EMULATOR_HOST", &base);
    let out = run(&mut c);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["uploaded"] == false)
    );
    assert_eq!(gcs_names(&base, &prefix).await, first, "no new generation");
    let mut c = env_cmd(&dir, "gs://raypack-no-such-bucket/x");
    c.env("STORAGE_EMULATOR_HOST", &base);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Runs examples/hello on the Ray head with `--submit`, and checks the job's output.
fn submit_hello(store: &str, extra_env: &[(&str, &str)]) {
    let ray = service("RAYPACK_TEST_RAY");
    let (_t, dir) = hello_copy();
    let mut c = raypack();
    c.arg("-C").arg(&dir).args([
        "env",
        "--store",
        store,
        "--submit",
        &ray,
        "--timeout",
        "300",
    ]);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = run(&mut c);
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(err.contains("hello, RAYPACK! (common v1)"), "{err}");
    assert!(err.contains("requests 2."), "{err}");
    assert!(err.contains("SUCCEEDED"), "{err}");
    // What was submitted is exactly what was printed.
    let printed: serde_json::Value = serde_norway::from_str(&stdout(&out)).unwrap();
    assert!(
        printed["working_dir"]
            .as_str()
            .unwrap()
            .starts_with(store.split("://").next().unwrap())
    );
}

#[test]
fn ray_runs_the_job_from_a_file_store() {
    let store = tempfile::tempdir().unwrap();
    submit_hello(&format!("file://{}", store.path().display()), &[]);
}

#[test]
fn ray_runs_the_job_from_s3() {
    let endpoint = service("RAYPACK_TEST_S3");
    let store = format!("s3://raypack-test/{}", unique("ray"));
    submit_hello(
        &store,
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
}

#[test]
fn ray_runs_the_job_from_gcs() {
    let base = service("RAYPACK_TEST_GCS");
    let store = format!("gs://raypack-test/{}", unique("ray"));
    submit_hello(&store, &[("STORAGE_EMULATOR_HOST", &base)]);
}

#[test]
fn a_failing_job_fails_the_command() {
    let ray = service("RAYPACK_TEST_RAY");
    let (_t, dir) = hello_copy();
    std::fs::write(
        dir.join("main.py"),
        "raise SystemExit('boom from the job')\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = run(raypack()
        .arg("-C")
        .arg(&dir)
        .args(["env", "--deps", "none", "--submit", &ray, "--store"])
        .arg(format!("file://{}", store.path().display())));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("FAILED"), "{}", stderr(&out));
}

#[test]
fn ray_imports_a_dependency_bundle_without_pip() {
    let ray = service("RAYPACK_TEST_RAY");
    let (_t, dir) = hello_copy();
    // Packages the Ray venv lacks: a plain one, a PEP 420 namespace package and its dependency.
    use_pypi_pylock(
        &dir,
        &[
            ("tabulate", "0.9.0"),
            ("jaraco.functools", "4.1.0"),
            ("more-itertools", "10.5.0"),
        ],
    );
    std::fs::write(
        dir.join("main.py"),
        r#"import ray

@ray.remote
def where() -> str:
    import tabulate, jaraco.functools, more_itertools
    return tabulate.__file__

ray.init()
path = ray.get(where.remote())
print("bundle import ok from", path)
"#,
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let cache = tempfile::tempdir().unwrap();
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", cache.path())
        .arg("-C")
        .arg(&dir)
        .args(["env", "--deps", "bundle", "--store", &store_url])
        .args(["--submit", &ray, "--timeout", "300"]));
    let err = stderr(&out);
    assert!(out.status.success(), "job failed:\n{err}");
    assert!(
        err.contains("bundle import ok from") && err.contains("py_modules_files"),
        "{err}"
    );
    let printed: serde_json::Value = serde_norway::from_str(&stdout(&out)).unwrap();
    assert!(printed.get("pip").is_none(), "{printed}");
    let mods: Vec<&str> = printed["py_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(mods.len(), 2, "{mods:?}");
    assert!(mods[1].contains("/hello-deps-"), "{mods:?}");

    // Same wheels: same URI, nothing uploaded again.
    let again = run(raypack()
        .env("RAYPACK_CACHE_DIR", cache.path())
        .arg("-C")
        .arg(&dir)
        .args([
            "--output", "json", "env", "--deps", "bundle", "--store", &store_url,
        ]));
    assert!(again.status.success(), "{}", stderr(&again));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let pkgs = v["packages"].as_array().unwrap();
    let deps = pkgs
        .iter()
        .find(|p| p["role"] == "py_module:dependencies")
        .unwrap();
    assert_eq!(deps["uri"], mods[1]);
    assert_eq!(deps["uploaded"], false, "{v}");
}

/// Issue 15 #9: multipart uploads a killed run left unfinished are aborted by the next run that
/// writes to the store: only raypack's (`*.zip` directly under the prefix), only stale ones
/// (`RAYPACK_LEFTOVER_AGE=0` stands in for the hour here).
#[tokio::test]
async fn s3_stale_multipart_uploads_of_killed_runs_are_aborted() {
    let endpoint = service("RAYPACK_TEST_S3");
    let prefix = unique("s3-stale");
    let c = s3_client(&endpoint).await;
    let mut started = Vec::new();
    for key in [
        format!("{prefix}/hello-0123456789abcdef.zip"),
        format!("{prefix}/nested/other-tool.zip"),
        format!("{prefix}/notes.txt"),
    ] {
        c.create_multipart_upload()
            .bucket("raypack-test")
            .key(&key)
            .send()
            .await
            .unwrap();
        started.push(key);
    }
    let pending = || async {
        let mut keys: Vec<String> = s3_client(&endpoint)
            .await
            .list_multipart_uploads()
            .bucket("raypack-test")
            .prefix(format!("{prefix}/"))
            .send()
            .await
            .unwrap()
            .uploads()
            .iter()
            .map(|u| u.key().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(pending().await.len(), 3);
    let (_t, dir) = hello_copy();
    let mut cmd = env_cmd(&dir, &format!("s3://raypack-test/{prefix}"));
    s3_env(&mut cmd, &endpoint, "testing");
    cmd.env("RAYPACK_LEFTOVER_AGE", "0");
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        pending().await,
        vec![started[1].clone(), started[2].clone()],
        "only raypack's own stale upload is aborted"
    );
}

/// Issue 15 #10: an S3 failure is one line a user can act on, not the SDK's Debug dump.
#[test]
fn s3_errors_are_one_readable_line() {
    let (_t, dir) = hello_copy();
    // Port 9 (discard) on loopback: nothing listens there.
    let mut c = env_cmd(&dir, "s3://raypack-test/unreachable");
    s3_env(&mut c, "http://127.0.0.1:9", "testing");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.contains("could not connect: Connection refused"),
        "{err}"
    );
    for dump in ["DispatchFailure", "ConnectorError", "source:", "kind:"] {
        assert!(!err.contains(dump), "{dump} in {err}");
    }
}

/// Issue 15 #10: a 503 burst with `Retry-After` is waited out as the server asks (the S3 path
/// gave up after 3 quick tries, in 0.56 s), and the final error is one line.
#[test]
fn s3_honours_retry_after_on_503() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        // Bounded: at most 12 requests, 60 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for stream in listener.incoming().take(12) {
            if std::time::Instant::now() > deadline {
                break;
            }
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            s2.lock().unwrap().push(std::time::Instant::now());
            let _ = write!(
                s,
                "HTTP/1.1 503 Slow Down\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let (_t, dir) = hello_copy();
    let mut c = env_cmd(&dir, "s3://raypack-test/slow");
    s3_env(&mut c, &endpoint, "testing");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    // raypack asks about both packages at once: requests come in rounds, one per package,
    // and a round follows the previous one only after the 1 s the server asked for.
    let times = seen.lock().unwrap().clone();
    let gaps: Vec<std::time::Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let rounds = 1 + gaps
        .iter()
        .filter(|g| **g >= std::time::Duration::from_millis(900))
        .count();
    assert!(rounds >= 5, "{rounds} rounds of retries; gaps {gaps:?}");
    assert!(
        times.len() <= 2 * rounds,
        "retried without waiting: gaps {gaps:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("HTTP 503"), "{err}");
}
