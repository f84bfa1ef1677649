//! The policy engine: a Cedar policy set validated against Sigil's schema, and the
//! pure function that decides a request under it.
//!
//! How a request becomes Cedar authorizations:
//! - the principal is the one authentication established ([`Requester`]), never a name
//!   the request chose; its `type:id` becomes `Sigil::<Type>::"<id>"` ([`principal_uid`]);
//! - the action is the request's, except that an `issue` proven by a non-admin credential
//!   is decided as `renew` ([`effective_action`]): such a credential can only renew itself;
//! - every subject name (DNS, IP, URI) is authorized on its own, as a `Sigil::Identity`
//!   resource whose attributes describe that one name (plus the whole request's name
//!   sets), and all must be allowed: Cedar has no "every element of a set matches this
//!   pattern", so per-name authorization is what makes suffix, range and path
//!   allowances mean "all names". A request without names is one authorization with
//!   `san_type == "none"`;
//! - the context carries the key algorithm, family and size, the lifetime, the
//!   certificate kind, how the requester was authenticated (`authenticated_by`: `none`,
//!   `token` or `credential`) and `now` (a Cedar `datetime`, from the injected clock).
//!
//! Two checks come from the proof rather than from policy, so no policy set can lift
//! them, and run before Cedar (reported like a deciding policy, with a `sigil:` id):
//! - [`TOKEN_NAMES`]: a request authenticated by a bootstrap token may ask only names
//!   allowed by the token's patterns ([`sigil_contracts::auth::pattern_allows`]);
//! - [`RENEWAL_NAMES`]: a renewal by a non-admin credential must ask for exactly the
//!   credential's names (as a set), so a credential cannot turn itself into another
//!   identity.
//!
//! Forbid policies annotated `@clamp_ttl_seconds("N")` clamp instead of denying: when
//! the only policies denying are such forbids, the request is decided again with the
//! smallest N as its lifetime, and if that is allowed the decision allows with
//! `constraints.ttl_clamped`. Names that are not syntactically valid (DNS LDH syntax,
//! URIs with dot segments or spaces) and non-positive lifetimes are refused before Cedar
//! sees them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, PrincipalConstraint, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use chrono::{DateTime, SecondsFormat, Utc};
use miette::Diagnostic;
use serde::Serialize;
use sigil_contracts::auth::{SubjectName, pattern_allows};
use sigil_contracts::policy::{
    Action, Constraints, Decision, Effect, EvaluateRequest, Explanation, NameEvaluation, PolicyHit,
};
use sigil_contracts::types::{CaKind, KeyAlgorithm};

use crate::authn::{Grant, Requester};

/// Sigil's Cedar schema (namespace `Sigil`), shipped in `schema/sigil.cedarschema`.
pub const SCHEMA_TEXT: &str = include_str!("../schema/sigil.cedarschema");

/// Longest DNS name (RFC 1035, presentation form without the trailing dot).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label.
const MAX_DNS_LABEL: usize = 63;
/// Rounds of clamping before giving up (each round only shortens the lifetime).
const MAX_CLAMP_ROUNDS: usize = 8;
/// Annotation naming a policy in reasons.
const ID_ANNOTATION: &str = "id";
/// Annotation giving the human reason of a policy.
const REASON_ANNOTATION: &str = "reason";
/// Annotation turning a forbid into a lifetime clamp.
const CLAMP_ANNOTATION: &str = "clamp_ttl_seconds";
/// Id of the built-in check that a token's request asks only names its patterns match.
pub const TOKEN_NAMES: &str = "sigil:token-names";
/// Id of the built-in check that a credential renews only itself (the same names).
pub const RENEWAL_NAMES: &str = "sigil:renewal-names";
/// The reason of [`RENEWAL_NAMES`].
const RENEWAL_REASON: &str = "renewal must keep the credential's names and profile";
/// Built-in check: a bootstrap token authorizes only `issue` (a first identity), never
/// revoke or admin actions, whatever principal it names.
pub const TOKEN_ACTION: &str = "sigil:token-action";
const TOKEN_ACTION_REASON: &str = "a bootstrap token authorizes only issue";

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| {
    Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| e.to_string())
});

/// The parsed built-in schema.
pub fn schema() -> Result<&'static Schema, PolicyError> {
    SCHEMA
        .as_ref()
        .map_err(|e| PolicyError::BuiltinSchema(e.clone()))
}

