//! The sweep: ends the sagas that passed their deadline, whatever stopped them.
//!
//! Every saga has a deadline, `SAGA_DEADLINE` after it was received (10 minutes by
//! default). Pub/Sub's retries and dead-lettering end almost every saga long before; the
//! sweep is for what they cannot: a janitor outage longer than its subscriptions keep
//! messages, a message lost before its first step, a bug. It finds the open sagas past the
//! deadline by the status view's `ended == 0` and `created` (an indexed query), and for
//! each decides from its step records ([`decide`], pure) one of:
//!
//! - **relay**: the last step that ran holds a message nothing proves delivered (no record
//!   of the step that reads it): publish it again, through the engine's own path for a
//!   duplicate delivery ([`saga::engine::relay`]), under the record's publish lease. Only
//!   within twice the deadline: a saga that a relay did not move on by then is compensated.
//! - **compensate**: through the janitor's one compensation path ([`crate::compensate`]),
//!   exactly once however many sweeps race (the janitor's record is created only if absent),
//!   tombstoning the steps that never ran so that a message still in flight cannot run them
//!   later. For a step that failed, with its own failure; otherwise as `timed_out`, failing
//!   the first step that did not run. A paid saga is never compensated.
//! - **leave**: it ended after all (paid, or compensated) and only its view says otherwise;
//!   the view's `ended` is set so the next sweep does not look at it again.
//!
//! Every action is idempotent, so a sweep is safe to run twice at once and to repeat.

use crate::compensate;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use firestore::FirestoreTimestamp;
use futures::StreamExt as _;
use saga::contract::{Service, collections, sweep as contract};
use saga::domain::{Order, Quantity, Reason, SagaId};
use saga::engine::records::{self, StepRecord, StepState};
use saga::engine::status::{self, StatusDoc};
use saga::engine::{self, Deadline, Handled, Inbound, StepError};
use saga::gcp::Clients;
use saga::gcp::auth::{AuthError, PushAuth, PushVerifier};
use saga::gcp::store::{DocPath, WriteSet};
use saga::runtime::config::{Config, env};
use saga::runtime::server::AnswerLog;
use saga::wire::message::SagaMessage;
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// The forward steps, in the order a saga runs them.
const FORWARD: [Service; 3] = [Service::Orders, Service::Inventory, Service::Payments];

/// How many sagas one sweep works on at once.
const CONCURRENCY: usize = 8;

/// How a sweep runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a saga may run, from `received`, before the sweep ends it.
    pub deadline: Duration,
    /// Decide, and report, but change nothing.
    pub dry_run: bool,
    /// Most sagas to look at; the next sweep takes the rest.
    pub limit: u32,
    /// Sagas read by one query.
    pub page: u32,
    /// How compensations write the stock (its write gap).
    pub compensation: crate::Compensation,
}

impl Options {
    /// A sweep of sagas older than `deadline`, with the contract's batch size.
    pub fn new(deadline: Duration) -> Self {
        Options {
            deadline,
            dry_run: false,
            limit: contract::MOST,
            page: contract::BATCH,
            compensation: crate::Compensation::default(),
        }
    }
}

/// What the sweep does to one saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Publish `step`'s stored message again: nothing proves it delivered.
    Relay {
        /// The step whose record holds the message.
        #[serde(serialize_with = "by_name")]
        step: Service,
    },
    /// Compensate the saga, `step` having failed for `reason`.
    Compensate {
        /// The step that failed, or the first that did not run.
        #[serde(serialize_with = "by_name")]
        step: Service,
        /// Its failure, or `timed_out`.
        reason: Reason,
    },
    /// Nothing to undo or send: the saga ended, and only its view is behind.
    Leave {
        /// Why.
        why: &'static str,
    },
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's serialize_with passes a reference"
)]
fn by_name<S: Serializer>(service: &Service, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(service.name())
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Relay { step } => write!(f, "relay {step}'s message"),
            Action::Compensate { step, reason } => {
                write!(f, "compensate ({step} failed: {})", reason.as_str())
            }
            Action::Leave { why } => write!(f, "leave ({why})"),
        }
    }
}

