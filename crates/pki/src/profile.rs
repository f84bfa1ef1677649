//! What each [`Profile`] puts in a leaf, and what it lets a requester ask for.
//!
//! One table for every leaf kind: the rcgen path (classical and hybrid, through
//! `leaf::prepare_leaf`) and the x509-cert path (ML-DSA and composite, through
//! [`CertTemplate::leaf`](crate::pqcert::CertTemplate::leaf)).
//!
//! | profile            | EKU                     | keyUsage                          | names            |
//! |--------------------|-------------------------|-----------------------------------|------------------|
//! | `tls-server`       | serverAuth              | digitalSignature (+keyEnc. RSA)   | ≥ 1 SAN          |
//! | `tls-client`       | clientAuth              | digitalSignature (+keyEnc. RSA)   | ≥ 1 SAN          |
//! | `spiffe-x509-svid` | serverAuth + clientAuth | digitalSignature (+keyEnc. RSA)   | 1 SPIFFE URI, no CN |
//! | `code-signing`     | codeSigning             | digitalSignature                  | ≥ 1 SAN          |
//!
//! Every leaf is basicConstraints `CA:false` (critical) with AKI and SKI.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::{
    ID_AD_OCSP, ID_KP_CLIENT_AUTH, ID_KP_CODE_SIGNING, ID_KP_SERVER_AUTH,
};
use der::Encode as _;
use der::asn1::{Ia5String, OctetString};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CrlDistributionPoints};

use crate::ca::MAX_COMMON_NAME;
use crate::error::PkiError;
use crate::lint::check_uri;
use crate::pqcert::KeyUsageBit;

/// Longest SPIFFE ID (SPIFFE ID spec §2.3 bounds the URI at 2048 bytes).
const MAX_SPIFFE_ID: usize = 2048;
/// Longest trust domain name (SPIFFE ID spec §2.1).
const MAX_TRUST_DOMAIN: usize = 255;

/// Where relying parties find revocation status, written into every leaf that gets
/// them: cRLDistributionPoints (one fullName URI) and authorityInfoAccess
/// (id-ad-ocsp URI). Both non-critical; encoded with x509-cert's types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeafOptions {
    /// The CRL's HTTP(S) URL, e.g. `http://sigil.example/crl/<ca-id>.crl`.
    pub crl_url: Option<String>,
    /// The OCSP responder's HTTP(S) URL.
    pub ocsp_url: Option<String>,
}

/// extendedKeyUsage purposes of `profile`.
pub fn extended_key_usage(profile: Profile) -> Vec<ObjectIdentifier> {
    match profile {
        Profile::TlsServer => vec![ID_KP_SERVER_AUTH],
        Profile::TlsClient => vec![ID_KP_CLIENT_AUTH],
        Profile::SpiffeX509Svid => vec![ID_KP_SERVER_AUTH, ID_KP_CLIENT_AUTH],
        Profile::CodeSigning => vec![ID_KP_CODE_SIGNING],
    }
}

/// keyUsage bits of `profile` for a subject key of `key`: digitalSignature, plus
/// keyEncipherment for RSA keys under the TLS and SVID profiles (RSA key transport).
/// Signature-only keys (ML-DSA, composite) only ever get digitalSignature: pass
/// `None` for them.
pub fn key_usage(profile: Profile, key: Option<KeyAlgorithm>) -> Vec<KeyUsageBit> {
    let rsa = matches!(
        key,
        Some(KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096)
    );
    let mut bits = vec![KeyUsageBit::DigitalSignature];
    if rsa && profile != Profile::CodeSigning {
        bits.push(KeyUsageBit::KeyEncipherment);
    }
    bits
}

/// Checks the names against `profile` and returns the subject CN to write.
///
/// All profiles need at least one SAN ([`PkiError::InvalidSan`]). `spiffe-x509-svid`
/// needs exactly one URI SAN, a valid SPIFFE ID ([`check_spiffe_id`]), and never has a
/// CN (an explicit one is refused, [`PkiError::Lint`]). Otherwise the CN is the
/// explicit one or the first DNS SAN that fits (none when there is none).
pub(crate) fn leaf_common_name(
    profile: Profile,
    sans: &Sans,
    common_name: Option<&str>,
) -> Result<Option<String>, PkiError> {
    if sans.is_empty() {
        return Err(PkiError::InvalidSan(
            "at least one SAN is required".to_owned(),
        ));
    }
    if profile == Profile::SpiffeX509Svid {
        let [uri] = sans.uri.as_slice() else {
            return Err(PkiError::InvalidSan(format!(
                "an X.509-SVID carries exactly one URI SAN (its SPIFFE ID), got {}",
                sans.uri.len()
            )));
        };
        check_spiffe_id(uri)?;
        if common_name.is_some() {
            return Err(PkiError::Lint(
                "an X.509-SVID has no subject common name".to_owned(),
            ));
        }
        return Ok(None);
    }
    Ok(match common_name {
        Some(cn) => Some(cn.to_owned()),
        None => sans
            .dns
            .first()
            .filter(|d| d.len() <= MAX_COMMON_NAME)
            .cloned(),
    })
}

