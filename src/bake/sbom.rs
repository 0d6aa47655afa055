//! The software bill of materials of a baked image: what is in it and where each part came
//! from, as SPDX 2.3 JSON and/or CycloneDX 1.6 JSON.
//!
//! raypack knows the image's contents exactly, without scanning it: the base's installed
//! distributions (read from its RECORDs when it was pulled), every wheel the bake installed
//! (file name, sha256, where it came from), which base versions those replaced, and the code
//! layer. Both documents list the same things:
//!
//! - the image (repository, manifest digest) as the document's subject, depending on
//! - the base image (name, digest), and
//! - the project's code (the code layer's digest, the git revision when known), and
//! - every distribution in the final image: name, version, `pkg:pypi` purl, the license its
//!   METADATA declares, its origin (`base`, `installed`, or `replaced` with the base's
//!   version), and for installed wheels the wheel's file name, sha256 and download URL.
//!
//! The bytes are deterministic: the creation time is the image's `created` (from
//! `SOURCE_DATE_EPOCH`), the document's namespace / serial number derive from the image
//! digest, and every list is sorted.
//!
//! SPDX is the default because it is what ko, apko and BuildKit attach by default, so
//! registries, scanners (Trivy, Grype) and policy tools that already handle those images
//! handle raypack's the same way.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::deps::{DepsReport, InstalledWheel};
use crate::python::installed::BaseIndex;
use crate::python::metadata::DeclaredLicense;
use crate::python::wheel::normalize;

pub use crate::recipe::SbomFormat;

/// What the SBOM describes.
#[derive(Debug, Clone)]
pub struct SbomInput<'a> {
    /// The image's repository (`registry/team/app`), or the project's name without one.
    pub image: &'a str,
    /// The image's manifest digest.
    pub image_digest: &'a str,
    /// The base as the recipe names it.
    pub base: &'a str,
    /// The base's manifest digest.
    pub base_digest: &'a str,
    /// The project's name.
    pub project: &'a str,
    /// The code layer's digest.
    pub code_layer: &'a str,
    /// The git revision of the code, when known.
    pub revision: Option<&'a str>,
    /// The git remote (credentials stripped), when known.
    pub source: Option<&'a str>,
    /// The image's `created` (RFC 3339).
    pub created: &'a str,
    /// What the base has installed.
    pub installed: &'a BaseIndex,
    /// What the bake kept, installed and replaced.
    pub deps: &'a DepsReport,
}

/// Where a distribution in the image came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The base's, untouched.
    Base,
    /// Installed by the bake; the base did not have it.
    Installed,
    /// Installed by the bake over the base's version (`from`).
    Replaced {
        /// The base's version.
        from: String,
    },
}

impl Origin {
    fn as_str(&self) -> &'static str {
        match self {
            Origin::Base => "base",
            Origin::Installed => "installed",
            Origin::Replaced { .. } => "replaced",
        }
    }
}

/// One distribution in the final image.
#[derive(Debug, Clone)]
pub struct Distribution<'a> {
    /// As METADATA (or the lock) spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it came from.
    pub origin: Origin,
    /// The wheel the bake installed (not for [`Origin::Base`]).
    pub wheel: Option<&'a InstalledWheel>,
    /// What METADATA declares.
    pub license: Option<DeclaredLicense>,
}

/// Every distribution in the final image, sorted by normalized name: the base's, with the
/// bake's wheels installed over it.
pub fn distributions<'a>(installed: &BaseIndex, deps: &'a DepsReport) -> Vec<Distribution<'a>> {
    let wheels: BTreeMap<String, &InstalledWheel> = deps
        .wheels
        .iter()
        .map(|w| (normalize(&w.name), w))
        .collect();
    let mut out: BTreeMap<String, Distribution<'a>> = BTreeMap::new();
    for (key, d) in &installed.dists {
        let dist = match wheels.get(key) {
            Some(w) => Distribution {
                name: w.name.clone(),
                version: w.version.clone(),
                origin: Origin::Replaced {
                    from: d.version.clone(),
                },
                wheel: Some(w),
                license: w.license.clone(),
            },
            None => Distribution {
                name: d.name.clone(),
                version: d.version.clone(),
                origin: Origin::Base,
                wheel: None,
                license: d.license.clone(),
            },
        };
        out.insert(key.clone(), dist);
    }
    for (key, w) in wheels {
        out.entry(key).or_insert_with(|| Distribution {
            name: w.name.clone(),
            version: w.version.clone(),
            origin: Origin::Installed,
            wheel: Some(w),
            license: w.license.clone(),
        });
    }
    out.into_values().collect()
}

