//! `raypack bake`: the image, pushed or written out, with the KubeRay YAML that pins it.

use super::*;

#[derive(clap::Args, Debug)]
pub(super) struct BakeArgs {
    /// Target platforms, comma-separated (default: [base] platforms or platform, else
    /// linux/amd64); several make one multi-platform image (an index), e.g.
    /// linux/amd64,linux/arm64.
    #[arg(long, value_delimiter = ',')]
    pub(super) platform: Vec<String>,
    /// Push to [image] repository: blobs, the manifest by digest, then [image] tags.
    #[arg(long)]
    pub(super) push: bool,
    /// Write an OCI image layout to DIR (default when nothing else is asked: .raypack/oci).
    #[arg(long, value_name = "DIR")]
    pub(super) oci_layout: Option<PathBuf>,
    /// Write a tar that `docker load` accepts (OCI layout + manifest.json).
    #[arg(long, value_name = "FILE")]
    pub(super) tar: Option<PathBuf>,
    /// Print a KubeRay manifest (or Helm values) that pins the image by digest.
    #[arg(long, value_enum)]
    pub(super) emit: Option<BakeEmit>,
    /// Print these KubeRay YAML files (`-` = stdin) with every image naming the baked
    /// repository pinned to the baked digest and `rayVersion` set to the image's Ray; nothing
    /// else in them changes.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "emit")]
    pub(super) resolve: Vec<PathBuf>,
    /// Re-resolve the base tag instead of using the pin in raypack.lock.
    #[arg(long)]
    pub(super) upgrade_base: bool,
    /// Bake the code only; take the Python dependencies from the base image.
    #[arg(long)]
    pub(super) skip_deps: bool,
    /// List the dependencies kept from the base, installed and replaced, and the layers.
    #[arg(long)]
    pub(super) explain: bool,
    /// Also write the image's SBOM to FILE ([image] sbom formats: the first to FILE, each
    /// further one beside it with its suffix, e.g. FILE.cdx.json).
    #[arg(long, value_name = "FILE")]
    pub(super) sbom: Option<PathBuf>,
    /// Sign the pushed image with KEY (a `cosign generate-key-pair` key, its password in
    /// COSIGN_PASSWORD; or a P-256 PKCS #8 / SEC1 PEM): `cosign verify --key` accepts it.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub(super) sign: Option<PathBuf>,
    /// The shared layer cache: REGISTRY/REPO, an s3://, gs:// or file:// prefix, or `none`
    /// (default: [image] cache, else the repository pushed to). Dependency layers found there
    /// by content key are reused without downloading a wheel; new ones are recorded there.
    #[arg(long, value_name = "LOCATION", value_parser = parse_layer_cache)]
    pub(super) cache: Option<raypack::recipe::LayerCache>,
    #[command(flatten)]
    pub(super) tls: RegistryArgs,
}

