//! `--resolve`: users' own KubeRay YAML, rewritten in place.
//!
//! Rather than growing `[cluster]` to every KubeRay field, users keep their manifests and raypack
//! changes only what it owns, as `ko resolve` does:
//!
//! - [`resolve_images`] (after `bake`): every `image:` whose reference names the baked
//!   repository becomes the baked `repository@digest`, and in a document where it did,
//!   `rayVersion` becomes the Ray in the image.
//! - [`resolve_runtime_envs`] (after `env`): a RayJob's `runtimeEnvYAML` and the `runtime_env` of
//!   every application in a RayService's `serveConfigV2` get the packages raypack published.
//!
//! Every other byte of the file is kept: the YAML is parsed only to find where the values are
//! (saphyr-parser reports each event's span), and the edits are spliced into the original text, so
//! comments, key order, quoting and fields raypack does not know survive. Inside a
//! `runtimeEnvYAML` or `serveConfigV2` string, which raypack rewrites, the embedded YAML is
//! rendered again.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Value};

use super::runtime_env::RuntimeEnv;
use crate::oci::reference::Reference;

/// Why a file could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{file}:{line}:{col}: not valid YAML: {message}")]
    Yaml {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Embedded {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Shape {
        file: String,
        line: usize,
        message: String,
    },
}

/// A resolved file and what changed in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub text: String,
    /// Image references rewritten.
    pub images: usize,
    /// `rayVersion` values set.
    pub ray_versions: usize,
    /// runtime_envs set (one per RayJob, one per Serve application).
    pub runtime_envs: usize,
}

/// What `bake` made, for [`resolve_images`].
#[derive(Debug, Clone)]
pub struct BakedImage<'a> {
    /// `repository@digest` (a tag, if any, is dropped: the digest pins it).
    pub reference: &'a str,
    /// The Ray in the image, for `rayVersion`; `None` leaves `rayVersion` alone.
    pub ray_version: Option<&'a str>,
}

/// Keys of a runtime_env that raypack decides: taken from its runtime_env, or removed when it
/// sets none of them (a user's `pip` list beside a raypack bundle would install twice).
const OWNED_KEYS: &[&str] = &["working_dir", "py_modules", "pip", "uv", "conda"];

/// Rewrites image references naming `baked`'s repository, and `rayVersion` beside them.
pub fn resolve_images(
    text: &str,
    file: &str,
    baked: &BakedImage,
) -> Result<Resolved, ResolveError> {
    let target = Reference::parse(baked.reference).map_err(|e| ResolveError::Shape {
        file: file.into(),
        line: 0,
        message: e.to_string(),
    })?;
    let pinned = match &target.digest {
        Some(d) => format!("{}@{d}", without_tag(baked.reference)),
        None => baked.reference.to_string(),
    };
    let src = Source::parse(text, file)?;
    let mut edits = Vec::new();
    let (mut images, mut ray_versions) = (0, 0);
    for doc in &src.docs {
        let mut found = 0;
        let mut versions = Vec::new();
        doc.walk(&mut |key, value| {
            let Node::Scalar {
                value: v,
                style,
                span,
                ..
            } = value
            else {
                return;
            };
            match key {
                "image" => {
                    if let Ok(r) = Reference::parse(v)
                        && r.registry == target.registry
                        && r.repository == target.repository
                    {
                        found += 1;
                        if *v != pinned {
                            edits.push((src.scalar_bytes(*span, *style), quoted(&pinned, *style)));
                        }
                    }
                }
                "rayVersion" => versions.push((v.clone(), *style, *span)),
                _ => {}
            }
        });
        images += found;
        if found > 0
            && let Some(rv) = baked.ray_version
        {
            for (v, style, span) in versions {
                ray_versions += 1;
                if v != rv {
                    edits.push((src.scalar_bytes(span, style), quoted(rv, style)));
                }
            }
        }
    }
    Ok(Resolved {
        text: splice(text, edits),
        images,
        ray_versions,
        runtime_envs: 0,
    })
}

