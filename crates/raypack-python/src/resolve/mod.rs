//! Resolving requirements for one target with pubgrub: the versions of a project are those with
//! a wheel the target accepts (tags and Requires-Python); yanked versions only when pinned
//! `==`; pre-releases only when no final release fits or a requirement names a pre-release
//! (`>=2.0b1`). Extras are virtual packages
//! (`name[extra]` at version V depends on `name == V` plus the extra's requirements); markers
//! are evaluated for the target.
//!
//! Preferences decide among allowed versions: the previous lock first, then what the base image
//! ships, then the newest. With `no_replace_base`, a project the base ships has only the base's
//! version, so a conflict is explained like any other.
//!
//! pubgrub is synchronous; it runs on a blocking thread and waits for index pages and
//! metadata fetched on the tokio runtime. Whenever it learns dependencies, the pages of those
//! projects and the metadata of their likely versions are fetched ahead, concurrently.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use pep508_rs::pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, Requirement, VerbatimUrl, VersionOrUrl};
use pubgrub::{
    Dependencies, DependencyProvider, DerivationTree, External, PackageResolutionStatistics,
    PubGrubError, Ranges,
};
use tokio::sync::OnceCell;

use super::index::{DistFile, IndexClient, ProjectPage};
use super::metadata::{CoreMetadata, MetadataFetcher};
use super::netrc::IndexUrl;
use super::tags::Target;
use super::tags::marker_env;
use super::wheel::{WheelName, normalize};

mod explain;
use explain::*;

/// A set of versions.
pub(crate) type VersionRange = Ranges<Version>;

/// A node of the resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Pkg {
    /// The user's requirements.
    Root,
    /// A distribution (normalized name).
    Dist(String),
    /// A distribution with one extra enabled.
    Extra(String, String),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => write!(f, "the requirements"),
            Pkg::Dist(n) => write!(f, "{n}"),
            Pkg::Extra(n, e) => write!(f, "{n}[{e}]"),
        }
    }
}

/// Where projects are looked up: a project pinned to an index uses only it; others use the
/// first of `extra` then `default` that has the project (uv's `first-index` strategy, which
/// avoids dependency confusion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    /// The default index (`--index-url`).
    pub default: IndexUrl,
    /// Extra indexes, asked before the default.
    pub extra: Vec<IndexUrl>,
    /// Normalized project name → index URL.
    pub per_package: BTreeMap<String, IndexUrl>,
    /// `--find-links` locations (a directory or an HTML page of links): their wheels are
    /// candidates beside those of the index a project comes from.
    pub find_links: Vec<IndexUrl>,
}

impl IndexConfig {
    fn order(&self, name: &str) -> Vec<IndexUrl> {
        match self.per_package.get(name) {
            Some(i) => vec![i.clone()],
            None => self
                .extra
                .iter()
                .chain(std::iter::once(&self.default))
                .cloned()
                .collect(),
        }
    }
}

/// Why a resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{explanation}")]
    /// No set of versions satisfies the requirements.
    NoSolution {
        /// The chain of requirements that conflict, in plain words.
        explanation: String,
    },
    #[error("{package}: {message}")]
    /// A project page or METADATA could not be fetched.
    Fetch {
        /// The project.
        package: String,
        /// Why.
        message: String,
    },
    /// A requirement does not parse.
    #[error("`{requirement}`: {message}")]
    Requirement {
        /// The requirement.
        requirement: String,
        /// Why.
        message: String,
    },
    /// A bug: the solver thread failed.
    #[error("the resolver stopped: {0}")]
    Internal(String),
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// The requirements.
    pub requirements: Vec<Requirement<VerbatimUrl>>,
    /// The target resolved for.
    pub target: Target,
    /// Where projects come from.
    pub indexes: IndexConfig,
    /// Versions of the previous lock (normalized name → version), kept when still allowed.
    pub preferences: BTreeMap<String, Version>,
    /// Distributions the base image ships (normalized name → version).
    pub installed: BTreeMap<String, Version>,
    /// A project the base ships may only have the base's version.
    pub no_replace_base: bool,
    /// Projects that may only have the base's version even without `no_replace_base`: the
    /// base's Ray (the cluster, KubeRay's `rayVersion` and the head run it), unless the user
    /// opted in to replacing it.
    pub pinned_to_base: std::collections::BTreeSet<String>,
}

