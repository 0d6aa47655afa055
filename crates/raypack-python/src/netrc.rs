//! Credentials for private indexes: URL userinfo first, else a `.netrc` entry for the host
//! (`$NETRC`, else `~/.netrc`), as pip and uv do. Applied as HTTP basic auth; never printed
//! (messages show URLs through [`redact`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `machine` → (login, password); `default` under the key `""`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Netrc {
    pub machines: HashMap<String, (String, String)>,
}

impl Netrc {
    /// Parses netrc text (tokens separated by whitespace; `macdef` bodies skipped).
    pub fn parse(text: &str) -> Netrc {
        let mut out = Netrc::default();
        let mut tokens = text.split_whitespace().peekable();
        let mut current: Option<String> = None;
        let (mut login, mut password) = (String::new(), String::new());
        let flush = |m: &mut Option<String>, l: &mut String, p: &mut String, out: &mut Netrc| {
            if let Some(machine) = m.take() {
                out.machines
                    .insert(machine, (std::mem::take(l), std::mem::take(p)));
            }
        };
        while let Some(t) = tokens.next() {
            match t {
                "machine" => {
                    flush(&mut current, &mut login, &mut password, &mut out);
                    current = tokens.next().map(str::to_string);
                }
                "default" => {
                    flush(&mut current, &mut login, &mut password, &mut out);
                    current = Some(String::new());
                }
                "login" => login = tokens.next().unwrap_or_default().to_string(),
                "password" => password = tokens.next().unwrap_or_default().to_string(),
                "account" => {
                    tokens.next();
                }
                "macdef" => {
                    flush(&mut current, &mut login, &mut password, &mut out);
                    // A macro runs to the next blank line, which whitespace splitting loses;
                    // skip to the next `machine`/`default`.
                    while let Some(n) = tokens.peek() {
                        if *n == "machine" || *n == "default" {
                            break;
                        }
                        tokens.next();
                    }
                }
                _ => {}
            }
        }
        flush(&mut current, &mut login, &mut password, &mut out);
        out
    }

    /// The entry for `host`, else the `default` entry.
    pub fn lookup(&self, host: &str) -> Option<&(String, String)> {
        self.machines.get(host).or_else(|| self.machines.get(""))
    }
}

fn netrc_path() -> Option<PathBuf> {
    std::env::var_os("NETRC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")))
}

/// The user's netrc, read once.
pub(crate) fn user_netrc() -> &'static Netrc {
    static N: OnceLock<Netrc> = OnceLock::new();
    N.get_or_init(|| {
        netrc_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| Netrc::parse(&t))
            .unwrap_or_default()
    })
}

/// A GET for `url` with its credentials: userinfo moved into basic auth (and out of the URL),
/// else the netrc entry for its host. `${NAME}` in the userinfo is replaced by the environment
/// variable NAME, as pip does in requirements files, so a token can stay out of every file:
/// `--extra-index-url https://__token__:${PRIVATE_INDEX_TOKEN}@pypi.corp.example/simple`.
pub(crate) fn authed_get(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let Ok(mut u) = url::Url::parse(url) else {
        return http.get(url);
    };
    if !u.username().is_empty() {
        let user = expand_env(&percent(u.username()));
        let pass = u.password().map(|p| expand_env(&percent(p)));
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return http.get(u.as_str()).basic_auth(user, pass);
    }
    if let Some((user, pass)) = remembered(&u) {
        return http.get(url).basic_auth(user, pass);
    }
    match u.host_str().and_then(|h| user_netrc().lookup(h)) {
        Some((login, password)) => http.get(url).basic_auth(login, Some(password)),
        None => http.get(url),
    }
}

type Remembered = std::sync::Mutex<HashMap<String, (String, Option<String>)>>;

fn remembered_store() -> &'static Remembered {
    static R: OnceLock<Remembered> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// `scheme://host:port`, the key credentials are remembered under (pip's netloc rule).
fn origin(u: &url::Url) -> String {
    format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str().unwrap_or_default(),
        u.port_or_known_default().unwrap_or(0)
    )
}

