//! Parsing PEP 508 requirement strings from untrusted text (requirement files, recipes,
//! `Requires-Dist` of any index's wheels) without letting the parser take the process down.
//!
//! `pep508_rs` 0.9 panics on some malformed names (a name token ending in `-` followed by a
//! non-ASCII character: "`PackageName` validation should match PEP 508 parsing", found by
//! `fuzz_requirement_files`). [`parse`] checks the name first and keeps a panic, should another
//! one exist, an ordinary error.

use std::str::FromStr;

use pep508_rs::{Requirement, VerbatimUrl};

/// Parses `text` as a PEP 508 requirement; every failure is an `Err` with the parser's first
/// line of explanation.
pub fn parse(text: &str) -> Result<Requirement<VerbatimUrl>, String> {
    check_name(text)?;
    match std::panic::catch_unwind(|| Requirement::<VerbatimUrl>::from_str(text)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string().lines().next().unwrap_or_default().to_string()),
        Err(_) => Err("the requirement parser failed on this text".into()),
    }
}

/// Checks the distribution name a requirement starts with (PEP 508: letters, digits, `.`,
/// `_`, `-`, beginning and ending with a letter or digit), before the parser sees it.
pub fn check_name(text: &str) -> Result<(), String> {
    let name: &str = {
        let t = text.trim_start();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(t.len());
        &t[..end]
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let well_formed = name.is_empty() || (name.starts_with(alnum) && name.ends_with(alnum));
    if !well_formed {
        return Err(format!(
            "`{name}` is not a valid distribution name (letters, digits, `.`, `_` and `-`, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// PEP 503 normalisation: lowercase, runs of `-_.` become `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_pep508_parser_panics_on_are_errors() {
        for bad in ["A-\u{1e140}", "A-", "-a", "a. ; python_version > '3'"] {
            assert!(super::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a",
            "A.b-c_d>=1",
            "requests[socks]==2.31; python_version >= '3.8'",
        ] {
            assert!(super::parse(good).is_ok(), "{good:?}");
        }
    }
}
