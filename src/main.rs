//! The `raypack` command line: parses flags, calls the library, prints. Nothing else.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use raypack::envpack::{self, EnvOptions};
use raypack::recipe::{ClusterKind, Recipe, RecipeError};
use raypack::spec::kuberay::{ManifestInput, manifest, ray_version_from_image};
use raypack::spec::runtime_env::DepsMode;
use raypack::store::StoreUrl;

#[derive(Parser, Debug)]
#[command(
    name = "raypack",
    version,
    about = "Ship Python projects to Ray clusters on Kubernetes",
    long_about = "Ship Python projects to Ray clusters on Kubernetes.\n\nDevelopment: `raypack env` packs the working dir and py_modules into content-hashed zips, uploads them to S3, GCS or a file/NFS path, and prints the runtime_env (or a RayJob).\nProduction: `raypack bake` builds the code and dependencies into an image on a rayproject/ray base."
)]
struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Use this recipe file instead of looking for raypack.toml / pyproject.toml.
    #[arg(long, global = true, value_name = "FILE")]
    recipe: Option<PathBuf>,
    /// Print less (errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Output for machines.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a raypack.toml for an existing project.
    Init {
        /// Overwrite an existing raypack.toml.
        #[arg(long)]
        force: bool,
    },
    /// Validate the recipe and print a summary.
    Check,
    /// Pack the code into content-hashed zips, upload them, print the runtime_env.
    Env(EnvArgs),
    /// Build an image with the code on a pinned rayproject/ray base; push it or write it out.
    Bake(BakeArgs),
    /// Resolve the Python requirements for the image's platform into pylock.raypack.toml
    /// (PEP 751); `--upgrade-base` re-pins the base image instead.
    Lock(LockArgs),
    /// Log in to a registry: check the credentials, then store them in the docker config.
    Login {
        /// Registry host, e.g. registry.example.com or 127.0.0.1:5000 (default: Docker Hub).
        registry: Option<String>,
        #[arg(short, long)]
        username: String,
        /// Read the password from stdin (the only way: passwords on the command line leak).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        tls: RegistryArgs,
    },
    /// Remove a registry's credentials from the docker config.
    Logout { registry: Option<String> },
    /// Install wheels the way bake does, into a directory (as `pip install --no-deps --target`)
    /// or a gzip layer: a debugging aid for what bake puts into images, and its benchmark.
    Install {
        /// Wheel files.
        #[arg(required_unless_present = "requirements")]
        wheels: Vec<PathBuf>,
        /// A pinned input instead of wheel files: pylock.toml, or requirements.txt with
        /// `==` and `--hash` on every line (wheels come from the index into the shared cache).
        #[arg(short = 'r', long, value_name = "FILE", conflicts_with = "wheels")]
        requirements: Option<PathBuf>,
        /// Index for a requirements.txt without --index-url.
        #[arg(long, default_value = "https://pypi.org/simple")]
        index_url: String,
        #[arg(long, value_name = "DIR", required_unless_present = "layer")]
        target: Option<PathBuf>,
        /// Write a gzip tar layer (image paths under the interpreter's prefix, owned by
        /// --user) instead of a directory.
        #[arg(long, value_name = "FILE", conflicts_with = "target")]
        layer: Option<PathBuf>,
        /// Owner of the layer's entries.
        #[arg(long, default_value = "1000:100", value_name = "UID:GID")]
        user: String,
        /// The interpreter written into script shebangs.
        #[arg(long, default_value = "/home/ray/anaconda3/bin/python")]
        python: String,
        #[arg(long, default_value = "3.11")]
        python_version: String,
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        /// glibc level of the target (manylinux_2_N).
        #[arg(long, default_value = "2_35")]
        manylinux: String,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug)]
