//! Fully pinned dependency inputs, turned into one wheel per distribution for a target, and
//! fetched (verified) into the shared cache.
//!
//! Inputs: PEP 751 `pylock.toml` (wheels with url + sha256; no index needed), or a
//! requirements.txt where every requirement is `name==version` with `--hash` options (the
//! index's PEP 691 JSON maps the hashes to files). Markers are evaluated for the target.
//! Anything unpinned needs `raypack lock` first: here that is an error naming
//! the requirement.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::index::{DistFile, IndexClient, IndexError};
use super::netrc::redact;
use super::tags::{Target, marker_env};
use super::wheel::{WheelName, best_wheel, normalize};
use raypack_pack::cache::BlobCache;

/// One wheel to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedWheel {
    /// The distribution's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The wheel's file name.
    pub filename: String,
    /// Where it is downloaded from (no credentials).
    pub url: String,
    /// SHA-256 (hex) of the wheel.
    pub sha256: String,
    /// The size the lock declares (pylock `size`); a download is cut off past it.
    pub size: Option<u64>,
}

/// Why pins could not be turned into wheels.
#[derive(Debug, thiserror::Error)]
pub enum PinnedError {
    /// The requirements file could not be read.
    #[error(transparent)]
    Requirements(#[from] super::requirements_txt::RequirementsTxtError),
    #[error(
        "{file}:{line}: `{requirement}` is not pinned with == and --hash; installing takes fully pinned inputs only. Run `raypack lock` next to the recipe (it writes pylock.raypack.toml, which `bake` and `env` then use), or pin it yourself (e.g. `uv pip compile --generate-hashes --python-platform x86_64-manylinux_2_35 --python-version 3.11`)"
    )]
    /// A requirements line without `==` and `--hash`.
    Unpinned {
        /// The file.
        file: String,
        /// The line number.
        line: usize,
        /// The requirement.
        requirement: String,
    },
    #[error("{file}: {message}")]
    /// A pylock.toml that does not parse.
    Malformed {
        /// The file (with line and column when known).
        file: String,
        /// Why.
        message: String,
    },
    #[error(
        "{recipe}: inline requirement `{requirement}` is not pinned with hashes; run `raypack lock`, or put a pylock.toml or a hashed requirements.txt in `requirements_file`"
    )]
    /// An inline requirement where only pinned inputs are taken.
    InlineUnpinned {
        /// The recipe.
        recipe: String,
        /// The first inline requirement.
        requirement: String,
    },
    #[error(
        "{name} {version}: no wheel for {target} (available: {available}); sdists are not built"
    )]
    /// No wheel of the pin fits the target.
    NoWheel {
        /// The distribution.
        name: String,
        /// The pinned version.
        version: String,
        /// The target.
        target: String,
        /// The wheels there are.
        available: String,
    },
    #[error("{index}: {message}")]
    /// An index or find-links location failed.
    Index {
        /// The index (without credentials).
        index: String,
        /// Why, and what to check.
        message: String,
    },
    #[error(
        "{name}=={version}: every file of this version is yanked from {index} ({reason}); pin another version"
    )]
    /// Every listed file of the pin is yanked.
    Yanked {
        /// The distribution.
        name: String,
        /// The version.
        version: String,
        /// The index.
        index: String,
        /// The reason the index gives.
        reason: String,
    },
    #[error(
        "{file}: {name}=={version}: none of its {hashes} --hash values matches a file {index} lists for this version; the pins are stale or the index serves other files (re-lock)"
    )]
    /// None of the pin's hashes is listed by the index.
    UnknownHashes {
        /// The requirements file.
        file: String,
        /// The distribution.
        name: String,
        /// The version.
        version: String,
        /// How many hashes the line lists.
        hashes: usize,
        /// The index asked.
        index: String,
    },
    /// A downloaded file's SHA-256 is not the pinned one.
    #[error("{file}: sha256 {actual}, expected {expected}; the download is discarded")]
    HashMismatch {
        /// The file.
        file: String,
        /// The pinned SHA-256.
        expected: String,
        /// The downloaded file's SHA-256.
        actual: String,
    },
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Wheels from a pylock.toml for `target` (read by [`super::pylock::read`]).
pub fn from_pylock(path: &Path, target: &Target) -> Result<Vec<PinnedWheel>, PinnedError> {
    use super::pylock::PylockError;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PinnedError::Io {
        path: path.into(),
        source,
    })?;
    let bad = |m: String| PinnedError::Malformed {
        file: file.clone(),
        message: m,
    };
    let packages = super::pylock::read(&text).map_err(|e| match e {
        PylockError::Toml {
            line,
            column,
            message,
        } => PinnedError::Malformed {
            file: format!("{file}:{line}:{column}"),
            message: format!("not valid TOML: {message}"),
        },
        PylockError::Invalid(m) => bad(m),
    })?;
    let prio = target.priorities();
    let mut out = Vec::new();
    for p in packages {
        if !p.applies_to(target).map_err(bad)? {
            continue;
        }
        let (name, version) = (p.name.as_str(), p.version.as_str());
        if p.wheels.is_empty() {
            return Err(bad(format!(
                "package {name} {version} has no wheels (sdists are not built)"
            )));
        }
        let mut cands = Vec::new();
        for w in &p.wheels {
            let url = w
                .url
                .clone()
                .ok_or_else(|| bad(format!("a wheel of {name} has no url")))?;
            let sha = w
                .sha256
                .clone()
                .ok_or_else(|| bad(format!("{} has no sha256 hash", w.filename)))?;
            if let Some(wn) = WheelName::parse(&w.filename) {
                cands.push((
                    wn,
                    PinnedWheel {
                        name: name.into(),
                        version: version.into(),
                        filename: w.filename.clone(),
                        url,
                        sha256: sha,
                        size: w.size,
                    },
                ));
            }
        }
        let names: Vec<WheelName> = cands.iter().map(|c| c.0.clone()).collect();
        let best =
            best_wheel(&names, &prio).ok_or_else(|| no_wheel(name, version, target, &names))?;
        out.push(cands.into_iter().find(|c| &c.0 == best).expect("found").1);
    }
    Ok(out)
}

