//! What one saga costs as a Google Cloud bill sees it, and that at list prices per million
//! sagas.
//!
//! Counted per run ([`Usage`]), from the services' own debug lines (see [`crate::logs`]:
//! documents read, documents written, messages published and their bytes), from the
//! GCP-like delivery's counters (pushes and their bytes, requests the Cloud Run front ends
//! passed on) and from `/proc` (the services' CPU time):
//!
//! - **Firestore** bills each document read, written and deleted. A `BatchGetDocuments`
//!   counts every document it asks for, found or not (the library logs what each read call
//!   asks for; its group reads merge duplicate names, so this can only overcount). The store
//!   has no delete operation, so deletes are none by construction.
//! - **Pub/Sub** bills throughput: the bytes of each publish, push or pull request, at
//!   least 1000 per request. Publishes are counted as one request per message (the steps
//!   publish each message at once; the frontend may put a few in one request, which only
//!   makes this an overcount) and each push is one request with one message. The bench's
//!   own pull subscriptions (outcomes, taps) are the bench's, not the deployment's, and the
//!   deliverer's pulls from the emulator stand in for Google's push, so neither is billed.
//! - **Cloud Run** bills requests (the frontend's `POST /order` and every push a front end
//!   passed on), and with request-based billing (`cpu_idle = true` in `terraform/run.tf`) the
//!   vCPU-seconds and GiB-seconds of an instance while it has a request in flight. The
//!   bench can measure the CPU the services used, not the emulated instances' active time,
//!   which at any load below saturation is larger (an instance waiting on Firestore is
//!   billed too, and each active stretch is rounded up to 100 ms). The compute lines below
//!   are therefore the least Cloud Run could charge: active time equal to the CPU used.
//!
//! Free tiers are not subtracted: these are the prices of the millionth saga, not of the
//! first.

use serde::Serialize;

/// List prices, USD. Read on 2026-12-01 through the stored copies of Google's pages that
/// the `search` tool returns; where those copies do not show a figure, it is marked
/// *assumed*, with where to check it.
pub mod price {
    /// Firestore (Standard edition), per 100,000 documents read, in a single region.
    /// *Assumed*: the stored copy of <https://cloud.google.com/firestore/pricing> (read
    /// 2026-12-01) lists prices "by location" in a table it does not include; $0.03 is the
    /// US regional figure of a third-party guide
    /// (<https://airbyte.com/data-engineering-resources/google-firestore-pricing>), and a
    /// 2018 copy of Google's page gave $0.06 for a multi-region. Check the location of
    /// `var.firestore_location` (default `var.region`, europe-west1) on Google's page.
    pub const FIRESTORE_READS_PER_100K: f64 = 0.03;
    /// Firestore, per 100,000 documents written. *Assumed*, as
    /// [`FIRESTORE_READS_PER_100K`]: $0.09 regional (third-party guide), $0.18 multi-region
    /// (2018 copy of Google's page).
    pub const FIRESTORE_WRITES_PER_100K: f64 = 0.09;
    /// Firestore, per 100,000 documents deleted. *Assumed*: no stored page shows the
    /// regional figure; $0.02 multi-region (2018 copy of Google's page), halved as reads and
    /// writes are. No saga deletes anything, so it does not change a total.
    pub const FIRESTORE_DELETES_PER_100K: f64 = 0.01;
    /// Pub/Sub throughput ("Message Delivery Basic"), per TiB, from
    /// <https://cloud.google.com/pubsub/pricing> (read 2026-12-01): "$40 per TiB", the first
    /// 10 GiB free.
    pub const PUBSUB_PER_TIB: f64 = 40.0;
    /// The same page: "A minimum of 1000 bytes per publish, push or pull request is
    /// assessed regardless of message size."
    pub const PUBSUB_MIN_BYTES_PER_REQUEST: u64 = 1000;
    /// Cloud Run, request-based billing, Tier 1 region, per vCPU-second, from
    /// <https://cloud.google.com/run/pricing> (read 2026-12-01): "$0.00002400 / vCPU-second
    /// beyond free tier" for services with CPU only allocated during request processing.
    pub const CLOUD_RUN_PER_VCPU_SECOND: f64 = 0.000_024;
    /// Cloud Run, request-based, Tier 1, per GiB-second. *Assumed*: the stored copy of
    /// Google's page is cut off before the memory column; $0.0000025 is given by two
    /// third-party pages (<https://cloudwebschool.com/tools/cloud-run-cost-calculator/>,
    /// <https://cloudchipr.com/blog/cloud-run-pricing>). Check on Google's page.
    pub const CLOUD_RUN_PER_GIB_SECOND: f64 = 0.000_002_5;
    /// Cloud Run, request-based, per million requests. *Assumed* as
    /// [`CLOUD_RUN_PER_GIB_SECOND`], from the same two third-party pages.
    pub const CLOUD_RUN_PER_MILLION_REQUESTS: f64 = 0.40;
    /// Memory of each service (`terraform/run.tf`: `memory = "512Mi"`), GiB.
    pub const CLOUD_RUN_MEMORY_GIB: f64 = 0.5;
}

