//! PEP 503 HTML project pages and `--find-links` pages: the anchors, with the attributes PEP
//! 503 / 592 / 658 / 714 define. Only what these pages use is parsed: `<a …>text</a>` with
//! quoted or bare attribute values and HTML character references; everything else is skipped.

/// One file link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The link text, else the last path segment of the URL.
    pub filename: String,
    /// Absolute, without the `#sha256=…` fragment.
    pub url: String,
    pub sha256: Option<String>,
    pub requires_python: Option<String>,
    /// `Some(reason)` (possibly empty) when `data-yanked` is present.
    pub yanked: Option<String>,
    /// PEP 658/714: `None` = not offered, `Some(None)` = offered without a hash.
    pub core_metadata: Option<Option<String>>,
}

/// Decodes the character references HTML pages use (`&lt;` `&gt;` `&amp;` `&quot;` `&#39;`,
/// decimal and hex numeric references).
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let ch = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The attributes of one start tag's inside (`href="x" data-yanked`), lower-cased names.
fn attributes(tag: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let b = tag.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                let v = &tag[vs..i.min(b.len())];
                i += 1;
                v
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                &tag[vs..i]
            };
            out.push((name, Some(unescape(value))));
        } else {
            out.push((name, None));
        }
    }
    out
}

/// Every `<a href>` of `body`, resolved against `base` (the page URL; a `<base href>` wins).
pub(crate) fn anchors(base: &url::Url, body: &str) -> Vec<Anchor> {
    let lower = body.to_ascii_lowercase();
    let mut base = base.clone();
    if let Some(i) = lower.find("<base ")
        && let Some(end) = lower[i..].find('>')
        && let Some((_, Some(h))) = attributes(&body[i + 5..i + end])
            .into_iter()
            .find(|(n, _)| n == "href")
        && let Ok(u) = base.join(&h)
    {
        base = u;
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("<a") {
        let start = at + i;
        let after = lower.as_bytes().get(start + 2).copied();
        if !matches!(after, Some(c) if c.is_ascii_whitespace()) {
            at = start + 2;
            continue;
        }
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else {
            break;
        };
        let close = lower[tag_end..]
            .find("</a>")
            .map(|e| tag_end + e)
            .unwrap_or(tag_end + 1);
        let attrs = attributes(&body[start + 2..tag_end]);
        let text = unescape(body[tag_end + 1..close.max(tag_end + 1)].trim());
        at = close.max(tag_end + 1);
        let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let Some(Some(href)) = get("href") else {
            continue;
        };
        let Ok(mut url) = base.join(&href) else {
            continue;
        };
        let sha256 = url.fragment().and_then(|f| {
            f.strip_prefix("sha256=")
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
        });
        url.set_fragment(None);
        let filename = if text.is_empty() || text.contains('<') {
            url.path_segments()
                .and_then(|mut s| s.next_back())
                .map(|s| {
                    url::form_urlencoded::parse(s.as_bytes())
                        .map(|(k, _)| k.to_string())
                        .next()
                        .unwrap_or_else(|| s.to_string())
                })
                .unwrap_or_default()
        } else {
            text
        };
        let meta = get("data-core-metadata").or_else(|| get("data-dist-info-metadata"));
        let core_metadata = meta.map(|v| match v {
            Some(v) if v.starts_with("sha256=") => Some(v["sha256=".len()..].to_ascii_lowercase()),
            _ => None,
        });
        out.push(Anchor {
            filename,
            url: url.to_string(),
            sha256,
            requires_python: get("data-requires-python").flatten(),
            yanked: get("data-yanked").map(|v| v.unwrap_or_default()),
            core_metadata,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_page_with_every_attribute() {
        let page = r#"<!DOCTYPE html><html><body>
<h1>Links for demo</h1>
<a href="../../packages/demo-1.0-py3-none-any.whl#sha256=ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=1111111111111111111111111111111111111111111111111111111111111111">demo-1.0-py3-none-any.whl</a><br/>
<A HREF='https://files.example.org/demo-0.9.tar.gz' data-yanked>demo-0.9.tar.gz</A>
<a href="demo-0.8-py3-none-any.whl" data-yanked="broken &amp; bad" data-core-metadata=true>demo-0.8-py3-none-any.whl</a>
<abbr>not a link</abbr><a name="no-href">x</a>
</body></html>"#;
        let base = url::Url::parse("https://idx.example.org/simple/demo/").unwrap();
        let a = anchors(&base, page);
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(
            a[0].url,
            "https://idx.example.org/packages/demo-1.0-py3-none-any.whl"
        );
        assert_eq!(a[0].filename, "demo-1.0-py3-none-any.whl");
        assert_eq!(
            a[0].sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(a[0].requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(a[0].yanked, None);
        assert_eq!(a[0].core_metadata, Some(Some("1".repeat(64))));
        assert_eq!(a[1].yanked.as_deref(), Some(""));
        assert_eq!(a[1].sha256, None);
        assert_eq!(
            a[2].url,
            "https://idx.example.org/simple/demo/demo-0.8-py3-none-any.whl"
        );
        assert_eq!(a[2].yanked.as_deref(), Some("broken & bad"));
        assert_eq!(a[2].core_metadata, Some(None));
    }

    #[test]
    fn base_href_and_references() {
        let page = r#"<base href="https://cdn.example.org/w/"><a href="x-1-py3-none-any.whl">x-1-py3-none-any.whl</a>"#;
        let a = anchors(&url::Url::parse("https://idx/simple/x/").unwrap(), page);
        assert_eq!(a[0].url, "https://cdn.example.org/w/x-1-py3-none-any.whl");
        assert_eq!(
            unescape("a &#60; b &#x3E; c &bogus; &"),
            "a < b > c &bogus; &"
        );
    }
}
