//! Writing PEP 751 lock files (`pylock.raypack.toml`) from resolutions, one per target.
//!
//! Output is deterministic: packages sorted by name then version, wheels by filename, no
//! timestamp of the run. A package that every target resolves to the same version has no
//! marker and lists each target's wheel; otherwise each version carries a marker naming the
//! targets that use it. `[tool.raypack]` records the inputs' hash (so a stale lock is
//! detected without resolving), the targets, the base and what the lock replaces in it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;

use pep508_rs::pep440_rs::Version;

use super::resolve::Resolution;
use super::tags::Target;
use super::tags::marker_env;
use super::wheel::normalize;

/// The lock file name, next to the recipe.
pub const PYLOCK_FILE: &str = "pylock.raypack.toml";

/// One target of a lock: an image platform and the base's interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTarget {
    /// `linux/amd64`, `linux/arm64`.
    pub platform: String,
    /// The interpreter and glibc of that platform's image.
    pub target: Target,
}

impl LockTarget {
    /// The PEP 508 marker that is true exactly in this target's environment.
    pub fn environment(&self) -> String {
        format!(
            "sys_platform == 'linux' and platform_machine == '{}' and python_version == '3.{}'",
            self.target.arch, self.target.python_minor
        )
    }

    fn machine_marker(&self) -> String {
        format!("platform_machine == '{}'", self.target.arch)
    }
}

