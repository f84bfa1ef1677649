//! Checks run on names before anything is signed.

use sigil_contracts::types::Sans;

use crate::error::PkiError;

const MAX_DNS_NAME: usize = 253;
const MAX_DNS_LABEL: usize = 63;
const MAX_URI: usize = 2048;

/// Every SAN must be well formed: see [`check_dns_name`] and [`check_uri`]; IP
/// addresses may not be unspecified (`0.0.0.0`, `::`).
pub(crate) fn check_sans(sans: &Sans) -> Result<(), PkiError> {
    for dns in &sans.dns {
        check_dns_name(dns)?;
    }
    for ip in &sans.ip {
        if ip.is_unspecified() {
            return Err(PkiError::InvalidSan(format!("IP SAN {ip} is unspecified")));
        }
    }
    for uri in &sans.uri {
        check_uri(uri)?;
    }
    Ok(())
}

/// A DNS name: LDH labels of 1–63 characters that neither start nor end with `-`,
/// at most 253 characters, no trailing dot. The first label may be `*` (wildcard)
/// when at least two labels follow it.
pub(crate) fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let bad = |why: &str| Err(PkiError::InvalidSan(format!("DNS name {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_DNS_NAME {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    let rest = match labels.split_first() {
        Some((&"*", rest)) => {
            if rest.len() < 2 {
                return bad("a wildcard needs at least two labels after `*.`");
            }
            rest
        }
        _ => labels.as_slice(),
    };
    for label in rest {
        if label.is_empty() {
            return bad("empty label");
        }
        if label.len() > MAX_DNS_LABEL {
            return bad("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("labels may hold only letters, digits and `-`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("labels may not start or end with `-`");
        }
    }
    Ok(())
}

/// A URI: `scheme ":" rest` with an RFC 3986 scheme, a non-empty rest, printable
/// ASCII only (IA5String, no spaces), at most 2048 characters.
pub(crate) fn check_uri(uri: &str) -> Result<(), PkiError> {
    let bad = |why: &str| Err(PkiError::InvalidSan(format!("URI {uri:?}: {why}")));
    if uri.len() > MAX_URI {
        return bad("longer than 2048 characters");
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("only printable ASCII without spaces is allowed");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return bad("no scheme");
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return bad("invalid scheme");
    }
    if rest.is_empty() {
        return bad("nothing after the scheme");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for good in [
            "example.com",
            "a.b",
            "*.example.com",
            "xn--bcher-kva.example",
            "LOCALHOST",
            "a-1.b2",
        ] {
            assert!(check_dns_name(good).is_ok(), "{good}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            "-a.com",
            "a-.com",
            "a_b.com",
            "*.com",
            "*",
            "a.*.com",
            "**.a.com",
            "é.com",
            "a b.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                matches!(check_dns_name(bad), Err(PkiError::InvalidSan(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn uris() {
        for good in [
            "spiffe://example.org/ns/a/sa/b",
            "https://a.example/x?y=1",
            "urn:uuid:1",
        ] {
            assert!(check_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "noscheme",
            "1http://x",
            "http:",
            "http://a b",
            "ht tp://x",
            ":x",
        ] {
            assert!(
                matches!(check_uri(bad), Err(PkiError::InvalidSan(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unspecified_ip_is_refused() {
        let sans = Sans {
            ip: vec!["0.0.0.0".parse().unwrap()],
            ..Sans::default()
        };
        assert!(matches!(check_sans(&sans), Err(PkiError::InvalidSan(_))));
    }
}
