//! The Kubernetes backend against a real kube-apiserver and etcd on loopback (`k8s_cluster`;
//! the conformance scenarios run in `conformance::over_kubernetes`): a watch that resumes
//! after the API server restarts, the manifests in `deploy/kubernetes/` applied, the
//! ServiceAccount's RBAC, the sender's garbage collection and hostile objects. No root.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand_core::OsRng;
use tokio::sync::mpsc;
use wice::signaling::k8s_object::{RECIPIENT_LABEL, SENDER_LABEL, envelope_object, key_label};
use wice::signaling::{Backend, Delivery, Inbox, K8sBackend, K8sOptions};
use wice_core::keys::PrivateKey;
use wice_core::signaling::{Envelope, Sealer};

use crate::conformance::quick_k8s;
use crate::k8s_cluster::{K8sCluster, NAMESPACE, k8s_tools_or_skip};
use crate::signaling::{QUIET, WAIT, description};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:wice:wice";

fn seal(from: &PrivateKey, to: &PrivateKey, id: u64) -> Envelope {
    Sealer::new(from)
        .seal(
            &to.public_key(),
            &description(id, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal")
}

/// A backend subscribed to `key`, and the inbox it delivers into.
async fn subscribed(
    url: &wice::signaling::BackendUrl,
    options: K8sOptions,
    key: &PrivateKey,
) -> (Arc<K8sBackend>, mpsc::Receiver<Delivery>) {
    let backend = Arc::new(K8sBackend::new(url, options).expect("backend"));
    let (inbox, rx) = Inbox::channel(16);
    backend
        .subscribe(key.clone(), inbox)
        .await
        .expect("subscribe");
    (backend, rx)
}

async fn next(rx: &mut mpsc::Receiver<Delivery>, within: Duration) -> Envelope {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("an envelope in time")
        .expect("inbox open")
        .envelope
}

fn manifests() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .to_str()
        .expect("utf8")
        .to_owned()
}

/// The API server is killed and started again while a node watches its mailbox; what is
/// published before the node's watch is back still reaches it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_the_api_server_restarts_and_delivers_what_came_meanwhile() {
    let Some(tools) = k8s_tools_or_skip("k8s::a_watch_resumes_after_the_api_server_restarts")
    else {
        return;
    };
    let mut cluster = K8sCluster::start(&tools);
    let url = cluster.url(None);
    let (alice, bob) = (PrivateKey::generate(), PrivateKey::generate());
    // Bob's watch waits 3 s between attempts, so the publish below lands while it is away.
    let slow = K8sOptions {
        backoff_initial: Duration::from_secs(3),
        backoff_max: Duration::from_secs(3),
        ..quick_k8s()
    };
    let (bob_backend, mut bob_rx) = subscribed(&url, slow, &bob).await;
    let (alice_backend, _alice_rx) = subscribed(&url, quick_k8s(), &alice).await;

    let before = seal(&alice, &bob, 1);
    alice_backend
        .publish(vec![before.clone()])
        .await
        .expect("publish");
    assert_eq!(next(&mut bob_rx, WAIT).await.nonce, before.nonce);

    cluster.restart_apiserver(Duration::from_millis(500));
    let meanwhile = seal(&alice, &bob, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = alice_backend.publish(vec![meanwhile.clone()]).await {
        assert!(
            Instant::now() < deadline,
            "publish after the restart: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = next(&mut bob_rx, Duration::from_secs(30)).await;
    assert_eq!(
        got.nonce, meanwhile.nonce,
        "the envelope published meanwhile"
    );
    tokio::time::sleep(QUIET).await;
    assert!(bob_rx.try_recv().is_err(), "each envelope once");
    let counters = bob_backend.counters();
    eprintln!("bob's counters after the restart: {counters:?}");
    assert!(
        counters.watches_resumed + counters.relists >= 1,
        "the watch was resumed: {counters:?}"
    );

    // And the resumed watch keeps delivering.
    let after = seal(&alice, &bob, 3);
    alice_backend
        .publish(vec![after.clone()])
        .await
        .expect("publish");
    assert_eq!(next(&mut bob_rx, WAIT).await.nonce, after.nonce);
}

/// `deploy/kubernetes/` applies to a real API server (a server-side dry run, then for real),
/// and the ServiceAccount may do exactly what wice needs: envelopes in its namespace, not
/// Secrets, Pods, other namespaces or RBAC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_apply_and_the_service_account_has_least_privilege() {
    let Some(tools) = k8s_tools_or_skip("k8s::the_manifests_apply") else {
        return;
    };
    let cluster = K8sCluster::start(&tools);
    let dir = manifests();
    // The namespace first: a server-side dry run creates nothing, so without it every
    // namespaced object would be refused.
    cluster.kubectl_ok(&["apply", "-f", &format!("{dir}/00-namespace.yaml")]);
    cluster.kubectl_ok(&["apply", "--dry-run=server", "-f", &dir]);
    let applied = cluster.kubectl_ok(&["apply", "-f", &dir]);
    for object in [
        "serviceaccount/wice",
        "role.rbac.authorization.k8s.io/wice-signaling",
        "rolebinding.rbac.authorization.k8s.io/wice-signaling",
        "configmap/wice-config",
        "daemonset.apps/wice",
    ] {
        assert!(applied.contains(object), "{object} in:\n{applied}");
    }
    let pod_spec = cluster.kubectl_ok(&[
        "get",
        "daemonset",
        "wice",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.template.spec.hostNetwork} {.spec.template.spec.serviceAccountName} {.spec.template.spec.containers[0].securityContext.capabilities.add}",
    ]);
    assert_eq!(pod_spec, "true wice [\"NET_ADMIN\"]");

    let can = |args: &[&str]| -> bool {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--as", SERVICE_ACCOUNT]);
        let output = cluster.kubectl(&full);
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        answer == "yes"
    };
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        assert!(
            can(&[verb, "envelopes.signaling.wice.dev", "-n", NAMESPACE]),
            "the node may {verb} envelopes"
        );
    }
    for denied in [
        &["get", "secrets", "-n", NAMESPACE][..],
        &["list", "secrets", "-n", NAMESPACE],
        &["watch", "secrets", "-n", NAMESPACE],
        &["list", "secrets", "--all-namespaces"],
        &["get", "pods", "-n", NAMESPACE],
        &["create", "pods", "-n", NAMESPACE],
        &["list", "envelopes.signaling.wice.dev", "-n", "default"],
        &[
            "deletecollection",
            "envelopes.signaling.wice.dev",
            "-n",
            NAMESPACE,
        ],
        &["update", "roles", "-n", NAMESPACE],
        &["create", "rolebindings", "-n", NAMESPACE],
    ] {
        assert!(!can(denied), "the node may not {denied:?}");
    }
}

