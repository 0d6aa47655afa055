//! Validation: a parsed [`RawRecipe`] becomes a [`Recipe`] with absolute paths, every problem
//! reported with its span (file:line:col) and help.

use super::*;

pub(super) fn validate(path: &Path, raw: RawRecipe, rep: &mut Reporter) -> Recipe {
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));

    // [project]
    let project_span = raw.project.span();
    let project = raw.project.into_inner();
    let name = project.name.get_ref().clone();
    let kind = raw.cluster.as_ref().map(|c| *c.get_ref().kind.get_ref());
    if !is_dns1035(&name) {
        rep.error(
            inner(&project.name),
            format!("project name `{name}` is not a DNS-1035 label"),
            Some(format!(
                "use lowercase letters, digits and '-', starting with a letter, e.g. name = \"{}\"",
                suggest_dns1035(&name)
            )),
        );
    }
    let _ = project_span;

    // [code]
    let resolve_dir = |rep: &mut Reporter, s: &Spanned<String>, what: &str| -> PathBuf {
        let p = root.join(s.get_ref());
        let p = std::path::absolute(&p).unwrap_or(p);
        let p = normalize(&p);
        if !p.exists() {
            rep.error(
                inner(s),
                format!(
                    "{what} `{}` does not exist (looked for {})",
                    s.get_ref(),
                    p.display()
                ),
                Some("paths are relative to the recipe's directory".into()),
            );
        } else if !p.is_dir() {
            rep.error(
                inner(s),
                format!("{what} `{}` is not a directory", s.get_ref()),
                Some("point at a directory".into()),
            );
        }
        p
    };
    let working_dir = match &raw.code.working_dir {
        Some(s) => resolve_dir(rep, s, "working_dir"),
        None => normalize(&std::path::absolute(&root).unwrap_or(root.clone())),
    };
    // `/` or a home directory would ship (and walk) far more than a project.
    if let Some(s) = &raw.code.working_dir
        && !raw.code.allow_broad_working_dir
        && is_broad_dir(&working_dir)
    {
        rep.error(
            inner(s),
            format!(
                "working_dir `{}` is {}, not a project directory",
                s.get_ref(),
                if working_dir == Path::new("/") {
                    "the filesystem root".to_string()
                } else {
                    format!("a home directory ({})", working_dir.display())
                }
            ),
            Some(
                "point working_dir at the project's directory; if you really mean it, set `allow_broad_working_dir = true` in [code]"
                    .into(),
            ),
        );
    }
    let mut py_modules: Vec<PyModule> = Vec::new();
    for m in &raw.code.py_modules {
        let entry = m.get_ref();
        let paths = if py_modules::is_glob(entry) {
            match py_modules::expand(&root, entry) {
                Ok(paths) => paths,
                Err(e) => {
                    rep.error(
                        inner(m),
                        format!("py_module `{entry}` {e}"),
                        Some("paths are relative to the recipe's directory; a source root is written `src/*`".into()),
                    );
                    continue;
                }
            }
        } else {
            let p = normalize(&std::path::absolute(root.join(entry)).unwrap_or(root.join(entry)));
            if !p.exists() {
                rep.error(
                    inner(m),
                    format!(
                        "py_module `{entry}` does not exist (looked for {})",
                        p.display()
                    ),
                    Some("paths are relative to the recipe's directory".into()),
                );
                continue;
            }
            vec![p]
        };
        for p in paths {
            let p = normalize(&std::path::absolute(&p).unwrap_or(p));
            let module = match py_modules::classify(&p) {
                Ok(module) => module,
                Err(why) => {
                    let stem = p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string();
                    rep.error(
                        inner(m),
                        why,
                        Some(format!(
                            "Python imports a py_module by its directory or file name; rename it, e.g. `{}`",
                            stem.replace(['-', '.', ' '], "_")
                        )),
                    );
                    continue;
                }
            };
            if let Some(other) = py_modules.iter().find(|o| o.name == module.name) {
                rep.error(
                    inner(m),
                    format!(
                        "two py_modules are named `{}` ({} and {})",
                        module.name,
                        other.path.display(),
                        module.path.display()
                    ),
                    Some("each py_module needs its own import name: Ray puts every one on sys.path, so one would shadow the other".into()),
                );
                continue;
            }
            py_modules.push(module);
        }
    }
    let mut excludes = Vec::new();
    for e in &raw.code.excludes {
        let mut b = ignore::gitignore::GitignoreBuilder::new(&root);
        if let Err(err) = b.add_line(None, e.get_ref()) {
            rep.error(
                inner(e),
                format!("exclude pattern `{}` is invalid: {err}", e.get_ref()),
                Some("use gitignore syntax, e.g. \"data/\" or \"*.ckpt\"".into()),
            );
        }
        excludes.push(e.get_ref().clone());
    }

    // [dependencies]
    let d = &raw.dependencies;
    let mut requirements = Vec::new();
    for r in &d.requirements {
        if let Err(m) = crate::python::requirement::check_name(r.get_ref()) {
            rep.error(
                inner(r),
                format!("requirement `{}`: {m}", r.get_ref()),
                None,
            );
            continue;
        }
        match pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(r.get_ref()) {
            Ok(_) => requirements.push(r.get_ref().clone()),
            Err(e) => {
                let span = inner(r);
                let start = (span.start + e.start).min(span.end);
                let end = (start + e.len.max(1)).min(span.end.max(start + 1));
                rep.error(
                    start..end,
                    format!("`{}` is not a valid PEP 508 requirement: {}", r.get_ref(), e.message),
                    Some("write NAME[extras] SPECIFIER; MARKER, e.g. \"requests>=2.31\" or \"torch==2.5.1; platform_machine == 'x86_64'\"".into()),
                );
            }
        }
    }
    let requirements_file = d.requirements_file.as_ref().map(|f| {
        let p = normalize(&root.join(f.get_ref()));
        if !p.is_file() {
            rep.error(inner(f), format!("requirements_file `{}` does not exist", f.get_ref()), Some("paths are relative to the recipe's directory; use a requirements.txt or pylock.toml".into()));
        }
        p
    });
    let check_url = |rep: &mut Reporter, s: &Spanned<String>, what: &str| -> String {
        match url::Url::parse(s.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https" | "file") => {}
            Ok(u) => rep.error(
                inner(s),
                format!("{what} `{}` has scheme `{}`", s.get_ref(), u.scheme()),
                Some("index URLs use https:// (or http:// / file://)".into()),
            ),
            Err(e) => rep.error(
                inner(s),
                format!("{what} `{}` is not a URL: {e}", s.get_ref()),
                Some("write a full URL such as https://pypi.org/simple".into()),
            ),
        }
        s.get_ref().trim_end_matches('/').to_string()
    };
    let index_url = d
        .index_url
        .as_ref()
        .map(|u| check_url(rep, u, "index_url"))
        .unwrap_or_else(|| DEFAULT_INDEX.to_string());
    let extra_index_urls = d
        .extra_index_urls
        .iter()
        .map(|u| check_url(rep, u, "extra index URL"))
        .collect();
    let find_links = d
        .find_links
        .iter()
        .map(|u| check_url(rep, u, "find_links URL"))
        .collect();
    let package_indexes = d
        .package_indexes
        .iter()
        .map(|(k, v)| (k.clone(), check_url(rep, v, "package index")))
        .collect();
    let max_layers = d.max_layers.as_ref().map(|m| {
        let n = *m.get_ref();
        if !(1..=32).contains(&n) {
            rep.error(
                m.span(),
                format!("max_layers = {n} is out of range"),
                Some("use 1 to 32 (heavy distributions get their own layers within it)".into()),
            );
        }
        n.clamp(1, 32) as usize
    });

    // [base]
    let base = match &raw.base {
        Some(b) => {
            let b = b.get_ref();
            let reference = match Reference::parse(b.image.get_ref()) {
                Ok(r) => r,
                Err(e) => {
                    rep.error(
                        inner(&b.image),
                        format!("base image: {e}"),
                        Some("write a reference like \"rayproject/ray:2.60.0-py311-cpu\"".into()),
                    );
                    Reference::parse(DEFAULT_BASE).expect("default base parses")
                }
            };
            let check_platform = |rep: &mut Reporter, p: &Spanned<String>| {
                if !matches!(p.get_ref().as_str(), "linux/amd64" | "linux/arm64") {
                    rep.error(
                        inner(p),
                        format!("platform `{}` is not supported", p.get_ref()),
                        Some("write \"linux/amd64\" or \"linux/arm64\"".into()),
                    );
                }
                p.get_ref().clone()
            };
            let platform = b.platform.as_ref().map(|p| check_platform(rep, p));
            let mut platforms: Vec<String> = Vec::new();
            if let Some(list) = &b.platforms {
                if b.platform.is_some() {
                    rep.error(
                        list.span(),
                        "[base] has both `platform` and `platforms`",
                        Some(
                            "keep one: platforms = [\"linux/amd64\", \"linux/arm64\"] builds both"
                                .into(),
                        ),
                    );
                }
                if list.get_ref().is_empty() {
                    rep.error(
                        list.span(),
                        "[base] platforms is empty",
                        Some("list at least one, e.g. platforms = [\"linux/amd64\", \"linux/arm64\"]".into()),
                    );
                }
                for p in list.get_ref() {
                    let p_s = check_platform(rep, p);
                    if platforms.contains(&p_s) {
                        rep.error(inner(p), format!("platform `{p_s}` is listed twice"), None);
                    }
                    platforms.push(p_s);
                }
            }
            let platform = platform
                .or_else(|| platforms.first().cloned())
                .unwrap_or_else(|| "linux/amd64".into());
            if platforms.is_empty() {
                platforms.push(platform.clone());
            }
            if let Some(pv) = &b.python_version {
                check_python_version(rep, pv);
            }
            if let Some(py) = &b.python
                && !py.get_ref().starts_with('/')
            {
                rep.error(
                    inner(py),
                    "base python must be an absolute path inside the image",
                    Some("e.g. python = \"/home/ray/anaconda3/bin/python\"".into()),
                );
            }
            if let Some(sp) = &b.site_packages
                && !sp.get_ref().starts_with('/')
            {
                rep.error(
                    inner(sp),
                    "site_packages must be an absolute path inside the image",
                    Some(
                        "e.g. site_packages = \"/home/ray/anaconda3/lib/python3.11/site-packages\""
                            .into(),
                    ),
                );
            }
            if let Some(u) = &b.user {
                let ok = u
                    .get_ref()
                    .split_once(':')
                    .is_some_and(|(a, g)| a.parse::<u32>().is_ok() && g.parse::<u32>().is_ok());
                if !ok {
                    rep.error(
                        inner(u),
                        format!("user `{}` is not UID:GID", u.get_ref()),
                        Some("write numeric ids, e.g. user = \"1000:100\"".into()),
                    );
                }
            }
            Base {
                image: b.image.get_ref().clone(),
                reference,
                platform,
                platforms,
                python: b.python.as_ref().map(|s| s.get_ref().clone()),
                python_version: b.python_version.as_ref().map(|s| s.get_ref().clone()),
                site_packages: b.site_packages.as_ref().map(|s| s.get_ref().clone()),
                user: b.user.as_ref().map(|s| s.get_ref().clone()),
                manylinux: b.manylinux.as_ref().map(|s| s.get_ref().clone()),
            }
        }
        None => Base {
            image: DEFAULT_BASE.into(),
            reference: Reference::parse(DEFAULT_BASE).expect("default base parses"),
            platform: "linux/amd64".into(),
            platforms: vec!["linux/amd64".into()],
            python: None,
            python_version: None,
            site_packages: None,
            user: None,
            manylinux: None,
        },
    };

    // [image]
    let im = &raw.image;
    let repository = im.repository.as_ref().map(|r| {
        match Reference::parse(r.get_ref()) {
            Ok(p) if p.tag.is_some() || p.digest.is_some() => rep.error(
                inner(r),
                format!("repository `{}` carries a tag or digest", r.get_ref()),
                Some("put tags in `tags = [\"…\"]`; the digest is computed".into()),
            ),
            Ok(_) => {}
            Err(e) => rep.error(
                inner(r),
                format!("repository: {e}"),
                Some("write e.g. \"registry.example.com/team/demo\"".into()),
            ),
        }
        r.get_ref().clone()
    });
    let sbom = match &im.sbom {
        None => vec![SbomFormat::Spdx],
        Some(list) => {
            let mut out = Vec::new();
            for f in list {
                match SbomFormat::parse(f.get_ref()) {
                    Some(x) if !out.contains(&x) => out.push(x),
                    Some(_) => {}
                    None => rep.error(
                        inner(f),
                        format!("`{}` is not an SBOM format", f.get_ref()),
                        Some("write \"spdx\" (SPDX 2.3 JSON) or \"cyclonedx\" (CycloneDX 1.6 JSON); `sbom = []` writes none".into()),
                    ),
                }
            }
            out
        }
    };
    let tags = im
        .tags
        .iter()
        .map(|t| {
            if !is_valid_tag(t.get_ref()) {
                rep.error(
                    inner(t),
                    format!("`{}` is not a valid image tag", t.get_ref()),
                    Some(
                        "tags are up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'".into(),
                    ),
                );
            }
            t.get_ref().clone()
        })
        .collect();
    let app_dir = match &im.app_dir {
        Some(a) => {
            let v = a.get_ref();
            if !v.starts_with('/') {
                rep.error(
                    inner(a),
                    format!("app_dir `{v}` is relative"),
                    Some("write an absolute path inside the image, e.g. \"/home/ray/app\"".into()),
                );
            } else if v.trim_end_matches('/').is_empty()
                || v.split('/').any(|c| c == ".." || c == ".")
            {
                rep.error(
                    inner(a),
                    format!("app_dir `{v}` would put the code at or outside the image root"),
                    Some("write a directory below /, e.g. \"/home/ray/app\"".into()),
                );
            }
            v.trim_end_matches('/').to_string()
        }
        None => DEFAULT_APP_DIR.into(),
    };
    let env = check_env_map(rep, &im.env);

    // [env]
    let store = raw
        .env
        .store
        .as_ref()
        .and_then(|s| match StoreUrl::parse(s.get_ref()) {
            Ok(u) => Some(u),
            Err(e) => {
                rep.error(inner(s), format!("store: {e}"), Some(e.help().into()));
                None
            }
        });
    let env_vars = check_env_map(rep, &raw.env.env_vars);
    if let Some(pv) = &raw.env.python_version {
        check_python_version(rep, pv);
    }
    if let Some(t) = &raw.env.setup_timeout_seconds
        && (*t.get_ref() == 0 || *t.get_ref() < -1)
    {
        rep.error(
            t.span(),
            "setup_timeout_seconds must be positive, or -1 for no timeout",
            Some("e.g. setup_timeout_seconds = 600".into()),
        );
    }
    let nfs = raw.nfs.as_ref().map(|n| {
        let n = n.get_ref();
        let abs = |rep: &mut Reporter, v: &Spanned<String>, what: &str| {
            if !v.get_ref().starts_with('/') {
                rep.error(
                    inner(v),
                    format!("[nfs] {what} `{}` is not an absolute path", v.get_ref()),
                    Some(
                        "write the path where the volume is mounted, e.g. \"/mnt/shared/raypack\""
                            .into(),
                    ),
                );
            }
        };
        if let Some(p) = &n.path {
            abs(rep, p, "path");
        }
        let volume = match (&n.claim, &n.server, &n.export) {
            (Some(c), None, None) => Some(NfsVolume::Claim(c.get_ref().clone())),
            (None, Some(s), Some(e)) => {
                abs(rep, e, "export");
                Some(NfsVolume::Server {
                    server: s.get_ref().clone(),
                    export: e.get_ref().clone(),
                })
            }
            (None, None, None) => None,
            (Some(c), _, _) => {
                rep.error(
                    inner(c),
                    "[nfs] takes either `claim` or `server` + `export`, not both".to_string(),
                    Some("a PVC (`claim`) already names its NFS server".into()),
                );
                None
            }
            (None, Some(s), None) => {
                rep.error(
                    inner(s),
                    "[nfs] `server` needs `export` (the exported path)".to_string(),
                    None,
                );
                None
            }
            (None, None, Some(e)) => {
                rep.error(inner(e), "[nfs] `export` needs `server`".to_string(), None);
                None
            }
        };
        Nfs {
            path: n.path.as_ref().map(|p| PathBuf::from(p.get_ref())),
            volume,
        }
    });
    let env_settings = EnvSettings {
        store,
        env_vars,
        python_version: raw.env.python_version.as_ref().map(|s| s.get_ref().clone()),
        setup_timeout_seconds: raw.env.setup_timeout_seconds.as_ref().map(|s| *s.get_ref()),
    };

    // [cluster]
    let cluster = raw
        .cluster
        .as_ref()
        .map(|c| validate_cluster(c, &name, kind, rep));
    // A Serve import path must name a module the code ships (Ray imports it on every replica).
    if let Some(serve) = raw
        .cluster
        .as_ref()
        .and_then(|c| c.get_ref().serve.as_ref())
    {
        let ip = &serve.get_ref().import_path;
        check_serve_module(rep, ip, &working_dir, &py_modules);
    }

    let compression = image_compression(rep, im);
    let cache = match &im.cache {
        None => LayerCache::Target,
        Some(c) => LayerCache::parse(c.get_ref()).unwrap_or_else(|e| {
            rep.error(
                inner(c),
                format!("cache: {e}"),
                Some(
                    "the shared layer cache is a registry repository bake can push to, an s3://, gs:// or file:// prefix, or \"none\""
                        .into(),
                ),
            );
            LayerCache::Off
        }),
    };

    Recipe {
        path: path.to_path_buf(),
        root: normalize(&std::path::absolute(&root).unwrap_or(root.clone())),
        name,
        description: project.description,
        code: Code {
            working_dir,
            py_modules,
            excludes,
        },
        dependencies: Dependencies {
            requirements,
            requirements_file,
            index_url,
            extra_index_urls,
            find_links,
            package_indexes,
            max_layers,
            replace_ray: d.replace_ray,
        },
        base,
        image: Image {
            repository,
            tags,
            app_dir,
            env,
            labels: im.labels.clone(),
            compile_bytecode: im.compile_bytecode.unwrap_or(true),
            sbom,
            compression,
            cache,
        },
        env: env_settings,
        cluster,
        nfs,
    }
}