/// Sets the runtime_env of every RayJob (`spec.runtimeEnvYAML`) and of every application of every
/// RayService (`spec.serveConfigV2`) to `env`, merged into what the user wrote: raypack's keys
/// ([`OWNED_KEYS`]) come from `env`, `env_vars` are merged (raypack's win), `config` is raypack's
/// when it sets one, and any other key is kept.
pub fn resolve_runtime_envs(
    text: &str,
    file: &str,
    env: &RuntimeEnv,
) -> Result<Resolved, ResolveError> {
    let ours = env.to_json();
    let src = Source::parse(text, file)?;
    let mut edits = Vec::new();
    let mut runtime_envs = 0;
    for doc in &src.docs {
        let Node::Map { entries, .. } = doc else {
            continue;
        };
        let kind = lookup(entries, "kind").and_then(Node::as_str).unwrap_or("");
        if !matches!(kind, "RayJob" | "RayService") {
            continue;
        }
        let Some(
            spec @ Node::Map {
                entries: spec_entries,
                ..
            },
        ) = lookup(entries, "spec")
        else {
            continue;
        };
        let field = if kind == "RayJob" {
            "runtimeEnvYAML"
        } else {
            "serveConfigV2"
        };
        let existing = spec_entries.iter().find(|(k, _)| k.as_str() == Some(field));
        match existing {
            Some((key, value @ Node::Scalar { value: inner, .. })) => {
                let line = value.line();
                let mut parsed: Value = if inner.trim().is_empty() {
                    Value::Object(Map::new())
                } else {
                    serde_norway::from_str(inner).map_err(|e| ResolveError::Embedded {
                        file: file.into(),
                        line,
                        message: format!("{field} is not valid YAML: {e}"),
                    })?
                };
                let new = if kind == "RayJob" {
                    let Value::Object(m) = &mut parsed else {
                        return Err(shape(file, line, format!("{field} is not a mapping")));
                    };
                    merge_runtime_env(m, &ours);
                    runtime_envs += 1;
                    super::to_yaml(&parsed)
                } else {
                    let apps = parsed
                        .get_mut("applications")
                        .and_then(Value::as_array_mut)
                        .ok_or_else(|| {
                            shape(file, line, format!("{field} has no `applications` list"))
                        })?;
                    for app in apps.iter_mut() {
                        let Value::Object(app) = app else {
                            return Err(shape(
                                file,
                                line,
                                format!("an application in {field} is not a mapping"),
                            ));
                        };
                        let re = app
                            .entry("runtime_env")
                            .or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(re) = re else {
                            return Err(shape(
                                file,
                                line,
                                format!("a runtime_env in {field} is not a mapping"),
                            ));
                        };
                        merge_runtime_env(re, &ours);
                        runtime_envs += 1;
                    }
                    super::to_yaml(&parsed)
                };
                edits.push(src.replace_value(key, value, &new));
            }
            Some((_, other)) => {
                return Err(shape(
                    file,
                    other.line(),
                    format!("{field} must be a string holding YAML"),
                ));
            }
            None if kind == "RayJob" => {
                let mut m = Map::new();
                merge_runtime_env(&mut m, &ours);
                runtime_envs += 1;
                edits.push(src.insert_first(spec, field, &super::to_yaml(&Value::Object(m)))?);
            }
            None => {
                return Err(shape(
                    file,
                    spec.line(),
                    "this RayService has no serveConfigV2; add its applications there (raypack sets their runtime_env)".into(),
                ));
            }
        }
    }
    Ok(Resolved {
        text: splice(text, edits),
        images: 0,
        ray_versions: 0,
        runtime_envs,
    })
}

fn shape(file: &str, line: usize, message: String) -> ResolveError {
    ResolveError::Shape {
        file: file.into(),
        line,
        message,
    }
}

/// `name[:tag][@digest]` → `name`, spelt as written.
fn without_tag(reference: &str) -> &str {
    let name_tag = reference.split('@').next().unwrap_or(reference);
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(i) => &name_tag[..slash + i],
        None => name_tag,
    }
}

