//! Wheels: filenames and tags, choosing the best wheel for a target, and installing a wheel
//! into layer entries the way pip does (binary distribution format, PEP 427 / PyPA spec),
//! without running Python.
//!
//! Installing: purelib/platlib into site-packages; `.data/<key>/` spread onto the scheme
//! (scripts → bin with `#!python` rewritten to the image's interpreter, headers, data);
//! console and GUI launchers from `entry_points.txt`; INSTALLER (`raypack`), REQUESTED for
//! requested distributions; RECORD rewritten for the installed paths. Files are 0644, or 0755
//! when executable; every entry is owned by the base's user. Entries that would escape their
//! target (absolute, `..`, backslashes, symlinks), a METADATA name/version that differs from
//! the filename, or more than one `.dist-info` directory are errors.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use raypack_pack::archive::tar::{EntryKind, LayerEntry};

mod overlap;
pub use overlap::*;

/// `{name}-{version}(-{build})?-{py}-{abi}-{plat}.whl`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// The distribution name as the file spells it.
    pub name: String,
    /// The version.
    pub version: String,
    /// The build tag, if any: number and rest.
    pub build: Option<(u64, String)>,
    /// Expanded `py-abi-plat` tags (compressed tag sets multiplied out).
    pub tags: Vec<String>,
}

pub use crate::requirement::normalize;

impl WheelName {
    /// Parses a wheel file name (PEP 427); `None` when it is not one.
    pub fn parse(filename: &str) -> Option<WheelName> {
        let stem = filename.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat) = match parts.as_slice() {
            [n, v, py, abi, plat] => (*n, *v, None, *py, *abi, *plat),
            [n, v, b, py, abi, plat] => {
                let digits: String = b.chars().take_while(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() {
                    return None;
                }
                (
                    *n,
                    *v,
                    Some((digits.parse().ok()?, b[digits.len()..].to_string())),
                    *py,
                    *abi,
                    *plat,
                )
            }
            _ => return None,
        };
        let mut tags = Vec::new();
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    tags.push(format!("{p}-{a}-{pl}"));
                }
            }
        }
        Some(WheelName {
            name: name.to_string(),
            version: version.to_string(),
            build,
            tags,
        })
    }

    /// The best (lowest) priority of any of its tags, if any is compatible.
    pub fn priority(&self, priorities: &std::collections::HashMap<String, usize>) -> Option<usize> {
        self.tags
            .iter()
            .filter_map(|t| priorities.get(t).copied())
            .min()
    }
}

/// Picks the best of several wheels of one version: best tag, then highest build tag.
pub fn best_wheel<'a>(
    names: &'a [WheelName],
    priorities: &std::collections::HashMap<String, usize>,
) -> Option<&'a WheelName> {
    names
        .iter()
        .filter_map(|w| w.priority(priorities).map(|p| (p, w)))
        .min_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| b.build.cmp(&a.build)))
        .map(|(_, w)| w)
}

/// Where an installation puts things (absolute paths inside the image).
#[derive(Debug, Clone)]
pub struct Scheme {
    /// site-packages (purelib and platlib).
    pub site_packages: String,
    /// Where console scripts go.
    pub scripts: String,
    /// The `data` scheme root.
    pub data: String,
    /// `…/include/python3.X`; the distribution name is appended.
    pub headers: String,
    /// The interpreter written into script shebangs.
    pub python: String,
}

impl Scheme {
    /// The layout of a conda/venv-style environment whose interpreter is `<prefix>/bin/python`.
    pub fn for_python(python: &str, python_version: &str, site_packages: &str) -> Scheme {
        let bin = python
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("/usr/bin");
        let prefix = bin.rsplit_once('/').map(|(d, _)| d).unwrap_or("/usr");
        Scheme {
            site_packages: site_packages.to_string(),
            scripts: bin.to_string(),
            data: prefix.to_string(),
            headers: format!("{prefix}/include/python{python_version}"),
            python: python.to_string(),
        }
    }
}

