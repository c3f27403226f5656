//! SSRF guard: deliveries may not reach loopback, private, link-local, multicast, unspecified,
//! documentation and other special-purpose addresses, nor IPv6 forms that carry such an IPv4
//! address (mapped, translated, compatible, 6to4, Teredo, NAT64), unless a configured CIDR allows
//! them. Directly, it is applied to the *resolved* addresses inside the HTTP client's resolver, so
//! a DNS answer that changes between checks (rebinding) cannot get around it; IP-literal URLs and
//! targets reached through a configured proxy are checked by the client before the request.
//! A refusal names only the host as the URL gives it: what a name resolves to goes to the
//! operator's log, never into an attempt record an API user can read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why a delivery was not sent. The text is stored in the attempt record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused by the address policy: {host}")]
    Blocked { host: String },
    #[error(
        "refused by the address policy: {host} cannot be resolved here, so its address cannot \
         be checked before the request goes to the proxy"
    )]
    Unresolvable { host: String },
}

#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Arc<Vec<IpNet>>,
    /// The configured proxy's host name: connecting to the proxy is not a delivery, so the
    /// resolver lets its addresses through (targets sent through it are checked by the client).
    exempt: Option<Arc<str>>,
}

impl Guard {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Guard {
            allowed: Arc::new(allowed),
            exempt: None,
        }
    }

    /// The same guard, letting the resolver pass `host` (the configured proxy) unchecked.
    pub fn exempting(self, host: &str) -> Self {
        Guard {
            exempt: Some(host.to_ascii_lowercase().into()),
            ..self
        }
    }

    /// Why `ip` may not be reached, or `None` if it may. An allowed range opens exactly the
    /// addresses it contains: `127.0.0.0/8` does not open `::ffff:127.0.0.1` or `2002:7f00::/24`,
    /// which must be listed themselves.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        classify(ip)
    }

    /// Check an address the URL gives literally; `host` is the URL's spelling of it.
    pub fn check_literal(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        match self.refusal(ip) {
            None => Ok(()),
            Some(why) => Err(refuse(host, ip, why)),
        }
    }

    /// Resolve `host` here and refuse it if *any* of its addresses is refused, or if it does not
    /// resolve: for a target sent through a proxy, which makes its own lookup and may pick any of
    /// them. The proxy may still get another answer than ours (rebinding between the two
    /// lookups); the proxy's own egress policy is the defence against that.
    pub async fn check_name(&self, host: &str, port: u16) -> Result<(), Refusal> {
        let found: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                tracing::warn!(%host, error = %e, "delivery refused: the target does not resolve, so it cannot be checked");
                Vec::new()
            }
        };
        if found.is_empty() {
            return Err(Refusal::Unresolvable {
                host: host.to_string(),
            });
        }
        for a in found {
            self.check_literal(host, a.ip())?;
        }
        Ok(())
    }
}

/// The refusal an API user sees; the operator's log gets the address and the reason.
fn refuse(host: &str, ip: IpAddr, why: &str) -> Refusal {
    tracing::warn!(%host, address = %ip, reason = why, "delivery refused by the address policy");
    Refusal::Blocked {
        host: host.to_string(),
    }
}

/// The special-purpose class of an address, if it is one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_unspecified() || o[0] == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        "multicast or reserved"
    } else if ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
    {
        "documentation or special-purpose"
    } else {
        return None;
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let bits = u128::from(ip);
    let v4 = |x: u128| Ipv4Addr::from((x & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // Translation forms stand for their IPv4 address: they are judged as that address alone.
    // IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96, RFC 2765) and the NAT64
    // well-known prefix (64:ff9b::/96, RFC 6052).
    if bits >> 32 == 0xffff
        || bits >> 32 == 0xffff_0000
        || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000
    {
        return classify_v4(v4(bits));
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) is local like fc00::/7: the network picks the
    // prefix length, so where the IPv4 address sits (and which one it is) cannot be told from
    // the address. Refused unless listed in the allow-list.
    if bits >> 80 == 0x0064_ff9b_0001 {
        return Some("local-use NAT64");
    }
    // IPv4-compatible (::a.b.c.d, deprecated by RFC 4291): nothing legitimate uses it.
    if bits >> 32 == 0 {
        return Some(classify_v4(v4(bits)).unwrap_or("reserved"));
    }
    // 6to4 (2002::/16, RFC 3056) tunnels to the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        if let Some(why) = classify_v4(v4(bits >> 80)) {
            return Some(why);
        }
    }
    // Teredo (2001::/32, RFC 4380): the server's IPv4 address in bits 32..64, the client's in
    // the last 32 bits, inverted.
    if s[0] == 0x2001 && s[1] == 0 {
        if let Some(why) = classify_v4(v4(bits >> 64)).or_else(|| classify_v4(v4(!bits))) {
            return Some(why);
        }
    }
    Some(if (s[0] & 0xfe00) == 0xfc00 {
        "private"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else if ip.is_multicast() {
        "multicast or reserved"
    } else if (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] < 0x1000)
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0)
        || (s[0] == 0x2001 && matches!(s[1] & 0xfff0, 0x0010 | 0x0020))
    {
        // Documentation (2001:db8::/32, 3fff::/20), benchmarking (2001:2::/48), ORCHID.
        "documentation or special-purpose"
    } else if (s[0] & 0xe000) != 0x2000 {
        // Only 2000::/3 is allocated for global unicast; the rest is reserved.
        "reserved"
    } else {
        return None;
    })
}

