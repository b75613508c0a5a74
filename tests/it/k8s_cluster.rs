//! A real Kubernetes control plane for the tests: etcd and kube-apiserver (built from their
//! Go modules by `scripts/k8s-test-tools`, cached outside the repository) on 127.0.0.1, with
//! a serving certificate, a service-account signing key and an admin token made here, RBAC
//! on, and the wice CRD and namespace applied. Killed by their own PID when dropped (and,
//! should the test process die, by the kernel: `PR_SET_PDEATHSIG`).
#![cfg_attr(not(feature = "kubernetes"), allow(dead_code))]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use wice::signaling::{BackendUrl, KubernetesUrl};

use crate::harness::TempDir;

/// The namespace the manifests create and the tests use.
pub(crate) const NAMESPACE: &str = "wice";
const ADMIN_TOKEN: &str = "wice-test-admin-token";

/// The directory holding `kube-apiserver` and `etcd`, building them first if needed; `None`
/// (and the test says it skips) where there is no Go toolchain to build them with.
pub(crate) fn k8s_tools_or_skip(test: &str) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("WICE_K8S_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-test-tools");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/k8s-test-tools");
    match output.status.code() {
        Some(0) => {}
        Some(3) => {
            crate::harness::skip(
                test,
                "no Go toolchain to build kube-apiserver and etcd (scripts/k8s-test-tools)",
            );
            return None;
        }
        _ => panic!("scripts/k8s-test-tools failed: {output:?}"),
    }
    let dir = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .expect("the tools directory")
        .trim()
        .to_owned();
    Some(PathBuf::from(dir))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Spawns `command`, killed with the test process should it die first.
fn spawn_tied(command: &mut Command) -> Child {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().expect("spawn")
}

/// etcd and kube-apiserver on loopback.
pub(crate) struct K8sCluster {
    tools: PathBuf,
    dir: TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    etcd_port: u16,
    port: u16,
    /// The admin's kubeconfig (`system:masters`).
    pub(crate) kubeconfig: PathBuf,
}

impl K8sCluster {
    /// Starts etcd and kube-apiserver, waits until the API server is ready, and applies the
    /// namespace and the CRD from `deploy/kubernetes/`.
    pub(crate) fn start(tools: &Path) -> Self {
        let dir = TempDir::new();
        let certificate = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("serving certificate");
        std::fs::write(dir.path("serving.crt"), certificate.cert.pem()).expect("write");
        std::fs::write(
            dir.path("serving.key"),
            certificate.signing_key.serialize_pem(),
        )
        .expect("write");
        let service_account_key = rcgen::KeyPair::generate().expect("service account key");
        std::fs::write(dir.path("sa.key"), service_account_key.serialize_pem()).expect("write");
        // kube-apiserver reads verifying keys only as public keys, not from a PKCS#8 file.
        std::fs::write(dir.path("sa.pub"), service_account_key.public_key_pem()).expect("write");
        std::fs::write(
            dir.path("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
        )
        .expect("write");
        let port = free_port();
        let kubeconfig = dir.path("admin.kubeconfig");
        let mut cluster = Self {
            tools: tools.to_owned(),
            etcd: None,
            apiserver: None,
            etcd_port: free_port(),
            port,
            kubeconfig,
            dir,
        };
        cluster.write_kubeconfig(&cluster.kubeconfig.clone(), ADMIN_TOKEN);
        cluster.spawn_etcd();
        cluster.spawn_apiserver();
        cluster.wait_ready();
        let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
        for file in ["00-namespace.yaml", "10-crd.yaml"] {
            cluster.kubectl_ok(&["apply", "-f", manifests.join(file).to_str().expect("utf8")]);
        }
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/envelopes.signaling.wice.dev",
        ]);
        // Established is not yet served everywhere: wait until a list answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster
            .kubectl(&["get", "envelopes", "-n", NAMESPACE])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "the envelope CRD was never served"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    fn spawn_etcd(&mut self) {
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(self.dir.path("etcd.log")).expect("log");
        self.etcd = Some(spawn_tied(
            Command::new(self.tools.join("etcd"))
                .args(["--name", "test", "--data-dir"])
                .arg(self.dir.path("etcd"))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("test={peer}")])
                .args(["--log-level", "warn", "--quota-backend-bytes", "268435456"])
                .stdout(Stdio::null())
                .stderr(log),
        ));
    }

    fn spawn_apiserver(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path("apiserver.log"))
            .expect("log");
        let path = |name: &str| self.dir.path(name).to_str().expect("utf8").to_owned();
        self.apiserver = Some(spawn_tied(
            Command::new(self.tools.join("kube-apiserver"))
                .args([
                    "--etcd-servers",
                    &format!("http://127.0.0.1:{}", self.etcd_port),
                ])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--advertise-address",
                    "127.0.0.1",
                ])
                .args(["--secure-port", &self.port.to_string()])
                .args(["--tls-cert-file", &path("serving.crt")])
                .args(["--tls-private-key-file", &path("serving.key")])
                .args(["--token-auth-file", &path("tokens.csv")])
                .args(["--authorization-mode", "RBAC"])
                .args(["--service-account-issuer", "https://kubernetes.default.svc"])
                .args(["--service-account-key-file", &path("sa.pub")])
                .args(["--service-account-signing-key-file", &path("sa.key")])
                .args(["--service-cluster-ip-range", "10.96.0.0/24"])
                .args(["--cert-dir", &path("certs")])
                .args(["--endpoint-reconciler-type", "none"])
                .args(["--enable-priority-and-fairness=false", "--profiling=false"])
                .args(["--v", "1"])
                .stdout(Stdio::null())
                .stderr(log),
        ));
    }

    /// Waits until the API server answers `/readyz`.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver never became ready; its log:\n{}",
                self.log_tail("apiserver.log")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the API server (SIGKILL) and starts it again on the same port and etcd.
    /// The PIDs of kube-apiserver and etcd, while they run (for the load bench's RSS).
    #[allow(
        dead_code,
        reason = "benches/k8s_load.rs includes this file and uses it"
    )]
    pub(crate) fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.apiserver.as_ref().map(Child::id),
            self.etcd.as_ref().map(Child::id),
        )
    }

    pub(crate) fn restart_apiserver(&mut self, down_for: Duration) {
        self.stop_apiserver();
        std::thread::sleep(down_for);
        self.spawn_apiserver();
        self.wait_ready();
    }

    pub(crate) fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a kubeconfig for this API server that authenticates with `token`.
    pub(crate) fn write_kubeconfig(&self, path: &Path, token: &str) {
        let ca = std::fs::read(self.dir.path("serving.crt")).expect("certificate");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: {NAMESPACE}\ncurrent-context: test\n",
            self.port,
            base64::engine::general_purpose::STANDARD.encode(ca),
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// A path in this cluster's scratch directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// The backend URL for `kubeconfig` (the admin's when `None`).
    pub(crate) fn url(&self, kubeconfig: Option<&Path>) -> BackendUrl {
        BackendUrl::Kubernetes(KubernetesUrl {
            namespace: Some(NAMESPACE.to_owned()),
            kubeconfig: Some(kubeconfig.unwrap_or(&self.kubeconfig).to_owned()),
        })
    }

    /// `kubectl` as the admin.
    pub(crate) fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// `kubectl` as the admin, which must succeed; its standard output.
    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for K8sCluster {
    fn drop(&mut self) {
        self.stop_apiserver();
        if let Some(mut child) = self.etcd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
