//! The `wice` binary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use wice::cli::{Cli, Command, LogFormat, read_stdin_key};
use wice::config::Config;
use wice::signaling::server::{ServerConfig, SignalingServer, TlsIdentity};
use wice::{control, daemon};
use wice_core::keys::{PrivateKey, PublicKey};

mod cli_extras;
#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "demo")]
mod demo_rtt;
mod signal_hooks;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "wice: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Genkey => print(&PrivateKey::generate().to_base64()),
        Command::Pubkey => {
            let text = read_stdin_key().map_err(|e| format!("reading stdin: {e}"))?;
            let key =
                PrivateKey::from_base64(&text).map_err(|e| format!("private key on stdin: {e}"))?;
            print(&key.public_key().to_base64())
        }
        Command::Addresses { key, prefixes } => {
            let key = PublicKey::from_base64(&key).map_err(|e| format!("KEY: {e}"))?;
            let prefixes = if prefixes.is_empty() {
                vec!["10.77.0.0/16".to_owned(), "fd77::/64".to_owned()]
            } else {
                prefixes
            };
            let mut lines = Vec::with_capacity(prefixes.len());
            for text in &prefixes {
                let prefix: ipnet::IpNet = text
                    .parse()
                    .map_err(|_| format!("{text}: not a prefix like 10.77.0.0/16"))?;
                let address = wice_core::addresses::derive_address(&key, &prefix)
                    .map_err(|e| e.to_string())?;
                lines.push(format!("{address}/{}", prefix.max_prefix_len()));
            }
            print(&lines.join("\n"))
        }
        Command::Up {
            config,
            check,
            log_level,
        } => {
            let config = Config::load(&config).map_err(|e| e.to_string())?;
            if check {
                return print(&format!(
                    "{}: ok\n{}",
                    config.path.display(),
                    config.check_summary()
                ));
            }
            init_logging(&log_level, log_format)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start runtime: {e}"))?;
            runtime
                .block_on(daemon::run(config))
                .map_err(|e| e.to_string())
        }
        Command::Wireguard {
            foreground,
            log_level,
            interface,
        } => {
            if !foreground {
                return wice::userspace::spawn_background(&interface, &log_level);
            }
            init_logging(&log_level, log_format)?;
            wice::userspace::run_foreground(&interface)
        }
        Command::Reload { node } => {
            let path = node.path();
            let summary = control::request_reload(&path).map_err(|e| e.to_string())?;
            print(&format!("reloaded: {summary}"))
        }
        Command::Status {
            node,
            json,
            watch,
            interval,
        } => {
            let path = node.path();
            if watch {
                return wice::status_watch::run(&path, interval);
            }
            let status = control::request_status(&path).map_err(|e| e.to_string())?;
            if json {
                print(&serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?)
            } else {
                print(status.render().trim_end())
            }
        }
        Command::Ping {
            peer,
            node,
            count,
            address,
            json,
        } => {
            let path = node.path();
            let report = wice::ping::run(
                &path,
                &peer,
                address,
                count.clamp(1, 1000),
                std::time::Duration::from_secs(2),
            )?;
            if json {
                print(&serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?)?;
            } else {
                print(wice::ping::render(&report).trim_end())?;
            }
            if report.received == 0 {
                return Err(format!("no reply from {}", report.address));
            }
            Ok(())
        }
        Command::Netcheck {
            config,
            server,
            json,
        } => netcheck(config.as_deref(), &server, json),
        Command::Import { file, output } => cli_extras::import(&file, output.as_deref()),
        Command::Completions { shell } => {
            cli_extras::completions(shell);
            Ok(())
        }
        Command::Man { dir } => cli_extras::man(dir.as_deref()),
        #[cfg(feature = "demo")]
        Command::Demo { timeout, log_level } => demo::run(&demo::DemoOptions {
            timeout: std::time::Duration::from_secs(timeout),
            log_level,
        }),
        Command::Signal {
            listen,
            ws_listen,
            tls_cert,
            tls_key,
            queue_len,
            rate_limit,
            burst,
            stats_interval,
            memory_budget,
            max_connections_per_ip,
            handshake_timeout,
            idle_timeout,
            metrics_listen,
            nats,
            log_level,
        } => {
            let nats_bus = match nats.as_deref().map(wice::signaling::BackendUrl::parse) {
                None => None,
                Some(Ok(wice::signaling::BackendUrl::Nats(url))) => Some(url),
                Some(Ok(other)) => return Err(format!("--nats: {other} is not a NATS URL")),
                Some(Err(error)) => return Err(format!("--nats: {error}")),
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsIdentity {
                    cert_pem: read_file(&cert, "TLS certificate")?,
                    key_pem: read_file(&key, "TLS key")?,
                }),
                _ => None,
            };
            let config = ServerConfig {
                tls,
                queue_len,
                rate_per_second: rate_limit,
                burst,
                stats_interval: std::time::Duration::from_secs(stats_interval.max(1)),
                budgets: wice::signaling::server::BudgetLimits {
                    global: memory_budget.max(1) << 20,
                    ..Default::default()
                },
                max_connections_per_ip,
                handshake_timeout: std::time::Duration::from_secs(handshake_timeout.max(1)),
                idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)),
                nats_bus,
                ws_listen,
                ..ServerConfig::new(listen)
            };
            signal(config, metrics_listen, &log_level, log_format)
        }
    }
}