/// `[image] compression` and `compression_level`.
pub(super) fn image_compression(
    rep: &mut Reporter,
    im: &RawImage,
) -> crate::oci::media::Compression {
    use crate::oci::media::Compression;
    let zst = crate::archive::zst::LEVELS;
    let level = match &im.compression_level {
        Some(l) => match i32::try_from(*l.get_ref()).ok().filter(|v| zst.contains(v)) {
            Some(v) => v,
            None => {
                rep.error(
                    l.span(),
                    format!("compression_level {} is out of range", l.get_ref()),
                    Some(format!(
                        "zstd levels are {}–{} (3 is zstd's default; 19 is smallest and slowest)",
                        zst.start(),
                        zst.end()
                    )),
                );
                crate::archive::zst::DEFAULT_LEVEL
            }
        },
        None => crate::archive::zst::DEFAULT_LEVEL,
    };
    match im.compression.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "gzip")) => {
            if let Some(l) = &im.compression_level {
                rep.error(
                    l.span(),
                    "compression_level is for zstd layers",
                    Some("set compression = \"zstd\", or drop compression_level (gzip layers use level 6)".into()),
                );
            }
            Compression::Gzip
        }
        Some((_, "zstd")) => Compression::Zstd { level },
        Some((c, other)) => {
            rep.error(
                inner(c),
                format!("compression `{other}` is not supported"),
                Some(
                    "write \"gzip\" (every runtime) or \"zstd\" (containerd >= 1.5, CRI-O)".into(),
                ),
            );
            Compression::Gzip
        }
    }
}