/// What the sweep read of one saga: its view and its records.
#[derive(Clone, Debug, Default)]
pub struct Saga {
    /// `sagas/{uuid}`.
    pub view: StatusDoc,
    /// The forward steps' records, in [`FORWARD`] order.
    pub steps: [Option<StepRecord>; 3],
    /// The compensation's record.
    pub janitor: Option<StepRecord>,
}

/// What to do with `saga`, `age` after it was received, given the saga `deadline`.
pub fn decide(saga: &Saga, age: Duration, deadline: Duration) -> Action {
    if let Some(janitor) = &saga.janitor {
        return if janitor.published {
            Action::Leave { why: "compensated" }
        } else {
            Action::Relay {
                step: Service::Janitor,
            }
        };
    }
    let mut last_done = None;
    for (service, record) in FORWARD.into_iter().zip(&saga.steps) {
        let Some(record) = record else { break };
        match record.state {
            StepState::Done if service == Service::Payments => {
                return if record.published {
                    Action::Leave { why: "paid" }
                } else {
                    Action::Relay { step: service }
                };
            }
            StepState::Done => last_done = Some(service),
            StepState::Rejected | StepState::Failed => {
                let reason = record
                    .reason
                    .as_deref()
                    .and_then(|r| Reason::ALL.into_iter().find(|x| x.as_str() == r))
                    .unwrap_or(Reason::TimedOut);
                return Action::Compensate {
                    step: service,
                    reason,
                };
            }
            // Only a compensation writes these, with its own record: a half-written saga.
            StepState::Compensated | StepState::Tombstone => {
                return Action::Compensate {
                    step: service,
                    reason: Reason::TimedOut,
                };
            }
        }
    }
    match last_done {
        Some(step) if age < deadline.saturating_mul(2) => Action::Relay { step },
        _ => {
            let next = last_done.map_or(0, |s| FORWARD.iter().position(|f| *f == s).map_or(0, |i| i + 1));
            Action::Compensate {
                step: FORWARD[next.min(FORWARD.len() - 1)],
                reason: Reason::TimedOut,
            }
        }
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Whether it changed nothing.
    pub dry_run: bool,
    /// The open sagas past their deadline it looked at.
    pub examined: usize,
    /// Each of them.
    pub sagas: Vec<Swept>,
}

/// What a sweep did to one saga.
#[derive(Clone, Debug, Serialize)]
pub struct Swept {
    /// The saga.
    pub uuid: String,
    /// Seconds since it was received.
    pub age_secs: u64,
    /// Where it stood.
    pub stage: &'static str,
    /// What the sweep decided; `None` when it could not read the saga or ran out of time.
    #[serde(flatten)]
    pub action: Option<Action>,
    /// `done`, `dry_run`, or what went wrong (the next sweep tries again).
    pub outcome: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would end" } else { "ended" };
        writeln!(
            f,
            "{} open saga(s) past the deadline; {verb} {}",
            self.examined,
            self.sagas.iter().filter(|s| s.ended()).count()
        )?;
        for s in &self.sagas {
            let action = s.action.map_or_else(|| "-".to_owned(), |a| a.to_string());
            writeln!(
                f,
                "{}  {:>6}s  {:<14} {action}: {}",
                s.uuid, s.age_secs, s.stage, s.outcome
            )?;
        }
        Ok(())
    }
}

/// The outcome of a saga the sweep had no time left for.
const LEFT: &str = "left for the next sweep";

impl Swept {
    /// Whether the sweep ended this saga (or, on a dry run, would have).
    pub fn ended(&self) -> bool {
        matches!(self.outcome.as_str(), "done" | "dry_run")
    }

    fn left_for_the_next_sweep(&self) -> bool {
        self.outcome == LEFT
    }
}

