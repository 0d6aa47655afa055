//! `raypack init`: a raypack.toml for an existing project.

use super::*;

pub(super) fn init(cli: &Cli, force: bool) -> Result<ExitCode, CliError> {
    let dir = cli.directory.clone().unwrap_or_else(|| PathBuf::from("."));
    let (path, d) = raypack::init::init(&dir, force)?;
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
