//! Config validation: every refusal names the field and the line.

use super::*;
use edgefwd_core::nat::Filtering;

const GOOD: &str = r#"
[dataplane]
burst = 32

[[port]]
name = "Port2"
bind = "tap:edge-port2"
mac = "02:00:00:00:02:01"
addresses = ["10.0.2.15/24", "2001:db8:2::15/64"]
gateway = "10.0.2.1"

[[port]]
name = "Port3"
bind = "pcap"
mac = "02:00:00:00:03:01"
addresses = ["192.168.20.10/24"]

[[route]]
interface = "Port3"
destination = "192.168.21.0/24"
next_hop = "192.168.20.1"
metric = 100

[[neighbor]]
interface = "Port3"
address = "192.168.20.1"
mac = "02:00:00:00:20:01"
"#;

fn refused(text: &str) -> ConfigError {
    Config::parse(text).expect_err("config should be refused")
}

fn with(old: &str, new: &str) -> String {
    assert!(GOOD.contains(old), "fixture lacks {old:?}");
    GOOD.replacen(old, new, 1)
}

#[test]
fn good_config_parses() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.dataplane.burst, 32);
    assert_eq!(c.ports.len(), 2);
    assert_eq!(
        c.ports[0].bind,
        Binding::Tap {
            name: "edge-port2".into(),
            netns: None
        }
    );
    assert_eq!(c.ports[0].gateway, Some("10.0.2.1".parse().unwrap()));
    assert_eq!(c.routes[0].metric, 100);
    assert_eq!(c.neighbors.len(), 1);
}

#[test]
fn unknown_field_is_refused_with_its_line() {
    let e = refused(&with("metric = 100", "metric = 100\ncolour = \"red\""));
    assert!(e.message.contains("colour"), "{e}");
    assert_eq!(e.line, Some(23));
}

#[test]
fn unknown_interface() {
    let e = refused(&with(
        "interface = \"Port3\"\ndestination",
        "interface = \"Port9\"\ndestination",
    ));
    assert_eq!(e.field, "route[0].interface");
    assert!(e.to_string().contains("unknown interface \"Port9\""), "{e}");
    assert_eq!(e.line, Some(19));
}

#[test]
fn host_bits_set_in_destination() {
    let e = refused(&with("192.168.21.0/24", "192.168.21.5/24"));
    assert_eq!(e.field, "route[0].destination");
    assert!(e.message.contains("host bits"), "{e}");
}

#[test]
fn malformed_prefix() {
    let e = refused(&with("192.168.21.0/24", "192.168.21.0/33"));
    assert_eq!(e.field, "route[0].destination");
}

#[test]
fn next_hop_not_on_the_interface_subnet() {
    let e = refused(&with(
        "next_hop = \"192.168.20.1\"",
        "next_hop = \"10.0.2.1\"",
    ));
    assert_eq!(e.field, "route[0].next_hop");
    assert!(e.message.contains("not on a subnet of Port3"), "{e}");
}

#[test]
fn duplicate_route() {
    let dup = "\n[[route]]\ninterface = \"Port3\"\ndestination = \"192.168.21.0/24\"\nnext_hop = \"192.168.20.1\"\nmetric = 200\n";
    let e = refused(&format!("{GOOD}{dup}"));
    assert_eq!(e.field, "route[1].destination");
    assert!(e.message.contains("exists already"), "{e}");
}

#[test]
fn duplicate_port_mac_and_address() {
    let e = refused(&with("name = \"Port3\"", "name = \"Port2\""));
    assert_eq!(e.field, "port[1].name");
    let e = refused(&with("02:00:00:00:03:01", "02:00:00:00:02:01"));
    assert_eq!(e.field, "port[1].mac");
    let e = refused(&with("192.168.20.10/24", "10.0.2.15/24"));
    assert_eq!(e.field, "port[1].addresses[0]");
}

#[test]
fn bad_mac() {
    let e = refused(&with("02:00:00:00:03:01", "02:00:00:00:03"));
    assert_eq!(e.field, "port[1].mac");
    let e = refused(&with("02:00:00:00:03:01", "01:00:5e:00:00:01"));
    assert!(e.message.contains("unicast"), "{e}");
}

#[test]
fn metric_out_of_range() {
    let e = refused(&with("metric = 100", "metric = -1"));
    assert_eq!(e.field, "route[0].metric");
    let e = refused(&with("metric = 100", "metric = 70000"));
    assert_eq!(e.field, "route[0].metric");
}