/// `name==version` + hashes from a requirements.txt, and its index options.
#[derive(Debug, Clone, Default)]
pub struct HashedRequirements {
    /// The file the pins came from (for messages).
    pub source: String,
    /// `--find-links` values.
    pub find_links: Vec<String>,
    /// `--index-url`, when the file gives one.
    pub index_url: Option<String>,
    /// `--extra-index-url` values.
    pub extra_index_urls: Vec<String>,
    /// `(name, version, sha256 hashes)` per line.
    pub pins: Vec<(String, String, Vec<String>)>,
}

/// Parses a hashed requirements.txt (nested `-r` files included, through the one reader,
/// [`super::requirements_txt`]); markers that do not apply to `target` drop the line.
/// Constraint files are refused: every line here is already an exact pin.
pub fn parse_hashed(path: &Path, target: &Target) -> Result<HashedRequirements, PinnedError> {
    let file = path.display().to_string();
    let txt = super::requirements_txt::read(path)?;
    if let Some(c) = txt.constraints.first() {
        return Err(PinnedError::Malformed {
            file: format!("{}:{}", c.file.display(), c.line),
            message: format!(
                "constraint `{}`: a hashed requirements file pins every package exactly; constraint files are not supported here (apply them when compiling the file)",
                c.spec
            ),
        });
    }
    for u in txt.index_url.iter().chain(&txt.extra_index_urls) {
        super::netrc::remember(u);
    }
    let env = marker_env(target);
    let mut out = HashedRequirements {
        source: file,
        find_links: txt.find_links,
        index_url: txt.index_url,
        extra_index_urls: txt.extra_index_urls,
        pins: Vec::new(),
    };
    for line in txt.requirements {
        let at = line.file.display().to_string();
        let req =
            super::requirement::parse(&line.spec).map_err(|message| PinnedError::Malformed {
                file: format!("{at}:{}", line.line),
                message,
            })?;
        if !req.marker.evaluate(&env, &[]) {
            continue;
        }
        let version = match &req.version_or_url {
            Some(pep508_rs::VersionOrUrl::VersionSpecifier(s))
                if s.len() == 1
                    && s.iter().next().is_some_and(|v| {
                        v.operator() == &pep508_rs::pep440_rs::Operator::Equal
                    }) =>
            {
                s.iter().next().expect("one").version().to_string()
            }
            _ => String::new(),
        };
        if version.is_empty() || line.hashes.is_empty() {
            return Err(PinnedError::Unpinned {
                file: at,
                line: line.line,
                requirement: line.spec,
            });
        }
        out.pins.push((req.name.to_string(), version, line.hashes));
    }
    Ok(out)
}

