//! Image references parsed the way docker parses them.
//!
//! `rayproject/ray:2.60.0-py311` → registry `index.docker.io`, repository `rayproject/ray`,
//! tag `2.60.0-py311`; `host:5000/team/app@sha256:…`; tag and digest together.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The registry host Docker Hub references resolve to.
pub const DOCKER_HUB: &str = "index.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (`index.docker.io` for Docker Hub).
    pub registry: String,
    /// The repository path (`library/` added for Docker Hub official images).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any (`sha256:…`).
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// An empty reference.
    #[error("`{0}` is empty")]
    Empty(String),
    #[error(
        "`{reference}`: `{part}` is not a valid repository path (lowercase letters, digits, '.', '_', '-', separated by '/')"
    )]
    /// A repository part docker would refuse.
    BadRepository {
        /// The reference.
        reference: String,
        /// The part.
        part: String,
    },
    #[error(
        "`{reference}`: `{tag}` is not a valid tag (up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
    )]
    /// A tag docker would refuse.
    BadTag {
        /// The reference.
        reference: String,
        /// The tag.
        tag: String,
    },
    #[error(
        "`{reference}`: `{digest}` is not a valid digest (sha256: and 64 lowercase hex digits)"
    )]
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    BadDigest {
        /// The reference.
        reference: String,
        /// The digest.
        digest: String,
    },
}

static REPO_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$").unwrap());
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap());
static DIGEST: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^sha256:[a-f0-9]{64}$").unwrap());

/// Checks a tag on its own (for `[image] tags`).
pub fn is_valid_tag(tag: &str) -> bool {
    TAG.is_match(tag)
}

impl Reference {
    /// Parses and normalises a reference as docker does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !DIGEST.is_match(d) {
                    return Err(ReferenceError::BadDigest {
                        reference: s.into(),
                        digest: d.into(),
                    });
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag
            && !TAG.is_match(t)
        {
            return Err(ReferenceError::BadTag {
                reference: s.into(),
                tag: t.clone(),
            });
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        for part in repository.split('/') {
            if !REPO_COMPONENT.is_match(part) {
                return Err(ReferenceError::BadRepository {
                    reference: s.into(),
                    part: part.into(),
                });
            }
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// `registry/repository` as docker prints it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The host to talk to for `registry` (`registry-1.docker.io` for Docker Hub).
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("rayproject/ray:2.60.0-py311").unwrap();
        assert_eq!(r.registry, "index.docker.io");
        assert_eq!(r.repository, "rayproject/ray");
        assert_eq!(r.tag.as_deref(), Some("2.60.0-py311"));
        let r = Reference::parse("ubuntu").unwrap();
        assert_eq!(r.repository, "library/ubuntu");
        assert_eq!(r.tag, None);
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:v1@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
    }

    #[test]
    fn rejects_bad_references() {
        assert!(Reference::parse("Team/App").is_err());
        assert!(Reference::parse("app:-bad").is_err());
        assert!(Reference::parse("app@sha256:abc").is_err());
        assert!(Reference::parse("").is_err());
    }
}
