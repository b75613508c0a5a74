//! Prometheus metrics of `wice up` and `wice signal`: the exposition passes
//! `promtool check metrics`, and a real Prometheus (Debian's `prometheus`) scrapes it.
//! Everything listens on loopback (the node's inside its namespace).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// `GET path` on `address`, from inside `ns` when given: the body of a 200 answer.
fn http_get(ns: Option<&Netns>, address: SocketAddr, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let get = move || -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    match ns {
        Some(ns) => ns.within(get).join().ok().flatten(),
        None => get(),
    }
}

/// Polls `GET path` until it answers 200 and `done(body)`, for up to `timeout`.
fn poll(
    ns: Option<&Netns>,
    address: SocketAddr,
    path: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(body) = http_get(ns, address, path)
            && done(&body)
        {
            return Some(body);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// `promtool check metrics` on `text`: its complaints, empty when it is happy.
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("promtool ({}): {said}", out.status)
    }
}

fn have_prometheus(test: &str) -> bool {
    let have = wice_lab::netns::have("promtool") && wice_lab::netns::have("prometheus");
    if !have {
        skip(
            test,
            "promtool/prometheus are not installed (Debian package prometheus)",
        );
    }
    have
}

/// Starts a real Prometheus (in `ns` when given) scraping `target` every second, and returns
/// the value of `query` once Prometheus answers it with a sample.
fn scraped_by_prometheus(
    ns: Option<&mut Netns>,
    dir: &TempDir,
    target: SocketAddr,
    web: SocketAddr,
    query: &str,
) -> Option<String> {
    let config = dir.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: wice\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .expect("prometheus config");
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path("tsdb").display()),
        format!("--web.listen-address={web}"),
        "--log.level=warn".to_owned(),
    ];
    let log = std::fs::File::create(dir.path("prometheus.log")).expect("log");
    let path = format!("/api/v1/query?query={query}");
    let has_sample = |body: &str| body.contains("\"value\":[");
    match ns {
        Some(ns) => {
            let mut command = ns.command("prometheus");
            command.args(&args).stdout(Stdio::null()).stderr(log);
            ns.spawn(command);
            poll(Some(ns), web, &path, Duration::from_secs(40), has_sample)
        }
        None => {
            let mut child = Command::new("prometheus")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("prometheus");
            let answer = poll(None, web, &path, Duration::from_secs(40), has_sample);
            let _ = child.kill();
            let _ = child.wait();
            answer
        }
    }
}

/// A loopback port free right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn wice_signal_metrics_pass_promtool_and_prometheus_scrapes_them() {
    let test = "wice_signal_metrics_pass_promtool_and_prometheus_scrapes_them";
    if !have_prometheus(test) {
        return;
    }
    let dir = TempDir::new();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut server = Command::new(WICE)
        .args(["signal", "--listen", "127.0.0.1:0", "--metrics-listen"])
        .arg(metrics.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wice signal");
    let body = poll(None, metrics, "/metrics", Duration::from_secs(10), |_| true);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let scraped = scraped_by_prometheus(None, &dir, metrics, web, "wice_signal_connections");
    let _ = server.kill();
    let _ = server.wait();

    let body = body.expect("wice signal serves /metrics");
    assert_eq!(promtool(&body), "", "{body}");
    assert!(body.contains("wice_build_info{version=\""), "{body}");
    assert!(
        body.contains("wice_signal_refused_total{reason=\"auth_failed\"} 0"),
        "{body}"
    );
    let scraped = scraped.unwrap_or_else(|| {
        panic!(
            "Prometheus never had a sample; its log:\n{}",
            std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default()
        )
    });
    assert!(scraped.contains("\"job\":\"wice\""), "{scraped}");
}

#[test]
fn wice_up_metrics_show_each_configured_peer_and_prometheus_scrapes_them() {
    let test = "wice_up_metrics_show_each_configured_peer_and_prometheus_scrapes_them";
    if !root_or_skip(test) || !have_prometheus(test) {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let StaticPair {
        keys_b,
        config_a,
        config_b,
        ..
    } = static_pair(&dir);
    let metrics: SocketAddr = "127.0.0.1:9586".parse().expect("addr");
    let config_a = config_a.replacen(
        "[interface]\n",
        &format!("[interface]\nmetrics_listen = \"{metrics}\"\n"),
        1,
    );
    let node_a = WiceNode::start(&mut a, &dir, "a", &config_a);
    let _node_b = WiceNode::start(&mut b, &dir, "b", &config_b);
    assert!(
        a.ping("10.77.0.2", 2, 5),
        "tunnel up; log:\n{}",
        node_a.log_text()
    );

    let body = poll(
        Some(&a),
        metrics,
        "/metrics",
        Duration::from_secs(5),
        |_| true,
    )
    .unwrap_or_else(|| panic!("no /metrics; log:\n{}", node_a.log_text()));
    assert_eq!(promtool(&body), "", "{body}");
    let peer = format!(
        "interface=\"{}\",public_key=\"{}\"",
        node_a.interface, keys_b.public
    );
    assert!(
        body.contains(&format!("wice_peer_state{{{peer},state=\"connected\"}} 1")),
        "{body}"
    );
    assert!(
        body.contains(&format!("wice_peer_path{{{peer},path=\"static\"}} 1")),
        "{body}"
    );
    let sent: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wice_peer_transmit_bytes_total{{{peer}}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no transmit bytes for the peer: {body}"));
    assert!(sent > 0.0, "{body}");
    let packets: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("wice_peer_transmit_packets_total{{{peer}}} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no transmit packets for the peer: {body}"));
    assert!((1.0..=sent).contains(&packets), "{body}");
    assert!(body.contains("wice_peer_rtt_seconds{"), "{body}");
    assert!(body.contains("wice_dropped_total{"), "{body}");

    let web: SocketAddr = "127.0.0.1:9590".parse().expect("addr");
    let query = "wice_peers_connected";
    let scraped =
        scraped_by_prometheus(Some(&mut a), &dir, metrics, web, query).unwrap_or_else(|| {
            panic!(
                "Prometheus never had a sample; its log:\n{}",
                std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default()
            )
        });
    assert!(scraped.contains("\"1\"]"), "one peer connected: {scraped}");
}