#[test]
fn busy_poll_defaults_to_sleeping_and_is_bounded() {
    assert_eq!(Config::parse(GOOD).unwrap().dataplane.busy_poll_us, 0);
    let c = Config::parse(&with("burst = 32", "busy_poll_us = 50000")).unwrap();
    assert_eq!(c.dataplane.busy_poll_us, 50_000);
    let e = refused(&with("burst = 32", "busy_poll_us = 1000001"));
    assert_eq!(e.field, "dataplane.busy_poll_us");
    assert!(e.message.contains("between 0 and 1000000"), "{e}");
    // A type error names its line and field, as for every unsigned field.
    let e = refused(&with("burst = 32", "busy_poll_us = -1"));
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.field, "dataplane.busy_poll_us", "{e}");
}

#[test]
fn vm_one_copy_is_on_unless_turned_off() {
    assert!(Config::parse(GOOD).unwrap().dataplane.vm_one_copy);
    let c = Config::parse(&with("burst = 32", "vm_one_copy = false")).unwrap();
    assert!(!c.dataplane.vm_one_copy);
    let e = refused(&with("burst = 32", "vm_one_copy = 1"));
    assert_eq!(e.field, "dataplane.vm_one_copy", "{e}");
}

#[test]
fn io_uring_is_on_unless_turned_off() {
    assert!(Config::parse(GOOD).unwrap().dataplane.io_uring);
    let c = Config::parse(&with("burst = 32", "io_uring = false")).unwrap();
    assert!(!c.dataplane.io_uring);
    let e = refused(&with("burst = 32", "io_uring = \"yes\""));
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.field, "dataplane.io_uring", "{e}");
}

