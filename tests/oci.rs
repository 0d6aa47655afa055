//! The registry client against a real Distribution registry on 127.0.0.1, checked with
//! skopeo and umoci as independent clients.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use raypack::cache::BlobCache;
use raypack::oci::client::{ClientOptions, Registry, UploadMode};
use raypack::oci::image::{Image, gzip_layer, minimal_config};
use raypack::oci::layout::{write_docker_tar, write_oci_layout};
use raypack::oci::media::{Family, Platform};
use raypack::oci::reference::Reference;

/// A layer tar with a few files; `seed` changes the content.
fn layer_tar(dir: &Path, seed: &str) -> PathBuf {
    let p = dir.join(format!("layer-{seed}.tar"));
    let mut t = tar::Builder::new(std::fs::File::create(&p).unwrap());
    for (name, body) in [
        ("app/hello.txt", format!("hello {seed}\n")),
        ("app/data.bin", seed.repeat(5000)),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        t.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    t.finish().unwrap();
    p
}

fn image(dir: &Path, cache: &BlobCache, seed: &str, family: Family, platform: &str) -> Image {
    let tar = layer_tar(dir, seed);
    let (blob, diff_id) = gzip_layer(&tar, family, cache).unwrap();
    let cfg = minimal_config(&Platform::parse(platform).unwrap(), &[diff_id]);
    Image::assemble(family, &cfg, vec![blob], None, cache).unwrap()
}

fn reg() -> Registry {
    Registry::new(ClientOptions::default()).unwrap()
}

/// Completed blob uploads and mounts for `repo` in the registry's access log.
fn log_counts(repo: &str) -> (usize, usize) {
    let log = std::fs::read_to_string(service("RAYPACK_TEST_REGISTRY_LOG")).unwrap_or_default();
    let uploads = log
        .lines()
        .filter(|l| {
            l.contains(&format!("\"PUT /v2/{repo}/blobs/uploads/")) && l.contains("\" 201 ")
        })
        .count();
    let mounts = log
        .lines()
        .filter(|l| {
            l.contains(&format!("\"POST /v2/{repo}/blobs/uploads/?"))
                && l.contains("mount=")
                && l.contains("\" 201 ")
        })
        .count();
    (uploads, mounts)
}

#[tokio::test]
async fn push_is_read_back_identically_by_skopeo_and_raypack() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    let img = image(t.path(), &cache, "one", Family::Oci, "linux/amd64");
    let repo = format!("raypack-test/{}", unique("push"));
    let target = Reference::parse(&format!("{registry}/{repo}:v1")).unwrap();
    let (digest, stats) = reg()
        .push_image(&target, &img, &["v1".into()], &[])
        .await
        .unwrap();
    assert_eq!(digest, img.digest());
    assert_eq!(stats.uploaded, 2);
    // skopeo sees the same manifest bytes.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{registry}/{repo}:v1"),
    ]);
    assert_eq!(raypack::oci::sha256_digest(&raw.stdout), digest);
    // skopeo copies it to an OCI layout with the same manifest digest.
    let layout = t.path().join("skopeo-oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{registry}/{repo}:v1"),
        &format!("oci:{}:v1", layout.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    // raypack pulls it back into an empty cache: identical bytes.
    let cache2 = BlobCache::new(&t.path().join("cache2"));
    let (resolved, pulled) = reg()
        .pull(
            &Reference::parse(&format!("{registry}/{repo}:v1")).unwrap(),
            &Platform::parse("linux/amd64").unwrap(),
            &cache2,
        )
        .await
        .unwrap();
    assert_eq!(resolved.digest, digest);
    assert_eq!(pulled.manifest, img.manifest);
    for (a, b) in pulled.blobs().zip(img.blobs()) {
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
    }
    // Second push: nothing uploaded (counted on the registry side).
    let before = log_counts(&repo);
    let (_, stats) = reg()
        .push_image(&target, &img, &["v1".into()], &[])
        .await
        .unwrap();
    assert_eq!((stats.uploaded, stats.skipped), (0, 2));
    assert_eq!(
        log_counts(&repo).0,
        before.0,
        "a second push uploaded a blob"
    );
    // A push to another repository on the same registry mounts instead of uploading.
    let repo2 = format!("raypack-test/{}", unique("mount"));
    let target2 = Reference::parse(&format!("{registry}/{repo2}:v1")).unwrap();
    let (_, stats) = reg()
        .push_image(&target2, &img, &[], &[&target])
        .await
        .unwrap();
    assert_eq!((stats.uploaded, stats.mounted), (0, 2));
    assert_eq!(log_counts(&repo2), (0, 2));
}

