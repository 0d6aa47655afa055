//! `raypack gc --nfs`: snapshots and environments on the shared volume that no project uses.

use super::*;

#[derive(clap::Args, Debug)]
pub(super) struct GcArgs {
    /// The shared volume's mount path (default: [nfs] path of the recipe).
    #[arg(long, value_name = "PATH", num_args = 0..=1, required = true)]
    pub(super) nfs: Option<Option<PathBuf>>,
    /// Remove what is listed as removable (without it: a dry run that only lists).
    #[arg(long)]
    pub(super) delete: bool,
    /// Keep unused snapshots and environments younger than this many hours: jobs started from
    /// them may still run.
    #[arg(long, default_value_t = 24)]
    pub(super) min_age_hours: u64,
}

pub(super) fn gc(cli: &Cli, args: &GcArgs) -> Result<ExitCode, CliError> {
    let flag = args.nfs.clone().flatten();
    let path = match flag {
        Some(p) => p,
        None => raypack::nfs::mount_path(&load_recipe(cli)?, None)
            .map_err(|e| CliError::Other(e.to_string()))?,
    };
    let report = raypack::nfs::gc(
        &path,
        args.delete,
        Duration::from_secs(args.min_age_hours * 3600),
    )
    .map_err(|e| CliError::Other(e.to_string()))?;
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.kept {
        println!("in use     {}", p.display());
    }
    for p in &report.recent {
        println!("recent     {}", p.display());
    }
    let verb = if report.removed {
        "removed"
    } else {
        "removable"
    };
    for p in &report.removable {
        println!("{verb:<10} {}", p.display());
    }
    if !report.removed && !report.removable.is_empty() && !cli.quiet {
        eprintln!(
            "dry run: pass --delete to remove the {} removable",
            report.removable.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
