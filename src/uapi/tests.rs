//! The UAPI against an engine without a TUN device: what `wg` sends, what it
//! reads back.

use std::io;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use wice_datapath::Engine;

use super::handler::{Handler, ManagedPeers, Policy, UapiDevice};
use super::protocol::{Request, UapiError, parse_request};

struct FakeDevice {
    engine: Engine,
    port: AtomicU16,
    mark: AtomicU32,
}

impl UapiDevice for FakeDevice {
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn listen_port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }
    fn set_listen_port(&self, port: u16) -> io::Result<u16> {
        if port == 1 {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        self.port.store(port, Ordering::Relaxed);
        Ok(port)
    }
    fn fwmark(&self) -> u32 {
        self.mark.load(Ordering::Relaxed)
    }
    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.mark.store(mark, Ordering::Relaxed);
        Ok(())
    }
}

fn handler(policy: Policy, has_key: bool) -> Handler<Box<FakeDevice>> {
    Handler::new(
        Box::new(FakeDevice {
            engine: Engine::new([7; 32]),
            port: AtomicU16::new(51820),
            mark: AtomicU32::new(0),
        }),
        policy,
        has_key,
    )
}

fn hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// A public key that is a valid curve point: derived from a private key.
fn public(seed: u8) -> [u8; 32] {
    Engine::new([seed; 32]).public_key()
}

