//! Store URLs: `s3://bucket/prefix`, `gs://bucket/prefix`, `file:///abs/path`.

use std::fmt;
use std::path::PathBuf;

/// Where packages go; parsed from the recipe's `[env] store` or `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The object name prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// `file:///absolute/path`.
    File {
        /// The directory.
        path: PathBuf,
    },
}

/// Why a store URL was rejected; the message says what to write instead.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreUrlError {
    /// No `scheme://`.
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("unknown store scheme `{scheme}://` in `{url}`")]
    /// A scheme other than s3, gs and file.
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The URL.
        url: String,
    },
    /// `s3://` or `gs://` without a bucket.
    #[error("`{0}` has no bucket name")]
    NoBucket(String),
    #[error("`{bucket}` is not a valid bucket name: {why}")]
    /// A bucket name S3/GCS would refuse.
    BadBucket {
        /// The name.
        bucket: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A `file://` URL with a relative path.
    #[error("`{0}`: a file store needs an absolute path (file:///mnt/nfs/raypack)")]
    RelativeFile(String),
    /// Credentials, a query or a fragment in the URL.
    #[error("`{0}`: store URLs must not carry credentials, a query or a fragment")]
    Extra(String),
}

impl StoreUrlError {
    /// What to write instead.
    pub fn help(&self) -> &'static str {
        "write s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or file:///ABSOLUTE/PATH"
    }
}

impl StoreUrl {
    /// Parses and checks a store URL.
    pub fn parse(s: &str) -> Result<StoreUrl, StoreUrlError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| StoreUrlError::NotAUrl(s.to_string()))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(StoreUrlError::Extra(s.to_string()));
        }
        match scheme {
            "s3" | "gs" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(StoreUrlError::NoBucket(s.to_string()));
                }
                if bucket.contains('@') || bucket.contains(':') {
                    return Err(StoreUrlError::Extra(s.to_string()));
                }
                check_bucket(bucket)?;
                let prefix = prefix.trim_matches('/').to_string();
                let bucket = bucket.to_string();
                Ok(if scheme == "s3" {
                    StoreUrl::S3 { bucket, prefix }
                } else {
                    StoreUrl::Gcs { bucket, prefix }
                })
            }
            "file" => {
                let url = url::Url::parse(s).map_err(|_| StoreUrlError::NotAUrl(s.to_string()))?;
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(StoreUrlError::RelativeFile(s.to_string()));
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| StoreUrlError::RelativeFile(s.to_string()))?;
                Ok(StoreUrl::File { path })
            }
            other => Err(StoreUrlError::UnknownScheme {
                scheme: other.to_string(),
                url: s.to_string(),
            }),
        }
    }

    /// A file store for a local directory.
    pub fn file(path: PathBuf) -> StoreUrl {
        StoreUrl::File { path }
    }

    /// The URI Ray will fetch for an object stored under `name`.
    pub fn uri_for(&self, name: &str) -> String {
        match self {
            StoreUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{}", join_key(prefix, name)),
            StoreUrl::Gcs { bucket, prefix } => format!("gs://{bucket}/{}", join_key(prefix, name)),
            StoreUrl::File { path } => {
                let p = path.join(name);
                url::Url::from_file_path(&p)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| format!("file://{}", p.display()))
            }
        }
    }
}

fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn check_bucket(b: &str) -> Result<(), StoreUrlError> {
    let bad = |why| {
        Err(StoreUrlError::BadBucket {
            bucket: b.to_string(),
            why,
        })
    };
    if b.len() < 3 || b.len() > 63 {
        return bad("bucket names are 3 to 63 characters");
    }
    if !b.bytes().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'_'
    }) {
        return bad("use lowercase letters, digits, '-', '.' and '_'");
    }
    let first = b.as_bytes()[0];
    let last = b.as_bytes()[b.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("bucket names start and end with a letter or digit");
    }
    Ok(())
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::Gcs { bucket, prefix } if prefix.is_empty() => write!(f, "gs://{bucket}"),
            StoreUrl::Gcs { bucket, prefix } => write!(f, "gs://{bucket}/{prefix}"),
            StoreUrl::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        assert_eq!(
            StoreUrl::parse("s3://my-bucket/a/b/").unwrap(),
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("gs://bkt").unwrap(),
            StoreUrl::Gcs {
                bucket: "bkt".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("file:///mnt/nfs/x").unwrap(),
            StoreUrl::File {
                path: "/mnt/nfs/x".into()
            }
        );
        let s = StoreUrl::parse("s3://b-1/p").unwrap();
        assert_eq!(s.uri_for("demo-ab.zip"), "s3://b-1/p/demo-ab.zip");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            StoreUrl::parse("hdfs://x/y"),
            Err(StoreUrlError::UnknownScheme { .. })
        ));
        assert!(matches!(
            StoreUrl::parse("s3://"),
            Err(StoreUrlError::NoBucket(_))
        ));
        assert!(matches!(
            StoreUrl::parse("s3://Bad_Bucket"),
            Err(StoreUrlError::BadBucket { .. })
        ));
        assert!(StoreUrl::parse("/tmp/x").is_err());
        assert!(StoreUrl::parse("s3://key:secret@bucket/x").is_err());
    }
}