/// Sweeps once: looks at up to `options.limit` open sagas received more than
/// `options.deadline` ago, `options.page` at a time, and ends each, while `until` leaves
/// time. It goes on from where the last sweep stopped ([`Cursor`]) to the newest past the
/// deadline, then from the oldest up to there. `Err` only if the first page cannot be
/// listed; a saga that could not be ended says so in the report, and a later page that
/// cannot be listed is left for the next sweep.
///
/// Paging by `created` (the query's order) moves past sagas that cannot be ended (an
/// unreadable record, say), and the cursor carries that across sweeps: however many of
/// them a sweep spends its limit or its time on, the next one starts behind them, so they
/// never hold back the sagas behind them. Sweeps with another deadline share the cursor;
/// at worst one starts a round again. Two sagas received in the same microsecond across a
/// page boundary: the second is passed over in that round (a round later the boundaries
/// have usually moved).
///
/// # Errors
/// When Firestore cannot be queried.
pub async fn sweep(clients: &Clients, options: &Options, until: Deadline) -> anyhow::Result<Report> {
    let now = status::now_micros();
    let cutoff = now.saturating_sub(micros(options.deadline));
    // A cursor at or past the cutoff is another deadline's (`sagactl sweep --deadline 30m`,
    // say): this sweep starts from the oldest.
    let stopped_at = Cursor::read(clients).await;
    let start = if stopped_at < cutoff { stopped_at } else { i64::MIN };
    let mut sagas: Vec<Swept> = Vec::new();
    // Where the next sweep starts: where this one stopped, or from the oldest if it got
    // round to where it started.
    let mut next = i64::MIN;
    let mut passes = vec![(start, cutoff)];
    if start != i64::MIN {
        // Up to and with the saga the last sweep stopped at.
        passes.push((i64::MIN, start.saturating_add(1)));
    }
    for range in passes {
        if let Pass::StoppedAt(at) = pass(clients, options, until, now, range, &mut sagas).await? {
            next = at;
            break;
        }
    }
    if next != start && !options.dry_run {
        Cursor::write(clients, next).await;
    }
    Ok(Report {
        dry_run: options.dry_run,
        examined: sagas.len(),
        sagas,
    })
}

/// How a sweep's pass over the open sagas of a range of `created` ended.
enum Pass {
    /// It reached the end of the range.
    Finished,
    /// It stopped (its limit, its time, or a page it could not list) after the saga
    /// received at this `created`: the next sweep goes on from there.
    StoppedAt(i64),
}

/// Sweeps the open sagas with `after < created < before`, oldest first, adding what it did
/// to `sagas` (which counts towards `options.limit`). `Err` only if nothing was listed
/// before in this sweep and this page cannot be.
async fn pass(
    clients: &Clients,
    options: &Options,
    until: Deadline,
    now: i64,
    (mut after, before): (i64, i64),
    sagas: &mut Vec<Swept>,
) -> anyhow::Result<Pass> {
    loop {
        let left = options
            .limit
            .saturating_sub(u32::try_from(sagas.len()).unwrap_or(u32::MAX));
        let page = left.min(options.page.max(1));
        if page == 0 || !until.leaves_time_to_publish() {
            return Ok(Pass::StoppedAt(after));
        }
        let open = clients
            .store
            .flagged_between(
                collections::SAGAS,
                (contract::INDEX_FIELDS[0], 0),
                contract::INDEX_FIELDS[1],
                (after, before),
                page,
            )
            .await;
        let open = match open {
            Ok(open) => open,
            Err(e) if sagas.is_empty() => return Err(e),
            Err(e) => {
                // The sagas behind this page wait for the next sweep: the same signal as a
                // sweep that could list none, for if it keeps failing they are never swept.
                tracing::warn!(error = %format!("{e:#}"), page = "a later one", "{}", contract::NOT_LISTED);
                return Ok(Pass::StoppedAt(after));
            }
        };
        let full = open.len() == page as usize;
        // Read from each document as it is, so that a page of views that cannot be decoded
        // still moves the cursor on.
        let last = open
            .iter()
            .filter_map(|doc| doc.integer(contract::INDEX_FIELDS[1]))
            .max();
        let views: Vec<StatusDoc> = open
            .into_iter()
            .filter_map(|doc| match doc.decode::<StatusDoc>() {
                Ok(view) => Some(view),
                Err(e) => {
                    // It keeps `ended == 0` for ever, so every sweep comes back to it.
                    tracing::warn!(view = doc.name(), error = %e, why = "its view cannot be read", "{}", contract::NOT_ENDED);
                    None
                }
            })
            .collect();
        let swept = sweep_page(clients, views, now, options, until).await;
        let cut_short = resume_after(after, &swept);
        sagas.extend(swept.into_iter().map(|(_, swept)| swept));
        if let Some(at) = cut_short {
            return Ok(Pass::StoppedAt(at));
        }
        match last {
            Some(last) if full => after = last,
            _ if !full => return Ok(Pass::Finished),
            // A full page with no readable `created`: none can be, as the query compares
            // numbers only, but if it were, going on from here is all there is.
            _ => return Ok(Pass::StoppedAt(after)),
        }
    }
}

