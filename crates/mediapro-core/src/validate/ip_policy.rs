//! Which IP addresses the service may connect to. Pure classification: it never
//! connects anywhere, so it can be tested with private addresses safely.
//!
//! [`is_public_ip`] answers "is this address on the public internet?". [`EgressPolicy`]
//! adds the operator's settings on top (allow private networks, an allow-list of CIDRs)
//! and is what the egress proxy in `crates/egress` asks before every connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// True when the address is publicly routable: not loopback, private, link-local,
/// CGNAT, multicast, documentation, benchmarking, cloud metadata or otherwise reserved.
/// IPv6 forms that embed an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64)
/// are judged by that address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    classify(ip).is_none()
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// A cloud instance-metadata endpoint; refused whatever the settings say.
    Metadata,
    Loopback,
    LinkLocal,
    /// RFC 1918, CGNAT (100.64/10), IPv6 unique-local and site-local.
    Private,
    /// Everything else that is not globally routable: "this network", multicast,
    /// documentation, benchmarking, broadcast, discard.
    Reserved,
}

impl BlockReason {
    /// The reason as a metric label (`mediapro_egress_refusals_total`).
    pub fn label(self) -> &'static str {
        match self {
            BlockReason::Metadata => "metadata",
            BlockReason::Loopback => "loopback",
            BlockReason::LinkLocal => "link_local",
            BlockReason::Private => "private",
            BlockReason::Reserved => "reserved",
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::Metadata => "cloud metadata",
            BlockReason::Loopback => "loopback",
            BlockReason::LinkLocal => "link-local",
            BlockReason::Private => "private",
            BlockReason::Reserved => "reserved",
        })
    }
}

/// A refused address; displays as `10.0.0.5 is a private address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is a {reason} address")]
pub struct Blocked {
    pub ip: IpAddr,
    pub reason: BlockReason,
}

/// The operator's egress settings: which non-public addresses are still allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allow every non-public address except cloud metadata endpoints.
    pub allow_private_networks: bool,
    /// Networks allowed even though they are not public (metadata stays refused).
    pub allowed_networks: Vec<IpNet>,
}

impl EgressPolicy {
    /// May the service connect to `ip`? In order: cloud metadata → refused; inside
    /// `allowed_networks` → allowed; public → allowed; `allow_private_networks` →
    /// allowed; otherwise refused. Embedded IPv4 (mapped, 6to4, ...) is judged as IPv4.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let Some(reason) = classify(ip) else { return Ok(()) };
        if reason == BlockReason::Metadata {
            return Err(Blocked { ip, reason });
        }
        let effective = effective_ip(ip);
        let listed = self.allowed_networks.iter().any(|net| net.contains(&ip) || net.contains(&effective));
        if listed || self.allow_private_networks {
            return Ok(());
        }
        Err(Blocked { ip, reason })
    }
}

/// A bad entry in a network list setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {entry:?}: expected an IP address or CIDR such as 10.1.0.0/16")]
pub struct InvalidNetwork {
    pub entry: String,
}

/// Parse a comma-separated CIDR list such as `"127.0.0.1/32, 10.1.0.0/16"`. A bare IP
/// means a single host (/32 or /128); empty entries are ignored.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, InvalidNetwork> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidNetwork { entry: entry.to_owned() })
        })
        .collect()
}

/// `None` for a public address, otherwise why it is not public.
fn classify(ip: IpAddr) -> Option<BlockReason> {
    match effective_ip(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The address that is really reached: the embedded IPv4 for IPv6 forms that carry
/// one, the address itself otherwise.
fn effective_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, ...
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)]; // AWS IMDS over IPv6

