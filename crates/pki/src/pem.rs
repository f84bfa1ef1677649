//! Minimal RFC 7468 PEM framing. PEM is base64 text around DER; the DER itself is
//! always handed to x509-parser or rcgen.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Encodes `der` as one PEM block with 64-character lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Decodes the single PEM block in `text` whose label is one of `labels`.
///
/// Explanatory text before and after the block is ignored (RFC 7468 §2); a second
/// block, a different label, a mismatched END line or bad base64 is an error.
pub fn decode(text: &str, labels: &[&str]) -> Result<Vec<u8>, String> {
    let begin_count = text.matches("-----BEGIN ").count();
    if begin_count == 0 {
        return Err("input is not PEM (no -----BEGIN line)".to_owned());
    }
    if begin_count > 1 {
        return Err("input holds more than one PEM block".to_owned());
    }
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = text.find(&begin) else {
            continue;
        };
        let after = &text[start + begin.len()..];
        let Some(stop) = after.find(&end) else {
            return Err(format!("PEM block has no matching `{end}` line"));
        };
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM body is not valid base64: {e}"))?;
        if der.is_empty() {
            return Err("PEM block is empty".to_owned());
        }
        return Ok(der);
    }
    Err(format!("PEM block is not labelled {}", labels.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn round_trip_and_strictness() {
        let der = (0u8..=200).collect::<Vec<_>>();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(decode(&pem, &["CERTIFICATE"]).unwrap(), der);
        assert_eq!(
            decode(&format!("note\n{pem}trailer\n"), &["CERTIFICATE"]).unwrap(),
            der
        );
        assert!(decode(&pem, &["CERTIFICATE REQUEST"]).is_err());
        assert!(decode(&format!("{pem}{pem}"), &["CERTIFICATE"]).is_err());
        assert!(decode("hello", &["CERTIFICATE"]).is_err());
        assert!(
            decode(
                &pem.replace("-----END CERTIFICATE-----", ""),
                &["CERTIFICATE"]
            )
            .is_err()
        );
    }
}
