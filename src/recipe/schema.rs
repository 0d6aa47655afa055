//! The recipe as written: serde types that mirror `raypack.toml` key for key.
//!
//! Every table denies unknown keys, and every value that is checked after parsing keeps its
//! byte span ([`Spanned`]) so that errors can point at the exact line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole recipe (`raypack.toml`, or the `[tool.raypack]` table of `pyproject.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    pub project: Spanned<RawProject>,
    #[serde(default)]
    pub code: RawCode,
    #[serde(default)]
    pub dependencies: RawDependencies,
    #[serde(default)]
    pub base: Option<Spanned<RawBase>>,
    #[serde(default)]
    pub image: RawImage,
    #[serde(default)]
    pub env: RawEnv,
    #[serde(default)]
    pub cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    pub nfs: Option<Spanned<RawNfs>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNfs {
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub claim: Option<Spanned<String>>,
    #[serde(default)]
    pub server: Option<Spanned<String>>,
    #[serde(default)]
    pub export: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCode {
    #[serde(default)]
    pub working_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub py_modules: Vec<Spanned<String>>,
    #[serde(default)]
    pub excludes: Vec<Spanned<String>>,
    /// Allow a working dir that is `/` or a home directory's root.
    #[serde(default)]
    pub allow_broad_working_dir: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDependencies {
    #[serde(default)]
    pub requirements: Vec<Spanned<String>>,
    #[serde(default)]
    pub requirements_file: Option<Spanned<String>>,
    #[serde(default)]
    pub index_url: Option<Spanned<String>>,
    #[serde(default)]
    pub extra_index_urls: Vec<Spanned<String>>,
    #[serde(default)]
    pub find_links: Vec<Spanned<String>>,
    /// Per-package index pinning: `torch = "https://download.pytorch.org/whl/cu124"`.
    #[serde(default)]
    pub package_indexes: BTreeMap<String, Spanned<String>>,
    /// Most dependency layers a bake writes (heavy distributions get their own).
    #[serde(default)]
    pub max_layers: Option<Spanned<u32>>,
    /// Allow the lock to replace the base image's Ray (a hard pin otherwise).
    #[serde(default)]
    pub replace_ray: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBase {
    pub image: Spanned<String>,
    #[serde(default)]
    pub platform: Option<Spanned<String>>,
    /// Several platforms: one multi-platform image (an index) from one bake.
    #[serde(default)]
    pub platforms: Option<Spanned<Vec<Spanned<String>>>>,
    /// Overrides for bases the catalog does not know.
    #[serde(default)]
    pub python: Option<Spanned<String>>,
    #[serde(default)]
    pub python_version: Option<Spanned<String>>,
    #[serde(default)]
    pub site_packages: Option<Spanned<String>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub manylinux: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    #[serde(default)]
    pub repository: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub app_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub compile_bytecode: Option<bool>,
    #[serde(default)]
    pub sbom: Option<Vec<Spanned<String>>>,
    /// `gzip` (default) or `zstd`.
    #[serde(default)]
    pub compression: Option<Spanned<String>>,
    /// The zstd level (1–19; default 3).
    #[serde(default)]
    pub compression_level: Option<Spanned<i64>>,
    /// The shared layer cache: `REGISTRY/REPO`, an `s3://` / `gs://` / `file://` prefix, or
    /// `none`.
    #[serde(default)]
    pub cache: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    #[serde(default)]
    pub store: Option<Spanned<String>>,
    #[serde(default)]
    pub env_vars: BTreeMap<String, Spanned<String>>,
    /// Target Python for `--deps bundle` and for the RayJob image in env mode.
    #[serde(default)]
    pub python_version: Option<Spanned<String>>,
    #[serde(default)]
    pub setup_timeout_seconds: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum ClusterKind {
    RayCluster,
    RayJob,
    RayService,
}

impl ClusterKind {
    /// Longest metadata.name the KubeRay operator accepts for this kind.
    pub fn max_name_len(self) -> usize {
        match self {
            ClusterKind::RayCluster => 53,
            ClusterKind::RayJob | ClusterKind::RayService => 47,
        }
    }
}

impl std::fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterKind::RayCluster => "RayCluster",
            ClusterKind::RayJob => "RayJob",
            ClusterKind::RayService => "RayService",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub kind: Spanned<ClusterKind>,
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default)]
    pub entrypoint: Option<Spanned<String>>,
    #[serde(default)]
    pub ray_version: Option<Spanned<String>>,
    /// Image for `raypack env --emit rayjob` (bake always uses the image it built).
    #[serde(default)]
    pub image: Option<Spanned<String>>,
    #[serde(default)]
    pub head: RawHead,
    #[serde(default)]
    pub workers: Vec<Spanned<RawWorkerGroup>>,
    #[serde(default)]
    pub serve: Option<Spanned<RawServe>>,
    #[serde(default)]
    pub shutdown_after_job_finishes: Option<bool>,
    #[serde(default)]
    pub ttl_seconds_after_finished: Option<Spanned<i64>>,
    #[serde(default)]
    pub active_deadline_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
    #[serde(default)]
    pub autoscaling: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHead {
    #[serde(default)]
    pub cpu: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub memory: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub gpu: Option<Spanned<u32>>,
    /// `num-cpus = "0"` keeps tasks off the head.
    #[serde(default)]
    pub ray_start_params: BTreeMap<String, Spanned<ParamValue>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkerGroup {
    pub group: Spanned<String>,
    #[serde(default)]
    pub replicas: Option<Spanned<i64>>,
    #[serde(default)]
    pub min: Option<Spanned<i64>>,
    #[serde(default)]
    pub max: Option<Spanned<i64>>,
    #[serde(default)]
    pub cpu: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub memory: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub gpu: Option<Spanned<u32>>,
    #[serde(default)]
    pub ray_start_params: BTreeMap<String, Spanned<ParamValue>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub import_path: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub route_prefix: Option<String>,
}

/// A Kubernetes quantity as written in the recipe: `"2"`, `2`, `0.5`, `"500m"`, `"4Gi"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes quantity such as \"2\", \"500m\" or \"4Gi\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(format!("{v}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `rayStartParams` value: KubeRay wants strings, the recipe accepts numbers and booleans too.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue(pub String);

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ParamValue, E> {
                Ok(ParamValue(format!("{v}")))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `pyproject.toml`, read only for its `[tool.raypack]` table.
#[derive(Debug, Deserialize)]
pub struct RawPyproject {
    #[serde(default)]
    pub tool: Option<RawTool>,
}

#[derive(Debug, Deserialize)]
pub struct RawTool {
    #[serde(default)]
    pub raypack: Option<RawRecipe>,
}
