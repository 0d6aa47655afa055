//! raypack ships Python projects to Ray clusters on Kubernetes (KubeRay).
//!
//! The data flows one way: [`recipe`] (what the user wrote) → [`plan`] (everything pinned:
//! file lists and hashes) → [`archive`] (deterministic zips) → [`store`] (object stores) →
//! [`spec`] (runtime_env and KubeRay YAML). The command-line layer in `main.rs` only wires
//! these together.
#![deny(missing_debug_implementations)]

pub mod archive;
pub mod bake;
pub mod bundle;
pub mod chain;
pub mod collect;
pub mod envpack;
pub mod init;
pub mod lock;
pub mod lockfile;
pub mod oci;
pub mod plan;
pub mod python;
pub mod recipe;
pub mod requirements;
pub mod sha256_lanes;
pub mod spec;
pub mod store;
pub mod submit;
pub mod units;

#[cfg(test)]
mod fuzz;
