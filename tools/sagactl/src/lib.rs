//! `sagactl`, the operator's command: look into sagas and dead letters, redrive or discard
//! them, change an item's stock, and sweep, on Google Cloud or on the emulators.
//!
//! ```text
//! cli       the arguments, the exit codes, and `run`: connect, run one command, report
//!    │
//! show      sagactl show UUID: the status view, each step's record and its message
//! stuck     sagactl stuck: unfinished sagas older than a cutoff, and where each stopped
//! letters   sagactl dead-letters: what waits on dead-letter-sub, read and put back
//! redrive   sagactl redrive: dead letters sent back where they came from, then acked
//! discard   sagactl discard: dead letters read and judged, taken off for good
//! stock     sagactl stock ITEM: an item's stock, and changes to it that no sale undoes
//! sweep     sagactl sweep: the janitor's sweep, run here and now
//!    │
//! acting    what redrive and discard share: hold the letters, act on those asked for, report
//! connect   where to connect (emulators or Google Cloud) and the clients, the workspace's own
//! format    times and durations for people
//! ```
//!
//! Each command is a function over the workspace's clients (`Store`, `Puller`, `Bus`,
//! `Clients`) that returns a report, readable as text (`Display`) and as JSON
//! (`Serialize`); the decisions in them are pure functions with their own tests. The binary is a thin `main` over
//! [`cli::run`].

pub mod acting;
pub mod cli;
pub mod connect;
pub mod discard;
pub mod format;
pub mod letters;
pub mod redrive;
pub mod show;
pub mod stock;
pub mod stuck;
pub mod sweep;