fn public_hex(seed: u8) -> String {
    public(seed).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_fresh_interface_reports_no_private_key_until_one_is_set() {
    let uapi = handler(Policy::default(), false);
    assert_eq!(uapi.handle("get=1\n"), "listen_port=51820\nerrno=0\n\n");
    let set = format!(
        "set=1\nprivate_key={}\nlisten_port=4000\nfwmark=51820\n",
        hex(0x11)
    );
    assert_eq!(uapi.handle(&set), "errno=0\n\n");
    assert_eq!(
        uapi.handle("get=1\n"),
        format!(
            "private_key={}\nlisten_port=4000\nfwmark=51820\nerrno=0\n\n",
            hex(0x11)
        )
    );
}

#[test]
fn a_peer_set_through_uapi_reads_back_with_every_field() {
    let uapi = handler(Policy::default(), true);
    let set = format!(
        "set=1\npublic_key={}\npreshared_key={}\nendpoint=[2001:db8::1]:51820\n\
         persistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
         allowed_ip=10.0.0.2/32\nallowed_ip=fd00::5/128\nallowed_ip=10.9.9.9/24\n",
        public_hex(2),
        hex(0x33)
    );
    assert_eq!(uapi.handle(&set), "errno=0\n\n");
    let got = uapi.handle("get=1\n");
    let expected_peer = format!(
        "public_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=[2001:db8::1]:51820\n\
         last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n\
         persistent_keepalive_interval=25\n",
        public_hex(2),
        hex(0x33)
    );
    assert!(got.contains(&expected_peer), "{got}");
    for net in [
        "allowed_ip=10.0.0.2/32\n",
        "allowed_ip=fd00::5/128\n",
        "allowed_ip=10.9.9.0/24\n",
    ] {
        assert!(got.contains(net), "{net} missing from {got}");
    }
    assert!(got.ends_with("errno=0\n\n"));
}

#[test]
fn allowed_ips_grow_unless_replaced_and_move_between_peers() {
    let uapi = handler(Policy::default(), true);
    let (a, b) = (public_hex(2), public_hex(3));
    uapi.handle(&format!("set=1\npublic_key={a}\nallowed_ip=10.0.0.1/32\n"));
    uapi.handle(&format!("set=1\npublic_key={a}\nallowed_ip=10.0.0.2/32\n"));
    uapi.handle(&format!("set=1\npublic_key={b}\nallowed_ip=10.0.0.2/32\n"));
    let got = uapi.state();
    let nets = |key: [u8; 32]| {
        got.peers.iter().find(|p| p.public_key == key).map(|p| {
            p.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(nets(public(2)), Some(vec!["10.0.0.1/32".to_owned()]));
    assert_eq!(nets(public(3)), Some(vec!["10.0.0.2/32".to_owned()]));
    uapi.handle(&format!(
        "set=1\npublic_key={a}\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16\n"
    ));
    assert_eq!(nets_of(&uapi, public(2)), vec!["10.1.0.0/16".to_owned()]);
}

fn nets_of(uapi: &Handler<Box<FakeDevice>>, key: [u8; 32]) -> Vec<String> {
    uapi.state()
        .peers
        .iter()
        .find(|p| p.public_key == key)
        .map(|p| p.allowed_ips.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn replace_peers_removes_the_unnamed_and_update_only_never_adds() {
    let uapi = handler(Policy::default(), true);
    let (a, b, c) = (public_hex(2), public_hex(3), public_hex(4));
    uapi.handle(&format!("set=1\npublic_key={a}\npublic_key={b}\n"));
    let set =
        format!("set=1\nreplace_peers=true\npublic_key={b}\npublic_key={c}\nupdate_only=true\n");
    assert_eq!(uapi.handle(&set), "errno=0\n\n");
    let keys: Vec<[u8; 32]> = uapi.state().peers.iter().map(|p| p.public_key).collect();
    assert_eq!(keys, vec![public(3)]);
    uapi.handle(&format!("set=1\npublic_key={b}\nremove=true\n"));
    assert!(uapi.state().peers.is_empty());
}

#[test]
fn a_request_naming_an_ice_peer_is_refused_whole_and_changes_nothing() {
    let policy = Policy {
        managed_peers: ManagedPeers::new([public(9)]),
        fixed_identity: true,
    };
    let uapi = handler(policy, true);
    uapi.engine_for_tests()
        .add_peer(&wice_datapath::PeerConfig {
            public_key: public(9),
            preshared_key: None,
            persistent_keepalive: None,
            endpoint: None,
            allowed_ips: vec!["10.0.0.9/32".parse().expect("net")],
        })
        .expect("add");
    let set = format!(
        "set=1\npublic_key={}\nallowed_ip=10.0.0.2/32\npublic_key={}\nendpoint=192.0.2.1:1\n",
        public_hex(2),
        public_hex(9)
    );
    assert_eq!(uapi.handle(&set), format!("errno=-{}\n\n", libc::EPERM));
    assert_eq!(
        uapi.state().peers.len(),
        1,
        "the first peer was not added either"
    );
    // replace_peers leaves the ICE peer alone.
    assert_eq!(uapi.handle("set=1\nreplace_peers=true\n"), "errno=0\n\n");
    assert_eq!(uapi.state().peers.len(), 1);
    // The identity may be repeated but not changed.
    assert_eq!(
        uapi.handle(&format!("set=1\nprivate_key={}\n", hex(7))),
        "errno=0\n\n"
    );
    assert_eq!(
        uapi.handle(&format!("set=1\nprivate_key={}\n", hex(8))),
        format!("errno=-{}\n\n", libc::EPERM)
    );
    assert_eq!(
        uapi.handle("set=1\nlisten_port=9\n"),
        format!("errno=-{}\n\n", libc::EPERM)
    );
}

#[test]
fn bad_requests_get_the_errno_wireguard_go_gives() {
    let uapi = handler(Policy::default(), true);
    let invalid = format!("errno=-{}\n\n", libc::EINVAL);
    assert_eq!(uapi.handle("set=1\nlisten_port=abc\n"), invalid);
    assert_eq!(uapi.handle("set=1\nbogus=1\n"), invalid);
    assert_eq!(uapi.handle("set=1\nprivate_key=zz\n"), invalid);
    assert_eq!(
        uapi.handle(&format!(
            "set=1\npublic_key={}\nallowed_ip=10.0.0.0/33\n",
            public_hex(2)
        )),
        invalid
    );
    assert_eq!(
        uapi.handle(&format!(
            "set=1\npublic_key={}\nprotocol_version=2\n",
            public_hex(2)
        )),
        invalid
    );
    assert_eq!(uapi.handle("set=1\nreplace_peers=false\n"), invalid);
    assert_eq!(
        uapi.handle("hello\n"),
        format!("errno=-{}\n\n", libc::EPROTO)
    );
    assert_eq!(
        uapi.handle("set=1\nno equals sign\n"),
        format!("errno=-{}\n\n", libc::EPROTO)
    );
    assert_eq!(
        uapi.handle("set=1\nlisten_port=1\n"),
        format!("errno=-{}\n\n", libc::EADDRINUSE)
    );
    assert!(uapi.state().peers.is_empty(), "nothing applied");
}

#[test]
fn a_key_that_is_not_hex_or_the_wrong_length_is_refused_without_panicking() {
    for value in ["", "0", &"é".repeat(32), &"g".repeat(64), &"0".repeat(65)] {
        let text = format!("set=1\npublic_key={value}\n");
        assert!(
            matches!(parse_request(&text), Err(UapiError::Invalid { .. })),
            "{value:?}"
        );
    }
    assert_eq!(parse_request("get=1\n"), Ok(Request::Get));
}

#[test]
fn interface_names_that_would_escape_the_socket_directory_are_refused() {
    for bad in [
        "",
        ".",
        "..",
        "../etc",
        "a/b",
        "sixteen-chars-xx",
        "a b",
        "x:y",
    ] {
        assert!(!super::valid_interface_name(bad), "{bad:?}");
    }
    for good in ["wg0", "wice-test.1", "fifteen-chars-x"] {
        assert!(super::valid_interface_name(good), "{good:?}");
    }
}

mod socket {
    use std::io::{Read, Write};
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use super::super::server::{ServeError, UapiServer};

    fn scratch_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wice-uapi-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn ask(path: &std::path::Path, request: &[u8]) -> String {
        let mut stream = UnixStream::connect(path).expect("connect");
        stream.write_all(request).expect("write");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }

    #[test]
    fn the_socket_is_private_and_answers_several_requests_per_connection() {
        let dir = scratch_dir("mode");
        let path = dir.join("wg-test.sock");
        let server = UapiServer::serve(&path, |text| format!("echo={}\nerrno=0\n\n", text.len()))
            .expect("serve");
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            ask(&path, b"get=1\n\nget=1\n\n"),
            "echo=6\nerrno=0\n\necho=6\nerrno=0\n\n"
        );
        drop(server);
        assert!(
            !path.exists(),
            "the socket is removed when the server stops"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_overlong_line_or_binary_garbage_gets_an_error_not_a_crash() {
        let dir = scratch_dir("garbage");
        let path = dir.join("wg-test.sock");
        let _server = UapiServer::serve(&path, |_| "errno=0\n\n".to_owned()).expect("serve");
        let long = [vec![b'a'; 100_000], b"\n\n".to_vec()].concat();
        assert_eq!(ask(&path, &long), format!("errno=-{}\n\n", libc::EMSGSIZE));
        assert_eq!(
            ask(&path, b"\xff\xfe=\x00\n\n"),
            format!("errno=-{}\n\n", libc::EPROTO)
        );
        // Still serving after both.
        assert_eq!(ask(&path, b"get=1\n\n"), "errno=0\n\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_at_the_socket_path_or_directory_is_refused() {
        let dir = scratch_dir("symlink");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let target = dir.join("elsewhere");
        std::fs::write(&target, b"keep me").expect("write");
        let path = dir.join("wg-test.sock");
        symlink(&target, &path).expect("symlink");
        let refused = UapiServer::serve(&path, |_| String::new());
        assert!(
            matches!(refused, Err(ServeError::Occupied { .. })),
            "{:?}",
            refused.err()
        );
        assert_eq!(std::fs::read(&target).expect("read"), b"keep me");
        let linked_dir = dir.join("linked");
        symlink(&dir, &linked_dir).expect("symlink dir");
        let refused = UapiServer::serve(&linked_dir.join("x.sock"), |_| String::new());
        assert!(
            matches!(refused, Err(ServeError::Directory { .. })),
            "{:?}",
            refused.err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