/// Puts raypack's runtime_env into a user's.
fn merge_runtime_env(user: &mut Map<String, Value>, ours: &Value) {
    let Value::Object(ours) = ours else { return };
    // Keys keep their place (a replaced value is inserted where it was).
    for k in OWNED_KEYS {
        if !ours.contains_key(*k) {
            user.shift_remove(*k);
        }
    }
    for (k, v) in ours {
        match (k.as_str(), user.get_mut(k)) {
            ("env_vars", Some(Value::Object(theirs))) => {
                if let Value::Object(v) = v {
                    for (name, value) in v {
                        theirs.insert(name.clone(), value.clone());
                    }
                }
            }
            _ => {
                user.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `s` written in the style the original value had (references and versions need no escapes in
/// any of them; anything else is written double-quoted).
fn quoted(s: &str, style: ScalarStyle) -> String {
    let plain_safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "./:@_-+".contains(c));
    match style {
        ScalarStyle::Plain if plain_safe => s.to_string(),
        ScalarStyle::SingleQuoted if !s.contains('\'') => format!("'{s}'"),
        _ => serde_json::to_string(s).expect("strings serialize"),
    }
}

/// Applies non-overlapping edits (byte range → replacement) to `text`.
fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (r, new) in edits {
        debug_assert!(r.start >= at, "edits overlap");
        out.push_str(&text[at..r.start]);
        out.push_str(&new);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// A parsed YAML node with the source span of its value.
#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        style: ScalarStyle,
        span: Span,
    },
    Map {
        entries: Vec<(Node, Node)>,
        span: Span,
    },
    Seq {
        items: Vec<Node>,
        span: Span,
    },
    Alias {
        span: Span,
    },
}

impl Node {
    fn span(&self) -> Span {
        match self {
            Node::Scalar { span, .. }
            | Node::Map { span, .. }
            | Node::Seq { span, .. }
            | Node::Alias { span } => *span,
        }
    }

    fn line(&self) -> usize {
        self.span().start.line()
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Calls `f(key, value)` for every mapping entry with a scalar key, depth first.
    fn walk<'a>(&'a self, f: &mut dyn FnMut(&str, &'a Node)) {
        match self {
            Node::Map { entries, .. } => {
                for (k, v) in entries {
                    if let Some(k) = k.as_str() {
                        f(k, v);
                    }
                    v.walk(f);
                }
            }
            Node::Seq { items, .. } => items.iter().for_each(|i| i.walk(f)),
            Node::Scalar { .. } | Node::Alias { .. } => {}
        }
    }
}

fn lookup<'a>(entries: &'a [(Node, Node)], key: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A YAML stream with its documents and a char → byte index (the parser counts characters).
struct Source<'t> {
    text: &'t str,
    file: String,
    docs: Vec<Node>,
    byte_at: Vec<usize>,
}

impl<'t> Source<'t> {
    fn parse(text: &'t str, file: &str) -> Result<Self, ResolveError> {
        let mut byte_at: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        byte_at.push(text.len());
        let mut events = Vec::new();
        for r in Parser::new_from_str(text) {
            let (ev, span) = r.map_err(|e| ResolveError::Yaml {
                file: file.into(),
                line: e.marker().line(),
                col: e.marker().col() + 1,
                message: e.info().to_string(),
            })?;
            events.push((ev, span));
        }
        let mut it = events.into_iter().peekable();
        let mut docs = Vec::new();
        while let Some((ev, _)) = it.next() {
            if let Event::DocumentStart(_) = ev
                && let Some(node) = build(&mut it)
            {
                docs.push(node);
            }
        }
        Ok(Source {
            text,
            file: file.into(),
            docs,
            byte_at,
        })
    }

    fn byte(&self, char_index: usize) -> usize {
        self.byte_at[char_index.min(self.byte_at.len() - 1)]
    }

    fn bytes(&self, span: Span) -> Range<usize> {
        self.byte(span.start.index())..self.byte(span.end.index())
    }

    /// The bytes of a flow scalar's own text: the parser's span can run on over spaces and a
    /// trailing comment, which stay.
    fn scalar_bytes(&self, span: Span, style: ScalarStyle) -> Range<usize> {
        let r = self.bytes(span);
        let t = &self.text[r.clone()];
        let len = match style {
            ScalarStyle::DoubleQuoted => {
                let mut escaped = false;
                t.char_indices()
                    .skip(1)
                    .find(|&(_, c)| {
                        let close = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        close
                    })
                    .map_or(t.len(), |(i, _)| i + 1)
            }
            ScalarStyle::SingleQuoted => {
                let b = t.as_bytes();
                let mut i = 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                (i + 1).min(t.len())
            }
            ScalarStyle::Plain => {
                let t = t.find(" #").map_or(t, |i| &t[..i]);
                t.trim_end().len()
            }
            ScalarStyle::Literal | ScalarStyle::Folded => t.len(),
        };
        r.start..r.start + len
    }

    /// The edit that makes `value` (the value of `key`) the string `new`: a literal block when the
    /// original was a block scalar (indented as it was), else a double-quoted string.
    fn replace_value(&self, key: &Node, value: &Node, new: &str) -> (Range<usize>, String) {
        let Node::Scalar { style, span, .. } = value else {
            unreachable!("only scalars are replaced")
        };
        match style {
            ScalarStyle::Literal | ScalarStyle::Folded => {
                // The span runs from the content to the next token, which keeps its indentation.
                let r = self.bytes(*span);
                let body = &self.text[r.clone()];
                let end = r.start + body.rfind('\n').map_or(body.len(), |i| i + 1);
                let indent = if body.trim().is_empty() {
                    key.span().start.col() + 2
                } else {
                    span.start.col()
                };
                let key_end = self.byte(key.span().end.index());
                (key_end..end, format!(":{}", block(new, indent)))
            }
            _ => (
                self.scalar_bytes(*span, *style),
                serde_json::to_string(new).expect("strings serialize"),
            ),
        }
    }

    /// The edit that adds `field: |` with `new` as the first entry of the block mapping `map`.
    fn insert_first(
        &self,
        map: &Node,
        field: &str,
        new: &str,
    ) -> Result<(Range<usize>, String), ResolveError> {
        let Node::Map { entries, span } = map else {
            unreachable!("insert_first takes a mapping")
        };
        let at = self.byte(span.start.index());
        let Some((first, _)) = entries.first() else {
            return Err(shape(
                &self.file,
                map.line(),
                format!("spec is empty; add `{field}: \"\"` where it belongs"),
            ));
        };
        if self.text[at..].starts_with('{') {
            return Err(shape(
                &self.file,
                map.line(),
                format!("spec is a flow mapping ({{…}}); add `{field}: \"\"` to it"),
            ));
        }
        let col = first.span().start.col();
        let key_at = self.byte(first.span().start.index());
        Ok((
            key_at..key_at,
            format!("{field}:{}{}", block(new, col + 2), " ".repeat(col)),
        ))
    }
}

/// ` |` (or ` |-`) and `text` indented by `indent`, ending in a newline.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut s = String::from(if text.ends_with('\n') {
        " |\n"
    } else {
        " |-\n"
    });
    for line in text.lines() {
        if !line.is_empty() {
            s.push_str(&pad);
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Builds the node whose first event comes next (after a DocumentStart or a key).
fn build<'t, I: Iterator<Item = (Event<'t>, Span)>>(
    it: &mut std::iter::Peekable<I>,
) -> Option<Node> {
    let (ev, span) = it.next()?;
    Some(match ev {
        Event::Scalar(v, style, _, _) => Node::Scalar {
            value: v.into_owned(),
            style,
            span,
        },
        Event::Alias(_) => Node::Alias { span },
        Event::MappingStart(_, _) => {
            let mut entries = Vec::new();
            loop {
                if matches!(it.peek(), Some((Event::MappingEnd, _)) | None) {
                    it.next();
                    break;
                }
                let k = build(it)?;
                let v = build(it)?;
                entries.push((k, v));
            }
            Node::Map { entries, span }
        }
        Event::SequenceStart(_, _) => {
            let mut items = Vec::new();
            loop {
                if matches!(it.peek(), Some((Event::SequenceEnd, _)) | None) {
                    it.next();
                    break;
                }
                items.push(build(it)?);
            }
            Node::Seq { items, span }
        }
        // DocumentEnd right after DocumentStart: an empty document.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = r#"apiVersion: ray.io/v1
kind: RayService  # the user's own
metadata:
  name: "mlflow-serve"
spec:
  serviceUnhealthySecondThreshold: 900
  deploymentUnhealthySecondThreshold: 300
  serveConfigV2: |
    applications:
      - name: app
        import_path: kuberay_mlflow.serve:deployment
        runtime_env:
          env_vars: {MLFLOW_TRACKING_URI: "http://mlflow:5000"}
          pip: [requests]
  rayClusterConfig:
    rayVersion: '2.52.1'
    gcsFaultToleranceOptions:
      redisAddress: "redis:6379"
    headGroupSpec:
      template:
        spec:
          containers:
          - name: ray-head
            image: "registry.example.com/team/app:latest"   # pinned by raypack
            imagePullPolicy: Always
    workerGroupSpecs:
      - groupName: cpu
        template:
          spec:
            containers:
              - name: ray-worker
                image: registry.example.com/team/app
                lifecycle:
                  preStop:
                    exec:
                      command: ["/bin/sh", "-c", "ray stop"]
              - name: sidecar
                image: registry.example.com/team/other:1
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data:
  image: registry.example.com/team/app:latest
"#;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn images_and_ray_version_change_nothing_else() {
        let reference = format!("registry.example.com/team/app@{DIGEST}");
        let r = resolve_images(
            SERVICE,
            "svc.yaml",
            &BakedImage {
                reference: &reference,
                ray_version: Some("2.60.0"),
            },
        )
        .unwrap();
        // The ConfigMap's `image` names the repository too: any `image:` key does.
        assert_eq!((r.images, r.ray_versions), (3, 1));
        let expected = SERVICE
            .replace(
                "image: \"registry.example.com/team/app:latest\"",
                &format!("image: \"{reference}\""),
            )
            .replace(
                "image: registry.example.com/team/app\n",
                &format!("image: {reference}\n"),
            )
            .replace(
                "  image: registry.example.com/team/app:latest\n",
                &format!("  image: {reference}\n"),
            )
            .replace("rayVersion: '2.52.1'", "rayVersion: '2.60.0'");
        assert_eq!(r.text, expected);
        // Resolving again changes nothing.
        let again = resolve_images(
            &r.text,
            "svc.yaml",
            &BakedImage {
                reference: &reference,
                ray_version: Some("2.60.0"),
            },
        )
        .unwrap();
        assert_eq!(again.text, r.text);
    }

    #[test]
    fn a_tagged_reference_is_pinned_by_digest_alone() {
        let r = resolve_images(
            "image: localhost:5000/a/b:v1\n",
            "f",
            &BakedImage {
                reference: &format!("localhost:5000/a/b:v2@{DIGEST}"),
                ray_version: None,
            },
        )
        .unwrap();
        assert_eq!(r.text, format!("image: localhost:5000/a/b@{DIGEST}\n"));
    }

    #[test]
    fn serve_applications_get_the_runtime_env_merged() {
        let env = RuntimeEnv {
            working_dir: Some("s3://b/p/wd.zip".into()),
            env_vars: [("RAYPACK".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let r = resolve_runtime_envs(SERVICE, "svc.yaml", &env).unwrap();
        assert_eq!(r.runtime_envs, 1);
        let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&r.text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let cfg: serde_json::Value =
            serde_norway::from_str(docs[0]["spec"]["serveConfigV2"].as_str().unwrap()).unwrap();
        let re = &cfg["applications"][0]["runtime_env"];
        assert_eq!(re["working_dir"], "s3://b/p/wd.zip");
        assert_eq!(re["env_vars"]["MLFLOW_TRACKING_URI"], "http://mlflow:5000");
        assert_eq!(re["env_vars"]["RAYPACK"], "1");
        assert!(re.get("pip").is_none(), "raypack owns the dependencies");
        assert_eq!(
            cfg["applications"][0]["import_path"],
            "kuberay_mlflow.serve:deployment"
        );
        // Everything outside serveConfigV2 is byte-for-byte the same.
        let (head, tail) = SERVICE.split_once("  serveConfigV2: |").unwrap();
        let tail = &tail[tail.find("  rayClusterConfig:").unwrap()..];
        assert!(r.text.starts_with(head));
        assert!(r.text.ends_with(tail));
    }

    #[test]
    fn a_rayjob_without_runtime_env_yaml_gets_one() {
        let job = "kind: RayJob\nspec:\n  entrypoint: python main.py   # keep\n  rayClusterSpec:\n    rayVersion: \"2.60.0\"\n";
        let env = RuntimeEnv {
            working_dir: Some("file:///mnt/wd.zip".into()),
            ..Default::default()
        };
        let r = resolve_runtime_envs(job, "job.yaml", &env).unwrap();
        let v: serde_json::Value = serde_norway::from_str(&r.text).unwrap();
        let re: serde_json::Value =
            serde_norway::from_str(v["spec"]["runtimeEnvYAML"].as_str().unwrap()).unwrap();
        assert_eq!(re["working_dir"], "file:///mnt/wd.zip");
        assert_eq!(v["spec"]["entrypoint"], "python main.py");
        assert!(r.text.contains("python main.py   # keep\n"));
        // And with one already there (a folded block), it is replaced in place.
        let job2 = "kind: RayJob\nspec:\n  runtimeEnvYAML: >\n    pip: [x]\n  entrypoint: python main.py\n";
        let r2 = resolve_runtime_envs(job2, "job.yaml", &env).unwrap();
        let v2: serde_json::Value = serde_norway::from_str(&r2.text).unwrap();
        let re2: serde_json::Value =
            serde_norway::from_str(v2["spec"]["runtimeEnvYAML"].as_str().unwrap()).unwrap();
        assert_eq!(
            re2,
            serde_json::json!({"working_dir": "file:///mnt/wd.zip"})
        );
        assert_eq!(v2["spec"]["entrypoint"], "python main.py");
    }

    #[test]
    fn bad_yaml_names_the_place() {
        let e = resolve_images(
            "a: [1, 2\nb: c\n",
            "x.yaml",
            &BakedImage {
                reference: &format!("r.io/a@{DIGEST}"),
                ray_version: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x.yaml:"), "{e}");
    }
}
