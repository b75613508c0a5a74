//! Load benchmark of the Kubernetes signaling backend against a real kube-apiserver + etcd on
//! loopback (the test cluster of `tests/it/k8s_cluster.rs`): N nodes, each with its own
//! client (its own HTTP/2 connection) watching its own mailbox through a label selector, and
//! one publisher that sends every node an envelope per round.
//!
//! Run as root or not: `cargo bench --bench k8s_load` (default 300 watchers) or
//! `-- 100 300` for several sizes. Needs the binaries of `scripts/k8s-test-tools` (built on
//! first use with Go). Not run in CI.
//!
//! For each size it reports:
//! 1. time to subscribe all N (each a list for the starting resourceVersion, then a watch);
//! 2. memory: RSS of kube-apiserver and of etcd after the watches minus before, over N;
//! 3. fan-out: ROUNDS rounds, each one `publish` of N envelopes (one per node, overwriting the
//!    previous round's object of the same (sender, recipient)); envelopes delivered per second
//!    over the whole run, and per-envelope latency from the publish call to the watcher's
//!    inbox (p50/p99; the send time rides in the envelope's nonce).
//!
//! Client, API server and etcd share the machine's cores, so the figures are a floor.

// The test harness and cluster, shared with `tests/it`; most of the harness is unused here.
#[path = "../tests/it/harness.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod harness;
#[path = "../tests/it/k8s_cluster.rs"]
#[allow(dead_code, unreachable_pub, clippy::duplicated_attributes)]
mod k8s_cluster;

#[path = "support/rss.rs"]
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
mod rss;

#[cfg(feature = "kubernetes")]
fn main() {
    load::main();
}

#[cfg(not(feature = "kubernetes"))]
fn main() {
    eprintln!("k8s_load: built without the `kubernetes` feature; nothing to measure");
}

#[cfg(feature = "kubernetes")]
mod load {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use prost::bytes::Bytes;
    use wice::signaling::{Backend, Inbox, K8sBackend, K8sOptions};
    use wice_core::keys::PrivateKey;
    use wice_core::signaling::envelope::Envelope;

    use crate::k8s_cluster::{K8sCluster, k8s_tools_or_skip};

    const ROUNDS: usize = 5;
    const PAYLOAD: usize = 300;

    pub(super) fn main() {
        let sizes: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        let sizes = if sizes.is_empty() { vec![300] } else { sizes };
        let Some(tools) = k8s_tools_or_skip("k8s_load") else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        println!(
            "{:>9} | {:>13} | {:>16} | {:>13} | {:>13} | {:>8} | {:>8}",
            "watchers",
            "subscribe all",
            "apiserver KiB/w",
            "etcd KiB/w",
            "envelopes/s",
            "p50 ms",
            "p99 ms"
        );
        for n in sizes {
            let cluster = K8sCluster::start(&tools);
            let row = runtime.block_on(run(&cluster, n));
            println!(
                "{:>9} | {:>11.1} s | {:>16.1} | {:>13.1} | {:>13.0} | {:>8.2} | {:>8.2}",
                n, row.subscribe_s, row.apiserver_kib, row.etcd_kib, row.rate, row.p50, row.p99
            );
        }
    }

    struct Row {
        subscribe_s: f64,
        apiserver_kib: f64,
        etcd_kib: f64,
        rate: f64,
        p50: f64,
        p99: f64,
    }

    /// RSS of `pid` in KiB, NaN when the process is not running.
    fn rss_kib(pid: Option<u32>) -> f64 {
        pid.map_or(f64::NAN, |pid| crate::rss::rss_kib(pid) as f64)
    }

    fn options() -> K8sOptions {
        K8sOptions {
            request_timeout: Duration::from_secs(60),
            ..K8sOptions::default()
        }
    }

    async fn run(cluster: &K8sCluster, n: usize) -> Row {
        let (apiserver, etcd) = cluster.pids();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (apiserver_before, etcd_before) = (rss_kib(apiserver), rss_kib(etcd));
        let epoch = Instant::now();
        let latencies_us = Arc::new(Mutex::new(Vec::with_capacity(n * ROUNDS)));

        let started = Instant::now();
        let mut watchers = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let backend =
                Arc::new(K8sBackend::new(&cluster.url(None), options()).expect("backend"));
            let key = PrivateKey::generate();
            let (inbox, mut deliveries) = Inbox::channel(64);
            let latencies_us = latencies_us.clone();
            tokio::spawn(async move {
                while let Some(delivery) = deliveries.recv().await {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&delivery.envelope.nonce[..8]);
                    let micros = epoch.elapsed().as_micros() as u64 - u64::from_le_bytes(sent);
                    latencies_us
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(micros as u32);
                }
            });
            keys.push(key.public_key());
            watchers.push((backend, key, inbox));
        }
        // Subscribe in parallel, as nodes of a cluster would start.
        let mut subscriptions = tokio::task::JoinSet::new();
        for (backend, key, inbox) in &watchers {
            let (backend, key, inbox) = (backend.clone(), key.clone(), inbox.clone());
            subscriptions.spawn(async move { backend.subscribe(key, inbox).await });
        }
        while let Some(result) = subscriptions.join_next().await {
            result.expect("subscribe task").expect("subscribe");
        }
        let subscribe_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let apiserver_kib = (rss_kib(apiserver) - apiserver_before) / n as f64;
        let etcd_kib = (rss_kib(etcd) - etcd_before) / n as f64;

        let publisher = K8sBackend::new(&cluster.url(None), options()).expect("publisher");
        let publisher_key = PrivateKey::generate();
        let (publisher_inbox, _ignored) = Inbox::channel(1);
        publisher
            .subscribe(publisher_key.clone(), publisher_inbox)
            .await
            .expect("publisher subscribe");
        let sender = publisher_key.public_key();
        let run_started = Instant::now();
        for _ in 0..ROUNDS {
            let sent = (epoch.elapsed().as_micros() as u64).to_le_bytes();
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&sent);
            let batch = keys
                .iter()
                .map(|recipient| Envelope {
                    sender,
                    recipient: *recipient,
                    nonce,
                    ciphertext: Bytes::from(vec![0x5a; PAYLOAD]),
                })
                .collect();
            publisher.publish(batch).await.expect("publish");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = latencies_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            if got >= n * ROUNDS || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = run_started.elapsed().as_secs_f64();
        let mut latencies = latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        latencies.sort_unstable();
        if latencies.len() < n * ROUNDS {
            eprintln!(
                "k8s_load: {} of {} envelopes arrived within 60 s",
                latencies.len(),
                n * ROUNDS
            );
        }
        let percentile = |p: f64| {
            if latencies.is_empty() {
                return f64::NAN;
            }
            let index = ((latencies.len() - 1) as f64 * p).round() as usize;
            f64::from(latencies[index]) / 1000.0
        };
        for (backend, ..) in &watchers {
            let _ = backend.close().await;
        }
        let _ = publisher.close().await;
        Row {
            subscribe_s,
            apiserver_kib,
            etcd_kib,
            rate: latencies.len() as f64 / elapsed,
            p50: percentile(0.5),
            p99: percentile(0.99),
        }
    }
}