/// What `[tool.raypack]` holds besides the packages' own data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolInfo {
    /// `sha256:` of the lock's inputs (requirements, indexes, targets, base contents).
    pub input_hash: String,
    /// The base image the lock was made for.
    pub base_image: Option<String>,
    /// Its digest.
    pub base_digest: Option<String>,
    /// How many installed distributions of the base were known when locking.
    pub base_distributions: usize,
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn array(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// Renders the lock for resolutions of `targets` (same order).
pub fn render(targets: &[LockTarget], resolutions: &[Resolution], tool: &ToolInfo) -> String {
    assert_eq!(
        targets.len(),
        resolutions.len(),
        "one resolution per target"
    );
    // name → version → (target indexes, wheels by filename, index)
    type Wheels = BTreeMap<String, super::index::DistFile>;
    type ByVersion = BTreeMap<Version, (Vec<usize>, Wheels, String)>;
    let mut by_name: BTreeMap<String, ByVersion> = BTreeMap::new();
    for (ti, r) in resolutions.iter().enumerate() {
        for p in &r.packages {
            let e = by_name
                .entry(p.name.clone())
                .or_default()
                .entry(p.version.clone())
                .or_insert_with(|| (Vec::new(), BTreeMap::new(), p.index.clone()));
            e.0.push(ti);
            e.1.insert(p.wheel.filename.clone(), p.wheel.clone());
        }
    }
    let python = targets
        .first()
        .map(|t| format!("==3.{}.*", t.target.python_minor))
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(
        "# Written by `raypack lock` for the targets in [tool.raypack]; do not edit by hand.\n",
    );
    out.push_str("# Re-run `raypack lock` after changing the recipe's requirements.\n");
    out.push_str("lock-version = \"1.0\"\n");
    let envs: Vec<String> = targets.iter().map(LockTarget::environment).collect();
    let _ = writeln!(out, "environments = {}", array(&envs));
    let _ = writeln!(out, "requires-python = {}", q(&python));
    out.push_str("created-by = \"raypack\"\n");
    for (name, versions) in &by_name {
        for (version, (tis, wheels, index)) in versions {
            out.push_str("\n[[packages]]\n");
            let _ = writeln!(out, "name = {}", q(name));
            let _ = writeln!(out, "version = {}", q(&version.to_string()));
            if tis.len() < targets.len() {
                let mut ms: Vec<String> =
                    tis.iter().map(|&i| targets[i].machine_marker()).collect();
                ms.dedup();
                let _ = writeln!(out, "marker = {}", q(&ms.join(" or ")));
            }
            if !index.is_empty() {
                let _ = writeln!(out, "index = {}", q(&crate::netrc::redact(index)));
            }
            out.push_str("wheels = [\n");
            for (fname, w) in wheels {
                let mut fields = vec![
                    format!("name = {}", q(fname)),
                    format!("url = {}", q(&crate::netrc::redact(&w.url))),
                ];
                if let Some(s) = w.size {
                    fields.push(format!("size = {s}"));
                }
                if let Some(t) = w
                    .upload_time
                    .as_deref()
                    .filter(|t| toml::value::Datetime::from_str(t).is_ok())
                {
                    fields.push(format!("upload-time = {t}"));
                }
                fields.push(format!(
                    "hashes = {{ sha256 = {} }}",
                    q(w.sha256.as_deref().unwrap_or_default())
                ));
                let _ = writeln!(out, "    {{ {} }},", fields.join(", "));
            }
            out.push_str("]\n");
        }
    }
    out.push_str("\n[tool.raypack]\n");
    let _ = writeln!(out, "input-hash = {}", q(&tool.input_hash));
    if let Some(b) = &tool.base_image {
        let _ = writeln!(out, "base-image = {}", q(b));
    }
    if let Some(d) = &tool.base_digest {
        let _ = writeln!(out, "base-digest = {}", q(d));
    }
    let _ = writeln!(
        out,
        "base-distributions-known = {}",
        tool.base_distributions
    );
    let mut kept: Vec<String> = resolutions
        .iter()
        .flat_map(|r| {
            r.packages
                .iter()
                .filter(|p| p.in_base)
                .map(|p| p.name.clone())
        })
        .collect();
    kept.sort();
    kept.dedup();
    let _ = writeln!(out, "kept-from-base = {}", array(&kept));
    for t in targets {
        out.push_str("\n[[tool.raypack.targets]]\n");
        let _ = writeln!(out, "platform = {}", q(&t.platform));
        let _ = writeln!(
            out,
            "python-version = {}",
            q(&format!("3.{}", t.target.python_minor))
        );
        let _ = writeln!(
            out,
            "manylinux = {}",
            q(&format!("2_{}", t.target.glibc_minor))
        );
    }
    for (t, r) in targets.iter().zip(resolutions) {
        for rep in &r.replacements {
            out.push_str("\n[[tool.raypack.replaces]]\n");
            let _ = writeln!(out, "name = {}", q(&rep.name));
            let _ = writeln!(out, "platform = {}", q(&t.platform));
            let _ = writeln!(out, "base-version = {}", q(&rep.base_version));
            let _ = writeln!(out, "locked-version = {}", q(&rep.locked_version));
            let _ = writeln!(out, "required-by = {}", array(&rep.required_by));
        }
    }
    out
}

/// One `[[packages]]` entry of a pylock.toml, as every reader needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    /// The distribution's name, as the lock spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its environment marker, if any.
    pub marker: Option<String>,
    /// Its wheels (empty when the entry lists none).
    pub wheels: Vec<LockedWheel>,
}

impl LockedPackage {
    /// Whether the package applies to `target` (no marker, or a marker that holds for it).
    /// A marker that does not parse is an error naming the package.
    pub(crate) fn applies_to(&self, target: &Target) -> Result<bool, String> {
        let Some(m) = &self.marker else {
            return Ok(true);
        };
        let req = crate::requirement::parse(&format!("{}; {m}", self.name))
            .map_err(|e| format!("package {}: bad marker: {e}", self.name))?;
        Ok(req.marker.evaluate(&marker_env(target), &[]))
    }
}

/// One wheel of a [`LockedPackage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedWheel {
    /// Its file name (`name`, else the URL's last segment).
    pub filename: String,
    /// Where it is downloaded from; `None` when the entry has none.
    pub url: Option<String>,
    /// Its sha256 (hex), when listed.
    pub sha256: Option<String>,
    /// Its size, when listed.
    pub size: Option<u64>,
}

