//! `wice demo`: a three-node mesh across NAT routers on this machine, built with the lab crate ([`wice_lab`]).
//!
//! Node a sits on a public site; with `nft` installed node b is behind an endpoint-independent
//! NAT, and node c behind a symmetric NAT when coturn's `turnserver` is installed (b ↔ c then
//! needs the TURN relay), else behind a second public site. Each node runs this same binary's
//! `wice up` in its own namespace, against a `wice signal` server (and coturn for STUN and TURN)
//! in the lab's internet namespace. The demo waits until every pair is connected, prints how
//! each pair connected, how long it took and the RTT through the tunnel (UDP probes of its own,
//! [`crate::demo_rtt`], so `ping` is not needed), and tears the lab
//! down: on success, on error, and on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wice_lab::{self as lab, Lab, LabOptions, NatKind, netns};

/// What `wice demo` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    /// How long to wait for every pair to connect.
    pub(crate) timeout: Duration,
    /// `--log-level` for the nodes (their logs are shown when something fails).
    pub(crate) log_level: String,
}

/// Runs the demo; the error is the message to print.
pub(crate) fn run(options: &DemoOptions) -> Result<(), String> {
    if !netns::is_root() {
        return Err(
            "demo needs root: it creates network namespaces, veth pairs and TUN \
                    devices; try: sudo wice demo"
                .into(),
        );
    }
    let wice = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let interrupt = Arc::new(AtomicBool::new(false));
    watch_signals(interrupt.clone())?;

    let mut lab_options = LabOptions::new(wice);
    lab_options.prefix = "wd";
    lab_options.log_level = options.log_level.clone();
    lab_options.interrupt = Some(interrupt.clone());
    let mut lab = Lab::new(lab_options).map_err(|e| e.to_string())?;
    let result = demo(&mut lab, options, &interrupt);
    if let Err(message) = &result
        && message != "interrupted"
    {
        eprintln!("{}", lab.logs(15));
    }
    drop(lab);
    match result {
        Err(message) if message == "interrupted" => {
            eprintln!("demo: interrupted; lab torn down");
            Err("interrupted".into())
        }
        other => {
            if other.is_ok() {
                println!("lab torn down");
            }
            other
        }
    }
}

fn demo(lab: &mut Lab, options: &DemoOptions, interrupt: &AtomicBool) -> Result<(), String> {
    let nft = netns::have("nft");
    let turn = netns::have("turnserver");
    let e = |e: lab::LabError| e.to_string();
    lab.start_signal().map_err(e)?;
    if turn {
        lab.start_turn().map_err(e)?;
    } else {
        println!("coturn's turnserver is not installed: no STUN or TURN, so no symmetric NAT");
    }
    if !nft {
        println!("nft (nftables) is not installed: every site is public");
    }
    let layout = match (nft, turn) {
        (true, true) => [
            NatKind::Public,
            NatKind::EndpointIndependent,
            NatKind::Symmetric,
        ],
        (true, false) => [
            NatKind::Public,
            NatKind::Public,
            NatKind::EndpointIndependent,
        ],
        (false, _) => [NatKind::Public; 3],
    };
    let mut nodes = Vec::new();
    for (kind, label) in layout.iter().zip(["a", "b", "c"]) {
        let site = lab.add_site(*kind).map_err(e)?;
        nodes.push(lab.add_node(site, label).map_err(e)?);
    }
    println!(
        "lab: internet namespace with wice signal on {}:{}{}",
        lab::PUBLIC_ADDR,
        lab::SIGNAL_PORT,
        if turn {
            format!(
                " and coturn (STUN/TURN) on {}:{}",
                lab::PUBLIC_ADDR,
                lab::TURN_PORT
            )
        } else {
            String::new()
        }
    );
    for &i in &nodes {
        let node = lab.node(i);
        let site = lab.site(node.site);
        let behind = match site.nat {
            NatKind::Public => "public address".to_owned(),
            kind => format!("{kind} NAT, public address {}", site.wan),
        };
        println!(
            "node {}: {} ({behind}), tunnel {}",
            node.label, node.underlay, node.overlay
        );
    }

    let since = Instant::now();
    lab.start_nodes(&nodes).map_err(e)?;
    println!(
        "started {} wice daemons; waiting for every pair to connect (up to {} s)",
        nodes.len(),
        options.timeout.as_secs()
    );
    let reports = lab
        .wait_connected(&Lab::pairs(&nodes), since, options.timeout)
        .map_err(|err| match err.0.as_str() {
            "interrupted" => err.0,
            _ => format!("{err}\n(the node logs follow)"),
        })?;

    println!();
    println!("{:<8} {:<14} {:>10} {:>12}", "pair", "path", "setup", "RTT");
    for r in &reports {
        if interrupt.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        let (a, b) = (lab.node(r.a), lab.node(r.b));
        let rtt = crate::demo_rtt::udp_rtt(&a.ns, &b.ns, b.overlay_ip(), 5).map_or_else(
            || "no reply".to_owned(),
            |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
        );
        println!(
            "{:<8} {:<14} {:>8.2} s {:>12}",
            format!("{} ↔ {}", a.label, b.label),
            r.path(),
            r.setup.as_secs_f64(),
            rtt
        );
    }
    println!();
    println!("(setup: from starting the daemons until both sides report the pair connected)");
    Ok(())
}

/// Sets `flag` on SIGINT or SIGTERM instead of dying, so the lab is torn down.
fn watch_signals(flag: Arc<AtomicBool>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                let _ = ready_tx.send(false);
                return;
            };
            let _ = ready_tx.send(true);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::Relaxed);
        });
    });
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(true) => Ok(()),
        _ => Err("cannot install signal handlers".into()),
    }
}
