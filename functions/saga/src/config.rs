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
    /// The audience push tokens must carry: Terraform sets the worker's custom audience,
    /// `//run.googleapis.com/projects/P/locations/R/services/NAME`.
    pub const PUSH_AUDIENCE: &str = "PUSH_AUDIENCE";
    /// The service account Pub/Sub signs push tokens as.
    pub const PUSH_SERVICE_ACCOUNT: &str = "PUSH_SERVICE_ACCOUNT";
    /// `true` to run a push worker on Cloud Run without verifying push tokens.
    pub const PUSH_AUTH_DISABLED: &str = "PUSH_AUTH_DISABLED";
}

/// Who gives an environment variable its value in a Cloud Run deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// The deployment (Terraform) must set it.
    Deployment,
    /// Cloud Run sets it itself; a deployment must not.
    Platform,
    /// Only for local runs and tests; a deployment leaves it unset.
    Local,
    /// An optional override; a deployment leaves it unset unless an operator needs it.
    Override,
}

/// An environment variable a service reads, and who provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// The name.
    pub name: &'static str,
    /// Who sets it on Cloud Run.
    pub provider: Provider,
}

/// Every environment variable `service` reads. The Terraform drift test checks that each
/// Cloud Run service sets exactly the [`Provider::Deployment`] ones.
pub fn reads(service: Service) -> Vec<EnvVar> {
    use Provider::{Deployment, Local, Override, Platform};
    let var = |name, provider| EnvVar { name, provider };
    let mut vars = vec![
        var(env::PORT, Platform),
        var(env::K_SERVICE, Platform),
        var(env::PROJECT_ID, Deployment),
        var(env::GOOGLE_CLOUD_PROJECT, Override),
        var(env::PUBSUB_EMULATOR_HOST, Local),
        var(env::FIRESTORE_EMULATOR_HOST, Local),
        var(env::LOG_FORMAT, Override),
        var(env::RUST_LOG, Override),
    ];
    if service.takes_pushes() {
        vars.extend([
            var(env::PUSH_AUDIENCE, Deployment),
            var(env::PUSH_SERVICE_ACCOUNT, Deployment),
            var(env::PUSH_AUTH_DISABLED, Override),
        ]);
    }
    vars
}

/// How a push worker checks that a push really comes from Pub/Sub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushAuth {
    /// Every push must carry a Google-signed OIDC token for `audience`, issued to
    /// `service_account` (with a verified email).
    Verify {
        /// The expected `aud` claim.
        audience: String,
        /// The expected `email` claim.
        service_account: String,
        /// Where to fetch the signing keys; `None` for Google's (tests serve their own).
        jwks_url: Option<String>,
    },
    /// No check: for the emulators, which send no token, or an explicit opt-out.
    Off,
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
    /// Only one of the two push verification settings is set.
    #[error(
        "set both {} and {} to verify push tokens, or neither",
        env::PUSH_AUDIENCE,
        env::PUSH_SERVICE_ACCOUNT
    )]
    PartialPushAuth,
    /// On Cloud Run without push verification settings and without the explicit opt-out.
    #[error(
        "on Cloud Run a push worker must verify push tokens: set {} and {}, or {}=true to run without (not recommended)",
        env::PUSH_AUDIENCE,
        env::PUSH_SERVICE_ACCOUNT,
        env::PUSH_AUTH_DISABLED
    )]
    PushAuthRequired,
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
    /// Push token verification (only push workers use it).
    pub push_auth: PushAuth,
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
            .field("push_auth", &self.push_auth)
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
        let push_auth = if service.takes_pushes() {
            push_auth(&get)?
        } else {
            PushAuth::Off
        };
        Ok(Config {
            service,
            port,
            push_auth,
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
    /// The emulators send no push tokens, so push verification is off.
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
            push_auth: PushAuth::Off,
        }
    }

    /// The project id.
    pub fn project(&self) -> &str {
        &self.pubsub.project
    }
}

fn push_auth(get: &impl Fn(&'static str) -> Option<String>) -> Result<PushAuth, ConfigError> {
    let on_cloud_run = get(env::K_SERVICE).is_some();
    let disabled = match get(env::PUSH_AUTH_DISABLED).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: env::PUSH_AUTH_DISABLED,
                value: other.to_owned(),
                problem: "expected `true` or `false`",
            });
        }
    };
    match (get(env::PUSH_AUDIENCE), get(env::PUSH_SERVICE_ACCOUNT)) {
        (Some(audience), Some(service_account)) if !disabled => Ok(PushAuth::Verify {
            audience,
            service_account,
            jwks_url: None,
        }),
        (Some(_), None) | (None, Some(_)) if !disabled => Err(ConfigError::PartialPushAuth),
        _ if on_cloud_run && !disabled => Err(ConfigError::PushAuthRequired),
        _ => Ok(PushAuth::Off),
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
            ("PUSH_AUTH_DISABLED", "true"),
        ])
        .unwrap();
        assert_eq!((c.project(), c.port, c.log_format), ("g", 9000, LogFormat::Json));
        assert_eq!(c.pubsub.emulator_endpoint, None);
    }

    #[test]
    fn push_workers_verify_tokens_when_configured_and_refuse_cloud_run_without() {
        let c = config(&[
            ("PROJECT_ID", "p"),
            ("PUSH_AUDIENCE", "https://orders.run.app"),
            ("PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com"),
        ])
        .unwrap();
        assert_eq!(
            c.push_auth,
            PushAuth::Verify {
                audience: "https://orders.run.app".into(),
                service_account: "push@p.iam.gserviceaccount.com".into(),
                jwks_url: None,
            }
        );
        assert_eq!(config(&[("PROJECT_ID", "p")]).unwrap().push_auth, PushAuth::Off);
        assert_eq!(
            config(&[("PROJECT_ID", "p"), ("K_SERVICE", "orders")]).unwrap_err(),
            ConfigError::PushAuthRequired
        );
        let opted_out = config(&[
            ("PROJECT_ID", "p"),
            ("K_SERVICE", "orders"),
            ("PUSH_AUTH_DISABLED", "true"),
        ]);
        assert_eq!(opted_out.unwrap().push_auth, PushAuth::Off);
        assert_eq!(
            config(&[("PROJECT_ID", "p"), ("PUSH_AUDIENCE", "a")]).unwrap_err(),
            ConfigError::PartialPushAuth
        );
    }

    #[test]
    fn the_frontend_takes_no_pushes_and_needs_no_push_settings_on_cloud_run() {
        let c = Config::from_lookup(Service::Frontend, |k| match k {
            "PROJECT_ID" => Some("p".into()),
            "K_SERVICE" => Some("frontend".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.push_auth, PushAuth::Off);
        assert!(
            reads(Service::Frontend)
                .iter()
                .all(|v| !v.name.starts_with("PUSH_"))
        );
        assert!(reads(Service::Orders).iter().any(|v| v.name == "PUSH_AUDIENCE"));
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