/// Why a wheel could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{wheel}: {message}")]
    /// The wheel is not a valid wheel.
    Invalid {
        /// The wheel.
        wheel: String,
        /// Why.
        message: String,
    },
    #[error(
        "{wheel}: entry `{entry}` would be installed outside its target directory; refusing the wheel"
    )]
    /// An entry would be written outside the install scheme.
    Escape {
        /// The wheel.
        wheel: String,
        /// The entry.
        entry: String,
    },
    /// The wheel could not be read.
    #[error("{wheel}: {source}")]
    Io {
        /// The wheel.
        wheel: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One installed distribution.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The distribution's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its `.dist-info` directory (image path).
    pub dist_info: String,
    /// The layer entries it installs.
    pub entries: Vec<LayerEntry>,
    /// Normalized names from `Requires-Dist` (markers and extras ignored): what must be
    /// installed before this distribution when two ship the same file.
    pub requires: Vec<String>,
    /// RECORD rows (path relative to site-packages, hash, size), sorted by path.
    record: Vec<(String, String, u64)>,
    /// The scheme's site-packages (absolute), which RECORD paths are relative to.
    site_packages: String,
}

impl Installed {
    /// The layer path of this distribution's RECORD.
    fn record_entry(&self) -> String {
        format!("{}/{}/RECORD", self.site_packages, self.dist_info)
            .trim_start_matches('/')
            .to_string()
    }

    /// The RECORD path of the entry at layer path `path`.
    fn record_path(&self, path: &str) -> String {
        relative(&self.site_packages, &format!("/{path}"))
    }

    /// The `sha256=…` hash RECORD gives the entry at layer path `path`.
    fn hash_of(&self, path: &str) -> Option<&str> {
        let rel = self.record_path(path);
        self.record
            .binary_search_by(|r| r.0.as_str().cmp(&rel))
            .ok()
            .map(|i| self.record[i].1.as_str())
    }
}

/// The fields of one CSV line (RECORD: path, hash, size; quotes with `""` escapes).
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A writer that feeds a hash (sha2 0.11 has no `io::Write`).
pub(crate) struct HashWriter<'a>(pub(crate) &'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn b64_sha256(data: &[u8]) -> String {
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
    )
}

/// `to` relative to the directory `from` (both absolute, '/'-separated).
fn relative(from: &str, to: &str) -> String {
    let f: Vec<&str> = from
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let t: Vec<&str> = to
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", f.len() - common).collect();
    parts.extend(&t[common..]);
    parts.join("/")
}

/// A relative '/'-separated path that stays inside its directory and holds no control
/// characters (a newline in a name would let it write lines of its own into RECORD).
fn safe_rel(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name.split('/').all(|c| c != ".." && c != ".")
}

/// The largest `#!python` script read into memory to rewrite its shebang (pip's scripts are
/// a few KiB; one over this is not a script).
const MAX_SCRIPT: u64 = 8 << 20;
/// The largest METADATA / WHEEL / RECORD / entry_points.txt read (torch's RECORD is ~2 MiB).
const MAX_TEXT: u64 = 64 << 20;

/// One RECORD field, quoted as Python's `csv` module writes it when it must be.
pub(crate) fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// The shebang for a script run by `python` (the /bin/sh trampoline for long or spaced paths).
fn shebang(python: &str) -> String {
    if python.len() + 2 > 127 || python.contains(' ') {
        format!("#!/bin/sh\n'''exec' '{python}' \"$0\" \"$@\"\n' '''\n")
    } else {
        format!("#!{python}\n")
    }
}

fn launcher(python: &str, module: &str, attr: &str) -> String {
    let top = attr.split('.').next().unwrap_or(attr);
    format!(
        "{}# -*- coding: utf-8 -*-\nimport sys\nfrom {module} import {top}\nif __name__ == '__main__':\n    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n    sys.exit({attr}())\n",
        shebang(python)
    )
}

