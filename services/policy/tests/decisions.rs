//! The decision table: at least 30 requests against one policy set
//! (`data/test-policies.cedar` with the group memberships of `data/test-entities.json`),
//! each with its expected outcome: allowed, allowed with the lifetime clamped, allowed
//! as another action (a credential's issue decided as its renewal), or denied with
//! reasons naming the deciding policies — including the checks that come from the proof
//! (`sigil:token-names`, `sigil:renewal-names`). Plus the time-phased rules at both
//! sides of their dates, the built-in default set (names for everyone, revocation and
//! administration for admins), and bad input refused with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use sigil_contracts::auth::AuthMethod;
use sigil_contracts::policy::{Action, EvaluateRequest};
use sigil_contracts::types::{CaKind, KeyAlgorithm, Profile, Sans};
use sigil_policy::{Compiled, Grant, PolicyError, RequestError, Requester, templates};

const POLICIES: &str = include_str!("data/test-policies.cedar");
const ENTITIES: &str = include_str!("data/test-entities.json");
const DAY: i64 = 86_400;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

/// A request by `principal` for `names` (`dns:…`, `ip:…`, `uri:…`): tls-server, one
/// day, ECDSA P-256, hybrid. The principal is named as a dry run names it; cases made
/// with [`case`] are decided for it ([`named`]).
fn req(principal: &str, names: &[&str]) -> EvaluateRequest {
    let mut sans = Sans::default();
    for n in names {
        match n.split_once(':') {
            Some(("dns", v)) => sans.dns.push(v.to_owned()),
            Some(("ip", v)) => sans.ip.push(v.parse().unwrap()),
            Some(("uri", v)) => sans.uri.push(v.to_owned()),
            _ => panic!("bad name {n}"),
        }
    }
    EvaluateRequest {
        principal: Some(principal.to_owned()),
        proof: None,
        operation: None,
        request_digest: None,
        action: Action::Issue,
        profile: Profile::TlsServer,
        sans,
        ttl_seconds: DAY,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        kind: Some(CaKind::Hybrid),
        key_bits: None,
    }
}

/// A principal named in a dry run (`policy test`): nothing proven, nothing granted.
fn named(principal: &str) -> Requester {
    Requester {
        principal: principal.to_owned(),
        method: AuthMethod::None,
        grant: Grant::Named,
    }
}

/// A principal authenticated by a bootstrap token for `patterns`.
fn token(principal: &str, patterns: &[&str]) -> Requester {
    Requester {
        principal: principal.to_owned(),
        method: AuthMethod::Token,
        grant: Grant::Token {
            jti: "jti-1".into(),
            names: patterns.iter().map(|p| (*p).to_owned()).collect(),
            uses: 1,
        },
    }
}

/// A principal authenticated by possession of a credential for `names` (SANs as
/// written in the certificate).
fn credential(principal: &str, names: &[&str]) -> Requester {
    Requester {
        principal: principal.to_owned(),
        method: AuthMethod::Credential,
        grant: Grant::Credential {
            serial: "0a1b".into(),
            sans: sans_of(names),
            profile: Some(Profile::TlsServer),
            admin: principal.starts_with("admin:"),
        },
    }
}

/// Names as a certificate holds them: IP addresses, URIs (`scheme://…`), else DNS.
fn sans_of(names: &[&str]) -> Sans {
    let mut sans = Sans::default();
    for n in names {
        if let Ok(ip) = n.parse() {
            sans.ip.push(ip);
        } else if n.contains("://") {
            sans.uri.push((*n).to_owned());
        } else {
            sans.dns.push((*n).to_owned());
        }
    }
    sans
}

#[derive(Debug)]
enum Expect {
    Allow,
    /// Allowed, decided as this action (not the one asked).
    AllowAs(Action),
    /// Allowed with the lifetime clamped to this, a note naming the policy.
    Clamp(i64, &'static str),
    /// Denied; every needle appears in some reason.
    Deny(&'static [&'static str]),
}

struct Case {
    what: &'static str,
    who: Requester,
    req: EvaluateRequest,
    expect: Expect,
}

/// A case decided for the principal `req` names.
fn case(what: &'static str, req: EvaluateRequest, expect: Expect) -> Case {
    let who = named(req.principal.as_deref().unwrap_or("anonymous"));
    Case {
        what,
        who,
        req,
        expect,
    }
}

