//! What a base image is: learned from its config, checked and completed by the catalog in
//! `base-images/catalog.toml` and the recipe's `[base]` overrides. Never guessed.

use serde::Deserialize;
use serde_json::Value;

use crate::oci::reference::Reference;
use crate::recipe::Base;

use super::BaseError;

const CATALOG: &str = include_str!("../../base-images/catalog.toml");

#[derive(Debug, Clone, Deserialize)]
struct Catalog {
    image: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    #[serde(default)]
    registry: Option<String>,
    repository: String,
    tag: String,
    python: String,
    python_version: String,
    site_packages: String,
    manylinux: String,
    user: String,
    arch: Vec<String>,
    #[serde(default)]
    arch_tags: std::collections::BTreeMap<String, String>,
}

/// The layout of a base image that bake builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseLayout {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub python: String,
    pub python_version: String,
    pub site_packages: String,
    pub manylinux: Option<String>,
    pub ray_version: Option<String>,
    /// Where the layout facts came from (for `--output json` and errors).
    pub source: &'static str,
}

fn catalog() -> Vec<CatalogEntry> {
    toml::from_str::<Catalog>(CATALOG)
        .expect("base-images/catalog.toml parses")
        .image
}

/// The catalog entry for a reference, with `{minor}` filled in.
fn lookup(r: &Reference, arch: &str) -> Option<CatalogEntry> {
    let tail: Vec<&str> = r.repository.rsplit('/').take(2).collect();
    let repo = format!("{}/{}", tail.get(1).unwrap_or(&""), tail[0]);
    let tag = r.tag.as_deref()?;
    for e in catalog() {
        if e.repository != repo || e.registry.as_ref().is_some_and(|reg| reg != &r.registry) {
            continue;
        }
        let re = regex::Regex::new(&e.tag).expect("catalog regex");
        let Some(caps) = re.captures(tag) else {
            continue;
        };
        if !e.arch.iter().any(|a| a == arch) {
            continue;
        }
        let minor = caps.name("minor").map(|m| m.as_str()).unwrap_or("");
        let fill = |s: &str| s.replace("{minor}", minor);
        return Some(CatalogEntry {
            python: fill(&e.python),
            python_version: fill(&e.python_version),
            site_packages: fill(&e.site_packages),
            ..e
        });
    }
    None
}

/// The tag of `r` for another architecture, for bases the catalog says are published one tag
/// per architecture (`2.60.0-py311-cpu` → `2.60.0-py311-cpu-aarch64` for arm64); `None` when
/// the base is not, or `r` already names that tag.
pub fn arch_tag(r: &Reference, arch: &str) -> Option<Reference> {
    let tag = r.tag.as_deref()?;
    let entry = lookup(r, arch)?;
    let suffix = entry.arch_tags.get(arch)?;
    if tag.ends_with(suffix.as_str()) {
        return None;
    }
    Some(Reference {
        tag: Some(format!("{tag}{suffix}")),
        digest: None,
        ..r.clone()
    })
}

fn env_of(config: &Value, key: &str) -> Option<String> {
    config["config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn parse_user(s: &str) -> Option<(u32, Option<u32>)> {
    match s.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, Some(g.parse().ok()?))),
        None => Some((s.parse().ok()?, None)),
    }
}

/// The Python target of the recipe's base without pulling it (for `raypack env`): the recipe's
/// `[base]` overrides, else the catalog entry for its image and platform.
pub fn target_without_pull(base: &Base) -> Result<crate::python::tags::Target, BaseError> {
    let arch = base.platform.rsplit('/').next().unwrap_or("amd64");
    let entry = lookup(&base.reference, arch);
    let python_version = base
        .python_version
        .clone()
        .or_else(|| entry.as_ref().map(|e| e.python_version.clone()));
    let manylinux = base
        .manylinux
        .clone()
        .or_else(|| entry.as_ref().map(|e| e.manylinux.clone()));
    let (Some(pv), Some(ml)) = (python_version, manylinux) else {
        return Err(BaseError::NotInCatalog {
            image: base.image.clone(),
        });
    };
    crate::python::tags::Target::new(&base.platform, &pv, &ml).ok_or_else(|| BaseError::NoTarget {
        platform: base.platform.clone(),
        python: pv.clone(),
        manylinux: ml.clone(),
    })
}