/// `wice signal`: the signaling server until SIGINT or SIGTERM.
fn signal(
    config: ServerConfig,
    metrics_listen: Option<std::net::SocketAddr>,
    log_level: &str,
    log_format: LogFormat,
) -> Result<(), String> {
    init_logging(log_level, log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigint = signal(SignalKind::interrupt())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let mut sigterm = signal(SignalKind::terminate())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let tls = config.tls.is_some();
        let server = SignalingServer::bind(config)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            target: "wice::signal",
            listen = %server.local_addr(),
            ws_listen = ?server.ws_local_addr(),
            tls,
            "signaling server listening"
        );
        let hooks = signal_hooks::start(server.counters(), metrics_listen).await?;
        let served = server
            .serve(async move {
                let name = tokio::select! {
                    _ = sigint.recv() => "SIGINT",
                    _ = sigterm.recv() => "SIGTERM",
                };
                tracing::info!(target: "wice::signal", signal = name, "stopping");
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        for task in hooks {
            task.abort();
        }
        served
    })
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| format!("writing stdout: {e}"))
}

fn netcheck(
    config: Option<&std::path::Path>,
    extra: &[std::net::SocketAddr],
    json: bool,
) -> Result<(), String> {
    use wice::netcheck::{Server, render, run, servers_of, to_json};
    let (mut servers, listen_port) = match config {
        Some(path) => {
            let config = Config::load(path).map_err(|e| e.to_string())?;
            (servers_of(&config), config.interface.listen_port)
        }
        None => (Vec::new(), 0),
    };
    for address in extra {
        if !servers.iter().any(|s| s.address == *address) {
            servers.push(Server {
                label: address.to_string(),
                address: *address,
                turn: false,
            });
        }
    }
    let output = run(&servers, listen_port).map_err(|e| e.to_string())?;
    if json {
        print(&serde_json::to_string_pretty(&to_json(&output)).map_err(|e| e.to_string())?)
    } else {
        print(render(&output).trim_end())
    }
}

fn init_logging(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(log_filter(level, std::env::var("RUST_LOG").ok().as_deref()))
        .map_err(|e| format!("bad log level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    Ok(())
}

/// The log filter: `level` for wice, with third-party crates capped, then `RUST_LOG`'s
/// directives, which win where they name a crate.
///
/// The caps are there because a stranger's datagrams can make these crates log: `is` warns
/// once per odd STUN attribute (a 1400-byte datagram can cost hundreds of lines); boringtun
/// logs routine session expiry at ERROR; the TURN/STUN crates log every request at INFO and
/// routine refusals at ERROR; libp2p's crates warn about what remote peers do. Ask for them by name (`RUST_LOG=is=debug`) to see them.
fn log_filter(level: &str, rust_log: Option<&str>) -> String {
    let quiet = !matches!(level, "debug" | "trace");
    let boringtun = if quiet { "off" } else { level };
    let turn = if level == "trace" { "trace" } else { "off" };
    // libp2p's crates (`libp2p_kad`, `libp2p_swarm`, …) log what peers do at WARN and below.
    let libp2p = if quiet { "error" } else { level };
    let base = format!(
        "{level},is=error,str0m=error,str0m_proto=error,boringtun={boringtun},\
         turn_client_proto={turn},turn_types={turn},stun_proto={turn},stun_types={turn},\
         libp2p={libp2p},yamux={libp2p},multistream_select={libp2p}"
    );
    match rust_log {
        Some(spec) if !spec.is_empty() => format!("{base},{spec}"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_crates_are_capped_unless_named_in_rust_log() {
        let filter = log_filter("info", Some("debug"));
        assert!(filter.contains("is=error"), "{filter}");
        assert!(filter.ends_with(",debug"), "{filter}");
        let named = log_filter("info", Some("is=debug"));
        assert!(named.ends_with("is=debug"), "{named}");
        assert!(EnvFilter::try_new(named).is_ok());
    }
}