struct EnvArgs {
    /// Store URL (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, file:///PATH); overrides [env] store.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// How dependencies reach the cluster.
    #[arg(long, value_enum, default_value_t = DepsMode::Pip)]
    deps: DepsMode,
    /// Format of the printed runtime_env.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Print a whole manifest instead of the runtime_env.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// Print these KubeRay YAML files (`-` = stdin) with the runtime_env set in every RayJob's
    /// runtimeEnvYAML and every RayService application's runtime_env; nothing else changes.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "emit")]
    resolve: Vec<PathBuf>,
    /// Submit the job to this Ray dashboard (http://HOST:8265), follow its logs, exit with its outcome.
    #[arg(long, value_name = "URL")]
    submit: Option<String>,
    /// Give up following a submitted job after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Plan and print without zipping or uploading.
    #[arg(long)]
    dry_run: bool,
    /// DEFLATE level 0-9 for the zips (0 = stored). Default: 0 for file:// stores (local disk
    /// or NFS, where Ray itself stores), 1 for S3 and GCS (fewer bytes over the network).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    compression_level: Option<u32>,
    /// Largest package accepted, in bytes. Default: no limit, with a warning over the 512 MiB
    /// Ray allows for packages uploaded through its GCS (s3://, gs:// and file URIs, which
    /// raypack prints, are downloaded by every node whatever their size).
    #[arg(long)]
    max_package_size: Option<u64>,
    /// With `--deps bundle`: list the distributions bundled, kept from the base image and
    /// replaced.
    #[arg(long)]
    explain: bool,
}

/// How to reach registries.
#[derive(clap::Args, Debug, Clone, Default)]
struct RegistryArgs {
    /// Extra CA certificate (PEM) to trust for registries, on top of the system store.
    #[arg(long, value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// Allow plain HTTP to this registry (localhost is always allowed, as in docker).
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
}

impl RegistryArgs {
    fn options(&self) -> raypack::oci::client::ClientOptions {
        raypack::oci::client::ClientOptions {
            insecure: self.insecure_registry.clone(),
            ca_files: self.registry_ca.clone(),
            ..Default::default()
        }
    }
}

#[derive(clap::Args, Debug)]
struct BakeArgs {
    /// Target platform (default: [base] platform, else linux/amd64).
    #[arg(long)]
    platform: Option<String>,
    /// Push to [image] repository: blobs, the manifest by digest, then [image] tags.
    #[arg(long)]
    push: bool,
    /// Write an OCI image layout to DIR (default when nothing else is asked: .raypack/oci).
    #[arg(long, value_name = "DIR")]
    oci_layout: Option<PathBuf>,
    /// Write a tar that `docker load` accepts (OCI layout + manifest.json).
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,
    /// Print a KubeRay manifest (or Helm values) that pins the image by digest.
    #[arg(long, value_enum)]
    emit: Option<BakeEmit>,
    /// Print these KubeRay YAML files (`-` = stdin) with every image naming the baked
    /// repository pinned to the baked digest and `rayVersion` set to the image's Ray; nothing
    /// else in them changes.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "emit")]
    resolve: Vec<PathBuf>,
    /// Re-resolve the base tag instead of using the pin in raypack.lock.
    #[arg(long)]
    upgrade_base: bool,
    /// Bake the code only; take the Python dependencies from the base image.
    #[arg(long)]
    skip_deps: bool,
    /// List the dependencies kept from the base, installed and replaced, and the layers.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    tls: RegistryArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum BakeEmit {
    Raycluster,
    Rayjob,
    Rayservice,
    HelmValues,
}

#[derive(clap::Args, Debug)]
struct LockArgs {
    /// Re-resolve [base] image to a digest and pin it in raypack.lock (and nothing else).
    #[arg(long)]
    upgrade_base: bool,
    /// Target platforms, comma-separated (default: [base] platform), e.g. linux/amd64,linux/arm64;
    /// all go into one lock.
    #[arg(long, value_delimiter = ',')]
    platform: Vec<String>,
    /// The base's Python, 3.X (default: [base] python_version, else the base image).
    #[arg(long, value_name = "3.X")]
    python_version: Option<String>,
    /// The base's glibc level, 2_N (default: [base] manylinux, else the base image).
    #[arg(long, value_name = "2_N")]
    manylinux: Option<String>,
    /// Take the newest allowed versions instead of keeping the current lock's.
    #[arg(long)]
    upgrade: bool,
    /// Take the newest allowed version of NAME (repeatable); keep the rest.
    #[arg(long, value_name = "NAME")]
    upgrade_package: Vec<String>,
    /// Do not resolve: fail when pylock.raypack.toml is missing or stale.
    #[arg(long)]
    locked: bool,
    /// Fail instead of replacing a distribution the base image ships.
    #[arg(long)]
    no_replace_base: bool,
    /// The base's installed distributions as name==version lines (for testing, until raypack
    /// reads them from the image).
    #[arg(long, hide = true, value_name = "FILE")]
    installed: Option<PathBuf>,
    #[command(flatten)]
    tls: RegistryArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    RuntimeEnv,
    Rayjob,
    Rayservice,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    // Long messages stay on one line so that file:line:col and the message can be grepped.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAYPACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("raypack={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Errors the CLI prints; recipe problems render as diagnostics with source snippets.
#[derive(Debug)]
enum CliError {
    Recipe(RecipeError),
    Other(String),
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Other(raypack::chain::error_chain(&e))
    }
}

