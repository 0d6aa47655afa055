//! Specs raypack prints: the runtime_env, and KubeRay RayCluster / RayJob / RayService YAML.

pub mod kuberay;
pub mod resolve;
pub mod runtime_env;

/// Renders any serializable value as YAML (strings that would read back as another type are
/// quoted, so env_vars values, quantities and rayVersion stay strings).
pub fn to_yaml<T: serde::Serialize>(v: &T) -> String {
    serde_norway::to_string(v).expect("specs serialize to YAML")
}
