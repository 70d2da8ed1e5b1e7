//! Reading a task's sandbox files through its agent's `/files/read` (see the agent's `files`
//! module): what `drover task logs` and `drover run` print of a task's stdout and stderr.
//!
//! Owns one file's read position. The agent returns text whose UTF-8 length is the number of
//! bytes it stands for, so the position advances by the text's length and never splits a
//! character between reads.

use std::time::Duration;

use serde::Deserialize;

/// Bound on one request to the agent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("TLS to the agents: {0}")]
    Tls(String),
    #[error("cannot reach the agent at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{path}: not found on the agent at {addr} (the task has not started there yet, or its sandbox was removed)")]
    NotFound { addr: String, path: String },
    #[error("the agent at {addr} answered {status}: {message}")]
    Refused {
        addr: String,
        status: u16,
        message: String,
    },
}

/// A task's sandbox file, read from its agent chunk after chunk.
pub struct SandboxFile {
    http: reqwest::Client,
    /// `http`, or `https` with mutual TLS.
    scheme: &'static str,
    addr: String,
    path: String,
    offset: u64,
}

#[derive(Deserialize)]
struct Chunk {
    data: String,
    offset: u64,
}

impl SandboxFile {
    /// `name` (`stdout`, `stderr`) in the sandbox of `task` of `framework` on the agent at
    /// `addr` (host:port), from its start; over mutual TLS with `tls` (whose servers must be
    /// agents).
    pub fn new(
        addr: &str,
        framework: &str,
        task: &str,
        name: &str,
        tls: Option<&drover_tls::ClientTls>,
    ) -> Result<Self, SandboxError> {
        let tls_error = |e: &dyn std::fmt::Display| SandboxError::Tls(e.to_string());
        let (http, scheme) = match tls {
            None => (reqwest::Client::new(), "http"),
            Some(tls) => (
                reqwest::Client::builder()
                    .use_preconfigured_tls(tls.http1_config().map_err(|e| tls_error(&e))?)
                    .build()
                    .map_err(|e| tls_error(&e))?,
                "https",
            ),
        };
        Ok(Self {
            http,
            scheme,
            addr: addr.to_string(),
            // The agent's files API names a live task's sandbox as its layout does, relative
            // to the work directory, and still finds it once moved to `completed/`.
            path: format!("frameworks/{framework}/tasks/{task}/sandbox/{name}"),
            offset: 0,
        })
    }

    /// The path asked of the agent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where the next read starts, bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Starts reading `bytes` before the file's current end (at its start if it is shorter).
    pub async fn seek_from_end(&mut self, bytes: u64) -> Result<(), SandboxError> {
        let size = self.request(-1).await?.offset;
        self.offset = size.saturating_sub(bytes);
        Ok(())
    }

    /// The text written since the last read (empty when nothing new), at most the agent's
    /// page of it.
    pub async fn read_more(&mut self) -> Result<String, SandboxError> {
        let chunk = self.request(self.offset as i64).await?;
        self.offset = chunk.offset + chunk.data.len() as u64;
        Ok(chunk.data)
    }

    async fn request(&self, offset: i64) -> Result<Chunk, SandboxError> {
        let url = format!("{}://{}/files/read", self.scheme, self.addr);
        let resp = self
            .http
            .get(&url)
            .query(&[("path", self.path.as_str())])
            .query(&[("offset", offset)])
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| SandboxError::Unreachable {
                addr: self.addr.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(SandboxError::NotFound {
                addr: self.addr.clone(),
                path: self.path.clone(),
            });
        }
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            return Err(SandboxError::Refused {
                addr: self.addr.clone(),
                status: status.as_u16(),
                message: body["message"].as_str().unwrap_or("").to_string(),
            });
        }
        resp.json::<Chunk>()
            .await
            .map_err(|e| SandboxError::Unreachable {
                addr: self.addr.clone(),
                reason: format!("unreadable answer: {e}"),
            })
    }
}