fn parse_layer_cache(s: &str) -> Result<raypack::recipe::LayerCache, String> {
    raypack::recipe::LayerCache::parse(s)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum BakeEmit {
    Raycluster,
    Rayjob,
    Rayservice,
    HelmValues,
    /// A DaemonSet that pre-pulls the image by digest on every node.
    Prepull,
}

pub(super) fn bake(cli: &Cli, args: &BakeArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
    // Check what will be printed before building anything.
    if args.emit == Some(BakeEmit::Prepull) && recipe.image.repository.is_none() {
        return Err(CliError::Other(
            "--emit prepull needs [image] repository: nodes pull the image from a registry".into(),
        ));
    }
    if let Some(e) = args.emit.filter(|e| *e != BakeEmit::Prepull) {
        let c = recipe.cluster.as_ref().ok_or_else(|| {
            CliError::Other("--emit needs [cluster] in the recipe (see recipes/README.md)".into())
        })?;
        if e == BakeEmit::Rayjob && c.entrypoint.is_none() {
            return Err(CliError::Other(
                "--emit rayjob needs `entrypoint` in [cluster]".into(),
            ));
        }
        if e == BakeEmit::Rayservice && c.serve.is_none() {
            return Err(CliError::Other(
                "--emit rayservice needs [cluster.serve] with an import_path".into(),
            ));
        }
    }
    let opts = raypack::bake::BakeOptions {
        platforms: args.platform.clone(),
        push: args.push,
        oci_layout: args.oci_layout.clone(),
        tar: args.tar.clone(),
        upgrade_base: args.upgrade_base,
        registry: args.tls.options(),
        cache_dir: None,
        skip_deps: args.skip_deps,
        sbom_file: args.sbom.clone(),
        sign_key: args.sign.clone(),
        layer_cache: args.cache.clone(),
    };
    let rt = runtime()?;
    let http = raypack::http::client()?;
    let bar = spinner(cli);
    let verbose = cli.verbose > 0;
    let outcome = rt.block_on(raypack::bake::run(&recipe, &opts, &http, |m| {
        bar.set_message(m.to_string());
        if verbose {
            eprintln!("{m}");
        }
    }));
    bar.finish_and_clear();
    let outcome = outcome?;
    if let Some(reason) = &outcome.dependencies.relocked
        && !cli.quiet
    {
        let file = raypack::python::pylock::PYLOCK_FILE;
        if reason == raypack::lock::NO_LOCK_YET {
            eprintln!("locked the requirements into {file} (commit it)");
        } else {
            eprintln!("re-locked {file}: {reason}");
        }
    }
    if let Some(why) = &outcome.dependencies.no_bytecode
        && !outcome.dependencies.layers.is_empty()
    {
        eprintln!(
            "warning: dependency layers without bytecode (first imports in a container compile them): {why}"
        );
    }
    // Per platform for a multi-platform image, else the one image's.
    let per_platform: Vec<(Option<&str>, &raypack::bake::deps::DepsReport)> =
        if outcome.platforms.is_empty() {
            vec![(None, &outcome.dependencies)]
        } else {
            outcome
                .platforms
                .iter()
                .map(|p| (Some(p.platform.as_str()), &p.dependencies))
                .collect()
        };
    for (platform, d) in per_platform {
        if args.explain {
            if let Some(p) = platform {
                eprintln!("{p}:");
            }
            explain_deps(d);
        } else if !cli.quiet && !d.is_empty() {
            eprintln!(
                "dependencies{}: {} installed, {} replaced, {} kept from the base, in {} layer(s) (--explain lists them)",
                platform.map(|p| format!(" ({p})")).unwrap_or_default(),
                d.installed.len(),
                d.replaced.len(),
                d.kept.len(),
                d.layers.len()
            );
        }
    }
    if !cli.quiet {
        if outcome.base_pinned_now {
            if outcome.platforms.is_empty() {
                eprintln!(
                    "pinned base {} -> {} in raypack.lock",
                    outcome.base, outcome.base_digest
                );
            }
            for p in &outcome.platforms {
                eprintln!(
                    "pinned base {}{} ({}) -> {} in raypack.lock",
                    outcome.base,
                    p.base_tag
                        .as_ref()
                        .map(|t| format!(" as tag {t}"))
                        .unwrap_or_default(),
                    p.platform,
                    p.base_digest
                );
            }
        }
        for p in &outcome.platforms {
            eprintln!("{}: {}", p.platform, p.digest);
        }
        if let Some(p) = &outcome.pushed {
            eprintln!(
                "pushed {} ({} uploaded, {} mounted, {} already there){}",
                p.repository,
                p.uploaded,
                p.mounted,
                p.skipped,
                if p.tags.is_empty() {
                    String::new()
                } else if p.default_tag {
                    format!(
                        ", tag {} (no [image] tags: a tag from the image's digest, so the registry keeps it)",
                        p.tags.join(", ")
                    )
                } else {
                    format!(", tags {}", p.tags.join(", "))
                }
            );
        }
        let sboms = if outcome.platforms.is_empty() {
            outcome.sbom.iter().collect::<Vec<_>>()
        } else {
            outcome.platforms.iter().flat_map(|p| &p.sbom).collect()
        };
        for s in sboms {
            let mut line = format!("SBOM ({}, {})", s.media_type, s.sha256);
            match (&s.referrer, &s.attached) {
                (Some(d), Some(raypack::oci::referrers::Attached::TagSchema(tag))) => {
                    line.push_str(&format!(": referrer {d}, listed under tag {tag}"))
                }
                (Some(d), _) => line.push_str(&format!(": referrer {d}")),
                _ => {}
            }
            for f in &s.files {
                line.push_str(&format!(", wrote {}", f.display()));
            }
            eprintln!("{line}");
        }
        if let Some(tag) = &outcome.signature {
            eprintln!("signed: cosign signature under tag {tag}");
        }
        if let Some(d) = &outcome.oci_layout {
            eprintln!("wrote OCI layout {}", d.display());
        }
        if let Some(t) = &outcome.tar {
            eprintln!("wrote {}", t.display());
        }
    }
    let doc = match args.emit {
        None => None,
        Some(BakeEmit::Prepull) => Some(raypack::spec::kuberay::prepull(
            recipe.cluster.as_ref(),
            &recipe.name,
            &outcome.reference,
        )),
        Some(e) => {
            let c = recipe.cluster.as_ref().expect("checked above");
            let ray_version = raypack::spec::kuberay::ray_version(
                Some(c),
                outcome.ray_version.as_deref(),
                &recipe.base.image,
            )
            .ok_or_else(|| {
                CliError::Other(
                    raypack::spec::kuberay::SpecError::UnknownRayVersion {
                        image: recipe.base.image.clone(),
                    }
                    .to_string(),
                )
            })?;
            Some(match e {
                BakeEmit::HelmValues => raypack::spec::kuberay::helm_values(c, &outcome.reference),
                other => {
                    let kind = match other {
                        BakeEmit::Raycluster => ClusterKind::RayCluster,
                        BakeEmit::Rayjob => ClusterKind::RayJob,
                        _ => ClusterKind::RayService,
                    };
                    manifest(&ManifestInput {
                        kind,
                        cluster: c,
                        image: &outcome.reference,
                        ray_version: &ray_version,
                        runtime_env: None,
                    })?
                }
            })
        }
    };
    if !args.resolve.is_empty() {
        let ray_version = raypack::spec::kuberay::ray_version(
            recipe.cluster.as_ref(),
            outcome.ray_version.as_deref(),
            &recipe.base.image,
        );
        if ray_version.is_none() {
            eprintln!(
                "warning: the image's Ray version is unknown; rayVersion is left as it is (set [cluster] ray_version)"
            );
        }
        let baked = raypack::spec::resolve::BakedImage {
            reference: &outcome.reference,
            ray_version: ray_version.as_deref(),
        };
        let text = resolve_files(
            &args.resolve,
            "an image naming the baked repository",
            |t, f| raypack::spec::resolve::resolve_images(t, f, &baked),
        )?;
        match cli.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"bake": outcome, "resolved": text})
                )?
            ),
            Output::Text => print!("{text}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    match (cli.output, doc) {
        (Output::Json, doc) => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"bake": outcome, "manifest": doc}))?
        ),
        (Output::Text, Some(d)) => print!("{}", raypack::spec::to_yaml(&d)),
        (Output::Text, None) => println!("{}", outcome.reference),
    }
    Ok(ExitCode::SUCCESS)
}

