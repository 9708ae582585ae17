//! Typed configuration, read once from the environment at start-up.

use crate::contract::Service;
use crate::gcp::auth::{PushAuth, PushIdentity};
use crate::gcp::bus::PubSubTarget;
use crate::gcp::store::FirestoreTarget;
use std::fmt;
use std::time::Duration;

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
    /// How a push worker checks push tokens: `cloud-run-iam`, `signature` or `off` (see
    /// [`PushAuth`](super::PushAuth)). Required on Cloud Run, where Terraform sets it.
    pub const PUSH_AUTH: &str = "PUSH_AUTH";
    /// The frontend only: `on` or `off`, whether `GET /orders` lists every user's latest
    /// sagas (see [`OrderList`](super::OrderList)). Off by default on Cloud Run, where
    /// Terraform sets it; on elsewhere.
    pub const ORDER_LIST: &str = "ORDER_LIST";
    /// The janitor only: how long a saga may run before the sweep ends it, as `10m` or
    /// `600s` (default [`crate::contract::sweep::DEFAULT_DEADLINE`]; at least
    /// [`crate::contract::sweep::MIN_DEADLINE`]).
    pub const SAGA_DEADLINE: &str = "SAGA_DEADLINE";
    /// The janitor only: the service account Cloud Scheduler calls the sweep as; its tokens
    /// are checked as push tokens are ([`PUSH_AUTH`]), with this account in place of
    /// [`PUSH_SERVICE_ACCOUNT`]. Unset: the sweep endpoint refuses every call unless push
    /// tokens are not checked at all.
    pub const SWEEP_SERVICE_ACCOUNT: &str = "SWEEP_SERVICE_ACCOUNT";
    /// Inventory and the janitor (its returns of stock), for local runs: the least time
    /// between two writes of an item's stock document, as `250ms` (the default, [`crate::engine::SHARED_WRITE_GAP`]) or `0s`. The
    /// devstack sets `0s` under the emulator's push, which keeps at most 2 pushes in flight
    /// and so leaves nothing to batch: the gap would only make every sale wait, and the
    /// emulator has no per-document write limit to keep to. A deployment leaves it unset.
    pub const SHARED_WRITE_GAP: &str = "SHARED_WRITE_GAP";
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
            var(env::PUSH_AUTH, Deployment),
            var(env::PUSH_AUDIENCE, Deployment),
            var(env::PUSH_SERVICE_ACCOUNT, Deployment),
        ]);
    }
    if service == Service::Frontend {
        vars.push(var(env::ORDER_LIST, Deployment));
    }
    if matches!(service, Service::Inventory | Service::Janitor) {
        vars.push(var(env::SHARED_WRITE_GAP, Local));
    }
    if service == Service::Janitor {
        vars.extend([
            var(env::SAGA_DEADLINE, Deployment),
            var(env::SWEEP_SERVICE_ACCOUNT, Deployment),
        ]);
    }
    vars
}