/// `sweeps/cursor`: the `created` of the last saga the last sweep looked at, where a sweep
/// stopped short of the newest (its limit, its time). A hint, not a lock: sweeps that race
/// both write it, and either value only decides where the next one starts.
#[derive(Debug, Serialize)]
struct Cursor {
    /// Go on after the saga received at this `created` (microseconds since the epoch).
    after: i64,
    /// When it was written, for people.
    written: FirestoreTimestamp,
}

impl Cursor {
    fn path() -> DocPath {
        DocPath::new([collections::SWEEPS, "cursor"])
    }

    /// Where to start: from the oldest if no sweep stopped short, or if it cannot be read.
    async fn read(clients: &Clients) -> i64 {
        match clients.store.get(&Self::path()).await {
            // Read leniently: a hand edit in the console stores a number as a double.
            Ok(Some(doc)) => doc.integer("after").unwrap_or_else(|| {
                tracing::warn!(
                    cursor = doc.name(),
                    "the sweep's cursor holds no integer `after`; sweeping from the oldest"
                );
                i64::MIN
            }),
            Ok(None) => i64::MIN,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the sweep's cursor cannot be read; sweeping from the oldest");
                i64::MIN
            }
        }
    }

    /// Best effort: if it cannot be written, the next sweep starts where this one did.
    async fn write(clients: &Clients, after: i64) {
        let mut writes = WriteSet::new();
        let cursor = Cursor {
            after,
            written: FirestoreTimestamp::now(),
        };
        writes.update(Self::path(), &cursor, None, None);
        if let Err(e) = clients.store.commit(writes).await {
            tracing::warn!(error = %e, "could not save where the sweep stopped; the next one starts where this one did");
        }
    }
}

