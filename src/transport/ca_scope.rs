//! What the appliance's own CA may vouch for: name constraints written into it when it is
//! made, so that whoever gets hold of its key (a stolen backup, a copied disk) cannot make a
//! certificate the phones that trust it would accept for anyone else's site.
//!
//! The CA is limited to the names the appliance answers on when the CA is made (its host
//! name, `localhost`, `tls.names`), the names a LAN uses (`.local`, `.lan`, `.internal`,
//! `.home.arpa`), loopback and the private and link-local address ranges, and the addresses
//! of `tls.names`. Pure functions: nothing here reads a file or the network.

use std::net::IpAddr;

/// DNS suffixes of names on a LAN, never on the public internet.
const LAN_SUFFIXES: [&str; 4] = ["local", "lan", "internal", "home.arpa"];

/// Address ranges that never route on the public internet: (address, prefix length).
const PRIVATE_RANGES: [(IpAddr, u8); 9] = [
    (IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 0)), 8),
    (IpAddr::V4(std::net::Ipv4Addr::new(172, 16, 0, 0)), 12),
    (IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 0, 0)), 16),
    (IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(std::net::Ipv4Addr::new(100, 64, 0, 0)), 10),
    (IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128),
    (
        IpAddr::V6(std::net::Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)),
        7,
    ),
    (
        IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        10,
    ),
];

fn subnet(ip: IpAddr, prefix: u8) -> rcgen::CidrSubnet {
    match ip {
        IpAddr::V4(v4) => rcgen::CidrSubnet::from_v4_prefix(v4.octets(), prefix),
        IpAddr::V6(v6) => rcgen::CidrSubnet::from_v6_prefix(v6.octets(), prefix),
    }
}

/// The name constraints of a new CA for an appliance answering on `names`.
pub fn constraints(names: &[String]) -> rcgen::NameConstraints {
    let mut permitted: Vec<rcgen::GeneralSubtree> = PRIVATE_RANGES
        .iter()
        .map(|(ip, prefix)| rcgen::GeneralSubtree::IpAddress(subnet(*ip, *prefix)))
        .collect();
    let mut dns: Vec<String> = LAN_SUFFIXES.iter().map(|s| s.to_string()).collect();
    for name in names {
        match name.parse::<IpAddr>() {
            Ok(ip) if !permits_ip(ip) => {
                let full = if ip.is_ipv4() { 32 } else { 128 };
                permitted.push(rcgen::GeneralSubtree::IpAddress(subnet(ip, full)));
            }
            Ok(_) => {}
            Err(_) if !dns.contains(name) => dns.push(name.clone()),
            Err(_) => {}
        }
    }
    permitted.extend(dns.into_iter().map(rcgen::GeneralSubtree::DnsName));
    rcgen::NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }
}

fn in_range(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (ip, base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn permits_ip(ip: IpAddr) -> bool {
    PRIVATE_RANGES
        .iter()
        .any(|(base, prefix)| in_range(ip, *base, *prefix))
}

/// Whether the CA whose certificate is `ca_der` may issue for `name`: a CA without name
/// constraints (made before they were) may issue for anything; a name outside its
/// constraints would make phones refuse the whole certificate.
pub fn permits(ca_der: &[u8], name: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(ca_der) else {
        return false;
    };
    let Ok(Some(constraints)) = cert.name_constraints() else {
        return true;
    };
    let Some(permitted) = &constraints.value.permitted_subtrees else {
        return true;
    };
    let ip = name.parse::<IpAddr>().ok();
    permitted.iter().any(|subtree| match (&subtree.base, ip) {
        (GeneralName::DNSName(base), None) => {
            let (name, base) = (name.to_ascii_lowercase(), base.to_ascii_lowercase());
            name == base || name.ends_with(&format!(".{base}"))
        }
        (GeneralName::IPAddress(bytes), Some(ip)) => match (bytes.len(), ip) {
            (8, IpAddr::V4(_)) => {
                let base = IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).unwrap_or_default());
                let mask = u32::from_be_bytes(<[u8; 4]>::try_from(&bytes[4..]).unwrap_or_default());
                in_range(ip, base, mask.leading_ones() as u8)
            }
            (32, IpAddr::V6(_)) => {
                let base = IpAddr::from(<[u8; 16]>::try_from(&bytes[..16]).unwrap_or_default());
                let mask =
                    u128::from_be_bytes(<[u8; 16]>::try_from(&bytes[16..]).unwrap_or_default());
                in_range(ip, base, mask.leading_ones() as u8)
            }
            _ => false,
        },
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(names: &[&str]) -> Vec<u8> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.name_constraints = Some(constraints(&names));
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("ca").der().to_vec()
    }

    #[test]
    fn the_ca_may_vouch_for_the_appliances_names_and_the_lan_only() {
        let der = ca(&[
            "guardhouse",
            "localhost",
            "203.0.113.7",
            "lookout.example.com",
        ]);
        for name in [
            "guardhouse",
            "localhost",
            "lookout.example.com",
            "gate.site.lan",
            "box.local",
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.9",
            "192.168.1.20",
            "203.0.113.7",
            "::1",
            "fd00::5",
        ] {
            assert!(permits(&der, name), "{name}");
        }
        for name in [
            "www.bank.com",
            "example.com",
            "evil-guardhouse",
            "8.8.8.8",
            "203.0.113.8",
            "2001:db8::1",
        ] {
            assert!(!permits(&der, name), "{name}");
        }
    }
}
