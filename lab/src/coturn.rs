//! coturn (`turnserver`) as the lab's STUN and TURN server, run without a config file, and a
//! minimal STUN binding client to see it answer (and to read NAT mappings in tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// TURN user name the lab configures.
pub const USER: &str = "lab";
/// TURN password the lab configures.
pub const PASSWORD: &str = "labpass";
/// TURN realm.
pub const REALM: &str = "wice.lab";
/// Relay ports coturn allocates from.
pub const RELAY_PORTS: (u16, u16) = (49152, 49999);

/// The `turnserver` command for a server on `addr:port` (STUN and TURN over UDP and TCP, no
/// TLS), keeping its pid file, user database and log in `dir`.
pub fn command(addr: IpAddr, port: u16, dir: &Path) -> Command {
    let mut c = Command::new("turnserver");
    let addr = addr.to_string();
    c.args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-rfc5780"])
        .args(["--listening-ip", &addr, "--relay-ip", &addr])
        .args(["--listening-port", &port.to_string()])
        .args(["--min-port", &RELAY_PORTS.0.to_string()])
        .args(["--max-port", &RELAY_PORTS.1.to_string()])
        .args(["--lt-cred-mech", "--user", &format!("{USER}:{PASSWORD}")])
        .args(["--realm", REALM, "--no-software-attribute"])
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .arg("--userdb")
        .arg(dir.join("turndb"))
        .arg("--log-file")
        .arg(dir.join("turnserver.log"))
        .args(["--simple-log", "--no-stdout-log", "--verbose"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Sends a STUN binding request from `socket` to `server` (retrying every 200 ms) and returns
/// the XOR-MAPPED-ADDRESS of the first success response within `timeout`.
pub fn binding(socket: &UdpSocket, server: SocketAddr, timeout: Duration) -> Option<SocketAddr> {
    let mut request = [0u8; 20];
    request[1] = 0x01; // Binding request, length 0
    request[4..8].copy_from_slice(&MAGIC_COOKIE);
    let txid: [u8; 12] =
        std::array::from_fn(|i| (std::process::id() as u8) ^ (i as u8).wrapping_mul(37));
    request[8..20].copy_from_slice(&txid);
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        socket.send_to(&request, server).ok()?;
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if from == server
                && let Some(addr) = parse_binding_success(&buf[..n], &txid)
            {
                return Some(addr);
            }
        }
    }
    None
}

/// The XOR-MAPPED-ADDRESS of a binding success response with transaction id `txid`.
pub fn parse_binding_success(msg: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if msg.len() < 20 || msg[0..2] != [0x01, 0x01] || msg[4..8] != MAGIC_COOKIE {
        return None;
    }
    if &msg[8..20] != txid {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    let body = msg.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + alen)?;
        if kind == XOR_MAPPED_ADDRESS && value.len() >= 8 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
            let ip = match value[1] {
                0x01 => {
                    let b: [u8; 4] = std::array::from_fn(|i| value[4 + i] ^ MAGIC_COOKIE[i]);
                    IpAddr::V4(Ipv4Addr::from(b))
                }
                0x02 if value.len() >= 20 => {
                    let mask: Vec<u8> = MAGIC_COOKIE.iter().chain(txid).copied().collect();
                    let b: [u8; 16] = std::array::from_fn(|i| value[4 + i] ^ mask[i]);
                    IpAddr::V6(Ipv6Addr::from(b))
                }
                _ => return None,
            };
            return Some(SocketAddr::new(ip, port));
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_success_yields_its_xor_mapped_address_and_anything_else_none() {
        let txid = [7u8; 12];
        // RFC 5769 style: 192.0.2.1:32853 XORed with the cookie.
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c];
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&txid);
        msg.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        msg.extend_from_slice(&(32853u16 ^ 0x2112).to_be_bytes());
        let ip = [192u8, 0, 2, 1];
        msg.extend(ip.iter().zip(MAGIC_COOKIE).map(|(a, b)| a ^ b));
        assert_eq!(
            parse_binding_success(&msg, &txid),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        assert_eq!(parse_binding_success(&msg, &[8u8; 12]), None);
        assert_eq!(parse_binding_success(&msg[..30], &txid), None);
        let mut error = msg.clone();
        error[1] = 0x11;
        assert_eq!(parse_binding_success(&error, &txid), None);
    }
}