/// The SBOM in `format`, as the bytes to publish.
pub fn render(format: SbomFormat, input: &SbomInput<'_>) -> Vec<u8> {
    let doc = match format {
        SbomFormat::Spdx => spdx(input),
        SbomFormat::CycloneDx => cyclonedx(input),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("an SBOM serializes");
    bytes.push(b'\n');
    bytes
}

/// The license as an SPDX expression, when it can honestly be one: `License-Expression`
/// and `License` are canonicalized by the `spdx` crate (which maps well-known imprecise names
/// such as `Apache 2.0`) and must then parse strictly; classifiers are mapped only where the
/// classifier names one license exactly.
pub fn spdx_expression(license: &DeclaredLicense) -> Option<String> {
    let canonical = |s: &str| -> Option<String> {
        let c = match spdx::Expression::canonicalize(s) {
            Ok(Some(c)) => c,
            Ok(None) => s.to_string(),
            Err(_) => return None,
        };
        spdx::Expression::parse(&c).ok().map(|_| c)
    };
    match license {
        DeclaredLicense::Expression(e) | DeclaredLicense::Text(e) => canonical(e.trim()),
        DeclaredLicense::Classifiers(names) => {
            let ids: Option<Vec<&str>> = names.iter().map(|n| classifier_id(n)).collect();
            let ids = ids?;
            let mut ids: Vec<&str> = ids;
            ids.dedup();
            canonical(&ids.join(" OR "))
        }
    }
}

/// The `License ::` classifiers that name exactly one SPDX license (others, such as `BSD
/// License` or `Apache Software License`, do not say which version or variant).
fn classifier_id(name: &str) -> Option<&'static str> {
    Some(match name {
        "MIT License" => "MIT",
        "MIT No Attribution License (MIT-0)" => "MIT-0",
        "ISC License (ISCL)" => "ISC",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "Python Software Foundation License" => "PSF-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "Boost Software License 1.0 (BSL-1.0)" => "BSL-1.0",
        "Zero-Clause BSD (0BSD)" => "0BSD",
        "Universal Permissive License (UPL)" => "UPL-1.0",
        "Apache Software License 2.0" => "Apache-2.0",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "Eclipse Public License 2.0 (EPL-2.0)" => "EPL-2.0",
        _ => return None,
    })
}

/// The declared license as one line of text (for SPDX comments and CycloneDX names).
fn license_text(license: &DeclaredLicense) -> String {
    match license {
        DeclaredLicense::Expression(s) | DeclaredLicense::Text(s) => s.clone(),
        DeclaredLicense::Classifiers(v) => v.join(", "),
    }
}

/// `pkg:pypi/<name>@<version>` (name normalized, as the purl spec asks for PyPI).
pub fn pypi_purl(name: &str, version: &str) -> String {
    format!(
        "pkg:pypi/{}@{}",
        purl_escape(&normalize(name)),
        purl_escape(version)
    )
}

/// `pkg:oci/<last path segment>@<digest>?repository_url=<registry/path>`.
fn oci_purl(repository: &str, digest: &str) -> String {
    let repo = repository
        .split_once('@')
        .map(|(r, _)| r)
        .unwrap_or(repository);
    // Drop a tag (a ':' after the last '/').
    let repo = match repo.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((name, _)) => format!("{head}/{name}"),
            None => repo.to_string(),
        },
        None => repo.split(':').next().unwrap_or(repo).to_string(),
    };
    let name = repo
        .rsplit('/')
        .next()
        .unwrap_or(&repo)
        .to_ascii_lowercase();
    format!(
        "pkg:oci/{}@{}?repository_url={}",
        purl_escape(&name),
        purl_escape(digest),
        purl_escape(&repo.to_ascii_lowercase())
    )
}