/// Installs the wheel at `path` (named `filename`) into layer entries. File contents are extracted under
/// `unpack_dir` (which must be empty or not exist) and referenced from there.
pub fn install(
    path: &Path,
    filename: &str,
    scheme: &Scheme,
    owner: (u32, u32),
    requested: bool,
    unpack_dir: &Path,
) -> Result<Installed, WheelError> {
    let wheel = filename.to_string();
    let invalid = |message: String| WheelError::Invalid {
        wheel: wheel.clone(),
        message,
    };
    let io = |source: std::io::Error| WheelError::Io {
        wheel: wheel.clone(),
        source,
    };
    let wn = WheelName::parse(&wheel).ok_or_else(|| invalid("not a wheel file name".into()))?;
    let file = std::fs::File::open(path).map_err(io)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| invalid(format!("not a zip archive: {e}")))?;

    // Exactly one .dist-info directory, matching the filename; no path both a file and a
    // directory (nothing could extract it).
    let mut dist_infos = std::collections::BTreeSet::new();
    let mut files = std::collections::HashSet::new();
    let mut parents = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| invalid(e.to_string()))?;
        let name = f.name().map_err(|e| invalid(e.to_string()))?.to_string();
        if !safe_rel(name.trim_end_matches('/')) {
            return Err(WheelError::Escape { wheel, entry: name });
        }
        if f.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(WheelError::Escape {
                wheel,
                entry: format!("{name} (symlink)"),
            });
        }
        if let Some((top, _)) = name.split_once('/')
            && top.ends_with(".dist-info")
        {
            dist_infos.insert(top.to_string());
        }
        let path = name.trim_end_matches('/');
        if !name.ends_with('/') && !f.is_dir() {
            files.insert(path.to_string());
        }
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            if !parents.insert(parent.to_string()) {
                break;
            }
            at = parent;
        }
    }
    if let Some(clash) = files.iter().filter(|f| parents.contains(*f)).min() {
        return Err(invalid(format!(
            "`{clash}` is both a file and a directory in the wheel; pip refuses it too"
        )));
    }
    let dist_info = match dist_infos.len() {
        1 => dist_infos.into_iter().next().expect("one"),
        0 => return Err(invalid("no .dist-info directory".into())),
        n => {
            return Err(invalid(format!(
                "{n} .dist-info directories ({})",
                dist_infos.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    // `.dist-info` is named for this project (pip's rule: the normalized directory name
    // starts with the normalized project name).
    if !normalize(&dist_info).starts_with(&normalize(&wn.name)) {
        return Err(invalid(format!(
            "its metadata directory `{dist_info}` belongs to another project than {}",
            wn.name
        )));
    }
    // Text members are read up to MAX_TEXT, whatever size they declare.
    let read_text = |zip: &mut zip::ZipArchive<std::io::BufReader<std::fs::File>>,
                     name: &str|
     -> Option<String> {
        let f = zip.by_name(name).ok()?;
        let mut s = String::new();
        f.take(MAX_TEXT).read_to_string(&mut s).ok()?;
        Some(s)
    };
    let metadata = read_text(&mut zip, &format!("{dist_info}/METADATA"))
        .ok_or_else(|| invalid(format!("{dist_info}/METADATA is missing")))?;
    let header = |key: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                l.strip_prefix(&format!("{key}: "))
                    .map(str::trim)
                    .map(str::to_string)
            })
    };
    let (mname, mversion) = (
        header("Name").unwrap_or_default(),
        header("Version").unwrap_or_default(),
    );
    if normalize(&mname) != normalize(&wn.name)
        || mversion.replace('_', "-") != wn.version.replace('_', "-")
    {
        return Err(invalid(format!(
            "METADATA says {mname} {mversion}, the filename says {} {}",
            wn.name, wn.version
        )));
    }
    let wheel_meta = read_text(&mut zip, &format!("{dist_info}/WHEEL"))
        .ok_or_else(|| invalid(format!("{dist_info}/WHEEL is missing")))?;
    let field = |key: &str| {
        wheel_meta.lines().find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(str::trim)
                .map(str::to_string)
        })
    };
    let wv = field("Wheel-Version").unwrap_or_default();
    if !wv.starts_with("1.") {
        return Err(invalid(format!(
            "Wheel-Version {wv} is not supported (1.x only)"
        )));
    }
    let data_dir = format!("{}.data", dist_info.trim_end_matches(".dist-info"));

    let _ = unpack_dir; // nothing is unpacked: entries point into the wheel
    let archive = std::sync::Arc::new(path.to_path_buf());
    let wheel_record: std::collections::HashMap<String, String> =
        read_text(&mut zip, &format!("{dist_info}/RECORD"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut fields = csv_fields(l);
                let hash = fields.get(1).cloned().unwrap_or_default();
                (!fields.is_empty()).then(|| (fields.swap_remove(0), hash))
            })
            .collect();
    let sp = scheme.site_packages.trim_end_matches('/').to_string();
    let mut entries: Vec<LayerEntry> = Vec::new();
    let mut record: Vec<(String, String, u64)> = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| invalid(e.to_string()))?;
        let name = f.name().map_err(|e| invalid(e.to_string()))?.to_string();
        if f.is_dir() || name.ends_with('/') {
            continue;
        }
        if name == format!("{dist_info}/RECORD")
            || name == format!("{dist_info}/INSTALLER")
            || name == format!("{dist_info}/REQUESTED")
        {
            continue; // rewritten below
        }
        let exec = f.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let (target, is_script) = match name.strip_prefix(&format!("{data_dir}/")) {
            Some(rest) => {
                let (key, sub) = rest
                    .split_once('/')
                    .ok_or_else(|| invalid(format!("bad data entry {name}")))?;
                match key {
                    "purelib" | "platlib" => (format!("{sp}/{sub}"), false),
                    "scripts" => (format!("{}/{sub}", scheme.scripts), true),
                    "data" => (format!("{}/{sub}", scheme.data), false),
                    "headers" => (format!("{}/{}/{sub}", scheme.headers, wn.name), false),
                    other => {
                        return Err(invalid(format!(
                            "unknown wheel data directory `{other}` in {name}"
                        )));
                    }
                }
            }
            None => (format!("{sp}/{name}"), false),
        };
        let mode = if exec || is_script { 0o755 } else { 0o644 };
        let rel = relative(&sp, &target);
        // Scripts starting `#!python` get the image's interpreter: only they are read here.
        let mut head = [0u8; 8];
        let rewrite = is_script && {
            let n = read_up_to(&mut f, &mut head).map_err(io)?;
            &head[..n] == b"#!python"
        };
        drop(f);
        if rewrite {
            // Never sized by what the member declares: read at most MAX_SCRIPT + 1 bytes.
            let f = zip.by_index(i).map_err(|e| invalid(e.to_string()))?;
            let declared = f.size();
            let mut bytes = Vec::new();
            f.take(MAX_SCRIPT + 1).read_to_end(&mut bytes).map_err(io)?;
            if bytes.len() as u64 > MAX_SCRIPT || declared > MAX_SCRIPT {
                return Err(invalid(format!(
                    "script {name} is over {} MiB ({} bytes declared); a `#!python` script that large is not a script",
                    MAX_SCRIPT >> 20,
                    declared
                )));
            }
            if bytes.len() as u64 != declared {
                return Err(invalid(format!(
                    "member {name} declares {declared} bytes but holds {}; refusing a malformed wheel",
                    bytes.len()
                )));
            }
            let end = bytes
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(bytes.len());
            let mut out = shebang(&scheme.python).into_bytes();
            out.extend_from_slice(&bytes[end..]);
            record.push((rel, b64_sha256(&out), out.len() as u64));
            entries.push(LayerEntry {
                path: target.trim_start_matches('/').to_string(),
                kind: EntryKind::Bytes(out),
                mode,
                uid: owner.0,
                gid: owner.1,
            });
            continue;
        }
        // Unchanged content keeps the hash the wheel's RECORD gives it (as pip does); a file
        // RECORD does not hash is hashed here.
        let size = zip
            .by_index_raw(i)
            .map_err(|e| invalid(e.to_string()))?
            .size();
        let hash = match wheel_record.get(&name) {
            Some(h) if h.starts_with("sha256=") => h.clone(),
            _ => {
                let mut f = zip.by_index(i).map_err(|e| invalid(e.to_string()))?;
                let mut h = Sha256::new();
                std::io::copy(&mut f, &mut HashWriter(&mut h)).map_err(io)?;
                format!(
                    "sha256={}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
                )
            }
        };
        record.push((rel, hash, size));
        entries.push(LayerEntry {
            path: target.trim_start_matches('/').to_string(),
            kind: EntryKind::ZipMember {
                archive: archive.clone(),
                index: i,
                size,
            },
            mode,
            uid: owner.0,
            gid: owner.1,
        });
    }

    // Launchers from entry_points.txt.
    if let Some(ep) = read_text(&mut zip, &format!("{dist_info}/entry_points.txt")) {
        let mut section = String::new();
        for line in ep.lines() {
            let line = line.trim();
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].trim().to_string();
                continue;
            }
            if !(section == "console_scripts" || section == "gui_scripts")
                || line.is_empty()
                || line.starts_with('#')
                || line.starts_with(';')
            {
                continue;
            }
            let Some((script, target)) = line.split_once('=') else {
                continue;
            };
            let script = script.trim();
            if !safe_rel(script) || script.contains('/') {
                return Err(WheelError::Escape {
                    wheel,
                    entry: format!("script {script}"),
                });
            }
            let target = target.split('[').next().unwrap_or(target).trim();
            let (module, attr) = target
                .split_once(':')
                .ok_or_else(|| invalid(format!("entry point `{line}` is not module:attr")))?;
            let text = launcher(&scheme.python, module.trim(), attr.trim()).into_bytes();
            let path = format!("{}/{script}", scheme.scripts);
            record.push((relative(&sp, &path), b64_sha256(&text), text.len() as u64));
            entries.push(LayerEntry {
                path: path.trim_start_matches('/').into(),
                kind: EntryKind::Bytes(text),
                mode: 0o755,
                uid: owner.0,
                gid: owner.1,
            });
        }
    }
    let di = format!("{sp}/{dist_info}");
    let mut meta_files = vec![("INSTALLER", b"raypack\n".to_vec())];
    if requested {
        meta_files.push(("REQUESTED", Vec::new()));
    }
    for (n, data) in meta_files {
        let path = format!("{di}/{n}");
        record.push((relative(&sp, &path), b64_sha256(&data), data.len() as u64));
        entries.push(LayerEntry {
            path: path.trim_start_matches('/').into(),
            kind: EntryKind::Bytes(data),
            mode: 0o644,
            uid: owner.0,
            gid: owner.1,
        });
    }
    record.sort();
    entries.push(LayerEntry {
        path: format!("{di}/RECORD").trim_start_matches('/').into(),
        kind: EntryKind::Bytes(record_csv(&record, &dist_info)),
        mode: 0o644,
        uid: owner.0,
        gid: owner.1,
    });
    let requires = super::metadata::parse(&metadata)
        .requires_dist
        .iter()
        .filter_map(|r| super::requirement::parse(r).ok())
        .map(|r| normalize(r.name.as_ref()))
        .collect();

    Ok(Installed {
        name: mname,
        version: mversion,
        dist_info,
        entries,
        requires,
        record,
        site_packages: sp,
    })
}