/// Whether the frontend's `GET /orders` lists the latest sagas of every user: the value of
/// [`env::ORDER_LIST`]. That list shows anyone the names, items and totals of everyone's
/// orders, and their uuids, which otherwise only the one who placed an order knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderList {
    /// `on`: anyone may list them (the local stack's default).
    On,
    /// `off`: `GET /orders` answers 404; each order is followed by its uuid (the default on
    /// Cloud Run).
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
    /// Only one of the two push identity settings is set.
    #[error(
        "set both {} and {} to check push tokens, or neither",
        env::PUSH_AUDIENCE,
        env::PUSH_SERVICE_ACCOUNT
    )]
    PartialPushAuth,
    /// On Cloud Run, a push worker must be told how it is deployed.
    #[error(
        "on Cloud Run a push worker must know how push tokens reach it: set {}=cloud-run-iam (behind \
         Cloud Run's invoker IAM, as terraform/ deploys it) or {}=signature (invoker IAM disabled), \
         with {} and {}; or {}=off to take pushes unchecked (not recommended)",
        env::PUSH_AUTH,
        env::PUSH_AUTH,
        env::PUSH_AUDIENCE,
        env::PUSH_SERVICE_ACCOUNT,
        env::PUSH_AUTH
    )]
    PushAuthRequired,
    /// Push settings that contradict each other.
    #[error("{name} contradicts {}: {problem}", env::PUSH_AUTH)]
    PushAuthConflict {
        /// The variable at odds with `PUSH_AUTH`.
        name: &'static str,
        /// Why.
        problem: &'static str,
    },
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
    /// Whether `GET /orders` lists everyone's sagas (only the frontend uses it).
    pub order_list: OrderList,
    /// How long a saga may run before the sweep ends it (only the janitor uses it).
    pub saga_deadline: Duration,
    /// Who may call the sweep, checked as push tokens are (only the janitor uses it).
    pub sweep_account: Option<String>,
    /// The least time between two writes of a shared document (only inventory uses it).
    pub shared_write_gap: Duration,
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
            .field("order_list", &self.order_list)
            .field("saga_deadline", &self.saga_deadline)
            .field("sweep_account", &self.sweep_account)
            .field("shared_write_gap", &self.shared_write_gap)
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
        let order_list = match get(env::ORDER_LIST).as_deref() {
            _ if service != Service::Frontend => OrderList::Off,
            Some("off") => OrderList::Off,
            // A deployment on the internet does not show everyone's orders unless told to.
            None if get(env::K_SERVICE).is_some() => OrderList::Off,
            Some("on") | None => OrderList::On,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: env::ORDER_LIST,
                    value: other.to_owned(),
                    problem: "expected `on` or `off`",
                });
            }
        };
        let saga_deadline = match get(env::SAGA_DEADLINE) {
            None => crate::contract::sweep::DEFAULT_DEADLINE,
            Some(v) => match humantime::parse_duration(&v) {
                Ok(d) if d >= crate::contract::sweep::MIN_DEADLINE => d,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: env::SAGA_DEADLINE,
                        value: v,
                        problem: "expected a duration no shorter than Pub/Sub's retries of one message (8 minutes), such as `10m` or `600s`",
                    });
                }
            },
        };
        let shared_write_gap = match get(env::SHARED_WRITE_GAP) {
            None => crate::engine::SHARED_WRITE_GAP,
            Some(v) => match humantime::parse_duration(&v) {
                // On Cloud Run a shorter gap would give up Firestore's per-document rate.
                Ok(d) if get(env::K_SERVICE).is_some() && d < crate::engine::SHARED_WRITE_GAP => {
                    return Err(ConfigError::Invalid {
                        name: env::SHARED_WRITE_GAP,
                        value: v,
                        problem: "is for local runs: on Cloud Run the gap may not be shorter than 250ms",
                    });
                }
                Ok(d) if d <= Duration::from_secs(1) => d,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: env::SHARED_WRITE_GAP,
                        value: v,
                        problem: "expected a duration of a second or less, such as `250ms` or `0s`",
                    });
                }
            },
        };
        Ok(Config {
            service,
            port,
            push_auth,
            order_list,
            saga_deadline,
            shared_write_gap,
            sweep_account: get(env::SWEEP_SERVICE_ACCOUNT),
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
            order_list: OrderList::On,
            saga_deadline: crate::contract::sweep::DEFAULT_DEADLINE,
            sweep_account: None,
            shared_write_gap: crate::engine::SHARED_WRITE_GAP,
        }
    }

    /// The project id.
    pub fn project(&self) -> &str {
        &self.pubsub.project
    }
}