/// A case decided for an authenticated requester.
fn case_by(what: &'static str, who: Requester, req: EvaluateRequest, expect: Expect) -> Case {
    Case {
        what,
        who,
        req,
        expect,
    }
}

fn with(mut r: EvaluateRequest, f: impl FnOnce(&mut EvaluateRequest)) -> EvaluateRequest {
    f(&mut r);
    r
}

fn table() -> Vec<Case> {
    use Expect::*;
    vec![
        case(
            "a name under the group's suffix",
            req("workload:web", &["dns:web.example.com"]),
            Allow,
        ),
        case(
            "the suffix itself",
            req("workload:web", &["dns:example.com"]),
            Allow,
        ),
        case(
            "case and trailing dot are normalized",
            req("workload:web", &["dns:WEB.Example.COM."]),
            Allow,
        ),
        case(
            "several names, all allowed",
            req(
                "workload:web",
                &["dns:a.example.com", "dns:b.example.com", "ip:10.1.2.3"],
            ),
            Allow,
        ),
        case(
            "a SAN outside the allowed suffix",
            req("workload:web", &["dns:evil.com"]),
            Deny(&["no policy permits issue of dns name evil.com for workload:web"]),
        ),
        case(
            "one bad name among good ones",
            req(
                "workload:web",
                &["dns:a.example.com", "dns:evil.example.net"],
            ),
            Deny(&["dns name evil.example.net"]),
        ),
        case(
            "a look-alike suffix",
            req("workload:web", &["dns:notexample.com"]),
            Deny(&["notexample.com"]),
        ),
        case(
            "the suffix inside a longer name",
            req("workload:web", &["dns:example.com.evil.net"]),
            Deny(&["example.com.evil.net"]),
        ),
        case(
            "a wildcard without permission",
            req("workload:web", &["dns:*.example.com"]),
            Deny(&["no-wildcards: wildcard names need the wildcard permission"]),
        ),
        case(
            "a wildcard with permission",
            req("workload:edge", &["dns:*.example.com"]),
            Allow,
        ),
        case(
            "a wildcard with permission but outside the suffix",
            req("workload:edge", &["dns:*.com"]),
            Deny(&["*.com"]),
        ),
        case(
            "a wildcard not in the leftmost label",
            req("workload:edge", &["dns:a.*.example.com"]),
            Deny(&["is not a valid DNS name"]),
        ),
        case(
            "invalid DNS syntax",
            req("workload:web", &["dns:bad_name.example.com"]),
            Deny(&["is not a valid DNS name"]),
        ),
        case(
            "an IP inside the group's range",
            req("workload:web", &["ip:10.1.200.7"]),
            Allow,
        ),
        case(
            "an IP outside its range",
            req("workload:web", &["ip:10.2.0.1"]),
            Deny(&["no policy permits issue of ip address 10.2.0.1 for workload:web"]),
        ),
        case(
            "an IPv4-mapped IPv6 address is judged as IPv4",
            req("workload:web", &["ip:::ffff:10.1.0.9"]),
            Allow,
        ),
        case(
            "a SPIFFE ID under the group's path",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/payments/sa/api"],
                ),
                |r| r.profile = Profile::SpiffeX509Svid,
            ),
            Allow,
        ),
        case(
            "a SPIFFE ID outside its path",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/billing/sa/api"],
                ),
                |r| r.profile = Profile::SpiffeX509Svid,
            ),
            Deny(&["no policy permits issue of uri spiffe://example.org/ns/billing/sa/api"]),
        ),
        case(
            "a SPIFFE ID in another trust domain",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org.evil/ns/payments/x"],
                ),
                |r| r.profile = Profile::SpiffeX509Svid,
            ),
            Deny(&["example.org.evil"]),
        ),
        case(
            "a SPIFFE path escaping with dot segments",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/payments/../billing"],
                ),
                |r| r.profile = Profile::SpiffeX509Svid,
            ),
            Deny(&["dot path segment"]),
        ),
        case(
            "a principal outside the group",
            req("workload:pay", &["dns:web.example.com"]),
            Deny(&["for workload:pay"]),
        ),
        case(
            "an over-long lifetime is clamped",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.ttl_seconds = 400 * DAY
            }),
            Clamp(90 * DAY, "max-lifetime-tls-server"),
        ),
        case(
            "a lifetime at the maximum is not clamped",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.ttl_seconds = 90 * DAY
            }),
            Allow,
        ),
        case(
            "the smallest clamp wins (tls-client)",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.profile = Profile::TlsClient;
                r.ttl_seconds = 30 * DAY;
            }),
            Clamp(DAY, "max-lifetime-tls-client"),
        ),
        case(
            "an over-long lifetime is denied where configured",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.profile = Profile::CodeSigning;
                r.ttl_seconds = 400 * DAY;
            }),
            Deny(&["max-lifetime-code-signing: code-signing certificates live at most 365 days"]),
        ),
        case(
            "a clamp does not rescue a name no policy permits",
            with(req("workload:web", &["dns:evil.com"]), |r| {
                r.ttl_seconds = 400 * DAY
            }),
            Deny(&["no policy permits issue of dns name evil.com"]),
        ),
        case(
            "a non-positive lifetime",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.ttl_seconds = 0
            }),
            Deny(&["ttl_seconds must be positive"]),
        ),
        case(
            "RSA-1024",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.key_algorithm = KeyAlgorithm::Rsa2048;
                r.key_bits = Some(1024);
            }),
            Deny(&["min-rsa-2048: RSA keys must have at least 2048 bits"]),
        ),
        case(
            "RSA-2048 before its sunset",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.key_algorithm = KeyAlgorithm::Rsa2048
            }),
            Allow,
        ),
        case(
            "a refused algorithm",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.key_algorithm = KeyAlgorithm::MlDsa44
            }),
            Deny(&["no-ml-dsa-44"]),
        ),
        case(
            "a classical-only request where hybrid is required",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/payments/api"],
                ),
                |r| {
                    r.profile = Profile::SpiffeX509Svid;
                    r.kind = Some(CaKind::Classical);
                },
            ),
            Deny(&[
                "pq-required-spiffe: spiffe-x509-svid certificates must be hybrid or post-quantum",
            ]),
        ),
        case(
            "an absent kind counts as classical",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/payments/api"],
                ),
                |r| {
                    r.profile = Profile::SpiffeX509Svid;
                    r.kind = None;
                },
            ),
            Deny(&["pq-required-spiffe"]),
        ),
        case(
            "pure ML-DSA satisfies hybrid-required",
            with(
                req(
                    "workload:pay",
                    &["uri:spiffe://example.org/ns/payments/api"],
                ),
                |r| {
                    r.profile = Profile::SpiffeX509Svid;
                    r.kind = Some(CaKind::Mldsa);
                    r.key_algorithm = KeyAlgorithm::MlDsa65;
                },
            ),
            Allow,
        ),
        case(
            "every failing policy is reported",
            with(
                req("workload:web", &["dns:*.example.com", "dns:evil.com"]),
                |r| {
                    r.key_algorithm = KeyAlgorithm::Rsa2048;
                    r.key_bits = Some(1024);
                },
            ),
            Deny(&["no-wildcards", "min-rsa-2048", "dns name evil.com"]),
        ),
        case(
            "an agent may have .internal names",
            req("agent:node-1", &["dns:node-1.internal"]),
            Allow,
        ),
        case(
            "an agent may not revoke",
            with(req("agent:node-1", &["dns:node-1.internal"]), |r| {
                r.action = Action::Revoke
            }),
            Deny(&["no policy permits revoke of dns name node-1.internal for agent:node-1"]),
        ),
        case(
            "an admin may revoke anything (lifetime ignored)",
            with(req("admin:root", &["dns:anything.test"]), |r| {
                r.action = Action::Revoke;
                r.ttl_seconds = 0;
            }),
            Allow,
        ),
        case(
            "an admin may read",
            with(req("admin:root", &["dns:anything.test"]), |r| {
                r.action = Action::Read
            }),
            Allow,
        ),
        case(
            "an admin may not issue arbitrary names",
            req("admin:root", &["dns:anything.test"]),
            Deny(&["no policy permits issue"]),
        ),
        case(
            "anonymous requesters get nothing here",
            req("anonymous", &["dns:web.example.com"]),
            Deny(&["for anonymous"]),
        ),
        case(
            "a request without names",
            req("workload:web", &[]),
            Deny(&["a request without subject names"]),
        ),
        case(
            "a workload may not revoke, even its own names",
            with(req("workload:web", &["dns:web.example.com"]), |r| {
                r.action = Action::Revoke
            }),
            Deny(&["no policy permits revoke of dns name web.example.com for workload:web"]),
        ),
        case(
            "a workload may not administer Sigil",
            with(req("workload:web", &[]), |r| {
                r.action = Action::Admin;
                r.ttl_seconds = 0;
            }),
            Deny(&["no policy permits admin of a request without subject names for workload:web"]),
        ),
        case_by(
            "an admin credential may revoke",
            credential("admin:root", &["spiffe://sigil.admin/admin/root"]),
            with(req("-", &["dns:web.example.com"]), |r| {
                r.action = Action::Revoke;
                r.ttl_seconds = 0;
            }),
            AllowAs(Action::Revoke),
        ),
        case_by(
            "an admin credential's issue stays an issue (not a renewal)",
            credential("admin:root", &["spiffe://sigil.admin/admin/root"]),
            req("-", &["dns:web.example.com"]),
            Deny(&["no policy permits issue of dns name web.example.com for admin:root"]),
        ),
        case_by(
            "a credential renews itself: issue decided as renew",
            credential("workload:web", &["web.example.com", "10.1.0.5"]),
            req("-", &["ip:10.1.0.5", "dns:WEB.example.com."]),
            AllowAs(Action::Renew),
        ),
        case_by(
            "renewal for another identity",
            credential("workload:web", &["web.example.com"]),
            req("-", &["dns:api.example.com"]),
            Deny(&[
                "sigil:renewal-names: renewal must keep the credential's names and profile (not in the credential: dns:api.example.com; missing: dns:web.example.com)",
            ]),
        ),
        case_by(
            "a renewal may not drop a name",
            credential("workload:web", &["a.example.com", "b.example.com"]),
            req("-", &["dns:a.example.com"]),
            Deny(&["sigil:renewal-names", "missing: dns:b.example.com"]),
        ),
        case_by(
            "a renewal is still decided by policy",
            credential("workload:web", &["web.example.com"]),
            with(req("-", &["dns:web.example.com"]), |r| {
                r.key_algorithm = KeyAlgorithm::MlDsa44
            }),
            Deny(&["no-ml-dsa-44"]),
        ),
        case_by(
            "a token inside its pattern",
            token("workload:web", &["*.web.example.com"]),
            req("-", &["dns:a.web.example.com"]),
            AllowAs(Action::Issue),
        ),
        case_by(
            "a token outside its pattern",
            token("workload:web", &["*.web.example.com"]),
            req("-", &["dns:a.web.example.com", "dns:api.example.com"]),
            Deny(&[
                "sigil:token-names: the token allows only *.web.example.com; dns name api.example.com is outside them",
            ]),
        ),
        case_by(
            "a DNS pattern does not allow a URI that ends like it",
            token("workload:web", &["*.web.example.com"]),
            req(
                "-",
                &["uri:spiffe://prod.example/ns/prod/sa/admin/x.web.example.com"],
            ),
            Deny(&["sigil:token-names"]),
        ),
        case_by(
            "a token's wildcard stays within one label",
            token("workload:web", &["*.example.com"]),
            req("-", &["dns:a.b.example.com"]),
            Deny(&["sigil:token-names"]),
        ),
        case_by(
            "an IP pattern is a range",
            token("workload:web", &["10.1.0.0/16"]),
            req("-", &["ip:10.1.2.3"]),
            AllowAs(Action::Issue),
        ),
        case_by(
            "an admin token cannot revoke",
            token("admin:ops", &["spiffe://sigil.admin/admin/ops"]),
            with(req("-", &[]), |r| r.action = Action::Revoke),
            Deny(&["sigil:token-action: a bootstrap token authorizes only issue"]),
        ),
        case_by(
            "an admin token cannot administer",
            token("admin:ops", &["spiffe://sigil.admin/admin/ops"]),
            with(req("-", &[]), |r| r.action = Action::Admin),
            Deny(&["sigil:token-action"]),
        ),
        case_by(
            "a renewal may not change the profile",
            credential("workload:web", &["web.example.com"]),
            with(req("-", &["dns:web.example.com"]), |r| {
                r.profile = Profile::CodeSigning
            }),
            Deny(&["profile code-signing asked, the credential is tls-server"]),
        ),
        case_by(
            "a token's pattern does not lift policy",
            token("workload:web", &["*.com"]),
            req("-", &["dns:evil.com"]),
            Deny(&["no policy permits issue of dns name evil.com for workload:web"]),
        ),
    ]
}

