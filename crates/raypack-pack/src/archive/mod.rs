//! Archive writers: deterministic zips for runtime_env packages and tar layers for images.

pub mod pgzip;
pub mod tar;
pub mod zip;
pub mod zst;

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

/// Writes `bytes` to `path` whole or not at all: a temp file in the same directory, mode 0644
/// (readable by everyone, like a file a user commits or shares; a temp file is 0600), then a
/// rename. A reader never sees a partial file, whatever kills the process.
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