#[tokio::test]
async fn upload_modes_all_work() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    for (i, mode) in [
        UploadMode::Monolithic,
        UploadMode::Chunked(1000),
        UploadMode::Streamed,
    ]
    .into_iter()
    .enumerate()
    {
        let img = image(
            t.path(),
            &cache,
            &format!("mode{i}"),
            Family::Docker,
            "linux/amd64",
        );
        let repo = format!("raypack-test/{}", unique("mode"));
        let target = Reference::parse(&format!("{registry}/{repo}")).unwrap();
        let client = Registry::new(ClientOptions {
            upload: mode,
            ..Default::default()
        })
        .unwrap();
        let (digest, _) = client
            .push_image(&target, &img, &["latest".into()], &[])
            .await
            .unwrap();
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{registry}/{repo}:latest"),
        ]);
        assert_eq!(raypack::oci::sha256_digest(&raw.stdout), digest, "{mode:?}");
        let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        assert_eq!(v["mediaType"], raypack::oci::media::DOCKER_MANIFEST);
        assert_eq!(
            v["layers"][0]["mediaType"],
            raypack::oci::media::DOCKER_LAYER_GZIP,
            "no mixed media types"
        );
    }
}

#[tokio::test]
async fn pulls_what_skopeo_pushed_oci_docker_and_index() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    // An OCI layout with an index of two platforms and an attestation entry, written by
    // raypack's layout writer and pushed by skopeo.
    let amd = image(t.path(), &cache, "amd", Family::Oci, "linux/amd64");
    let arm = image(t.path(), &cache, "arm", Family::Oci, "linux/arm64");
    let att = image(t.path(), &cache, "att", Family::Oci, "linux/amd64");
    let layout = t.path().join("multi");
    for i in [&amd, &arm, &att] {
        write_oci_layout(&layout, i, None).unwrap();
    }
    let desc = |i: &Image, p: serde_json::Value, ann: Option<serde_json::Value>| {
        let mut d = serde_json::json!({"mediaType": i.manifest_media_type, "digest": i.digest(), "size": i.manifest.len(), "platform": p});
        if let Some(a) = ann {
            d["annotations"] = a;
        }
        d
    };
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": raypack::oci::media::OCI_INDEX, "manifests": [
        desc(&att, serde_json::json!({"os": "unknown", "architecture": "unknown"}), Some(serde_json::json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd.digest()}))),
        desc(&amd, serde_json::json!({"os": "linux", "architecture": "amd64"}), None),
        desc(&arm, serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}), None),
    ]});
    let idx_bytes = serde_json::to_vec(&idx).unwrap();
    let idx_digest = raypack::oci::sha256_digest(&idx_bytes);
    std::fs::write(
        layout.join("blobs/sha256").join(&idx_digest[7..]),
        &idx_bytes,
    )
    .unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": raypack::oci::media::OCI_INDEX, "digest": idx_digest, "size": idx_bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let repo = format!("raypack-test/{}", unique("multi"));
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{registry}/{repo}:multi"),
    ]);
    let r = Reference::parse(&format!("{registry}/{repo}:multi")).unwrap();
    let c2 = BlobCache::new(&t.path().join("c2"));
    let got = reg()
        .resolve(&r, &Platform::parse("linux/amd64").unwrap(), &c2)
        .await
        .unwrap();
    assert_eq!(got.digest, amd.digest());
    assert_eq!(got.index_digest.as_deref(), Some(idx_digest.as_str()));
    let got = reg()
        .resolve(&r, &Platform::parse("linux/arm64").unwrap(), &c2)
        .await
        .unwrap();
    assert_eq!(got.digest, arm.digest());
    let err = reg()
        .resolve(&r, &Platform::parse("linux/s390x").unwrap(), &c2)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("linux/amd64") && err.to_string().contains("linux/arm64/v8"),
        "{err}"
    );

    // An image skopeo converts to Docker v2s2 on push.
    let one = t.path().join("one");
    write_oci_layout(&one, &amd, Some("v1")).unwrap();
    let repo2 = format!("raypack-test/{}", unique("v2s2"));
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", one.display()),
        &format!("docker://{registry}/{repo2}:v1"),
    ]);
    let (res, img) = reg()
        .pull(
            &Reference::parse(&format!("{registry}/{repo2}:v1")).unwrap(),
            &Platform::parse("linux/amd64").unwrap(),
            &c2,
        )
        .await
        .unwrap();
    assert_eq!(res.media_type, raypack::oci::media::DOCKER_MANIFEST);
    assert_eq!(
        img.config.digest, amd.config.digest,
        "same config blob across media types"
    );
    assert_eq!(img.layers[0].digest, amd.layers[0].digest);
}

