//! The read-decide-commit rounds, written once: read without locks, decide, commit guarded by
//! preconditions on what was read; if a precondition failed, something changed concurrently,
//! so back off and read again. Used by the step engine, the janitor's compensation and the
//! frontend's idempotency keys; a batch's rounds ([`super::batch`]) use its back-off.

use rand::Rng as _;
use std::time::Duration;

/// Most read-decide-commit rounds one delivery tries before it gives up for now (and
/// Pub/Sub redelivers it later).
pub const MAX_ROUNDS: u32 = 8;

/// Every round lost its commit to a concurrent writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("documents kept changing concurrently for {MAX_ROUNDS} rounds")]
pub struct Contention;

/// Runs `round` (given its number, from 0) until it returns `Some`, at most [`MAX_ROUNDS`]
/// times, pausing between rounds. A round returns `None` when its commit's precondition
/// failed and nothing was written, so reading again is safe.
pub async fn until_committed<T, E, F, Fut>(mut round: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<Contention>,
{
    for n in 0..MAX_ROUNDS {
        if n > 0 {
            backoff(n).await;
        }
        if let Some(done) = round(n).await? {
            return Ok(done);
        }
        tracing::debug!(round = n, "commit conflict; reading again");
    }
    Err(Contention.into())
}

/// Pauses before another round, longer each round, with jitter so that competing deliveries
/// spread out. Also paces the rounds of a batch ([`super::batch`]) that lost its commit.
pub(super) async fn backoff(round: u32) {
    let base = 5u64 << round.min(6);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rounds_go_on_until_one_commits_and_give_up_after_the_last() {
        let mut seen = Vec::new();
        let done: Result<u32, Contention> = until_committed(|n| {
            seen.push(n);
            async move { Ok((n == 2).then_some(n)) }
        })
        .await;
        assert_eq!((done, seen), (Ok(2), vec![0, 1, 2]));

        let mut rounds = 0;
        let never: Result<(), Contention> = until_committed(|_| {
            rounds += 1;
            async { Ok(None) }
        })
        .await;
        assert_eq!((never, rounds), (Err(Contention), MAX_ROUNDS));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_rounds_at_once() {
        let mut rounds = 0;
        let failed: Result<(), Contention> = until_committed(|_| {
            rounds += 1;
            async { Err(Contention) }
        })
        .await;
        assert_eq!((failed, rounds), (Err(Contention), 1));
    }
}