/// One locked distribution for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The distribution (normalized name).
    pub name: String,
    /// The version chosen.
    pub version: Version,
    /// The wheel chosen for the target.
    pub wheel: DistFile,
    /// The index it came from (empty: find-links only).
    pub index: String,
    /// The base image ships exactly this version.
    pub in_base: bool,
    /// Who asked for it: `pandas 2.2.3 (numpy>=1.23.2)`, `the requirements (requests>=2.31)`.
    pub required_by: Vec<String>,
}

/// A distribution the base ships that the lock replaces with another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The distribution.
    pub name: String,
    /// The version the base ships.
    pub base_version: String,
    /// The version the lock chose.
    pub locked_version: String,
    /// The requirement chains that exclude the base's version.
    pub required_by: Vec<String>,
}

/// One target's resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The target.
    pub target: Target,
    /// Sorted by name.
    pub packages: Vec<Locked>,
    /// What the lock replaces in the base.
    pub replacements: Vec<Replacement>,
}

/// A project's usable versions for the target.
#[derive(Debug, Default)]
struct Project {
    /// The index it came from (`None`: on none of the indexes searched).
    index: Option<String>,
    /// Some of its files are in find-links locations.
    in_find_links: bool,
    searched: Vec<String>,
    versions: BTreeMap<Version, Candidate>,
    /// Versions listed whose files the target cannot use (sdists only, other platforms, …).
    unusable: BTreeSet<Version>,
}

#[derive(Debug, Clone)]
struct Candidate {
    wheel: DistFile,
    yanked: bool,
}

type Cell<T> = Arc<OnceCell<Result<Arc<T>, String>>>;