#[tokio::test]
async fn oci_layout_and_docker_tar_are_read_by_umoci_and_skopeo() {
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    let img = image(t.path(), &cache, "layout", Family::Oci, "linux/amd64");
    let layout = t.path().join("layout");
    write_oci_layout(&layout, &img, Some("v1")).unwrap();
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(t.path().join("bundle"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("bundle/rootfs/app/hello.txt")).unwrap(),
        "hello layout\n"
    );
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", layout.display())]);
    assert_eq!(raypack::oci::sha256_digest(&raw.stdout), img.digest());

    let tarball = t.path().join("image.tar");
    write_docker_tar(&tarball, &img, &["example.com/team/app:v1".into()]).unwrap();
    let cfg = skopeo(&[
        "inspect",
        "--config",
        &format!("docker-archive:{}", tarball.display()),
    ]);
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&img.config.path).unwrap()).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"], ours["rootfs"]["diff_ids"]);
    // The same tar is also an OCI layout (Docker 25+ format).
    let x = t.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap()
            .success()
    );
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}", x.display())]);
    assert_eq!(raypack::oci::sha256_digest(&raw.stdout), img.digest());
    // Deterministic: writing again gives the same bytes.
    let again = t.path().join("again.tar");
    write_docker_tar(&again, &img, &["example.com/team/app:v1".into()]).unwrap();
    assert_eq!(
        std::fs::read(&tarball).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

/// A TCP proxy on 127.0.0.1 that fails about 10 % of requests: new connections answered
/// with HTTP 500 or dropped, and on open connections requests (or parts of request bodies)
/// answered with HTTP 500 or cut off.
async fn faulty_proxy(
    upstream: String,
    faults: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (String, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = tokio::spawn(async move {
        let mut n: u64 = 0;
        // Bounded: the proxy stops by itself after this many connections.
        while n < 100_000 {
            let Ok((mut client, _)) = listener.accept().await else {
                break;
            };
            n += 1;
            let fault = rand::random::<f64>();
            let upstream = upstream.clone();
            let faults = faults.clone();
            if fault < 0.07 {
                faults.fetch_add(1, Relaxed);
            }
            tokio::spawn(async move {
                if fault < 0.04 {
                    let mut buf = [0u8; 1024];
                    let _ = client.read(&mut buf).await;
                    let _ = client.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                    return;
                }
                if fault < 0.07 {
                    return; // dropped
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                // Per read from the client (a request, or part of a body): 3 % answer HTTP 500
                // and close, 3 % drop the connection.
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return 0,
                            Ok(n) => n,
                        };
                        let r = rand::random::<f64>();
                        if r < 0.06 {
                            faults.fetch_add(1, Relaxed);
                            return if r < 0.03 { 500 } else { 1 };
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return 0;
                        }
                    }
                };
                let down = tokio::io::copy(&mut sr, &mut cw);
                let outcome = tokio::select! { o = up => o, _ = down => 0 };
                if outcome == 500 {
                    let _ = cw.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                }
            });
        }
    });
    (addr, handle)
}

#[tokio::test]
async fn pushes_survive_a_faulty_network_and_never_publish_half_an_image() {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let faults = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (proxy, handle) = faulty_proxy(registry.clone(), faults.clone()).await;
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    let direct = reg();
    let client = Registry::new(ClientOptions {
        attempts: 10,
        ..Default::default()
    })
    .unwrap();
    let repo = format!("raypack-test/{}", unique("faulty"));
    for i in 0..20 {
        let img = image(
            t.path(),
            &cache,
            &format!("fault{i}"),
            Family::Oci,
            "linux/amd64",
        );
        let target = Reference::parse(&format!("{proxy}/{repo}:t{i}")).unwrap();
        let (digest, _) = client
            .push_image(&target, &img, &[format!("t{i}")], &[])
            .await
            .unwrap_or_else(|e| panic!("push {i}: {e}"));
        assert_eq!(digest, img.digest());
        // Every manifest in the repository has all of its blobs.
        let direct_ref = Reference::parse(&format!("{registry}/{repo}")).unwrap();
        for b in img.blobs() {
            assert!(
                direct.blob_exists(&direct_ref, &b.digest).await.unwrap(),
                "push {i}: manifest without blob {}",
                b.digest
            );
        }
    }
    handle.abort();
    let n = faults.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("faults injected: {n}");
    assert!(
        n >= 5,
        "the proxy injected only {n} faults; the test proves nothing"
    );
}

