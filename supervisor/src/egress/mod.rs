//! The egress policy: which hosts and addresses scripts' HTTP requests (`fetch`,
//! `require('http')`) may reach. The supervisor performs every such request, so this is
//! where the operator's `--egress-allow`, `--egress-deny` and `--egress-default` apply.
//!
//! A request is judged twice: by the host of its URL (and of every redirect), and by
//! every address that host resolves to ([`resolve::PolicyResolver`] filters the DNS
//! answers), so a name that points at a metadata or loopback address is refused as
//! surely as the address itself. Precedence, first match wins:
//!
//! 1. a `--egress-deny` rule (host or network);
//! 2. the built-in denials: cloud metadata hosts and addresses, link-local networks.
//!    Only an allow rule that names them lifts them (an exact host, or a network inside
//!    the denied one), so `--egress-allow 0.0.0.0/0` does not open 169.254.169.254;
//! 3. a `--egress-allow` rule (a name allowed by a host rule may resolve to anything
//!    that steps 1 and 2 let through);
//! 4. `--egress-default` (allow unless the operator says otherwise).
//!
//! This module decides only: it performs no request, keeps no per-run state and logs
//! nothing (the caller reports a denial where it handles it).

pub mod counters;
pub mod resolve;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

pub use counters::EgressCounters;

/// What a request that no rule decides may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EgressDefault {
    #[default]
    Allow,
    Deny,
}

/// One `--egress-allow` / `--egress-deny` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A host name, compared without case and without a trailing dot.
    Host(String),
    /// `*.example.com`: every name below `example.com` (not `example.com` itself).
    /// Holds `.example.com`.
    Below(String),
    /// An address or network (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    Net(IpNet),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Host(h) => f.write_str(h),
            Rule::Below(suffix) => write!(f, "*{suffix}"),
            Rule::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Rule::Net(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty egress rule".into());
        }
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(ip.to_canonical())));
        }
        if s.contains('/') {
            return s
                .parse::<IpNet>()
                .map(|n| Rule::Net(n.trunc()))
                .map_err(|_| format!("{s:?} is not a network (like 10.0.0.0/8 or fd00::/8)"));
        }
        let name = normalise(s);
        let (below, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let valid = !rest.is_empty()
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "{s:?} is not a host (like api.example.com or *.example.com), an address or a network"
            ));
        }
        Ok(if below {
            Rule::Below(format!(".{rest}"))
        } else {
            Rule::Host(rest.to_owned())
        })
    }
}

/// A comma-separated list of rules, as a flag or environment variable gives them;
/// empty entries are ignored, so `TRAITOR_EGRESS_ALLOW=` means no rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules(pub Vec<Rule>);

impl FromStr for Rules {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|e| !e.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Rules)
    }
}

impl Rule {
    fn matches_name(&self, name: &str) -> bool {
        match self {
            Rule::Host(h) => h == name,
            Rule::Below(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
            Rule::Net(_) => false,
        }
    }

    fn net(&self) -> Option<&IpNet> {
        match self {
            Rule::Net(n) => Some(n),
            _ => None,
        }
    }
}

/// Why a request was refused. Each reads after a host or address: "… is a cloud
/// metadata address".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    DenyRule(Rule),
    Metadata,
    LinkLocal,
    NotAllowed,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::DenyRule(r) => write!(f, "matches --egress-deny {r}"),
            Reason::Metadata => f.write_str("is a cloud metadata address"),
            Reason::LinkLocal => f.write_str("is a link-local address"),
            Reason::NotAllowed => {
                f.write_str("is not in --egress-allow (and --egress-default is deny)")
            }
        }
    }
}

/// A refused request: the error a script sees, e.g. `egress denied: 169.254.169.254 is
/// a cloud metadata address` or `egress denied: localhost resolves to 127.0.0.1, which
/// matches --egress-deny 127.0.0.0/8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The host as the URL named it.
    pub host: String,
    /// The address that was refused, when the host is a name that resolved to it.
    pub resolved: Option<IpAddr>,
    pub reason: Reason,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resolved {
            Some(ip) => write!(
                f,
                "egress denied: {} resolves to {ip}, which {}",
                self.host, self.reason
            ),
            None => write!(f, "egress denied: {} {}", self.host, self.reason),
        }
    }
}

impl std::error::Error for Denied {}

/// What the host name alone says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameVerdict {
    /// An allow rule names the host: its addresses pass unless denied outright.
    Allowed,
    /// No rule names the host: its addresses decide.
    Undecided,
}

/// Host names of cloud metadata services.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog"];

