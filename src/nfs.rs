//! `raypack env --nfs`: the code and an installed environment on a shared volume (NFS, EFS)
//! mounted at the same path on the build host and in every Ray pod, so nothing is downloaded
//! or unpacked per node.
//!
//! Under the mount path:
//!
//! - `code/<project>/<hash>/` — a snapshot of the working dir (py_modules under
//!   `.raypack/py_modules/<name>/`), collected with `raypack env`'s rules. `<hash>` covers the
//!   packages' digests, so an unchanged tree is found with one `stat`. Files that did not change
//!   since the previous snapshot (`code/<project>/latest`) are hard-linked from it when the
//!   filesystem allows, else copied; files are read-only, since a hard link shares them.
//!   `<hash>.files` beside it lists path, sha256 and mode for the next snapshot.
//! - `envs/<hash>/` — the locked wheels (chosen as `--deps bundle` chooses them: what the
//!   cluster's image ships at the locked version is left to it) installed unpacked:
//!   `site-packages/`, `bin/` (console scripts for the image's interpreter). `<hash>` covers the
//!   layout, the target and the wheels' hashes: two users installing one lock share it.
//!
//! Both are written under a temp name in the same directory and renamed into place when
//! complete, so a half-written tree is never visible under its final name and a killed run
//! leaves only a temp directory (removed by the next run once it is an hour old). A snapshot or
//! environment that exists is never touched again; `raypack gc --nfs` removes unreferenced
//! ones.
//!
//! The runtime_env has no zips and no pip: `env_vars` put the environment, the py_modules and
//! the snapshot on `PYTHONPATH` (ahead of the image's site-packages), and the job runs in the
//! snapshot: its `cwd` is set by the entrypoint (`cd <snapshot> && …`), and workers import
//! `raypack_nfs_hook` (written into the snapshot) through `worker_process_setup_hook`, which
//! changes into the snapshot as Ray's own `working_dir` would. A local `working_dir` path is not
//! used: Ray's job submission (the CLI, KubeRay's submitter) uploads local paths as zips, which
//! is exactly what this mode avoids.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::Digest;

use crate::archive::tar::EntryKind;
use crate::collect::StatCache;
use crate::plan::{PlanError, plan_packages};
use crate::python::wheel::{self, Scheme};
use crate::recipe::Recipe;

/// Bumped when the layout of snapshots or environments changes.
pub const NFS_LAYOUT: &str = "raypack-nfs-v1";
/// The module, in each snapshot, that workers run at start-up (`worker_process_setup_hook`).
pub const HOOK_MODULE: &str = "raypack_nfs_hook";
/// Temp trees older than this are removed by the next run.
const STALE_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    #[error(
        "--nfs needs a path: `raypack env --nfs /mnt/shared/raypack`, or [nfs] path in the recipe"
    )]
    NoPath,
    #[error(
        "{0}: not a directory; mount the shared volume there first (the same path as in the Ray pods)"
    )]
    NotMounted(PathBuf),
    #[error("{path}: not writable ({source}); check the mount's permissions")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Pinned(#[from] crate::python::pinned::PinnedError),
    #[error(transparent)]
    Wheel(#[from] crate::python::wheel::WheelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> NfsError + '_ {
    move |source| NfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The code snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub digest: String,
    pub files: usize,
    pub bytes: u64,
    /// Written this run (false: it was there).
    pub created: bool,
    /// Files hard-linked from the previous snapshot.
    pub linked: usize,
}

/// The installed environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDir {
    pub dir: PathBuf,
    pub digest: String,
    /// Distributions installed in it.
    pub wheels: usize,
    /// Locked distributions the base image ships at that version (not installed).
    pub kept: usize,
    pub created: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NfsOutcome {
    pub path: PathBuf,
    pub code: Snapshot,
    pub env: Option<EnvDir>,
    pub runtime_env: serde_json::Value,
    /// Prepend to a job's entrypoint: it runs in the snapshot.
    pub entrypoint_prefix: String,
    #[serde(skip)]
    pub env_spec: crate::spec::runtime_env::RuntimeEnv,
}

