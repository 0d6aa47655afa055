//! `raypack login` / `raypack logout`: registry credentials in the docker config.

use super::*;

pub(super) fn login(
    cli: &Cli,
    registry: Option<&str>,
    username: &str,
    tls: &RegistryArgs,
) -> Result<ExitCode, CliError> {
    let registry = normalize_registry(registry);
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
            username: username.to_string(),
            password: password.clone(),
        }),
    );
    let rt = runtime()?;
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

pub(super) fn logout(cli: &Cli, registry: Option<&str>) -> Result<ExitCode, CliError> {
    let registry = normalize_registry(registry);
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