/// `bake --explain`: what happened to each pinned distribution, and the layers (stderr).
fn explain_deps(d: &raypack::bake::deps::DepsReport) {
    let list = |title: &str, items: Vec<String>| {
        eprintln!("{title} ({}):", items.len());
        for i in items {
            eprintln!("  {i}");
        }
    };
    list(
        "kept from the base",
        d.kept
            .iter()
            .map(|x| format!("{} {}", x.name, x.version))
            .collect(),
    );
    list(
        "installed",
        d.installed
            .iter()
            .map(|x| format!("{} {}", x.name, x.version))
            .collect(),
    );
    list(
        "replaced",
        d.replaced
            .iter()
            .map(|x| {
                format!(
                    "{} {} -> {} ({} whiteouts)",
                    x.name, x.from, x.to, x.whiteouts
                )
            })
            .collect(),
    );
    list(
        "dependency layers",
        d.layers
            .iter()
            .map(|l| {
                format!(
                    "{} {} unpacked{}: {}",
                    &l.digest[..19.min(l.digest.len())],
                    raypack::units::human_bytes(l.unpacked),
                    if l.cached { ", cached" } else { "" },
                    l.distributions.join(", ")
                )
            })
            .collect(),
    );
    if let Some(sc) = &d.shared_cache {
        eprintln!(
            "shared layer cache {}: {}, {} layer(s) reused, {} entries recorded",
            sc.repository,
            if sc.plan_hit {
                "the whole plan was there (no wheel downloaded)"
            } else {
                "a new plan"
            },
            sc.layers_reused,
            sc.entries_written
        );
    }
}
