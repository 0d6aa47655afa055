//! Bytecode for dependency layers: `__pycache__/*.cpython-3XX.pyc` beside every `.py`, as pip
//! and `uv --compile-bytecode` install them, so the first import in a fresh container does not
//! compile the whole stack.
//!
//! A `.pyc` depends on the Python version (its magic number), not on the architecture, so a
//! CPython of the image's X.Y on the build host compiles for any platform. raypack runs it (one
//! process per core, each compiling its share) with `py_compile` in CHECKED_HASH mode: the file
//! records the source's hash instead of its mtime, so it is valid whatever the layer's
//! timestamps, and the bytes depend only on the source, its image path and the interpreter's
//! magic number — fragments stay reproducible and are cached per wheel with the compiler's
//! identity in their key. Without such an interpreter, layers are built without bytecode and
//! bake says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Compiles sources and prints nothing; run as `python -I -S -c SCRIPT ROOT` with
/// NUL-separated `image_path` entries on stdin (each file at `ROOT/<image_path>`). A source
/// that does not compile (Python 2 test data, templates) gets no .pyc, as with pip.
const SCRIPT: &str = r#"
import sys, os, py_compile, importlib.util
root = sys.argv[1]
for rel in sys.stdin.buffer.read().decode("utf-8").split("\0"):
    if not rel:
        continue
    src = os.path.join(root, rel)
    try:
        py_compile.compile(src, cfile=importlib.util.cache_from_source(src), dfile="/" + rel,
                           doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeDecodeError):
        pass
"#;

/// A host CPython that compiles for the image's Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    /// The interpreter.
    pub python: PathBuf,
    /// `cpython-311`: the `__pycache__` file suffix.
    pub cache_tag: String,
    /// `importlib.util.MAGIC_NUMBER`, hex: the .pyc format.
    pub magic: String,
}

impl Compiler {
    /// A CPython `python_version` (3.X) on this host: `$RAYPACK_PYTHON`, else `python3.X` or
    /// `python3` on PATH. The error says what was looked for.
    pub fn find(python_version: &str) -> Result<Compiler, String> {
        let mut tried = Vec::new();
        let candidates: Vec<PathBuf> = match std::env::var_os("RAYPACK_PYTHON") {
            Some(p) => vec![PathBuf::from(p)],
            None => vec![
                PathBuf::from(format!("python{python_version}")),
                PathBuf::from("python3"),
            ],
        };
        for c in candidates {
            match probe(&c) {
                Some((version, cache_tag, magic)) if version == python_version => {
                    return Ok(Compiler {
                        python: c,
                        cache_tag,
                        magic,
                    });
                }
                Some((version, _, _)) => tried.push(format!("{} is Python {version}", c.display())),
                None => tried.push(format!("no CPython at {}", c.display())),
            }
        }
        Err(format!(
            "no CPython {python_version} on this machine to compile bytecode with ({}); set RAYPACK_PYTHON to one",
            tried.join(", ")
        ))
    }

    /// What a fragment's bytes depend on besides the sources.
    pub fn key(&self) -> String {
        format!("{} {}", self.cache_tag, self.magic)
    }

    /// Compiles `sources` (image path without a leading '/', bytes) and returns the .pyc files
    /// as (image path, bytes), in the order of `sources`. `scratch` is an empty directory.
    pub fn compile(
        &self,
        sources: &[(String, Vec<u8>)],
        scratch: &Path,
    ) -> std::io::Result<Vec<(String, Vec<u8>)>> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        for (path, bytes) in sources {
            let p = scratch.join(path);
            std::fs::create_dir_all(p.parent().expect("a file has a parent"))?;
            std::fs::write(&p, bytes)?;
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(sources.len().div_ceil(64))
            .max(1);
        let mut children = Vec::new();
        for w in 0..workers {
            let mut child = Command::new(&self.python)
                .args(["-I", "-S", "-c", SCRIPT])
                .arg(scratch)
                .env_clear()
                .env("PYTHONHASHSEED", "0")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let mut list = Vec::new();
            for (path, _) in sources.iter().skip(w).step_by(workers) {
                list.extend_from_slice(path.as_bytes());
                list.push(0);
            }
            child.stdin.take().expect("piped").write_all(&list)?;
            children.push(child);
        }
        for child in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "{} failed compiling bytecode: {}",
                    self.python.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let mut out = Vec::new();
        for (path, _) in sources {
            let pyc = self.pyc_path(path);
            match std::fs::read(scratch.join(&pyc)) {
                Ok(b) => out.push((pyc, b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // did not compile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `a/b/mod.py` → `a/b/__pycache__/mod.cpython-311.pyc`.
    pub(crate) fn pyc_path(&self, source: &str) -> String {
        let (dir, file) = source.rsplit_once('/').unwrap_or(("", source));
        let stem = file.strip_suffix(".py").unwrap_or(file);
        let name = format!("__pycache__/{stem}.{}.pyc", self.cache_tag);
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    }
}

/// (X.Y, cache tag, magic hex) of a CPython, or `None`.
fn probe(python: &Path) -> Option<(String, String, String)> {
    let out = Command::new(python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys, importlib.util; print(sys.implementation.name, '%d.%d' % sys.version_info[:2], sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER.hex())",
        ])
        .env_clear()
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut words = text.split_whitespace();
    (words.next()? == "cpython").then_some(())?;
    Some((
        words.next()?.to_string(),
        words.next()?.to_string(),
        words.next()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<Compiler> {
        let out = Command::new("python3")
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .ok()?;
        Compiler::find(String::from_utf8(out.stdout).ok()?.trim()).ok()
    }

    #[test]
    fn compiles_checked_hash_pycs_reproducibly() {
        let Some(c) = host() else {
            // The test machine has python3 (scripts/test installs it); a bare dev box may not.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI machines have a host python3"
            );
            return;
        };
        let sources = vec![
            ("sp/pkg/__init__.py".to_string(), b"X = 1\n".to_vec()),
            (
                "sp/pkg/mod.py".to_string(),
                b"def f():\n    return 2\n".to_vec(),
            ),
            ("sp/pkg/bad.py".to_string(), b"print 'py2'\n".to_vec()),
        ];
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = c.compile(&sources, a.path()).unwrap();
        let second = c.compile(&sources, b.path()).unwrap();
        assert_eq!(first, second, "the same sources give the same bytes");
        let names: Vec<&str> = first.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("sp/pkg/__pycache__/__init__.{}.pyc", c.cache_tag),
                format!("sp/pkg/__pycache__/mod.{}.pyc", c.cache_tag)
            ]
        );
        // Checked-hash flag (bit 0 and 1 of the flags word after the magic).
        let pyc = &first[1].1;
        assert_eq!(hex::encode(&pyc[..4]), c.magic);
        assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 0b11);
        assert!(Compiler::find("2.7").is_err());
    }
}
