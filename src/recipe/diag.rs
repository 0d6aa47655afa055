//! Recipe diagnostics: every problem names the file, line and column, and says what to write.

use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Serialize;

/// One problem found in a recipe file.
#[derive(Debug, Clone, thiserror::Error, Diagnostic, Serialize)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Problem {
    /// The recipe file as the user named it.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[help]
    pub help: Option<String>,
    #[serde(skip)]
    #[source_code]
    src: NamedSource<String>,
    #[serde(skip)]
    #[label("here")]
    span: Option<SourceSpan>,
}

/// Collects problems for one recipe file and turns byte spans into line:column.
pub struct Reporter {
    file: String,
    text: String,
    pub problems: Vec<Problem>,
}

impl Reporter {
    pub fn new(path: &Path, text: &str) -> Self {
        Reporter {
            file: display_path(path),
            text: text.to_string(),
            problems: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the file).
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<String>) {
        let (line, column) = line_col(&self.text, span.start);
        let len = span.end.saturating_sub(span.start).max(1);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            help,
            src: NamedSource::new(self.file.clone(), self.text.clone()),
            span: Some(SourceSpan::new(span.start.into(), len)),
        });
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The path as the user would recognise it: relative to the current directory when possible.
pub fn display_path(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The `quoted` words of a serde message tail ("expected one of `a`, `b`").
fn backticked(tail: &str) -> Vec<&str> {
    tail.split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde/toml messages into recipe language and suggests the closest key.
pub fn explain_toml_error(message: &str) -> (String, Option<String>) {
    let message = message.trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        let expected = backticked(tail);
        let best = expected
            .iter()
            .map(|e| (strsim::jaro_winkler(field, e), *e))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let help = match best {
            Some((_, key)) => format!("did you mean `{key}`?"),
            None if expected.is_empty() => "remove this key".to_string(),
            None => format!("valid keys here: {}", expected.join(", ")),
        };
        return (format!("unknown key `{field}`"), Some(help));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((v, tail)) = rest.split_once('`')
    {
        let expected = backticked(tail);
        return (
            format!("unknown value `{v}`"),
            Some(format!("write one of: {}", expected.join(", "))),
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((f, _)) = rest.split_once('`')
    {
        return (
            format!("missing required key `{f}`"),
            Some(format!("add `{f} = …` to this table")),
        );
    }
    if message.starts_with("invalid type") {
        return (
            message,
            Some("check the value's type (strings need quotes, lists use [ ])".into()),
        );
    }
    (message, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "a\nbé = 1\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 2), (2, 1));
        assert_eq!(line_col(t, t.find('=').unwrap()), (2, 4));
    }

    #[test]
    fn unknown_field_suggests_closest() {
        let (m, h) = explain_toml_error(
            "unknown field `workng_dir`, expected one of `working_dir`, `py_modules`, `excludes`",
        );
        assert_eq!(m, "unknown key `workng_dir`");
        assert_eq!(h.unwrap(), "did you mean `working_dir`?");
    }
}