fn report(e: &CliError) {
    match e {
        CliError::Recipe(RecipeError::Invalid { file, problems }) => {
            for p in problems {
                eprintln!("{:?}", miette::Report::new(p.clone()));
            }
            eprintln!(
                "error: {file}: {} problem{} in the recipe",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
        CliError::Recipe(other) => eprintln!("error: {other}"),
        CliError::Other(s) => eprintln!("error: {s}"),
    }
}

fn load_recipe(cli: &Cli) -> Result<Recipe, CliError> {
    let dir = cli.directory.clone().unwrap_or_else(|| PathBuf::from("."));
    let r = match &cli.recipe {
        Some(f) => Recipe::load(&dir.join(f)),
        None => Recipe::discover(&dir),
    };
    r.map_err(CliError::Recipe)
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Init { force } => {
            let dir = cli.directory.clone().unwrap_or_else(|| PathBuf::from("."));
            let (path, d) = raypack::init::init(&dir, *force)?;
            if cli.output == Output::Json {
                println!("{}", serde_json::json!({"recipe": path, "detected": d}));
            } else if !cli.quiet {
                eprintln!(
                    "wrote {} (project `{}`)",
                    raypack::recipe::display_path(&path),
                    d.name
                );
                for app in &d.serve_apps {
                    eprintln!("  Serve application {app}");
                }
                if let Some(e) = &d.entrypoint {
                    eprintln!("  entrypoint        {e}");
                }
                if let Some(f) = &d.pins_from {
                    eprintln!("  pinned from       {f}");
                }
                for s in &d.skipped {
                    eprintln!("  not listed        {s}");
                }
                eprintln!("next: `raypack check`, then `raypack env`");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(&cli),
        Command::Env(args) => env(&cli, args),
        Command::Bake(args) => bake(&cli, args),
        Command::Lock(args) if args.upgrade_base => lock_base(&cli, args),
        Command::Lock(args) => lock_deps(&cli, args),
        Command::Login {
            registry,
            username,
            tls,
            ..
        } => {
            let registry = normalize_registry(registry.as_deref());
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(CliError::Other("no password on stdin (use: echo \"$PASSWORD\" | raypack login -u USER --password-stdin REGISTRY)".into()));
            }
            let client = raypack::oci::client::Registry::new(tls.options())?;
            client.set_credential(
                &registry,
                Some(raypack::oci::auth::Credential::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }),
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(client.ping(&registry))?;
            let path = raypack::oci::auth::store_login(&registry, username, &password)?;
            if !cli.quiet {
                eprintln!(
                    "Login Succeeded ({registry}; credentials stored in {})",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logout { registry } => {
            let registry = normalize_registry(registry.as_deref());
            let removed = raypack::oci::auth::remove_login(&registry)?;
            if !cli.quiet {
                if removed {
                    eprintln!("Removed login credentials for {registry}");
                } else {
                    eprintln!("Not logged in to {registry}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Install {
            wheels,
            requirements,
            index_url,
            target,
            layer,
            user,
            python,
            python_version,
            platform,
            manylinux,
        } => {
            let t = raypack::python::tags::Target::new(platform, python_version, manylinux)
                .ok_or_else(|| CliError::Other(format!("unsupported target {platform} / Python {python_version} / manylinux {manylinux}")))?;
            let prio = t.priorities();
            let scratch = tempfile::tempdir()?;
            let mut files: Vec<raypack::python::layer::WheelFile> = Vec::new();
            if let Some(req) = requirements {
                use raypack::python::pinned;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let fetched = rt.block_on(async {
                    let http = raypack::submit::http_client()
                        .map_err(|e| CliError::Other(e.to_string()))?;
                    let pins = if req.extension().is_some_and(|e| e == "toml") {
                        pinned::from_pylock(req, &t)?
                    } else {
                        let reqs = pinned::parse_hashed(req, &t)?;
                        let client = raypack::python::index::IndexClient::new(
                            http.clone(),
                            &raypack::cache::default_cache_dir(),
                        );
                        pinned::resolve_hashed(
                            &client,
                            &reqs,
                            &pinned::Sources::index(index_url),
                            &t,
                        )
                        .await?
                    };
                    let cache =
                        raypack::cache::BlobCache::new(&raypack::cache::default_cache_dir());
                    Ok::<_, CliError>(pinned::fetch(&http, &pins, &cache).await?)
                })?;
                files.extend(
                    fetched
                        .into_iter()
                        .map(|(w, p)| raypack::python::layer::WheelFile {
                            path: p,
                            filename: w.filename,
                            sha256: w.sha256,
                        }),
                );
            }
            for w in wheels.iter() {
                let fname = w
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let wn = raypack::python::wheel::WheelName::parse(&fname).ok_or_else(|| {
                    CliError::Other(format!("{}: not a wheel file name", w.display()))
                })?;
                if wn.priority(&prio).is_none() {
                    return Err(CliError::Other(format!(
                        "{fname}: not installable on {t} (its tags: {})",
                        wn.tags.join(", ")
                    )));
                }
                let sha = raypack::collect::hash_file(w)
                    .map_err(|e| CliError::Other(format!("{}: {e}", w.display())))?;
                files.push(raypack::python::layer::WheelFile {
                    path: w.clone(),
                    filename: fname,
                    sha256: hex::encode(sha),
                });
            }
            let installed: Vec<(String, String)>;
            if let Some(out) = layer {
                use raypack::python::layer;
                let (uid, gid) = user
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or_else(|| CliError::Other(format!("--user `{user}` is not UID:GID")))?;
                let prefix = python
                    .rsplit_once('/')
                    .and_then(|(bin, _)| bin.rsplit_once('/'))
                    .map(|(p, _)| p)
                    .unwrap_or("/usr");
                let sp = format!("{prefix}/lib/python{python_version}/site-packages");
                let scheme =
                    raypack::python::wheel::Scheme::for_python(python, python_version, &sp);
                // Each wheel is installed and compressed once per layout (cached as a
                // fragment); the layer is assembled from the fragments.
                let level = raypack::oci::image::LAYER_GZIP_LEVEL;
                let layout = layer::Layout {
                    scheme: &scheme,
                    owner: (uid, gid),
                    mtime: 0,
                    level,
                    bytecode: None,
                };
                let fragments_dir = raypack::cache::default_cache_dir().join("fragments");
                let (lost, overlaps) = layer::overlaps(&files, &layout)?;
                raypack::python::wheel::log_overlaps(&overlaps);
                let frags = layer::fragments(&fragments_dir, &files, &layout, &lost)?;
                let (frags, mut own) = layer::prepare(frags, &layout);
                let f = std::fs::File::create(out)?;
                let a = layer::assemble(&frags, &mut own, 0, level, &f)?;
                tracing::debug!(digest = %a.digest, diff_id = %a.diff_id, size = a.size, "layer written");
                installed = frags.into_iter().map(|f| (f.name, f.version)).collect();
            } else {
                let target = target.as_ref().expect("clap requires --target or --layer");
                let scheme = raypack::python::target_scheme(python, python_version);
                let pairs: Vec<(PathBuf, String)> = files
                    .iter()
                    .map(|w| (w.path.clone(), w.filename.clone()))
                    .collect();
                let done = raypack::python::wheel::install_all(
                    &pairs,
                    &scheme,
                    (0, 0),
                    true,
                    scratch.path(),
                )?;
                let roots = vec![scheme.site_packages.clone(), scheme.scripts.clone()];
                let entries = raypack::python::wheel::merge(&done, &roots, (0, 0))?;
                std::fs::create_dir_all(target)?;
                raypack::python::materialize_target(&entries, target)?;
                installed = done.into_iter().map(|i| (i.name, i.version)).collect();
            }
            if !cli.quiet {
                for (name, version) in &installed {
                    eprintln!("installed {name} {version}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "raypack",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `docker.io`-style names to the registry key used everywhere else.
fn normalize_registry(r: Option<&str>) -> String {
    match r {
        None
        | Some("docker.io")
        | Some("index.docker.io")
        | Some("registry-1.docker.io")
        | Some("https://index.docker.io/v1/") => raypack::oci::reference::DOCKER_HUB.to_string(),
        Some(r) => r
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

fn spinner(cli: &Cli) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if !cli.quiet && std::io::stderr().is_terminal() {
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn lock_base(cli: &Cli, args: &LockArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
    let platform_s = args
        .platform
        .first()
        .cloned()
        .unwrap_or_else(|| recipe.base.platform.clone());
    let platform = raypack::oci::media::Platform::parse(&platform_s).ok_or_else(|| {
        CliError::Other(format!(
            "--platform {platform_s}: write linux/amd64 or linux/arm64"
        ))
    })?;
    let registry = raypack::oci::client::Registry::new(args.tls.options())?;
    let cache = raypack::cache::BlobCache::new(&raypack::cache::default_cache_dir());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let base = rt.block_on(raypack::base::PinnedBase::pin(
        &recipe, platform, &registry, &cache, true,
    ))?;
    let (pin, changed) = (base.pin, base.pinned_now);
    if cli.output == Output::Json {
        println!(
            "{}",
            serde_json::json!({"image": pin.image, "platform": pin.platform, "digest": pin.digest, "changed": changed})
        );
    } else if !cli.quiet {
        eprintln!(
            "{} {} ({}) -> {}",
            if changed { "pinned" } else { "unchanged" },
            pin.image,
            pin.platform,
            pin.digest
        );
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
            let read = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(raypack::base::read_installed(
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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
    let outcome = rt.block_on(raypack::lock::lock(&recipe, &opts, |m| {
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

fn bake(cli: &Cli, args: &BakeArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
    // Check what will be printed before building anything.
    if let Some(e) = args.emit {
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
        platform: args.platform.clone(),
        push: args.push,
        oci_layout: args.oci_layout.clone(),
        tar: args.tar.clone(),
        upgrade_base: args.upgrade_base,
        registry: args.tls.options(),
        cache_dir: None,
        skip_deps: args.skip_deps,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = spinner(cli);
    let verbose = cli.verbose > 0;
    let outcome = rt.block_on(raypack::bake::run(&recipe, &opts, |m| {
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
    if args.explain {
        explain_deps(&outcome.dependencies);
    } else if !cli.quiet {
        let d = &outcome.dependencies;
        if !(d.installed.is_empty() && d.replaced.is_empty() && d.kept.is_empty()) {
            eprintln!(
                "dependencies: {} installed, {} replaced, {} kept from the base, in {} layer(s) (--explain lists them)",
                d.installed.len(),
                d.replaced.len(),
                d.kept.len(),
                d.layers.len()
            );
        }
    }
    if !cli.quiet {
        if outcome.base_pinned_now {
            eprintln!(
                "pinned base {} -> {} in raypack.lock",
                outcome.base, outcome.base_digest
            );
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
        if let Some(d) = &outcome.oci_layout {
            eprintln!("wrote OCI layout {}", d.display());
        }
        if let Some(t) = &outcome.tar {
            eprintln!("wrote {}", t.display());
        }
    }
    let doc = match args.emit {
        None => None,
        Some(e) => {
            let c = recipe.cluster.as_ref().expect("checked above");
            let ray_version = c
                .ray_version
                .clone()
                .or_else(|| outcome.ray_version.clone())
                .or_else(|| ray_version_from_image(&recipe.base.image))
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
        let ray_version = recipe
            .cluster
            .as_ref()
            .and_then(|c| c.ray_version.clone())
            .or_else(|| outcome.ray_version.clone())
            .or_else(|| ray_version_from_image(&recipe.base.image));
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

/// Reads each `--resolve` file (`-` = stdin), resolves it, and joins the results as one YAML
/// stream. A file with nothing to resolve is a warning; all of them, an error naming `wanted`.
fn resolve_files(
    files: &[PathBuf],
    wanted: &str,
    resolve: impl Fn(
        &str,
        &str,
    )
        -> Result<raypack::spec::resolve::Resolved, raypack::spec::resolve::ResolveError>,
) -> Result<String, CliError> {
    let mut out = String::new();
    let mut changed_any = false;
    for path in files {
        let name = path.display().to_string();
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| CliError::Other(format!("--resolve {name}: {e}")))?;
        let r = resolve(&text, &name)?;
        if r.images + r.runtime_envs == 0 {
            eprintln!("warning: --resolve {name}: no {wanted} in it; printed unchanged");
        } else {
            changed_any = true;
        }
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(&r.text);
    }
    if !changed_any {
        return Err(CliError::Other(format!(
            "--resolve: none of the files has {wanted}; check the image repository / kind in them"
        )));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn check(cli: &Cli) -> Result<ExitCode, CliError> {
    let recipe = match load_recipe(cli) {
        Ok(r) => r,
        Err(CliError::Recipe(RecipeError::Invalid { file, problems }))
            if cli.output == Output::Json =>
        {
            println!(
                "{}",
                serde_json::json!({"ok": false, "file": file, "problems": problems})
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e),
    };
    // The requirements file is read as every command reads it: a line no command could use
    // is an error here, with its file and line.
    raypack::requirements::inline_list(&recipe)?;
    // The project's requires-python against the base's Python, where the catalog or [base]
    // says what that is without a pull.
    if let Ok(t) = raypack::base::target_without_pull(&recipe.base) {
        recipe
            .check_python(&format!("3.{}", t.python_minor))
            .map_err(CliError::Other)?;
    }
    let (store, _) = envpack::resolve_store(&recipe, None);
    let summary = serde_json::json!({
        "ok": true,
        "recipe": recipe.path,
        "name": recipe.name,
        "working_dir": recipe.code.working_dir,
        "py_modules": recipe.code.py_modules,
        "requirements": recipe.dependencies.requirements,
        "requirements_file": recipe.dependencies.requirements_file,
        "base": recipe.base.image,
        "platform": recipe.base.platform,
        "store": store.to_string(),
        "cluster": recipe.cluster.as_ref().map(|c| c.kind.to_string()),
    });
    if cli.output == Output::Json {
        println!("{summary}");
    } else if !cli.quiet {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}: ok", raypack::recipe::display_path(&recipe.path));
        let _ = writeln!(out, "  project      {}", recipe.name);
        let _ = writeln!(out, "  working_dir  {}", recipe.code.working_dir.display());
        for m in &recipe.code.py_modules {
            let _ = writeln!(out, "  py_module    {}", m.display());
        }
        let n = recipe.dependencies.requirements.len();
        let _ = writeln!(
            out,
            "  requirements {n} inline{}",
            recipe
                .dependencies
                .requirements_file
                .as_ref()
                .map(|f| format!(" + {}", f.display()))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "  base         {} ({})",
            recipe.base.image, recipe.base.platform
        );
        let _ = writeln!(out, "  store        {store}");
        if let Some(c) = &recipe.cluster {
            let _ = writeln!(
                out,
                "  cluster      {} `{}`, {} worker group(s)",
                c.kind,
                c.name,
                c.workers.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn env(cli: &Cli, args: &EnvArgs) -> Result<ExitCode, CliError> {
    let recipe = load_recipe(cli)?;
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
        http: raypack::submit::http_client()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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

    let cluster_doc = |kind: ClusterKind| -> Result<serde_json::Value, CliError> {
        let c = recipe.cluster.as_ref().ok_or_else(|| {
            CliError::Other(raypack::spec::kuberay::SpecError::NoCluster(kind).to_string())
        })?;
        if c.kind != kind && !(kind == ClusterKind::RayJob && c.kind == ClusterKind::RayCluster) {
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
        let ray_version = c
            .ray_version
            .clone()
            .or_else(|| ray_version_from_image(&image))
            .ok_or_else(|| {
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
            runtime_env: Some(&outcome.env),
        })?)
    };

    let doc = match args.emit {
        None | Some(Emit::RuntimeEnv) => None,
        Some(Emit::Rayjob) => Some(cluster_doc(ClusterKind::RayJob)?),
        Some(Emit::Rayservice) => Some(cluster_doc(ClusterKind::RayService)?),
    };
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
        (Some(d), Format::Yaml, _) => raypack::spec::to_yaml(d),
        (Some(d), Format::Json, _) => serde_json::to_string_pretty(d)? + "\n",
        (None, Format::Yaml, _) => outcome.env.to_yaml(),
        (None, Format::Json, _) => serde_json::to_string(&outcome.runtime_env)? + "\n",
    };
    print!("{text}");
    let _ = std::io::stdout().flush();

    if let Some(address) = &args.submit {
        let entrypoint = recipe
            .cluster
            .as_ref()
            .and_then(|c| c.entrypoint.clone())
            .ok_or_else(|| CliError::Other("--submit needs `entrypoint` in [cluster] (e.g. entrypoint = \"python main.py\")".into()))?;
        let meta = serde_json::json!({"raypack.project": recipe.name});
        let result = rt.block_on(raypack::submit::submit_and_follow(
            address,
            &entrypoint,
            &outcome.runtime_env,
            &meta,
            Duration::from_secs(args.timeout),
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
        if !result.succeeded() {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