/// Where the resolver reads packages from: project pages, find-links listings and core
/// metadata. [`IndexSource`] is the one every command uses (the index client, with its cache,
/// retries and credentials); tests give the resolver fixtures through the same trait.
pub trait PackageSource: Send + Sync {
    /// The files of the find-links `location` (a directory or a URL).
    fn find_links<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<DistFile>, String>>;
    /// The project page of `name` on `index`; `None` when the index does not have it.
    fn project<'a>(
        &'a self,
        index: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProjectPage>, String>>;
    /// The core metadata of a wheel.
    fn metadata<'a>(&'a self, wheel: &'a DistFile) -> BoxFuture<'a, Result<CoreMetadata, String>>;
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The indexes, through [`IndexClient`] (PEP 691 / PEP 503, find-links, one cache) and
/// [`MetadataFetcher`] (PEP 658 files, else ranges of the wheel).
#[derive(Debug, Clone)]
pub struct IndexSource {
    client: IndexClient,
    metadata: MetadataFetcher,
}

impl IndexSource {
    /// Reads through `client`.
    pub fn new(client: &IndexClient) -> IndexSource {
        IndexSource {
            client: client.clone(),
            metadata: MetadataFetcher::new(client.clone()),
        }
    }
}

impl PackageSource for IndexSource {
    fn find_links<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<DistFile>, String>> {
        Box::pin(async move {
            self.client
                .find_links(location)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn project<'a>(
        &'a self,
        index: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProjectPage>, String>> {
        Box::pin(async move {
            self.client
                .project(index, name)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn metadata<'a>(&'a self, wheel: &'a DistFile) -> BoxFuture<'a, Result<CoreMetadata, String>> {
        Box::pin(async move {
            self.metadata
                .fetch(wheel)
                .await
                .map(|(m, _)| m)
                .map_err(|e| e.to_string())
        })
    }
}

/// State shared between the solver thread and prefetch tasks.
struct Shared {
    source: Arc<dyn PackageSource>,
    req: ResolveRequest,
    env: MarkerEnvironment,
    priorities: HashMap<String, usize>,
    python: Version,
    projects: Mutex<HashMap<String, Cell<Project>>>,
    /// The wheels of every find-links location, read once.
    links: OnceCell<Result<Vec<DistFile>, String>>,
    metas: Mutex<HashMap<(String, Version), Cell<CoreMetadata>>>,
    order: Mutex<HashMap<Pkg, usize>>,
    /// Projects some requirement names a pre-release of (`>=2.0b1`): pre-releases allowed.
    explicit_pre: Mutex<HashSet<String>>,
    /// Projects whose prefetch has started, and the tasks (aborted when the solver is done).
    prefetched: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

fn spec_version(filename: &str) -> Option<Version> {
    if let Some(w) = WheelName::parse(filename) {
        return Version::from_str(&w.version).ok();
    }
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))
        .or_else(|| filename.strip_suffix(".tar.bz2"))?;
    Version::from_str(stem.rsplit_once('-')?.1).ok()
}

impl Shared {
    fn requires_python_ok(&self, spec: Option<&str>) -> bool {
        match spec.map(VersionSpecifiers::from_str) {
            None => true,
            Some(Ok(s)) => s.contains(&self.python),
            // Unparsable metadata: let the wheel tags decide.
            Some(Err(_)) => true,
        }
    }

    async fn project(&self, name: &str) -> Result<Arc<Project>, String> {
        let cell = self
            .projects
            .lock()
            .expect("lock")
            .entry(name.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let mut p = Project::default();
            let links = self
                .links
                .get_or_init(|| async {
                    let mut all = Vec::new();
                    for l in &self.req.indexes.find_links {
                        all.extend(self.source.find_links(l.expose()).await?);
                    }
                    Ok(all)
                })
                .await
                .clone()?;
            let mut files: Vec<DistFile> = links
                .into_iter()
                .filter(|f| {
                    WheelName::parse(&f.filename).is_some_and(|w| normalize(&w.name) == name)
                })
                .collect();
            p.in_find_links = !files.is_empty();
            p.searched
                .extend(self.req.indexes.find_links.iter().map(IndexUrl::to_string));
            for index in self.req.indexes.order(name) {
                p.searched.push(index.to_string());
                let Some(page) = self.source.project(index.expose(), name).await? else {
                    continue;
                };
                p.index = Some(page.index.clone());
                files.extend(page.files);
                break;
            }
            {
                let mut by_version: BTreeMap<Version, Vec<(usize, WheelName, &DistFile)>> =
                    BTreeMap::new();
                for f in &files {
                    let Some(v) = spec_version(&f.filename) else {
                        continue;
                    };
                    let usable = WheelName::parse(&f.filename)
                        .and_then(|w| w.priority(&self.priorities).map(|prio| (prio, w)))
                        .filter(|_| self.requires_python_ok(f.requires_python.as_deref()));
                    match usable {
                        Some((prio, w)) => by_version.entry(v).or_default().push((prio, w, f)),
                        None => {
                            p.unusable.insert(v);
                        }
                    }
                }
                for (v, mut files) in by_version {
                    p.unusable.remove(&v);
                    // Non-yanked first, then best tag, then highest build tag.
                    files.sort_by(|a, b| {
                        (a.2.yanked, a.0)
                            .cmp(&(b.2.yanked, b.0))
                            .then_with(|| b.1.build.cmp(&a.1.build))
                    });
                    let (_, _, f) = files[0];
                    p.versions.insert(
                        v,
                        Candidate {
                            wheel: f.clone(),
                            yanked: f.yanked,
                        },
                    );
                }
            }
            Ok(Arc::new(p))
        })
        .await
        .clone()
    }

    async fn core_metadata(
        &self,
        name: &str,
        version: &Version,
        wheel: &DistFile,
    ) -> Result<Arc<CoreMetadata>, String> {
        let cell = self
            .metas
            .lock()
            .expect("lock")
            .entry((name.to_string(), version.clone()))
            .or_default()
            .clone();
        cell.get_or_init(|| async { self.source.metadata(wheel).await.map(Arc::new) })
            .await
            .clone()
    }

    /// The version to try for `name` within `range`, by preference.
    fn pick(&self, name: &str, project: &Project, range: &VersionRange) -> Option<Version> {
        let allowed = |v: &Version| {
            range.contains(v)
                && project
                    .versions
                    .get(v)
                    .is_some_and(|c| !c.yanked || range.as_singleton().is_some())
        };
        if (self.req.no_replace_base || self.req.pinned_to_base.contains(name))
            && let Some(v) = self.req.installed.get(name)
        {
            return allowed(v).then(|| v.clone());
        }
        for pref in [self.req.preferences.get(name), self.req.installed.get(name)]
            .into_iter()
            .flatten()
        {
            if allowed(pref) {
                return Some(pref.clone());
            }
        }
        let mut allowed_versions = project.versions.keys().rev().filter(|v| allowed(v));
        if self.explicit_pre.lock().expect("lock").contains(name) {
            return allowed_versions.next().cloned();
        }
        let newest_final = project
            .versions
            .keys()
            .rev()
            .find(|v| !v.any_prerelease() && allowed(v));
        newest_final.or_else(|| allowed_versions.next()).cloned()
    }

    /// Dependencies of `pkg` at `version`, as (package, range) pairs with ranges merged.
    fn dependencies_of(
        &self,
        pkg: &Pkg,
        version: &Version,
        meta: Option<&CoreMetadata>,
    ) -> Result<BTreeMap<Pkg, (VersionRange, Vec<String>)>, ResolveError> {
        type Deps = BTreeMap<Pkg, (VersionRange, Vec<String>)>;
        let mut deps: Deps = BTreeMap::new();
        fn add(
            deps: &mut Deps,
            r: &Requirement<VerbatimUrl>,
            from: &Pkg,
            explicit_pre: &Mutex<HashSet<String>>,
        ) -> Result<(), ResolveError> {
            let name = r.name.to_string();
            if let Some(VersionOrUrl::VersionSpecifier(s)) = &r.version_or_url
                && s.iter().any(|v| v.version().any_prerelease())
            {
                explicit_pre.lock().expect("lock").insert(name.clone());
            }
            let range = match &r.version_or_url {
                None => VersionRange::full(),
                Some(VersionOrUrl::VersionSpecifier(s)) => VersionRange::from(s.clone()),
                Some(VersionOrUrl::Url(_)) => {
                    return Err(ResolveError::Requirement {
                        requirement: r.to_string(),
                        message: "direct URL requirements are not supported by raypack lock; publish the wheel to an index".into(),
                    });
                }
            };
            let text = match &r.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(s)) if !s.is_empty() => format!("{name}{s}"),
                _ => name.clone(),
            };
            let mut targets = vec![Pkg::Dist(name.clone())];
            targets.extend(
                r.extras
                    .iter()
                    .map(|e| Pkg::Extra(name.clone(), e.to_string())),
            );
            for t in targets {
                if &t == from {
                    continue;
                }
                let e = deps
                    .entry(t)
                    .or_insert_with(|| (VersionRange::full(), Vec::new()));
                e.0 = e.0.intersection(&range);
                e.1.push(text.clone());
            }
            Ok(())
        }
        match pkg {
            Pkg::Root => {
                for r in &self.req.requirements {
                    if r.marker.evaluate(&self.env, &[]) {
                        add(&mut deps, r, pkg, &self.explicit_pre)?;
                    }
                }
            }
            Pkg::Dist(_) | Pkg::Extra(..) => {
                let meta = meta.expect("metadata for a distribution");
                let extra = match pkg {
                    Pkg::Extra(n, e) => {
                        deps.insert(
                            Pkg::Dist(n.clone()),
                            (
                                VersionRange::singleton(version.clone()),
                                vec![format!("{n}=={version}")],
                            ),
                        );
                        Some(
                            ExtraName::from_str(e)
                                .map_err(|e| ResolveError::Internal(e.to_string()))?,
                        )
                    }
                    _ => None,
                };
                for text in &meta.requires_dist {
                    let r = match crate::requirement::parse(text) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(
                                "{pkg} {version}: ignoring unparsable Requires-Dist `{text}`: {e}"
                            );
                            continue;
                        }
                    };
                    let wanted = match &extra {
                        None => r.marker.evaluate(&self.env, &[]),
                        Some(e) => {
                            r.marker.evaluate(&self.env, std::slice::from_ref(e))
                                && !r.marker.evaluate(&self.env, &[])
                        }
                    };
                    if wanted {
                        add(&mut deps, &r, pkg, &self.explicit_pre)?;
                    }
                }
            }
        }
        Ok(deps)
    }
}

/// Fetches the page of `name` and the metadata of its likely version, then does the same for
/// that version's dependencies (each project once), so the solver rarely waits on the network.
fn prefetch(shared: Arc<Shared>, rt: &tokio::runtime::Handle, name: String, range: VersionRange) {
    if !shared.prefetched.lock().expect("lock").insert(name.clone()) {
        return;
    }
    let handle = rt.clone();
    let tasks = shared.clone();
    let task = rt.spawn(async move {
        let Ok(p) = shared.project(&name).await else {
            return;
        };
        let Some(v) = shared.pick(&name, &p, &range) else {
            return;
        };
        let wheel = p.versions[&v].wheel.clone();
        let Ok(meta) = shared.core_metadata(&name, &v, &wheel).await else {
            return;
        };
        if let Ok(deps) = shared.dependencies_of(&Pkg::Dist(name.clone()), &v, Some(&meta)) {
            for (dep, (range, _)) in deps {
                if let Pkg::Dist(n) = dep {
                    prefetch(shared.clone(), &handle, n, range);
                }
            }
        }
    });
    tasks.tasks.lock().expect("lock").push(task.abort_handle());
}

struct Provider {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

impl Provider {
    fn name_of(pkg: &Pkg) -> Option<&str> {
        match pkg {
            Pkg::Root => None,
            Pkg::Dist(n) | Pkg::Extra(n, _) => Some(n),
        }
    }

