//! The `wice` binary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use wice::cli::{Cli, Command, read_stdin_key};
use wice::config::Config;
use wice::keys::PrivateKey;
use wice::{control, daemon};

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
    match cli.command {
        Command::Genkey => print(&PrivateKey::generate().to_base64()),
        Command::Pubkey => {
            let text = read_stdin_key().map_err(|e| format!("reading stdin: {e}"))?;
            let key =
                PrivateKey::from_base64(&text).map_err(|e| format!("private key on stdin: {e}"))?;
            print(&key.public_key().to_base64())
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
            init_logging(&log_level)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start runtime: {e}"))?;
            runtime
                .block_on(daemon::run(config))
                .map_err(|e| e.to_string())
        }
        Command::Status {
            interface,
            socket,
            json,
        } => {
            let path = socket.unwrap_or_else(|| format!("/run/wice/{interface}.sock").into());
            let status = control::request_status(&path).map_err(|e| e.to_string())?;
            if json {
                print(&serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?)
            } else {
                print(status.render().trim_end())
            }
        }
    }
}

fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| format!("writing stdout: {e}"))
}

fn init_logging(level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec),
        // boringtun logs routine session expiry at ERROR; show it only when debugging.
        _ => {
            let quiet = !matches!(level, "debug" | "trace");
            let boringtun = if quiet { "off" } else { level };
            EnvFilter::try_new(format!("{level},boringtun={boringtun}"))
        }
    }
    .map_err(|e| format!("bad log level: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
