use super::*;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter()
        .map(|s| s.parse().expect("test network"))
        .collect()
}

fn with_routing(lines: &str) -> String {
    format!("{}[routing]\n{lines}", with_interface(""))
}

// ---- [interface] routes ----

#[test]
fn interface_routes_are_networks_with_host_bits_cleared_each_once() {
    let config = parse_ok(&with_interface(
        "routes = [\"192.168.50.1/24\", \"fd50::/64\", \"192.168.50.0/24\", \"10.9.9.9\"]\n",
    ));
    assert_eq!(
        config.interface.routes,
        nets(&["192.168.50.0/24", "fd50::/64", "10.9.9.9/32"])
    );
    assert!(parse_ok(&with_interface("")).interface.routes.is_empty());
}

#[test]
fn a_default_route_in_interface_routes_is_refused_pointing_at_the_exit_offer() {
    assert_error(
        &with_interface("routes = [\"192.168.50.0/24\", \"::/0\"]\n"),
        Some(3),
        "interface.routes[1]",
        "advertise_exit_node = true",
    );
    assert_error(
        &with_interface("routes = [\"192.168.50.0/33\"]\n"),
        Some(3),
        "interface.routes[0]",
        "is not valid",
    );
}

// ---- [routing] ----

#[test]
fn without_a_routing_section_nothing_is_accepted_and_wg_quicks_numbers_are_used() {
    let routing = parse_ok(&with_interface("")).routing;
    assert_eq!(routing, RoutingConfig::default());
    assert!(routing.accept_routes.is_empty());
    assert_eq!(routing.use_exit_node, None);
    assert!(!routing.advertise_exit_node);
    assert_eq!((routing.table, routing.fwmark), (51820, 51820));
}

#[test]
fn the_routing_section_parses_every_key() {
    let routing = parse_ok(&with_routing(&format!(
        "accept_routes = [\"192.168.0.0/16\", \"fd00::/8\"]\nuse_exit_node = \"{BOB}\"\n\
         advertise_exit_node = true\ntable = 1000\nfwmark = 4242\n"
    )))
    .routing;
    assert_eq!(routing.accept_routes, nets(&["192.168.0.0/16", "fd00::/8"]));
    assert_eq!(
        routing.use_exit_node,
        Some(ExitNodeChoice::Key(PublicKey::from_base64(BOB).unwrap()))
    );
    assert!(routing.advertise_exit_node);
    assert_eq!((routing.table, routing.fwmark), (1000, 4242));
}

#[test]
fn an_exit_node_that_is_not_a_key_is_a_name() {
    let routing = parse_ok(&with_routing("use_exit_node = \"exit-fra1\"\n")).routing;
    assert_eq!(
        routing.use_exit_node,
        Some(ExitNodeChoice::Name("exit-fra1".to_owned()))
    );
}

#[test]
fn a_bad_exit_node_own_key_reserved_table_or_zero_mark_is_refused_at_its_line() {
    assert_error(
        &with_routing(&format!("use_exit_node = \"{NODE_PUBLIC}\"\n")),
        Some(4),
        "routing.use_exit_node",
        "this node's own public key",
    );
    assert_error(
        &with_routing("use_exit_node = \"two words\"\n"),
        Some(4),
        "routing.use_exit_node",
        "public key or announced name",
    );
    assert_error(
        &with_routing("table = 254\n"),
        Some(4),
        "routing.table",
        "table 254 is reserved",
    );
    assert_error(&with_routing("fwmark = 0\n"), Some(4), "routing.fwmark", "");
    assert_error(
        &with_routing("table = 4294967296\n"),
        Some(4),
        "routing.table",
        "",
    );
    assert_error(
        &with_routing("accept_routes = [\"192.168.0.0/16\", \"nope\"]\n"),
        Some(4),
        "routing.accept_routes[1]",
        "`nope` is not valid",
    );
    assert_error(
        &with_routing("accept = []\n"),
        Some(4),
        "routing.accept",
        "",
    );
}

// ---- accepted_routes ----

fn policy(accept: &[&str], exit: Option<ExitNodeChoice>) -> RoutingConfig {
    RoutingConfig {
        accept_routes: nets(accept),
        use_exit_node: exit,
        ..RoutingConfig::default()
    }
}

fn bob() -> PublicKey {
    PublicKey::from_base64(BOB).unwrap()
}

#[test]
fn only_announced_routes_inside_accept_routes_are_taken() {
    let key = bob();
    let routes = nets(&[
        "192.168.50.9/24",
        "192.168.0.0/15",
        "10.0.0.0/8",
        "fd00:50::/64",
        "192.168.60.0/24",
    ]);
    let offer = RouteOffer {
        public_key: &key,
        name: Some("router"),
        routes: &routes,
        exit_node: false,
    };
    assert_eq!(
        accepted_routes(&offer, &policy(&["192.168.0.0/16", "fd00::/8"], None)),
        nets(&["192.168.50.0/24", "192.168.60.0/24", "fd00:50::/64"])
    );
    assert!(accepted_routes(&offer, &policy(&[], None)).is_empty());
}

#[test]
fn a_default_route_comes_only_from_the_chosen_exit_node_never_from_accept_routes() {
    let key = bob();
    let announced = nets(&["0.0.0.0/0", "::/0", "192.168.50.0/24"]);
    let offer = RouteOffer {
        public_key: &key,
        name: Some("exit-fra1"),
        routes: &announced,
        exit_node: true,
    };
    let accept_all = ["0.0.0.0/0", "::/0"];
    assert_eq!(
        accepted_routes(&offer, &policy(&accept_all, None)),
        nets(&["192.168.50.0/24"]),
        "accept_routes never takes a default route"
    );
    let defaults = nets(&["0.0.0.0/0", "::/0"]);
    let by_key = policy(&[], Some(ExitNodeChoice::Key(key)));
    assert_eq!(accepted_routes(&offer, &by_key), defaults);
    let by_name = policy(&[], Some(ExitNodeChoice::Name("exit-fra1".to_owned())));
    assert_eq!(accepted_routes(&offer, &by_name), defaults);
    let other = policy(&[], Some(ExitNodeChoice::Name("exit-ams1".to_owned())));
    assert!(accepted_routes(&offer, &other).is_empty());
    let not_offered = RouteOffer {
        exit_node: false,
        ..offer
    };
    assert!(
        accepted_routes(&not_offered, &by_key).is_empty(),
        "a peer that does not offer an exit is not used as one"
    );
}

#[test]
fn a_peer_announcing_too_many_routes_gets_only_the_first_ones() {
    let key = bob();
    let routes: Vec<IpNet> = (0..MAX_ROUTES_PER_PEER + 50)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    let offer = RouteOffer {
        public_key: &key,
        name: None,
        routes: &routes,
        exit_node: false,
    };
    let accepted = accepted_routes(&offer, &policy(&["10.0.0.0/8"], None));
    assert_eq!(accepted.len(), MAX_ROUTES_PER_PEER);
    assert!(accepted.contains(&routes[0]));
    assert!(!accepted.contains(&routes[MAX_ROUTES_PER_PEER]));
}
