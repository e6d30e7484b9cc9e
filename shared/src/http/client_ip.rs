//! The client address of a request (docs/api.md#client-ip): the connection's peer (API
//! Gateway's `sourceIp` in Lambda, the TCP peer locally), or, only when that peer is a trusted
//! proxy, the rightmost `X-Forwarded-For` hop that is not one (the leftmost hops are whatever
//! the client wrote).

use std::net::IpAddr;

use lambda_http::http::HeaderMap;

use crate::domain::client_ip::{Cidr, ClientIp};

/// The address the request arrived from, put into the request's extensions by the edge that
/// received it (the local server, or the Lambda adapter from `requestContext.http.sourceIp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

pub fn resolve(peer: Option<Peer>, headers: &HeaderMap, trusted: &[Cidr]) -> ClientIp {
    let Some(Peer(peer)) = peer else {
        return ClientIp::unknown();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return ClientIp::new(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    let client = hops.iter().rev().find(|ip| !is_trusted(**ip));
    ClientIp::new(*client.unwrap_or(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn peer(ip: &str) -> Option<Peer> {
        Some(Peer(ip.parse().unwrap()))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let ip = resolve(peer("198.51.100.9"), &headers("1.2.3.4"), &[]);
        assert_eq!(ip.key(), "198.51.100.9");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = resolve(
            peer("10.0.0.2"),
            &headers("6.6.6.6, 203.0.113.7, 10.0.0.1"),
            &trusted,
        );
        assert_eq!(ip.key(), "203.0.113.7");
    }

    #[test]
    fn a_trusted_peer_without_forwarding_is_itself_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = resolve(peer("10.0.0.2"), &HeaderMap::new(), &trusted);
        assert_eq!(ip.key(), "10.0.0.2");
    }
}
