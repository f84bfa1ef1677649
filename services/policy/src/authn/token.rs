//! Bootstrap tokens: JWTs (HS256) minted and verified by the policy service alone.
//!
//! HMAC fits because the party that mints a token is the only one that verifies it:
//! no other service ever needs a public key, and a 256-bit secret in the policy
//! database (`token_keys`) is all there is to protect. Each token names its key (`kid`
//! header), so a new key can be added later without invalidating tokens already out.
//!
//! Verification never reads the system clock: jsonwebtoken's own `exp`/`nbf` checks are
//! off and the times are compared with the injected `now`, so tests move a
//! `ManualClock` instead of sleeping. Using a token up is not done here: the use ledger
//! ([`super::ledger`]) counts uses once a decision allowed the request.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryOrder, Statement, TransactionTrait,
};
use sigil_contracts::auth::{
    MAX_TOKEN_TTL_SECONDS, MAX_TOKEN_USES, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenClaims,
};

use super::AuthError;

/// Length of a token key, bytes (256 bits, the HS256 block-size-safe minimum RFC 7518
/// §3.2 asks for).
pub const SECRET_LEN: usize = 32;
/// Longest token accepted for verification, bytes; ours are well under 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most name patterns one token may carry.
pub const MAX_TOKEN_NAMES: usize = 64;
/// Longest name pattern (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;
/// Longest principal, bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 256;
/// Principal types a token may authenticate.
pub const PRINCIPAL_TYPES: [&str; 4] = ["workload", "agent", "service", "admin"];
/// Key of the PostgreSQL advisory lock that serializes key creation ("SIGTOK").
const ADVISORY_KEY: i64 = 0x5349_4754_4f4b;