/// A SPIFFE ID (SPIFFE ID spec §2): `spiffe://<trust domain><path>`, at most 2048
/// bytes; the trust domain is 1–255 of `[a-z0-9.-_]` (lowercase only); the path is
/// empty or `/`-separated segments of `[a-zA-Z0-9.-_]`, none empty, `.` or `..`
/// (so no trailing `/`); no query, fragment, port or userinfo.
pub fn check_spiffe_id(id: &str) -> Result<(), PkiError> {
    let bad = |why: &str| Err(PkiError::InvalidSan(format!("SPIFFE ID {id:?}: {why}")));
    if id.len() > MAX_SPIFFE_ID {
        return bad("longer than 2048 bytes");
    }
    check_uri(id)?;
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return bad("the scheme must be `spiffe` (lowercase) followed by `//`");
    };
    let (trust_domain, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if trust_domain.is_empty() {
        return bad("empty trust domain");
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN {
        return bad("trust domain longer than 255 characters");
    }
    if !trust_domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return bad(
            "the trust domain may hold only lowercase letters, digits, `.`, `-` and `_` (no port, userinfo, query or fragment)",
        );
    }
    if path.is_empty() {
        return Ok(());
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return bad("empty path segment (or trailing `/`)");
        }
        if segment == "." || segment == ".." {
            return bad("path segments may not be `.` or `..`");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return bad(
                "path segments may hold only letters, digits, `.`, `-` and `_` (no query or fragment)",
            );
        }
    }
    Ok(())
}

/// What a CSR's extensionRequest asked for besides names (see
/// [`ParsedCsr`](crate::ParsedCsr)); checked against the profile by
/// [`check_csr_request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedExtensions {
    /// keyUsage bits, by RFC 5280 name (`digitalSignature`, `keyCertSign`, …).
    pub key_usage: Vec<&'static str>,
    /// extendedKeyUsage purposes, dotted OIDs.
    pub extended_key_usage: Vec<String>,
    /// Every other requested extension (besides subjectAltName, basicConstraints
    /// `CA:false` and subjectKeyIdentifier): its name when known, else its dotted OID.
    pub other: Vec<String>,
}

/// Refuses a CSR that asks for more than `profile` grants ([`PkiError::BadCsr`],
/// naming the extension): keyUsage other than digitalSignature, nonRepudiation,
/// keyEncipherment, dataEncipherment, keyAgreement (code-signing: only
/// digitalSignature and nonRepudiation); extendedKeyUsage outside the profile's family
/// (serverAuth/clientAuth for TLS and SVID profiles, codeSigning for code-signing);
/// any other extension (nameConstraints, certificatePolicies, …). What is granted is
/// always the profile's own set, never the request's.
pub fn check_csr_request(profile: Profile, req: &RequestedExtensions) -> Result<(), PkiError> {
    let refuse = |what: String| {
        Err(PkiError::BadCsr(format!(
            "CSR requests {what}, which the {} profile does not allow",
            profile.as_str()
        )))
    };
    let allowed_ku: &[&str] = if profile == Profile::CodeSigning {
        &["digitalSignature", "nonRepudiation"]
    } else {
        &[
            "digitalSignature",
            "nonRepudiation",
            "keyEncipherment",
            "dataEncipherment",
            "keyAgreement",
        ]
    };
    if let Some(bit) = req.key_usage.iter().find(|b| !allowed_ku.contains(b)) {
        return refuse(format!("keyUsage {bit}"));
    }
    let allowed_eku: Vec<ObjectIdentifier> = match profile {
        Profile::CodeSigning => vec![ID_KP_CODE_SIGNING],
        _ => vec![ID_KP_SERVER_AUTH, ID_KP_CLIENT_AUTH],
    };
    for oid in &req.extended_key_usage {
        if !allowed_eku.iter().any(|a| a.to_string() == *oid) {
            return refuse(format!("extendedKeyUsage {}", eku_name(oid)));
        }
    }
    if let Some(other) = req.other.first() {
        return refuse(format!("the {other} extension"));
    }
    Ok(())
}

