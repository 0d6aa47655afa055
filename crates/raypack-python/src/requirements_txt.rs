//! The one reader for pip requirements files, used by every command that takes one (`env`,
//! `lock`, `bake`, `env --deps bundle`, `install -r`, `check`).
//!
//! What it reads, as pip does: backslash continuations, `#` comments, nested `-r` /
//! `--requirement` and `-c` / `--constraint` files (relative to the file that names them,
//! cycles refused), the index options (`--index-url`, `--extra-index-url`, `--find-links`,
//! `--no-index`, `--pre`), options that do not change what is installed from wheels
//! (`--prefer-binary`, `--only-binary`, `--trusted-host`), and requirement lines with their
//! `--hash` options. What raypack cannot honour is an error naming the file and line and
//! what to do instead, never a silently dropped line: editable installs, local paths, URL
//! requirements, `--no-binary` and unknown options.
//!
//! ```no_run
//! let reqs = raypack_python::requirements_txt::read(std::path::Path::new("requirements.txt"))?;
//! for r in &reqs.requirements {
//!     println!("{}:{}: {}", r.file.display(), r.line, r.spec);
//! }
//! # Ok::<(), raypack_python::requirements_txt::RequirementsTxtError>(())
//! ```

use std::path::{Path, PathBuf};

/// How deep `-r` / `-c` files may nest.
const MAX_DEPTH: usize = 32;

/// A requirements file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum RequirementsTxtError {
    /// A requirements file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line raypack refuses or cannot parse.
    #[error("{}:{line}: {message}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// Why, and what to write instead.
        message: String,
    },
}

/// One requirement line (or constraint line): the PEP 508 text without its `--hash`
/// options, the sha256 hashes it lists, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The file the line is in.
    pub file: PathBuf,
    /// Its line number.
    pub line: usize,
    /// The requirement as written (normalised whitespace, options removed).
    pub spec: String,
    /// `--hash=sha256:…` values (hex), in the order given.
    pub hashes: Vec<String>,
}

/// A requirements file with its nested files expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequirementsTxt {
    /// Requirement lines, in file order (nested files where they are included).
    pub requirements: Vec<Line>,
    /// Lines of `-c` files.
    pub constraints: Vec<Line>,
    /// The last `--index-url` / `-i` given.
    pub index_url: Option<String>,
    /// `--extra-index-url` values, in order.
    pub extra_index_urls: Vec<String>,
    /// `--find-links` values; a relative directory is made relative to the file naming it.
    pub find_links: Vec<String>,
    /// `--no-index` was given.
    pub no_index: bool,
    /// `--pre` was given.
    pub pre: bool,
}