/// One problem found in a policy set, located where Cedar could say where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub message: String,
    /// 1-based line in the policy text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (in characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a policy set was refused. Nothing is stored when any of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not Cedar; each problem carries its line and column.
    #[error("policy does not parse: {}", join(.0))]
    Parse(Vec<Problem>),
    /// The policies parse but do not match Sigil's schema (unknown entity type or
    /// attribute, wrong type, action not applicable…).
    #[error("policy does not match the schema: {}", join(.0))]
    Schema(Vec<Problem>),
    /// The entities JSON is malformed or does not match the schema.
    #[error("entities do not match the schema: {0}")]
    Entities(String),
    /// `@id` used twice, or `@clamp_ttl_seconds` not a positive number of seconds or
    /// on a permit.
    #[error("policy annotations: {}", join(.0))]
    Annotation(Vec<Problem>),
    /// A set without any policy would deny everything.
    #[error("the policy set contains no policy")]
    Empty,
    /// Templates (policies with `?principal`/`?resource` slots) are not supported.
    #[error("policy templates with slots are not supported; write static policies")]
    Template,
    /// The built-in schema does not load (a bug in this build).
    #[error("built-in Cedar schema: {0}")]
    BuiltinSchema(String),
}

impl PolicyError {
    /// The located problems, for the wire error's details.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            PolicyError::Parse(p) | PolicyError::Schema(p) | PolicyError::Annotation(p) => {
                p.clone()
            }
            other => vec![Problem {
                message: other.to_string(),
                line: None,
                column: None,
            }],
        }
    }
}

/// Why a request could not be decided at all (as opposed to denied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The principal's type is not one of workload, agent, admin, service, anonymous.
    #[error(
        "unknown principal type {0:?} (use workload:ID, agent:ID, admin:ID, service:ID or anonymous)"
    )]
    UnknownPrincipalType(String),
    /// The principal is empty or its id is empty.
    #[error("principal {0:?} is malformed (use TYPE:ID, e.g. workload:web)")]
    BadPrincipal(String),
    /// Cedar refused to build the request (a bug).
    #[error("cannot build the authorization request: {0}")]
    Internal(String),
}

/// The principal types, as written on the wire and in Cedar.
const PRINCIPAL_TYPES: [(&str, &str); 5] = [
    ("workload", "Sigil::Workload"),
    ("agent", "Sigil::Agent"),
    ("admin", "Sigil::Admin"),
    ("service", "Sigil::Service"),
    ("anonymous", "Sigil::Anonymous"),
];