/// Describes the base from its raw config, the catalog and the recipe's overrides.
pub fn describe(
    base: &Base,
    reference: &Reference,
    config: &Value,
) -> Result<BaseLayout, BaseError> {
    let image = base.image.clone();
    let arch = config["architecture"].as_str().unwrap_or("amd64");
    let entry = lookup(reference, arch);
    let bad = |message: String| BaseError::Inconsistent {
        image: image.clone(),
        message,
    };

    // User: the recipe, else the config's numeric User completed by the catalog's gid.
    let config_user = config["config"]["User"].as_str().filter(|u| !u.is_empty());
    let catalog_user = entry.as_ref().and_then(|e| parse_user(&e.user));
    let (uid, gid) = match (&base.user, config_user, catalog_user) {
        (Some(u), _, _) => {
            let (u, g) =
                parse_user(u).ok_or_else(|| bad(format!("[base] user `{u}` is not UID:GID")))?;
            (u, g.unwrap_or(u))
        }
        (None, Some(cu), Some((eu, eg))) => match parse_user(cu) {
            Some((u, g)) if u == eu => (u, g.or(eg).unwrap_or(u)),
            Some((u, _)) => {
                return Err(bad(format!(
                    "config User is {u}, but the catalog says {eu}; set [base] user = \"UID:GID\""
                )));
            }
            None => {
                return Err(bad(format!(
                    "config User `{cu}` is a name; set [base] user = \"UID:GID\""
                )));
            }
        },
        (None, None, Some((eu, eg))) => (eu, eg.unwrap_or(eu)),
        (None, Some(cu), None) => match parse_user(cu) {
            Some((u, Some(g))) => (u, g),
            _ => return Err(BaseError::Unknown { image }),
        },
        (None, None, None) => return Err(BaseError::Unknown { image }),
    };

    let python = base
        .python
        .clone()
        .or_else(|| entry.as_ref().map(|e| e.python.clone()));
    let python_version = base
        .python_version
        .clone()
        .or_else(|| entry.as_ref().map(|e| e.python_version.clone()));
    let site_packages = base
        .site_packages
        .clone()
        .or_else(|| entry.as_ref().map(|e| e.site_packages.clone()));
    let (Some(python), Some(python_version), Some(site_packages)) =
        (python, python_version, site_packages)
    else {
        return Err(BaseError::Unknown { image });
    };
    // The interpreter's directory must be on the image's PATH, or Ray's own tools (ray, python)
    // would not be found by the cluster's commands.
    let path = env_of(config, "PATH").unwrap_or_default();
    let bindir = python.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    if !path.split(':').any(|p| p == bindir) {
        return Err(bad(format!(
            "its PATH ({path}) does not contain {bindir}, the directory of its Python {python}; this does not look like a Ray image"
        )));
    }
    let home = env_of(config, "HOME")
        .or_else(|| {
            config["config"]["WorkingDir"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/home/ray".into());
    Ok(BaseLayout {
        uid,
        gid,
        home,
        python,
        python_version,
        site_packages,
        manylinux: base
            .manylinux
            .clone()
            .or_else(|| entry.as_ref().map(|e| e.manylinux.clone())),
        ray_version: config["config"]["Labels"]["io.ray.ray-version"]
            .as_str()
            .map(str::to_string),
        source: if entry.is_some() {
            "catalog + config"
        } else {
            "recipe [base] + config"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arch_tags_follow_the_catalog() {
        let r = Reference::parse("rayproject/ray:2.60.0-py311-cpu").unwrap();
        assert_eq!(
            arch_tag(&r, "arm64").unwrap().tag.as_deref(),
            Some("2.60.0-py311-cpu-aarch64")
        );
        assert!(arch_tag(&r, "amd64").is_none());
        let already = Reference::parse("rayproject/ray:2.60.0-py311-cpu-aarch64").unwrap();
        assert!(arch_tag(&already, "arm64").is_none());
        let llm = Reference::parse("rayproject/ray-llm:2.60.0-py311-cu128").unwrap();
        assert!(
            arch_tag(&llm, "arm64").is_none(),
            "ray-llm has no arm64 images"
        );
        let other = Reference::parse("example.com/team/base:1").unwrap();
        assert!(arch_tag(&other, "arm64").is_none());
    }

    fn base(image: &str) -> Base {
        Base {
            image: image.into(),
            reference: Reference::parse(image).unwrap(),
            platform: "linux/amd64".into(),
            platforms: vec!["linux/amd64".into()],
            python: None,
            python_version: None,
            site_packages: None,
            user: None,
            manylinux: None,
        }
    }

    #[test]
    fn rayproject_tags_come_from_the_catalog() {
        let b = base("rayproject/ray:2.60.0-py312-gpu");
        let cfg = json!({"architecture": "amd64", "config": {"User": "1000", "Env": ["PATH=/home/ray/anaconda3/bin:/usr/bin", "HOME=/home/ray"], "Labels": {"io.ray.ray-version": "2.60.0"}}});
        let l = describe(&b, &b.reference, &cfg).unwrap();
        assert_eq!((l.uid, l.gid), (1000, 100));
        assert_eq!(l.python_version, "3.12");
        assert_eq!(
            l.site_packages,
            "/home/ray/anaconda3/lib/python3.12/site-packages"
        );
        assert_eq!(l.ray_version.as_deref(), Some("2.60.0"));
    }

    #[test]
    fn unknown_bases_need_overrides() {
        let b = base("python:3.11-slim");
        let cfg =
            json!({"architecture": "amd64", "config": {"Env": ["PATH=/usr/local/bin:/usr/bin"]}});
        assert!(matches!(
            describe(&b, &b.reference, &cfg),
            Err(BaseError::Unknown { .. })
        ));
        let mut b2 = b.clone();
        b2.python = Some("/usr/local/bin/python".into());
        b2.python_version = Some("3.11".into());
        b2.site_packages = Some("/usr/local/lib/python3.11/site-packages".into());
        b2.user = Some("1000:1000".into());
        let l = describe(&b2, &b2.reference, &cfg).unwrap();
        assert_eq!((l.uid, l.gid), (1000, 1000));
    }

    #[test]
    fn a_base_without_its_python_on_path_is_refused() {
        let b = base("rayproject/ray:2.60.0-py311-cpu");
        let cfg = json!({"architecture": "amd64", "config": {"User": "1000", "Env": ["PATH=/usr/bin:/bin"]}});
        assert!(
            describe(&b, &b.reference, &cfg)
                .unwrap_err()
                .to_string()
                .contains("does not contain /home/ray/anaconda3/bin")
        );
    }
}
