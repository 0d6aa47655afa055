//! `raypack lock`: the requirements resolved into pylock.raypack.toml, or (`--upgrade-base`)
//! the base re-pinned in raypack.lock.

use super::*;

#[derive(clap::Args, Debug)]
pub(super) struct LockArgs {
    /// Re-resolve [base] image to a digest and pin it in raypack.lock (and nothing else).
    #[arg(long)]
    pub(super) upgrade_base: bool,
    /// Target platforms, comma-separated (default: [base] platform), e.g. linux/amd64,linux/arm64;
    /// all go into one lock.
    #[arg(long, value_delimiter = ',')]
    pub(super) platform: Vec<String>,
    /// The base's Python, 3.X (default: [base] python_version, else the base image).
    #[arg(long, value_name = "3.X")]
    pub(super) python_version: Option<String>,
    /// The base's glibc level, 2_N (default: [base] manylinux, else the base image).
    #[arg(long, value_name = "2_N")]
    pub(super) manylinux: Option<String>,
    /// Take the newest allowed versions instead of keeping the current lock's.
    #[arg(long)]
    pub(super) upgrade: bool,
    /// Take the newest allowed version of NAME (repeatable); keep the rest.
    #[arg(long, value_name = "NAME")]
    pub(super) upgrade_package: Vec<String>,
    /// Do not resolve: fail when pylock.raypack.toml is missing or stale.
    #[arg(long)]
    pub(super) locked: bool,
    /// Fail instead of replacing a distribution the base image ships.
    #[arg(long)]
    pub(super) no_replace_base: bool,
    /// The base's installed distributions as name==version lines (for testing, until raypack
    /// reads them from the image).
    #[arg(long, hide = true, value_name = "FILE")]
    pub(super) installed: Option<PathBuf>,
    #[command(flatten)]
    pub(super) tls: RegistryArgs,
}

/// `--upgrade-base` re-pins the base; otherwise the requirements are locked.
pub(super) fn lock(cli: &Cli, args: &LockArgs) -> Result<ExitCode, CliError> {
    if args.upgrade_base {
        lock_base(cli, args)
    } else {
        lock_deps(cli, args)
    }
}