/// The Cedar entity of a principal string.
///
/// `type:id` with a known type maps to `Sigil::<Type>::"id"`; `anonymous` (a request
/// without proof) and a name without a colon (a legacy name such as `e2e` that older
/// credentials were issued to) map to `Sigil::Anonymous::"<name>"`.
pub fn principal_uid(principal: &str) -> Result<EntityUid, RequestError> {
    let (kind, id) = match principal.split_once(':') {
        Some((kind, id)) => (kind, id),
        None => ("anonymous", principal),
    };
    if id.is_empty() {
        return Err(RequestError::BadPrincipal(principal.to_owned()));
    }
    let type_name = PRINCIPAL_TYPES
        .iter()
        .find(|(wire, _)| *wire == kind)
        .map(|(_, cedar)| *cedar)
        .ok_or_else(|| RequestError::UnknownPrincipalType(kind.to_owned()))?;
    let type_name =
        EntityTypeName::from_str(type_name).map_err(|e| RequestError::Internal(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

/// What the engine knows of each policy besides its Cedar text.
#[derive(Debug, Clone)]
struct Meta {
    hit: PolicyHit,
}

/// A validated policy set, ready to decide.
#[derive(Debug)]
pub struct Compiled {
    version: String,
    /// Policies by the principal their scope names (policy slicing).
    slices: Slices,
    /// Every stored entity's groups, transitively (from the entities JSON).
    ancestors: HashMap<EntityUid, HashSet<EntityUid>>,
    meta: HashMap<PolicyId, Meta>,
    identity_type: EntityTypeName,
    actions: HashMap<Action, EntityUid>,
    authorizer: Authorizer,
}

impl Compiled {
    /// Parse, validate (strict mode, against the built-in schema) and index `policies`
    /// with their optional entities JSON (group memberships).
    pub fn new(
        version: impl Into<String>,
        policies: &str,
        entities: Option<&str>,
    ) -> Result<Compiled, PolicyError> {
        let schema = schema()?;
        let set = PolicySet::from_str(policies).map_err(|e| {
            PolicyError::Parse(
                e.iter()
                    .map(|err| located(policies, err, err.to_string()))
                    .collect(),
            )
        })?;
        if set.templates().next().is_some() {
            return Err(PolicyError::Template);
        }
        if set.is_empty() {
            return Err(PolicyError::Empty);
        }
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(PolicyError::Schema(
                validation
                    .validation_errors()
                    .map(|err| located(policies, err, err.to_string()))
                    .collect(),
            ));
        }
        let meta = index(&set)?;
        let slices = Slices::new(&set);
        let entities = match entities {
            Some(json) if !json.trim().is_empty() => Entities::from_json_str(json, Some(schema))
                .map_err(|e| PolicyError::Entities(error_chain(&e)))?,
            _ => Entities::empty(),
        };
        let ancestors = entities
            .iter()
            .map(|e| {
                let uid = e.uid();
                let groups = entities
                    .ancestors(&uid)
                    .map(|a| a.cloned().collect())
                    .unwrap_or_default();
                (uid, groups)
            })
            .collect();
        let name = |n: &str| {
            EntityTypeName::from_str(n).map_err(|e| PolicyError::BuiltinSchema(e.to_string()))
        };
        let action_type = name("Sigil::Action")?;
        let actions = Action::ALL
            .into_iter()
            .map(|a| {
                (
                    a,
                    EntityUid::from_type_name_and_id(
                        action_type.clone(),
                        EntityId::new(a.as_str()),
                    ),
                )
            })
            .collect();
        Ok(Compiled {
            version: version.into(),
            slices,
            ancestors,
            meta,
            identity_type: name("Sigil::Identity")?,
            actions,
            authorizer: Authorizer::new(),
        })
    }

    /// The version this set was stored as (reported in every decision).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of policies in the set.
    pub fn policy_count(&self) -> usize {
        self.meta.len()
    }

    /// Decide `req`, sent by `requester`, at time `now`. `req.principal` is ignored:
    /// the requester is who authentication (or a dry run) established.
    pub fn decide(
        &self,
        req: &EvaluateRequest,
        requester: &Requester,
        now: DateTime<Utc>,
    ) -> Result<Decision, RequestError> {
        self.explain(req, requester, now).map(|e| e.decision)
    }

    /// Decide `req`, sent by `requester`, at time `now`, saying which policies decided
    /// each name.
    pub fn explain(
        &self,
        req: &EvaluateRequest,
        requester: &Requester,
        now: DateTime<Utc>,
    ) -> Result<Explanation, RequestError> {
        let principal = requester.principal.as_str();
        let principal_uid = principal_uid(principal)?;
        let decided = effective_action(req.action, &requester.grant);
        let action = self
            .actions
            .get(&decided)
            .cloned()
            .ok_or_else(|| RequestError::Internal(format!("no action {decided:?}")))?;
        let lifetime_matters = matches!(decided, Action::Issue | Action::Renew);

        let mut refusals = Vec::new();
        if lifetime_matters && req.ttl_seconds <= 0 {
            refusals.push(format!(
                "ttl_seconds must be positive (got {})",
                req.ttl_seconds
            ));
        }
        let (names, bad_names) = subject_names(req);
        refusals.extend(bad_names);
        let builtin = builtin_checks(decided, &requester.grant, &names, req.profile);
        refusals.extend(builtin.reasons.iter().cloned());

        // The store of this request: the principal, with every group it is in
        // (transitively, precomputed) as its parents, and one resource per name (a name
        // given twice is one entity). Small, so building it is cheap whatever the size
        // of the stored memberships.
        let parents = parents_of(&self.ancestors, &principal_uid);
        let common = CommonAttrs::of(req);
        let resources = names
            .iter()
            .map(|n| self.resource(n, &common))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        let entities = Entities::from_entities(
            std::iter::once(Entity::new_no_attrs(principal_uid.clone(), parents))
                .chain(resources.iter().filter(|r| seen.insert(r.uid())).cloned()),
            None,
        )
        .map_err(|e| RequestError::Internal(e.to_string()))?;

        let slice = self
            .slices
            .slice(&principal_uid, &parents_of(&self.ancestors, &principal_uid))?;

        let mut ttl = req.ttl_seconds;
        let mut clamps: Vec<String> = Vec::new();
        let mut outcomes;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let context = context(req, requester, ttl, now)?;
            outcomes = Vec::with_capacity(resources.len());
            for (name, resource) in names.iter().zip(&resources) {
                outcomes.push(self.authorize(
                    &slice,
                    name,
                    &principal_uid,
                    &action,
                    resource,
                    &context,
                    &entities,
                )?);
            }
            if !lifetime_matters || outcomes.iter().all(|o| o.allowed) || rounds > MAX_CLAMP_ROUNDS
            {
                break;
            }
            // Clamp only when every denial is by clamp forbids alone.
            let mut clamp_to: Option<(i64, &PolicyHit)> = None;
            let mut only_clamps = true;
            for o in outcomes.iter().filter(|o| !o.allowed) {
                if o.unpermitted {
                    only_clamps = false;
                }
                for hit in &o.determining {
                    match hit.clamp_ttl_seconds {
                        Some(c) if clamp_to.is_none_or(|(m, _)| c < m) => clamp_to = Some((c, hit)),
                        Some(_) => {}
                        None => only_clamps = false,
                    }
                }
            }
            match clamp_to {
                Some((c, hit)) if only_clamps && c < ttl => {
                    clamps.push(format!(
                        "requested ttl of {}s exceeds the maximum of {c}s; clamped to {c}s ({})",
                        req.ttl_seconds,
                        describe(hit)
                    ));
                    ttl = c;
                }
                _ => break,
            }
        }

        // A name the proof does not cover is denied whatever Cedar said of it.
        for o in &mut outcomes {
            let hits: Vec<&PolicyHit> = builtin
                .hits
                .iter()
                .filter(|(name, _)| name.as_ref().is_none_or(|n| *n == o.name))
                .map(|(_, hit)| hit)
                .collect();
            if hits.is_empty() {
                continue;
            }
            if o.allowed {
                // The permits that allowed it no longer decide: the check does.
                o.determining.clear();
                o.allowed = false;
            }
            o.determining.splice(0..0, hits.into_iter().cloned());
        }
        let allowed = refusals.is_empty() && outcomes.iter().all(|o| o.allowed);
        let reasons = if allowed {
            clamps
        } else {
            let mut reasons = refusals;
            reasons.extend(denial_reasons(decided, principal, &outcomes));
            reasons
        };
        let decision = Decision {
            allowed,
            reasons,
            constraints: Constraints {
                ttl_seconds: ttl,
                ttl_clamped: ttl < req.ttl_seconds,
            },
            policy_version: self.version.clone(),
            principal: principal.to_owned(),
            authenticated_by: requester.method,
            action: Some(decided),
        };
        Ok(Explanation {
            decision,
            principal: principal_uid.to_string(),
            at: now,
            evaluations: outcomes
                .into_iter()
                .map(|o| NameEvaluation {
                    name: o.name.wire(),
                    allowed: o.allowed,
                    ttl_seconds: ttl,
                    determining: o.determining,
                    errors: o.errors,
                })
                .collect(),
        })
    }

    fn resource(&self, name: &Name, common: &CommonAttrs) -> Result<Entity, RequestError> {
        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        attrs.insert(
            "profile".into(),
            RestrictedExpression::new_string(common.profile.clone()),
        );
        attrs.insert(
            "dns_names".into(),
            RestrictedExpression::new_set(
                common
                    .dns
                    .iter()
                    .map(|d| RestrictedExpression::new_string(d.clone())),
            ),
        );
        attrs.insert(
            "ips".into(),
            RestrictedExpression::new_set(common.ips.iter().map(RestrictedExpression::new_ip)),
        );
        attrs.insert(
            "uris".into(),
            RestrictedExpression::new_set(
                common
                    .uris
                    .iter()
                    .map(|u| RestrictedExpression::new_string(u.clone())),
            ),
        );
        attrs.insert(
            "san_count".into(),
            RestrictedExpression::new_long(i64::try_from(common.count).unwrap_or(i64::MAX)),
        );
        let mut wildcard = false;
        let san_type = match name {
            Name::Dns(d) => {
                wildcard = d.starts_with("*.");
                attrs.insert(
                    "dns_name".into(),
                    RestrictedExpression::new_string(d.clone()),
                );
                "dns"
            }
            Name::Ip(ip) => {
                attrs.insert("ip".into(), RestrictedExpression::new_ip(ip.to_string()));
                "ip"
            }
            Name::Uri(u) => {
                attrs.insert("uri".into(), RestrictedExpression::new_string(u.clone()));
                if let Some((domain, path)) = spiffe_parts(u) {
                    attrs.insert(
                        "spiffe_id".into(),
                        RestrictedExpression::new_string(u.clone()),
                    );
                    attrs.insert(
                        "trust_domain".into(),
                        RestrictedExpression::new_string(domain.to_owned()),
                    );
                    attrs.insert(
                        "spiffe_path".into(),
                        RestrictedExpression::new_string(path.to_owned()),
                    );
                }
                "uri"
            }
            Name::None => "none",
        };
        attrs.insert(
            "san_type".into(),
            RestrictedExpression::new_string(san_type.to_owned()),
        );
        attrs.insert("wildcard".into(), RestrictedExpression::new_bool(wildcard));
        let uid = EntityUid::from_type_name_and_id(
            self.identity_type.clone(),
            EntityId::new(name.wire()),
        );
        Entity::new(uid, attrs, HashSet::new()).map_err(|e| RequestError::Internal(e.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    fn authorize(
        &self,
        slice: &Slice,
        name: &Name,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &Entity,
        context: &Context,
        entities: &Entities,
    ) -> Result<Outcome, RequestError> {
        let request = Request::new(
            principal.clone(),
            action.clone(),
            resource.uid(),
            context.clone(),
            None,
        )
        .map_err(|e| RequestError::Internal(e.to_string()))?;
        let response = self
            .authorizer
            .is_authorized(&request, &slice.all, entities);
        let allowed = response.decision() == CedarDecision::Allow;
        let mut determining: Vec<PolicyHit> = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.meta.get(id).map(|m| m.hit.clone()))
            .collect();
        determining.sort_by(|a, b| a.id.cmp(&b.id));
        let errors = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        // Denied by forbids: would anything have permitted it? (Every reason, not just
        // the first: a name outside every allowance is said so even when a forbid fired.)
        let unpermitted = !allowed
            && (determining.is_empty()
                || self
                    .authorizer
                    .is_authorized(&request, &slice.permits, entities)
                    .decision()
                    == CedarDecision::Deny);
        Ok(Outcome {
            name: name.clone(),
            allowed,
            unpermitted,
            determining,
            errors,
        })
    }
}

/// Most principals whose policy slice is kept; the cache starts over when full.
const MAX_SLICES: usize = 4096;

fn parents_of(
    ancestors: &HashMap<EntityUid, HashSet<EntityUid>>,
    uid: &EntityUid,
) -> HashSet<EntityUid> {
    ancestors.get(uid).cloned().unwrap_or_default()
}

/// The policies that can apply to one principal.
#[derive(Debug)]
struct Slice {
    all: PolicySet,
    /// The permits alone: on a denial by forbids, tells whether anything permitted.
    permits: PolicySet,
}

/// Policy slicing: a policy whose scope names a principal entity (`principal ==
/// X`, `principal in X`, `principal is T in X`) can only be satisfied by X or by a
/// member of X, so each principal is decided by the unscoped policies plus those naming
/// it or one of its groups. Exact (no decision changes), and with 1,000
/// group-scoped policies it is what keeps a decision well under a millisecond. Slices
/// are built on first use per principal and cached for the life of the version.
#[derive(Debug)]
struct Slices {
    unscoped: Vec<cedar_policy::Policy>,
    by_entity: HashMap<EntityUid, Vec<cedar_policy::Policy>>,
    cache: std::sync::Mutex<HashMap<EntityUid, Arc<Slice>>>,
}

impl Slices {
    fn new(set: &PolicySet) -> Slices {
        let mut unscoped = Vec::new();
        let mut by_entity: HashMap<EntityUid, Vec<cedar_policy::Policy>> = HashMap::new();
        for p in set.policies() {
            match p.principal_constraint() {
                PrincipalConstraint::In(uid)
                | PrincipalConstraint::Eq(uid)
                | PrincipalConstraint::IsIn(_, uid) => {
                    by_entity.entry(uid).or_default().push(p.clone());
                }
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => unscoped.push(p.clone()),
            }
        }
        Slices {
            unscoped,
            by_entity,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn slice(
        &self,
        principal: &EntityUid,
        groups: &HashSet<EntityUid>,
    ) -> Result<Arc<Slice>, RequestError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache.get(principal) {
            return Ok(s.clone());
        }
        let policies: Vec<cedar_policy::Policy> = self
            .unscoped
            .iter()
            .chain(
                std::iter::once(principal)
                    .chain(groups)
                    .filter_map(|uid| self.by_entity.get(uid))
                    .flatten(),
            )
            .cloned()
            .collect();
        let build = |ps: Vec<cedar_policy::Policy>| {
            PolicySet::from_policies(ps).map_err(|e| RequestError::Internal(e.to_string()))
        };
        let permits = policies
            .iter()
            .filter(|p| p.effect() == cedar_policy::Effect::Permit)
            .cloned()
            .collect();
        let slice = Arc::new(Slice {
            all: build(policies)?,
            permits: build(permits)?,
        });
        if cache.len() >= MAX_SLICES {
            cache.clear();
        }
        cache.insert(principal.clone(), slice.clone());
        Ok(slice)
    }
}

/// The action a request is decided as: an `issue` proven by a non-admin credential is
/// that credential renewing itself (`renew`); anything else is decided as asked.
pub fn effective_action(asked: Action, grant: &Grant) -> Action {
    match (asked, grant) {
        (Action::Issue, Grant::Credential { admin: false, .. }) => Action::Renew,
        (other, _) => other,
    }
}

/// What the proof-derived checks found: the reasons to deny, and the hits to show in
/// the explanation (against one name, or `None` for every name).
#[derive(Debug, Default)]
struct Builtin {
    reasons: Vec<String>,
    hits: Vec<(Option<Name>, PolicyHit)>,
}

/// The checks that come from the proof itself ([`TOKEN_NAMES`], [`RENEWAL_NAMES`]),
/// before any policy. `names` are the request's well-formed, normalized names.
fn builtin_checks(
    decided: Action,
    grant: &Grant,
    names: &[Name],
    profile: sigil_contracts::types::Profile,
) -> Builtin {
    let mut out = Builtin::default();
    let hit = |id: &str, reason: String| PolicyHit {
        id: id.to_owned(),
        effect: Effect::Forbid,
        reason: Some(reason),
        clamp_ttl_seconds: None,
    };
    match grant {
        Grant::Token { .. } if decided != Action::Issue => {
            out.reasons
                .push(format!("{TOKEN_ACTION}: {TOKEN_ACTION_REASON}"));
            out.hits
                .push((None, hit(TOKEN_ACTION, TOKEN_ACTION_REASON.to_owned())));
        }
        Grant::Token {
            names: patterns, ..
        } => {
            let allowed = patterns.join(", ");
            for name in names {
                let subject = match name {
                    Name::Dns(d) => SubjectName::Dns(d),
                    Name::Ip(ip) => SubjectName::Ip(*ip),
                    Name::Uri(u) => SubjectName::Uri(u),
                    Name::None => continue,
                };
                if !patterns.iter().any(|p| pattern_allows(p, subject)) {
                    let reason = format!(
                        "the token allows only {allowed}; {} is outside them",
                        name.human()
                    );
                    out.reasons.push(format!("{TOKEN_NAMES}: {reason}"));
                    out.hits
                        .push((Some(name.clone()), hit(TOKEN_NAMES, reason)));
                }
            }
        }
        Grant::Credential {
            sans,
            profile: own_profile,
            admin: false,
            ..
        } if decided == Action::Renew => {
            let asked: HashSet<String> = names
                .iter()
                .filter(|n| !matches!(n, Name::None))
                .map(Name::wire)
                .collect();
            let own: HashSet<String> = credential_names(sans).map(|n| n.wire()).collect();
            let mut detail = Vec::new();
            if asked != own {
                let mut extra: Vec<&String> = asked.difference(&own).collect();
                let mut missing: Vec<&String> = own.difference(&asked).collect();
                extra.sort();
                missing.sort();
                if !extra.is_empty() {
                    detail.push(format!("not in the credential: {}", join_names(&extra)));
                }
                if !missing.is_empty() {
                    detail.push(format!("missing: {}", join_names(&missing)));
                }
            }
            if own_profile.is_some_and(|p| p != profile) {
                detail.push(format!(
                    "profile {} asked, the credential is {}",
                    profile.as_str(),
                    own_profile.map_or("unknown", |p| p.as_str())
                ));
            }
            if !detail.is_empty() {
                out.reasons.push(format!(
                    "{RENEWAL_NAMES}: {RENEWAL_REASON} ({})",
                    detail.join("; ")
                ));
                out.hits
                    .push((None, hit(RENEWAL_NAMES, RENEWAL_REASON.to_owned())));
            }
        }
        _ => {}
    }
    out
}

/// A credential's SANs as the request's names are normalized: DNS lower-case without
/// a trailing dot, IP addresses canonical, URIs as written.
fn credential_names(sans: &sigil_contracts::types::Sans) -> impl Iterator<Item = Name> + '_ {
    sans.dns
        .iter()
        .map(|d| Name::Dns(normalize_dns(d)))
        .chain(sans.ip.iter().map(|ip| Name::Ip(ip.to_canonical())))
        .chain(sans.uri.iter().map(|u| Name::Uri(u.clone())))
}

fn join_names(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reasons of a denial: every deciding forbid once (naming the names it denied unless
/// it denied them all), and every name no policy permits.
fn denial_reasons(action: Action, principal: &str, outcomes: &[Outcome]) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut forbids: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    let mut order = Vec::new();
    for o in outcomes.iter().filter(|o| !o.allowed) {
        if o.unpermitted {
            reasons.push(format!(
                "no policy permits {} of {} for {principal}",
                action.as_str(),
                o.name.human(),
            ));
        }
        for hit in &o.determining {
            // Built-in checks are already among the reasons (before any policy's).
            if hit.id.starts_with("sigil:") {
                continue;
            }
            let key = describe(hit);
            let entry = forbids.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (0, Vec::new())
            });
            entry.0 += 1;
            entry.1.push(o.name.human());
        }
    }
    for key in order {
        if let Some((count, names)) = forbids.get(&key) {
            if *count == outcomes.len() {
                reasons.push(key);
            } else {
                reasons.push(format!("{key} ({})", names.join(", ")));
            }
        }
    }
    reasons
}

/// `id: reason`, or the id alone.
fn describe(hit: &PolicyHit) -> String {
    match &hit.reason {
        Some(r) => format!("{}: {r}", hit.id),
        None => hit.id.clone(),
    }
}

#[derive(Debug, Clone)]
struct Outcome {
    name: Name,
    allowed: bool,
    /// Denied, and no permit was satisfied.
    unpermitted: bool,
    determining: Vec<PolicyHit>,
    errors: Vec<String>,
}

/// One subject name, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    /// A request without subject names.
    None,
}

impl Name {
    /// `dns:…`, `ip:…`, `uri:…` or `-`: the resource id and the explanation's key.
    fn wire(&self) -> String {
        match self {
            Name::Dns(d) => format!("dns:{d}"),
            Name::Ip(ip) => format!("ip:{ip}"),
            Name::Uri(u) => format!("uri:{u}"),
            Name::None => "-".to_owned(),
        }
    }

    /// As said in reasons: `dns name web.example.com`.
    fn human(&self) -> String {
        match self {
            Name::Dns(d) => format!("dns name {d}"),
            Name::Ip(ip) => format!("ip address {ip}"),
            Name::Uri(u) => format!("uri {u}"),
            Name::None => "a request without subject names".to_owned(),
        }
    }
}

/// Attributes every per-name resource of one request shares.
struct CommonAttrs {
    profile: String,
    dns: Vec<String>,
    ips: Vec<String>,
    uris: Vec<String>,
    count: usize,
}

impl CommonAttrs {
    fn of(req: &EvaluateRequest) -> CommonAttrs {
        CommonAttrs {
            profile: req.profile.as_str().to_owned(),
            dns: req.sans.dns.iter().map(|d| normalize_dns(d)).collect(),
            ips: req
                .sans
                .ip
                .iter()
                .map(|ip| ip.to_canonical().to_string())
                .collect(),
            uris: req.sans.uri.clone(),
            count: req.sans.dns.len() + req.sans.ip.len() + req.sans.uri.len(),
        }
    }
}

/// The names to authorize, and a refusal for each name that is not well-formed.
fn subject_names(req: &EvaluateRequest) -> (Vec<Name>, Vec<String>) {
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for d in &req.sans.dns {
        let n = normalize_dns(d);
        if is_valid_dns_name(&n) {
            names.push(Name::Dns(n));
        } else {
            bad.push(format!("dns name {d:?} is not a valid DNS name"));
        }
    }
    for ip in &req.sans.ip {
        // `::ffff:10.0.0.1` is 10.0.0.1 to every TLS stack; judge it as such.
        names.push(Name::Ip(ip.to_canonical()));
    }
    for u in &req.sans.uri {
        if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bad.push(format!("uri {u:?} is not a valid URI"));
            continue;
        }
        let path = u.split(['?', '#']).next().unwrap_or(u);
        if path.split('/').any(|seg| seg == "." || seg == "..") {
            bad.push(format!("uri {u} contains a dot path segment"));
            continue;
        }
        names.push(Name::Uri(u.clone()));
    }
    if names.is_empty() && bad.is_empty() {
        names.push(Name::None);
    }
    (names, bad)
}