fn classify_v4(ip: Ipv4Addr) -> Option<BlockReason> {
    use BlockReason::*;
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        Some(Metadata)
    } else if a == 127 {
        Some(Loopback)
    } else if a == 169 && b == 254 {
        Some(LinkLocal)
    } else if a == 10                                  // 10/8
        || (a == 172 && (16..32).contains(&b))         // 172.16/12
        || (a == 192 && b == 168)                      // 192.168/16
        || (a == 100 && (64..128).contains(&b))
    // 100.64/10 CGNAT
    {
        Some(Private)
    } else if a == 0                                   // 0.0.0.0/8 "this network"
        || (a == 192 && b == 0 && c == 0)              // 192.0.0/24 IETF
        || (a == 192 && b == 0 && c == 2)              // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19))          // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)           // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)            // TEST-NET-3
        || a >= 224
    // 224/4 multicast, 240/4 reserved, broadcast
    {
        Some(Reserved)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<BlockReason> {
    use BlockReason::*;
    let seg = ip.segments();
    if METADATA_V6.contains(&ip) {
        Some(Metadata)
    } else if ip.is_loopback() {
        Some(Loopback)
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some(LinkLocal) // fe80::/10
    } else if (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfec0 {
        Some(Private) // fc00::/7 unique local, fec0::/10 deprecated site-local
    } else if ip.is_unspecified()
        || (seg[0] & 0xff00) == 0xff00                      // ff00::/8 multicast
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)           // documentation
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])     // 100::/64 discard
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
    // local-use NAT64 with an unknown layout
    {
        Some(Reserved)
    } else {
        None
    }
}