/// Reads `path` and the files it includes.
pub fn read(path: &Path) -> Result<RequirementsTxt, RequirementsTxtError> {
    let mut out = RequirementsTxt::default();
    let mut stack = Vec::new();
    read_into(path, false, &mut out, &mut stack)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    constraint: bool,
    out: &mut RequirementsTxt,
    stack: &mut Vec<PathBuf>,
) -> Result<(), RequirementsTxtError> {
    let text = std::fs::read_to_string(path).map_err(|source| RequirementsTxtError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    stack.push(key);
    let dir = path.parent().unwrap_or(Path::new("."));
    for (line_no, line) in logical_lines(&text) {
        let bad = |message: String| RequirementsTxtError::Bad {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let words = split_options(&line);
        let first = words[0].as_str();
        let value = |n: usize| -> Result<String, RequirementsTxtError> {
            words
                .get(n)
                .cloned()
                .ok_or_else(|| bad(format!("`{first}` needs a value")))
        };
        match first {
            "-r" | "--requirement" | "-c" | "--constraint" => {
                let target = value(1)?;
                let nested = if Path::new(&target).is_absolute() {
                    PathBuf::from(&target)
                } else {
                    dir.join(&target)
                };
                let canon = std::fs::canonicalize(&nested).unwrap_or_else(|_| nested.clone());
                if stack.contains(&canon) {
                    let chain: Vec<String> = stack
                        .iter()
                        .chain(std::iter::once(&canon))
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(bad(format!(
                        "`{line}` includes a file that is already being read ({}); remove the cycle",
                        chain.join(" → ")
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(format!(
                        "requirement files nest more than {MAX_DEPTH} deep"
                    )));
                }
                if !nested.is_file() {
                    return Err(bad(format!(
                        "`{line}`: {} does not exist (paths are relative to {})",
                        nested.display(),
                        path.display()
                    )));
                }
                let as_constraint =
                    constraint || first.starts_with("-c") || first == "--constraint";
                read_into(&nested, as_constraint, out, stack)?;
            }
            "-e" | "--editable" => {
                return Err(bad(format!(
                    "`{line}`: editable installs are not supported (raypack installs wheels, without running a build); \
                     ship local code as `py_modules` / the working dir, or build a wheel and serve it from an index or --find-links"
                )));
            }
            "-i" | "--index-url" => out.index_url = Some(value(1)?),
            "--extra-index-url" => out.extra_index_urls.push(value(1)?),
            "-f" | "--find-links" => {
                let v = value(1)?;
                out.find_links
                    .push(if v.contains("://") || v.starts_with('/') {
                        v
                    } else {
                        dir.join(&v).display().to_string()
                    });
            }
            "--no-index" => out.no_index = true,
            "--pre" => out.pre = true,
            // Wheels only, always: these change nothing.
            "--prefer-binary" | "--only-binary" | "--trusted-host" => {}
            "--no-binary" => {
                return Err(bad(format!(
                    "`{line}`: raypack installs wheels only and cannot build from source; remove `--no-binary`"
                )));
            }
            w if w.starts_with('-') => {
                return Err(bad(format!(
                    "`{line}`: the option `{w}` is not supported in a requirements file by raypack; remove it"
                )));
            }
            _ => {
                let mut hashes = Vec::new();
                let mut spec = Vec::new();
                let mut i = 0;
                while i < words.len() {
                    let w = &words[i];
                    if let Some(h) = w.strip_prefix("--hash=") {
                        hashes.push(hash_value(h).map_err(&bad)?);
                    } else if w == "--hash" {
                        i += 1;
                        let h = words
                            .get(i)
                            .ok_or_else(|| bad("`--hash` needs a value".into()))?;
                        hashes.push(hash_value(h).map_err(&bad)?);
                    } else if w.starts_with("--") {
                        return Err(bad(format!(
                            "`{w}` on a requirement line is not supported by raypack; remove it"
                        )));
                    } else {
                        spec.push(w.as_str());
                    }
                    i += 1;
                }
                let spec = spec.join(" ");
                check_requirement(&spec).map_err(bad)?;
                let entry = Line {
                    file: path.to_path_buf(),
                    line: line_no,
                    spec,
                    hashes,
                };
                if constraint {
                    out.constraints.push(entry);
                } else {
                    out.requirements.push(entry);
                }
            }
        }
    }
    stack.pop();
    Ok(())
}

/// `sha256:HEX` → HEX; other algorithms are refused (every index gives sha256).
fn hash_value(h: &str) -> Result<String, String> {
    match h.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_ascii_lowercase())
        }
        Some(("sha256", _)) => Err(format!("`--hash={h}` is not a sha256 hex digest")),
        _ => Err(format!(
            "`--hash={h}`: raypack checks sha256 hashes only; list the sha256 of each file"
        )),
    }
}

/// A PEP 508 requirement on a name from an index: no URLs, no local paths.
fn check_requirement(spec: &str) -> Result<(), String> {
    let looks_local = spec.starts_with('.')
        || spec.starts_with('/')
        || spec.starts_with('~')
        || spec.contains("://")
        || spec.ends_with(".whl")
        || spec.ends_with(".tar.gz")
        || spec.ends_with(".zip");
    if looks_local && !spec.contains('@') {
        return Err(format!(
            "`{spec}` is a path or URL, not a requirement on a package from an index; raypack installs from indexes \
             (ship local code as `py_modules`, or serve built wheels from an index or --find-links)"
        ));
    }
    let req = super::requirement::parse(spec)
        .map_err(|e| format!("`{spec}` is not a valid requirement: {}", first_line(&e)))?;
    if let Some(pep508_rs::VersionOrUrl::Url(u)) = &req.version_or_url {
        return Err(format!(
            "`{spec}`: URL requirements (`{} @ {u}`) are not supported; publish it to an index, or serve the wheel with --find-links",
            req.name
        ));
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The file's logical lines with their (first) physical line numbers: continuations joined,
/// comments and blank lines gone.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if acc.is_empty() {
            start = i + 1;
        }
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // A comment starts at `#` at the line's start or after whitespace (pip's rule).
        let cut = raw
            .char_indices()
            .find(|&(p, c)| c == '#' && (p == 0 || raw[..p].ends_with([' ', '\t'])))
            .map_or(raw, |(p, _)| &raw[..p]);
        match cut.strip_suffix('\\') {
            Some(cont) if cut.len() == raw.len() => {
                acc.push_str(cont);
                acc.push(' ');
            }
            _ => {
                acc.push_str(cut);
                let line = acc.split_whitespace().collect::<Vec<_>>().join(" ");
                if !line.is_empty() {
                    out.push((start, line));
                }
                acc.clear();
            }
        }
    }
    let line = acc.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.is_empty() {
        out.push((start, line));
    }
    out
}

