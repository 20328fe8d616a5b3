//! Optional source-IP allowlists per sender (`INTAKE_LT_ALLOWED_SOURCES`,
//! `INTAKE_LINA_ALLOWED_SOURCES`), with `X-Forwarded-For` believed only when
//! the peer is one of `INTAKE_TRUSTED_PROXIES`.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
pub use ipnet::IpNet;

use crate::error::GatewayError;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Which sources may call which sender; `None`: any source.
#[derive(Clone, Debug, Default)]
pub struct SourceRules {
    pub lt: Option<Vec<IpNet>>,
    pub lina: Option<Vec<IpNet>>,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer, a proxy).
    pub trusted_proxies: Vec<IpNet>,
}

/// Parses a comma-separated list of CIDRs (a bare address is one host).
/// Empty or blank: `None`, which means "any source" for an allowlist.
pub fn parse_cidrs(name: &'static str, text: &str) -> Result<Option<Vec<IpNet>>, InvalidCidr> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    entries
        .into_iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidCidr {
                    name,
                    entry: entry.to_owned(),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A setting entry that is neither a CIDR nor an address (named, so the
/// start-up error says which setting to fix).
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is not a CIDR (e.g. 192.0.2.0/24) nor an IP address")]
pub struct InvalidCidr {
    pub name: &'static str,
    pub entry: String,
}

/// Refuses (403) a request whose client address is not in `allowed`;
/// `None` lets every source through.
pub fn check_source(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    allowed: Option<&[IpNet]>,
    trusted_proxies: &[IpNet],
) -> Result<(), GatewayError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let peer = peer.map(|peer| peer.ip());
    let forwarded = headers
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok());
    let client = peer.and_then(|peer| client_address(peer, forwarded, trusted_proxies));
    match client {
        Some(client) if allowed.iter().any(|net| net.contains(&client)) => Ok(()),
        _ => Err(GatewayError::SourceNotAllowed),
    }
}

/// The address of the client: the peer, unless the peer is a trusted proxy;
/// then the rightmost `X-Forwarded-For` entry that is not a trusted proxy
/// (entries to its left could have been written by anyone). `None` when
/// that entry is not an address, so a garbled header is never let through.
/// Several headers count as one list, in order (RFC 9110, 5.3).
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    let peer = peer.to_canonical();
    if !trusted(&peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        client = parse_forwarded(entry)?;
        if !trusted(&client) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port or, for
/// IPv6, in brackets.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .or_else(|_| entry.trim_start_matches('[').trim_end_matches(']').parse())
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(text: &str) -> Vec<IpNet> {
        parse_cidrs("TEST", text)
            .expect("valid CIDRs")
            .expect("not blank")
    }

    fn client(peer: &str, forwarded: &[&str], trusted: &str) -> Option<String> {
        let trusted = parse_cidrs("TEST", trusted)
            .expect("valid CIDRs")
            .unwrap_or_default();
        client_address(
            peer.parse().expect("an address"),
            forwarded.iter().copied(),
            &trusted,
        )
        .map(|address| address.to_string())
    }

    #[test]
    fn parses_cidrs_and_bare_addresses_and_names_the_bad_entry() {
        assert_eq!(nets("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32").len(), 3);
        assert!(parse_cidrs("TEST", " , ").is_ok_and(|nets| nets.is_none()));
        let error = parse_cidrs("INTAKE_X", "10.0.0.0/8,10.0.0.0/33").expect_err("/33 is invalid");
        assert_eq!(error.name, "INTAKE_X");
        assert_eq!(error.entry, "10.0.0.0/33");
        assert!(parse_cidrs("TEST", "example.com").is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client("203.0.113.9", &["10.1.1.1"], ""),
            Some("203.0.113.9".into())
        );
        assert_eq!(
            client("203.0.113.9", &["10.1.1.1"], "10.0.0.0/8"),
            Some("203.0.113.9".into())
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = "127.0.0.0/8, 10.0.0.0/8";
        // The leftmost entry is whatever the client claimed: ignored.
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4, 198.51.100.7, 10.0.0.2"], trusted),
            Some("198.51.100.7".into())
        );
        // Two headers are one list.
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4", "198.51.100.7:4711"], trusted),
            Some("198.51.100.7".into())
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]"], trusted),
            Some("2001:db8::1".into())
        );
        // Only proxies: the leftmost of them.
        assert_eq!(
            client("127.0.0.1", &["10.0.0.3"], trusted),
            Some("10.0.0.3".into())
        );
        // No header: the proxy itself.
        assert_eq!(client("127.0.0.1", &[], trusted), Some("127.0.0.1".into()));
        // Garbage where the client should be: no client at all.
        assert_eq!(client("127.0.0.1", &["1.2.3.4, nonsense"], trusted), None);
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        assert_eq!(
            client("::ffff:127.0.0.1", &["192.0.2.1"], "127.0.0.0/8"),
            Some("192.0.2.1".into())
        );
    }
}
