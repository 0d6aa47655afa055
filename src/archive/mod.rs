//! Archive writers: deterministic zips for runtime_env packages and tar layers for images.

pub mod pgzip;
pub mod tar;
pub mod zip;
