//! Error messages with their causes: `outer: inner: innermost`, each cause added once.

/// `e` and its sources, joined with ": ", skipping a source whose text the message already
/// contains (many errors repeat their source in their own text).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let m = x.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = x.source();
    }
    s
}
