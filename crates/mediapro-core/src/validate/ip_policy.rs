//! Which IP addresses a user-supplied URL may point at. Pure classification: it
//! never connects anywhere, so it can be tested with private addresses safely.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when the address is publicly routable: not loopback, private, link-local,
/// CGNAT, multicast, documentation, benchmarking or otherwise reserved. IPv6 forms
/// that embed an IPv4 address (mapped, compatible, NAT64) are judged by that address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let denied = a == 0                                   // 0.0.0.0/8 "this network"
        || a == 10                                        // 10/8 private
        || (a == 100 && (64..128).contains(&b))           // 100.64/10 CGNAT
        || a == 127                                       // loopback
        || (a == 169 && b == 254)                         // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))            // 172.16/12 private
        || (a == 192 && b == 0 && c == 0)                 // 192.0.0/24 IETF
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 192 && b == 168)                         // 192.168/16 private
        || (a == 198 && (b == 18 || b == 19))             // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || a >= 224; // 224/4 multicast, 240/4 reserved, broadcast
    !denied
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let seg = ip.segments();
    let denied = ip.is_unspecified()
        || ip.is_loopback()
        || (seg[0] & 0xfe00) == 0xfc00   // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80   // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0   // fec0::/10 deprecated site-local
        || (seg[0] & 0xff00) == 0xff00   // ff00::/8 multicast
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0]); // 100::/64 discard
    !denied
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let tail = || Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
    if seg[0..5] == [0, 0, 0, 0, 0] && (seg[5] == 0xffff || (seg[5] == 0 && seg[6] != 0)) {
        return Some(tail());
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return Some(tail());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public_ip(s.parse().expect("valid ip literal"))
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
}