pub(super) fn check_python_version(rep: &mut Reporter, pv: &Spanned<String>) {
    let ok = pv
        .get_ref()
        .split_once('.')
        .is_some_and(|(a, b)| a == "3" && b.parse::<u32>().is_ok_and(|m| (8..=14).contains(&m)));
    if !ok {
        rep.error(
            inner(pv),
            format!(
                "python_version `{}` is not a CPython 3.X version",
                pv.get_ref()
            ),
            Some("write e.g. python_version = \"3.11\"".into()),
        );
    }
}

pub(super) fn check_env_map(
    rep: &mut Reporter,
    m: &BTreeMap<String, Spanned<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if !is_env_name(k) {
            rep.error(
                v.span(),
                format!("`{k}` is not a valid environment variable name"),
                Some("use letters, digits and '_', not starting with a digit".into()),
            );
        }
        out.insert(k.clone(), v.get_ref().clone());
    }
    out
}

pub(super) fn validate_cluster(
    c: &Spanned<RawCluster>,
    project: &str,
    _kind: Option<ClusterKind>,
    rep: &mut Reporter,
) -> Cluster {
    let span = c.span();
    let c = c.get_ref();
    let kind = *c.kind.get_ref();
    let name = match &c.name {
        Some(n) => {
            if !is_dns1035(n.get_ref()) {
                rep.error(
                    inner(n),
                    format!("cluster name `{}` is not a DNS-1035 label", n.get_ref()),
                    Some(format!("e.g. name = \"{}\"", suggest_dns1035(n.get_ref()))),
                );
            } else if n.get_ref().len() > kind.max_name_len() {
                rep.error(inner(n), format!("cluster name `{}` is {} characters; KubeRay allows at most {} for a {kind}", n.get_ref(), n.get_ref().len(), kind.max_name_len()), Some("shorten it".into()));
            }
            n.get_ref().clone()
        }
        None => {
            if project.len() > kind.max_name_len() && is_dns1035(project) {
                rep.error(span.start..span.start + 9, format!("project name `{project}` is {} characters; KubeRay allows at most {} for a {kind}", project.len(), kind.max_name_len()), Some(format!("set a shorter `name = \"…\"` in [cluster] (at most {} characters)", kind.max_name_len())));
            }
            project.to_string()
        }
    };
    if let Some(ns) = &c.namespace
        && !is_dns1123(ns.get_ref())
    {
        rep.error(
            inner(ns),
            format!("namespace `{}` is not a DNS-1123 label", ns.get_ref()),
            Some("lowercase letters, digits and '-'".into()),
        );
    }
    match kind {
        ClusterKind::RayJob if c.entrypoint.is_none() => rep.error(
            c.kind.span(),
            "a RayJob needs an entrypoint",
            Some("add entrypoint = \"python main.py\" to [cluster]".into()),
        ),
        ClusterKind::RayService if c.serve.is_none() => rep.error(
            c.kind.span(),
            "a RayService needs [cluster.serve] with an import_path",
            Some("add [cluster.serve] with import_path = \"app:deployment\"".into()),
        ),
        _ => {}
    }
    if let Some(e) = &c.entrypoint
        && e.get_ref().trim().is_empty()
    {
        rep.error(
            inner(e),
            "entrypoint is empty",
            Some("e.g. entrypoint = \"python main.py\"".into()),
        );
    }
    if let Some(img) = &c.image
        && let Err(e) = Reference::parse(img.get_ref())
    {
        rep.error(
            inner(img),
            format!("cluster image: {e}"),
            Some("write e.g. \"rayproject/ray:2.60.0-py311-cpu\"".into()),
        );
    }
    if let Some(v) = &c.ray_version {
        let ok = v.get_ref().split('.').count() >= 2
            && v.get_ref().split('.').all(|p| p.parse::<u32>().is_ok());
        if !ok {
            rep.error(
                inner(v),
                format!(
                    "ray_version `{}` is not a version like \"2.60.0\"",
                    v.get_ref()
                ),
                None,
            );
        }
    }
    for (t, what) in [
        (&c.ttl_seconds_after_finished, "ttl_seconds_after_finished"),
        (&c.active_deadline_seconds, "active_deadline_seconds"),
    ] {
        if let Some(t) = t
            && (*t.get_ref() < 0
                || *t.get_ref() > i32::MAX as i64
                || (what == "active_deadline_seconds" && *t.get_ref() == 0))
        {
            rep.error(
                t.span(),
                format!("{what} = {} is out of range", t.get_ref()),
                Some("use a positive number of seconds".into()),
            );
        }
    }
    let head = resources(
        rep,
        &c.head.cpu,
        &c.head.memory,
        &c.head.gpu,
        &c.head.ray_start_params,
    );
    let mut workers = Vec::new();
    let mut seen = BTreeMap::new();
    for w in &c.workers {
        let wspan = w.span();
        let w = w.get_ref();
        let g = w.group.get_ref();
        if !is_dns1123(g) {
            rep.error(
                inner(&w.group),
                format!("worker group name `{g}` is not a DNS-1123 label"),
                Some("lowercase letters, digits and '-', e.g. group = \"cpu\"".into()),
            );
        }
        if seen.insert(g.clone(), ()).is_some() {
            rep.error(
                inner(&w.group),
                format!("worker group `{g}` is defined twice"),
                Some("give each group its own name".into()),
            );
        }
        let get = |v: &Option<Spanned<i64>>| {
            v.as_ref()
                .map(|s| (*s.get_ref(), s.span().start, s.span().end))
        };
        let replicas = get(&w.replicas);
        let min = get(&w.min);
        let max = get(&w.max);
        for (v, what) in [(replicas, "replicas"), (min, "min"), (max, "max")] {
            if let Some((n, a, b)) = v
                && !(0..=i32::MAX as i64).contains(&n)
            {
                rep.error(
                    a..b,
                    format!("{what} = {n} is out of range"),
                    Some("use a number from 0 to 2147483647".into()),
                );
            }
        }
        let r = replicas
            .map(|v| v.0)
            .unwrap_or_else(|| min.map(|v| v.0).unwrap_or(1));
        let mn = min.map(|v| v.0).unwrap_or(0);
        let mx = max.map(|v| v.0).unwrap_or(r.max(mn));
        if mn > mx {
            rep.error(
                min.map(|m| m.1..m.2).unwrap_or(wspan.clone()),
                format!("worker group `{g}`: min = {mn} is greater than max = {mx}"),
                Some("min must be ≤ max".into()),
            );
        } else if r < mn || r > mx {
            rep.error(
                replicas.map(|m| m.1..m.2).unwrap_or(wspan.clone()),
                format!("worker group `{g}`: replicas = {r} is outside min..max = {mn}..{mx}"),
                Some("set replicas between min and max".into()),
            );
        }
        workers.push(WorkerGroup {
            group: g.clone(),
            replicas: r,
            min: mn,
            max: mx,
            resources: resources(rep, &w.cpu, &w.memory, &w.gpu, &w.ray_start_params),
        });
    }
    let serve = c.serve.as_ref().map(|s| {
        let s = s.get_ref();
        let ip = s.import_path.get_ref();
        let ok = ip
            .split_once(':')
            .is_some_and(|(m, a)| !m.is_empty() && !a.is_empty())
            || (ip.contains('.') && !ip.ends_with('.'));
        if !ok {
            rep.error(
                inner(&s.import_path),
                format!("import_path `{ip}` is not module:attribute"),
                Some("e.g. import_path = \"serve_app:app\"".into()),
            );
        }
        Serve {
            import_path: ip.clone(),
            name: s.name.clone().unwrap_or_else(|| "app".into()),
            route_prefix: s.route_prefix.clone().unwrap_or_else(|| "/".into()),
        }
    });
    Cluster {
        kind,
        name,
        namespace: c.namespace.as_ref().map(|s| s.get_ref().clone()),
        entrypoint: c.entrypoint.as_ref().map(|s| s.get_ref().clone()),
        ray_version: c.ray_version.as_ref().map(|s| s.get_ref().clone()),
        image: c.image.as_ref().map(|s| s.get_ref().clone()),
        head,
        workers,
        serve,
        shutdown_after_job_finishes: c.shutdown_after_job_finishes.unwrap_or(true),
        ttl_seconds_after_finished: c.ttl_seconds_after_finished.as_ref().map(|s| *s.get_ref()),
        active_deadline_seconds: c.active_deadline_seconds.as_ref().map(|s| *s.get_ref()),
        service_account: c.service_account.clone(),
        image_pull_secrets: c.image_pull_secrets.clone(),
        autoscaling: c.autoscaling.unwrap_or(false),
    }
}