/// RECORD's bytes: the rows (sorted), then RECORD's own row.
fn record_csv(record: &[(String, String, u64)], dist_info: &str) -> Vec<u8> {
    let mut csv = String::new();
    for (p, h, s) in record {
        csv.push_str(&format!("{},{},{s}\n", csv_field(p), csv_field(h)));
    }
    csv.push_str(&format!("{dist_info}/RECORD,,\n"));
    csv.into_bytes()
}

impl Installed {
    /// This distribution with bytecode for its `.py` files under site-packages, compiled by
    /// `compiler` (see [`crate::bytecode`]), as entries and RECORD rows (pip records
    /// the .pyc files it writes too). `scratch` is an empty directory.
    pub(crate) fn with_bytecode(
        mut self,
        compiler: &crate::bytecode::Compiler,
        scratch: &Path,
    ) -> Result<Installed, WheelError> {
        let io = |source| WheelError::Io {
            wheel: self.dist_info.clone(),
            source,
        };
        let sp = self.site_packages.trim_matches('/').to_string();
        let present: std::collections::HashSet<String> =
            self.entries.iter().map(|e| e.path.clone()).collect();
        let mut zips = raypack_pack::archive::tar::ZipReaders::default();
        let mut sources = Vec::new();
        let mut owners = Vec::new();
        for e in &self.entries {
            let in_sp = e.path.strip_prefix(&sp).is_some_and(|r| r.starts_with('/'));
            if !in_sp || !e.path.ends_with(".py") || present.contains(&compiler.pyc_path(&e.path)) {
                continue;
            }
            let bytes = match &e.kind {
                EntryKind::Bytes(b) => b.clone(),
                EntryKind::File { source } => std::fs::read(source).map_err(io)?,
                EntryKind::ZipMember { archive, index, .. } => {
                    let z = zips.get(archive).map_err(io)?;
                    let mut m = z
                        .by_index(*index)
                        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
                    let mut b = Vec::new();
                    m.read_to_end(&mut b).map_err(io)?;
                    b
                }
                EntryKind::Dir | EntryKind::Whiteout => continue,
            };
            owners.push((e.uid, e.gid));
            sources.push((e.path.clone(), bytes));
        }
        let compiled = compiler.compile(&sources, scratch).map_err(io)?;
        if compiled.is_empty() {
            return Ok(self);
        }
        let owner_of: std::collections::HashMap<String, (u32, u32)> = sources
            .iter()
            .zip(&owners)
            .map(|((p, _), o)| (compiler.pyc_path(p), *o))
            .collect();
        for (path, bytes) in compiled {
            let (uid, gid) = owner_of[&path];
            self.record.push((
                self.record_path(&path),
                b64_sha256(&bytes),
                bytes.len() as u64,
            ));
            self.entries.push(LayerEntry {
                path,
                kind: EntryKind::Bytes(bytes),
                mode: 0o644,
                uid,
                gid,
            });
        }
        self.record.sort();
        let at = self.record_entry();
        let csv = record_csv(&self.record, &self.dist_info);
        if let Some(r) = self.entries.iter_mut().find(|e| e.path == at) {
            r.kind = EntryKind::Bytes(csv);
        }
        Ok(self)
    }
}