/// The HTTP client's resolver: resolves with the system resolver, then drops refused addresses;
/// when none is left, the connection fails with a [`Refusal`].
impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard
                .exempt
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&host))
            {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match guard.check_literal(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused = Some(r);
                        false
                    }
                })
                .collect();
            match refused {
                Some(r) if allowed.is_empty() => Err(Box::new(r) as _),
                None if allowed.is_empty() => Err(format!("no address found for {host}").into()),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        classify(s.parse().unwrap()).is_some()
    }

    #[test]
    fn special_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.5.5.5",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fd00::1",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
            "0.0.0.0",
            "::",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::1",
            "3fff::1",
            "100.64.0.1",
            "255.255.255.255",
            "198.18.0.1",
        ] {
            assert!(refused(a), "{a} allowed");
        }
    }

    #[test]
    fn ipv4_mapped_and_translated_forms_are_judged_by_their_ipv4_address() {
        for a in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-translated (RFC 2765), as in the report: ::ffff:0:7f00:1 is 127.0.0.1.
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:c0a8:101",
        ] {
            assert!(refused(a), "{a} allowed");
        }
        assert!(!refused("::ffff:1.1.1.1"));
        assert!(!refused("::ffff:0:808:808"));
    }

    #[test]
    fn ipv4_compatible_addresses_are_refused() {
        for a in ["::127.0.0.1", "::7f00:1", "::10.0.0.1", "::169.254.169.254"] {
            assert!(refused(a), "{a} allowed");
        }
        // Deprecated (RFC 4291) whatever it embeds.
        assert_eq!(classify("::8.8.8.8".parse().unwrap()), Some("reserved"));
    }

    #[test]
    fn six_to_four_embedding_a_refused_ipv4_is_refused() {
        for a in [
            "2002:7f00:1::",
            "2002:7f00:0001::1",
            "2002:a00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101:1::1",
            "2002::",
        ] {
            assert!(refused(a), "{a} allowed");
        }
        assert_eq!(classify("2002:7f00:1::".parse().unwrap()), Some("loopback"));
        assert!(!refused("2002:808:808::1"), "6to4 of a public address");
    }

    #[test]
    fn teredo_embedding_a_refused_ipv4_is_refused() {
        // Client 127.0.0.1 (inverted: 80ff:fffe), public server 65.54.227.120.
        assert_eq!(
            classify("2001:0:4136:e378:8000:63bf:80ff:fffe".parse().unwrap()),
            Some("loopback")
        );
        // Client 10.0.0.1 (inverted: f5ff:fffe).
        assert!(refused("2001:0:4136:e378:8000:63bf:f5ff:fffe"));
        // Server 192.168.1.1, public client 8.8.8.8 (inverted: f7f7:f7f7).
        assert!(refused("2001:0:c0a8:101::f7f7:f7f7"));
        // Public server and client (the RFC 4380 example: client 192.0.2.45 is documentation,
        // so use 8.8.8.8).
        assert!(!refused("2001:0:4136:e378:8000:63bf:f7f7:f7f7"));
    }

    #[test]
    fn site_local_is_refused() {
        assert_eq!(classify("fec0::1".parse().unwrap()), Some("site-local"));
        assert!(refused("feff::1"));
    }

    #[test]
    fn nat64_embedding_a_refused_ipv4_is_refused() {
        for a in [
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            // The local-use prefix (RFC 8215), whatever it embeds.
            "64:ff9b:1::7f00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:a00:0:1::",
        ] {
            assert!(refused(a), "{a} allowed");
        }
        assert!(!refused("64:ff9b::808:808"));
        // Outside the NAT64 prefixes, 0064::/16 is not global unicast.
        assert!(refused("64:ff9b:2::808:808"));
        // A network that uses a local-use prefix lists it.
        let g = Guard::new(vec!["64:ff9b:1::/48".parse().unwrap()]);
        assert_eq!(g.refusal("64:ff9b:1::808:808".parse().unwrap()), None);
    }

    #[test]
    fn reserved_ipv6_outside_global_unicast_is_refused() {
        for a in ["100::1", "4000::1", "5f00::1", "e000::1"] {
            assert_eq!(classify(a.parse().unwrap()), Some("reserved"), "{a}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2404:6800:4003:c00::8a",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(a), "{a} refused");
        }
    }

    #[test]
    fn allow_list_opens_exactly_the_ranges_listed() {
        let g = Guard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert_eq!(g.refusal("127.0.0.1".parse().unwrap()), None);
        assert_eq!(g.refusal("::1".parse().unwrap()), None);
        assert_eq!(g.refusal("10.0.0.1".parse().unwrap()), Some("private"));
        assert_eq!(
            Guard::default().refusal("127.0.0.1".parse().unwrap()),
            Some("loopback")
        );
        // An IPv4 range does not open the IPv6 forms that embed it.
        for a in [
            "2002:7f00:1::",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(g.refusal(a.parse().unwrap()).is_some(), "{a} opened");
        }
        let g = Guard::new(vec!["2002:7f00::/24".parse().unwrap()]);
        assert_eq!(g.refusal("2002:7f00:1::".parse().unwrap()), None);
    }

    #[test]
    fn a_refusal_names_the_host_not_the_address() {
        let r = Guard::default()
            .check_literal("rebind.test", "127.0.0.1".parse().unwrap())
            .unwrap_err();
        let text = r.to_string();
        assert_eq!(text, "refused by the address policy: rebind.test");
        assert!(!text.contains("127.0.0.1") && !text.contains("loopback"));
    }

    #[tokio::test]
    async fn names_for_a_proxy_are_resolved_and_checked_here() {
        let g = Guard::default();
        assert_eq!(
            g.check_name("localhost", 80).await,
            Err(Refusal::Blocked {
                host: "localhost".into()
            })
        );
        assert!(matches!(
            g.check_name("herald-test.invalid", 80).await,
            Err(Refusal::Unresolvable { .. })
        ));
        let open = Guard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert_eq!(open.check_name("localhost", 80).await, Ok(()));
    }
}
