//! Registry auth against the Distribution registry with htpasswd basic auth over TLS (CA +
//! leaf cert): `raypack login`/`logout`, credentials from a docker config file and from a
//! credential helper, and no secret in any output. One test, because it sets process
//! environment variables (DOCKER_CONFIG, PATH) step by step.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use raypack::cache::BlobCache;
use raypack::oci::client::{ClientOptions, Registry, RegistryError};
use raypack::oci::image::{Image, gzip_layer, minimal_config};
use raypack::oci::media::{Family, Platform};
use raypack::oci::reference::Reference;

fn set_env(k: &str, v: &std::ffi::OsStr) {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var(k, v) }
}

#[tokio::test]
async fn tls_basic_auth_config_file_and_credential_helper() {
    let registry = service("RAYPACK_TEST_REGISTRY_TLS");
    let ca = PathBuf::from(service("RAYPACK_TEST_REGISTRY_CA"));
    let user = service("RAYPACK_TEST_REGISTRY_USER");
    let password = service("RAYPACK_TEST_REGISTRY_PASSWORD");
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(&t.path().join("cache"));
    let tar = t.path().join("l.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "auth.txt", &b"abc"[..]).unwrap();
        b.finish().unwrap();
    }
    let (blob, diff) = gzip_layer(&tar, Family::Oci, &cache).unwrap();
    let cfg = minimal_config(&Platform::parse("linux/amd64").unwrap(), &[diff]);
    let img = Image::assemble(Family::Oci, &cfg, vec![blob], None, &cache).unwrap();
    let repo = format!("raypack-test/{}", unique("auth"));
    let target = Reference::parse(&format!("{registry}/{repo}:v1")).unwrap();
    let with_ca = || {
        Registry::new(ClientOptions {
            ca_files: vec![ca.clone()],
            attempts: 2,
            ..Default::default()
        })
        .unwrap()
    };

    // No credentials: a clear error that says what to do.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    set_env("DOCKER_CONFIG", empty.as_os_str());
    set_env("REGISTRY_AUTH_FILE", t.path().join("none.json").as_os_str());
    let err = with_ca()
        .push_image(&target, &img, &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("raypack login {registry}")),
        "{err}"
    );

    // Without the CA the TLS handshake fails (the system store does not know the test CA).
    let plain = Registry::new(ClientOptions {
        attempts: 1,
        ..Default::default()
    })
    .unwrap();
    let err = plain.push_image(&target, &img, &[], &[]).await.unwrap_err();
    assert!(err.to_string().contains(&registry), "{err}");

    // Wrong password: login fails, and neither password appears anywhere.
    let cfgdir = t.path().join("docker");
    let login = |pw: &str| {
        use std::io::Write;
        let mut child = raypack()
            .env("DOCKER_CONFIG", &cfgdir)
            .args([
                "-vv",
                "login",
                &registry,
                "-u",
                &user,
                "--password-stdin",
                "--registry-ca",
            ])
            .arg(&ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = login("wrong-canary-93af");
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("not authorized"), "{all}");
    assert!(!all.contains("wrong-canary-93af"), "password leaked: {all}");
    assert!(
        !cfgdir.join("config.json").exists(),
        "failed login must not store credentials"
    );

    // Right password: stored like docker does, file mode 0600, no secret printed.
    let out = login(&password);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(&password), "password leaked: {all}");
    let cfgfile = cfgdir.join("config.json");
    assert_eq!(
        std::fs::metadata(&cfgfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfgfile).unwrap()).unwrap();
    assert!(v["auths"][&registry]["auth"].is_string());

    // Credentials from that config file: the push works and skopeo reads it back.
    set_env("DOCKER_CONFIG", cfgdir.as_os_str());
    let (digest, _) = with_ca()
        .push_image(&target, &img, &["v1".into()], &[])
        .await
        .unwrap();
    let certdir = service("RAYPACK_TEST_REGISTRY_CERT_DIR");
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--cert-dir",
            &certdir,
            "--creds",
            &format!("{user}:{password}"),
            &format!("docker://{registry}/{repo}:v1"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(raypack::oci::sha256_digest(&out.stdout), digest);

    // Credentials from a credential helper (`credHelpers`); other hosts: "not found".
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nif [ \"$server\" = \"{registry}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_cfg = t.path().join("helper-docker");
    std::fs::create_dir_all(&helper_cfg).unwrap();
    std::fs::write(
        helper_cfg.join("config.json"),
        format!("{{\"credHelpers\": {{\"{registry}\": \"test\", \"127.0.0.1:5999\": \"test\"}}}}"),
    )
    .unwrap();
    set_env("DOCKER_CONFIG", helper_cfg.as_os_str());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    set_env("PATH", std::ffi::OsStr::new(&path));
    let target2 = Reference::parse(&format!("{registry}/{repo}:v2")).unwrap();
    let (d2, stats) = with_ca()
        .push_image(&target2, &img, &["v2".into()], &[])
        .await
        .unwrap();
    assert_eq!(d2, digest);
    assert_eq!(stats.skipped, 2, "blobs were already there");
    assert_eq!(
        raypack::oci::auth::find_credential("127.0.0.1:5999").unwrap(),
        None,
        "helper's 'not found' is anonymous"
    );

    // logout removes the stored entry.
    let out = run(raypack()
        .env("DOCKER_CONFIG", &cfgdir)
        .args(["logout", &registry]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfgfile).unwrap()).unwrap();
    assert!(v["auths"].get(&registry).is_none());
}
