//! Reading certificates back: facts for inventory and events, serials, time helpers.

use std::net::IpAddr;

use chrono::{DateTime, Datelike as _, Utc};
use rand::RngCore as _;
use sigil_contracts::normalize_serial;
use sigil_contracts::types::{CertificateFacts, Profile, Sans};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;
use x509_parser::x509::AlgorithmIdentifier;

use crate::error::PkiError;
use crate::key::describe_spki;

/// A fresh certificate serial number: 16 bytes, 127 random bits, top bit clear (so
/// the DER INTEGER is positive without padding), never zero.
pub fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    loop {
        rand::rngs::OsRng.fill_bytes(&mut serial);
        serial[0] &= 0x7f;
        if serial.iter().any(|b| *b != 0) {
            return serial;
        }
    }
}

/// Facts about any DER certificate, for `identity.issued` and inventory.
///
/// `profile` is what the caller issued it as; it is not inferred. `key_algorithm` is
/// [`KeyAlgorithm::as_str`](sigil_contracts::types::KeyAlgorithm::as_str) for supported
/// keys and a descriptive fallback (`rsa-1024`, an OID, …) for others, so foreign
/// certificates can still be described. Subject and issuer use x509-parser's
/// RFC 4514-style rendering (attributes in encoded order).
pub fn certificate_facts(der: &[u8], profile: Profile) -> Result<CertificateFacts, PkiError> {
    let cert = parse_certificate(der)?;
    let serial = normalize_serial(&hex::encode(cert.raw_serial()))
        .ok_or_else(|| PkiError::Encoding("serial number longer than 20 bytes".to_owned()))?;
    Ok(CertificateFacts {
        serial,
        subject: cert.subject().to_string(),
        sans: certificate_sans(&cert)?,
        issuer: cert.issuer().to_string(),
        not_before: from_asn1_time(&cert.validity().not_before)?,
        not_after: from_asn1_time(&cert.validity().not_after)?,
        key_algorithm: describe_spki(cert.public_key()),
        signature_algorithm: signature_algorithm_name(&cert.signature_algorithm),
        profile,
        fingerprint_sha256: sha256_hex(der),
    })
}

/// Strictly parses one DER certificate (no trailing bytes).
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::Encoding(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Encoding(
            "trailing bytes after certificate".to_owned(),
        ));
    }
    Ok(cert)
}

/// DNS, IP and URI SANs of a certificate; other name types are not reported.
fn certificate_sans(cert: &X509Certificate<'_>) -> Result<Sans, PkiError> {
    let mut sans = Sans::default();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Encoding(format!("bad subjectAltName: {e}")))?;
    let Some(ext) = ext else {
        return Ok(sans);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(dns) => sans.dns.push((*dns).to_owned()),
            GeneralName::URI(uri) => sans.uri.push((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => {
                sans.ip.push(ip_from_bytes(bytes).ok_or_else(|| {
                    PkiError::Encoding(format!("IP SAN of {} bytes", bytes.len()))
                })?)
            }
            _ => {}
        }
    }
    Ok(sans)
}

pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::from(v6))
    } else {
        None
    }
}

/// `ecdsa-with-SHA256`, `sha256WithRSAEncryption`, `Ed25519`, `ML-DSA-65`,
/// `MLDSA65-ECDSA-P256-SHA512`, … or the dotted OID.
pub(crate) fn signature_algorithm_name(alg: &AlgorithmIdentifier<'_>) -> String {
    let oid = &alg.algorithm;
    let name = [
        (&OID_SIG_ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
        (&OID_SIG_ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
        (&OID_SIG_ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
        (&OID_SIG_ED25519, "Ed25519"),
        (&OID_PKCS1_SHA256WITHRSA, "sha256WithRSAEncryption"),
        (&OID_PKCS1_SHA384WITHRSA, "sha384WithRSAEncryption"),
        (&OID_PKCS1_SHA512WITHRSA, "sha512WithRSAEncryption"),
        (&OID_PKCS1_SHA1WITHRSA, "sha1WithRSAEncryption"),
        (&OID_PKCS1_RSASSAPSS, "RSASSA-PSS"),
    ]
    .into_iter()
    .find(|(known, _)| *known == oid)
    .map(|(_, name)| name.to_owned());
    name.unwrap_or_else(|| {
        let dotted = oid.to_id_string();
        crate::key::pq_algorithm_name(&dotted).map_or(dotted, str::to_owned)
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

pub(crate) fn from_asn1_time(t: &ASN1Time) -> Result<DateTime<Utc>, PkiError> {
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| PkiError::Encoding(format!("time out of range: {t}")))
}

/// Whole seconds (X.509 cannot carry fractions); fails outside rcgen's range.
pub(crate) fn to_offset(t: DateTime<Utc>) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| PkiError::InvalidValidity(format!("time {t} out of range: {e}")))
}

/// Checks `not_before < not_after` (at whole seconds) and converts both.
pub(crate) fn validity(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    if not_after.timestamp() <= not_before.timestamp() {
        return Err(PkiError::InvalidValidity(format!(
            "not_after {not_after} is not after not_before {not_before}"
        )));
    }
    if not_before.year() < 1950 || not_after.year() > 9999 {
        return Err(PkiError::InvalidValidity(
            "validity must lie between the years 1950 and 9999".to_owned(),
        ));
    }
    Ok((to_offset(not_before)?, to_offset(not_after)?))
}

/// The Sigil profile a leaf was issued with, from its extendedKeyUsage (each profile
/// has its own set: serverAuth; clientAuth; both, for SPIFFE SVIDs; codeSigning).
/// `Err` for a CA certificate, a certificate without extendedKeyUsage, or another
/// combination.
pub fn profile_of(leaf_der: &[u8]) -> Result<Profile, String> {
    let (_, cert) = X509Certificate::from_der(leaf_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if cert.is_ca() {
        return Err("a CA certificate has no leaf profile".to_owned());
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| format!("bad extendedKeyUsage: {e}"))?
        .ok_or("the certificate has no extendedKeyUsage, so no Sigil profile")?
        .value;
    match (eku.server_auth, eku.client_auth, eku.code_signing) {
        (true, true, false) => Ok(Profile::SpiffeX509Svid),
        (true, false, false) => Ok(Profile::TlsServer),
        (false, true, false) => Ok(Profile::TlsClient),
        (false, false, true) => Ok(Profile::CodeSigning),
        _ => Err("the certificate's extendedKeyUsage matches no Sigil profile".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn serials_are_positive_non_zero_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let serial = random_serial();
            assert_eq!(serial[0] & 0x80, 0, "top bit must be clear");
            assert!(serial.iter().any(|b| *b != 0));
            assert!(seen.insert(serial), "duplicate serial");
        }
    }

    #[test]
    fn validity_must_be_ordered() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(validity(now, now + chrono::Duration::seconds(1)).is_ok());
        assert!(matches!(
            validity(now, now),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            validity(now, now - chrono::Duration::days(1)),
            Err(PkiError::InvalidValidity(_))
        ));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            certificate_facts(b"nope", Profile::TlsServer),
            Err(PkiError::Encoding(_))
        ));
    }
}