#[test]
fn decision_table() {
    let engine = Compiled::new("table", POLICIES, Some(ENTITIES)).unwrap();
    let cases = table();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let now = at(2026, 1, 1);
    for c in cases {
        let d = engine.decide(&c.req, &c.who, now).unwrap();
        assert_eq!(d.policy_version, "table");
        assert_eq!(d.principal, c.who.principal, "{}", c.what);
        assert_eq!(d.authenticated_by, c.who.method, "{}", c.what);
        match c.expect {
            Expect::Allow => {
                assert!(d.allowed, "{}: {d:?}", c.what);
                assert!(!d.constraints.ttl_clamped, "{}: {d:?}", c.what);
                assert_eq!(d.constraints.ttl_seconds, c.req.ttl_seconds, "{}", c.what);
                assert_eq!(d.action, Some(c.req.action), "{}", c.what);
            }
            Expect::AllowAs(action) => {
                assert!(d.allowed, "{}: {d:?}", c.what);
                assert_eq!(d.action, Some(action), "{}", c.what);
            }
            Expect::Clamp(ttl, policy) => {
                assert!(d.allowed, "{}: {d:?}", c.what);
                assert!(d.constraints.ttl_clamped, "{}: {d:?}", c.what);
                assert_eq!(d.constraints.ttl_seconds, ttl, "{}", c.what);
                assert!(
                    d.reasons
                        .iter()
                        .any(|r| r.contains("clamped") && r.contains(policy)),
                    "{}: {:?}",
                    c.what,
                    d.reasons
                );
            }
            Expect::Deny(needles) => {
                assert!(!d.allowed, "{}: {d:?}", c.what);
                for n in needles {
                    assert!(
                        d.reasons.iter().any(|r| r.contains(n)),
                        "{}: no reason contains {n:?}: {:?}",
                        c.what,
                        d.reasons
                    );
                }
            }
        }
    }
}

