use std::net::{IpAddr, SocketAddr};

use super::*;

fn rules(list: &[&str]) -> Vec<Rule> {
    list.iter().map(|s| s.parse().expect("rule")).collect()
}

fn policy(allow: &[&str], deny: &[&str], default: EgressDefault) -> EgressPolicy {
    EgressPolicy::new(rules(allow), rules(deny), default)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn url_err(p: &EgressPolicy, url: &str) -> Option<String> {
    let u = url::Url::parse(url).expect("url");
    p.check_url(&u).err().map(|d| d.to_string())
}

#[test]
fn rules_parse_hosts_wildcards_addresses_and_networks() {
    assert_eq!(
        "API.Example.com.".parse::<Rule>(),
        Ok(Rule::Host("api.example.com".into()))
    );
    assert_eq!(
        "*.example.com".parse::<Rule>(),
        Ok(Rule::Below(".example.com".into()))
    );
    let net: Rule = "10.1.2.3/8".parse().expect("net");
    assert_eq!(net.to_string(), "10.0.0.0/8");
    assert_eq!(
        "192.0.2.7".parse::<Rule>().expect("ip").to_string(),
        "192.0.2.7"
    );
    assert_eq!("[::1]".parse::<Rule>().expect("v6").to_string(), "::1");
    assert_eq!(
        "::ffff:127.0.0.1"
            .parse::<Rule>()
            .expect("mapped")
            .to_string(),
        "127.0.0.1"
    );
    for bad in [
        "",
        " ",
        "10.0.0.0/33",
        "a..b",
        "*.",
        "http://x",
        "a b",
        "*x.com",
        "x/y",
    ] {
        assert!(bad.parse::<Rule>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn wildcards_match_names_below_and_not_the_apex() {
    let p = policy(&[], &["*.evil.test"], EgressDefault::Allow);
    assert!(p.check_name("a.evil.test").is_err());
    assert!(p.check_name("A.B.EVIL.TEST.").is_err());
    assert!(p.check_name("evil.test").is_ok());
    assert!(p.check_name("notevil.test").is_ok());
}

#[test]
fn metadata_and_link_local_are_denied_by_default() {
    let p = EgressPolicy::default();
    assert_eq!(
        url_err(&p, "http://169.254.169.254/latest/meta-data").as_deref(),
        Some("egress denied: 169.254.169.254 is a cloud metadata address")
    );
    assert_eq!(
        url_err(&p, "http://[fd00:ec2::254]/").as_deref(),
        Some("egress denied: fd00:ec2::254 is a cloud metadata address")
    );
    assert!(url_err(&p, "http://100.100.100.200/").is_some());
    assert_eq!(
        url_err(&p, "http://metadata.google.internal./computeMetadata/v1/").as_deref(),
        Some("egress denied: metadata.google.internal. is a cloud metadata address")
    );
    assert_eq!(
        url_err(&p, "http://169.254.10.1/").as_deref(),
        Some("egress denied: 169.254.10.1 is a link-local address")
    );
    assert!(url_err(&p, "http://[fe80::1]/").is_some());
    // An IPv4-mapped IPv6 address is the IPv4 address.
    assert!(url_err(&p, "http://[::ffff:169.254.169.254]/").is_some());
    // Everything else follows the default, loopback and private ranges included.
    for ok in [
        "http://127.0.0.1:1/",
        "http://10.0.0.1/",
        "https://example.com/",
        "http://[::1]/",
    ] {
        assert_eq!(url_err(&p, ok), None, "{ok}");
    }
}

#[test]
fn only_a_rule_inside_a_builtin_range_lifts_it() {
    let broad = policy(&["0.0.0.0/0", "169.254.0.0/16"], &[], EgressDefault::Deny);
    assert!(
        broad
            .check_ip(ip("169.254.169.254"), NameVerdict::Undecided)
            .is_err()
    );
    assert!(
        broad
            .check_ip(ip("169.254.3.4"), NameVerdict::Undecided)
            .is_ok()
    );
    assert!(
        broad
            .check_ip(ip("8.8.8.8"), NameVerdict::Undecided)
            .is_ok()
    );
    let exact = policy(
        &["169.254.169.254", "metadata.google.internal"],
        &[],
        EgressDefault::Allow,
    );
    assert!(
        exact
            .check_ip(ip("169.254.169.254"), NameVerdict::Undecided)
            .is_ok()
    );
    assert!(
        exact
            .check_ip(ip("169.254.1.1"), NameVerdict::Undecided)
            .is_err()
    );
    assert_eq!(
        exact.check_name("metadata.google.internal"),
        Ok(NameVerdict::Allowed)
    );
    // A host rule does not lift an address: the name's addresses are still judged.
    let by_name = policy(&["*.nip.test"], &[], EgressDefault::Deny);
    assert_eq!(
        by_name.check_ip(ip("169.254.169.254"), NameVerdict::Allowed),
        Err(Reason::Metadata)
    );
}

#[test]
fn deny_rules_beat_allow_rules() {
    let p = policy(
        &["10.0.0.0/8", "*.corp.test"],
        &["10.9.0.0/16", "secret.corp.test"],
        EgressDefault::Allow,
    );
    assert_eq!(
        p.check_ip(ip("10.9.1.1"), NameVerdict::Allowed),
        Err(Reason::DenyRule("10.9.0.0/16".parse().expect("rule")))
    );
    assert_eq!(
        p.check_name("secret.corp.test").map_err(|d| d.to_string()),
        Err("egress denied: secret.corp.test matches --egress-deny secret.corp.test".into())
    );
    assert_eq!(p.check_name("www.corp.test"), Ok(NameVerdict::Allowed));
}

#[test]
fn default_deny_needs_an_allow_rule() {
    let p = policy(&["api.example.com", "10.0.0.0/8"], &[], EgressDefault::Deny);
    assert_eq!(p.check_name("api.example.com"), Ok(NameVerdict::Allowed));
    // Unnamed hosts may still resolve into an allowed network.
    assert_eq!(p.check_name("db.internal"), Ok(NameVerdict::Undecided));
    assert!(p.check_ip(ip("10.2.3.4"), NameVerdict::Undecided).is_ok());
    assert_eq!(
        p.check_ip(ip("127.0.0.1"), NameVerdict::Undecided),
        Err(Reason::NotAllowed)
    );
    assert!(
        p.check_ip(ip("93.184.216.34"), NameVerdict::Allowed)
            .is_ok()
    );
    // Without any network rule, a name no rule allows is refused before DNS.
    let names_only = policy(&["api.example.com"], &[], EgressDefault::Deny);
    assert_eq!(
        names_only
            .check_name("other.example.com")
            .map_err(|d| d.reason),
        Err(Reason::NotAllowed)
    );
}

#[test]
fn resolved_addresses_are_filtered_and_a_name_left_with_none_is_refused() {
    let p = policy(&[], &["127.0.0.0/8"], EgressDefault::Allow);
    let addr = |s: &str| SocketAddr::new(ip(s), 0);
    let mixed = p
        .filter_resolved(
            "two.test",
            NameVerdict::Undecided,
            [addr("169.254.169.254"), addr("192.0.2.1")],
        )
        .expect("one address left");
    assert_eq!(mixed, vec![addr("192.0.2.1")]);
    let err = p
        .filter_resolved(
            "localhost",
            NameVerdict::Undecided,
            [addr("127.0.0.1"), addr("::ffff:127.0.0.2")],
        )
        .expect_err("all refused");
    assert_eq!(
        err.to_string(),
        "egress denied: localhost resolves to 127.0.0.1, which matches --egress-deny 127.0.0.0/8"
    );
    let meta = p
        .filter_resolved(
            "rebind.test",
            NameVerdict::Undecided,
            [addr("169.254.169.254")],
        )
        .expect_err("metadata");
    assert_eq!(
        meta.to_string(),
        "egress denied: rebind.test resolves to 169.254.169.254, which is a cloud metadata address"
    );
}

#[test]
fn counters_count_per_job_and_in_total() {
    let c = EgressCounters::default();
    c.record("a", true);
    c.record("a", false);
    c.record("b", false);
    assert_eq!(c.totals(), (1, 2));
    let jobs = c.per_job();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        jobs[0].1,
        counters::JobEgress {
            allowed: 1,
            denied: 1
        }
    );
}

#[test]
fn a_forgotten_job_leaves_the_counts_and_frees_its_place() {
    let c = EgressCounters::default();
    for i in 0..counters::MAX_JOBS {
        c.record(&format!("job-{i}"), true);
    }
    c.record("late", true);
    assert!(
        !c.per_job().iter().any(|(j, _)| j == "late"),
        "full: not counted per job"
    );
    c.forget("job-0");
    c.record("late", false);
    let jobs = c.per_job();
    assert!(!jobs.iter().any(|(j, _)| j == "job-0"));
    assert!(jobs.iter().any(|(j, e)| j == "late" && e.denied == 1));
    assert_eq!(
        c.totals(),
        (counters::MAX_JOBS as u64 + 1, 1),
        "totals keep everything"
    );
}