/// Remembers the userinfo of an index URL (the recipe's `index_url`, `extra_index_urls`,
/// `package_indexes`, or a requirements file's index options) for every later request to the
/// same scheme, host and port, as pip does: the files an index lists are often absolute
/// URLs without userinfo on the same host. Nothing is stored on disk or printed.
pub fn remember(url: &str) {
    let Ok(u) = url::Url::parse(url) else { return };
    if u.username().is_empty() {
        return;
    }
    let user = expand_env(&percent(u.username()));
    let pass = u.password().map(|p| expand_env(&percent(p)));
    remembered_store()
        .lock()
        .unwrap()
        .entry(origin(&u))
        .or_insert((user, pass));
}

fn remembered(u: &url::Url) -> Option<(String, Option<String>)> {
    remembered_store().lock().unwrap().get(&origin(u)).cloned()
}

/// Replaces every `${NAME}` (NAME of ASCII letters, digits and `_`, as pip accepts) whose
/// variable is set; others stay as written.
pub(crate) fn expand_env(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j)
                if j > 0
                    && after[..j]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                match std::env::var(&after[..j]) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => out.push_str(&rest[i..i + 3 + j]),
                }
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Userinfo is percent-encoded in URLs (`%40` for `@` in a token).
fn percent(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .to_string()
}

/// `url` without userinfo: for messages (credentials are never printed), and for the file URLs
/// the index client returns (requests to their origin get the remembered credentials).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// An index or find-links location as the user wrote it, credentials included. Its `Display`
/// and `Debug` show it without userinfo ([`redact`]), so it can go into any message or log;
/// [`IndexUrl::expose`] gives the whole URL, for the requests themselves.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexUrl(String);

impl IndexUrl {
    /// The URL or path as written (a trailing `/` of an index URL is the caller's to trim).
    pub fn new(url: impl Into<String>) -> IndexUrl {
        IndexUrl(url.into())
    }

    /// The whole URL, credentials included: for requests, never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for IndexUrl {
    fn from(s: &str) -> IndexUrl {
        IndexUrl::new(s)
    }
}

impl From<String> for IndexUrl {
    fn from(s: String) -> IndexUrl {
        IndexUrl::new(s)
    }
}

impl std::fmt::Display for IndexUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl std::fmt::Debug for IndexUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexUrl({:?})", redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls_print_without_credentials() {
        let u = IndexUrl::from("https://me:s3cret@pkgs.example.com/simple");
        assert_eq!(u.to_string(), "https://pkgs.example.com/simple");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose(), "https://me:s3cret@pkgs.example.com/simple");
    }

    #[test]
    fn env_references_in_userinfo() {
        // SAFETY: a variable no other test reads.
        unsafe { std::env::set_var("RAYPACK_TEST_NETRC_TOKEN", "t0k") };
        assert_eq!(
            expand_env("__token__:${RAYPACK_TEST_NETRC_TOKEN}"),
            "__token__:t0k"
        );
        assert_eq!(
            expand_env("${RAYPACK_TEST_UNSET_VAR}"),
            "${RAYPACK_TEST_UNSET_VAR}"
        );
        assert_eq!(expand_env("a${}b${x-y}c$"), "a${}b${x-y}c$");
        let http = reqwest::Client::new();
        let r = authed_get(
            &http,
            "https://__token__:${RAYPACK_TEST_NETRC_TOKEN}@pypi.example/simple/",
        )
        .build()
        .unwrap();
        assert_eq!(r.url().as_str(), "https://pypi.example/simple/");
        let auth = r.headers()["authorization"].to_str().unwrap();
        use base64::Engine;
        let want = base64::engine::general_purpose::STANDARD.encode("__token__:t0k");
        assert_eq!(auth, format!("Basic {want}"));
    }

    #[test]
    fn machines_and_default() {
        let n = Netrc::parse(
            "machine pypi.corp.example login ci password s3cret\n\
             machine other account x login a password b\n\
             macdef init\ncd /tmp\n\ndefault login anon password guest\n",
        );
        assert_eq!(
            n.lookup("pypi.corp.example"),
            Some(&("ci".to_string(), "s3cret".to_string()))
        );
        assert_eq!(n.lookup("other"), Some(&("a".to_string(), "b".to_string())));
        assert_eq!(
            n.lookup("elsewhere"),
            Some(&("anon".to_string(), "guest".to_string()))
        );
    }
}
