//! The shape of the code is the shape of the data flow, and the build checks it:
//! the workspace's crates depend only on crates earlier in the flow, and inside every crate the
//! top-level modules form no import cycle (a module's `#[cfg(test)] mod tests` is left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The flow: files → archives (pack), Python packaging (python), images (oci), object stores
/// (store), then the app.
const FLOW: &[(&str, &str)] = &[
    ("raypack-pack", "crates/raypack-pack"),
    ("raypack-python", "crates/raypack-python"),
    ("raypack-oci", "crates/raypack-oci"),
    ("raypack-store", "crates/raypack-store"),
    ("raypack", "."),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn crates_depend_only_on_crates_earlier_in_the_flow() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = FLOW[..FLOW.len() - 1]
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(on_disk, listed, "every crate has its place in FLOW");
    for (i, (name, dir)) in FLOW.iter().enumerate() {
        let manifest: toml::Table = std::fs::read_to_string(root().join(dir).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some(*name));
        let deps = manifest["dependencies"].as_table().unwrap();
        for dep in deps.keys().filter(|k| k.starts_with("raypack")) {
            let j = FLOW
                .iter()
                .position(|(n, _)| n == dep)
                .unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
            assert!(
                j < i,
                "{name} depends on {dep}, which comes later in the flow"
            );
        }
    }
}

/// Top-level module → the sibling modules its code names (`crate::m`, or `super::m` from a
/// top-level file, or `use crate::{m, …}`).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let path_re = regex::Regex::new(r"\b(crate|super)::([a-z_0-9]+)").unwrap();
    let group_re = regex::Regex::new(r"\b(crate|super)::\{([^}]*)\}").unwrap();
    let word_re = regex::Regex::new(r"(?:^|[\s,{])([a-z_0-9]+)").unwrap();
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let module_of = |p: &Path| -> (String, bool) {
        let rel = p.strip_prefix(src).unwrap();
        let parts: Vec<_> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let top = parts[0].trim_end_matches(".rs").to_string();
        // `super::` names a sibling of the top-level module only from `x.rs` or `x/mod.rs`.
        let top_level_file = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
        (top, top_level_file)
    };
    let mut names = BTreeSet::new();
    for f in &files {
        names.insert(module_of(f).0);
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let (m, top_level_file) = module_of(f);
        if ["lib", "main", "fuzz"].contains(&m.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut refs = BTreeSet::new();
        for c in path_re.captures_iter(&code) {
            if &c[1] == "crate" || top_level_file {
                refs.insert(c[2].to_string());
            }
        }
        for c in group_re.captures_iter(&code) {
            if &c[1] == "crate" || top_level_file {
                for w in word_re.captures_iter(&c[2]) {
                    refs.insert(w[1].to_string());
                }
            }
        }
        let entry = graph.entry(m.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| {
            *r != m && names.contains(r) && !["lib", "main", "fuzz"].contains(&r.as_str())
        }));
    }
    graph
}

/// A cycle in `graph`, if any, as the list of modules around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(n.to_string(), Mark::Open);
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            match marks.get(d).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let i = path.iter().position(|p| p == d).unwrap();
                    let mut cycle = path[i..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(n, graph, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycle_inside_any_crate() {
    for (name, dir) in FLOW {
        let graph = module_graph(&root().join(dir).join("src"));
        assert!(graph.len() >= 4, "{name}: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{name}: import cycle {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}
