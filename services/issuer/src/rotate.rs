//! `sigil.issuer.v1.ca_rotate` and `sigil.issuer.v1.trust_bundle`: staged rotation of
//! the intermediate through current/next slots, and the bundle relying parties trust.
//!
//! `ca_rotate` is for admins: policy authenticates the request's proof and decides
//! action `admin` before any step runs. `prepare` creates the next intermediate (in
//! the bundle, not signing), `activate` swaps it in and retires the old one, `auto`
//! does both. Each step is one database transaction that also enqueues
//! `ca.bundle_changed` (see [`crate::ca`]); after an activation this replica's
//! in-memory hierarchy is reloaded at once, other replicas reload on their next
//! issuance (they compare the active intermediate's id).

use std::sync::Arc;

use sigil_contracts::WireError;
use sigil_contracts::issuer::{
    CaInfo, CaRole, CaRotateRequest, CaRotateResponse, CaState, RotateStep, TrustBundle,
    TrustBundleRequest,
};
use sigil_contracts::subjects::ISSUER_CA_ROTATE;

use crate::Error;
use crate::ca::{self, RotateError};
use crate::issue::Issuer;

impl Issuer {
    /// Handle one `ca_rotate` request. Only an admin may: policy authenticates the
    /// request's proof and decides action `admin` (about the current hierarchy)
    /// before any step runs.
    pub async fn ca_rotate(
        &self,
        req: CaRotateRequest,
        digest: String,
    ) -> Result<CaRotateResponse, WireError> {
        let (kind, key_algorithm) = {
            let cas = self.cas.read().await;
            (cas.kind, cas.intermediate.leaf_key_algorithm())
        };
        // Asked before taking the lock: no lock is held across a network call.
        let decision = self
            .authorize_admin(ISSUER_CA_ROTATE, &req, digest, kind, key_algorithm)
            .await?;
        tracing::info!(step = ?req.step, by = %decision.principal, "ca_rotate authorized");
        // Holding the write lock serializes this replica's rotations and inits.
        let mut cas = self.cas.write().await;
        let mut retired = None;
        let mut bundle = None;
        if matches!(req.step, RotateStep::Prepare | RotateStep::Auto) {
            let (_, b) = ca::prepare(
                &self.db,
                self.keys.as_ref(),
                &self.ca_common_name,
                self.rt.now(),
            )
            .await
            .map_err(rotate_error)?;
            bundle = Some(b);
            self.outbox.wake();
        }
        if matches!(req.step, RotateStep::Activate | RotateStep::Auto) {
            let (old, b) = ca::activate(&self.db, self.rt.now())
                .await
                .map_err(rotate_error)?;
            self.outbox.wake();
            retired = old;
            bundle = Some(b);
            let loaded = ca::load_active(&self.db, self.keys.as_ref())
                .await
                .map_err(|e| WireError::internal(format!("cannot load the CA hierarchy: {e}")))?
                .ok_or_else(|| WireError::internal("no active CA hierarchy after activation"))?;
            *cas = Arc::new(loaded);
        }
        drop(cas);
        let bundle = bundle.ok_or_else(|| WireError::internal("no rotation step ran"))?;
        let all = ca::list(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot list CAs: {e}")))?;
        let slot = |state: CaState| {
            all.iter()
                .rev()
                .find(|c| c.role == CaRole::Intermediate && c.state == Some(state))
                .cloned()
        };
        let current: CaInfo = slot(CaState::Current)
            .ok_or_else(|| WireError::internal("no current intermediate CA"))?;
        Ok(CaRotateResponse {
            current,
            next: slot(CaState::Next),
            retired: retired.and_then(|id| all.iter().find(|c| c.id == id).cloned()),
            bundle,
        })
    }

    /// Handle one `trust_bundle` request.
    pub async fn trust_bundle(&self, _req: TrustBundleRequest) -> Result<TrustBundle, WireError> {
        // Version first: a change in between yields an older version with newer
        // content, which the next `ca.bundle_changed` supersedes.
        let version = ca::read_version(&self.db)
            .await
            .map_err(|e| WireError::unavailable(format!("cannot read the trust bundle: {e}")))?;
        ca::bundle(&self.db, version, self.rt.now())
            .await
            .map_err(|e| match e {
                Error::Database(e) => {
                    WireError::unavailable(format!("cannot read the trust bundle: {e}"))
                }
                e => WireError::internal(format!("cannot build the trust bundle: {e}")),
            })
    }
}

fn rotate_error(e: RotateError) -> WireError {
    match e {
        RotateError::Conflict(message) => WireError::conflict(message),
        RotateError::Other(Error::Database(e)) => {
            WireError::unavailable(format!("CA rotation: database: {e}"))
        }
        RotateError::Other(e) => WireError::internal(format!("CA rotation: {e}")),
    }
}