/// Words of a logical line, with `--opt=value` options split as pip accepts them for the
/// file-level options (`--index-url=URL`, `-rfile.txt` is not accepted).
fn split_options(line: &str) -> Vec<String> {
    let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    if let Some((opt, value)) = words[0].clone().split_once('=')
        && opt.starts_with("--")
        && !opt.starts_with("--hash")
    {
        words[0] = opt.to_string();
        words.insert(1, value.to_string());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn nested_files_are_read_relative_to_the_including_file() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "sub/base.txt",
            &format!("numpy==2.1.0 \\\n    --hash=sha256:{H}\n-c ../c.txt\n"),
        );
        write(d.path(), "c.txt", "urllib3<3  # cap\n");
        let top = write(
            d.path(),
            "req.txt",
            "# top\n-r sub/base.txt\nrequests>=2.31  # web\n--extra-index-url=https://x/simple\n-f wheels\n--pre\n",
        );
        let r = read(&top).unwrap();
        let specs: Vec<(&str, usize)> = r
            .requirements
            .iter()
            .map(|l| (l.spec.as_str(), l.line))
            .collect();
        assert_eq!(specs, vec![("numpy==2.1.0", 1), ("requests>=2.31", 3)]);
        assert_eq!(r.requirements[0].hashes, vec![H.to_string()]);
        assert!(r.requirements[0].file.ends_with("sub/base.txt"));
        assert_eq!(r.constraints[0].spec, "urllib3<3");
        assert_eq!(r.extra_index_urls, vec!["https://x/simple"]);
        assert_eq!(
            r.find_links,
            vec![d.path().join("wheels").display().to_string()]
        );
        assert!(r.pre);
    }

    #[test]
    fn cycles_editables_paths_urls_and_garbage_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.txt", "x\n-r b.txt\n");
        write(d.path(), "b.txt", "\n-r a.txt\n");
        let e = read(&d.path().join("a.txt")).unwrap_err().to_string();
        assert!(e.contains("b.txt:2:") && e.contains("cycle"), "{e}");
        for (text, want) in [
            ("-e .\n", "editable installs are not supported"),
            ("./pkg\n", "is a path or URL"),
            ("file:///tmp/x.whl\n", "is a path or URL"),
            (
                "foo @ https://example.invalid/foo-1.0-py3-none-any.whl\n",
                "URL requirements",
            ),
            ("requests >>= 2\n", "is not a valid requirement"),
            ("-r missing.txt\n", "does not exist"),
            ("--no-binary :all:\n", "cannot build from source"),
            ("--frobnicate\n", "`--frobnicate` is not supported"),
            ("x==1 --hash=md5:abc\n", "sha256 hashes only"),
        ] {
            let p = write(d.path(), "r.txt", &format!("ok==1\n{text}"));
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains("r.txt:2:") && e.contains(want), "{text}: {e}");
        }
    }
}
