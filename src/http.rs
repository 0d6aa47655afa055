//! The one HTTP client constructor. A command builds its client once (in `cli`) and passes it
//! down to every stage that talks HTTP: indexes and wheel downloads, GCS, the Ray dashboard.

use std::time::Duration;

/// An HTTP client that trusts the platform's roots (honours SSL_CERT_FILE / SSL_CERT_DIR), as
/// users behind corporate proxies need, with raypack's user agent and a connect timeout.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("raypack/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
}