/// The IPv4 address inside an IPv6 address that carries one:
/// - IPv4-mapped `::ffff:a.b.c.d` and IPv4-compatible `::a.b.c.d`;
/// - NAT64 `64:ff9b::a.b.c.d` and local-use NAT64 `64:ff9b:1::a.b.c.d` (only the /96
///   layout; other addresses in `64:ff9b:1::/48` are left to `classify_v6`: reserved);
/// - 6to4 `2002:AABB:CCDD::/48`, the IPv4 in bits 16..48;
/// - Teredo `2001:0::/32`, the client IPv4 in the last 32 bits, inverted.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let tail = v4(seg[6], seg[7]);
    let mapped_or_compatible =
        seg[0..5] == [0, 0, 0, 0, 0] && (seg[5] == 0xffff || (seg[5] == 0 && seg[6] != 0));
    let nat64 =
        seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0, 0, 0, 0] || seg[2..6] == [1, 0, 0, 0]);
    if mapped_or_compatible || nat64 {
        Some(tail)
    } else if seg[0] == 0x2002 {
        Some(v4(seg[1], seg[2]))
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        Some(Ipv4Addr::from(!u32::from(tail)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockReason::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid ip literal")
    }

    fn public(s: &str) -> bool {
        is_public_ip(ip(s))
    }

    fn nets(list: &str) -> Vec<IpNet> {
        parse_networks(list).expect("valid network list")
    }

    #[test]
    fn private_and_special_ipv4_ranges_are_refused() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn neighbours_of_private_ranges_are_public() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "11.0.0.1",
            "223.255.255.254",
        ] {
            assert!(public(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn private_and_special_ipv6_ranges_are_refused() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fe80::abcd:1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_ipv6_and_mapped_public_ipv4_are_allowed() {
        for ip in ["2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"] {
            assert!(public(ip), "{ip} must be allowed");
        }
    }

    /// The default policy (public only): address → `None` if allowed, else the reason.
    #[test]
    fn default_policy_verdicts() {
        let policy = EgressPolicy::default();
        let table: &[(&str, Option<BlockReason>)] = &[
            // IPv4
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.2", Some(Loopback)),
            ("10.0.0.5", Some(Private)),
            ("172.20.1.1", Some(Private)),
            ("192.168.0.1", Some(Private)),
            ("100.64.0.1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("0.0.0.0", Some(Reserved)),
            ("192.0.2.1", Some(Reserved)),
            ("224.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Reserved)),
            // IPv6
            ("2606:4700:4700::1111", None),
            ("::1", Some(Loopback)),
            ("::", Some(Reserved)),
            ("fe80::1", Some(LinkLocal)),
            ("fd12::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Reserved)),
            ("2001:db8::1", Some(Reserved)),
            ("fd00:ec2::254", Some(Metadata)),
            ("fd00:ec2::253", Some(Private)),
            // IPv4-mapped and -compatible
            ("::ffff:8.8.8.8", None),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:a9fe:a9fe", Some(Metadata)),
            ("::10.0.0.1", Some(Private)),
            // NAT64, well-known and local-use
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b::169.254.169.254", Some(Metadata)),
            ("64:ff9b::192.168.1.1", Some(Private)),
            ("64:ff9b:1::8.8.8.8", None),
            ("64:ff9b:1::10.0.0.1", Some(Private)),
            ("64:ff9b:1::100.100.100.200", Some(Metadata)),
            ("64:ff9b:1:ab::8.8.8.8", Some(Reserved)),
            // 6to4: 2002:AABB:CCDD:: carries AA.BB.CC.DD
            ("2002:0808:0808::1", None),
            ("2002:7f00:0001::", Some(Loopback)),
            ("2002:a9fe:a9fe::1", Some(Metadata)),
            ("2002:c0a8:0101:5::1", Some(Private)),
            // Teredo: the client address is the last 32 bits inverted
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None), // client 8.8.8.8
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some(Loopback)), // client 127.0.0.1
            ("2001:0:4136:e378:8000:63bf:5601:5601", Some(Metadata)), // client 169.254.169.254
            ("2001:0:4136:e378:8000:63bf:f5ff:fffa", Some(Private)), // client 10.0.0.5
        ];
        for (addr, expected) in table {
            let got = policy.check(ip(addr)).err().map(|b| b.reason);
            assert_eq!(got, *expected, "{addr}");
        }
    }

    #[test]
    fn settings_never_allow_metadata() {
        let policy = EgressPolicy {
            allow_private_networks: true,
            allowed_networks: nets("169.254.0.0/16, fd00::/8, ::/0, 0.0.0.0/0"),
        };
        for addr in
            ["169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "::ffff:169.254.169.254"]
        {
            let blocked = policy.check(ip(addr)).expect_err(addr);
            assert_eq!(blocked.reason, Metadata, "{addr}");
        }
        assert_eq!(policy.check(ip("169.254.1.1")), Ok(()));
        assert_eq!(policy.check(ip("10.0.0.5")), Ok(()));
    }

    #[test]
    fn allowed_networks_open_only_what_they_list() {
        let policy = EgressPolicy {
            allow_private_networks: false,
            allowed_networks: nets("127.0.0.1/32, 10.1.0.0/16"),
        };
        let table: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true), // judged as the IPv4 it carries
            ("127.0.0.2", false),
            ("::1", false),
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("192.168.1.1", false),
            ("8.8.8.8", true),
        ];
        for (addr, allowed) in table {
            assert_eq!(policy.check(ip(addr)).is_ok(), *allowed, "{addr}");
        }
    }

    #[test]
    fn allow_private_networks_opens_all_but_metadata() {
        let policy = EgressPolicy { allow_private_networks: true, allowed_networks: vec![] };
        for addr in ["10.0.0.5", "127.0.0.1", "::1", "fd12::1", "169.254.1.1", "8.8.8.8"] {
            assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn blocked_names_the_address_and_reason() {
        let policy = EgressPolicy::default();
        let msg = |addr: &str| policy.check(ip(addr)).expect_err(addr).to_string();
        assert_eq!(msg("10.0.0.5"), "10.0.0.5 is a private address");
        assert_eq!(msg("169.254.169.254"), "169.254.169.254 is a cloud metadata address");
        assert_eq!(msg("127.0.0.2"), "127.0.0.2 is a loopback address");
        assert_eq!(msg("fe80::1"), "fe80::1 is a link-local address");
        assert_eq!(msg("240.0.0.1"), "240.0.0.1 is a reserved address");
    }

    #[test]
    fn network_lists_parse_with_bare_addresses_and_blanks() {
        assert_eq!(
            nets(" 127.0.0.1/32, 10.1.0.0/16 ,, ::1, 192.168.1.7 "),
            vec![
                "127.0.0.1/32".parse::<IpNet>().expect("cidr"),
                "10.1.0.0/16".parse().expect("cidr"),
                "::1/128".parse().expect("cidr"),
                "192.168.1.7/32".parse().expect("cidr"),
            ]
        );
        assert_eq!(nets(""), vec![]);
    }

    #[test]
    fn network_list_errors_name_the_bad_entry() {
        let err = parse_networks("10.0.0.0/8, 10.0.0.0/33, 1.2.3.4").expect_err("bad prefix");
        assert_eq!(err.entry, "10.0.0.0/33");
        assert!(err.to_string().contains("\"10.0.0.0/33\""), "{err}");
        assert_eq!(parse_networks("example.com").expect_err("a name").entry, "example.com");
    }
}
