//! Registry credentials, found where docker, podman and ggcr look, and auth challenges.
//!
//! Files, in order: `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`),
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`. Within a file, docker's order: `credHelpers[host]`
//! (run `docker-credential-<name> get`), `auths[host]` (`auth`, `username`/`password`,
//! `identitytoken`), then `credsStore`. Docker Hub's key is `https://index.docker.io/v1/`.
//! A helper's "credentials not found" means anonymous.
//!
//! Secrets live only in [`Credential`] values, whose `Debug` output is redacted; nothing here
//! logs them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

use super::reference::DOCKER_HUB;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and password (HTTP basic auth, or exchanged for a bearer token).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token endpoint.
    IdentityToken {
        /// The username the token belongs to.
        username: String,
        /// The identity token.
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, <redacted>)")
            }
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{file}: {message}")]
    /// A docker or podman config file does not parse.
    Config {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        /// The helper (`docker-credential-<name>`).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What the helper said.
        message: String,
    },
}

/// The keys a registry may be stored under in `auths`.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB || registry == "docker.io" || registry == "registry-1.docker.io" {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ]
}

/// The key `login` writes for a registry.
pub(crate) fn login_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

/// The docker config file `login` writes: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => home().join(".docker").join("config.json"),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn config_files() -> Vec<PathBuf> {
    let mut v = vec![docker_config_path()];
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(d).join("containers/auth.json"));
    }
    v.push(home().join(".config/containers/auth.json"));
    v
}

/// Finds credentials for `registry` (`host[:port]`, normalised as in [`super::reference`]).
pub fn find_credential(registry: &str) -> Result<Option<Credential>, AuthError> {
    for file in config_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let cfg: Value = serde_json::from_str(&text).map_err(|e| AuthError::Config {
            file: file.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        if let Some(found) = lookup(&file, &cfg, registry)? {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `Some(cred)` when this file decides for the registry (`Some(None)`: a helper said
/// "not found", which means anonymous), `None` to keep looking.
fn lookup(
    file: &std::path::Path,
    cfg: &Value,
    registry: &str,
) -> Result<Option<Option<Credential>>, AuthError> {
    let keys = keys_for(registry);
    for k in &keys {
        if let Some(helper) = cfg["credHelpers"][k].as_str() {
            return run_helper(helper, k).map(Some);
        }
    }
    for k in &keys {
        let entry = &cfg["auths"][k];
        if !entry.is_object() {
            continue;
        }
        if let Some(tok) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
            let username = entry["username"].as_str().unwrap_or("<token>").to_string();
            return Ok(Some(Some(Credential::IdentityToken {
                username,
                token: tok.to_string(),
            })));
        }
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| AuthError::Config {
                    file: file.to_path_buf(),
                    message: format!("auths[\"{k}\"].auth is not base64"),
                })?;
            let s = String::from_utf8_lossy(&raw).to_string();
            let (u, p) = s.split_once(':').ok_or_else(|| AuthError::Config {
                file: file.to_path_buf(),
                message: format!("auths[\"{k}\"].auth does not decode to user:password"),
            })?;
            return Ok(Some(Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })));
        }
    }
    if let Some(store) = cfg["credsStore"].as_str().filter(|s| !s.is_empty()) {
        for k in &keys {
            if let Some(c) = run_helper(store, k)? {
                return Ok(Some(Some(c)));
            }
        }
    }
    Ok(None)
}

/// `docker-credential-<helper> get`, with the server URL on stdin.
fn run_helper(helper: &str, server: &str) -> Result<Option<Credential>, AuthError> {
    let fail = |message: String| AuthError::Helper {
        helper: helper.into(),
        registry: server.into(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(server.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found")
            || String::from_utf8_lossy(&out.stderr).contains("credentials not found")
        {
            return Ok(None);
        }
        // Never echo the helper's output: it may contain a secret.
        return Err(fail(format!("exit status {}", out.status)));
    }
    let v: Value = serde_json::from_str(&stdout).map_err(|_| fail("output is not JSON".into()))?;
    let user = v["Username"].as_str().unwrap_or_default().to_string();
    let secret = v["Secret"].as_str().unwrap_or_default().to_string();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Credential::IdentityToken {
            username: user,
            token: secret,
        }
    } else {
        Credential::Basic {
            username: user,
            password: secret,
        }
    }))
}

/// Writes `auths[key].auth` to the docker config (other fields kept), mode 0600.
pub fn store_login(registry: &str, username: &str, password: &str) -> Result<PathBuf, AuthError> {
    let path = docker_config_path();
    let mut cfg: Value = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| AuthError::Config {
            file: path.clone(),
            message: format!("not valid JSON: {e}"),
        })?,
        Err(_) => serde_json::json!({}),
    };
    if !cfg["auths"].is_object() {
        cfg["auths"] = serde_json::json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    cfg["auths"][login_key(registry)] = serde_json::json!({ "auth": auth });
    write_config(&path, &cfg)?;
    Ok(path)
}

/// Removes the registry's entry from the docker config; returns whether there was one.
pub fn remove_login(registry: &str) -> Result<bool, AuthError> {
    let path = docker_config_path();
    let Ok(t) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    let mut cfg: Value = serde_json::from_str(&t).map_err(|e| AuthError::Config {
        file: path.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    let mut removed = false;
    if let Some(a) = cfg["auths"].as_object_mut() {
        for k in keys_for(registry) {
            removed |= a.remove(&k).is_some();
        }
    }
    if removed {
        write_config(&path, &cfg)?;
    }
    Ok(removed)
}

fn write_config(path: &std::path::Path, cfg: &Value) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| AuthError::Config {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let mut data = serde_json::to_vec_pretty(cfg).expect("json");
    data.push(b'\n');
    std::fs::write(tmp.path(), data).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, remain) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.insert(k, v);
        rest = remain.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull,push".into())
            })
        );
    }

    #[test]
    fn credential_debug_is_redacted() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn reads_auths_in_docker_order() {
        let file = std::path::Path::new("/x/config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let cfg = serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": auth}, "r.example:5000": {"username": "a", "password": "b"}}});
        assert_eq!(
            lookup(file, &cfg, DOCKER_HUB).unwrap(),
            Some(Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            }))
        );
        assert_eq!(
            lookup(file, &cfg, "r.example:5000").unwrap(),
            Some(Some(Credential::Basic {
                username: "a".into(),
                password: "b".into()
            }))
        );
        assert_eq!(lookup(file, &cfg, "other").unwrap(), None);
    }
}
