//! Config validation: every refusal names the field and the line.

use super::*;

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
fn bad_binding_and_gateway() {
    let e = refused(&with("tap:edge-port2", "vhost:x"));
    assert_eq!(e.field, "port[0].bind");
    let e = refused(&with("gateway = \"10.0.2.1\"", "gateway = \"10.9.2.1\""));
    assert_eq!(e.field, "port[0].gateway");
}

#[test]
fn switches_are_refused_until_supported() {
    let e = refused(&format!("{GOOD}\n[[switch]]\nname = \"internal\"\n"));
    assert!(e.message.contains("not supported yet"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = refused("[[port]\nname = 1");
    assert_eq!(e.line, Some(1));
}