/// The `token_keys` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_keys")]
    pub struct Model {
        /// Key id, the `kid` header of the tokens it signs (a UUID).
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        /// The HS256 secret, [`super::SECRET_LEN`] bytes.
        pub secret: Vec<u8>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The HS256 secrets of bootstrap tokens, by key id. The newest signs; all verify.
/// `Debug` shows the key ids only.
pub struct TokenKeys {
    /// Oldest first; never empty.
    keys: Vec<(String, [u8; SECRET_LEN])>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field(
                "kids",
                &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl TokenKeys {
    /// Load the key(s) from the policy database (`token_keys`), creating one (32 random
    /// bytes, kid = a random UUID) when there is none. Replicas starting together end
    /// with the same single key: creation checks for a key and inserts under a lock
    /// (PostgreSQL advisory transaction lock; SQLite's write lock, taken first), and
    /// everyone re-reads afterwards.
    pub async fn load_or_create(db: &DatabaseConnection) -> Result<TokenKeys, AuthError> {
        if let Some(keys) = Self::load(db).await? {
            return Ok(keys);
        }
        create_if_none(db).await.map_err(db_unavailable)?;
        Self::load(db).await?.ok_or_else(|| {
            AuthError::Unavailable("the token key was created but cannot be read back".into())
        })
    }

    /// A key set from raw secrets (for tests and tools that hold the secret some other
    /// way); oldest first, the last one signs.
    pub fn from_secrets(keys: Vec<(String, [u8; SECRET_LEN])>) -> Result<TokenKeys, AuthError> {
        if keys.is_empty() {
            return Err(AuthError::Malformed("a token key set needs a key".into()));
        }
        Ok(TokenKeys { keys })
    }

    /// The id of the key that signs new tokens.
    pub fn current_kid(&self) -> &str {
        self.keys.last().map(|(kid, _)| kid.as_str()).unwrap_or("")
    }

    async fn load(db: &DatabaseConnection) -> Result<Option<TokenKeys>, AuthError> {
        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::CreatedAt)
            .order_by_asc(entity::Column::Kid)
            .all(db)
            .await
            .map_err(db_unavailable)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let secret: [u8; SECRET_LEN] = row.secret.as_slice().try_into().map_err(|_| {
                AuthError::Unavailable(format!(
                    "token key {} is {} bytes, not {SECRET_LEN}",
                    row.kid,
                    row.secret.len()
                ))
            })?;
            keys.push((row.kid, secret));
        }
        Ok(Some(TokenKeys { keys }))
    }

    /// Mint a token for `principal` that may ask for names matching `names`, valid for
    /// `ttl_seconds` from `now` and for `uses` requests. Answers the compact JWS and its
    /// claims. Inputs out of range are [`AuthError::Malformed`], saying which.
    pub fn mint(
        &self,
        principal: &str,
        names: &[String],
        ttl_seconds: i64,
        uses: u32,
        now: DateTime<Utc>,
    ) -> Result<(String, TokenClaims), AuthError> {
        check_principal(principal)?;
        check_names(names)?;
        if !(1..=MAX_TOKEN_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(AuthError::Malformed(format!(
                "token lifetime must be 1 to {MAX_TOKEN_TTL_SECONDS} seconds, not {ttl_seconds}"
            )));
        }
        if !(1..=MAX_TOKEN_USES).contains(&uses) {
            return Err(AuthError::Malformed(format!(
                "token uses must be 1 to {MAX_TOKEN_USES}, not {uses}"
            )));
        }
        let (kid, secret) = self
            .keys
            .last()
            .ok_or_else(|| AuthError::Unavailable("no token key loaded".into()))?;
        let iat = now.trunc_subsecs(0).timestamp();
        let claims = TokenClaims {
            iss: TOKEN_ISSUER.to_owned(),
            aud: TOKEN_AUDIENCE.to_owned(),
            sub: principal.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl_seconds),
            sigil_for: names.to_vec(),
            sigil_uses: uses,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
            .map_err(|e| AuthError::Unavailable(format!("cannot sign the token: {e}")))?;
        Ok((token, claims))
    }

    /// Verify `token`: HS256 only (`none` and every other algorithm are refused), signed
    /// by one of our keys (by `kid`), issuer [`TOKEN_ISSUER`], audience
    /// [`TOKEN_AUDIENCE`], and `nbf <= now < exp` against the injected `now`. Does not
    /// consume a use.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "token is {} bytes, more than {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("token header: {e}")))?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::BadSignature(format!(
                "Sigil tokens are signed with HS256, this one says {:?}",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::BadSignature("token names no signing key (kid)".into()))?;
        let (_, secret) = self.keys.iter().find(|(k, _)| *k == kid).ok_or_else(|| {
            AuthError::BadSignature(format!(
                "token is signed by key {kid:?}, which this service does not hold (not minted here)"
            ))
        })?;
        let mut validation = Validation::new(Algorithm::HS256);
        // Times are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        let data = jsonwebtoken::decode::<TokenClaims>(
            token,
            &DecodingKey::from_secret(secret),
            &validation,
        )
        .map_err(|e| jwt_error(e.kind()))?;
        let claims = data.claims;
        let at = now.timestamp();
        if at < claims.nbf {
            return Err(AuthError::Expired(format!(
                "token is not valid before {}",
                timestamp_text(claims.nbf)
            )));
        }
        if at >= claims.exp {
            return Err(AuthError::Expired(format!(
                "token expired at {}",
                timestamp_text(claims.exp)
            )));
        }
        if claims.sigil_uses == 0 || claims.sigil_for.is_empty() || !valid_jti(&claims.jti) {
            return Err(AuthError::Malformed(
                "token claims are out of range (uses, names or jti)".into(),
            ));
        }
        Ok(claims)
    }
}

/// Insert a fresh key unless one exists, under a lock so concurrent creators serialize.
async fn create_if_none(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            txn.execute(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({ADVISORY_KEY})"),
            ))
            .await?;
        }
        // A write first takes SQLite's write lock (waiting in the busy handler), so the
        // read below sees whatever a concurrent creator committed. Matches no row.
        backend => {
            txn.execute(Statement::from_string(
                backend,
                "DELETE FROM token_keys WHERE kid = ''".to_owned(),
            ))
            .await?;
        }
    }
    if entity::Entity::find().one(&txn).await?.is_none() {
        let mut secret = [0u8; SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let row = entity::ActiveModel {
            kid: Set(uuid::Uuid::new_v4().to_string()),
            secret: Set(secret.to_vec()),
            // Bookkeeping only (orders keys); never compared with token times.
            created_at: Set(Utc::now().trunc_subsecs(6)),
        };
        entity::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
        tracing::info!("created the bootstrap-token signing key");
    }
    txn.commit().await
}

fn db_unavailable(e: DbErr) -> AuthError {
    AuthError::Unavailable(format!("policy database: {e}"))
}

