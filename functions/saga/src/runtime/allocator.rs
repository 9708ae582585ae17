//! The global allocator of every service process: mimalloc, instead of glibc's malloc.
//!
//! A service's work is many small, short-lived allocations (a push's envelope, its message,
//! the Firestore and Pub/Sub requests and answers); under load, glibc's `malloc` and `free`,
//! with its consolidation of freed chunks, were about a tenth of the step services' CPU in a
//! profile. The figures, before and after, are in BENCHMARKS.md ("The services' allocator").
//!
//! Built with mimalloc's `no_thp`, which leaves out its `madvise(MADV_HUGEPAGE)` on the
//! memory it maps. Without that, on a host whose transparent huge pages are set to `madvise`
//! (as here), its first arena was backed by 2 MiB pages as soon as it was touched, and an
//! idle service held 8 MiB more, against the budget of 15 MB of idle memory per service. A
//! host set to `always` may still give it huge pages; nothing else changes.
//!
//! Compiled with the `allocator` feature, which the five service crates enable. Cargo
//! unifies features per build, so every binary built together with them links it too: the
//! devstack (which runs each service as `devstack serve`), the bench, `sagactl` and the
//! tests of a workspace build.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
