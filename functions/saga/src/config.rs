//! Typed configuration, read once from the environment at start-up.

use crate::contract::Service;
use std::fmt;

/// The environment variables a service reads. Terraform must set exactly the ones a
/// deployment needs, and a test compares the two lists.
pub mod env {
    /// Port to listen on (Cloud Run sets it).
    pub const PORT: &str = "PORT";
    /// The Google Cloud project.
    pub const PROJECT_ID: &str = "PROJECT_ID";
    /// Fallback for [`PROJECT_ID`], as set by some Google tooling.
    pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
    /// `host:port` of a Pub/Sub emulator.
    pub const PUBSUB_EMULATOR_HOST: &str = "PUBSUB_EMULATOR_HOST";
    /// `host:port` of a Firestore emulator.
    pub const FIRESTORE_EMULATOR_HOST: &str = "FIRESTORE_EMULATOR_HOST";
    /// `json` or `text`; JSON is the default on Cloud Run.
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    /// Set by Cloud Run to the service name.
    pub const K_SERVICE: &str = "K_SERVICE";
    /// Log filter directives, as for `tracing_subscriber::EnvFilter`.
    pub const RUST_LOG: &str = "RUST_LOG";
}

/// The default port, as in the original.
pub const DEFAULT_PORT: u16 = 8080;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// Cloud Logging structured JSON.
    Json,
}

/// A configuration problem, reported before the service starts.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No project id.
    #[error(
        "set {} (or {}) to the Google Cloud project id",
        env::PROJECT_ID,
        env::GOOGLE_CLOUD_PROJECT
    )]
    MissingProject,
    /// A variable has a value that cannot be used.
    #[error("{name}={value:?} is not valid: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Where a service's Pub/Sub clients connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubTarget {
    /// The project.
    pub project: String,
    /// `http://host:port` of the emulator, or `None` for Google Cloud.
    pub emulator_endpoint: Option<String>,
}

/// Where a service's Firestore client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirestoreTarget {
    /// The project.
    pub project: String,
    /// `host:port` of the emulator, or `None` for Google Cloud.
    pub emulator_host: Option<String>,
}

/// A service's configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Which service this is.
    pub service: Service,
    /// The port to listen on.
    pub port: u16,
    /// Pub/Sub connection.
    pub pubsub: PubSubTarget,
    /// Firestore connection.
    pub firestore: FirestoreTarget,
    /// Log output.
    pub log_format: LogFormat,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("service", &self.service.name())
            .field("port", &self.port)
            .field("project", &self.pubsub.project)
            .field("pubsub_emulator", &self.pubsub.emulator_endpoint)
            .field("firestore_emulator", &self.firestore.emulator_host)
            .field("log_format", &self.log_format)
            .finish()
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env(service: Service) -> Result<Self, ConfigError> {
        Self::from_lookup(service, |k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the environment.
    pub fn from_lookup(
        service: Service,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k| non_empty(lookup(k));
        let port = match get(env::PORT) {
            None => DEFAULT_PORT,
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: env::PORT,
                value: v,
                problem: "expected a port number",
            })?,
        };
        let project = get(env::PROJECT_ID)
            .or_else(|| get(env::GOOGLE_CLOUD_PROJECT))
            .ok_or(ConfigError::MissingProject)?;
        if project.contains('/') {
            return Err(ConfigError::Invalid {
                name: env::PROJECT_ID,
                value: project,
                problem: "a project id cannot contain `/`",
            });
        }
        let log_format = match get(env::LOG_FORMAT).as_deref() {
            Some("json") => LogFormat::Json,
            None if get(env::K_SERVICE).is_some() => LogFormat::Json,
            Some("text") | None => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: env::LOG_FORMAT,
                    value: other.to_owned(),
                    problem: "expected `json` or `text`",
                });
            }
        };
        Ok(Config {
            service,
            port,
            pubsub: PubSubTarget {
                project: project.clone(),
                emulator_endpoint: get(env::PUBSUB_EMULATOR_HOST).map(|h| format!("http://{h}")),
            },
            firestore: FirestoreTarget {
                project,
                emulator_host: get(env::FIRESTORE_EMULATOR_HOST),
            },
            log_format,
        })
    }

    /// A configuration for running against emulators, as the local stack and tests do.
    pub fn for_emulators(service: Service, project: &str, pubsub_host: &str, firestore_host: &str) -> Self {
        Config {
            service,
            port: 0,
            pubsub: PubSubTarget {
                project: project.to_owned(),
                emulator_endpoint: Some(format!("http://{pubsub_host}")),
            },
            firestore: FirestoreTarget {
                project: project.to_owned(),
                emulator_host: Some(firestore_host.to_owned()),
            },
            log_format: LogFormat::Text,
        }
    }

    /// The project id.
    pub fn project(&self) -> &str {
        &self.pubsub.project
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(Service::Orders, |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_apply_and_emulator_hosts_become_endpoints() {
        let c = config(&[
            ("PROJECT_ID", "p"),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
            ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8086"),
        ])
        .unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.project(), "p");
        assert_eq!(
            c.pubsub.emulator_endpoint.as_deref(),
            Some("http://127.0.0.1:8085")
        );
        assert_eq!(c.firestore.emulator_host.as_deref(), Some("127.0.0.1:8086"));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn google_cloud_project_is_a_fallback_and_cloud_run_logs_json() {
        let c = config(&[
            ("GOOGLE_CLOUD_PROJECT", "g"),
            ("K_SERVICE", "orders"),
            ("PORT", "9000"),
        ])
        .unwrap();
        assert_eq!((c.project(), c.port, c.log_format), ("g", 9000, LogFormat::Json));
        assert_eq!(c.pubsub.emulator_endpoint, None);
    }

    #[test]
    fn bad_values_are_reported_by_name() {
        assert_eq!(config(&[]).unwrap_err(), ConfigError::MissingProject);
        assert!(
            config(&[("PROJECT_ID", "p"), ("PORT", "x")])
                .unwrap_err()
                .to_string()
                .contains("PORT")
        );
        assert!(
            config(&[("PROJECT_ID", "p"), ("LOG_FORMAT", "xml")])
                .unwrap_err()
                .to_string()
                .contains("LOG_FORMAT")
        );
    }
}
