//! Setup time: from starting two `wice up` daemons until the first ping through the tunnel is
//! answered, for two nodes on one LAN and for two nodes behind endpoint-independent NATs, in
//! the namespace lab (`wice_lab`) with `wice signal` and coturn. Root only.
//!
//! `sudo cargo bench --bench setup_time` (RUNS=10 by default; `cargo test --bench setup_time`
//! runs it on the dev profile). Each run builds a fresh lab (not
//! timed), then starts both daemons at once and pings a → b every 20 ms until a reply comes.

use std::time::{Duration, Instant};

use wice_lab::{Lab, LabOptions, NatKind, netns};

const WICE: &str = env!("CARGO_BIN_EXE_wice");

fn one_run(layout: &[Option<NatKind>]) -> Result<(Duration, String), String> {
    let mut lab = Lab::new(LabOptions::new(WICE)).map_err(|e| e.to_string())?;
    lab.start_signal().map_err(|e| e.to_string())?;
    lab.start_turn().map_err(|e| e.to_string())?;
    let mut site = 0;
    let mut nodes = Vec::new();
    for (n, kind) in layout.iter().enumerate() {
        if let Some(kind) = kind {
            site = lab.add_site(*kind).map_err(|e| e.to_string())?;
        }
        let label = ["a", "b"][n];
        nodes.push(lab.add_node(site, label).map_err(|e| e.to_string())?);
    }
    let (a, b) = (nodes[0], nodes[1]);
    let start = Instant::now();
    lab.start_nodes(&nodes).map_err(|e| e.to_string())?;
    let target = lab.node(b).overlay_ip();
    let deadline = start + Duration::from_secs(30);
    while Instant::now() < deadline {
        if lab
            .node(a)
            .ns
            .first_reply(target, deadline.saturating_duration_since(Instant::now()))
            .is_some()
        {
            let elapsed = start.elapsed();
            let path = lab
                .peer_status(a, b)
                .map(|p| p["path"].as_str().unwrap_or("-").to_owned())
                .unwrap_or_default();
            return Ok((elapsed, path));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no reply within 30 s\n{}", lab.logs(20)))
}

fn main() {
    if !netns::is_root() {
        eprintln!("setup_time: skipped: needs root (network namespaces, TUN devices)");
        return;
    }
    if !netns::have("nft") || !netns::have("turnserver") {
        eprintln!("setup_time: skipped: needs nft (nftables) and turnserver (coturn)");
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    use NatKind::*;
    let cases: [(&str, &[Option<NatKind>]); 2] = [
        ("one LAN", &[Some(Public), None]),
        (
            "eim NAT ↔ eim NAT",
            &[Some(EndpointIndependent), Some(EndpointIndependent)],
        ),
    ];
    println!(
        "setup time: both daemons started → first ping answered through the tunnel, {runs} runs"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9}  paths",
        "case", "median", "min", "max"
    );
    for (name, layout) in cases {
        let mut times = Vec::new();
        let mut paths = Vec::new();
        for _ in 0..runs {
            match one_run(layout) {
                Ok((t, path)) => {
                    times.push(t);
                    if !paths.contains(&path) {
                        paths.push(path);
                    }
                }
                Err(e) => eprintln!("{name}: run failed: {e}"),
            }
        }
        if times.is_empty() {
            println!("{name:<20} no successful run");
            continue;
        }
        times.sort();
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let median = if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2
        };
        println!(
            "{name:<20} {:>9} {:>9} {:>9}  {} ({} of {runs} ok)",
            ms(median),
            ms(times[0]),
            ms(times[times.len() - 1]),
            paths.join(", "),
            times.len()
        );
    }
}
