//! Submitting a job to a Ray cluster through the Jobs REST API (`/api/jobs/`), then following
//! its status and logs until it ends.

use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{address}: cannot reach the Ray dashboard: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("{address}: job submission refused (HTTP {status}): {body}")]
    Refused {
        address: String,
        status: u16,
        body: String,
    },
    #[error(
        "job {id} did not finish within {secs} s (last status {status}); it keeps running on the cluster"
    )]
    Timeout {
        id: String,
        secs: u64,
        status: String,
    },
}

/// The final state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub submission_id: String,
    pub status: String,
    pub message: Option<String>,
}

impl JobOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCEEDED"
    }
}

#[derive(Deserialize)]
struct JobInfo {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

/// Submits `entrypoint` with `runtime_env` and follows it; new log text goes to `on_log`.
pub async fn submit_and_follow(
    http: &reqwest::Client,
    address: &str,
    entrypoint: &str,
    runtime_env: &serde_json::Value,
    metadata: &serde_json::Value,
    timeout: Duration,
    mut on_log: impl FnMut(&str),
) -> Result<JobOutcome, SubmitError> {
    let address = address.trim_end_matches('/').to_string();
    let unreachable = |e: reqwest::Error| SubmitError::Unreachable {
        address: address.clone(),
        detail: e.without_url().to_string(),
    };
    let body = serde_json::json!({
        "entrypoint": entrypoint,
        "runtime_env": runtime_env,
        "metadata": metadata,
    });
    let resp = http
        .post(format!("{address}/api/jobs/"))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let text = resp.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(SubmitError::Refused {
            address: address.clone(),
            status: status.as_u16(),
            body: text.chars().take(2000).collect(),
        });
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let id = v["submission_id"]
        .as_str()
        .or(v["job_id"].as_str())
        .unwrap_or_default()
        .to_string();
    tracing::info!(submission_id = %id, "job submitted");
    let start = Instant::now();
    let mut printed = 0usize;
    let mut last = String::from("PENDING");
    loop {
        let info: Option<JobInfo> = match http.get(format!("{address}/api/jobs/{id}")).send().await
        {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        if let Ok(r) = http
            .get(format!("{address}/api/jobs/{id}/logs"))
            .send()
            .await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            let logs = v["logs"].as_str().unwrap_or_default();
            if logs.len() > printed && logs.is_char_boundary(printed) {
                on_log(&logs[printed..]);
                printed = logs.len();
            }
        }
        if let Some(info) = info {
            last = info.status.clone();
            if matches!(info.status.as_str(), "SUCCEEDED" | "FAILED" | "STOPPED") {
                return Ok(JobOutcome {
                    submission_id: id,
                    status: info.status,
                    message: info.message,
                });
            }
        }
        if start.elapsed() > timeout {
            return Err(SubmitError::Timeout {
                id,
                secs: timeout.as_secs(),
                status: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