/// Bytes in a TiB.
const TIB: f64 = 1_099_511_627_776.0;

/// What one run used, in the units a bill counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Sagas that ended in the run.
    pub sagas: usize,
    /// `POST /order` requests sent to the frontend.
    pub posts: usize,
    /// Firestore read calls.
    pub read_calls: u64,
    /// Documents those calls asked for.
    pub documents_read: u64,
    /// Documents written by successful commits.
    pub documents_written: u64,
    /// Documents deleted: none, the store cannot delete.
    pub documents_deleted: u64,
    /// Messages published.
    pub published: u64,
    /// Their data, bytes.
    pub published_bytes: u64,
    /// Σ max(1000, data bytes) over the publishes: what Pub/Sub bills for them if each went
    /// in a request of its own.
    pub published_billed_bytes: u64,
    /// The largest message data published, bytes.
    pub largest_message: u64,
    /// Push requests the GCP-like deliverer sent; `None` under the emulator's push, which
    /// the bench cannot count.
    pub pushes: Option<u64>,
    /// Their message data, bytes.
    pub push_bytes: Option<u64>,
    /// Requests the Cloud Run front ends passed on to the workers.
    pub forwarded: Option<u64>,
    /// CPU time of the five services during the run, seconds.
    pub service_cpu_s: Option<f64>,
}

/// A run's usage per saga.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerSaga {
    /// Documents read.
    pub documents_read: f64,
    /// Documents written.
    pub documents_written: f64,
    /// Documents deleted.
    pub documents_deleted: f64,
    /// Messages published.
    pub published: f64,
    /// Messages pushed.
    pub pushes: Option<f64>,
    /// Pub/Sub throughput billed, bytes (publishes and pushes, 1000 at least per request).
    pub pubsub_billed_bytes: Option<f64>,
    /// Cloud Run requests: `POST`s and forwarded pushes.
    pub cloud_run_requests: Option<f64>,
    /// CPU of the services, milliseconds.
    pub cpu_ms: Option<f64>,
}

/// `n` as a float: counts here are far below 2^52, where the conversion is exact.
fn f(n: u64) -> f64 {
    crate::stats::u64_as_f64(n)
}

impl Usage {
    /// Per saga; `None` when no saga ended.
    pub fn per_saga(&self) -> Option<PerSaga> {
        if self.sagas == 0 {
            return None;
        }
        let sagas = crate::stats::as_f64(self.sagas);
        let each = |n: u64| f(n) / sagas;
        let push_billed = match (self.pushes, self.push_bytes) {
            (Some(pushes), Some(bytes)) => Some(bytes.max(pushes * price::PUBSUB_MIN_BYTES_PER_REQUEST)),
            _ => None,
        };
        let posts = u64::try_from(self.posts).unwrap_or(u64::MAX);
        Some(PerSaga {
            documents_read: each(self.documents_read),
            documents_written: each(self.documents_written),
            documents_deleted: each(self.documents_deleted),
            published: each(self.published),
            pushes: self.pushes.map(each),
            pubsub_billed_bytes: push_billed.map(|push| each(self.published_billed_bytes + push)),
            cloud_run_requests: self.forwarded.map(|forwarded| each(forwarded + posts)),
            cpu_ms: self.service_cpu_s.map(|s| s * 1000.0 / sagas),
        })
    }
}

/// Pub/Sub bills a request of `bytes` data as at least 1000 bytes.
pub fn billed_bytes(bytes: u64) -> u64 {
    bytes.max(price::PUBSUB_MIN_BYTES_PER_REQUEST)
}

/// The cost of a million sagas, USD, line by line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bill {
    /// Firestore document reads.
    pub firestore_reads: f64,
    /// Firestore document writes.
    pub firestore_writes: f64,
    /// Firestore document deletes.
    pub firestore_deletes: f64,
    /// Pub/Sub throughput.
    pub pubsub: Option<f64>,
    /// Cloud Run requests.
    pub cloud_run_requests: Option<f64>,
    /// Cloud Run vCPU-seconds, counted as the CPU used (the least it can be).
    pub cloud_run_cpu: Option<f64>,
    /// Cloud Run GiB-seconds over the same time.
    pub cloud_run_memory: Option<f64>,
}

impl Bill {
    /// The sum of every line; `None` if a line could not be measured.
    pub fn total(&self) -> Option<f64> {
        Some(
            self.firestore_reads
                + self.firestore_writes
                + self.firestore_deletes
                + self.pubsub?
                + self.cloud_run_requests?
                + self.cloud_run_cpu?
                + self.cloud_run_memory?,
        )
    }
}