/// Two nodes on the ServiceAccount's own token (not the admin's): envelopes go through, the
/// sender deletes its expired objects, and objects other writers put in a node's mailbox
/// that hold no envelope, or an envelope for someone else, are dropped and counted. The
/// token cannot read Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_the_service_account_token_exchange_collect_and_drop_bad_objects() {
    let Some(tools) = k8s_tools_or_skip("k8s::nodes_on_the_service_account_token") else {
        return;
    };
    let cluster = K8sCluster::start(&tools);
    let dir = manifests();
    for file in ["00-namespace.yaml", "20-rbac.yaml"] {
        cluster.kubectl_ok(&["apply", "-f", &format!("{dir}/{file}")]);
    }
    let token = cluster.kubectl_ok(&["create", "token", "wice", "-n", NAMESPACE]);
    let node_kubeconfig = cluster.path("node.kubeconfig");
    cluster.write_kubeconfig(&node_kubeconfig, token.trim());
    let as_node = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&node_kubeconfig)
        .args(["get", "secrets", "-n", NAMESPACE])
        .output()
        .expect("kubectl");
    assert!(
        !as_node.status.success(),
        "the node's token reads no Secrets"
    );
    assert!(String::from_utf8_lossy(&as_node.stderr).contains("forbidden"));

    let url = cluster.url(Some(&node_kubeconfig));
    let short_lived = K8sOptions {
        ttl: Duration::from_secs(1),
        sweep_interval: Duration::from_millis(500),
        ..quick_k8s()
    };
    let (alice, bob) = (PrivateKey::generate(), PrivateKey::generate());
    let (bob_backend, mut bob_rx) = subscribed(&url, quick_k8s(), &bob).await;
    let (alice_backend, _alice_rx) = subscribed(&url, short_lived, &alice).await;
    let hello = seal(&alice, &bob, 1);
    alice_backend
        .publish(vec![hello.clone()])
        .await
        .expect("publish with the node's token");
    assert_eq!(next(&mut bob_rx, WAIT).await.nonce, hello.nonce);

    // Alice's object expires after 1 s, and she deletes it herself.
    let alices = format!("{SENDER_LABEL}={}", key_label(&alice.public_key()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = cluster.kubectl_ok(&[
            "get",
            "envelopes",
            "-n",
            NAMESPACE,
            "-l",
            &alices,
            "-o",
            "name",
        ]);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's expired object stayed: {left}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(alice_backend.counters().expired_deleted >= 1);

    // Another writer puts junk and someone else's envelope into Bob's mailbox.
    let carol = PrivateKey::generate();
    let mut misaddressed = envelope_object(&seal(&alice, &carol, 2), u64::MAX >> 1, None);
    misaddressed["metadata"]["name"] = "misaddressed".into();
    misaddressed["metadata"]["labels"][RECIPIENT_LABEL] = key_label(&bob.public_key()).into();
    let mut junk = misaddressed.clone();
    junk["metadata"]["name"] = "junk".into();
    junk["spec"]["envelope"] = "bm90IGFuIGVudmVsb3Bl".into();
    for (name, object) in [("junk", &junk), ("misaddressed", &misaddressed)] {
        let file = cluster.path(&format!("{name}.json"));
        std::fs::write(&file, object.to_string()).expect("write");
        cluster.kubectl_ok(&["apply", "-n", NAMESPACE, "-f", file.to_str().expect("utf8")]);
    }
    let deadline = Instant::now() + WAIT;
    while bob_backend.counters().malformed_objects + bob_backend.counters().misaddressed < 2 {
        assert!(Instant::now() < deadline, "{:?}", bob_backend.counters());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counters = bob_backend.counters();
    assert_eq!((counters.malformed_objects, counters.misaddressed), (1, 1));
    assert!(bob_rx.try_recv().is_err(), "nothing bad was delivered");
}
