//! Explanations: pubgrub's derivation tree rewritten as plain facts, why no version fits, and
//! why a base distribution could not keep its version (the chain that excludes it).

use super::*;

pub(super) fn with_range(p: &Pkg, r: &VersionRange) -> String {
    if r == &VersionRange::full() {
        format!("{p} (any version)")
    } else {
        format!("{p} {}", fmt_range(r))
    }
}

/// Rewrites pubgrub's derivation tree as a list of plain facts, in the order they were used.
pub(super) fn explain(tree: &DerivationTree<Pkg, VersionRange, String>, shared: &Shared) -> String {
    fn walk(t: &DerivationTree<Pkg, VersionRange, String>, shared: &Shared, out: &mut Vec<String>) {
        match t {
            DerivationTree::Derived(d) => {
                walk(&d.cause1, shared, out);
                walk(&d.cause2, shared, out);
            }
            DerivationTree::External(e) => {
                let fact = match e {
                    External::NotRoot(..) => return,
                    External::FromDependencyOf(p, _, d, dr) if *p == Pkg::Root => {
                        format!("you require {}", with_range(d, dr))
                    }
                    External::FromDependencyOf(p, pr, d, dr) => {
                        let who = match pr.as_singleton() {
                            Some(v) => format!("{p} {v}"),
                            None => with_range(p, pr),
                        };
                        format!("{who} depends on {}", with_range(d, dr))
                    }
                    External::Custom(p, pr, m) => {
                        format!("{} cannot be used: {m}", with_range(p, pr))
                    }
                    External::NoVersions(p, r) => no_versions(p, r, shared),
                };
                if !out.contains(&fact) {
                    out.push(fact);
                }
            }
        }
    }
    let mut facts = Vec::new();
    walk(tree, shared, &mut facts);
    // What was asked for first, then what packages need, then why nothing fits.
    facts.sort_by_key(|f| {
        if f.starts_with("you require") {
            0
        } else if f.contains(" depends on ") {
            1
        } else {
            2
        }
    });
    format!(
        "the requirements cannot all be met:\n{}\nso no set of versions satisfies them",
        facts
            .iter()
            .map(|f| format!("  - {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

pub(super) fn no_versions(p: &Pkg, r: &VersionRange, shared: &Shared) -> String {
    let (Pkg::Dist(name) | Pkg::Extra(name, _)) = p else {
        return format!("{p} has no versions");
    };
    let project = shared
        .projects
        .lock()
        .expect("lock")
        .get(name)
        .and_then(|c| c.get().cloned())
        .and_then(Result::ok);
    let Some(project) = project else {
        return format!("no version of {} could be read", with_range(p, r));
    };
    if project.index.is_none() && !project.in_find_links {
        return format!(
            "{name} is not on the package index ({})",
            project.searched.join(", ")
        );
    }
    if let Some(v) = shared.req.installed.get(name) {
        if shared.req.no_replace_base {
            return format!(
                "the base image ships {name} {v} and --no-replace-base forbids any other version, but {} is needed",
                with_range(p, r)
            );
        }
        if shared.req.pinned_to_base.contains(name) {
            return format!(
                "the base image ships {name} {v}, which the cluster runs (KubeRay's rayVersion, the head), so raypack never replaces it ([dependencies] replace_ray = true allows it), but {} is needed",
                with_range(p, r)
            );
        }
    }
    let unusable: Vec<String> = project
        .unusable
        .iter()
        .rev()
        .filter(|v| r.contains(v))
        .take(5)
        .map(|v| v.to_string())
        .collect();
    let newest: Vec<String> = project
        .versions
        .keys()
        .rev()
        .take(5)
        .map(|v| v.to_string())
        .collect();
    let mut s = format!(
        "no version of {} has a wheel for {}",
        with_range(p, r),
        shared.req.target
    );
    if !unusable.is_empty() {
        s.push_str(&format!(
            " ({} only offer sdists or wheels for other platforms/Pythons; raypack does not build sdists)",
            unusable.join(", ")
        ));
    }
    if newest.is_empty() {
        s.push_str(&format!(
            "; {name} has no usable wheel in any version: build one (`pip wheel --no-deps {name}`) and publish it to an index in [dependencies] extra_index_urls, or leave {name} out of the recipe"
        ));
    } else {
        s.push_str(&format!("; usable versions include {}", newest.join(", ")));
    }
    s
}

/// Why the base's `name` `base` could not stay: the requirements whose range excludes it, else
/// the dependency of `name` `base` itself that the solution cannot meet (the chain that
/// excludes it: `virtualenv 21.15.11 needs packaging>=25, but packaging 24.2 is locked
/// (required by mlflow-skinny 3.1.1 (packaging<25))`). `None` when neither is found.
pub(super) fn why_replaced(
    provider: &Provider,
    chosen: &BTreeMap<&Pkg, &Version>,
    asked: &BTreeMap<String, Vec<(String, VersionRange)>>,
    required_by: &BTreeMap<String, BTreeSet<String>>,
    name: &str,
    base: &Version,
) -> Option<Vec<String>> {
    let direct: Vec<String> = asked
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(_, range)| !range.contains(base))
        .map(|(who, _)| who.clone())
        .collect();
    if !direct.is_empty() {
        return Some(direct);
    }
    let pkg = Pkg::Dist(name.to_string());
    let project = provider.project(name).ok()?;
    if !project.versions.contains_key(base) {
        return Some(vec![format!(
            "{name} {base} has no wheel for {} on the index",
            provider.shared.req.target
        )]);
    }
    let meta = provider.metadata(name, base).ok()?;
    let deps = provider
        .shared
        .dependencies_of(&pkg, base, Some(&meta))
        .ok()?;
    let mut out = Vec::new();
    for (dep, (range, texts)) in deps {
        let Pkg::Dist(d) = &dep else { continue };
        if d == name {
            continue;
        }
        let locked = chosen.get(&dep).copied();
        if let Some(v) = locked
            && !range.contains(v)
        {
            // Who keeps it out of what `name` `base` needs: a range that misses it entirely.
            let excluders: Vec<String> = asked
                .get(d)
                .into_iter()
                .flatten()
                .filter(|(_, r)| r.intersection(&range).is_empty())
                .map(|(who, _)| who.clone())
                .collect();
            let who: Vec<String> = if excluders.is_empty() {
                required_by.get(d).into_iter().flatten().cloned().collect()
            } else {
                excluders
            };
            out.push(format!(
                "{name} {base} needs {}, but {d} {v} is locked{}",
                texts.join(", "),
                if who.is_empty() {
                    String::new()
                } else {
                    format!(" (required by {})", who.join("; "))
                }
            ));
        }
    }
    (!out.is_empty()).then_some(out)
}