/// Resolves files that several distributions ship ([`plan_overlaps`]) and returns the
/// distributions in install order, each without the files it lost, and the overlaps found
/// (byte-identical ones included, marked).
pub(crate) fn resolve_overlaps(installed: &[Installed]) -> (Vec<Installed>, Vec<Overlap>) {
    let shipped: Vec<Shipped> = installed.iter().map(Installed::shipped).collect();
    let plan = plan_overlaps(&shipped);
    let out = plan
        .order
        .iter()
        .map(|&i| installed[i].without(&plan.lose[i]))
        .collect();
    (out, plan.overlaps)
}

/// Installs `(wheel path, filename)` pairs in parallel (each unpacked under
/// `scratch/<index>`), in input order.
pub fn install_all(
    wheels: &[(PathBuf, String)],
    scheme: &Scheme,
    owner: (u32, u32),
    requested: bool,
    scratch: &Path,
) -> Result<Vec<Installed>, WheelError> {
    use rayon::prelude::*;
    wheels
        .par_iter()
        .enumerate()
        .map(|(i, (path, filename))| {
            install(
                path,
                filename,
                scheme,
                owner,
                requested,
                &scratch.join(i.to_string()),
            )
        })
        .collect()
}

/// Merges installed distributions into one entry list: their files (sorted), then directory
/// entries for every directory below `owned_roots` (site-packages, bin, …), deduplicated, so
/// namespace packages merge. A file shipped by several distributions is resolved as pip does
/// ([`resolve_overlaps`]); overlaps whose bytes differ are reported at `-v`.
pub fn merge(
    installed: &[Installed],
    owned_roots: &[String],
    owner: (u32, u32),
) -> Result<Vec<LayerEntry>, WheelError> {
    let (installed, overlaps) = resolve_overlaps(installed);
    log_overlaps(&overlaps);
    let mut out: Vec<LayerEntry> = installed
        .iter()
        .flat_map(|i| i.entries.iter().cloned())
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    let dirs = owned_directories(out.iter().map(|e| e.path.as_str()), owned_roots, owner);
    out.extend(dirs);
    Ok(out)
}