fn push_auth(get: &impl Fn(&'static str) -> Option<String>) -> Result<PushAuth, ConfigError> {
    let k_service = get(env::K_SERVICE);
    let expected = match (get(env::PUSH_AUDIENCE), get(env::PUSH_SERVICE_ACCOUNT)) {
        (Some(audience), Some(service_account)) => Some(PushIdentity {
            audience,
            service_account,
        }),
        (None, None) => None,
        _ => return Err(ConfigError::PartialPushAuth),
    };
    let mode = get(env::PUSH_AUTH);
    match (mode.as_deref(), expected) {
        // Off Cloud Run, the settings given decide: the local stack sets none.
        (None, None) if k_service.is_none() => Ok(PushAuth::Off),
        (None, Some(expected)) if k_service.is_none() => Ok(PushAuth::Signature {
            expected,
            jwks_url: None,
        }),
        // On Cloud Run, guessing wrong would either refuse every push or accept forged
        // stripped tokens: the deployment must say which it is.
        (None, _) => Err(ConfigError::PushAuthRequired),
        (Some("cloud-run-iam"), Some(expected)) => match k_service {
            Some(_) => Ok(PushAuth::CloudRunIam { expected, k_service }),
            None => Err(ConfigError::PushAuthConflict {
                name: env::K_SERVICE,
                problem: "cloud-run-iam trusts Cloud Run's signature check, but K_SERVICE is unset: this \
                          is not Cloud Run",
            }),
        },
        (Some("signature"), Some(expected)) => Ok(PushAuth::Signature {
            expected,
            jwks_url: None,
        }),
        (Some("cloud-run-iam" | "signature"), None) => Err(ConfigError::PushAuthConflict {
            name: env::PUSH_AUDIENCE,
            problem: "checking push tokens needs PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT",
        }),
        (Some("off"), None) => Ok(PushAuth::Off),
        (Some("off"), Some(_)) => Err(ConfigError::PushAuthConflict {
            name: env::PUSH_AUDIENCE,
            problem: "off checks no token, so an audience and account to check would be ignored",
        }),
        (Some(other), _) => Err(ConfigError::Invalid {
            name: env::PUSH_AUTH,
            value: other.to_owned(),
            problem: "expected `cloud-run-iam`, `signature` or `off`",
        }),
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
            ("PUSH_AUTH", "off"),
        ])
        .unwrap();
        assert_eq!((c.project(), c.port, c.log_format), ("g", 9000, LogFormat::Json));
        assert_eq!(c.pubsub.emulator_endpoint, None);
    }

    /// A table row: what it tries, the variables set, and the mode or the words of the refusal.
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Result<PushAuth, &'static str>,
    );

    /// What each combination of push settings gives: a mode, or the variable the refusal
    /// names.
    #[test]
    fn push_settings_choose_one_mode_or_refuse_naming_the_variable() {
        const AUD: (&str, &str) = (
            "PUSH_AUDIENCE",
            "//run.googleapis.com/projects/p/locations/r/services/orders",
        );
        const ACCOUNT: (&str, &str) = ("PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com");
        const CLOUD_RUN: (&str, &str) = ("K_SERVICE", "orders");
        let expected = PushIdentity {
            audience: AUD.1.into(),
            service_account: ACCOUNT.1.into(),
        };
        let iam = PushAuth::CloudRunIam {
            expected: expected.clone(),
            k_service: Some("orders".into()),
        };
        let signature = PushAuth::Signature {
            expected: expected.clone(),
            jwks_url: None,
        };
        let mode = |m: &'static str| ("PUSH_AUTH", m);
        let cases: Vec<Case> = vec![
            ("local stack: nothing set", vec![], Ok(PushAuth::Off)),
            (
                "off Cloud Run, identity given",
                vec![AUD, ACCOUNT],
                Ok(signature.clone()),
            ),
            ("half an identity", vec![AUD], Err("PUSH_SERVICE_ACCOUNT")),
            (
                "Cloud Run must be told the mode",
                vec![CLOUD_RUN, AUD, ACCOUNT],
                Err("PUSH_AUTH=cloud-run-iam"),
            ),
            (
                "Cloud Run with nothing",
                vec![CLOUD_RUN],
                Err("PUSH_AUTH=cloud-run-iam"),
            ),
            (
                "behind invoker IAM",
                vec![CLOUD_RUN, AUD, ACCOUNT, mode("cloud-run-iam")],
                Ok(iam),
            ),
            (
                "invoker IAM disabled",
                vec![CLOUD_RUN, AUD, ACCOUNT, mode("signature")],
                Ok(signature.clone()),
            ),
            (
                "signature off Cloud Run",
                vec![AUD, ACCOUNT, mode("signature")],
                Ok(signature),
            ),
            (
                "IAM mode outside Cloud Run",
                vec![AUD, ACCOUNT, mode("cloud-run-iam")],
                Err("K_SERVICE"),
            ),
            (
                "IAM mode without identity",
                vec![CLOUD_RUN, mode("cloud-run-iam")],
                Err("PUSH_AUDIENCE"),
            ),
            (
                "signature without identity",
                vec![mode("signature")],
                Err("PUSH_AUDIENCE"),
            ),
            (
                "explicit off on Cloud Run",
                vec![CLOUD_RUN, mode("off")],
                Ok(PushAuth::Off),
            ),
            (
                "off with an identity to check",
                vec![AUD, ACCOUNT, mode("off")],
                Err("PUSH_AUDIENCE"),
            ),
            (
                "unknown mode",
                vec![CLOUD_RUN, AUD, ACCOUNT, mode("iam")],
                Err("PUSH_AUTH=\"iam\""),
            ),
        ];
        for (what, mut vars, want) in cases {
            vars.push(("PROJECT_ID", "p"));
            match (config(&vars), want) {
                (Ok(c), Ok(mode)) => assert_eq!(c.push_auth, mode, "{what}"),
                (Err(e), Err(names)) => assert!(e.to_string().contains(names), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
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
        assert!(reads(Service::Orders).iter().any(|v| v.name == "PUSH_AUTH"));
    }

    #[test]
    fn the_order_list_is_off_on_cloud_run_unless_turned_on_and_on_elsewhere() {
        for (what, vars, want) in [
            ("local stack", vec![], Ok(OrderList::On)),
            ("Cloud Run", vec![("K_SERVICE", "frontend")], Ok(OrderList::Off)),
            (
                "Cloud Run, turned on",
                vec![("K_SERVICE", "frontend"), ("ORDER_LIST", "on")],
                Ok(OrderList::On),
            ),
            (
                "turned off locally",
                vec![("ORDER_LIST", "off")],
                Ok(OrderList::Off),
            ),
            ("a typo", vec![("ORDER_LIST", "yes")], Err("ORDER_LIST=\"yes\"")),
        ] {
            let got = Config::from_lookup(Service::Frontend, |k| match k {
                "PROJECT_ID" => Some("p".into()),
                _ => vars
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned()),
            });
            match (got, want) {
                (Ok(c), Ok(list)) => assert_eq!(c.order_list, list, "{what}"),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{what}: {e}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        assert!(
            reads(Service::Frontend)
                .iter()
                .any(|v| v.name == env::ORDER_LIST && v.provider == Provider::Deployment)
        );
        assert!(!reads(Service::Orders).iter().any(|v| v.name == env::ORDER_LIST));
    }

    /// Checks how `service` reads the duration `var` for each `(value, want)`, with `env`
    /// set besides: the duration `field` holds, or an error naming the problem in `words`.
    fn reads_duration(
        service: Service,
        env: &[(&str, &str)],
        var: &str,
        field: fn(&Config) -> Duration,
        cases: &[(Option<&str>, Result<Duration, &str>)],
    ) {
        for (value, want) in cases {
            let got = Config::from_lookup(service, |k| match k {
                k if k == var => value.map(str::to_owned),
                "PROJECT_ID" => Some("p".into()),
                k => env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()),
            });
            match (got, want) {
                (Ok(c), Ok(d)) => assert_eq!(field(&c), *d, "{var}={value:?}"),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{var}={value:?}: {e}"),
                (got, want) => panic!("{var}={value:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_saga_deadline_reads_as_a_duration_no_shorter_than_pubsubs_retries() {
        let minutes = |m| Duration::from_mins(m);
        assert_eq!(
            crate::contract::sweep::MIN_DEADLINE,
            minutes(8),
            "as the message says"
        );
        reads_duration(
            Service::Janitor,
            &[],
            env::SAGA_DEADLINE,
            |c| c.saga_deadline,
            &[
                (None, Ok(minutes(10))),
                (Some("8m"), Ok(minutes(8))),
                (Some("480s"), Ok(minutes(8))),
                (Some("1h 30m"), Ok(minutes(90))),
                (Some("479s"), Err("no shorter than Pub/Sub's retries")),
                (Some("7m"), Err("(8 minutes)")),
                (Some("600"), Err("SAGA_DEADLINE=\"600\"")),
                (Some("soon"), Err("such as `10m`")),
            ],
        );
    }

    #[test]
    fn the_shared_write_gap_reads_as_a_duration_of_a_second_or_less_and_not_shorter_on_cloud_run() {
        let default = crate::engine::SHARED_WRITE_GAP;
        reads_duration(
            Service::Inventory,
            &[],
            env::SHARED_WRITE_GAP,
            |c| c.shared_write_gap,
            &[
                (None, Ok(default)),
                (Some("0s"), Ok(Duration::ZERO)),
                (Some("100ms"), Ok(Duration::from_millis(100))),
                (Some("1s"), Ok(Duration::from_secs(1))),
                (Some("2s"), Err("a second or less")),
                (Some("fast"), Err("SHARED_WRITE_GAP=\"fast\"")),
            ],
        );
        reads_duration(
            Service::Inventory,
            &[("K_SERVICE", "inventory"), ("PUSH_AUTH", "off")],
            env::SHARED_WRITE_GAP,
            |c| c.shared_write_gap,
            &[
                (None, Ok(default)),
                (Some("500ms"), Ok(Duration::from_millis(500))),
                (Some("0s"), Err("on Cloud Run the gap may not be shorter")),
            ],
        );
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
