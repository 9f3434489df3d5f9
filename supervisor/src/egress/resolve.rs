//! A DNS resolver for the scripts' HTTP client that applies the egress policy to every
//! address a name resolves to: the addresses it refuses are never connected to, and a
//! name left with none fails with the [`Denied`] of the first.
//!
//! Resolution itself is the system's (`getaddrinfo`, through tokio); this module must
//! not cache answers (a cache would outlive the policy's view of a rebinding name).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{Denied, EgressPolicy};

#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        PolicyResolver { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let verdict = policy.check_name(&host).map_err(boxed)?;
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy
                .filter_resolved(&host, verdict, found)
                .map_err(boxed)?;
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

fn boxed(d: Denied) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(d)
}
