//! Routing: which pool of upstreams serves a connection, by the server
//! name (SNI) the client sent and the ALPN protocol negotiated.
//!
//! A route is a name pattern and/or an ALPN protocol, and its upstreams:
//!
//! - `a.test`: exactly that name (ASCII case-insensitive, a trailing dot
//!   ignored);
//! - `*.b.test`: any name that ends in `.b.test` with one or more labels
//!   before it (`x.b.test`, `y.x.b.test`; not `b.test` itself), as nginx's
//!   `server_name *.b.test` does;
//! - no name (`@h2` on the command line, no `sni` in TOML): any name, or
//!   none (a client that sent no SNI).
//!
//! The most specific route wins: an exact name beats every wildcard, a
//! longer wildcard beats a shorter one, any name pattern beats none; among
//! routes with the same name pattern, one whose ALPN matches beats one
//! without ALPN. A route with ALPN never matches a connection that
//! negotiated another protocol or none. No route matching: the default
//! pool (`upstream`), if there is one.

use std::fmt;

/// A server-name pattern: an exact name or a `*.` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// This name exactly (lowercase, no trailing dot).
    Exact(String),
    /// Names ending in `.` + this suffix (lowercase), one or more labels
    /// before it; written `*.suffix`.
    Wildcard(String),
}

/// Why a route pattern or route is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Not `PATTERN=UPSTREAM[,UPSTREAM...]`.
    #[error("`{0}` is not PATTERN=UPSTREAM[,UPSTREAM...]")]
    NotRoute(String),
    /// A bad server-name pattern.
    #[error("`{0}` is not a server name or `*.` wildcard (letters, digits, `-` and `_` in dot-separated labels; `*` only as the whole first label)")]
    BadPattern(String),
    /// A bad ALPN protocol name.
    #[error("`{0}` is not an ALPN protocol name (1 to 255 bytes, no spaces or commas)")]
    BadAlpn(String),
    /// Neither a name nor an ALPN protocol.
    #[error("a route needs a server name pattern (`sni`), an ALPN protocol (`alpn`), or both")]
    Empty,
    /// No upstream listed.
    #[error("route `{0}` lists no upstream")]
    NoUpstream(String),
    /// The same pattern (and ALPN) twice.
    #[error("route `{0}` is given twice")]
    Duplicate(String),
}

impl NamePattern {
    /// Parses `a.test` or `*.b.test` (ASCII case-insensitive; a trailing
    /// dot is dropped).
    pub fn parse(s: &str) -> Result<NamePattern, RouteError> {
        let bad = || RouteError::BadPattern(s.to_owned());
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(if wild {
            NamePattern::Wildcard(name)
        } else {
            NamePattern::Exact(name)
        })
    }

