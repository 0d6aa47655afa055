//! raypack ships Python projects to Ray clusters on Kubernetes (KubeRay).
//!
//! The data flows one way: [`recipe`] (what the user wrote) → [`plan`] and [`lock`]
//! (everything pinned: file lists and hashes, wheels, the base's digest) → artifacts (zips
//! from [`archive`], layers from [`python`]) → publish ([`store`] for object stores, [`oci`] for
//! registries) → [`spec`] (runtime_env and KubeRay YAML). The command-line layer in `main.rs`
//! only wires these together.
//!
//! The library crates below this one hold the stages that need no recipe, and the compiler
//! keeps them from reaching back: `raypack-pack` (files → archives, the blob cache),
//! `raypack-python` (wheels, indexes, resolution, layers), `raypack-oci` (images and
//! registries) and `raypack-store` (object stores). They are re-exported here under the module
//! names the app uses.
#![deny(missing_debug_implementations)]

pub use raypack_oci as oci;
pub use raypack_pack::{archive, cache, chain, collect, sha256_lanes, units};
pub use raypack_python as python;
pub use raypack_store as store;

pub mod bake;
pub mod base;
pub mod bundle;
pub mod envpack;
pub mod http;
pub mod init;
pub mod install;
pub mod lock;
pub mod lockfile;
pub mod nfs;
pub mod plan;
pub mod recipe;
pub mod requirements;
pub mod spec;
pub mod submit;

#[cfg(test)]
mod fuzz;
