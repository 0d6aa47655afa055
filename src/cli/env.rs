//! `raypack env`: the code as content-hashed zips (and dependencies as pip lines or a bundle)
//! in a store, printed as a runtime_env, a RayJob or a RayService, or submitted.

use super::*;

#[derive(clap::Args, Debug)]
pub(super) struct EnvArgs {
    /// Store URL (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, file:///PATH); overrides [env] store.
    #[arg(long, value_name = "URL")]
    pub(super) store: Option<String>,
    /// How dependencies reach the cluster.
    #[arg(long, value_enum, default_value_t = DepsMode::Pip)]
    pub(super) deps: DepsMode,
    /// Format of the printed runtime_env.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub(super) format: Format,
    /// Print a whole manifest instead of the runtime_env.
    #[arg(long, value_enum)]
    pub(super) emit: Option<Emit>,
    /// Print these KubeRay YAML files (`-` = stdin) with the runtime_env set in every RayJob's
    /// runtimeEnvYAML and every RayService application's runtime_env; nothing else changes.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "emit")]
    pub(super) resolve: Vec<PathBuf>,
    /// Submit the job to this Ray dashboard (http://HOST:8265), follow its logs, exit with its outcome.
    #[arg(long, value_name = "URL")]
    pub(super) submit: Option<String>,
    /// Give up following a submitted job after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub(super) timeout: u64,
    /// Plan and print without zipping or uploading.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// DEFLATE level 0-9 for the zips (0 = stored). Default: 0 for file:// stores (local disk
    /// or NFS, where Ray itself stores), 1 for S3 and GCS (fewer bytes over the network).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub(super) compression_level: Option<u32>,
    /// Largest package accepted, in bytes. Default: no limit, with a warning over the 512 MiB
    /// Ray allows for packages uploaded through its GCS (s3://, gs:// and file URIs, which
    /// raypack prints, are downloaded by every node whatever their size).
    #[arg(long)]
    pub(super) max_package_size: Option<u64>,
    /// With `--deps bundle`: list the distributions bundled, kept from the base image and
    /// replaced.
    #[arg(long)]
    pub(super) explain: bool,
    /// Publish to a shared volume (NFS/EFS) mounted at PATH here and in every Ray pod (default:
    /// [nfs] path): a code snapshot and an installed environment, no zips, no pip at job start.
    #[arg(long, value_name = "PATH", num_args = 0..=1,
          conflicts_with_all = ["store", "dry_run", "compression_level", "max_package_size", "resolve", "explain"])]
    pub(super) nfs: Option<Option<PathBuf>>,
}

/// The KubeRay manifest of `kind` for the recipe's `[cluster]`, with `env` as its runtime_env.
fn cluster_doc(
    recipe: &raypack::recipe::Recipe,
    kind: ClusterKind,
    env: &raypack::spec::runtime_env::RuntimeEnv,
) -> Result<serde_json::Value, CliError> {
    let c = recipe.cluster.as_ref().ok_or_else(|| {
        CliError::Other(raypack::spec::kuberay::SpecError::NoCluster(kind).to_string())
    })?;
    let compatible = c.kind == kind
        || (kind == ClusterKind::RayJob && c.kind == ClusterKind::RayCluster)
        || (kind == ClusterKind::RayCluster && c.kind == ClusterKind::RayJob);
    if !compatible {
        return Err(CliError::Other(
            raypack::spec::kuberay::SpecError::KindMismatch {
                kind: c.kind,
                wanted: kind.to_string().to_lowercase(),
                wanted_kind: kind,
            }
            .to_string(),
        ));
    }
    let image = c.image.clone().unwrap_or_else(|| recipe.base.image.clone());
    let ray_version =
        raypack::spec::kuberay::ray_version(Some(c), None, &image).ok_or_else(|| {
            CliError::Other(
                raypack::spec::kuberay::SpecError::UnknownRayVersion {
                    image: image.clone(),
                }
                .to_string(),
            )
        })?;
    Ok(manifest(&ManifestInput {
        kind,
        cluster: c,
        image: &image,
        ray_version: &ray_version,
        runtime_env: Some(env),
    })?)
}

/// What `env` prints without `--output json`: the manifest, else the runtime_env, as `format`.
fn printed(
    doc: Option<&serde_json::Value>,
    format: Format,
    env: &raypack::spec::runtime_env::RuntimeEnv,
) -> Result<String, CliError> {
    Ok(match (doc, format) {
        (Some(d), Format::Yaml) => raypack::spec::to_yaml(d),
        (Some(d), Format::Json) => serde_json::to_string_pretty(d)? + "\n",
        (None, Format::Yaml) => env.to_yaml(),
        (None, Format::Json) => serde_json::to_string(&env.to_json())? + "\n",
    })
}