/// Sweeps the sagas of `views`, [`CONCURRENCY`] at a time, started in the order given:
/// each one's `created`, and what the sweep did to it.
async fn sweep_page(
    clients: &Clients,
    views: Vec<StatusDoc>,
    now: i64,
    options: &Options,
    until: Deadline,
) -> Vec<(i64, Swept)> {
    futures::stream::iter(views)
        .map(|view| async move { (view.created, sweep_one(clients, view, now, options, until).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Where to go on after a page of sagas (their `created` and what the sweep did to each)
/// that began after `after`: `None` if the sweep looked at every one; else just before the
/// first it had no time for. A saga is started only while time is left, in `created`
/// order, so those left form the page's end, and the next sweep begins with them.
fn resume_after(after: i64, page: &[(i64, Swept)]) -> Option<i64> {
    page.iter()
        .filter(|(_, swept)| swept.left_for_the_next_sweep())
        .map(|(created, _)| created.saturating_sub(1).max(after))
        .min()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

async fn sweep_one(
    clients: &Clients,
    view: StatusDoc,
    now: i64,
    options: &Options,
    until: Deadline,
) -> Swept {
    let age = Duration::from_micros(u64::try_from(now.saturating_sub(view.created)).unwrap_or(0));
    let mut swept = Swept {
        uuid: view.uuid.clone(),
        age_secs: age.as_secs(),
        stage: view.status().as_str(),
        action: None,
        outcome: String::new(),
    };
    let Some(uuid) = SagaId::parse(&view.uuid) else {
        let why = "its view names no valid uuid";
        tracing::warn!(uuid = %view.uuid, why, "{}", contract::NOT_ENDED);
        why.clone_into(&mut swept.outcome);
        return swept;
    };
    if !until.leaves_time_to_publish() {
        LEFT.clone_into(&mut swept.outcome);
        return swept;
    }
    let saga = match read(clients, uuid, view).await {
        Ok(saga) => saga,
        Err(e) => {
            tracing::warn!(%uuid, error = %e, "{}", contract::NOT_ENDED);
            swept.outcome = format!("could not read its records: {e}");
            return swept;
        }
    };
    let action = decide(&saga, age, options.deadline);
    swept.action = Some(action);
    if options.dry_run {
        "dry_run".clone_into(&mut swept.outcome);
        return swept;
    }
    swept.outcome = match act(clients, options.compensation, uuid, &saga, action, until).await {
        // Nothing was done: the saga ended meanwhile (paid as the sweep read it, say), or it
        // cannot be ended (a record that cannot be read) and a person must look.
        Ok(Handled::Ignored(why)) => {
            if let Ok(true) = ended(clients, uuid).await {
                "done".to_owned()
            } else {
                tracing::warn!(%uuid, action = %action, why, "{}", contract::NOT_ENDED);
                format!("not ended: {why}")
            }
        }
        Ok(handled) => {
            tracing::info!(%uuid, action = %action, outcome = handled.word(), "the sweep ended a saga past its deadline");
            "done".to_owned()
        }
        Err(e) => {
            tracing::warn!(%uuid, action = %action, error = %e, "{}", contract::NOT_ENDED);
            e.to_string()
        }
    };
    swept
}

async fn read(clients: &Clients, uuid: SagaId, view: StatusDoc) -> anyhow::Result<Saga> {
    let paths: Vec<_> = FORWARD
        .iter()
        .chain([&Service::Janitor])
        .map(|s| records::step(uuid, *s))
        .collect();
    let mut docs = clients.store.get_all(&paths).await?.into_iter();
    let mut next = || -> anyhow::Result<Option<StepRecord>> {
        docs.next()
            .flatten()
            .map(|d| d.decode::<StepRecord>())
            .transpose()
    };
    Ok(Saga {
        view,
        steps: [next()?, next()?, next()?],
        janitor: next()?,
    })
}

async fn act(
    clients: &Clients,
    compensation: crate::Compensation,
    uuid: SagaId,
    saga: &Saga,
    action: Action,
    until: Deadline,
) -> Result<Handled, StepError> {
    match action {
        Action::Relay { step } => engine::relay(clients, uuid, step, until).await,
        Action::Compensate { step, reason } => {
            let index = FORWARD.iter().position(|s| *s == step);
            let failure = if let Some(stored) = stored_failure(uuid, saga, step) {
                stored
            } else if let Some(record) = index.and_then(|i| saga.steps[i].as_ref()) {
                // A tombstone or a compensated record without the janitor's (a restore, a
                // hand edit): no failure to compensate with, and no step to fail.
                return Err(anyhow::anyhow!(
                    "its {step} record is {:?} and holds no failure; a person must look",
                    record.state
                )
                .into());
            } else {
                // Only records say a saga failed: the step that timed out fails on its
                // record first, as a dead letter would fail it, given the message it would
                // have read. A step that has run meanwhile keeps its record, and the saga
                // goes on from it.
                let msg = awaited(uuid, saga, index)?;
                let handled = crate::give_up(clients, step, reason, &msg, &Inbound::default(), until).await?;
                if handled != Handled::Published(saga::contract::Topic::Error) {
                    return Ok(handled);
                }
                msg.fail(step, reason)
            };
            compensate(clients, compensation, &failure, &Inbound::default(), until).await
        }
        Action::Leave { .. } => {
            let mut writes = WriteSet::new();
            status::mark_ended(&mut writes, records::saga(uuid));
            clients.store.commit(writes).await.map_err(anyhow::Error::from)?;
            Ok(Handled::Recorded)
        }
    }
}

/// The saga's view, if it has a readable one.
pub(crate) async fn view(clients: &Clients, uuid: SagaId) -> Result<Option<StatusDoc>, StepError> {
    let view = clients.store.get(&records::saga(uuid)).await?;
    Ok(view.and_then(|doc| doc.decode::<StatusDoc>().ok()))
}

/// Whether the saga's view says it ended.
async fn ended(clients: &Clients, uuid: SagaId) -> Result<bool, StepError> {
    Ok(view(clients, uuid).await?.is_some_and(|view| view.ended != 0))
}

/// The `error` message `step`'s record holds, if it failed.
fn stored_failure(uuid: SagaId, saga: &Saga, step: Service) -> Option<SagaMessage> {
    let index = FORWARD.iter().position(|s| *s == step)?;
    saga.steps[index]
        .as_ref()
        .and_then(|r| r.stored_message(uuid))
        .filter(|m| m.reason.is_some())
}

/// The message the step at `index` in [`FORWARD`] waits for: the one the step before
/// stored as published, or for the first step (or a record that holds none), the saga's
/// order as the frontend starts it.
fn awaited(uuid: SagaId, saga: &Saga, index: Option<usize>) -> Result<SagaMessage, StepError> {
    let stored = index
        .and_then(|i| i.checked_sub(1))
        .and_then(|before| saga.steps[before].as_ref())
        .and_then(|r| r.stored_message(uuid))
        .filter(|m| m.reason.is_none());
    match stored {
        Some(stored) => Ok(stored),
        None => Ok(SagaMessage::new(uuid, order(saga)?, serde_json::Map::new())),
    }
}

/// The saga's order, from its records, else its view.
fn order(saga: &Saga) -> Result<Order, StepError> {
    Ok(saga
        .steps
        .iter()
        .flatten()
        .find_map(StepRecord::order)
        .or_else(|| order_of(&saga.view))
        .ok_or_else(|| anyhow::anyhow!("neither its records nor its view hold a readable order"))?)
}

/// The order a saga's view records (the frontend writes it before it publishes).
pub(crate) fn order_of(view: &StatusDoc) -> Option<Order> {
    Some(Order {
        user: saga::domain::UserName::parse(&view.user).ok()?,
        item: saga::domain::ItemName::parse(&view.item).ok()?,
        quantity: Quantity::new(u64::from(view.quantity)).ok()?,
    })
}

/// Who may call the sweep endpoint.
#[derive(Clone, Debug)]
enum Caller {
    /// Anyone: push tokens are not checked at all (the emulators).
    Anyone,
    /// A token of the sweep's account, checked as push tokens are.
    Verified(Arc<PushVerifier>),
    /// Nobody: tokens are checked, but no account may sweep.
    Nobody,
}

/// The janitor's `POST` [`contract::PATH`]: one sweep with the configured deadline, by
/// whom the configuration allows ([`env::SWEEP_SERVICE_ACCOUNT`]).
pub fn route(config: &Config) -> MethodRouter<Clients> {
    let caller = match (&config.push_auth, &config.sweep_account) {
        (PushAuth::Off, _) => Caller::Anyone,
        (auth, Some(account)) => PushVerifier::from_config(&auth.for_account(account))
            .map_or(Caller::Nobody, |v| Caller::Verified(Arc::new(v))),
        (_, None) => Caller::Nobody,
    };
    let options = Options {
        compensation: crate::Compensation::configured(config),
        ..Options::new(config.saga_deadline)
    };
    post(move |State(clients): State<Clients>, headers: HeaderMap| {
        let until = Deadline::arrived_at(Instant::now());
        let (caller, options) = (caller.clone(), options.clone());
        async move {
            match caller {
                Caller::Anyone => {}
                Caller::Verified(verifier) => {
                    if let Err(e) = verifier.verify(&headers).await {
                        return SweepReply::Refused(e);
                    }
                }
                Caller::Nobody => return SweepReply::Closed,
            }
            match sweep(&clients, &options, until).await {
                Ok(report) => SweepReply::Swept(report),
                Err(e) => SweepReply::Unavailable(format!("{e:#}")),
            }
        }
    })
}

/// The sweep endpoint's answers.
enum SweepReply {
    Swept(Report),
    Refused(AuthError),
    Closed,
    Unavailable(String),
}

impl IntoResponse for SweepReply {
    fn into_response(self) -> Response {
        let refused = |status, error, message: &str| {
            (
                status,
                Json(serde_json::json!({ "error": error, "message": message })),
            )
                .into_response()
        };
        let mut response = match &self {
            SweepReply::Swept(report) => (StatusCode::OK, Json(report)).into_response(),
            SweepReply::Refused(AuthError::Unavailable(_)) => refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot verify tokens right now; retry",
            ),
            SweepReply::Refused(AuthError::Unauthenticated(_)) => refused(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the sweep takes calls only from the sweep's service account",
            ),
            SweepReply::Refused(AuthError::Forbidden(_)) | SweepReply::Closed => refused(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the sweep takes calls only from the sweep's service account",
            ),
            SweepReply::Unavailable(_) => refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot list the open sagas right now; the next sweep tries again",
            ),
        };
        AnswerLog::attach(&mut response, move || match &self {
            // Each saga ended has its own line; a sweep with nothing to do is not news.
            SweepReply::Swept(report) if report.examined == 0 => {
                tracing::debug!("sweep done: no open saga past its deadline");
            }
            SweepReply::Swept(report) => tracing::info!(
                examined = report.examined,
                ended = report.sagas.iter().filter(|s| s.ended()).count(),
                "sweep done"
            ),
            SweepReply::Refused(error) => tracing::warn!(error = %error, "a sweep call was refused"),
            SweepReply::Closed => tracing::warn!(
                "a sweep call was refused: set {} to the account that may sweep",
                env::SWEEP_SERVICE_ACCOUNT
            ),
            SweepReply::Unavailable(why) => {
                tracing::warn!(error = why, "{}", contract::NOT_LISTED);
            }
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_mins(5);

    #[allow(
        clippy::unnecessary_wraps,
        reason = "records are optional where they are used"
    )]
    fn record(
        step: Service,
        state: StepState,
        published: bool,
        reason: Option<Reason>,
    ) -> Option<StepRecord> {
        let order = Order {
            user: saga::domain::UserName::parse("jack").unwrap(),
            item: saga::domain::ItemName::parse("widget").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        };
        let mut r = StepRecord::new(step, SagaId::new(), &order, state);
        r.published = published;
        r.reason = reason.map(|r| r.as_str().to_owned());
        Some(r)
    }

    fn saga(steps: [Option<StepRecord>; 3], janitor: Option<StepRecord>) -> Saga {
        Saga {
            view: StatusDoc::default(),
            steps,
            janitor,
        }
    }

    #[test]
    fn each_kind_of_stopped_saga_is_ended_the_safe_way() {
        use Service::{Inventory, Janitor, Orders, Payments};
        use StepState::{Compensated, Done, Rejected, Tombstone};
        let done = |s| record(s, Done, false, None);
        let late = DEADLINE * 2;
        let timed_out = |step| Action::Compensate {
            step,
            reason: Reason::TimedOut,
        };
        let cases: Vec<(&str, Saga, Duration, Action)> = vec![
            (
                "no step ran",
                saga([None, None, None], None),
                DEADLINE,
                timed_out(Orders),
            ),
            (
                "orders ran, its message may be lost",
                saga([done(Orders), None, None], None),
                DEADLINE,
                Action::Relay { step: Orders },
            ),
            (
                "a relay did not help in time",
                saga([done(Orders), None, None], None),
                late,
                timed_out(Inventory),
            ),
            (
                "stock reserved, payment never ran",
                saga([done(Orders), done(Inventory), None], None),
                late,
                timed_out(Payments),
            ),
            (
                "paid, its message not confirmed",
                saga([done(Orders), done(Inventory), done(Payments)], None),
                late,
                Action::Relay { step: Payments },
            ),
            (
                "paid and published: never compensated",
                saga(
                    [done(Orders), done(Inventory), record(Payments, Done, true, None)],
                    None,
                ),
                late,
                Action::Leave { why: "paid" },
            ),
            (
                "inventory refused, the janitor never compensated",
                saga(
                    [
                        done(Orders),
                        record(Inventory, Rejected, false, Some(Reason::InsufficientStock)),
                        None,
                    ],
                    None,
                ),
                DEADLINE,
                Action::Compensate {
                    step: Inventory,
                    reason: Reason::InsufficientStock,
                },
            ),
            (
                "compensated, the message not confirmed",
                saga([done(Orders), None, None], record(Janitor, Done, false, None)),
                late,
                Action::Relay { step: Janitor },
            ),
            (
                "compensated and published",
                saga(
                    [record(Orders, Compensated, false, None), None, None],
                    record(Janitor, Done, true, None),
                ),
                late,
                Action::Leave { why: "compensated" },
            ),
            (
                "a tombstone without its compensation",
                saga([record(Orders, Tombstone, false, None), None, None], None),
                DEADLINE,
                timed_out(Orders),
            ),
        ];
        for (what, saga, age, want) in cases {
            assert_eq!(decide(&saga, age, DEADLINE), want, "{what}");
        }
    }

    #[test]
    fn a_timed_out_saga_fails_its_step_with_the_order_it_recorded_else_the_views() {
        let mut s = saga(
            [record(Service::Orders, StepState::Done, false, None), None, None],
            None,
        );
        s.view.user = "someone-else".to_owned();
        assert_eq!(
            order(&s).unwrap().user.as_str(),
            "jack",
            "the records win over the view"
        );
        assert_eq!(stored_failure(SagaId::new(), &s, Service::Inventory), None);

        let mut stranded = saga([None, None, None], None);
        stranded.view = StatusDoc {
            user: "jill".to_owned(),
            item: "wotsit".to_owned(),
            quantity: 3,
            ..StatusDoc::default()
        };
        assert_eq!(
            order(&stranded).unwrap().user.as_str(),
            "jill",
            "no record: the view's order"
        );
        assert!(order(&saga([None, None, None], None)).is_err());
    }

    #[test]
    fn a_timed_out_step_fails_on_the_message_it_waited_for() {
        let uuid = SagaId::new();
        let mut ordered = record(Service::Orders, StepState::Done, false, None).unwrap();
        let mut extra = serde_json::Map::new();
        extra.insert("note".to_owned(), serde_json::json!("the client's"));
        let created = SagaMessage::new(uuid, ordered.order().unwrap(), extra);
        ordered.outbox = Some(saga::gcp::bus::Outgoing::new(
            saga::contract::Topic::OrderCreated,
            created.to_json(),
        ));
        let s = saga([Some(ordered), None, None], None);
        assert_eq!(
            awaited(uuid, &s, Some(1)).unwrap(),
            created,
            "what orders published"
        );
        let first = awaited(uuid, &s, Some(0)).unwrap();
        assert!(first.extra.is_empty(), "the first step: the order alone");
        assert!(
            awaited(SagaId::new(), &s, Some(1)).unwrap().extra.is_empty(),
            "another saga's message is not awaited"
        );
    }

    #[test]
    fn a_page_cut_short_is_gone_on_with_from_the_first_saga_left_for_the_next_sweep() {
        let swept = |outcome: &str| Swept {
            uuid: "u".to_owned(),
            age_secs: 400,
            stage: "order_created",
            action: None,
            outcome: outcome.to_owned(),
        };
        let (done, broken) = (swept("done"), swept("not ended: its record cannot be read"));
        let left = swept(LEFT);
        let cases = vec![
            (
                "every saga looked at",
                vec![(10, done.clone()), (20, broken.clone())],
                None,
            ),
            ("an empty page", vec![], None),
            (
                "time ran out after two",
                vec![
                    (10, done.clone()),
                    (20, broken),
                    (30, left.clone()),
                    (40, left.clone()),
                ],
                Some(29),
            ),
            (
                "finished out of order",
                vec![(40, left.clone()), (10, done), (30, left.clone())],
                Some(29),
            ),
            (
                "none had time, right after the page's start",
                vec![(6, left)],
                Some(5),
            ),
        ];
        for (what, page, want) in cases {
            assert_eq!(resume_after(5, &page), want, "{what}");
        }
    }

    #[test]
    fn the_report_serialises_each_action_by_name() {
        let swept = Swept {
            uuid: "u".to_owned(),
            age_secs: 400,
            stage: "order_created",
            action: Some(Action::Compensate {
                step: Service::Inventory,
                reason: Reason::TimedOut,
            }),
            outcome: "done".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&swept).unwrap(),
            serde_json::json!({
                "uuid": "u", "age_secs": 400, "stage": "order_created",
                "action": "compensate", "step": "inventory", "reason": "timed_out", "outcome": "done"
            })
        );
    }
}
