//! Archive writers: deterministic zips for runtime_env packages and tar layers for images.

pub mod pgzip;
pub mod tar;
pub mod zip;

/// Every temp file raypack writes an archive into starts with `.raypack-`, and this process's
/// temp files with `.raypack-<pid>-`; all end with [`TEMP_SUFFIX`]. Only such files are ever
/// cleaned up as leftovers of killed runs, and never the running process's own.
pub fn temp_prefix() -> String {
    format!("{TEMP_MARK}{}-", std::process::id())
}

/// What every raypack temp file's name starts with.
pub const TEMP_MARK: &str = ".raypack-";
/// What every raypack temp file's name ends with.
pub const TEMP_SUFFIX: &str = ".partial";