fn eku_name(oid: &str) -> String {
    let name = match oid {
        "1.3.6.1.5.5.7.3.1" => "serverAuth",
        "1.3.6.1.5.5.7.3.2" => "clientAuth",
        "1.3.6.1.5.5.7.3.3" => "codeSigning",
        "1.3.6.1.5.5.7.3.4" => "emailProtection",
        "1.3.6.1.5.5.7.3.8" => "timeStamping",
        "1.3.6.1.5.5.7.3.9" => "OCSPSigning",
        "2.5.29.37.0" => "anyExtendedKeyUsage",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}

/// cRLDistributionPoints and authorityInfoAccess for `opts` (none when unset), each
/// URL checked as an `http`/`https` URI ([`PkiError::Lint`]).
pub(crate) fn revocation_extensions(opts: &LeafOptions) -> Result<Vec<Extension>, PkiError> {
    let enc = |e: der::Error| PkiError::Encoding(format!("revocation extensions: {e}"));
    let uri = |url: &str| -> Result<GeneralName, PkiError> {
        check_uri(url).map_err(|e| PkiError::Lint(e.to_string()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PkiError::Lint(format!(
                "revocation URL {url:?} must be http:// or https://"
            )));
        }
        Ok(GeneralName::UniformResourceIdentifier(
            Ia5String::new(url).map_err(enc)?,
        ))
    };
    let ext = |oid: ObjectIdentifier, value: Vec<u8>| -> Result<Extension, PkiError> {
        Ok(Extension {
            extn_id: oid,
            critical: false,
            extn_value: OctetString::new(value).map_err(enc)?,
        })
    };
    let mut out = Vec::new();
    if let Some(url) = &opts.crl_url {
        let dp = CrlDistributionPoints(vec![DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
            reasons: None,
            crl_issuer: None,
        }]);
        out.push(ext(
            const_oid::db::rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS,
            dp.to_der().map_err(enc)?,
        )?);
    }
    if let Some(url) = &opts.ocsp_url {
        let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
            access_method: ID_AD_OCSP,
            access_location: uri(url)?,
        }]);
        out.push(ext(
            const_oid::db::rfc5280::ID_PE_AUTHORITY_INFO_ACCESS,
            aia.to_der().map_err(enc)?,
        )?);
    }
    Ok(out)
}

/// The same extensions for rcgen (classical and hybrid leaves).
pub(crate) fn revocation_custom_extensions(
    opts: &LeafOptions,
) -> Result<Vec<rcgen::CustomExtension>, PkiError> {
    revocation_extensions(opts)?
        .into_iter()
        .map(|e| {
            let arcs: Vec<u64> = e.extn_id.arcs().map(u64::from).collect();
            let mut custom =
                rcgen::CustomExtension::from_oid_content(&arcs, e.extn_value.as_bytes().to_vec());
            custom.set_criticality(e.critical);
            Ok(custom)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        for good in [
            "spiffe://example.org",
            "spiffe://example.org/ns/prod/sa/web",
            "spiffe://a-b_c.9/x.y-z_1",
        ] {
            assert!(check_spiffe_id(good).is_ok(), "{good}");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(2048));
        for bad in [
            "spiffe://",
            "spiffe:///path",
            "SPIFFE://example.org/x",
            "https://example.org/x",
            "spiffe://Example.org/x",
            "spiffe://example.org:8080/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/a/..",
            "spiffe://example.org/a?b=c",
            "spiffe://example.org/a#frag",
            "spiffe://example.org/a%20b",
            long.as_str(),
        ] {
            assert!(
                matches!(check_spiffe_id(bad), Err(PkiError::InvalidSan(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn svid_names() {
        let svid = |uri: &[&str], dns: &[&str]| Sans {
            uri: uri.iter().map(|s| (*s).to_owned()).collect(),
            dns: dns.iter().map(|s| (*s).to_owned()).collect(),
            ..Sans::default()
        };
        let p = Profile::SpiffeX509Svid;
        assert_eq!(
            leaf_common_name(p, &svid(&["spiffe://td/a"], &["a.example"]), None),
            Ok(None)
        );
        assert!(leaf_common_name(p, &svid(&[], &["a.example"]), None).is_err());
        assert!(
            leaf_common_name(p, &svid(&["spiffe://td/a", "spiffe://td/b"], &[]), None).is_err()
        );
        assert!(leaf_common_name(p, &svid(&["spiffe://td/a"], &[]), Some("x")).is_err());
        assert_eq!(
            leaf_common_name(Profile::TlsServer, &svid(&[], &["a.example"]), None),
            Ok(Some("a.example".to_owned()))
        );
    }

    #[test]
    fn csr_requests_beyond_the_profile_are_refused() {
        let ok = RequestedExtensions {
            key_usage: vec!["digitalSignature", "keyEncipherment"],
            extended_key_usage: vec!["1.3.6.1.5.5.7.3.1".into(), "1.3.6.1.5.5.7.3.2".into()],
            other: vec![],
        };
        assert!(check_csr_request(Profile::TlsServer, &ok).is_ok());
        let refused = |p: Profile, r: RequestedExtensions, needle: &str| {
            let Err(PkiError::BadCsr(m)) = check_csr_request(p, &r) else {
                panic!("{r:?} accepted under {p:?}");
            };
            assert!(m.contains(needle), "{m}");
        };
        refused(
            Profile::TlsServer,
            RequestedExtensions {
                key_usage: vec!["keyCertSign"],
                ..Default::default()
            },
            "keyUsage keyCertSign",
        );
        refused(
            Profile::TlsServer,
            RequestedExtensions {
                extended_key_usage: vec!["1.3.6.1.5.5.7.3.3".into()],
                ..Default::default()
            },
            "codeSigning",
        );
        refused(Profile::CodeSigning, ok.clone(), "keyUsage keyEncipherment");
        refused(
            Profile::TlsClient,
            RequestedExtensions {
                other: vec!["nameConstraints (2.5.29.30)".into()],
                ..Default::default()
            },
            "nameConstraints",
        );
    }
}