fn jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => {
            AuthError::BadSignature("token signature does not verify".into())
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::InvalidKeyFormat => {
            AuthError::BadSignature("token algorithm is not HS256".into())
        }
        ErrorKind::InvalidIssuer => {
            AuthError::Malformed(format!("token issuer is not {TOKEN_ISSUER:?}"))
        }
        ErrorKind::InvalidAudience => {
            AuthError::Malformed(format!("token audience is not {TOKEN_AUDIENCE:?}"))
        }
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Malformed(format!("token lacks the {claim:?} claim"))
        }
        ErrorKind::ExpiredSignature => AuthError::Expired("token expired".into()),
        ErrorKind::ImmatureSignature => AuthError::Expired("token is not valid yet".into()),
        other => AuthError::Malformed(format!("token does not parse: {other:?}")),
    }
}

fn timestamp_text(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| secs.to_string())
}

/// `type:id`, type one of [`PRINCIPAL_TYPES`], id non-empty, no control characters.
fn check_principal(principal: &str) -> Result<(), AuthError> {
    let bad = |why: &str| {
        Err(AuthError::Malformed(format!(
            "principal {principal:?} {why}; expected type:id with type {}",
            PRINCIPAL_TYPES.join(", ")
        )))
    };
    if principal.len() > MAX_PRINCIPAL_BYTES {
        return bad(&format!("is longer than {MAX_PRINCIPAL_BYTES} bytes"));
    }
    let Some((kind, id)) = principal.split_once(':') else {
        return bad("has no type");
    };
    if !PRINCIPAL_TYPES.contains(&kind) {
        return bad("has an unknown type");
    }
    if id.is_empty() || id.chars().any(char::is_control) {
        return bad("has an empty id or control characters");
    }
    Ok(())
}

/// 1 to [`MAX_TOKEN_NAMES`] patterns, each 1 to [`MAX_NAME_LEN`] characters without
/// whitespace or control characters.
fn check_names(names: &[String]) -> Result<(), AuthError> {
    if names.is_empty() || names.len() > MAX_TOKEN_NAMES {
        return Err(AuthError::Malformed(format!(
            "a token needs 1 to {MAX_TOKEN_NAMES} name patterns, not {}",
            names.len()
        )));
    }
    for name in names {
        let len = name.chars().count();
        if len == 0
            || len > MAX_NAME_LEN
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(AuthError::Malformed(format!(
                "name pattern {name:?} must be 1 to {MAX_NAME_LEN} characters without whitespace"
            )));
        }
        sigil_contracts::auth::check_pattern(name).map_err(AuthError::Malformed)?;
    }
    Ok(())
}

/// A `jti` usable as a KV key part (ours are UUIDs).
fn valid_jti(jti: &str) -> bool {
    (1..=128).contains(&jti.len())
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_secrets(vec![("k1".into(), [7u8; SECRET_LEN])]).unwrap()
    }

    #[test]
    fn principals_are_typed() {
        for ok in ["workload:web", "admin:alice", "agent:x", "service:a:b"] {
            assert!(check_principal(ok).is_ok(), "{ok}");
        }
        for bad in [
            "web",
            "user:web",
            "workload:",
            "workload:a\nb",
            &format!("workload:{}", "a".repeat(300)),
        ] {
            assert!(
                matches!(check_principal(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn mint_checks_its_inputs() {
        let k = keys();
        let now = Utc::now();
        let names = vec!["*.web.internal".to_owned()];
        assert!(k.mint("workload:web", &names, 60, 1, now).is_ok());
        assert!(k.mint("workload:web", &[], 60, 1, now).is_err());
        assert!(k.mint("workload:web", &["a b".into()], 60, 1, now).is_err());
        assert!(k.mint("workload:web", &["".into()], 60, 1, now).is_err());
        assert!(
            k.mint("workload:web", &vec!["a".to_owned(); 65], 60, 1, now)
                .is_err()
        );
        assert!(k.mint("workload:web", &names, 0, 1, now).is_err());
        assert!(
            k.mint("workload:web", &names, MAX_TOKEN_TTL_SECONDS + 1, 1, now)
                .is_err()
        );
        assert!(k.mint("workload:web", &names, 60, 0, now).is_err());
        assert!(
            k.mint("workload:web", &names, 60, MAX_TOKEN_USES + 1, now)
                .is_err()
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", keys());
        assert!(text.contains("k1"));
        assert!(!text.contains("7, 7"));
    }
}