#[test]
fn bad_references_and_unreachable_registries_are_clear_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(t.path());
    // Nothing listens on port 9 of loopback.
    let r = Reference::parse("127.0.0.1:9/raypack/none:v1").unwrap();
    let client = Registry::new(ClientOptions {
        attempts: 2,
        ..Default::default()
    })
    .unwrap();
    let err = rt
        .block_on(client.resolve(&r, &Platform::parse("linux/amd64").unwrap(), &cache))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("127.0.0.1:9/raypack/none: HEAD manifest v1:"),
        "{msg}"
    );
}

/// A blob known only by descriptor (a layer of the shared layer cache, not downloaded) that
/// the target cannot mount — here the target is another registry (the TLS one, with basic
/// auth) — is downloaded from the repository that has it, verified, then uploaded; with no
/// such repository the push fails naming the blob, before any manifest.
#[tokio::test]
async fn a_blob_known_by_descriptor_is_fetched_from_another_registry_when_it_cannot_be_mounted() {
    let plain = service("RAYPACK_TEST_REGISTRY");
    let tls = service("RAYPACK_TEST_REGISTRY_TLS");
    let ca = PathBuf::from(service("RAYPACK_TEST_REGISTRY_CA"));
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("a"));
    let tar = t.path().join("l.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_ustar();
        let body = unique("descriptor-only");
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "layer.txt", body.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let (blob, diff) = gzip_layer(&tar, Family::Oci, &cache).unwrap();
    let cfg = minimal_config(&Platform::parse("linux/amd64").unwrap(), &[diff]);
    let img = Image::assemble(Family::Oci, &cfg, vec![blob.clone()], None, &cache).unwrap();
    let src = Reference::parse(&format!("{plain}/raypack-test/{}:v1", unique("source"))).unwrap();
    reg()
        .push_image(&src, &img, &["v1".into()], &[])
        .await
        .unwrap();

    // Another machine: the layer by descriptor only, its cache empty.
    let fresh = BlobCache::new(&t.path().join("b"));
    let lazy = raypack::oci::image::Blob {
        path: fresh.path(&blob.digest).unwrap(),
        ..blob.clone()
    };
    let img_b = Image::assemble(Family::Oci, &cfg, vec![lazy.clone()], None, &fresh).unwrap();
    let tls_reg = Registry::new(ClientOptions {
        ca_files: vec![ca],
        ..Default::default()
    })
    .unwrap();
    tls_reg.set_credential(
        &tls,
        Some(raypack::oci::auth::Credential::Basic {
            username: service("RAYPACK_TEST_REGISTRY_USER"),
            password: service("RAYPACK_TEST_REGISTRY_PASSWORD"),
        }),
    );
    let dst = Reference::parse(&format!("{tls}/raypack-test/{}:v1", unique("dest"))).unwrap();
    let (digest, stats) = tls_reg
        .push_image(&dst, &img_b, &["v1".into()], &[&src])
        .await
        .unwrap();
    assert_eq!(digest, img.digest(), "the same image");
    assert_eq!((stats.uploaded, stats.mounted), (2, 0), "{stats:?}");
    assert!(
        fresh.contains(&blob.digest),
        "downloaded, verified, into the cache"
    );

    // Nowhere to get it from: an error naming the blob, and no manifest.
    let none = BlobCache::new(&t.path().join("c"));
    let orphan = raypack::oci::image::Blob {
        path: none.path(&blob.digest).unwrap(),
        ..blob.clone()
    };
    let img_c = Image::assemble(Family::Oci, &cfg, vec![orphan], None, &none).unwrap();
    let dst2 = Reference::parse(&format!("{tls}/raypack-test/{}:v1", unique("orphan"))).unwrap();
    let err = tls_reg
        .push_image(&dst2, &img_c, &["v1".into()], &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&blob.digest) && err.contains("cannot be mounted or downloaded"),
        "{err}"
    );
    assert!(
        tls_reg
            .get_manifest(&dst2, "v1", None)
            .await
            .is_err_and(|e| matches!(e, raypack::oci::client::RegistryError::NotFound { .. })),
        "no manifest before its blobs"
    );
}
