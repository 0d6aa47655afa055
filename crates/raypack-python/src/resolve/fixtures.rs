//! The resolver on fixtures: an in-memory [`PackageSource`] (no network, no cache), so its
//! decisions — preferences, the base's versions, yanked files, pre-releases, markers and
//! extras, first-index lookups, conflicts — are tested directly.

use super::*;

/// One wheel of a fixture project: version, `Requires-Dist` lines, yanked.
type Release = (&'static str, &'static [&'static str], bool);

#[derive(Default)]
struct Fixtures {
    /// index → project → releases.
    indexes: BTreeMap<String, BTreeMap<String, Vec<Release>>>,
}

impl Fixtures {
    fn with(mut self, index: &str, project: &str, releases: &[Release]) -> Fixtures {
        self.indexes
            .entry(index.to_string())
            .or_default()
            .insert(project.to_string(), releases.to_vec());
        self
    }

    fn file(project: &str, (version, _, yanked): &Release) -> DistFile {
        let filename = format!("{}-{version}-py3-none-any.whl", project.replace('-', "_"));
        DistFile {
            url: format!("https://fixtures.invalid/{filename}"),
            filename,
            sha256: Some("0".repeat(64)),
            requires_python: None,
            yanked: *yanked,
            yanked_reason: None,
            core_metadata: Some(None),
            size: None,
            upload_time: None,
        }
    }
}

impl PackageSource for Fixtures {
    fn find_links<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<DistFile>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn project<'a>(
        &'a self,
        index: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProjectPage>, String>> {
        Box::pin(async move {
            Ok(self
                .indexes
                .get(index)
                .and_then(|p| p.get(name))
                .map(|releases| ProjectPage {
                    index: index.to_string(),
                    files: releases.iter().map(|r| Fixtures::file(name, r)).collect(),
                }))
        })
    }

    fn metadata<'a>(&'a self, wheel: &'a DistFile) -> BoxFuture<'a, Result<CoreMetadata, String>> {
        Box::pin(async move {
            let w = WheelName::parse(&wheel.filename).ok_or("not a wheel")?;
            let name = normalize(&w.name);
            let requires = self
                .indexes
                .values()
                .filter_map(|p| p.get(&name))
                .flatten()
                .find(|(v, _, _)| *v == w.version)
                .map(|(_, r, _)| r.iter().map(|s| s.to_string()).collect())
                .ok_or_else(|| format!("no metadata for {}", wheel.filename))?;
            Ok(CoreMetadata {
                name,
                version: w.version,
                requires_dist: requires,
                requires_python: None,
                provides_extra: vec!["fast".into()],
            })
        })
    }
}

const PYPI: &str = "https://pypi.fixture/simple";
const PRIVATE: &str = "https://private.fixture/simple";

fn request(reqs: &[&str]) -> ResolveRequest {
    ResolveRequest {
        requirements: parse_requirements(&reqs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap(),
        target: Target::new("linux/amd64", "3.11", "2_35").unwrap(),
        indexes: IndexConfig {
            default: PYPI.into(),
            extra: Vec::new(),
            per_package: BTreeMap::new(),
            find_links: Vec::new(),
        },
        preferences: BTreeMap::new(),
        installed: BTreeMap::new(),
        no_replace_base: false,
        pinned_to_base: BTreeSet::new(),
    }
}

fn v(s: &str) -> Version {
    Version::from_str(s).unwrap()
}

fn solve_on(source: Fixtures, req: ResolveRequest) -> Result<BTreeMap<String, String>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(resolve_from(Arc::new(source), req))
        .map(|r| {
            r.packages
                .into_iter()
                .map(|p| (p.name, p.version.to_string()))
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn world() -> Fixtures {
    Fixtures::default()
        .with(
            PYPI,
            "app",
            &[
                ("1.0", &["lib>=1"], false),
                ("2.0", &["lib>=2", "extra-dep; extra == 'fast'"], false),
            ],
        )
        .with(
            PYPI,
            "lib",
            &[
                ("1.0", &[], false),
                ("2.0", &["winonly; sys_platform == 'win32'"], false),
                ("2.1", &[], true),
                ("3.0b1", &[], false),
            ],
        )
        .with(PYPI, "extra-dep", &[("0.5", &[], false)])
        .with(PYPI, "winonly", &[("1.0", &[], false)])
        .with(PYPI, "old", &[("1.0", &["lib<2"], false)])
}

#[test]
fn newest_final_non_yanked_versions_and_markers() {
    let got = solve_on(world(), request(&["app"])).unwrap();
    // lib 2.1 is yanked, 3.0b1 a pre-release; winonly's marker is false on Linux.
    assert_eq!(
        got,
        BTreeMap::from([("app".into(), "2.0".into()), ("lib".into(), "2.0".into())])
    );
}

#[test]
fn extras_add_their_requirements() {
    let got = solve_on(world(), request(&["app[fast]"])).unwrap();
    assert_eq!(
        got.get("extra-dep").map(String::as_str),
        Some("0.5"),
        "{got:?}"
    );
}

#[test]
fn a_pre_release_is_taken_only_when_asked_for_and_a_pin_may_be_yanked() {
    assert_eq!(
        solve_on(world(), request(&["lib>=3.0b1"])).unwrap()["lib"],
        "3.0b1"
    );
    assert_eq!(
        solve_on(world(), request(&["lib==2.1"])).unwrap()["lib"],
        "2.1"
    );
}

#[test]
fn the_base_and_the_previous_lock_are_preferred() {
    let mut req = request(&["app"]);
    req.installed.insert("lib".into(), v("2.0"));
    req.preferences.insert("app".into(), v("1.0"));
    let got = solve_on(world(), req).unwrap();
    assert_eq!((got["app"].as_str(), got["lib"].as_str()), ("1.0", "2.0"));

    // A requirement that excludes the base's version replaces it, unless the base's
    // versions may not be replaced: then it is a conflict naming both.
    let mut req = request(&["old"]);
    req.installed.insert("lib".into(), v("2.0"));
    assert_eq!(solve_on(world(), req.clone()).unwrap()["lib"], "1.0");
    req.no_replace_base = true;
    let err = solve_on(world(), req).unwrap_err();
    assert!(err.contains("lib") && err.contains("old"), "{err}");
}

#[test]
fn conflicts_explain_the_chain() {
    let err = solve_on(world(), request(&["old", "app>=2"])).unwrap_err();
    assert!(
        err.contains("old") && err.contains("app") && err.contains("lib"),
        "{err}"
    );
}

#[test]
fn first_index_lookup_and_per_package_pins() {
    // `lib` is on the private extra index: only its versions count there (no fallback to
    // PyPI's newer one), as uv's first-index strategy does against dependency confusion.
    let source = world().with(PRIVATE, "lib", &[("1.0", &[], false)]);
    let mut req = request(&["lib"]);
    req.indexes.extra = vec![PRIVATE.into()];
    assert_eq!(solve_on(source, req).unwrap()["lib"], "1.0");

    let source = world().with(PRIVATE, "app", &[("0.9", &["lib"], false)]);
    let mut req = request(&["app"]);
    req.indexes.per_package.insert("app".into(), PRIVATE.into());
    let got = solve_on(source, req).unwrap();
    assert_eq!((got["app"].as_str(), got["lib"].as_str()), ("0.9", "2.0"));
}

#[test]
fn a_project_no_index_has_is_named() {
    let err = solve_on(world(), request(&["nowhere"])).unwrap_err();
    assert!(err.contains("nowhere"), "{err}");
}
