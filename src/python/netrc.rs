//! Credentials for private indexes: URL userinfo first, else a `.netrc` entry for the host
//! (`$NETRC`, else `~/.netrc`), as pip and uv do. Applied as HTTP basic auth; never printed
//! (messages show URLs through [`crate::python::pinned::redact`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `machine` → (login, password); `default` under the key `""`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Netrc {
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
pub fn user_netrc() -> &'static Netrc {
    static N: OnceLock<Netrc> = OnceLock::new();
    N.get_or_init(|| {
        netrc_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| Netrc::parse(&t))
            .unwrap_or_default()
    })
}

/// A GET for `url` with its credentials: userinfo moved into basic auth (and out of the URL),
/// else the netrc entry for its host.
pub fn authed_get(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let Ok(mut u) = url::Url::parse(url) else {
        return http.get(url);
    };
    if !u.username().is_empty() {
        let user = percent(u.username());
        let pass = u.password().map(percent);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return http.get(u.as_str()).basic_auth(user, pass);
    }
    match u.host_str().and_then(|h| user_netrc().lookup(h)) {
        Some((login, password)) => http.get(url).basic_auth(login, Some(password)),
        None => http.get(url),
    }
}

/// Userinfo is percent-encoded in URLs (`%40` for `@` in a token).
fn percent(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
