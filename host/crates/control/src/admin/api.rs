//! The admin API's responses, one set of types for the server that writes
//! them and the client that reads them. Requests stay JSON objects: a
//! deployment request names only the settings it sets (a tenant's quota
//! fills in the rest), which a typed struct with defaults could not tell
//! apart.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::DeploymentConfig;
use weir_pipeline::DeploymentStatus;

/// `PUT /v1/modules`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Uploaded {
    /// The module's sha256, hex: what a deployment request names.
    pub module: String,
    pub size: usize,
    /// Compilation time; absent when the module was compiled before.
    pub compiled_ms: Option<u128>,
}

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// Deployed and waiting (for its module, or to start on this host).
    Starting,
    /// Cannot run on this host; `error` says why.
    Failed,
    Paused,
    /// Removed, its state kept for a later deploy of the same name.
    Undeployed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Starting => "starting",
            Status::Failed => "failed",
            Status::Paused => "paused",
            Status::Undeployed => "undeployed",
        })
    }
}

/// A deployment: `GET /v1/deployments[/NAME]` and the answer to every
/// change of one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    pub tenant: Option<String>,
    pub status: Status,
    /// sha256 of the module, hex.
    pub module: String,
    /// Increases with every change.
    pub version: u64,
    pub previous_module: Option<String>,
    /// Why the last upgrade was rolled back.
    pub rolled_back: Option<String>,
    /// Why the deployment cannot run on this host.
    pub error: Option<String>,
    /// This host's share of the work; absent where it does not run.
    pub host: Option<DeploymentStatus>,
    pub spec: DeploymentConfig,
    /// Its changes, oldest first.
    #[serde(default)]
    pub history: Vec<crate::registry::Change>,
}