/// A file listed by an index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexFile {
    pub filename: String,
    pub url: String,
    pub sha256: String,
    pub yanked: bool,
    /// PEP 592 reason, when the index gives one.
    pub yanked_reason: Option<String>,
}

impl From<DistFile> for IndexFile {
    fn from(f: DistFile) -> IndexFile {
        IndexFile {
            filename: f.filename,
            url: f.url,
            sha256: f.sha256.unwrap_or_default(),
            yanked: f.yanked,
            yanked_reason: f.yanked_reason,
        }
    }
}

/// An index client's error as a pin lookup's, naming the project and what to check.
fn lookup_error(index: &str, name: &str, e: IndexError) -> PinnedError {
    let message = match e {
        IndexError::Network {
            detail, attempts, ..
        } => format!(
            "cannot reach the index for {name} after {attempts} tries ({detail}); check index_url and the network"
        ),
        IndexError::Status { status: 401, .. } => {
            format!("{name}: HTTP 401; the index needs credentials (in the index URL or ~/.netrc)")
        }
        IndexError::Status { status, .. } => match reqwest::StatusCode::from_u16(status) {
            Ok(s) => format!("{name}: HTTP {s}"),
            Err(_) => format!("{name}: HTTP {status}"),
        },
        IndexError::NotJson { detail, .. } => {
            format!("{name}: the index answered neither PEP 691 JSON nor PEP 503 HTML ({detail})")
        }
        e @ IndexError::Io { .. } => e.to_string(),
    };
    PinnedError::Index {
        index: redact(index),
        message,
    }
}

