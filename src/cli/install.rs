//! `raypack install`: wheels installed the way bake does, into a directory or a layer.

use super::*;

#[derive(clap::Args, Debug)]
pub(super) struct InstallArgs {
    /// Wheel files.
    #[arg(required_unless_present = "requirements")]
    pub(super) wheels: Vec<PathBuf>,
    /// A pinned input instead of wheel files: pylock.toml, or requirements.txt with
    /// `==` and `--hash` on every line (wheels come from the index into the shared cache).
    #[arg(short = 'r', long, value_name = "FILE", conflicts_with = "wheels")]
    pub(super) requirements: Option<PathBuf>,
    /// Index for a requirements.txt without --index-url.
    #[arg(long, default_value = "https://pypi.org/simple")]
    pub(super) index_url: String,
    #[arg(long, value_name = "DIR", required_unless_present = "layer")]
    pub(super) target: Option<PathBuf>,
    /// Write a gzip tar layer (image paths under the interpreter's prefix, owned by
    /// --user) instead of a directory.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    pub(super) layer: Option<PathBuf>,
    /// Owner of the layer's entries.
    #[arg(long, default_value = "1000:100", value_name = "UID:GID")]
    pub(super) user: String,
    /// The interpreter written into script shebangs.
    #[arg(long, default_value = "/home/ray/anaconda3/bin/python")]
    pub(super) python: String,
    #[arg(long, default_value = "3.11")]
    pub(super) python_version: String,
    #[arg(long, default_value = "linux/amd64")]
    pub(super) platform: String,
    /// glibc level of the target (manylinux_2_N).
    #[arg(long, default_value = "2_35")]
    pub(super) manylinux: String,
}

pub(super) fn install(cli: &Cli, args: &InstallArgs) -> Result<ExitCode, CliError> {
    let opts = raypack::install::InstallOptions {
        wheels: args.wheels.clone(),
        requirements: args.requirements.clone(),
        index_url: args.index_url.clone(),
        target_dir: args.target.clone(),
        layer: args.layer.clone(),
        user: args.user.clone(),
        python: args.python.clone(),
        python_version: args.python_version.clone(),
        platform: args.platform.clone(),
        manylinux: args.manylinux.clone(),
    };
    let http = raypack::http::client()?;
    let installed = runtime()?.block_on(raypack::install::install(&opts, &http))?;
    if !cli.quiet {
        for (name, version) in &installed {
            eprintln!("installed {name} {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
