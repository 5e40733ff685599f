//! CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address) and the
//! allow/deny check done at accept.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address, host bits zero (IPv4 in the low 32 bits).
    net: u128,
    /// Prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    prefix: u8,
    v4: bool,
}

fn mask(bits: u32, prefix: u8) -> u128 {
    let full = if bits == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    match prefix {
        0 => 0,
        p => full & (full << (bits - u32::from(p))),
    }
}

/// An address as (bits, is IPv4). IPv4-mapped IPv6 addresses count as IPv4.
fn bits(ip: IpAddr) -> (u128, bool) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

impl Cidr {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (b, v4) = bits(ip);
        v4 == self.v4 && b & mask(if v4 { 32 } else { 128 }, self.prefix) == self.net
    }
}

/// Why a text is not a CIDR block; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// Not an address at all.
    #[error("`{0}` is not an address or CIDR block (write e.g. 10.0.0.0/8 or 2001:db8::/32)")]
    NotAnAddress(String),
    /// The prefix length is not a number up to the address width.
    #[error("`{text}`: prefix length must be 0..={width}")]
    Prefix {
        /// The text.
        text: String,
        /// 32 or 128.
        width: u8,
    },
    /// Bits below the prefix are set.
    #[error("`{text}` has host bits set (did you mean {meant}?)")]
    HostBits {
        /// The text.
        text: String,
        /// The block with those bits cleared.
        meant: Cidr,
    },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::NotAnAddress(s.to_owned()))?;
        let (b, v4) = bits(ip);
        let width: u8 = if v4 { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width => n,
                _ => {
                    return Err(CidrError::Prefix {
                        text: s.to_owned(),
                        width,
                    })
                }
            },
        };
        let net = b & mask(u32::from(width), prefix);
        if net != b {
            return Err(CidrError::HostBits {
                text: s.to_owned(),
                meant: Cidr { net, prefix, v4 },
            });
        }
        Ok(Cidr { net, prefix, v4 })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = if self.v4 {
            IpAddr::from(std::net::Ipv4Addr::from(self.net as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(self.net))
        };
        write!(f, "{ip}/{}", self.prefix)
    }
}

/// Allow and deny lists. Deny wins; a non-empty allow list admits only
/// the addresses it contains. Lists are scanned linearly: meant for tens to
/// a few hundred blocks, not for full blocklists (use the firewall for those).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Blocks always refused.
    pub deny: Vec<Cidr>,
    /// If non-empty, only these blocks are admitted.
    pub allow: Vec<Cidr>,
}

/// Why an address was refused by the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVerdict {
    /// Admitted.
    Admit,
    /// In the deny list.
    Denied,
    /// An allow list exists and the address is not in it.
    NotAllowed,
}

impl AccessList {
    /// Checks `ip` against both lists.
    pub fn check(&self, ip: IpAddr) -> ListVerdict {
        if self.deny.iter().any(|c| c.contains(ip)) {
            ListVerdict::Denied
        } else if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(ip)) {
            ListVerdict::NotAllowed
        } else {
            ListVerdict::Admit
        }
    }

    /// True when both lists are empty (the check can be skipped).
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv4_blocks_contain_their_addresses_only() {
        assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!c("127.0.0.2").contains(ip("127.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(
            !c("0.0.0.0/0").contains(ip("::1")),
            "an IPv4 block never matches IPv6"
        );
    }

    #[test]
    fn ipv6_blocks_and_mapped_addresses() {
        assert!(c("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("::/0").contains(ip("::1")));
        assert!(
            c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")),
            "v4-mapped counts as v4"
        );
    }

    #[test]
    fn malformed_blocks_say_what_to_write() {
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(
            matches!(&e, CidrError::HostBits { meant, .. } if *meant == c("10.0.0.0/8")),
            "{e:?}"
        );
        assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(matches!(e, CidrError::Prefix { width: 32, .. }), "{e:?}");
        assert!(e.to_string().contains("0..=32"));
        let e = "nonsense".parse::<Cidr>().unwrap_err();
        assert!(matches!(e, CidrError::NotAnAddress(_)), "{e:?}");
        assert!(e.to_string().contains("e.g. 10.0.0.0/8"));
        assert_eq!(c("2001:db8::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn deny_wins_and_allow_list_is_exclusive() {
        let l = AccessList {
            deny: vec![c("127.0.0.2")],
            allow: vec![c("127.0.0.0/8")],
        };
        assert_eq!(l.check(ip("127.0.0.1")), ListVerdict::Admit);
        assert_eq!(l.check(ip("127.0.0.2")), ListVerdict::Denied);
        assert_eq!(l.check(ip("192.0.2.1")), ListVerdict::NotAllowed);
        assert_eq!(
            AccessList::default().check(ip("192.0.2.1")),
            ListVerdict::Admit
        );
    }
}