#[test]
fn explanation_names_the_deciding_policies_per_name() {
    let engine = Compiled::new("table", POLICIES, Some(ENTITIES)).unwrap();
    let e = engine
        .explain(
            &req("workload:web", &["dns:a.example.com", "dns:*.example.com"]),
            &named("workload:web"),
            at(2026, 1, 1),
        )
        .unwrap();
    assert!(!e.decision.allowed);
    assert_eq!(e.principal, r#"Sigil::Workload::"web""#);
    assert_eq!(e.evaluations.len(), 2);
    assert!(e.evaluations[0].allowed);
    assert_eq!(e.evaluations[0].name, "dns:a.example.com");
    assert_eq!(e.evaluations[0].determining[0].id, "frontend-dns");
    assert!(!e.evaluations[1].allowed);
    assert_eq!(e.evaluations[1].determining[0].id, "no-wildcards");
    // The forbid denied only one of the two names: the reason says which.
    assert_eq!(
        e.decision.reasons,
        vec!["no-wildcards: wildcard names need the wildcard permission (dns name *.example.com)"]
    );

    // A check of the proof shows on the names it denied, before any policy.
    let e = engine
        .explain(
            &req("-", &["dns:a.web.example.com", "dns:api.example.com"]),
            &token("workload:web", &["*.web.example.com"]),
            at(2026, 1, 1),
        )
        .unwrap();
    assert!(!e.decision.allowed);
    assert!(e.evaluations[0].allowed, "{:?}", e.evaluations[0]);
    assert!(!e.evaluations[1].allowed);
    assert_eq!(e.evaluations[1].determining[0].id, "sigil:token-names");
    assert_eq!(
        e.decision.reasons,
        vec![
            "sigil:token-names: the token allows only *.web.example.com; dns name api.example.com is outside them"
        ]
    );
    let e = engine
        .explain(
            &req("-", &["dns:api.example.com"]),
            &credential("workload:web", &["web.example.com"]),
            at(2026, 1, 1),
        )
        .unwrap();
    assert_eq!(e.decision.action, Some(Action::Renew));
    assert_eq!(e.evaluations[0].determining[0].id, "sigil:renewal-names");
    assert_eq!(e.decision.reasons.len(), 1, "{:?}", e.decision.reasons);
}

#[test]
fn time_phased_rules_take_effect_at_their_date() {
    let engine = Compiled::new("table", POLICIES, Some(ENTITIES)).unwrap();
    let web = named("workload:web");
    // SC-081: 60 days is fine until 2029-03-15, then clamped to 47 days.
    let r = with(req("workload:web", &["dns:web.example.com"]), |r| {
        r.ttl_seconds = 60 * DAY
    });
    let before = engine.decide(&r, &web, at(2029, 3, 14)).unwrap();
    assert!(
        before.allowed && !before.constraints.ttl_clamped,
        "{before:?}"
    );
    let after = engine.decide(&r, &web, at(2029, 3, 16)).unwrap();
    assert!(after.allowed, "{after:?}");
    assert_eq!(after.constraints.ttl_seconds, 47 * DAY);
    assert!(
        after.reasons[0].contains("sc081-47-days"),
        "{:?}",
        after.reasons
    );
    // 400 days: clamped by the 90-day rule first, then by SC-081's 47 days.
    let long = with(r.clone(), |r| r.ttl_seconds = 400 * DAY);
    assert_eq!(
        engine
            .decide(&long, &web, at(2029, 3, 16))
            .unwrap()
            .constraints
            .ttl_seconds,
        47 * DAY
    );
    // Algorithm sunset: RSA-2048 allowed in 2029, refused from 2030-01-01.
    let rsa = with(req("workload:web", &["dns:web.example.com"]), |r| {
        r.key_algorithm = KeyAlgorithm::Rsa2048
    });
    assert!(engine.decide(&rsa, &web, at(2029, 12, 31)).unwrap().allowed);
    let refused = engine.decide(&rsa, &web, at(2030, 1, 2)).unwrap();
    assert!(!refused.allowed);
    assert!(
        refused.reasons[0].starts_with("sunset-rsa-2048"),
        "{:?}",
        refused.reasons
    );
}

#[test]
fn the_default_set_allows_what_sigil_allowed_before_cedar() {
    let engine = Compiled::new("1", templates::DEFAULT, None).unwrap();
    let now = at(2026, 6, 1);
    let ok = |names: &[&str]| {
        engine
            .decide(&req("anonymous", names), &named("anonymous"), now)
            .unwrap()
            .allowed
    };
    for allowed in [
        &["dns:localhost"][..],
        &["dns:web.example.com"],
        &["dns:a.b.svc.cluster.local"],
        &["dns:db.internal"],
        &["ip:127.0.0.1"],
        &["ip:::1"],
        &["ip:192.168.0.9"],
        &["uri:spiffe://example.org/web"],
    ] {
        assert!(ok(allowed), "{allowed:?}");
    }
    for denied in [
        &["dns:evil.com"][..],
        &["dns:*.example.com"],
        &["ip:8.8.8.8"],
        &["uri:https://example.org/"],
    ] {
        assert!(!ok(denied), "{denied:?}");
    }
    // Legacy principals without a type, and every principal type, are accepted.
    for p in [
        "e2e",
        "bench",
        "workload:web",
        "agent:a",
        "admin:root",
        "service:issuer",
    ] {
        assert!(
            engine
                .decide(&req(p, &["dns:localhost"]), &named(p), now)
                .unwrap()
                .allowed,
            "{p}"
        );
    }
    let long = with(req("anonymous", &["dns:localhost"]), |r| {
        r.ttl_seconds = 365 * DAY
    });
    let d = engine.decide(&long, &named("anonymous"), now).unwrap();
    assert!(d.allowed && d.constraints.ttl_clamped);
    assert_eq!(d.constraints.ttl_seconds, 90 * DAY);

    // Revoking, reading and administering are for admins; an admin's revoke of any
    // name (a wildcard one too) is allowed, anyone else's is not.
    for action in [Action::Revoke, Action::Read, Action::Admin] {
        let r = with(req("-", &["dns:*.example.com"]), |r| {
            r.action = action;
            r.ttl_seconds = 0;
        });
        let admin = engine.decide(&r, &named("admin:root"), now).unwrap();
        assert!(admin.allowed, "{action:?}: {admin:?}");
        assert_eq!(admin.reasons, Vec::<String>::new());
        for p in ["workload:web", "agent:a", "service:issuer", "anonymous"] {
            let d = engine.decide(&r, &named(p), now).unwrap();
            assert!(!d.allowed, "{p} {action:?}");
        }
    }
    let token_create = with(req("-", &[]), |r| {
        r.action = Action::Admin;
        r.ttl_seconds = 0;
    });
    let d = engine
        .decide(
            &token_create,
            &credential("admin:admin", &["spiffe://sigil.admin/admin/admin"]),
            now,
        )
        .unwrap();
    assert!(d.allowed, "{d:?}");
    // A workload's credential renews itself under the default set.
    let d = engine
        .decide(
            &req("-", &["dns:web.internal"]),
            &credential("workload:web", &["web.internal"]),
            now,
        )
        .unwrap();
    assert!(d.allowed && d.action == Some(Action::Renew), "{d:?}");
    // The context says how the requester was authenticated.
    let only_tokens =
        "permit (principal, action, resource) when { context.authenticated_by == \"token\" };";
    let strict = Compiled::new("2", only_tokens, None).unwrap();
    let r = req("-", &["dns:web.internal"]);
    assert!(
        strict
            .decide(&r, &token("workload:web", &["*.internal"]), now)
            .unwrap()
            .allowed
    );
    assert!(
        !strict
            .decide(&r, &credential("admin:a", &["x"]), now)
            .unwrap()
            .allowed
    );
    assert!(!strict.decide(&r, &named("admin:a"), now).unwrap().allowed);
}

#[test]
fn unknown_principal_types_are_refused() {
    let engine = Compiled::new("1", templates::DEFAULT, None).unwrap();
    let err = engine
        .decide(
            &req("robot:r2", &["dns:localhost"]),
            &named("robot:r2"),
            at(2026, 1, 1),
        )
        .unwrap_err();
    assert_eq!(err, RequestError::UnknownPrincipalType("robot".into()));
    for bad in ["", "workload:"] {
        let err = engine
            .decide(&req(bad, &["dns:localhost"]), &named(bad), at(2026, 1, 1))
            .unwrap_err();
        assert!(
            matches!(err, RequestError::BadPrincipal(_)),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn malformed_policies_report_line_and_column() {
    let text = "permit (principal, action, resource);\n\nforbid (principal, action, resource)\n  when { context.ttl_seconds > };\n";
    let Err(PolicyError::Parse(problems)) = Compiled::new("x", text, None) else {
        panic!("a parse error expected");
    };
    assert_eq!(problems[0].line, Some(4), "{problems:?}");
    assert!(problems[0].column.is_some(), "{problems:?}");
}

#[test]
fn policies_that_do_not_match_the_schema_are_refused() {
    for (text, needle) in [
        (
            "permit (principal, action, resource) when { resource.colour == \"red\" };",
            "colour",
        ),
        (
            "permit (principal is Sigil::Robot, action, resource);",
            "Robot",
        ),
        (
            "permit (principal, action == Sigil::Action::\"fly\", resource);",
            "fly",
        ),
        (
            "permit (principal, action, resource) when { context.ttl_seconds == \"long\" };",
            "",
        ),
    ] {
        match Compiled::new("x", text, None) {
            Err(PolicyError::Schema(problems)) => {
                let all = format!("{problems:?}");
                assert!(all.contains(needle), "{text}: {all}");
                assert!(problems[0].line.is_some(), "{text}: {all}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        Compiled::new("x", "// nothing\n", None).unwrap_err(),
        PolicyError::Empty
    );
    let bad_clamp = "@clamp_ttl_seconds(\"soon\") forbid (principal, action, resource);";
    assert!(matches!(
        Compiled::new("x", bad_clamp, None),
        Err(PolicyError::Annotation(_))
    ));
    let dup = "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);";
    assert!(matches!(
        Compiled::new("x", dup, None),
        Err(PolicyError::Annotation(_))
    ));
    let bad_entities = r#"[{"uid":{"type":"Sigil::Robot","id":"r"},"attrs":{},"parents":[]}]"#;
    assert!(matches!(
        Compiled::new("x", templates::DEFAULT, Some(bad_entities)),
        Err(PolicyError::Entities(_))
    ));
}
