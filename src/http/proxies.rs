//! Which client address a request comes from: the TCP peer, or what `X-Forwarded-For` says when
//! the peer is a proxy the operator trusts (`--trusted-proxies`). The address keys the
//! failed-login limits and is stored as an instance's IP, so a client that talks to the server
//! directly must not be able to choose it by sending the header.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// Peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// `loopback` in `--trusted-proxies`.
const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];
/// `private` in `--trusted-proxies`: RFC 1918 and IPv6 unique-local networks, where load
/// balancers and ingress controllers usually sit.
const PRIVATE: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

impl Default for TrustedProxies {
    /// Loopback and private networks (the `--trusted-proxies` default).
    fn default() -> Self {
        Self(nets(LOOPBACK).chain(nets(PRIVATE)).collect())
    }
}

/// The ranges of a named list (static and valid).
fn nets(list: &'static [&'static str]) -> impl Iterator<Item = IpNet> {
    list.iter().filter_map(|net| net.parse().ok())
}

impl TrustedProxies {
    /// Parses `--trusted-proxies` entries: addresses, CIDR ranges, `loopback`, `private`, or
    /// `none` (trust no proxy: the peer is always the client).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            match entry {
                "" | "none" => {}
                "loopback" => ranges.extend(nets(LOOPBACK)),
                "private" => ranges.extend(nets(PRIVATE)),
                _ => {
                    let net = entry
                        .parse::<IpNet>()
                        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            format!(
                                "trusted proxy {entry:?} is not an address, a CIDR range, \
                                 `loopback`, `private` or `none`"
                            )
                        })?;
                    ranges.push(net);
                }
            }
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` carrying `forwarded` (`X-Forwarded-For`): the peer
    /// itself unless it is trusted; else, walking the header from the right (the entry the
    /// nearest proxy added), the first address that is not itself a trusted proxy. An entry
    /// that is not an address ends the walk at the last good one. Without a peer (in-process
    /// callers), the header is walked as if from a trusted proxy.
    pub fn client_ip(&self, forwarded: Option<&str>, peer: Option<SocketAddr>) -> IpAddr {
        let peer_ip = peer.map(|p| p.ip().to_canonical());
        if let Some(ip) = peer_ip {
            if !self.contains(ip) {
                return ip;
            }
        }
        let mut client = peer_ip;
        for hop in forwarded.into_iter().flat_map(|h| h.rsplit(',')) {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            let ip = ip.to_canonical();
            client = Some(ip);
            if !self.contains(ip) {
                break;
            }
        }
        client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_direct_client_cannot_choose_its_address() {
        let trusted = TrustedProxies::default();
        let spoofed = Some("198.51.100.7");
        assert_eq!(
            trusted.client_ip(spoofed, peer("203.0.113.9")),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::parse(&["none"]).unwrap();
        assert_eq!(none.client_ip(spoofed, peer("127.0.0.1")), ip("127.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::default();
        // The client wrote its own first entry; the load balancer appended the real address.
        let chain = Some("1.2.3.4, 203.0.113.7, 10.0.0.1");
        assert_eq!(
            trusted.client_ip(chain, peer("127.0.0.1")),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client_ip(Some("2001:db8::1"), peer("::1")),
            ip("2001:db8::1")
        );
        assert_eq!(trusted.client_ip(None, peer("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            trusted.client_ip(Some("not-an-ip"), peer("127.0.0.1")),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client_ip(Some("203.0.113.7, junk, 10.0.0.2"), peer("10.0.0.1")),
            ip("10.0.0.2"),
            "a broken entry ends the walk at the last good one"
        );
        // IPv4-mapped IPv6 peers (a dual-stack listener) count as their IPv4 address.
        assert_eq!(
            trusted.client_ip(Some("203.0.113.8"), peer("::ffff:127.0.0.1")),
            ip("203.0.113.8")
        );
        assert_eq!(
            trusted.client_ip(Some("203.0.113.8"), None),
            ip("203.0.113.8")
        );
    }

    #[test]
    fn the_option_takes_addresses_ranges_and_names() {
        let list = TrustedProxies::parse(&["192.0.2.10", "198.51.100.0/24", "loopback"]).unwrap();
        assert!(list.contains(ip("192.0.2.10")));
        assert!(!list.contains(ip("192.0.2.11")));
        assert!(list.contains(ip("198.51.100.200")));
        assert!(list.contains(ip("::1")));
        assert!(!list.contains(ip("10.0.0.1")));
        assert!(TrustedProxies::parse(&["private"])
            .unwrap()
            .contains(ip("172.20.0.1")));
        assert!(TrustedProxies::parse(&["none"]).unwrap().0.is_empty());
        let err = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