    /// How specific a match is (higher wins): exact names above every
    /// wildcard, longer wildcards above shorter ones. `None`: no match.
    /// `name` must already be normalised (lowercase, no trailing dot).
    pub fn rank(&self, name: &str) -> Option<usize> {
        match self {
            NamePattern::Exact(n) => (n == name).then_some(usize::MAX),
            NamePattern::Wildcard(suffix) => {
                let head = name.strip_suffix(suffix.as_str())?.strip_suffix('.')?;
                (!head.is_empty()).then_some(suffix.len())
            }
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// A server name as matched: lowercase, without a trailing dot (copied
/// only when it is not so already; rustls hands it over lowercase).
pub fn normalise(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// What a route matches on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Server-name pattern; `None`: any name, or none.
    pub sni: Option<NamePattern>,
    /// ALPN protocol; `None`: any protocol, or none.
    pub alpn: Option<Vec<u8>>,
}

impl RouteKey {
    /// Checks an `sni` pattern and `alpn` protocol as written.
    pub fn parse(sni: Option<&str>, alpn: Option<&str>) -> Result<RouteKey, RouteError> {
        let sni = sni.map(NamePattern::parse).transpose()?;
        let alpn = match alpn {
            Some(a) if a.is_empty() || a.len() > 255 || a.contains([' ', ',', '=']) => {
                return Err(RouteError::BadAlpn(a.to_owned()))
            }
            a => a.map(|a| a.as_bytes().to_vec()),
        };
        if sni.is_none() && alpn.is_none() {
            return Err(RouteError::Empty);
        }
        Ok(RouteKey { sni, alpn })
    }

    /// How well this key matches (higher wins; `None`: no match).
    /// `name` is normalised.
    pub fn rank(&self, name: Option<&str>, alpn: Option<&[u8]>) -> Option<(usize, bool)> {
        let by_name = match &self.sni {
            None => 0,
            Some(p) => 1 + p.rank(name?)?.min(usize::MAX - 1),
        };
        let by_alpn = match &self.alpn {
            None => false,
            Some(a) => (Some(a.as_slice()) == alpn).then_some(true)?,
        };
        Some((by_name, by_alpn))
    }
}

/// The label of a route (and of its pool in metrics): `a.test`,
/// `*.b.test`, `a.test@h2`, `@h2`.
impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.sni {
            write!(f, "{p}")?;
        }
        if let Some(a) = &self.alpn {
            write!(f, "@{}", String::from_utf8_lossy(a))?;
        }
        Ok(())
    }
}

/// A route as configured: `--route PATTERN=UPSTREAM[,UPSTREAM...]`, where
/// PATTERN is `NAME`, `NAME@ALPN` or `@ALPN`; in TOML a `[[route]]` table
/// with `sni`, `alpn` and `upstreams`. Upstreams are parsed with the rest
/// of the configuration and resolved by the proxy, as `upstream`'s are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOption {
    /// Server-name pattern (`a.test`, `*.b.test`); none: any name.
    #[serde(default)]
    pub sni: Option<String>,
    /// ALPN protocol (`h2`, `http/1.1`); none: any.
    #[serde(default)]
    pub alpn: Option<String>,
    /// Upstreams (`HOST:PORT`), in round-robin order.
    pub upstreams: Vec<String>,
}