/// Percent-encodes what a purl component may not hold as is.
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A UUID (version 5 layout) from a digest: the CycloneDX serial number of an image's SBOM is
/// the same for the same image.
fn uuid_of(digest: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("raypack-sbom:{digest}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn spdx_id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

fn tool() -> String {
    format!("raypack-{}", env!("CARGO_PKG_VERSION"))
}

fn spdx(i: &SbomInput<'_>) -> Value {
    let image_id = "SPDXRef-Image";
    let base_id = "SPDXRef-Base";
    let code_id = "SPDXRef-Code";
    let container = |id: &str, name: &str, digest: &str, comment: String| {
        json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "checksums": [{ "algorithm": "SHA256", "checksumValue": hex_of(digest) }],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": oci_purl(name, digest),
            }],
            "comment": comment,
        })
    };
    let mut packages = vec![
        container(
            image_id,
            i.image,
            i.image_digest,
            "the image baked by raypack (manifest digest)".into(),
        ),
        container(
            base_id,
            i.base,
            i.base_digest,
            "the base image (manifest digest)".into(),
        ),
    ];
    let mut code = json!({
        "SPDXID": code_id,
        "name": i.project,
        "versionInfo": i.revision.unwrap_or(i.code_layer),
        "downloadLocation": i.source.map(|s| match i.revision {
            Some(r) => format!("git+{s}@{r}"),
            None => format!("git+{s}"),
        }).unwrap_or_else(|| "NOASSERTION".into()),
        "filesAnalyzed": false,
        "primaryPackagePurpose": "SOURCE",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": hex_of(i.code_layer) }],
        "comment": format!("the project's code: the code layer {} (its sha256 is the checksum)", i.code_layer),
    });
    if let Some(r) = i.revision {
        code["sourceInfo"] = json!(format!("git revision {r}"));
    }
    packages.push(code);
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}),
        json!({"spdxElementId": image_id, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": base_id}),
        json!({"spdxElementId": image_id, "relationshipType": "DESCENDANT_OF", "relatedSpdxElement": base_id}),
        json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": code_id}),
    ];
    for d in distributions(i.installed, i.deps) {
        let id = spdx_id("Pypi", &normalize(&d.name));
        let expression = d.license.as_ref().and_then(spdx_expression);
        let mut comment = format!("origin: {}", d.origin.as_str());
        if let Origin::Replaced { from } = &d.origin {
            comment.push_str(&format!(" (the base had {from})"));
        }
        let mut p = json!({
            "SPDXID": id,
            "name": d.name,
            "versionInfo": d.version,
            "downloadLocation": d.wheel.map(|w| w.url.clone()).unwrap_or_else(|| "NOASSERTION".into()),
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": expression.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": pypi_purl(&d.name, &d.version),
            }],
            "comment": comment,
        });
        if let Some(w) = d.wheel {
            p["packageFileName"] = json!(w.filename);
            p["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": w.sha256 }]);
        }
        if let (None, Some(l)) = (&expression, &d.license) {
            p["licenseComments"] = json!(format!("METADATA declares: {}", license_text(l)));
        }
        packages.push(p);
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
        if d.origin == Origin::Base {
            relationships.push(json!({"spdxElementId": base_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", i.image, i.image_digest),
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/raypack/{}/{}",
            i.image.replace(['/', ':'], "-"),
            hex_of(i.image_digest)
        ),
        "creationInfo": {
            "created": i.created,
            "creators": [format!("Tool: {}", tool())],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn cyclonedx(i: &SbomInput<'_>) -> Value {
    let mut components = vec![json!({
        "type": "container",
        "bom-ref": "base",
        "name": i.base,
        "version": i.base_digest,
        "purl": oci_purl(i.base, i.base_digest),
        "hashes": [{ "alg": "SHA-256", "content": hex_of(i.base_digest) }],
        "description": "the base image (manifest digest)",
    })];
    let mut code = json!({
        "type": "application",
        "bom-ref": "code",
        "name": i.project,
        "version": i.revision.unwrap_or(i.code_layer),
        "hashes": [{ "alg": "SHA-256", "content": hex_of(i.code_layer) }],
        "description": format!("the project's code: the code layer {}", i.code_layer),
        "properties": [{ "name": "raypack:code-layer", "value": i.code_layer }],
    });
    if let Some(s) = i.source {
        code["externalReferences"] = json!([{ "type": "vcs", "url": s }]);
    }
    components.push(code);
    let mut image_deps = vec![json!("base"), json!("code")];
    let mut base_deps = Vec::new();
    for d in distributions(i.installed, i.deps) {
        let purl = pypi_purl(&d.name, &d.version);
        let mut props = vec![json!({ "name": "raypack:origin", "value": d.origin.as_str() })];
        if let Origin::Replaced { from } = &d.origin {
            props.push(json!({ "name": "raypack:replaces", "value": from }));
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": d.name,
            "version": d.version,
            "purl": purl,
        });
        if let Some(l) = &d.license {
            c["licenses"] = match spdx_expression(l) {
                Some(e) => json!([{ "expression": e }]),
                None => json!([{ "license": { "name": license_text(l) } }]),
            };
        }
        if let Some(w) = d.wheel {
            c["hashes"] = json!([{ "alg": "SHA-256", "content": w.sha256 }]);
            c["externalReferences"] = json!([{ "type": "distribution", "url": w.url }]);
            props.push(json!({ "name": "raypack:wheel", "value": w.filename }));
        }
        c["properties"] = Value::Array(props);
        image_deps.push(json!(purl));
        if d.origin == Origin::Base {
            base_deps.push(json!(purl));
        }
        components.push(c);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_of(i.image_digest)),
        "version": 1,
        "metadata": {
            "timestamp": i.created,
            "tools": { "components": [{ "type": "application", "name": "raypack", "version": env!("CARGO_PKG_VERSION") }] },
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": i.image,
                "version": i.image_digest,
                "purl": oci_purl(i.image, i.image_digest),
                "hashes": [{ "alg": "SHA-256", "content": hex_of(i.image_digest) }],
            },
        },
        "components": components,
        "dependencies": [
            { "ref": "image", "dependsOn": image_deps },
            { "ref": "base", "dependsOn": base_deps },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::installed::InstalledDist;

    fn base() -> BaseIndex {
        let d = |name: &str, version: &str, license: Option<DeclaredLicense>| InstalledDist {
            name: name.into(),
            version: version.into(),
            dist_info: format!("sp/{name}-{version}.dist-info"),
            requires_dist: vec![],
            requires_python: None,
            files: vec![],
            license,
        };
        BaseIndex {
            format: "x".into(),
            site_packages: "sp".into(),
            dists: [
                ("click".to_string(), d("click", "8.2.1", None)),
                (
                    "pyyaml".to_string(),
                    d(
                        "PyYAML",
                        "6.0.2",
                        Some(DeclaredLicense::Classifiers(vec!["MIT License".into()])),
                    ),
                ),
            ]
            .into(),
        }
    }

    fn wheel(name: &str, version: &str, license: &str) -> InstalledWheel {
        InstalledWheel {
            name: name.into(),
            version: version.into(),
            filename: format!("{name}-{version}-py3-none-any.whl"),
            url: format!("https://files.example/{name}-{version}-py3-none-any.whl"),
            sha256: "ab".repeat(32),
            license: Some(DeclaredLicense::Text(license.into())),
        }
    }

    #[test]
    fn origins_follow_the_base_and_the_wheels() {
        let b = base();
        let deps = DepsReport {
            wheels: vec![
                wheel("click", "8.1.7", "BSD-3-Clause"),
                wheel("numpy", "2.4.6", "Apache 2.0"),
            ],
            ..Default::default()
        };
        let got: Vec<(String, String, Origin)> = distributions(&b, &deps)
            .into_iter()
            .map(|d| (d.name, d.version, d.origin))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "click".into(),
                    "8.1.7".into(),
                    Origin::Replaced {
                        from: "8.2.1".into()
                    }
                ),
                ("numpy".into(), "2.4.6".into(), Origin::Installed),
                ("PyYAML".into(), "6.0.2".into(), Origin::Base),
            ]
        );
    }

    #[test]
    fn licenses_become_spdx_expressions_only_when_exact() {
        let e = |l: DeclaredLicense| spdx_expression(&l);
        assert_eq!(
            e(DeclaredLicense::Expression("MIT OR Apache-2.0".into())).as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            e(DeclaredLicense::Text("Apache 2.0".into())).as_deref(),
            Some("Apache-2.0")
        );
        assert_eq!(e(DeclaredLicense::Text("Proprietary stuff".into())), None);
        assert_eq!(
            e(DeclaredLicense::Classifiers(vec!["MIT License".into()])).as_deref(),
            Some("MIT")
        );
        assert_eq!(
            e(DeclaredLicense::Classifiers(vec!["BSD License".into()])),
            None,
            "which BSD is not said"
        );
    }

    #[test]
    fn purls_escape_what_they_must() {
        assert_eq!(pypi_purl("PyYAML", "6.0.2"), "pkg:pypi/pyyaml@6.0.2");
        assert_eq!(
            pypi_purl("torch", "2.5.1+cpu"),
            "pkg:pypi/torch@2.5.1%2Bcpu"
        );
        assert_eq!(
            oci_purl("127.0.0.1:5000/team/app:v1", "sha256:ab"),
            "pkg:oci/app@sha256%3Aab?repository_url=127.0.0.1%3A5000/team/app"
        );
    }

    #[test]
    fn documents_are_deterministic_and_name_the_image() {
        let b = base();
        let deps = DepsReport {
            wheels: vec![wheel("numpy", "2.4.6", "BSD-3-Clause")],
            ..Default::default()
        };
        let input = SbomInput {
            image: "r.example/team/app",
            image_digest: "sha256:1111",
            base: "rayproject/ray:2.60.0-py311-cpu",
            base_digest: "sha256:2222",
            project: "app",
            code_layer: "sha256:3333",
            revision: Some("abc"),
            source: None,
            created: "1970-01-01T00:00:00Z",
            installed: &b,
            deps: &deps,
        };
        for f in [SbomFormat::Spdx, SbomFormat::CycloneDx] {
            let a = render(f, &input);
            assert_eq!(a, render(f, &input));
            let text = String::from_utf8(a).unwrap();
            assert!(text.contains("sha256:1111") && text.contains("pkg:pypi/numpy@2.4.6"));
        }
    }
}
