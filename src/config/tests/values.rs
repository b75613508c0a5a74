use super::*;

// ---- errors: addresses and prefixes ----

#[test]
fn an_invalid_interface_address_is_refused() {
    assert_error(
        &with_interface("addresses = [\"10.77.0.1/24\", \"10.77.0.300/24\"]\n"),
        Some(3),
        "interface.addresses[1]",
        "`10.77.0.300/24` is not valid",
    );
    assert_error(
        &with_interface("addresses = [\"10.77.0.1/33\"]\n"),
        Some(3),
        "interface.addresses[0]",
        "prefix length",
    );
}

#[test]
fn an_interface_address_without_a_prefix_length_is_refused() {
    assert_error(
        &with_interface("addresses = [\"10.77.0.1\"]\n"),
        Some(3),
        "interface.addresses[0]",
        "needs a prefix length",
    );
}

#[test]
fn an_invalid_allowed_ip_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\n  \"10.77.0.2/32\",\n  \"fd77::/129\",\n]\n",
        with_interface("")
    );
    assert_error(
        &text,
        Some(7),
        "peer[0].allowed_ips[1]",
        "`fd77::/129` is not valid: expected an IP prefix",
    );
}

#[test]
fn a_prefix_inside_another_peers_prefix_is_refused_naming_both() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.0/24\"]\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"fd77::3/128\", \"10.77.0.3/32\"]\n",
        with_interface(""),
        peer_key(3)
    );
    assert_error(
        &text,
        Some(8),
        "peer[1].allowed_ips[1]",
        "10.77.0.3/32 overlaps 10.77.0.0/24 of peer[0] (line 5); \
         each address must route to exactly one peer",
    );
}

#[test]
fn a_prefix_containing_another_peers_prefix_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"fd77::2/128\"]\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"::/0\"]\n",
        with_interface(""),
        peer_key(3)
    );
    assert_error(
        &text,
        Some(8),
        "peer[1].allowed_ips[0]",
        "::/0 overlaps fd77::2/128 of peer[0]",
    );
}

#[test]
fn the_same_prefix_on_two_peers_is_refused_after_normalizing() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.0/24\"]\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.99/24\"]\n",
        with_interface(""),
        peer_key(3)
    );
    assert_error(
        &text,
        Some(8),
        "peer[1].allowed_ips[0]",
        "10.77.0.0/24 overlaps 10.77.0.0/24 of peer[0]",
    );
}

// ---- errors: interface name, endpoint, numbers ----

#[test]
fn an_invalid_interface_name_is_refused_with_the_rule_it_breaks() {
    let cases = [
        ("", "it is empty"),
        ("wice0123456789ab", "longer than 15 bytes"),
        ("wice/0", "contains '/'"),
        ("wice:0", "contains ':'"),
        ("wice 0", "contains whitespace"),
        ("..", "reserved"),
    ];
    for (name, phrase) in cases {
        assert_error(
            &with_interface(&format!("name = \"{name}\"\n")),
            Some(3),
            "interface.name",
            phrase,
        );
    }
    // Exactly 15 bytes is the longest allowed.
    parse_ok(&with_interface("name = \"wice0123456789a\"\n"));
}

#[test]
fn an_invalid_endpoint_is_refused_with_the_rule_it_breaks() {
    let cases = [
        ("198.51.100.7", "has no port"),
        ("198.51.100.7:0", "port must be a number from 1 to 65535"),
        (
            "198.51.100.7:70000",
            "port must be a number from 1 to 65535",
        ),
        ("example.com:http", "port must be a number"),
        ("2001:db8::1:51820", "needs brackets"),
        ("[2001:db8::zz]:51820", "must be an IPv6 address"),
        (":51820", "host is empty"),
    ];
    for (endpoint, phrase) in cases {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"{endpoint}\"\n",
            with_interface("")
        );
        assert_error(&text, Some(5), "peer[0].endpoint", phrase);
    }
}

#[test]
fn an_unresolvable_endpoint_host_is_refused() {
    // `.invalid` is reserved never to resolve (RFC 6761).
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"no-such-host.invalid:51820\"\n",
        with_interface("")
    );
    assert_error(
        &text,
        Some(5),
        "peer[0].endpoint",
        "cannot resolve host `no-such-host.invalid`",
    );
}

#[test]
fn an_mtu_out_of_range_is_refused() {
    assert_error(
        &with_interface("mtu = 575\n"),
        Some(3),
        "interface.mtu",
        "575 is out of range; must be 576..=65535",
    );
    assert_error(
        &with_interface("mtu = 65536\n"),
        Some(3),
        "interface.mtu",
        "out of range",
    );
}

#[test]
fn an_mtu_below_1280_is_refused_with_an_ipv6_address() {
    assert_error(
        &with_interface("addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\nmtu = 1279\n"),
        Some(4),
        "interface.mtu",
        "1279 is below 1280, the IPv6 minimum, and interface.addresses has IPv6 address fd77::1/64",
    );
}

#[test]
fn a_listen_port_out_of_range_is_refused() {
    assert_error(
        &with_interface("listen_port = -1\n"),
        Some(3),
        "interface.listen_port",
        "-1 is out of range; must be 0..=65535",
    );
}

#[test]
fn a_persistent_keepalive_out_of_range_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\npersistent_keepalive = 65536\n",
        with_interface("")
    );
    assert_error(
        &text,
        Some(5),
        "peer[0].persistent_keepalive",
        "65536 is out of range; must be 0..=65535",
    );
}

#[test]
fn an_empty_control_socket_is_refused() {
    assert_error(
        &with_interface("control_socket = \"\"\n"),
        Some(3),
        "interface.control_socket",
        "must not be empty",
    );
}

#[test]
fn metrics_listen_is_an_optional_socket_address() {
    let config = parse_ok(&with_interface("metrics_listen = \"127.0.0.1:9586\"\n"));
    assert_eq!(
        config.interface.metrics_listen,
        Some("127.0.0.1:9586".parse().unwrap())
    );
    assert_eq!(parse_ok(&with_interface("")).interface.metrics_listen, None);
    assert_error(
        &with_interface("metrics_listen = \"localhost\"\n"),
        Some(3),
        "interface.metrics_listen",
        "expected ip:port",
    );
}
