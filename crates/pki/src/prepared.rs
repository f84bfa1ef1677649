//! Prepare, then sign: a linted certificate waiting for its signature.

use std::fmt;

use sigil_contracts::types::Profile;

use crate::error::PkiError;
use crate::leaf::IssuedCert;

type SignFn<'a> = Box<dyn FnOnce() -> Result<IssuedCert, PkiError> + Send + 'a>;

/// A leaf that passed every check made before signing, with its serial fixed.
///
/// Made by `prepare_*_leaf` of each kind ([`crate::prepare_leaf_cert`],
/// [`crate::hybrid::prepare_hybrid_leaf`], [`crate::prepare_mldsa_leaf`],
/// [`crate::prepare_composite_leaf`]). The caller may record the intent (serial,
/// profile) before calling [`PreparedCert::sign`], which signs once, validates what it
/// signed and returns it. Dropping it signs nothing.
pub struct PreparedCert<'a> {
    serial: String,
    profile: Profile,
    sign: SignFn<'a>,
}

impl<'a> PreparedCert<'a> {
    pub(crate) fn new(serial_bytes: &[u8], profile: Profile, sign: SignFn<'a>) -> Self {
        let serial = sigil_contracts::normalize_serial(&hex::encode(serial_bytes))
            .unwrap_or_else(|| hex::encode(serial_bytes));
        PreparedCert {
            serial,
            profile,
            sign,
        }
    }

    /// The serial the certificate will carry, lowercase hex as in
    /// [`CertificateFacts::serial`](sigil_contracts::types::CertificateFacts).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Signs, validates what was signed, and checks it carries the prepared serial
    /// ([`PkiError::Lint`] otherwise).
    pub fn sign(self) -> Result<IssuedCert, PkiError> {
        let issued = (self.sign)()?;
        if issued.facts.serial != self.serial {
            return Err(PkiError::Lint(format!(
                "issued certificate has serial {} instead of the prepared {}",
                issued.facts.serial, self.serial
            )));
        }
        Ok(issued)
    }
}

impl fmt::Debug for PreparedCert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCert")
            .field("serial", &self.serial)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
