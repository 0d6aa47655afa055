//! `raypack check`: the recipe validated and summarized.

use super::*;

pub(super) fn check(cli: &Cli) -> Result<ExitCode, CliError> {
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
        recipe.check_python(&format!("3.{}", t.python_minor))?;
    }
    let (store, _) = envpack::resolve_store(&recipe, None);
    let summary = serde_json::json!({
        "ok": true,
        "recipe": recipe.path,
        "name": recipe.name,
        "working_dir": recipe.code.working_dir,
        "py_modules": recipe.code.py_modules.iter().map(|m| &m.path).collect::<Vec<_>>(),
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
            let _ = writeln!(out, "  py_module    {}", m.path.display());
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
            recipe.base.image,
            recipe.base.platforms.join(", ")
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
