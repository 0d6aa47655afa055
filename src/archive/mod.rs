//! Archive writers: deterministic zips for runtime_env packages.
//! (Tar layers for images arrive with `raypack bake`.)

pub mod zip;