/// Why a pylock.toml could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PylockError {
    /// Not TOML: the line and column of the problem.
    #[error("{line}:{column}: not valid TOML: {message}")]
    Toml {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// TOML, but not a PEP 751 lock raypack can read.
    #[error("{0}")]
    Invalid(String),
}

/// The packages of a PEP 751 lock (`lock-version` 1.x), in file order: the one reader of
/// pylock files (bake, the bundle, env's pins, re-locking preferences).
pub fn read(text: &str) -> Result<Vec<LockedPackage>, PylockError> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let start = e.span().map(|s| s.start.min(text.len())).unwrap_or(0);
        let before = &text[..start];
        PylockError::Toml {
            line: before.matches('\n').count() + 1,
            column: before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1,
            message: e.message().to_string(),
        }
    })?;
    if doc
        .get("lock-version")
        .and_then(|v| v.as_str())
        .is_none_or(|v| !v.starts_with("1."))
    {
        return Err(PylockError::Invalid(
            "missing or unsupported lock-version (expected 1.x)".into(),
        ));
    }
    let mut out = Vec::new();
    for p in doc
        .get("packages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let bad = |m: String| PylockError::Invalid(m);
        let name = p
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("a [[packages]] entry has no name".into()))?;
        let version = p
            .get("version")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("package {name} has no version")))?;
        let wheels = p
            .get("wheels")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
            .map(|w| {
                let url = w.get("url").and_then(|v| v.as_str()).map(str::to_string);
                LockedWheel {
                    filename: w
                        .get("name")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .or_else(|| {
                            url.as_deref()
                                .and_then(|u| u.rsplit('/').next())
                                .map(str::to_string)
                        })
                        .unwrap_or_default(),
                    url,
                    sha256: w
                        .get("hashes")
                        .and_then(|h| h.get("sha256"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    size: w.get("size").and_then(|v| v.as_integer()).map(|n| n as u64),
                }
            })
            .collect();
        out.push(LockedPackage {
            name: name.into(),
            version: version.into(),
            marker: p.get("marker").and_then(|m| m.as_str()).map(str::to_string),
            wheels,
        });
    }
    Ok(out)
}

/// The `input-hash` recorded in a lock's `[tool.raypack]`, if any.
pub fn recorded_input_hash(text: &str) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    doc.get("tool")?
        .get("raypack")?
        .get("input-hash")?
        .as_str()
        .map(str::to_string)
}