/// What a million sagas that each use `s` cost at list prices.
pub fn per_million(s: &PerSaga) -> Bill {
    const MILLION: f64 = 1_000_000.0;
    let per_100k = |n: f64, price: f64| n * MILLION / 100_000.0 * price;
    let cpu_s = s.cpu_ms.map(|ms| ms / 1000.0 * MILLION);
    Bill {
        firestore_reads: per_100k(s.documents_read, price::FIRESTORE_READS_PER_100K),
        firestore_writes: per_100k(s.documents_written, price::FIRESTORE_WRITES_PER_100K),
        firestore_deletes: per_100k(s.documents_deleted, price::FIRESTORE_DELETES_PER_100K),
        pubsub: s
            .pubsub_billed_bytes
            .map(|b| b * MILLION / TIB * price::PUBSUB_PER_TIB),
        cloud_run_requests: s
            .cloud_run_requests
            .map(|r| r * price::CLOUD_RUN_PER_MILLION_REQUESTS),
        cloud_run_cpu: cpu_s.map(|s| s * price::CLOUD_RUN_PER_VCPU_SECOND),
        cloud_run_memory: cpu_s.map(|s| s * price::CLOUD_RUN_MEMORY_GIB * price::CLOUD_RUN_PER_GIB_SECOND),
    }
}

#[cfg(test)]
// A failed unwrap in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn pubsub_bills_a_small_message_as_a_thousand_bytes_and_a_large_one_as_itself() {
        assert_eq!(billed_bytes(160), 1000);
        assert_eq!(billed_bytes(1000), 1000);
        assert_eq!(billed_bytes(4096), 4096);
    }

    #[test]
    fn usage_per_saga_divides_by_the_sagas_that_ended_and_counts_posts_as_requests() {
        let usage = Usage {
            sagas: 10,
            posts: 10,
            read_calls: 30,
            documents_read: 130,
            documents_written: 120,
            documents_deleted: 0,
            published: 40,
            published_bytes: 8000,
            published_billed_bytes: 40_000,
            largest_message: 250,
            pushes: Some(80),
            push_bytes: Some(16_000),
            forwarded: Some(80),
            service_cpu_s: Some(0.05),
        };
        let s = usage.per_saga().unwrap();
        assert!(close(s.documents_read, 13.0));
        assert!(close(s.documents_written, 12.0));
        assert!(close(s.published, 4.0));
        assert_eq!(s.pushes, Some(8.0));
        // 40 publishes and 80 pushes, each below 1000 bytes: 120 × 1000 bytes in 10 sagas.
        assert_eq!(s.pubsub_billed_bytes, Some(12_000.0));
        assert_eq!(s.cloud_run_requests, Some(9.0));
        assert!(close(s.cpu_ms.unwrap(), 5.0));
        assert_eq!(Usage::default().per_saga(), None, "no saga, no figure per saga");
    }

    #[test]
    fn a_million_sagas_cost_each_lines_count_times_its_list_price() {
        let s = PerSaga {
            documents_read: 13.0,
            documents_written: 12.0,
            documents_deleted: 0.0,
            published: 4.0,
            pushes: Some(8.0),
            pubsub_billed_bytes: Some(12_000.0),
            cloud_run_requests: Some(9.0),
            cpu_ms: Some(5.0),
        };
        let bill = per_million(&s);
        // 13 million reads at $0.03 per 100,000.
        assert!(close(
            bill.firestore_reads,
            130.0 * price::FIRESTORE_READS_PER_100K
        ));
        assert!(close(
            bill.firestore_writes,
            120.0 * price::FIRESTORE_WRITES_PER_100K
        ));
        assert!(close(bill.firestore_deletes, 0.0));
        // 12 GB of throughput at $40 per 2^40 bytes.
        assert!(close(bill.pubsub.unwrap(), 12e9 / TIB * 40.0));
        // 9 million requests.
        assert!(close(
            bill.cloud_run_requests.unwrap(),
            9.0 * price::CLOUD_RUN_PER_MILLION_REQUESTS
        ));
        // 5,000 vCPU-seconds, and half a GiB over the same seconds.
        assert!(close(
            bill.cloud_run_cpu.unwrap(),
            5000.0 * price::CLOUD_RUN_PER_VCPU_SECOND
        ));
        assert!(close(
            bill.cloud_run_memory.unwrap(),
            2500.0 * price::CLOUD_RUN_PER_GIB_SECOND
        ));
        let sum = bill.firestore_reads
            + bill.firestore_writes
            + bill.pubsub.unwrap()
            + bill.cloud_run_requests.unwrap()
            + bill.cloud_run_cpu.unwrap()
            + bill.cloud_run_memory.unwrap();
        assert!(close(bill.total().unwrap(), sum));
    }

    #[test]
    fn a_bill_without_the_delivery_counts_has_no_total() {
        let s = PerSaga {
            documents_read: 1.0,
            documents_written: 1.0,
            documents_deleted: 0.0,
            published: 1.0,
            pushes: None,
            pubsub_billed_bytes: None,
            cloud_run_requests: None,
            cpu_ms: Some(1.0),
        };
        assert_eq!(per_million(&s).total(), None);
    }
}
