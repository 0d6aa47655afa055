#![deny(missing_docs)]
//! Files → deterministic archives, with no network and no recipe.
//!
//! - [`collect`]: the walk of a package directory (ignore files, excludes, symlinks inside
//!   the project) with a stat cache, and SHA-256 of every file;
//! - [`sha256_lanes`]: SHA-256 of many small messages two at a time on one core;
//! - [`archive`]: deterministic zips (runtime_env packages) and tar layers (images), and
//!   parallel gzip;
//! - [`cache`]: the content-addressed blob cache shared by all projects; [`digest`] names
//!   its blobs;
//! - [`units`] and [`chain`]: sizes and error chains for messages.
//!
//! ```no_run
//! use raypack_pack::collect::{Collector, PackageKind};
//! let files = Collector::new("/work/proj".as_ref(), PackageKind::WorkingDir)
//!     .project_root("/work/proj".as_ref())
//!     .collect()
//!     .unwrap();
//! println!("{} files", files.files.len());
//! ```
#![deny(missing_debug_implementations)]

pub mod archive;
pub mod cache;
pub mod chain;
pub mod collect;
pub mod digest;
pub mod sha256_lanes;
pub mod units;