/// The mount path: `--nfs PATH` (made absolute: the printed paths are read on the cluster),
/// else `[nfs] path`.
pub fn mount_path(recipe: &Recipe, flag: Option<&Path>) -> Result<PathBuf, NfsError> {
    flag.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .or_else(|| recipe.nfs.as_ref().and_then(|n| n.path.clone()))
        .ok_or(NfsError::NoPath)
}

pub async fn run(
    recipe: &Recipe,
    path: &Path,
    http: &reqwest::Client,
    mut progress: impl FnMut(&str),
) -> Result<NfsOutcome, NfsError> {
    check_mount(path)?;
    progress("collecting the code");
    let code = snapshot(recipe, path)?;
    let env = if recipe.dependencies.requirements.is_empty()
        && recipe.dependencies.requirements_file.is_none()
    {
        None
    } else {
        progress("installing the environment");
        environment(recipe, path, http).await?
    };
    // What this project uses now: `raypack gc --nfs` keeps it.
    let latest = format!(
        "{}\n{}\n",
        code.dir.file_name().unwrap_or_default().to_string_lossy(),
        env.as_ref()
            .map(|e| e
                .dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .unwrap_or_else(|| "-".into())
    );
    write_atomic(
        &path.join("code").join(&recipe.name).join("latest"),
        latest.as_bytes(),
    )?;
    let mut pythonpath = vec![
        code.dir
            .join(crate::plan::PY_MODULES_DIR)
            .display()
            .to_string(),
        code.dir.display().to_string(),
    ];
    if let Some(e) = &env {
        pythonpath.push(e.dir.join("site-packages").display().to_string());
    }
    // A PYTHONPATH of the recipe's own comes after raypack's.
    if let Some(own) = recipe
        .env
        .env_vars
        .get("PYTHONPATH")
        .filter(|p| !p.is_empty())
    {
        pythonpath.push(own.clone());
    }
    let mut env_vars = recipe.env.env_vars.clone();
    env_vars.insert("PYTHONPATH".into(), pythonpath.join(":"));
    let spec = crate::spec::runtime_env::RuntimeEnv {
        env_vars,
        worker_process_setup_hook: Some(format!("{HOOK_MODULE}.enter")),
        config: recipe.env.setup_timeout_seconds.map(|t| {
            crate::spec::runtime_env::RuntimeEnvConfig {
                setup_timeout_seconds: t,
            }
        }),
        ..Default::default()
    };
    Ok(NfsOutcome {
        path: path.to_path_buf(),
        entrypoint_prefix: format!("cd {} && ", shell_quote(&code.dir.display().to_string())),
        code,
        env,
        runtime_env: spec.to_json(),
        env_spec: spec,
    })
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn check_mount(path: &Path) -> Result<(), NfsError> {
    if !path.is_dir() {
        return Err(NfsError::NotMounted(path.to_path_buf()));
    }
    let probe = tempfile::Builder::new()
        .prefix(".raypack-probe-")
        .tempfile_in(path);
    match probe {
        Ok(_) => Ok(()),
        Err(source) => Err(NfsError::NotWritable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes `.tmp-*` trees in `dir` older than [`STALE_SECS`] (left by killed runs).
fn sweep(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > STALE_SECS);
        if old {
            let _ = make_writable(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Read-only files (snapshots) block nothing for their owner's `remove_dir_all` on Linux, but
/// directories must be writable: made so before removing.
fn make_writable(dir: &Path) -> std::io::Result<()> {
    for e in walkdir(dir)? {
        if e.is_dir() {
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

fn walkdir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        i += 1;
        if d.is_dir() && !d.is_symlink() {
            for e in std::fs::read_dir(&d)? {
                out.push(e?.path());
            }
        }
    }
    Ok(out)
}

/// A new directory `.tmp-<final name>-<random>` next to `final_dir`.
fn temp_dir_for(final_dir: &Path) -> Result<tempfile::TempDir, NfsError> {
    let parent = final_dir.parent().expect("a snapshot has a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = final_dir.file_name().unwrap_or_default().to_string_lossy();
    tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}-"))
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(parent)
        .map_err(io(parent))
}

/// Renames the complete `tmp` to `final_dir`; if another run published it first, keeps theirs.
fn publish(tmp: tempfile::TempDir, final_dir: &Path) -> Result<bool, NfsError> {
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, final_dir) {
        // No fsync: a crash that loses the rename loses the whole tree (the next run builds it
        // again), never half of it; NFS servers commit a rename before answering anyway.
        Ok(()) => Ok(true),
        Err(_) if final_dir.is_dir() => {
            let _ = make_writable(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(false)
        }
        Err(e) => {
            let _ = make_writable(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io(final_dir)(e))
        }
    }
}

/// Writes a small file of the volume whole, readable by every user of the volume.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NfsError> {
    crate::archive::write_file_atomically(path, bytes).map_err(io(path))
}

/// One file of a snapshot: its path in it, sha256 (hex) and whether it is executable.
type Listed = (String, String, bool);

fn snapshot(recipe: &Recipe, mount: &Path) -> Result<Snapshot, NfsError> {
    let stat_cache = StatCache::load(&recipe.state_dir().join("cache").join("stat.bin"));
    let packages = plan_packages(recipe, Some(&stat_cache), u64::MAX)?;
    let _ = stat_cache.save();
    let mut h = sha2::Sha256::new();
    h.update(format!("{NFS_LAYOUT}\n"));
    let mut files: Vec<(Listed, PathBuf, u64)> = Vec::new();
    for p in &packages {
        h.update(format!("{}\n", p.digest));
        let prefix = p.role.tree_prefix();
        for f in &p.files.files {
            files.push((
                (
                    format!("{prefix}{}", f.rel),
                    hex::encode(f.sha256),
                    f.executable,
                ),
                f.abs.clone(),
                f.size,
            ));
        }
    }
    let digest = hex::encode(h.finalize());
    let project_dir = mount.join("code").join(&recipe.name);
    let final_dir = project_dir.join(&digest[..32]);
    let bytes = files.iter().map(|f| f.2).sum();
    let count = files.len();
    if final_dir.is_dir() {
        return Ok(Snapshot {
            dir: final_dir,
            digest,
            files: count,
            bytes,
            created: false,
            linked: 0,
        });
    }
    std::fs::create_dir_all(&project_dir).map_err(io(&project_dir))?;
    sweep(&project_dir);
    // The previous snapshot's files, by (sha256, executable): hard-link sources.
    let previous: HashMap<(String, bool), PathBuf> =
        std::fs::read_to_string(project_dir.join("latest"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .and_then(|h| {
                let listing =
                    std::fs::read_to_string(project_dir.join(format!("{h}.files"))).ok()?;
                let dir = project_dir.join(&h);
                Some(
                    listing
                        .lines()
                        .filter_map(|l| {
                            let mut it = l.split('\t');
                            let (rel, sha, mode) = (it.next()?, it.next()?, it.next()?);
                            Some(((sha.to_string(), mode == "755"), dir.join(rel)))
                        })
                        .collect(),
                )
            })
            .unwrap_or_default();

    let tmp = temp_dir_for(&final_dir)?;
    // Directories first, then the files in parallel: a snapshot of an unchanged tree is
    // thousands of link(2) calls, which run side by side.
    let dirs: std::collections::BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|((rel, _, _), _, _)| tmp.path().join(rel).parent().map(Path::to_path_buf))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let linked = {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|((rel, sha, exec), abs, _)| -> Result<usize, NfsError> {
                let dest = tmp.path().join(rel);
                if let Some(src) = previous.get(&(sha.clone(), *exec))
                    && std::fs::hard_link(src, &dest).is_ok()
                {
                    return Ok(1);
                }
                std::fs::copy(abs, &dest).map_err(io(abs))?;
                let mode = if *exec { 0o555 } else { 0o444 };
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(io(&dest))?;
                Ok(0)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))?
    };
    // The workers' start-up hook: into the snapshot, as Ray's working_dir would.
    let hook = tmp.path().join(format!("{HOOK_MODULE}.py"));
    std::fs::write(
        &hook,
        format!(
            "# Written by raypack env --nfs: Ray workers run `enter` at start-up\n# (runtime_env worker_process_setup_hook) and work in the code snapshot.\nimport os\n\n\ndef enter():\n    os.chdir({:?})\n",
            final_dir.display().to_string()
        ),
    )
    .map_err(io(&hook))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o444)).map_err(io(&hook))?;
    let listing: String = files
        .iter()
        .map(|((rel, sha, exec), _, _)| {
            format!("{rel}\t{sha}\t{}\n", if *exec { "755" } else { "644" })
        })
        .collect();
    let created = publish(tmp, &final_dir)?;
    write_atomic(
        &project_dir.join(format!("{}.files", &digest[..32])),
        listing.as_bytes(),
    )?;
    Ok(Snapshot {
        dir: final_dir,
        digest,
        files: count,
        bytes,
        created,
        linked: if created { linked } else { 0 },
    })
}

async fn environment(
    recipe: &Recipe,
    mount: &Path,
    http: &reqwest::Client,
) -> Result<Option<EnvDir>, NfsError> {
    let Some(plan) = crate::bundle::plan(recipe, http).await? else {
        return Ok(None);
    };
    let mut h = sha2::Sha256::new();
    h.update(format!("{NFS_LAYOUT}\n{}\n", plan.digest));
    let interpreter = plan
        .interpreter
        .clone()
        .unwrap_or_else(|| "/usr/bin/python3".into());
    h.update(format!("{interpreter}\n"));
    let digest = hex::encode(h.finalize());
    let envs = mount.join("envs");
    let final_dir = envs.join(&digest[..32]);
    let report = |created| EnvDir {
        dir: final_dir.clone(),
        digest: digest.clone(),
        wheels: plan.wheels.len(),
        kept: plan.kept.len(),
        created,
    };
    if final_dir.is_dir() {
        return Ok(Some(report(false)));
    }
    std::fs::create_dir_all(&envs).map_err(io(&envs))?;
    sweep(&envs);
    let cache = crate::cache::BlobCache::new(&crate::cache::default_cache_dir());
    let fetched = crate::python::pinned::fetch(http, &plan.wheels, &cache).await?;
    let tmp = temp_dir_for(&final_dir)?;
    let root = final_dir.display().to_string();
    let scheme = Scheme {
        site_packages: format!("{root}/site-packages"),
        scripts: format!("{root}/bin"),
        data: root.clone(),
        headers: format!("{root}/include/python3.{}", plan.target.python_minor),
        python: interpreter,
    };
    let into = tmp.path().to_path_buf();
    let prefix = root.trim_start_matches('/').to_string();
    tokio::task::spawn_blocking(move || -> Result<(), NfsError> {
        let files: Vec<(PathBuf, String)> = fetched
            .iter()
            .map(|(w, p)| (p.clone(), w.filename.clone()))
            .collect();
        let scratch = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
        let installed = wheel::install_all(&files, &scheme, (0, 0), true, scratch.path())?;
        let merged = wheel::merge(&installed, &[], (0, 0))?;
        // Paths under the environment; directories first, then the files in parallel (each
        // thread with its own open wheels), as most of the time is inflating them.
        let mut files = Vec::new();
        for e in merged {
            let Some(rel) = e
                .path
                .trim_start_matches('/')
                .strip_prefix(&prefix)
                .map(|r| r.trim_start_matches('/').to_string())
            else {
                continue;
            };
            let dest = into.join(rel);
            match e.kind {
                EntryKind::Dir => std::fs::create_dir_all(&dest).map_err(io(&dest))?,
                EntryKind::Whiteout => {}
                kind => {
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p).map_err(io(p))?;
                    }
                    files.push((dest, kind, e.mode));
                }
            }
        }
        use rayon::prelude::*;
        files.into_par_iter().try_for_each_init(
            crate::archive::tar::ZipReaders::default,
            |zips, (dest, kind, mode)| -> Result<(), NfsError> {
                match kind {
                    EntryKind::File { source } => {
                        std::fs::copy(&source, &dest).map_err(io(&source))?;
                    }
                    EntryKind::ZipMember { archive, index, .. } => {
                        zips.extract(&archive, index, &dest).map_err(io(&dest))?;
                    }
                    EntryKind::Bytes(b) => std::fs::write(&dest, b).map_err(io(&dest))?,
                    EntryKind::Dir | EntryKind::Whiteout => {}
                }
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io(&dest))
            },
        )?;
        Ok(())
    })
    .await
    .expect("installing does not panic")?;
    let created = publish(tmp, &final_dir)?;
    Ok(Some(report(created)))
}

/// What `raypack gc --nfs` found (and removed, unless a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Snapshots and environments still in use: each project's latest.
    pub kept: Vec<PathBuf>,
    /// Unreferenced and younger than the minimum age: kept (a job may still run from them).
    pub recent: Vec<PathBuf>,
    /// Unreferenced, older than the minimum age (removed unless a dry run), and leftovers of
    /// killed runs.
    pub removable: Vec<PathBuf>,
    /// Whether `removable` was removed.
    pub removed: bool,
}

/// Lists (and with `delete`, removes) snapshots and environments that no project's `latest`
/// names and that are older than `min_age`, and temp trees of killed runs over an hour old.
pub fn gc(mount: &Path, delete: bool, min_age: std::time::Duration) -> Result<GcReport, NfsError> {
    if !mount.is_dir() {
        return Err(NfsError::NotMounted(mount.to_path_buf()));
    }
    let age = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default()
    };
    let mut report = GcReport::default();
    let mut used_envs = std::collections::BTreeSet::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    let code = mount.join("code");
    for project in std::fs::read_dir(&code).into_iter().flatten().flatten() {
        let dir = project.path();
        if !dir.is_dir() {
            continue;
        }
        let latest = std::fs::read_to_string(dir.join("latest")).unwrap_or_default();
        let mut lines = latest.lines();
        let snap = lines.next().unwrap_or_default().to_string();
        if let Some(e) = lines.next().filter(|e| *e != "-") {
            used_envs.insert(e.to_string());
        }
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if name.starts_with(".tmp-") {
                if age(&p).as_secs() > STALE_SECS {
                    report.removable.push(p);
                }
            } else if p.is_dir() {
                if name == snap {
                    report.kept.push(p);
                } else {
                    candidates.push(p);
                }
            }
        }
    }
    let envs = mount.join("envs");
    for e in std::fs::read_dir(&envs).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name.starts_with(".tmp-") {
            if age(&p).as_secs() > STALE_SECS {
                report.removable.push(p);
            }
        } else if used_envs.contains(&name) {
            report.kept.push(p);
        } else if p.is_dir() {
            candidates.push(p);
        }
    }
    for p in candidates {
        if age(&p) >= min_age {
            report.removable.push(p);
        } else {
            report.recent.push(p);
        }
    }
    report.kept.sort();
    report.recent.sort();
    report.removable.sort();
    if delete {
        for p in &report.removable {
            // Unpublish first (a rename is atomic), then delete at leisure.
            let doomed = p.with_file_name(format!(
                ".tmp-gc-{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            let target = if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
            {
                p.clone()
            } else {
                std::fs::rename(p, &doomed).map_err(io(p))?;
                doomed
            };
            let _ = make_writable(&target);
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
            let listing = p.with_extension("files");
            let _ = std::fs::remove_file(listing);
        }
        report.removed = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote("/mnt/shared/code/a/1f"),
            "/mnt/shared/code/a/1f"
        );
        assert_eq!(shell_quote("/mnt/my dir"), "'/mnt/my dir'");
    }
}