    fn project(&self, name: &str) -> Result<Arc<Project>, ResolveError> {
        self.rt
            .block_on(self.shared.project(name))
            .map_err(|message| ResolveError::Fetch {
                package: name.to_string(),
                message,
            })
    }

    /// Starts fetching what the solver will likely ask for next.
    fn prefetch(&self, name: String, range: VersionRange) {
        prefetch(self.shared.clone(), &self.rt, name, range);
    }

    fn metadata(&self, name: &str, version: &Version) -> Result<Arc<CoreMetadata>, ResolveError> {
        let p = self.project(name)?;
        let c = p.versions.get(version).ok_or_else(|| {
            ResolveError::Internal(format!("{name} {version} was chosen but is not listed"))
        })?;
        self.rt
            .block_on(self.shared.core_metadata(name, version, &c.wheel))
            .map_err(|message| ResolveError::Fetch {
                package: format!("{name} {version}"),
                message,
            })
    }
}

impl DependencyProvider for Provider {
    type P = Pkg;
    type V = Version;
    type VS = VersionRange;
    type M = String;
    type Priority = (u32, bool, Reverse<usize>);
    type Err = ResolveError;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &VersionRange,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let order = self
            .shared
            .order
            .lock()
            .expect("lock")
            .get(package)
            .copied()
            .unwrap_or(usize::MAX);
        (
            stats.conflict_count(),
            range.as_singleton().is_some(),
            Reverse(order),
        )
    }

