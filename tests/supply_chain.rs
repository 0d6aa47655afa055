//! Supply chain (issue 19): every bake's SBOM (SPDX 2.3 and CycloneDX 1.6) validates with
//! independent tools, lists exactly what `importlib.metadata` sees in the baked image with the
//! right origin, is attached to the pushed image as an OCI 1.1 referrer (through the referrers
//! tag schema on the Distribution 2.8 registry, which has no referrers API) without changing
//! the image, and is byte-identical from a copy of the project; `--sign` pushes a cosign
//! signature that Python's `cryptography` verifies with the public key.
//!
//! Needs the harness's registry, stand-in base, skopeo/umoci/bubblewrap, and its tools venv
//! (spdx-tools, cyclonedx-python-lib, cryptography, pynacl).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools_python() -> PathBuf {
    Path::new(&service("RAYPACK_TEST_UV"))
        .parent()
        .unwrap()
        .join("python")
}

/// Runs a Python script with the tools venv; returns (success, stdout + stderr).
fn py(script: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = run(Command::new(tools_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied()));
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// The manifest or index at `reference` (`registry/repo:tag`), read with skopeo.
fn raw_manifest(reference: &str) -> serde_json::Value {
    inspect_raw(reference).1
}

/// GET from the harness registry (plain HTTP on 127.0.0.1).
fn registry_get(path: &str, accept: &str) -> Vec<u8> {
    let registry = service("RAYPACK_TEST_REGISTRY");
    let out = run(Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(format!("http://{registry}/v2/{path}")));
    assert!(out.status.success(), "GET {path}: {}", stderr(&out));
    out.stdout
}

const KEYGEN: &str = r#"
import base64, hashlib, json, os, sys, textwrap
from nacl.secret import SecretBox
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
# A key pair in the format `cosign generate-key-pair` writes: PKCS#8 sealed with NaCl
# secretbox under scrypt(N=32768, r=8, p=1) of COSIGN_PASSWORD, as JSON in a PEM block.
key = ec.generate_private_key(ec.SECP256R1())
der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
k = hashlib.scrypt(os.environ["COSIGN_PASSWORD"].encode(), salt=salt, n=32768, r=8, p=1,
                   dklen=32, maxmem=128 * 1024 * 1024)
ct = SecretBox(k).encrypt(der, nonce).ciphertext
b64 = lambda b: base64.b64encode(b).decode()
doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)}, "ciphertext": b64(ct)}
body = "\n".join(textwrap.wrap(b64(json.dumps(doc).encode()), 64))
label = "ENCRYPTED SIGSTORE PRIVATE KEY"
open(sys.argv[1], "w").write(f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
open(sys.argv[2], "wb").write(pub)
"#;

const VERIFY: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
pub = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
payload = open(sys.argv[2], "rb").read()
pub.verify(base64.b64decode(sys.argv[3]), payload, ec.ECDSA(hashes.SHA256()))
p = json.loads(payload)
assert p["critical"]["type"] == "cosign container image signature", p
assert p["critical"]["image"]["docker-manifest-digest"] == sys.argv[4], p
assert p["critical"]["identity"]["docker-reference"] == sys.argv[5], p
print("signature ok")
"#;

const VALIDATE_CDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if errors:
    print(errors)
    sys.exit(1)
print("cyclonedx ok")
"#;

/// examples/hello on the stand-in base with a lock that replaces a base package (click),
/// installs a new one (iniconfig), and asks for both SBOM formats.
fn project(tag: &str) -> (tempfile::TempDir, PathBuf, String) {
    let (t, dir, repo) = hello_pushing(
        tag,
        &service("RAYPACK_TEST_BASE"),
        "",
        "sbom = [\"spdx\", \"cyclonedx\"]",
    );
    use_pypi_pylock(&dir, &[("click", "8.1.7"), ("iniconfig", "2.1.0")]);
    (t, dir, repo)
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn sboms_list_the_image_are_attached_and_the_image_is_signed() {
    let (t, dir, repo) = project("sbom");
    let key = t.path().join("cosign.key");
    let public = t.path().join("cosign.pub");
    let password = "correct horse";
    let (ok, text) = py(
        KEYGEN,
        &[key.to_str().unwrap(), public.to_str().unwrap()],
        &[("COSIGN_PASSWORD", password)],
    );
    assert!(ok, "{text}");

    // No password: refused before anything is built or pushed.
    let cache = t.path().join("blob-cache");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .env_remove("COSIGN_PASSWORD")
        .arg("-C")
        .arg(&dir)
        .args(["bake", "--push", "--sign"])
        .arg(&key));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("set COSIGN_PASSWORD"),
        "{}",
        stderr(&out)
    );

    let sbom_file = t.path().join("out/image.spdx.json");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .env("COSIGN_PASSWORD", password)
        .arg("-C")
        .arg(&dir)
        .args(["--output", "json", "bake", "--push", "--sign"])
        .arg(&key)
        .arg("--sbom")
        .arg(&sbom_file));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bake = &v["bake"];
    let digest = bake["digest"].as_str().unwrap().to_string();
    let repo_path = repo.split_once('/').unwrap().1.to_string();
    let cdx_file = t.path().join("out/image.spdx.json.cdx.json");
    assert_eq!(
        bake["sbom"][1]["files"][0].as_str(),
        Some(cdx_file.to_str().unwrap())
    );

    // Both documents validate with independent tools.
    let tools = Path::new(&service("RAYPACK_TEST_UV"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = run(Command::new(tools.join("pyspdxtools"))
        .arg("-i")
        .arg(&sbom_file));
    assert!(
        out.status.success() && !stdout(&out).contains("ERROR"),
        "pyspdxtools:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let (ok, text) = py(VALIDATE_CDX, &[cdx_file.to_str().unwrap()], &[]);
    assert!(ok, "{text}");

    // The SPDX packages are exactly what importlib.metadata sees in the image.
    let spdx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_file).unwrap()).unwrap();
    let packages = spdx["packages"].as_array().unwrap();
    let listed: BTreeMap<String, (String, String)> = packages
        .iter()
        .filter(|p| p["primaryPackagePurpose"] == "LIBRARY")
        .map(|p| {
            (
                normalize(p["name"].as_str().unwrap()),
                (
                    p["versionInfo"].as_str().unwrap().to_string(),
                    p["comment"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let image = format!("{repo}@{digest}");
    let bundle = pull_and_unpack(t.path(), &image);
    let (ok, seen) = sandbox(
        t.path(),
        &bundle,
        "python -c 'import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata[\"Name\"], d.version)'",
    );
    assert!(ok, "{seen}");
    let seen: BTreeMap<String, String> = seen
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (normalize(n), v.to_string()))
        .collect();
    let listed_versions: BTreeMap<String, String> = listed
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        listed_versions, seen,
        "SBOM vs importlib.metadata in the image"
    );
    assert!(
        seen.len() > 50,
        "the stand-in has Ray's stack: {}",
        seen.len()
    );
    let origin = |n: &str| listed[n].1.clone();
    assert_eq!(
        origin("click"),
        format!(
            "origin: replaced (the base had {})",
            standin_version("click")
        )
    );
    assert_eq!(listed["click"].0, "8.1.7");
    assert_eq!(origin("iniconfig"), "origin: installed");
    assert_eq!(origin("requests"), "origin: base");
    let iniconfig = packages.iter().find(|p| p["name"] == "iniconfig").unwrap();
    let (file, _, sha) = pypi_wheel_info("iniconfig", "2.1.0");
    assert_eq!(iniconfig["packageFileName"], serde_json::json!(file));
    assert_eq!(
        iniconfig["checksums"][0]["checksumValue"],
        serde_json::json!(sha)
    );
    assert_eq!(iniconfig["licenseDeclared"], "MIT");
    let image_pkg = &packages[0];
    assert_eq!(image_pkg["versionInfo"], serde_json::json!(digest));
    assert!(
        spdx["relationships"].as_array().unwrap().iter().any(|r| {
            r["spdxElementId"] == "SPDXRef-Image"
                && r["relationshipType"] == "DEPENDS_ON"
                && r["relatedSpdxElement"] == "SPDXRef-Base"
        }),
        "the base is the image's dependency"
    );

    // Attached as referrers: the tag schema's index lists both, each names the image as its
    // subject and carries the document's bytes.
    let tag = digest.replacen(':', "-", 1);
    let index: serde_json::Value = raw_manifest(&format!("{repo}:{tag}"));
    let listed_types: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_types,
        vec!["application/spdx+json", "application/vnd.cyclonedx+json"]
    );
    for (m, file) in index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&sbom_file, &cdx_file])
    {
        let d = m["digest"].as_str().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&registry_get(
            &format!("{repo_path}/manifests/{d}"),
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .unwrap();
        assert_eq!(manifest["subject"]["digest"], serde_json::json!(digest));
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let blob = registry_get(&format!("{repo_path}/blobs/{layer}"), "*/*");
        assert_eq!(blob, std::fs::read(file).unwrap(), "{}", file.display());
    }
    // The image is unchanged: its tag still resolves to the same digest.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:v1"),
    ])
    .stdout;
    assert_eq!(raypack::oci::sha256_digest(&raw), digest);
    // Provenance: the image names the lock its wheels came from.
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["annotations"]["dev.raypack.lock.file"],
        "pylock.toml"
    );
    assert_eq!(
        manifest["annotations"]["dev.raypack.lock.sha256"],
        serde_json::json!(raypack::oci::sha256_digest(
            &std::fs::read(dir.join("pylock.toml")).unwrap()
        ))
    );

    // The signature: cosign's tag layout, verified with the public key.
    let sig: serde_json::Value = raw_manifest(&format!("{repo}:{tag}.sig"));
    let layer = &sig["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = registry_get(
        &format!("{repo_path}/blobs/{}", layer["digest"].as_str().unwrap()),
        "*/*",
    );
    let payload_file = t.path().join("payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let (ok, text) = py(
        VERIFY,
        &[
            public.to_str().unwrap(),
            payload_file.to_str().unwrap(),
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
            &digest,
            &repo,
        ],
        &[],
    );
    assert!(ok && text.contains("signature ok"), "{text}");

    // Signing again keeps one signature (same key, same digest, same bytes).
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", &cache)
        .env("COSIGN_PASSWORD", password)
        .arg("-C")
        .arg(&dir)
        .args(["bake", "--push", "--sign"])
        .arg(&key));
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = raw_manifest(&format!("{repo}:{tag}.sig"));
    assert_eq!(again["layers"].as_array().unwrap().len(), 1, "{again}");

    // A copy of the project, another cache: the same SBOM bytes.
    let copy = t.path().join("copy");
    copy_tree(&dir, &copy);
    let _ = std::fs::remove_dir_all(copy.join(".raypack"));
    let second = t.path().join("second.spdx.json");
    let out = run(raypack()
        .env("RAYPACK_CACHE_DIR", t.path().join("cache-2"))
        .arg("-C")
        .arg(&copy)
        .args(["bake", "--sbom"])
        .arg(&second));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&second).unwrap(),
        std::fs::read(&sbom_file).unwrap(),
        "two bakes of one project made different SBOMs"
    );
    // Without --push, the SBOMs are written beside the OCI layout.
    assert!(copy.join(".raypack/oci.spdx.json").is_file());
    assert!(copy.join(".raypack/oci.cdx.json").is_file());
}