/// The versions an existing lock has for `target` (normalized name → version), used as
/// preferences so re-locking keeps what still fits.
pub fn locked_versions(text: &str, target: &Target) -> BTreeMap<String, Version> {
    let Ok(packages) = read(text) else {
        return BTreeMap::new();
    };
    packages
        .into_iter()
        .filter(|p| p.applies_to(target).unwrap_or(false))
        .filter_map(|p| Some((normalize(&p.name), Version::from_str(&p.version).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reader_for_every_use() {
        let text = "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\nmarker = \"platform_machine == 'aarch64'\"\nwheels = [{ url = \"https://f/a-1-py3-none-any.whl\", hashes = { sha256 = \"ab\" } }]\n[[packages]]\nname = \"b\"\nversion = \"2\"\n";
        let p = read(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].wheels[0].filename, "a-1-py3-none-any.whl");
        assert_eq!(p[0].wheels[0].sha256.as_deref(), Some("ab"));
        assert!(p[1].wheels.is_empty());
        let amd = Target::new("linux/amd64", "3.11", "2_28").unwrap();
        assert_eq!(p[0].applies_to(&amd), Ok(false));
        assert_eq!(p[1].applies_to(&amd), Ok(true));
        let v = locked_versions(text, &amd);
        assert_eq!(v.keys().collect::<Vec<_>>(), ["b"]);
        assert!(matches!(
            read("[[packages]]\nname = \"a\"\n"),
            Err(PylockError::Invalid(m)) if m.contains("lock-version")
        ));
        assert!(matches!(
            read("lock-version = \"1.0\"\n[[packages]\n"),
            Err(PylockError::Toml { line: 2, .. })
        ));
    }
    use crate::index::DistFile;
    use crate::resolve::{Locked, Replacement};

    fn wheel(f: &str) -> DistFile {
        DistFile {
            filename: f.into(),
            url: format!("https://files.example/{f}"),
            sha256: Some("ab".repeat(32)),
            requires_python: None,
            yanked: false,
            yanked_reason: None,
            core_metadata: None,
            size: Some(42),
            upload_time: Some("2024-05-01T10:00:00.123456Z".into()),
        }
    }

    fn locked(name: &str, v: &str, f: &str) -> Locked {
        Locked {
            name: name.into(),
            version: Version::from_str(v).unwrap(),
            wheel: wheel(f),
            index: "https://pypi.org/simple".into(),
            in_base: false,
            required_by: vec![],
        }
    }

    fn lt(platform: &str) -> LockTarget {
        LockTarget {
            platform: platform.into(),
            target: Target::new(platform, "3.11", "2_36").unwrap(),
        }
    }

    #[test]
    fn multi_target_lock_reads_back_per_target() {
        let targets = [lt("linux/amd64"), lt("linux/arm64")];
        let amd = Resolution {
            target: targets[0].target.clone(),
            packages: vec![
                locked("idna", "3.10", "idna-3.10-py3-none-any.whl"),
                locked(
                    "numpy",
                    "2.1.0",
                    "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                ),
                locked("only-amd", "1.0", "only_amd-1.0-py3-none-any.whl"),
            ],
            replacements: vec![Replacement {
                name: "numpy".into(),
                base_version: "1.26.4".into(),
                locked_version: "2.1.0".into(),
                required_by: vec!["the requirements (numpy>=2)".into()],
            }],
        };
        let arm = Resolution {
            target: targets[1].target.clone(),
            packages: vec![
                locked("idna", "3.10", "idna-3.10-py3-none-any.whl"),
                locked(
                    "numpy",
                    "2.0.0",
                    "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl",
                ),
            ],
            replacements: vec![],
        };
        let tool = ToolInfo {
            input_hash: "sha256:00".into(),
            ..Default::default()
        };
        let text = render(&targets, &[amd.clone(), arm.clone()], &tool);
        assert_eq!(text, render(&targets, &[amd, arm], &tool), "deterministic");
        let doc: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(doc["lock-version"].as_str(), Some("1.0"));
        assert_eq!(doc["created-by"].as_str(), Some("raypack"));
        let pk = doc["packages"].as_array().unwrap();
        assert_eq!(pk.len(), 4, "{text}");
        // idna: shared, one wheel, no marker.
        assert_eq!(pk[0]["name"].as_str(), Some("idna"));
        assert!(pk[0].get("marker").is_none());
        assert_eq!(pk[0]["wheels"].as_array().unwrap().len(), 1);
        assert!(pk[0]["wheels"][0]["upload-time"].is_datetime());
        assert_eq!(recorded_input_hash(&text).as_deref(), Some("sha256:00"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PYLOCK_FILE);
        std::fs::write(&path, &text).unwrap();
        for (t, numpy) in [(&targets[0], "2.1.0"), (&targets[1], "2.0.0")] {
            let pins = crate::pinned::from_pylock(&path, &t.target).unwrap();
            let np = pins.iter().find(|w| w.name == "numpy").unwrap();
            assert_eq!(np.version, numpy);
            assert!(np.filename.contains(&t.target.arch));
            assert_eq!(
                pins.iter().any(|w| w.name == "only-amd"),
                t.platform == "linux/amd64"
            );
            assert_eq!(
                locked_versions(&text, &t.target)["numpy"].to_string(),
                numpy
            );
        }
        let rep = &doc["tool"]["raypack"]["replaces"][0];
        assert_eq!(rep["name"].as_str(), Some("numpy"));
        assert_eq!(rep["base-version"].as_str(), Some("1.26.4"));
    }
}