/// Directory entries for every directory below one of `owned_roots` that holds one of `paths`
/// (sorted, each once); the roots themselves belong to the base.
pub(crate) fn owned_directories<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    owned_roots: &[String],
    owner: (u32, u32),
) -> Vec<LayerEntry> {
    let mut dirs = std::collections::BTreeSet::new();
    for p in paths {
        for root in owned_roots {
            let root = root.trim_matches('/');
            if let Some(rest) = p.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
                let mut acc = root.to_string();
                let comps: Vec<&str> = rest.split('/').collect();
                for c in &comps[..comps.len() - 1] {
                    acc = format!("{acc}/{c}");
                    dirs.insert(acc.clone());
                }
            }
        }
    }
    dirs.into_iter()
        .map(|d| LayerEntry {
            path: d,
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: owner.0,
            gid: owner.1,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_and_best_wheel() {
        let w = WheelName::parse(
            "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(
            w.tags,
            vec![
                "cp311-cp311-manylinux_2_17_x86_64",
                "cp311-cp311-manylinux2014_x86_64"
            ]
        );
        let b = WheelName::parse("pkg-1.0-2b-py2.py3-none-any.whl").unwrap();
        assert_eq!(b.build, Some((2, "b".into())));
        assert_eq!(b.tags.len(), 2);
        let t = crate::tags::Target::new("linux/amd64", "3.11", "2_36").unwrap();
        let pr = t.priorities();
        let cands = vec![
            WheelName::parse("x-1-py3-none-any.whl").unwrap(),
            WheelName::parse("x-1-cp311-cp311-manylinux_2_28_x86_64.whl").unwrap(),
            WheelName::parse("x-1-cp311-cp311-manylinux_2_38_x86_64.whl").unwrap(),
            WheelName::parse("x-1-cp311-cp311-macosx_11_0_arm64.whl").unwrap(),
        ];
        assert_eq!(
            best_wheel(&cands, &pr).unwrap().tags[0],
            "cp311-cp311-manylinux_2_28_x86_64"
        );
        assert_eq!(normalize("Foo.Bar__baz"), "foo-bar-baz");
    }

    /// Issue 14 #1: mlflow ships mlflow-skinny's files, opencensus opencensus-context's. As pip
    /// does, the dependency is installed first and the dependent's file replaces it, whatever
    /// the names' order; identical files are silent, and every RECORD stays true.
    #[test]
    fn files_two_distributions_ship_are_resolved_as_pip_does() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let wheel = |name: &str, requires: &[&str], files: &[(&str, &str)]| {
            let fname = format!("{name}-1.0-py3-none-any.whl");
            let p = d.path().join(&fname);
            let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
            let o = zip::write::SimpleFileOptions::default();
            let mut meta = format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n");
            for r in requires {
                meta.push_str(&format!("Requires-Dist: {r}\n"));
            }
            let mut all: Vec<(String, String)> = files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            all.push((format!("{name}-1.0.dist-info/METADATA"), meta));
            all.push((
                format!("{name}-1.0.dist-info/WHEEL"),
                "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".into(),
            ));
            for (n, body) in &all {
                z.start_file(n.as_str(), o).unwrap();
                z.write_all(body.as_bytes()).unwrap();
            }
            z.finish().unwrap();
            (p, fname)
        };
        // `alpha` depends on `zeta`: zeta is installed first although its name sorts last.
        let shared = [("pkg/__init__.py", "zeta's"), ("pkg/same.py", "same bytes")];
        let winner = [
            ("pkg/__init__.py", "alpha's"),
            ("pkg/same.py", "same bytes"),
        ];
        let wheels = vec![
            wheel("alpha", &["zeta (>=1); python_version >= '3'"], &winner),
            wheel("zeta", &[], &shared),
        ];
        let scheme = Scheme::for_python("/usr/bin/python3", "3.11", "/sp");
        let installed = install_all(&wheels, &scheme, (0, 0), false, d.path()).unwrap();
        let (ordered, overlaps) = resolve_overlaps(&installed);
        assert_eq!(
            ordered.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["zeta", "alpha"]
        );
        let mut o: Vec<(String, bool)> = overlaps
            .iter()
            .map(|o| (format!("{} {} {}", o.path, o.replaced, o.by), o.identical))
            .collect();
        o.sort();
        assert_eq!(
            o,
            [
                ("sp/pkg/__init__.py zeta alpha".to_string(), false),
                ("sp/pkg/same.py zeta alpha".to_string(), true)
            ]
        );
        let entries = merge(&installed, &["/sp".to_string()], (0, 0)).unwrap();
        let init: Vec<&LayerEntry> = entries
            .iter()
            .filter(|e| e.path == "sp/pkg/__init__.py")
            .collect();
        assert_eq!(init.len(), 1);
        let EntryKind::ZipMember { archive, .. } = &init[0].kind else {
            panic!()
        };
        assert!(archive.ends_with("alpha-1.0-py3-none-any.whl"));
        let record = |name: &str| -> String {
            let e = entries
                .iter()
                .find(|e| e.path == format!("sp/{name}-1.0.dist-info/RECORD"))
                .unwrap();
            let EntryKind::Bytes(b) = &e.kind else {
                panic!()
            };
            String::from_utf8(b.clone()).unwrap()
        };
        // zeta's RECORD no longer claims the file it lost; the identical one stays in both.
        assert!(
            !record("zeta").contains("pkg/__init__.py") && record("zeta").contains("pkg/same.py")
        );
        assert!(
            record("alpha").contains("pkg/__init__.py") && record("alpha").contains("pkg/same.py")
        );
    }

    #[test]
    fn record_fields_are_quoted_as_csv_and_read_back() {
        for f in ["plain.py", "a,b.py", "say \"hi\".py", "two\nlines"] {
            let line = format!("{},sha256=x,1", csv_field(f));
            assert_eq!(csv_fields(&line), vec![f, "sha256=x", "1"], "{line}");
        }
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert!(!safe_rel("pkg/a\nb.py") && !safe_rel("pkg/\u{7f}") && safe_rel("pkg/é.py"));
    }

    #[test]
    fn relative_paths_and_shebangs() {
        assert_eq!(
            relative("/a/lib/python3.11/site-packages", "/a/bin/tool"),
            "../../../bin/tool"
        );
        assert_eq!(relative("/a/sp", "/a/sp/pkg/x.py"), "pkg/x.py");
        assert_eq!(
            shebang("/home/ray/anaconda3/bin/python"),
            "#!/home/ray/anaconda3/bin/python\n"
        );
        assert!(shebang("/opt/my env/bin/python").starts_with("#!/bin/sh\n'''exec'"));
    }
}
