//! The `raypack` command line: parses flags, calls the library, prints. Nothing else.
//!
//! One file per command; this module holds the flags every command shares, the error type
//! the commands return (rendered once, in [`report`]), and the one async runtime.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

mod bake;
mod check;
mod env;
mod gc;
mod init;
mod install;
mod lock;
mod login;

use bake::BakeArgs;
use env::EnvArgs;
use lock::LockArgs;

use raypack::envpack::{self, EnvOptions};
use raypack::recipe::{ClusterKind, Recipe, RecipeError};
use raypack::spec::kuberay::{ManifestInput, manifest};
use raypack::spec::runtime_env::DepsMode;
use raypack::store::StoreUrl;

#[derive(Parser, Debug)]
#[command(
    name = "raypack",
    version = env!("RAYPACK_LONG_VERSION"),
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
    Install(install::InstallArgs),
    /// List (and with --delete remove) code snapshots and environments on the shared volume
    /// that no project uses any more.
    Gc(gc::GcArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `raypack man > ~/.local/share/man/man1/raypack.1`.
    Man,
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
    /// A RayCluster (no runtime_env in it; with `--nfs`, the shared volume in every pod).
    Raycluster,
}

/// Parses the command line, runs the command, reports an error.
pub fn main() -> ExitCode {
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
        Command::Init { force } => init::init(&cli, *force),
        Command::Check => check::check(&cli),
        Command::Env(args) => env::env(&cli, args),
        Command::Bake(args) => bake::bake(&cli, args),
        Command::Lock(args) => lock::lock(&cli, args),
        Command::Login {
            registry,
            username,
            tls,
            ..
        } => login::login(&cli, registry.as_deref(), username, tls),
        Command::Logout { registry } => login::logout(&cli, registry.as_deref()),
        Command::Install(args) => install::install(&cli, args),
        Command::Gc(args) => gc::gc(&cli, args),
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
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

/// The async runtime a command runs its I/O on (one per command).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
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
