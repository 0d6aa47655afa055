//! The `runtime_env` handed to Ray: URIs of the content-addressed packages, dependencies
//! inlined as a list (never a `-r` path, which Ray would read on the submitter and hash
//! literally), env_vars as strings.

use std::collections::BTreeMap;

use serde::Serialize;

/// How dependencies are given to Ray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DepsMode {
    /// An inline `pip` list.
    #[default]
    Pip,
    /// An inline `uv` list.
    Uv,
    /// No dependency field (the image already has them).
    None,
    /// The pinned wheels installed into a content-hashed `py_modules` zip (no pip on the
    /// workers).
    Bundle,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuntimeEnvConfig {
    pub setup_timeout_seconds: i64,
}

/// A Ray runtime_env as raypack emits it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuntimeEnv {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub py_modules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pip: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// `module.function` every worker runs at start-up (`env --nfs`: enter the snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_process_setup_hook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeEnvConfig>,
}

impl RuntimeEnv {
    /// Sets the dependency field for `mode` (an empty list sets nothing, as Ray would drop it).
    pub fn with_deps(mut self, mode: DepsMode, requirements: Vec<String>) -> Self {
        if requirements.is_empty() {
            return self;
        }
        match mode {
            DepsMode::Pip => self.pip = Some(requirements),
            DepsMode::Uv => self.uv = Some(requirements),
            DepsMode::None | DepsMode::Bundle => {}
        }
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("runtime_env serializes")
    }

    pub fn to_yaml(&self) -> String {
        super::to_yaml(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_values_stay_strings_in_yaml() {
        let mut env = RuntimeEnv {
            working_dir: Some("s3://b/demo-1.zip".into()),
            ..Default::default()
        };
        env.env_vars.insert("N".into(), "1".into());
        env.env_vars.insert("B".into(), "true".into());
        let y = env.to_yaml();
        let back: serde_json::Value = serde_norway::from_str(&y).unwrap();
        assert_eq!(back["env_vars"]["N"], serde_json::json!("1"));
        assert_eq!(back["env_vars"]["B"], serde_json::json!("true"));
        assert_eq!(back, env.to_json());
    }
}