#[test]
fn errors_of_the_toml_reader_name_the_field_too() {
    let e = refused(&with(
        r#"addresses = ["192.168.20.10/24"]"#,
        "addresses = 5",
    ));
    assert_eq!(e.field, "port[1].addresses", "{e}");
    let e = refused(&with("metric = 100", "metrc = 100"));
    assert_eq!(e.field, "route[0].metrc", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn bad_binding_and_gateway() {
    let e = refused(&with("tap:edge-port2", "vhost:x"));
    assert_eq!(e.field, "port[0].bind");
    let e = refused(&with("gateway = \"10.0.2.1\"", "gateway = \"10.9.2.1\""));
    assert_eq!(e.field, "port[0].gateway");
}

const SWITCHES: &str = r#"
[[port]]
name = "vm1"
bind = "tap:vm1"
switch = "internal"
allowed_mac = "02:00:00:00:28:10"
allowed_addresses = ["172.28.0.10"]

[[port]]
name = "vm3"
switch = "external"

[[switch]]
name = "internal"
kind = "internal"
address = "172.28.0.1/24"
nat = "Port2"

[[switch]]
name = "external"
kind = "external"
uplink = "Port3"
mac_limit = 64

[nat]
filtering = "endpoint-independent"
port_range = "20000-29999"
udp_timeout = 600
"#;

fn switched(old: &str, new: &str) -> String {
    assert!(SWITCHES.contains(old), "fixture lacks {old:?}");
    format!("{GOOD}{}", SWITCHES.replacen(old, new, 1))
}

#[test]
fn switches_add_a_gateway_interface_and_nat_instances() {
    let c = Config::parse(&switched("", "")).unwrap();
    let names: Vec<&str> = c.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Port2", "Port3", "vm1", "vm3", "internal"]);
    assert!(matches!(c.ports[4].role, PortRole::Gateway { .. }));
    let nat = c.nat_configs();
    assert_eq!(nat.len(), 1);
    assert_eq!(nat[0].outside, 0);
    assert_eq!(nat[0].external.to_string(), "10.0.2.15");
    assert_eq!(nat[0].inside[0].to_string(), "172.28.0.0/24");
    assert_eq!(nat[0].policy.filtering, Filtering::EndpointIndependent);
    assert_eq!(nat[0].policy.ports, 20000..=29999);
    assert_eq!(nat[0].policy.udp_timeout.as_secs(), 600);
    let l2 = c.switching();
    assert_eq!((l2.member_of(2), l2.router_of(4)), (Some(0), Some(0)));
    assert_eq!(
        (l2.member_of(3), l2.member_of(1), l2.router_of(1)),
        (Some(1), Some(1), Some(1))
    );
    assert!(l2.security(2).is_some_and(|s| s.mac.is_some()));
    // A route may go through the gateway interface, not through a member.
    let ok = format!("{}\n[[route]]\ninterface = \"internal\"\ndestination = \"10.9.0.0/16\"\nnext_hop = \"172.28.0.9\"\n", switched("", ""));
    Config::parse(&ok).unwrap();
    let e = refused(&ok.replace("interface = \"internal\"", "interface = \"vm1\""));
    assert_eq!(e.field, "route[1].interface");
}

#[test]
fn bad_switches_name_the_field() {
    for (old, new, field) in [
        ("kind = \"internal\"", "kind = \"hub\"", "switch[0].kind"),
        (
            "address = \"172.28.0.1/24\"",
            "address = \"10.0.2.15/24\"",
            "switch[0].address",
        ),
        ("nat = \"Port2\"", "nat = \"vm1\"", "switch[0].nat"),
        ("nat = \"Port2\"", "nat = \"Port9\"", "switch[0].nat"),
        ("uplink = \"Port3\"", "uplink = \"vm3\"", "switch[1].uplink"),
        ("mac_limit = 64", "mac_limit = 0", "switch[1].mac_limit"),
        (
            "switch = \"external\"",
            "switch = \"nowhere\"",
            "port[3].switch",
        ),
        (
            "switch = \"external\"",
            "switch = \"external\"\nmac = \"02:00:00:00:00:09\"",
            "port[3].mac",
        ),
        (
            "allowed_mac = \"02:00:00:00:28:10\"",
            "allowed_mac = \"ff:ff:ff:ff:ff:ff\"",
            "port[2].allowed_mac",
        ),
        ("udp_timeout = 600", "udp_timeout = 30", "nat.udp_timeout"),
        (
            "filtering = \"endpoint-independent\"",
            "filtering = \"open\"",
            "nat.filtering",
        ),
        (
            "port_range = \"20000-29999\"",
            "port_range = \"80-90\"",
            "nat.port_range",
        ),
    ] {
        let e = refused(&switched(old, new));
        assert_eq!(e.field, field, "{old} -> {new}: {e}");
    }
    let e = refused(&switched("udp_timeout = 600", "udp_timeout = 30"));
    assert!(e.message.contains("RFC 4787"), "{e}");
    let e = refused(&format!("{GOOD}\n[[port]]\nname = \"x\"\nmac = \"02:00:00:00:00:77\"\nallowed_mac = \"02:00:00:00:00:78\"\n"));
    assert_eq!(e.field, "port[2].allowed_mac");
}

#[test]
fn syntax_error_has_a_line() {
    let e = refused("[[port]\nname = 1");
    assert_eq!(e.line, Some(1));
}

#[test]
fn metrics_take_an_address_and_port_or_an_absolute_path() {
    for (text, want) in [
        (
            "127.0.0.1:9469",
            MetricsAddr::Tcp("127.0.0.1:9469".parse().unwrap()),
        ),
        (
            "[::1]:9469",
            MetricsAddr::Tcp("[::1]:9469".parse().unwrap()),
        ),
        (
            "/run/edgefwd/metrics.sock",
            MetricsAddr::Unix("/run/edgefwd/metrics.sock".into()),
        ),
    ] {
        let c = Config::parse(&format!("[control]\nmetrics = \"{text}\"\n{GOOD}")).unwrap();
        assert_eq!(c.control.metrics, Some(want));
    }
    assert_eq!(Config::parse(GOOD).unwrap().control.metrics, None);
    for bad in ["localhost:9469", "9469", "127.0.0.1", "metrics.sock"] {
        let e = refused(&format!("[control]\nmetrics = \"{bad}\"\n{GOOD}"));
        assert_eq!(e.field, "control.metrics", "{bad}: {e}");
        assert_eq!(e.line, Some(2), "{bad}: {e}");
    }
}

const SERVICES: &str = r#"
[services]
load_balancer_pool = ["10.0.2.100-10.0.2.101", "2001:db8:2::100/124"]

[[service]]
name = "web"
kind = "load-balancer"
ports = [{ protocol = "tcp", port = 80, target_port = 8080 }, { protocol = "udp", port = 53 }]
backends = ["192.168.20.51", "192.168.20.52 weight=2"]

[[service]]
name = "api"
kind = "cluster-ip"
address = "10.96.0.10"
ports = [{ protocol = "tcp", port = 443 }]
"#;

#[test]
fn services_parse_with_addresses_from_the_pool() {
    let c = Config::parse(&format!("{GOOD}{SERVICES}")).unwrap();
    assert_eq!(c.services.len(), 2);
    let web = &c.services[0];
    assert_eq!(
        web.vips,
        ["10.0.2.100".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(web.announce, Some(0), "Port2's subnet holds the address");
    assert_eq!((web.ports[1].port, web.ports[1].target), (53, 53));
    assert_eq!(web.backends[1].weight, 2);
    assert_eq!(c.services[1].announce, None);
    assert_eq!(c.services_policy.flows, DEFAULT_FLOWS);
    assert_eq!(web.affinity, None);
    let sticky = Config::parse(&format!(
        "{GOOD}{}",
        SERVICES.replacen(
            "kind = \"load-balancer\"\n",
            "kind = \"load-balancer\"\naffinity = \"client-ip\"\n",
            1
        )
    ))
    .unwrap();
    assert_eq!(sticky.services[0].affinity, Some(10_800));
}

#[test]
fn dual_stack_services_take_an_address_of_each_backend_family_from_the_pool() {
    let text = SERVICES
        .replace(
            "\"192.168.20.52 weight=2\"]",
            "\"192.168.20.52 weight=2\", \"2001:db8:20::51\"]",
        )
        .replace(
            "address = \"10.96.0.10\"",
            "addresses = [\"10.96.0.10\", \"fd00::10\"]\nbackends = [\"10.244.1.5\", \"fd00:244::5\"]",
        );
    let six_only = "\n[[service]]\nname = \"six\"\nkind = \"load-balancer\"\nports = [{ protocol = \"tcp\", port = 80 }]\nbackends = [\"2001:db8:20::52\"]\n";
    let c = Config::parse(&format!("{GOOD}{text}{six_only}")).unwrap();
    let ip = |a: &str| a.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        c.services[0].vips,
        [ip("10.0.2.100"), ip("2001:db8:2::100")]
    );
    assert_eq!(c.services[1].vips, [ip("10.96.0.10"), ip("fd00::10")]);
    assert_eq!(c.services[2].vips, [ip("2001:db8:2::101")], "IPv6 only");
    assert_eq!(
        c.services[2].announce,
        Some(0),
        "Port2's IPv6 subnet holds it"
    );
    // Written out and read back (what a restart reads), nothing changes.
    let again = super::check_services(
        &super::services_toml(&c.services, &c.ports),
        &c.ports,
        &c.services_policy.pool,
    )
    .unwrap();
    assert_eq!(again, c.services);
}

#[test]
fn bad_services_are_refused_by_field() {
    let with = |old: &str, new: &str| {
        assert!(SERVICES.contains(old), "fixture lacks {old:?}");
        format!("{GOOD}{}", SERVICES.replacen(old, new, 1))
    };
    for (text, field, says) in [
        (
            with("name = \"web\"", "name = \"Web\""),
            "service[0].name",
            "1-63 of a-z",
        ),
        (
            with("name = \"api\"", "name = \"web\""),
            "service[1].name",
            "used twice",
        ),
        (
            with("kind = \"cluster-ip\"", "kind = \"nodeport\""),
            "service[1].kind",
            "not load-balancer",
        ),
        (
            with("address = \"10.96.0.10\"", "address = \"10.0.2.15\""),
            "service[1].address",
            "address of a port",
        ),
        (
            with(
                "address = \"10.96.0.10\"",
                "addresses = [\"10.96.0.10\", \"10.96.0.11\"]",
            ),
            "service[1].addresses[1]",
            "one address of each family",
        ),
        (
            with(
                "address = \"10.96.0.10\"",
                "address = \"10.96.0.10\"\naddresses = [\"fd00::10\"]",
            ),
            "service[1].addresses",
            "not both",
        ),
        (
            with(
                "address = \"10.96.0.10\"\n",
                "address = \"10.96.0.10\"\nbackends = [\"fd00:244::5\"]\n",
            ),
            "service[1].backends[0]",
            "no IPv6 address",
        ),
        (
            with("address = \"10.96.0.10\"", "address = \"2001:db8:2::15\""),
            "service[1].address",
            "address of a port",
        ),
        (
            with(
                "{ protocol = \"udp\", port = 53 }",
                "{ protocol = \"tcp\", port = 80 }",
            ),
            "service[0].ports[1].port",
            "used twice",
        ),
        (
            with("protocol = \"udp\"", "protocol = \"sctp\""),
            "service[0].ports[1].protocol",
            "not tcp or udp",
        ),
        (
            with("target_port = 8080", "target_port = 70000"),
            "service[0].ports[0].target_port",
            "between 1 and 65535",
        ),
        (
            with("weight=2", "weight=0"),
            "service[0].backends[1]",
            "between 1 and 255",
        ),
        (
            with("\"192.168.20.52 weight=2\"", "\"192.168.20.51\""),
            "service[0].backends[1]",
            "listed twice",
        ),
        (
            with("10.0.2.100-10.0.2.101", "10.0.2.101-10.0.2.100"),
            "services.load_balancer_pool[0]",
            "low to high",
        ),
        (
            with(
                "address = \"10.96.0.10\"\n",
                "address = \"10.96.0.10\"\nannounce = \"Port2\"\n",
            ),
            "service[1].announce",
            "not announced",
        ),
        (
            with(
                "kind = \"load-balancer\"\n",
                "kind = \"load-balancer\"\naffinity = \"sticky\"\n",
            ),
            "service[0].affinity",
            "not none or client-ip",
        ),
        (
            with(
                "kind = \"load-balancer\"\n",
                "kind = \"load-balancer\"\naffinity_timeout = 60\n",
            ),
            "service[0].affinity_timeout",
            "only with affinity",
        ),
        (
            with(
                "kind = \"load-balancer\"\n",
                "kind = \"load-balancer\"\naffinity = \"client-ip\"\naffinity_timeout = 0\n",
            ),
            "service[0].affinity_timeout",
            "between 1 and 86400",
        ),
    ] {
        let e = refused(&text);
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(says), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
    // An exhausted pool is refused naming the pool.
    let three = format!(
        "{GOOD}{SERVICES}\n[[service]]\nname = \"b\"\nkind = \"load-balancer\"\nports = [{{ protocol = \"tcp\", port = 1 }}]\n\n[[service]]\nname = \"c\"\nkind = \"load-balancer\"\nports = [{{ protocol = \"tcp\", port = 1 }}]\n"
    );
    let e = refused(&three);
    assert_eq!(e.field, "services.load_balancer_pool", "{e}");
    assert!(e.message.contains("\"c\""), "{e}");
}

#[test]
fn a_host_mirror_is_a_port_after_the_others_with_the_ports_mac_and_mtu() {
    let c = Config::parse(&with(
        "gateway = \"10.0.2.1\"",
        "gateway = \"10.0.2.1\"\nhost = \"eth2@appliance\"",
    ))
    .unwrap();
    assert_eq!(c.ports.len(), 3);
    let m = &c.ports[2];
    assert_eq!(m.name, "Port2/host");
    assert_eq!(m.mac, c.ports[0].mac);
    assert_eq!(m.mtu, c.ports[0].mtu);
    assert!(m.addresses.is_empty());
    assert_eq!(
        m.bind,
        Binding::Tap {
            name: "eth2".into(),
            netns: Some("appliance".into())
        }
    );
    assert_eq!(c.mirrors(), vec![(0, 2)]);
}

#[test]
fn host_mirror_refusals_name_the_field() {
    for (host, says) in [
        ("\"\"", "expected NAME or NAME@NETNS"),
        ("\"sixteen-chars-xx\"", "expected NAME or NAME@NETNS"),
        ("\"a/b\"", "expected NAME or NAME@NETNS"),
        ("\"edge-port2\"", "already the device of Port2"),
    ] {
        let e = refused(&with(
            "gateway = \"10.0.2.1\"",
            &format!("gateway = \"10.0.2.1\"\nhost = {host}"),
        ));
        assert_eq!(e.field, "port[0].host", "{host}: {e}");
        assert!(e.message.contains(says), "{host}: {e}");
    }
    // A route through a mirror is refused: the host's routes go through
    // the port.
    let e = refused(
        &with(
            "gateway = \"10.0.2.1\"",
            "gateway = \"10.0.2.1\"\nhost = \"eth2\"",
        )
        .replace(
            "interface = \"Port3\"\ndestination",
            "interface = \"Port2/host\"\ndestination",
        ),
    );
    assert_eq!(e.field, "route[0].interface", "{e}");
    assert!(e.message.contains("host mirror of Port2"), "{e}");
}