fn lock_base(cli: &Cli, args: &LockArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
    let platforms = if args.platform.is_empty() {
        recipe.base.platforms.clone()
    } else {
        args.platform.clone()
    };
    let registry = raypack::oci::client::Registry::new(args.tls.options())?;
    let cache = raypack::cache::BlobCache::new(&raypack::cache::default_cache_dir());
    let rt = runtime()?;
    let mut pinned = Vec::new();
    for platform_s in &platforms {
        let platform = raypack::oci::media::Platform::parse(platform_s).ok_or_else(|| {
            CliError::Other(format!(
                "--platform {platform_s}: write linux/amd64 or linux/arm64"
            ))
        })?;
        let base = rt.block_on(raypack::base::PinnedBase::pin(
            &recipe, platform, &registry, &cache, true,
        ))?;
        let (pin, changed) = (base.pin, base.pinned_now);
        if !cli.quiet && cli.output != Output::Json {
            eprintln!(
                "{} {} ({}) -> {}",
                if changed { "pinned" } else { "unchanged" },
                pin.image,
                pin.platform,
                pin.digest
            );
        }
        pinned.push(serde_json::json!({"image": pin.image, "platform": pin.platform, "digest": pin.digest, "changed": changed}));
    }
    if cli.output == Output::Json {
        // One platform: the pin itself (as before multi-platform recipes); several: a list.
        match pinned.len() {
            1 => println!("{}", pinned[0]),
            _ => println!("{}", serde_json::Value::Array(pinned)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lock_deps(cli: &Cli, args: &LockArgs) -> Result<ExitCode, CliError> {
    use raypack::lock::{BaseContents, LockOptions};
    let recipe = load_recipe(cli)?;
    let mut base_requires = Default::default();
    let base = match &args.installed {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| CliError::Other(format!("--installed {}: {e}", f.display())))?;
            let map = raypack::python::resolve::parse_installed(&text)
                .map_err(|e| CliError::Other(format!("--installed {}: {e}", f.display())))?;
            BaseContents::Known(map.into_iter().map(|(n, v)| (n, v.to_string())).collect())
        }
        None => {
            // The base's installed distributions: pulled and indexed once per base digest.
            let platform = args
                .platform
                .first()
                .cloned()
                .unwrap_or_else(|| recipe.base.platform.clone());
            let read = runtime()?.block_on(raypack::base::read_installed(
                &recipe,
                &platform,
                args.tls.options(),
            ));
            match read {
                Ok((index, _)) => {
                    base_requires = index.requirements();
                    BaseContents::Known(index.preferences())
                }
                Err(e) => {
                    if !cli.quiet {
                        eprintln!(
                            "warning: cannot read what the base {} has installed ({e}); locking without it (pass --installed FILE to say)",
                            recipe.base.image
                        );
                    }
                    BaseContents::Unknown
                }
            }
        }
    };
    let opts = LockOptions {
        platforms: args.platform.clone(),
        python_version: args.python_version.clone(),
        manylinux: args.manylinux.clone(),
        upgrade: args.upgrade,
        upgrade_packages: args.upgrade_package.clone(),
        no_replace_base: args.no_replace_base,
        base,
        base_requires,
        cache_dir: None,
        registry: args.tls.options(),
    };
    let rt = runtime()?;
    if args.locked {
        let path = rt.block_on(raypack::lock::check(&recipe, &opts))?;
        if cli.output == Output::Json {
            println!("{}", serde_json::json!({"path": path, "fresh": true}));
        } else if !cli.quiet {
            eprintln!("{} is up to date", raypack::recipe::display_path(&path));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = spinner(cli);
    let http = raypack::http::client()?;
    let outcome = rt.block_on(raypack::lock::lock(&recipe, &opts, &http, |m| {
        bar.set_message(m.to_string())
    }));
    // Do not wait for stray blocking threads (a slow getaddrinfo for a connection the pool no
    // longer needs kept the exit waiting for seconds).
    rt.shutdown_background();
    bar.finish_and_clear();
    let outcome = outcome?;
    if cli.output == Output::Json {
        let targets: Vec<_> = outcome
            .targets
            .iter()
            .zip(&outcome.resolutions)
            .map(|(t, r)| {
                serde_json::json!({
                    "platform": t.platform,
                    "target": t.target.to_string(),
                    "packages": r.packages.iter().map(|p| serde_json::json!({"name": p.name, "version": p.version.to_string(), "wheel": p.wheel.filename, "in_base": p.in_base})).collect::<Vec<_>>(),
                    "replacements": r.replacements.iter().map(|x| serde_json::json!({"name": x.name, "base": x.base_version, "locked": x.locked_version, "required_by": x.required_by})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"path": outcome.path, "changed": outcome.changed, "base_known": outcome.base_known, "targets": targets})
        );
    } else if !cli.quiet {
        for (t, r) in outcome.targets.iter().zip(&outcome.resolutions) {
            eprintln!("{}: {} packages", t.target, r.packages.len());
            for x in &r.replacements {
                // Direct causes read "required by …"; a cause through the base version's own
                // dependencies is a sentence of its own.
                let why = if x.required_by.iter().all(|r| r.contains(" needs ")) {
                    format!("because {}", x.required_by.join("; "))
                } else {
                    format!("required by {}", x.required_by.join("; "))
                };
                eprintln!(
                    "  replaces {} {} from the base with {} ({why})",
                    x.name, x.base_version, x.locked_version
                );
            }
        }
        if !outcome.base_known {
            eprintln!(
                "note: the base image's installed distributions are not read yet, so none were preferred or protected"
            );
        }
        eprintln!(
            "{} {}",
            if outcome.changed {
                "wrote"
            } else {
                "unchanged:"
            },
            raypack::recipe::display_path(&outcome.path)
        );
    }
    Ok(ExitCode::SUCCESS)
}