    fn choose_version(
        &self,
        package: &Pkg,
        range: &VersionRange,
    ) -> Result<Option<Version>, ResolveError> {
        let Some(name) = Self::name_of(package) else {
            return Ok(Some(Version::new([0])));
        };
        let p = self.project(name)?;
        Ok(self.shared.pick(name, &p, range))
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, VersionRange, String>, ResolveError> {
        let meta = match Self::name_of(package) {
            None => None,
            Some(name) => {
                let m = self.metadata(name, version)?;
                if let Some(rp) = &m.requires_python
                    && !self.shared.requires_python_ok(Some(rp))
                {
                    return Ok(Dependencies::Unavailable(format!(
                        "it requires Python {rp}"
                    )));
                }
                Some(m)
            }
        };
        let deps = self
            .shared
            .dependencies_of(package, version, meta.as_deref())?;
        {
            let mut order = self.shared.order.lock().expect("lock");
            for p in deps.keys() {
                let n = order.len();
                order.entry(p.clone()).or_insert(n);
            }
        }
        for (p, (range, _)) in &deps {
            if let Pkg::Dist(n) = p {
                self.prefetch(n.clone(), range.clone());
            }
        }
        Ok(Dependencies::Available(
            deps.into_iter().map(|(p, (r, _))| (p, r)).collect(),
        ))
    }
}

/// A version range in PEP 440 words: `>=1.2, <2`, `==1.0`, `any version`.
pub(crate) fn fmt_range(r: &VersionRange) -> String {
    if r == &VersionRange::full() {
        return "(any version)".into();
    }
    if r.is_empty() {
        return "(no version)".into();
    }
    if let Some(v) = r.as_singleton() {
        return format!("=={v}");
    }
    r.iter()
        .map(|(lo, hi)| {
            let mut parts = Vec::new();
            match lo {
                Bound::Included(v) => parts.push(format!(">={v}")),
                Bound::Excluded(v) => parts.push(format!(">{v}")),
                Bound::Unbounded => {}
            }
            match hi {
                Bound::Included(v) => parts.push(format!("<={v}")),
                Bound::Excluded(v) => parts.push(format!("<{v}")),
                Bound::Unbounded => {}
            }
            parts.join(", ")
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Resolves `req` against the indexes.
pub async fn resolve(
    client: &IndexClient,
    req: ResolveRequest,
) -> Result<Resolution, ResolveError> {
    resolve_from(Arc::new(IndexSource::new(client)), req).await
}

/// Resolves `req` against `source`.
pub async fn resolve_from(
    source: Arc<dyn PackageSource>,
    req: ResolveRequest,
) -> Result<Resolution, ResolveError> {
    let shared = Arc::new(Shared {
        source,
        env: marker_env(&req.target),
        priorities: req.target.priorities(),
        python: Version::new([3, u64::from(req.target.python_minor), 0]),
        projects: Mutex::default(),
        links: OnceCell::new(),
        metas: Mutex::default(),
        order: Mutex::default(),
        explicit_pre: Mutex::default(),
        prefetched: Mutex::default(),
        tasks: Mutex::default(),
        req,
    });
    let rt = tokio::runtime::Handle::current();
    let s2 = shared.clone();
    let result = tokio::task::spawn_blocking(move || solve(Provider { shared: s2, rt }))
        .await
        .map_err(|e| ResolveError::Internal(e.to_string()))?;
    // Prefetches of projects the solution does not need are not waited for.
    for t in shared.tasks.lock().expect("lock").drain(..) {
        t.abort();
    }
    result
}

fn solve(provider: Provider) -> Result<Resolution, ResolveError> {
    let shared = provider.shared.clone();
    let selected = match pubgrub::resolve(&provider, Pkg::Root, Version::new([0])) {
        Ok(s) => s,
        Err(PubGrubError::NoSolution(tree)) => {
            return Err(ResolveError::NoSolution {
                explanation: explain(&tree, &shared),
            });
        }
        Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorRetrievingDependencies { source, .. }) => return Err(source),
        Err(e) => return Err(ResolveError::Internal(e.to_string())),
    };
    // Who asked for what, from the chosen versions' dependencies.
    let mut required_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The same, with the range each asked for (to tell who excludes a base version).
    let mut asked: BTreeMap<String, Vec<(String, VersionRange)>> = BTreeMap::new();
    let mut chosen: BTreeMap<&Pkg, &Version> = selected.iter().collect();
    chosen.remove(&Pkg::Root);
    for (pkg, version) in selected.iter() {
        let meta = match Provider::name_of(pkg) {
            Some(n) => Some(provider.metadata(n, version)?),
            None => None,
        };
        for (dep, (range, texts)) in shared.dependencies_of(pkg, version, meta.as_deref())? {
            if let Pkg::Dist(d) = &dep {
                if Provider::name_of(pkg) == Some(d) {
                    continue;
                }
                let who = match pkg {
                    Pkg::Root => format!("the requirements ({})", texts.join(", ")),
                    _ => format!("{pkg} {version} ({})", texts.join(", ")),
                };
                asked
                    .entry(d.clone())
                    .or_default()
                    .push((who.clone(), range));
                required_by.entry(d.clone()).or_default().insert(who);
            }
        }
    }
    let mut packages = Vec::new();
    let mut replacements = Vec::new();
    for (&pkg, &version) in &chosen {
        let Pkg::Dist(name) = pkg else { continue };
        let p = provider.project(name)?;
        let c = &p.versions[version];
        let by: Vec<String> = required_by
            .get(name)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let base = shared.req.installed.get(name);
        if let Some(b) = base
            && b != version
        {
            replacements.push(Replacement {
                name: name.clone(),
                base_version: b.to_string(),
                locked_version: version.to_string(),
                required_by: why_replaced(&provider, &chosen, &asked, &required_by, name, b)
                    .unwrap_or_else(|| by.clone()),
            });
        }
        packages.push(Locked {
            name: name.clone(),
            version: version.clone(),
            wheel: c.wheel.clone(),
            index: p.index.clone().unwrap_or_default(),
            in_base: base == Some(version),
            required_by: by,
        });
    }
    Ok(Resolution {
        target: shared.req.target.clone(),
        packages,
        replacements,
    })
}

/// Parses requirement lines (PEP 508).
pub fn parse_requirements(lines: &[String]) -> Result<Vec<Requirement<VerbatimUrl>>, ResolveError> {
    lines
        .iter()
        .map(|l| {
            crate::requirement::parse(l).map_err(|message| ResolveError::Requirement {
                requirement: l.clone(),
                message,
            })
        })
        .collect()
}

/// `name==version` lines (e.g. a base's installed set) as a name → version map.
pub fn parse_installed(text: &str) -> Result<BTreeMap<String, Version>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (n, v) = line
            .split_once("==")
            .ok_or_else(|| format!("line {}: `{line}` is not name==version", i + 1))?;
        let v = Version::from_str(v.trim()).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.insert(normalize(n.trim()), v);
    }
    Ok(out)
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> VersionRange {
        VersionRange::from(VersionSpecifiers::from_str(s).unwrap())
    }

    #[test]
    fn ranges_read_like_specifiers() {
        assert_eq!(fmt_range(&range(">=2.31")), ">=2.31");
        assert_eq!(fmt_range(&range("==1.0")), "==1.0");
        assert_eq!(fmt_range(&VersionRange::full()), "(any version)");
        assert_eq!(fmt_range(&range(">=1.21.1,<=3")), ">=1.21.1, <=3");
        assert!(fmt_range(&range("!=1.5")).contains(" or "));
    }

    #[test]
    fn installed_lines() {
        let m = parse_installed("# base\nNumPy==1.26.4\npydantic == 2.9.2\n\n").unwrap();
        assert_eq!(m["numpy"].to_string(), "1.26.4");
        assert_eq!(m["pydantic"].to_string(), "2.9.2");
        assert!(parse_installed("numpy>=1").is_err());
    }

    #[test]
    fn versions_of_files() {
        assert_eq!(
            spec_version("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl").unwrap(),
            Version::from_str("2.1.0").unwrap()
        );
        assert_eq!(
            spec_version("scikit_learn-1.5.2.tar.gz").unwrap(),
            Version::from_str("1.5.2").unwrap()
        );
        assert!(spec_version("x.exe").is_none());
    }

    #[test]
    fn index_order_is_first_index_with_pins() {
        let c = IndexConfig {
            default: "https://pypi.org/simple".into(),
            extra: vec!["https://extra/simple".into()],
            per_package: [("torch".to_string(), "https://torch/whl".into())].into(),
            find_links: vec![],
        };
        assert_eq!(c.order("torch"), vec!["https://torch/whl".into()]);
        assert_eq!(
            c.order("numpy"),
            vec![
                IndexUrl::from("https://extra/simple"),
                "https://pypi.org/simple".into()
            ]
        );
    }
}