/// Addresses of cloud metadata services: AWS, GCP, Azure and Oracle (IPv4), AWS
/// (IPv6), Alibaba.
fn metadata_nets() -> [IpNet; 3] {
    [
        IpNet::from(IpAddr::from([169, 254, 169, 254])),
        IpNet::from(IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254])),
        IpNet::from(IpAddr::from([100, 100, 100, 200])),
    ]
}

fn link_local_nets() -> [IpNet; 2] {
    [
        IpNet::new_assert(IpAddr::from([169, 254, 0, 0]), 16),
        IpNet::new_assert(IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10),
    ]
}

/// Lower case, no trailing dot: how names are compared.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The operator's rules. Immutable once built; cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    default: EgressDefault,
}

impl EgressPolicy {
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>, default: EgressDefault) -> Self {
        EgressPolicy {
            allow,
            deny,
            default,
        }
    }

    /// Judges a host name (not an address) before it is resolved.
    pub fn check_name(&self, host: &str) -> Result<NameVerdict, Denied> {
        let name = normalise(host);
        let denied = |reason| Denied {
            host: host.to_owned(),
            resolved: None,
            reason,
        };
        if let Some(rule) = self.deny.iter().find(|r| r.matches_name(&name)) {
            return Err(denied(Reason::DenyRule(rule.clone())));
        }
        if METADATA_HOSTS.contains(&name.as_str())
            && !self.allow.contains(&Rule::Host(name.clone()))
        {
            return Err(denied(Reason::Metadata));
        }
        if self.allow.iter().any(|r| r.matches_name(&name)) {
            return Ok(NameVerdict::Allowed);
        }
        // With no network to allow, no address can rescue the name: say so before DNS.
        if self.default == EgressDefault::Deny && !self.allow.iter().any(|r| r.net().is_some()) {
            return Err(denied(Reason::NotAllowed));
        }
        Ok(NameVerdict::Undecided)
    }

    /// Judges one address, reached directly (`Undecided`) or through a name.
    pub fn check_ip(&self, ip: IpAddr, by_name: NameVerdict) -> Result<(), Reason> {
        let ip = ip.to_canonical();
        if let Some(rule) = self
            .deny
            .iter()
            .find(|r| r.net().is_some_and(|n| n.contains(&ip)))
        {
            return Err(Reason::DenyRule(rule.clone()));
        }
        let builtin = metadata_nets()
            .into_iter()
            .find(|n| n.contains(&ip))
            .map(|n| (n, Reason::Metadata))
            .or_else(|| {
                link_local_nets()
                    .into_iter()
                    .find(|n| n.contains(&ip))
                    .map(|n| (n, Reason::LinkLocal))
            });
        if let Some((range, reason)) = builtin {
            // Lifted only by an allow rule inside the denied range.
            let lifted = self
                .allow
                .iter()
                .filter_map(Rule::net)
                .any(|n| n.contains(&ip) && range.contains(n));
            return if lifted { Ok(()) } else { Err(reason) };
        }
        if by_name == NameVerdict::Allowed
            || self
                .allow
                .iter()
                .any(|r| r.net().is_some_and(|n| n.contains(&ip)))
        {
            return Ok(());
        }
        match self.default {
            EgressDefault::Allow => Ok(()),
            EgressDefault::Deny => Err(Reason::NotAllowed),
        }
    }

    /// Judges a URL's host: a name by [`Self::check_name`] (its addresses are judged
    /// when it is resolved), an address by [`Self::check_ip`].
    pub fn check_url(&self, url: &url::Url) -> Result<(), Denied> {
        match url.host() {
            Some(url::Host::Domain(d)) => self.check_name(d).map(|_| ()),
            Some(url::Host::Ipv4(ip)) => self.check_addr(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_addr(IpAddr::V6(ip)),
            None => Ok(()),
        }
    }

    fn check_addr(&self, ip: IpAddr) -> Result<(), Denied> {
        self.check_ip(ip, NameVerdict::Undecided)
            .map_err(|reason| Denied {
                host: ip.to_string(),
                resolved: None,
                reason,
            })
    }

    /// Keeps the addresses of `host` that may be reached; when none may, the refusal of
    /// the first.
    pub fn filter_resolved(
        &self,
        host: &str,
        verdict: NameVerdict,
        addrs: impl IntoIterator<Item = std::net::SocketAddr>,
    ) -> Result<Vec<std::net::SocketAddr>, Denied> {
        let mut kept = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match self.check_ip(addr.ip(), verdict) {
                Ok(()) => kept.push(addr),
                Err(reason) => {
                    first_refusal.get_or_insert(Denied {
                        host: host.to_owned(),
                        resolved: Some(addr.ip().to_canonical()),
                        reason,
                    });
                }
            }
        }
        match (kept.is_empty(), first_refusal) {
            (true, Some(d)) => Err(d),
            _ => Ok(kept),
        }
    }
}
