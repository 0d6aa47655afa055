//! Files several distributions ship: who keeps each one, decided as pip would (dependencies
//! first, the later file wins), from RECORDs alone, in one place for every output.

use super::*;

/// A file two distributions ship (`replaced` is installed first, `by` replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The image path both ship.
    pub path: String,
    /// The distribution installed first.
    pub replaced: String,
    /// The distribution whose file wins.
    pub by: String,
    /// Both ship the same bytes.
    pub identical: bool,
}

/// One distribution's installed files, as overlap resolution sees them: name, `Requires-Dist`
/// names, and each file's layer path with its RECORD hash (`None` when RECORD has none).
#[derive(Debug, Clone)]
pub struct Shipped<'a> {
    /// The distribution's name.
    pub name: &'a str,
    /// Its `Requires-Dist` names.
    pub requires: &'a [String],
    /// Each file's image path and RECORD hash.
    pub files: Vec<(&'a str, Option<&'a str>)>,
}

/// How files that several distributions ship are resolved ([`plan_overlaps`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct OverlapPlan {
    /// Indices of the distributions in the order pip installs them.
    pub order: Vec<usize>,
    /// Per distribution (input index): the paths it loses to a later one, each with whether
    /// the winner's bytes are identical (then its RECORD row stays: the file it lists is there).
    pub lose: Vec<std::collections::BTreeMap<String, bool>>,
    pub overlaps: Vec<Overlap>,
}

/// The order pip installs `items` in when two ship the same file: dependencies before their
/// dependents (so a dependent's file replaces its dependency's), otherwise by name; a
/// dependency cycle is broken by name.
pub(crate) fn install_order(items: &[Shipped]) -> Vec<usize> {
    let by_name: std::collections::HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, d)| (normalize(d.name), i))
        .collect();
    let mut names: Vec<usize> = (0..items.len()).collect();
    names.sort_by_key(|&i| normalize(items[i].name));
    let mut state = vec![0u8; items.len()]; // 0 new, 1 visiting, 2 done
    let mut out = Vec::with_capacity(items.len());
    fn visit(
        i: usize,
        items: &[Shipped],
        by_name: &std::collections::HashMap<String, usize>,
        state: &mut [u8],
        out: &mut Vec<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        let mut deps: Vec<usize> = items[i]
            .requires
            .iter()
            .filter_map(|r| by_name.get(r).copied())
            .filter(|&d| d != i)
            .collect();
        deps.sort_by_key(|&d| normalize(items[d].name));
        deps.dedup();
        for d in deps {
            visit(d, items, by_name, state, out);
        }
        state[i] = 2;
        out.push(i);
    }
    for i in names {
        visit(i, items, &by_name, &mut state, &mut out);
    }
    out
}

/// Decides, as pip does, which distribution's file stays where several ship one path: in
/// [`install_order`], the last one installed. The one place every output (bundle, `install
/// --target`, image layers) takes this decision from.
pub(crate) fn plan_overlaps(items: &[Shipped]) -> OverlapPlan {
    let order = install_order(items);
    let mut owner: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for &i in &order {
        for (path, _) in &items[i].files {
            owner.insert(path, i);
        }
    }
    let mut lose = vec![std::collections::BTreeMap::new(); items.len()];
    let mut overlaps = Vec::new();
    for &i in &order {
        for &(path, hash) in &items[i].files {
            let w = owner[path];
            if w == i {
                continue;
            }
            let theirs = items[w].files.iter().find(|(p, _)| *p == path);
            let identical = matches!((hash, theirs), (Some(a), Some((_, Some(b)))) if a == *b);
            lose[i].insert(path.to_string(), identical);
            overlaps.push(Overlap {
                path: path.to_string(),
                replaced: items[i].name.to_string(),
                by: items[w].name.to_string(),
                identical,
            });
        }
    }
    OverlapPlan {
        order,
        lose,
        overlaps,
    }
}

/// Logs the overlaps whose bytes differ (at `-v`); identical ones are silent.
pub fn log_overlaps(overlaps: &[Overlap]) {
    for o in overlaps.iter().filter(|o| !o.identical) {
        tracing::info!(
            "/{} is shipped by {} and {}: {} is installed after it and its file is kept, as pip does",
            o.path,
            o.replaced,
            o.by,
            o.by
        );
    }
}

impl Installed {
    /// This distribution as overlap resolution sees it.
    pub fn shipped(&self) -> Shipped<'_> {
        Shipped {
            name: &self.name,
            requires: &self.requires,
            files: self
                .entries
                .iter()
                .filter(|e| !matches!(e.kind, EntryKind::Dir))
                .map(|e| (e.path.as_str(), self.hash_of(&e.path)))
                .collect(),
        }
    }

    /// This distribution without the files it loses (`lose`: path → identical, from
    /// [`plan_overlaps`]): their entries go, and the RECORD rows of those whose bytes differ, so
    /// its RECORD lists what it installed.
    pub fn without(&self, lose: &std::collections::BTreeMap<String, bool>) -> Installed {
        let mut entries: Vec<LayerEntry> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Dir) || !lose.contains_key(&e.path))
            .cloned()
            .collect();
        let dropped_rows: std::collections::HashSet<String> = lose
            .iter()
            .filter(|(_, identical)| !**identical)
            .map(|(p, _)| self.record_path(p))
            .collect();
        let mut record = self.record.clone();
        if !dropped_rows.is_empty() {
            record.retain(|(rel, _, _)| !dropped_rows.contains(rel));
            let at = self.record_entry();
            if let Some(r) = entries.iter_mut().find(|e| e.path == at) {
                r.kind = EntryKind::Bytes(record_csv(&record, &self.dist_info));
            }
        }
        Installed {
            name: self.name.clone(),
            version: self.version.clone(),
            dist_info: self.dist_info.clone(),
            entries,
            requires: self.requires.clone(),
            record,
            site_packages: self.site_packages.clone(),
        }
    }
}