/// `spiffe://<trust domain><path>` split in two, when `uri` is a SPIFFE ID.
fn spiffe_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = !path.contains(['?', '#']);
    (domain_ok && path_ok).then_some((domain, path))
}

/// The Cedar context of a request by `requester` decided with lifetime `ttl` at `now`.
fn context(
    req: &EvaluateRequest,
    requester: &Requester,
    ttl: i64,
    now: DateTime<Utc>,
) -> Result<Context, RequestError> {
    let (family, bits) = key_facts(req.key_algorithm);
    let bits = req.key_bits.map_or(bits, i64::from);
    let kind = req.kind.unwrap_or(CaKind::Classical);
    Context::from_pairs([
        (
            "key_algorithm".to_owned(),
            RestrictedExpression::new_string(req.key_algorithm.as_str().to_owned()),
        ),
        (
            "key_family".to_owned(),
            RestrictedExpression::new_string(family.to_owned()),
        ),
        ("key_bits".to_owned(), RestrictedExpression::new_long(bits)),
        (
            "ttl_seconds".to_owned(),
            RestrictedExpression::new_long(ttl),
        ),
        (
            "kind".to_owned(),
            RestrictedExpression::new_string(kind.as_str().to_owned()),
        ),
        (
            "pq".to_owned(),
            RestrictedExpression::new_bool(kind != CaKind::Classical),
        ),
        (
            "now".to_owned(),
            RestrictedExpression::new_datetime(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ),
        (
            "authenticated_by".to_owned(),
            RestrictedExpression::new_string(requester.method.as_str().to_owned()),
        ),
    ])
    .map_err(|e| RequestError::Internal(e.to_string()))
}

/// Family and size in bits of a key algorithm (ML-DSA and composites: the security
/// strength of the ML-DSA parameter set's NIST category: 128, 192, 256).
pub fn key_facts(alg: KeyAlgorithm) -> (&'static str, i64) {
    match alg {
        KeyAlgorithm::EcdsaP256 => ("ecdsa", 256),
        KeyAlgorithm::EcdsaP384 => ("ecdsa", 384),
        KeyAlgorithm::Ed25519 => ("eddsa", 256),
        KeyAlgorithm::Rsa2048 => ("rsa", 2048),
        KeyAlgorithm::Rsa3072 => ("rsa", 3072),
        KeyAlgorithm::Rsa4096 => ("rsa", 4096),
        KeyAlgorithm::MlDsa44 => ("ml-dsa", 128),
        KeyAlgorithm::MlDsa65 => ("ml-dsa", 192),
        KeyAlgorithm::MlDsa87 => ("ml-dsa", 256),
        // Composite ML-DSA + classical keys (`mldsa65-ecdsa-p256-sha512`, …).
        other => {
            let name = other.as_str();
            let bits = if name.starts_with("mldsa44") {
                128
            } else if name.starts_with("mldsa65") {
                192
            } else {
                256
            };
            ("composite", bits)
        }
    }
}

/// Lowercase, without a trailing dot.
fn normalize_dns(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// LDH syntax (RFC 1035/1123), with `*` allowed as a whole leftmost label only.
fn is_valid_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_DNS_NAME || name == "*" {
        return false;
    }
    name.split('.').enumerate().all(|(i, label)| {
        if i == 0 && label == "*" {
            return true;
        }
        !label.is_empty()
            && label.len() <= MAX_DNS_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Every policy's id, reason and clamp, checking the annotations.
fn index(set: &PolicySet) -> Result<HashMap<PolicyId, Meta>, PolicyError> {
    let mut meta = HashMap::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<String, PolicyId> = HashMap::new();
    for policy in set.policies() {
        let id = policy
            .annotation(ID_ANNOTATION)
            .map_or_else(|| policy.id().to_string(), str::to_owned);
        if let Some(first) = seen.insert(id.clone(), policy.id().clone()) {
            problems.push(Problem {
                message: format!(
                    "@id({id:?}) is used by more than one policy ({first} and {})",
                    policy.id()
                ),
                line: None,
                column: None,
            });
        }
        let clamp = match policy.annotation(CLAMP_ANNOTATION) {
            None => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n > 0 => {
                    if policy.effect() == cedar_policy::Effect::Permit {
                        problems.push(Problem {
                            message: format!(
                                "@clamp_ttl_seconds on permit policy {id:?}: only a forbid can clamp"
                            ),
                            line: None,
                            column: None,
                        });
                    }
                    Some(n)
                }
                _ => {
                    problems.push(Problem {
                        message: format!(
                            "@clamp_ttl_seconds({v:?}) on policy {id:?} is not a positive number of seconds"
                        ),
                        line: None,
                        column: None,
                    });
                    None
                }
            },
        };
        let effect = match policy.effect() {
            cedar_policy::Effect::Permit => sigil_contracts::policy::Effect::Permit,
            cedar_policy::Effect::Forbid => sigil_contracts::policy::Effect::Forbid,
        };
        meta.insert(
            policy.id().clone(),
            Meta {
                hit: PolicyHit {
                    id,
                    effect,
                    reason: policy.annotation(REASON_ANNOTATION).map(str::to_owned),
                    clamp_ttl_seconds: clamp,
                },
            },
        );
    }
    if problems.is_empty() {
        Ok(meta)
    } else {
        Err(PolicyError::Annotation(problems))
    }
}

/// A problem at the first source span Cedar attached to `err`.
fn located(text: &str, err: &dyn Diagnostic, message: String) -> Problem {
    let offset = err
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let mut message = message;
    if let Some(help) = err.help() {
        message = format!("{message} ({help})");
    }
    let (line, column) = match offset {
        Some(o) => {
            let (l, c) = line_column(text, o);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    Problem {
        message,
        line,
        column,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
