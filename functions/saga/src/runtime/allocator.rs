//! The global allocator of every service process: mimalloc, instead of glibc's malloc.
//!
//! A service's work is many small, short-lived allocations (a push's envelope, its message,
//! the Firestore and Pub/Sub requests and answers); under load, glibc's `malloc` and `free`,
//! with its consolidation of freed chunks, were about a tenth of a service's CPU. The
//! figures, before and after, are in BENCHMARKS.md ("The services' allocator").
//!
//! Built without transparent huge pages (mimalloc's `no_thp`): with them, its first arena is
//! backed by 2 MiB pages as soon as it is touched, and an idle service held 8 MiB more,
//! against the budget of 15 MB of idle memory per service.
//!
//! Compiled with the `allocator` feature, which the five service crates enable, so that their
//! binaries, their images and the devstack all run on it.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