pub(super) fn resources(
    rep: &mut Reporter,
    cpu: &Option<Spanned<Quantity>>,
    memory: &Option<Spanned<Quantity>>,
    gpu: &Option<Spanned<u32>>,
    params: &BTreeMap<String, Spanned<ParamValue>>,
) -> Resources {
    let mut q = |v: &Option<Spanned<Quantity>>, what: &str, example: &str| {
        v.as_ref().map(|s| {
            let val = &s.get_ref().0;
            if !QUANTITY.is_match(val) {
                rep.error(
                    s.span(),
                    format!("{what} `{val}` is not a Kubernetes quantity"),
                    Some(format!(
                        "write e.g. {what} = \"{example}\" (binary suffixes Ki, Mi, Gi; no \"GB\")"
                    )),
                );
            }
            val.clone()
        })
    };
    let cpu = q(cpu, "cpu", "2");
    let memory = q(memory, "memory", "4Gi");
    Resources {
        cpu,
        memory,
        gpu: gpu.as_ref().map(|g| *g.get_ref()),
        ray_start_params: params
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().0.clone()))
            .collect(),
    }
}

/// The module of a Serve `import_path` (`module.sub:attr` or `module.sub.attr`, as Ray
/// accepts them) must be dotted Python identifiers and exist in the working dir or a
/// py_module (`a/b.py`, `a/b/__init__.py`, or a namespace directory `a/b/`).
pub(super) fn check_serve_module(
    rep: &mut Reporter,
    ip: &Spanned<String>,
    working_dir: &Path,
    py_modules: &[PyModule],
) {
    let text = ip.get_ref();
    let module = match text.split_once(':') {
        Some((m, _)) => m,
        None => match text.rsplit_once('.') {
            Some((m, _)) => m,
            None => return, // not module:attribute: reported by validate_cluster
        },
    };
    let identifier = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    if module.is_empty() {
        return;
    }
    if !module.split('.').all(identifier) {
        rep.error(
            inner(ip),
            format!(
                "import_path `{text}`: `{module}` is not a Python module path (dotted identifiers, no `/` or `.py`)"
            ),
            Some("write it as Ray imports it: `package.module:attribute`, e.g. `app.serve:deployment`".into()),
        );
        return;
    }
    let parts: Vec<&str> = module.split('.').collect();
    let found_under = |root: &Path, rest: &[&str]| {
        let mut p = root.to_path_buf();
        for c in rest {
            p.push(c);
        }
        rest.is_empty() || p.with_extension("py").is_file() || p.is_dir()
    };
    let in_working_dir = found_under(working_dir, &parts);
    let in_py_module = py_modules.iter().any(|m| {
        m.name == parts[0]
            && (if m.file {
                parts.len() == 1
            } else {
                found_under(&m.path, &parts[1..])
            })
    });
    if !(in_working_dir || in_py_module) {
        let rel = parts.join("/");
        rep.error(
            inner(ip),
            format!(
                "import_path `{text}`: module `{module}` is not in the working dir ({}: no {rel}.py or {rel}/) or a py_module",
                working_dir.display()
            ),
            Some("check the spelling; Ray imports it from the shipped code on every replica".into()),
        );
    }
}