impl std::str::FromStr for RouteOption {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (pattern, ups) = s
            .rsplit_once('=')
            .ok_or_else(|| RouteError::NotRoute(s.to_owned()))?;
        let (sni, alpn) = match pattern.split_once('@') {
            Some((n, a)) => (n, Some(a)),
            None => (pattern, None),
        };
        Ok(RouteOption {
            sni: (!sni.is_empty()).then(|| sni.to_owned()),
            alpn: alpn.map(str::to_owned),
            upstreams: ups
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

impl RouteOption {
    /// Checks the pattern, the ALPN and the upstreams' syntax.
    pub fn key(&self) -> Result<RouteKey, RouteError> {
        let key = RouteKey::parse(self.sni.as_deref(), self.alpn.as_deref())?;
        if self.upstreams.is_empty() {
            return Err(RouteError::NoUpstream(key.to_string()));
        }
        Ok(key)
    }
}

/// Checks a list of routes: each one, then that no key is given twice.
pub fn check_routes(routes: &[RouteOption]) -> Result<Vec<RouteKey>, RouteError> {
    let mut keys: Vec<RouteKey> = Vec::with_capacity(routes.len());
    for r in routes {
        let k = r.key()?;
        if keys.contains(&k) {
            return Err(RouteError::Duplicate(k.to_string()));
        }
        keys.push(k);
    }
    Ok(keys)
}

/// The index of the route that best matches `name` and `alpn`, if any.
pub fn best<'a>(
    keys: impl Iterator<Item = &'a RouteKey>,
    name: Option<&str>,
    alpn: Option<&[u8]>,
) -> Option<usize> {
    let name = name.map(normalise);
    let mut found: Option<(usize, (usize, bool))> = None;
    for (i, k) in keys.enumerate() {
        if let Some(r) = k.rank(name.as_deref(), alpn) {
            if found.is_none_or(|(_, best)| r > best) {
                found = Some((i, r));
            }
        }
    }
    found.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<RouteKey> {
        list.iter()
            .map(|s| {
                format!("{s}=127.0.0.1:1")
                    .parse::<RouteOption>()
                    .expect("parses")
                    .key()
                    .expect("valid")
            })
            .collect()
    }

    fn pick(list: &[&str], name: Option<&str>, alpn: Option<&str>) -> Option<String> {
        let k = keys(list);
        best(k.iter(), name, alpn.map(str::as_bytes)).map(|i| list[i].to_owned())
    }

    #[test]
    fn exact_names_match_case_insensitively_and_without_the_trailing_dot() {
        let l = ["a.test"];
        assert_eq!(pick(&l, Some("A.Test."), None).as_deref(), Some("a.test"));
        assert_eq!(pick(&l, Some("b.a.test"), None), None);
        assert_eq!(pick(&l, None, None), None, "no SNI matches no name");
    }

    #[test]
    fn a_wildcard_matches_one_or_more_labels_but_not_its_own_suffix() {
        let l = ["*.b.test"];
        assert!(pick(&l, Some("x.b.test"), None).is_some());
        assert!(pick(&l, Some("y.x.b.test"), None).is_some());
        assert_eq!(pick(&l, Some("b.test"), None), None);
        assert_eq!(pick(&l, Some("xb.test"), None), None);
    }

    #[test]
    fn the_most_specific_name_wins_whatever_the_order() {
        let l = ["*.test", "*.b.test", "x.b.test"];
        assert_eq!(
            pick(&l, Some("x.b.test"), None).as_deref(),
            Some("x.b.test")
        );
        assert_eq!(
            pick(&l, Some("y.b.test"), None).as_deref(),
            Some("*.b.test")
        );
        assert_eq!(pick(&l, Some("c.test"), None).as_deref(), Some("*.test"));
        let r = ["x.b.test", "*.b.test", "*.test"];
        assert_eq!(
            pick(&r, Some("y.b.test"), None).as_deref(),
            Some("*.b.test")
        );
    }

    #[test]
    fn alpn_picks_among_routes_of_the_same_name_and_alone_matches_any_name() {
        let l = ["a.test", "a.test@h2", "@h2", "@http/1.1"];
        assert_eq!(
            pick(&l, Some("a.test"), Some("h2")).as_deref(),
            Some("a.test@h2")
        );
        assert_eq!(
            pick(&l, Some("a.test"), Some("http/1.1")).as_deref(),
            Some("a.test")
        );
        assert_eq!(pick(&l, Some("a.test"), None).as_deref(), Some("a.test"));
        assert_eq!(pick(&l, Some("z.test"), Some("h2")).as_deref(), Some("@h2"));
        assert_eq!(
            pick(&l, None, Some("http/1.1")).as_deref(),
            Some("@http/1.1")
        );
        assert_eq!(pick(&l, Some("z.test"), None), None);
        // A name route beats an ALPN-only one.
        assert_eq!(
            pick(&["@h2", "*.test"], Some("a.test"), Some("h2")).as_deref(),
            Some("*.test")
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_their_reason() {
        for bad in [
            "", "*", "*.", "a..test", "a.*.test", "*a.test", "a test", "a:80", "*.*.test",
        ] {
            assert!(
                matches!(NamePattern::parse(bad), Err(RouteError::BadPattern(_))),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(
            "a.test=".parse::<RouteOption>().expect("parses").key(),
            Err(RouteError::NoUpstream("a.test".into()))
        );
        assert!(matches!(
            "a.test".parse::<RouteOption>(),
            Err(RouteError::NotRoute(_))
        ));
        assert_eq!(
            "@=127.0.0.1:1"
                .parse::<RouteOption>()
                .expect("parses")
                .key(),
            Err(RouteError::BadAlpn(String::new()))
        );
        assert_eq!(
            "=127.0.0.1:1".parse::<RouteOption>().expect("parses").key(),
            Err(RouteError::Empty)
        );
    }

    #[test]
    fn a_route_given_twice_is_refused_even_written_differently() {
        let r: Vec<RouteOption> = ["A.test=127.0.0.1:1", "a.test.=127.0.0.1:2"]
            .iter()
            .map(|s| s.parse().expect("parses"))
            .collect();
        assert_eq!(
            check_routes(&r),
            Err(RouteError::Duplicate("a.test".into()))
        );
        let r: Vec<RouteOption> = ["a.test=127.0.0.1:1", "a.test@h2=127.0.0.1:2"]
            .iter()
            .map(|s| s.parse().expect("parses"))
            .collect();
        assert!(check_routes(&r).is_ok(), "another ALPN is another route");
    }

    #[test]
    fn labels_are_the_pattern_as_normalised() {
        let k = keys(&["*.B.test@h2", "@http/1.1", "a.test"]);
        let labels: Vec<String> = k.iter().map(ToString::to_string).collect();
        assert_eq!(labels, ["*.b.test@h2", "@http/1.1", "a.test"]);
    }
}
