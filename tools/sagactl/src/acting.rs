//! What `redrive` and `discard` share: read the letters on the dead-letter subscription and
//! hold them, pick those asked for, act on each with the command's own action, put the rest
//! back when done, and report what became of each letter, as text and as JSON.

use crate::letters::{self, Letter, Selection};
use devstack::held::Held;
use devstack::pubsub::{Puller, Received};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Which letters to act on, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which letters.
    pub selection: Selection,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
    /// Read at most this many letters.
    pub limit: usize,
    /// Stop reading when none came for this long.
    pub wait: Duration,
}

/// What became of one letter: a command's action.
pub trait Action: Clone + fmt::Debug + PartialEq + Serialize {
    /// Whether it failed: the command exits 1.
    fn failed(&self) -> bool;
    /// Whether it left the letter for a person: the command exits 3.
    fn refused(&self) -> bool;
    /// What became of the letter, for people.
    fn describe(&self) -> String;
    /// The report's first words: what was done (or, on a dry run, would be) to `outcomes`.
    fn summary(outcomes: &[Outcome<Self>], dry_run: bool) -> String;
}

/// How many of `outcomes` `pick` picks: for [`Action::summary`].
pub fn count<A>(outcomes: &[Outcome<A>], pick: impl Fn(&A) -> bool) -> usize {
    outcomes.iter().filter(|o| pick(&o.action)).count()
}

/// One selected letter and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome<A> {
    /// The letter, as it was read.
    pub letter: Letter,
    /// What became of it.
    #[serde(flatten)]
    pub action: A,
}

/// What a command did to the letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report<A> {
    /// Whether this was a dry run, which changed nothing.
    pub dry_run: bool,
    /// How many letters were read.
    pub read: usize,
    /// The most that would be.
    pub limit: usize,
    /// Each selected letter, in the order read.
    pub outcomes: Vec<Outcome<A>>,
    /// Message ids asked for that were not among the letters read.
    pub not_found: Vec<String>,
}

impl<A: Action> Report<A> {
    /// Whether acting on a letter failed.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.action.failed())
    }

    /// Whether a selected letter was left on the subscription for a person to look at:
    /// refused, or not found.
    pub fn left_for_people(&self) -> bool {
        !self.not_found.is_empty() || self.outcomes.iter().any(|o| o.action.refused())
    }
}

/// Reads the letters of `project`, and acts with `act` on each that `options` select (given
/// the letters held, for their acks, and the letter as received and as read); the rest go
/// back on the subscription once all are done.
///
/// # Errors
/// When the letters cannot be read.
pub async fn act_on<A, F>(
    puller: &Puller,
    project: &str,
    options: &Options,
    mut act: F,
) -> anyhow::Result<Report<A>>
where
    F: AsyncFnMut(&mut Held, &Received, &Letter) -> A,
{
    let mut held = puller
        .hold(letters::subscription(), options.limit, options.wait)
        .await?;
    let now = SystemTime::now();
    let letters: Vec<Letter> = held
        .messages()
        .iter()
        .map(|m| Letter::of(m, project, now))
        .collect();
    let (chosen, not_found) = letters::select(&letters, &options.selection);
    let mut outcomes = Vec::with_capacity(chosen.len());
    // Each letter was read from the message at its index, in the order read.
    for (i, letter) in letters.iter().enumerate() {
        if !chosen.iter().any(|c| std::ptr::eq(*c, letter)) {
            continue;
        }
        // A copy of the chosen message alone (a payload may be megabytes), so that `act`
        // may ack through `held` while it reads it.
        let message = held.messages()[i].clone();
        let action = act(&mut held, &message, letter).await;
        outcomes.push(Outcome {
            letter: letter.clone(),
            action,
        });
    }
    held.release().await;
    Ok(Report {
        dry_run: options.dry_run,
        read: letters.len(),
        limit: options.limit,
        outcomes,
        not_found,
    })
}

impl<A: Action> fmt::Display for Report<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}, {} not found ({} {} read)",
            A::summary(&self.outcomes, self.dry_run),
            self.not_found.len(),
            self.read,
            if self.read == 1 { "letter" } else { "letters" }
        )?;
        if self.read >= self.limit {
            writeln!(
                f,
                "only the first {} letters were read (raise --limit)",
                self.limit
            )?;
        }
        for outcome in &self.outcomes {
            let letter = &outcome.letter;
            let uuid = letter.uuid.as_deref().unwrap_or("no readable uuid");
            writeln!(
                f,
                "{} ({}, saga {uuid}): {}",
                letter.message_id,
                letter.reason,
                outcome.action.describe()
            )?;
        }
        for id in &self.not_found {
            writeln!(f, "{id}: not found among the letters read")?;
        }
        Ok(())
    }
}