/// No wheel of `name` `version` fits `target`; `available` are the wheels there are.
fn no_wheel(name: &str, version: &str, target: &Target, available: &[WheelName]) -> PinnedError {
    PinnedError::NoWheel {
        name: name.into(),
        version: version.into(),
        target: target.to_string(),
        available: available
            .iter()
            .flat_map(|n| n.tags.clone())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The files of one project on `index`: PEP 691 JSON, or a PEP 503 HTML page when that is
/// what the index serves. A project the index does not have is an error naming it.
pub(crate) async fn index_files(
    client: &IndexClient,
    index: &str,
    name: &str,
) -> Result<Vec<IndexFile>, PinnedError> {
    project_files(client, index, name)
        .await?
        .ok_or_else(|| PinnedError::Index {
            index: redact(index),
            message: format!("no project `{name}` on this index (HTTP 404); check the name"),
        })
}

/// Like [`index_files`], but `None` when the index does not have the project (404, or the 403
/// some private indexes send).
pub(crate) async fn project_files(
    client: &IndexClient,
    index: &str,
    name: &str,
) -> Result<Option<Vec<IndexFile>>, PinnedError> {
    let page = client
        .project(index, name)
        .await
        .map_err(|e| lookup_error(index, name, e))?;
    Ok(page.map(|p| p.files.into_iter().map(IndexFile::from).collect()))
}

/// Wheels in `--find-links` locations: a local directory (hashed here) or an HTML page of
/// links (`file://` or http(s)).
pub(crate) async fn find_links_files(
    client: &IndexClient,
    location: &str,
) -> Result<Vec<IndexFile>, PinnedError> {
    let files = client.find_links(location).await.map_err(|e| match e {
        IndexError::Io { path, source } => PinnedError::Io { path, source },
        IndexError::Status { status, .. } => PinnedError::Index {
            index: redact(location),
            message: format!(
                "find-links: HTTP {}",
                reqwest::StatusCode::from_u16(status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| status.to_string())
            ),
        },
        e => PinnedError::Index {
            index: redact(location),
            message: format!("find-links: {e}"),
        },
    })?;
    Ok(files.into_iter().map(IndexFile::from).collect())
}

/// Where wheels come from: the default index, extra indexes (tried in order, first index that
/// has a project wins — never pooled, which is how dependency confusion happens), find-links
/// locations, and per-project index pins.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The default index.
    pub index_url: String,
    /// Extra indexes (asked before the default).
    pub extra_index_urls: Vec<String>,
    /// Find-links locations.
    pub find_links: Vec<String>,
    /// normalized project name → the only index it may come from.
    pub package_indexes: BTreeMap<String, String>,
}

impl Sources {
    /// Only this index.
    pub fn index(url: &str) -> Sources {
        Sources {
            index_url: url.to_string(),
            extra_index_urls: Vec::new(),
            find_links: Vec::new(),
            package_indexes: BTreeMap::new(),
        }
    }

    /// The files of `name` from its pinned index, else from the first of `indexes` that has
    /// it; with the index they came from (`None`: no index has it).
    pub(crate) async fn files_for(
        &self,
        client: &IndexClient,
        indexes: &[String],
        name: &str,
    ) -> Result<(String, Option<Vec<IndexFile>>), PinnedError> {
        if let Some(pinned) = self.package_indexes.get(&normalize(name)) {
            return Ok((
                pinned.clone(),
                Some(index_files(client, pinned, name).await?),
            ));
        }
        for index in indexes {
            if let Some(files) = project_files(client, index, name).await? {
                return Ok((index.clone(), Some(files)));
            }
        }
        Ok((
            indexes
                .iter()
                .map(|i| redact(i))
                .collect::<Vec<_>>()
                .join(", "),
            None,
        ))
    }
}

/// Maps hashed pins to one wheel each (the best for `target` among the files whose sha256 is
/// listed), asking the index only for filenames and URLs.
pub async fn resolve_hashed(
    client: &IndexClient,
    reqs: &HashedRequirements,
    sources: &Sources,
    target: &Target,
) -> Result<Vec<PinnedWheel>, PinnedError> {
    let prio = target.priorities();
    let mut out = Vec::new();
    // As uv and `raypack lock` do: extra indexes first, then the main one (the file's own
    // options before the recipe's); the first index that has a project is the only one used.
    let mut indexes: Vec<String> = reqs.extra_index_urls.clone();
    indexes.extend(sources.extra_index_urls.iter().cloned());
    indexes.push(
        reqs.index_url
            .clone()
            .unwrap_or_else(|| sources.index_url.clone()),
    );
    let mut links = Vec::new();
    for l in reqs.find_links.iter().chain(&sources.find_links) {
        links.extend(find_links_files(client, l).await?);
    }
    // The index pages are fetched 8 at a time; the pins are then mapped in order.
    use futures::stream::{StreamExt, TryStreamExt};
    let pages: Vec<(String, Option<Vec<IndexFile>>)> = futures::stream::iter(reqs.pins.iter())
        .map(|(name, _, _)| sources.files_for(client, &indexes, name))
        .buffered(8)
        .try_collect()
        .await?;
    for ((name, version, hashes), (index, files)) in reqs.pins.iter().zip(pages) {
        let on_index = files.is_some();
        let mut files = files.unwrap_or_default();
        // find-links wheels are matched by hash too, so they cannot smuggle in other bytes.
        files.extend(links.iter().cloned());
        if !on_index && !files.iter().any(|f| hashes.contains(&f.sha256)) {
            return Err(PinnedError::Index {
                index,
                message: format!(
                    "no project `{name}` on any configured index (HTTP 404) nor in find-links; check the name"
                ),
            });
        }
        let listed: Vec<&IndexFile> = files
            .iter()
            .filter(|f| hashes.contains(&f.sha256))
            .collect();
        if listed.is_empty() {
            return Err(PinnedError::UnknownHashes {
                file: reqs.source.clone(),
                name: name.clone(),
                version: version.clone(),
                hashes: hashes.len(),
                index: redact(&index),
            });
        }
        if listed.iter().all(|f| f.yanked) {
            return Err(PinnedError::Yanked {
                name: name.clone(),
                version: version.clone(),
                index: redact(&index),
                reason: listed
                    .iter()
                    .find_map(|f| f.yanked_reason.clone())
                    .unwrap_or_else(|| "no reason given".into()),
            });
        }
        let cands: Vec<(WheelName, &IndexFile)> = listed
            .into_iter()
            .filter(|f| !f.yanked)
            .filter_map(|f| WheelName::parse(&f.filename).map(|w| (w, f)))
            .collect();
        let names: Vec<WheelName> = cands.iter().map(|c| c.0.clone()).collect();
        let best =
            best_wheel(&names, &prio).ok_or_else(|| no_wheel(name, version, target, &names))?;
        let (_, f) = cands.iter().find(|c| &c.0 == best).expect("found");
        out.push(PinnedWheel {
            name: name.clone(),
            version: version.clone(),
            filename: f.filename.clone(),
            url: f.url.clone(),
            sha256: f.sha256.clone(),
            size: None,
        });
    }
    Ok(out)
}

/// Downloads the wheels (in parallel, at most 4 at once; resumable, see
/// [`super::download`]) into the content-addressed cache, verifying each whole file's sha256;
/// returns (wheel, cached path). A byte-count progress bar is drawn on a terminal.
pub async fn fetch(
    http: &reqwest::Client,
    wheels: &[PinnedWheel],
    cache: &BlobCache,
) -> Result<Vec<(PinnedWheel, PathBuf)>, PinnedError> {
    use futures::stream::{StreamExt, TryStreamExt};
    use std::io::IsTerminal;
    let missing = wheels
        .iter()
        .filter(|w| !cache.contains(&format!("sha256:{}", w.sha256)))
        .count();
    let progress = (missing > 0 && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} downloading {msg}: {bytes} ({bytes_per_sec})",
            )
            .expect("template"),
        );
        b.set_message(format!("{missing} wheels"));
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let bar = progress.as_ref();
    let out = futures::stream::iter(wheels.iter().cloned())
        .map(|w| async move {
            let digest = format!("sha256:{}", w.sha256);
            if cache.contains(&digest) {
                let p = cache.path(&digest).expect("valid digest");
                return Ok((w, p));
            }
            if let Some(local) = url::Url::parse(&w.url)
                .ok()
                .filter(|u| u.scheme() == "file")
                .and_then(|u| u.to_file_path().ok())
            {
                let (actual, p) = cache.insert_file(&local).map_err(|e| PinnedError::Index {
                    index: w.url.clone(),
                    message: e.to_string(),
                })?;
                if actual != digest {
                    return Err(PinnedError::HashMismatch {
                        file: w.filename.clone(),
                        expected: digest,
                        actual,
                    });
                }
                return Ok((w, p));
            }
            let blob = cache.path(&digest).expect("valid digest");
            let partial = cache.root().join("partial");
            let count = |n: u64| {
                if let Some(b) = bar {
                    b.inc(n);
                }
            };
            match super::download::download(
                http, &w.url, &w.sha256, w.size, &blob, &partial, &count,
            )
            .await
            {
                Ok(()) => Ok((w, blob)),
                Err(super::download::DownloadError::Mismatch { expected, actual }) => {
                    Err(PinnedError::HashMismatch {
                        file: w.filename.clone(),
                        expected,
                        actual,
                    })
                }
                Err(e) => Err(PinnedError::Index {
                    index: redact(&w.url),
                    message: e.to_string(),
                }),
            }
        })
        .buffered(4)
        .try_collect()
        .await;
    if let Some(b) = progress {
        b.finish_and_clear();
    }
    out
}

/// Names of the pins, normalised (for REQUESTED and reports).
pub fn names(wheels: &[PinnedWheel]) -> HashMap<String, String> {
    wheels
        .iter()
        .map(|w| (normalize(&w.name), w.version.clone()))
        .collect()
}