fn emitted_kind(emit: Option<Emit>) -> Option<ClusterKind> {
    match emit {
        None | Some(Emit::RuntimeEnv) => None,
        Some(Emit::Rayjob) => Some(ClusterKind::RayJob),
        Some(Emit::Rayservice) => Some(ClusterKind::RayService),
        Some(Emit::Raycluster) => Some(ClusterKind::RayCluster),
    }
}

/// `env --nfs`: the snapshot and environment on the shared volume, then the same outputs.
fn env_nfs(
    cli: &Cli,
    args: &EnvArgs,
    recipe: &raypack::recipe::Recipe,
    flag: Option<&std::path::Path>,
) -> Result<ExitCode, CliError> {
    let path =
        raypack::nfs::mount_path(recipe, flag).map_err(|e| CliError::Other(e.to_string()))?;
    let http = raypack::http::client()?;
    let rt = runtime()?;
    let bar = spinner(cli);
    let verbose = cli.verbose > 0;
    let outcome = rt.block_on(raypack::nfs::run(recipe, &path, &http, |m| {
        bar.set_message(m.to_string());
        if verbose {
            eprintln!("{m}");
        }
    }));
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| CliError::Other(e.to_string()))?;
    if !cli.quiet {
        let c = &outcome.code;
        eprintln!(
            "{:>9} code {} ({} files, {}{})",
            if c.created { "published" } else { "unchanged" },
            c.dir.display(),
            c.files,
            raypack::units::human_bytes(c.bytes),
            if c.linked > 0 {
                format!("; {} hard-linked from the previous snapshot", c.linked)
            } else {
                String::new()
            }
        );
        if let Some(e) = &outcome.env {
            eprintln!(
                "{:>9} environment {} ({} distributions; {} kept from the base image)",
                if e.created { "installed" } else { "unchanged" },
                e.dir.display(),
                e.wheels,
                e.kept
            );
        }
    }
    let doc = match emitted_kind(args.emit) {
        None => None,
        Some(kind) => {
            let mut d = cluster_doc(recipe, kind, &outcome.env_spec)?;
            let volume = recipe
                .nfs
                .as_ref()
                .and_then(|n| n.volume.as_ref())
                .ok_or_else(|| {
                    CliError::Other(
                        "--emit with --nfs needs the volume in [nfs]: `claim = \"PVC\"`, or `server` + `export`".into(),
                    )
                })?;
            raypack::spec::kuberay::with_nfs(
                &mut d,
                volume,
                &path.display().to_string(),
                &outcome.entrypoint_prefix,
            );
            Some(d)
        }
    };
    let text = if cli.output == Output::Json {
        serde_json::to_string_pretty(&serde_json::json!({"nfs": outcome, "manifest": doc}))? + "\n"
    } else {
        printed(doc.as_ref(), args.format, &outcome.env_spec)?
    };
    print!("{text}");
    let _ = std::io::stdout().flush();
    if let Some(address) = &args.submit {
        return submit(
            &rt,
            &http,
            address,
            &outcome.entrypoint_prefix,
            &outcome.runtime_env,
            recipe,
            args.timeout,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits `[cluster] entrypoint` (after `prefix`) to a Ray dashboard and follows the job to
/// its end.
fn submit(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    address: &str,
    prefix: &str,
    runtime_env: &serde_json::Value,
    recipe: &raypack::recipe::Recipe,
    timeout: u64,
) -> Result<ExitCode, CliError> {
    let entrypoint = recipe
        .cluster
        .as_ref()
        .and_then(|c| c.entrypoint.clone())
        .ok_or_else(|| {
            CliError::Other(
                "--submit needs `entrypoint` in [cluster] (e.g. entrypoint = \"python main.py\")"
                    .into(),
            )
        })?;
    let entrypoint = format!("{prefix}{entrypoint}");
    let meta = serde_json::json!({"raypack.project": recipe.name});
    let result = rt.block_on(raypack::submit::submit_and_follow(
        http,
        address,
        &entrypoint,
        runtime_env,
        &meta,
        Duration::from_secs(timeout),
        |log| {
            eprint!("{log}");
        },
    ))?;
    eprintln!(
        "job {}: {}{}",
        result.submission_id,
        result.status,
        result
            .message
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    );
    Ok(if result.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn env(cli: &Cli, args: &EnvArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
    if let Some(flag) = &args.nfs {
        return env_nfs(cli, args, &recipe, flag.as_deref());
    }
    let store = args
        .store
        .as_deref()
        .map(|s| {
            StoreUrl::parse(s).map_err(|e| CliError::Other(format!("--store: {e}; {}", e.help())))
        })
        .transpose()?;
    let opts = EnvOptions {
        store,
        deps: args.deps,
        compression_level: args.compression_level,
        max_package_size: args.max_package_size,
        dry_run: args.dry_run,
        http: raypack::http::client()?,
    };
    let rt = runtime()?;
    let show = !cli.quiet && std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new_spinner();
    if show {
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let verbose = cli.verbose > 0;
    // On a terminal, a long walk shows how many files it has found.
    let planning = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(show));
    if show {
        let (planning, bar) = (planning.clone(), bar.clone());
        // Not joined: it ends at its next tick once planning is over.
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            while planning.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let n = raypack::collect::files_walked();
                if n > 0 && planning.load(Relaxed) {
                    bar.set_message(format!("collecting files: {n}"));
                }
            }
        });
    }
    let outcome = rt.block_on(envpack::run(&recipe, &opts, |msg| {
        planning.store(false, std::sync::atomic::Ordering::Relaxed);
        bar.set_message(msg.to_string());
        if verbose && !show {
            eprintln!("{msg}");
        }
    }));
    planning.store(false, std::sync::atomic::Ordering::Relaxed);
    bar.finish_and_clear();
    let outcome = outcome?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    if !cli.quiet {
        for p in &outcome.packages {
            let what = if args.dry_run {
                "planned"
            } else if p.uploaded {
                "uploaded"
            } else {
                "unchanged"
            };
            let kept = match p.kept {
                Some(k) if k > 0 => format!("; {k} kept from the base image"),
                _ => String::new(),
            };
            let size = match p.wheels {
                // An unchanged bundle is not installed again: only its wheel count is known.
                Some(w) if p.files == 0 => format!("{w} wheels{kept}"),
                Some(w) => format!(
                    "{w} wheels, {} files, {}{kept}",
                    p.files,
                    raypack::units::human_bytes(p.bytes)
                ),
                None => format!(
                    "{} files, {}",
                    p.files,
                    raypack::units::human_bytes(p.bytes)
                ),
            };
            eprintln!("{what:>9} {} {} ({size})", p.role, p.uri);
        }
    }
    if args.explain {
        match &outcome.bundle {
            Some(b) => {
                let list = |title: &str, v: &[String]| {
                    eprintln!("{title} ({}):", v.len());
                    for x in v {
                        eprintln!("  {x}");
                    }
                };
                list("bundled", &b.bundled);
                list("replaced (bundled, shadowing the base's)", &b.replaced);
                list("kept from the base image", &b.kept);
            }
            None => eprintln!("--explain: nothing to explain without `--deps bundle`"),
        }
    }

    let doc = emitted_kind(args.emit)
        .map(|kind| cluster_doc(&recipe, kind, &outcome.env))
        .transpose()?;
    let resolved = if args.resolve.is_empty() {
        None
    } else {
        Some(resolve_files(
            &args.resolve,
            "a RayJob or RayService",
            |t, f| raypack::spec::resolve::resolve_runtime_envs(t, f, &outcome.env),
        )?)
    };
    let text = match (&doc, args.format, cli.output) {
        (_, _, Output::Json) if resolved.is_some() => {
            serde_json::to_string_pretty(
                &serde_json::json!({"store": outcome.store, "packages": outcome.packages, "runtime_env": outcome.runtime_env, "bundle": outcome.bundle, "resolved": resolved}),
            )? + "\n"
        }
        _ if resolved.is_some() => resolved.unwrap_or_default(),
        (_, _, Output::Json) => {
            serde_json::to_string_pretty(
                &serde_json::json!({"store": outcome.store, "packages": outcome.packages, "runtime_env": outcome.runtime_env, "bundle": outcome.bundle, "manifest": doc}),
            )? + "\n"
        }
        _ => printed(doc.as_ref(), args.format, &outcome.env)?,
    };
    print!("{text}");
    let _ = std::io::stdout().flush();

    if let Some(address) = &args.submit {
        return submit(
            &rt,
            &opts.http,
            address,
            "",
            &outcome.runtime_env,
            &recipe,
            args.timeout,
        );
    }
    Ok(ExitCode::SUCCESS)
}
