//! Command-line interface.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// wice: a userspace mesh VPN over WireGuard.
#[derive(Debug, Parser)]
#[command(name = "wice", version, about)]
pub struct Cli {
    /// How the daemons (`up`, `signal`, `demo`) write log lines to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (fields, spans such as the peer, timestamp, level).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    Pubkey,
    /// Print the tunnel addresses a public key derives in each prefix (`derive_addresses`),
    /// one a line. Without prefixes: in 10.77.0.0/16 and fd77::/64.
    Addresses {
        /// The public key (base64).
        #[arg(value_name = "KEY")]
        key: String,
        /// Prefixes, like 10.77.0.0/16 or fd77::/64.
        #[arg(value_name = "PREFIX")]
        prefixes: Vec<String>,
    },
    /// Convert a wg-quick config (wg0.conf) into a wice config (TOML on stdout).
    ///
    /// Settings with no wice equivalent (DNS, Table, FwMark, PostUp and the other hooks,
    /// SaveConfig) are listed on stderr. The output holds the private key: write it to a
    /// file only you can read (`-o` creates it with mode 0600).
    Import {
        /// The wg-quick file; the interface is named after it (wg0.conf: wg0).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the TOML here (mode 0600) instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the wice(1) man page (roff), or write a page per command into --dir.
    Man {
        /// Write wice.1 and wice-COMMAND.1 into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a node in the foreground until SIGINT/SIGTERM.
    Up {
        /// The node's config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Validate the config and exit without touching the system.
        #[arg(long)]
        check: bool,
        /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
        #[arg(long, default_value = "info", value_name = "LEVEL")]
        log_level: String,
    },
    /// Create an empty userspace WireGuard interface configured through `wg` and `ip`,
    /// like `wireguard-go IFNAME` (for WG_QUICK_USERSPACE_IMPLEMENTATION). Needs root.
    Wireguard {
        /// Stay in the foreground instead of forking to the background.
        #[arg(short, long)]
        foreground: bool,
        /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
        #[arg(long, default_value = "warn", value_name = "LEVEL")]
        log_level: String,
        /// The interface to create.
        #[arg(value_name = "IFNAME")]
        interface: String,
    },
    /// Show a running node's peers.
    Status {
        #[command(flatten)]
        node: ControlSocketArgs,
        /// Print JSON (stable field names) instead of text.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Redraw every --interval seconds until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, default_value_t = 1.0, value_name = "SECS", requires = "watch")]
        interval: f64,
    },
    /// Ping a peer through the tunnel (ICMP echo to its tunnel address) and say which path
    /// answered: host, srflx, prflx or relay, and the candidate pair. Needs root.
    Ping {
        /// The peer: its public key or the first characters of it (at least 4).
        #[arg(value_name = "PEER")]
        peer: String,
        #[command(flatten)]
        node: ControlSocketArgs,
        /// Echoes to send.
        #[arg(short, long, default_value_t = 3, value_name = "N")]
        count: u32,
        /// Tunnel address to ping, when the peer's allowed IPs hold no single address.
        #[arg(long, value_name = "IP")]
        address: Option<std::net::IpAddr>,
        /// Print JSON (stable field names) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check this host's NAT and its UDP reach to the configured STUN/TURN servers (RFC 5780
    /// mapping and filtering, latency, public addresses, IPv6) and say what to expect.
    ///
    /// Uses the node's UDP port when it is free; with the node up, a fresh socket of the same
    /// address family (the NAT treats it alike).
    Netcheck {
        /// The node's config file: its [[ice.servers]] and listen_port.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also ask this STUN server (`ip:port`); may be repeated.
        #[arg(long, value_name = "ADDR")]
        server: Vec<SocketAddr>,
        /// Print JSON (stable field names) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a running node re-read its config file and apply the difference (peers, allowed
    /// IPs, keepalive, ICE servers, signaling backends) without dropping unchanged tunnels.
    /// A config with errors is refused and the running one stays. Same as SIGHUP, but says
    /// what changed or why it was refused.
    Reload {
        #[command(flatten)]
        node: ControlSocketArgs,
    },
    /// Build a three-node mesh across NAT routers in network namespaces on this machine,
    /// show how each pair connected, and tear it all down (needs root).
    #[cfg(feature = "demo")]
    Demo {
        /// Seconds to wait for every pair to connect.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Log level of the nodes, whose logs are shown if something fails.
        #[arg(long, default_value = "info", value_name = "LEVEL")]
        log_level: String,
    },
    /// Run the gRPC signaling server in the foreground until SIGINT/SIGTERM.
    ///
    /// A stateless fan-out by recipient key: envelopes go to the current subscribers of
    /// their recipient and are never stored. Subscribers must prove they hold the key, and a
    /// connection publishes only as keys proven on it.
    Signal {
        /// Address to listen on, like `0.0.0.0:8443` or `[::]:8443`.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Also serve the WebSocket transport (ws://, or wss:// with the TLS flags) and the
        /// HTTP publish endpoint on this address, like `0.0.0.0:443`.
        #[arg(long, value_name = "ADDR")]
        ws_listen: Option<SocketAddr>,
        /// TLS certificate chain (PEM); serves grpcs:// (and wss://) with --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Envelopes queued per subscriber; a slow one loses its oldest beyond this.
        #[arg(long, default_value_t = 64, value_name = "N")]
        queue_len: usize,
        /// Envelopes (and subscription attempts) per second allowed per connection.
        #[arg(long, default_value_t = 200, value_name = "N")]
        rate_limit: u32,
        /// Burst allowed per connection above the rate.
        #[arg(long, default_value_t = 2000, value_name = "N")]
        burst: u32,
        /// Seconds between counter log lines.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        stats_interval: u64,
        /// MiB of envelopes queued overall before new ones are refused (the memory budget).
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        memory_budget: usize,
        /// Connections allowed from one address (IPv6: one /64).
        #[arg(long, default_value_t = 256, value_name = "N")]
        max_connections_per_ip: u32,
        /// Seconds a new connection has to make its first call.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        handshake_timeout: u64,
        /// Seconds a connection may stay open without a call.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        idle_timeout: u64,
        /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9587).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Share a NATS cluster with other signal servers as their bus, like
        /// `nats://10.0.0.1:4222,10.0.0.2:4222` or `tls://…?creds=FILE` (NATS backend URL
        /// form): clients of any of them reach each other.
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
        #[arg(long, default_value = "info", value_name = "LEVEL")]
        log_level: String,
    },
}

/// Reads a key from stdin for `wice pubkey`, refusing absurd input sizes.
pub fn read_stdin_key() -> std::io::Result<String> {
    let mut text = String::new();
    std::io::stdin().take(1024).read_to_string(&mut text)?;
    Ok(text)
}

/// Which running node a command talks to: its control socket.
#[derive(Debug, Args)]
pub struct ControlSocketArgs {
    /// Interface name; the socket is /run/wice/NAME.sock.
    #[arg(
        short,
        long,
        value_name = "NAME",
        default_value = "wice0",
        conflicts_with = "socket"
    )]
    interface: String,
    /// Control socket path (for nodes with a custom control_socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl ControlSocketArgs {
    /// The control socket's path.
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| format!("/run/wice/{}.sock", self.interface).into())
    }
}
