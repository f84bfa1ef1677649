//! Key-encryption key for CA private keys at rest.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::error::PkiError;

/// First byte of every sealed blob: AES-256-GCM, 96-bit random nonce, 128-bit tag.
const SEAL_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// A 256-bit key-encryption key (AES-256-GCM via ring) that seals CA keys at rest.
///
/// Sealed format: `0x01 || nonce (12 bytes, random) || ciphertext || tag (16 bytes)`.
/// Callers should pass what the plaintext belongs to (e.g. the CA id) as associated
/// data so a sealed key cannot be swapped between records. `Debug` prints
/// `[redacted]`.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Kek(bytes)
    }

    /// Reads a key written as 64 hex characters or as base64 (standard or URL-safe,
    /// padded or not) of 32 bytes. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Kek)
            .ok_or_else(|| {
                PkiError::Encoding("a KEK is 64 hex characters or base64 of 32 bytes".to_owned())
            })
    }

    /// The key as standard padded base64 (what [`Kek::parse`] reads back).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Encrypts and authenticates `plaintext`, binding it to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, PkiError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut in_out = plaintext.to_vec();
        self.aead_key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|e| PkiError::crypto("AES-GCM seal", e))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(SEAL_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Reverses [`Kek::seal`]. Any failure (wrong key, wrong `aad`, tampering,
    /// truncation, unknown version) is [`PkiError::Sealed`].
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, PkiError> {
        let Some((&SEAL_V1, rest)) = sealed.split_first() else {
            return Err(PkiError::Sealed);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(PkiError::Sealed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PkiError::Sealed)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext_len = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| PkiError::Sealed)?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }

    fn aead_key(&self) -> Result<LessSafeKey, PkiError> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|e| PkiError::crypto("AES-256-GCM key", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let kek = Kek::generate();
        let sealed = kek.seal(b"ca private key", b"ca:1").unwrap();
        assert_eq!(sealed[0], SEAL_V1);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 14 + TAG_LEN);
        assert_eq!(kek.open(&sealed, b"ca:1").unwrap(), b"ca private key");
        // Fresh nonce each time.
        assert_ne!(kek.seal(b"ca private key", b"ca:1").unwrap(), sealed);
        assert_eq!(kek.open(&kek.seal(b"", b"").unwrap(), b"").unwrap(), b"");
    }

    #[test]
    fn tamper_wrong_aad_wrong_key_all_fail_as_sealed() {
        let kek = Kek::generate();
        let sealed = kek.seal(b"secret", b"ca:1").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(kek.open(&bad, b"ca:1"), Err(PkiError::Sealed), "byte {i}");
        }
        assert_eq!(kek.open(&sealed, b"ca:2"), Err(PkiError::Sealed));
        assert_eq!(
            Kek::generate().open(&sealed, b"ca:1"),
            Err(PkiError::Sealed)
        );
        assert_eq!(
            kek.open(&sealed[..sealed.len() - 1], b"ca:1"),
            Err(PkiError::Sealed)
        );
        assert_eq!(kek.open(&[], b"ca:1"), Err(PkiError::Sealed));
        assert_eq!(kek.open(&[SEAL_V1], b"ca:1"), Err(PkiError::Sealed));
    }

    #[test]
    fn parse_hex_and_base64() {
        let kek = Kek::from_bytes([7u8; 32]);
        let b64 = kek.to_base64();
        assert_eq!(Kek::parse(&format!("  {b64}\n")).unwrap().0, [7u8; 32]);
        assert_eq!(Kek::parse(&hex::encode([7u8; 32])).unwrap().0, [7u8; 32]);
        assert_eq!(
            Kek::parse(&hex::encode_upper([0xabu8; 32])).unwrap().0,
            [0xab; 32]
        );
        assert_eq!(Kek::parse(b64.trim_end_matches('=')).unwrap().0, [7u8; 32]);
        for bad in [
            "",
            "abcd",
            &hex::encode([1u8; 31]),
            "!!!!",
            &STANDARD.encode([1u8; 33]),
        ] {
            assert!(
                matches!(Kek::parse(bad), Err(PkiError::Encoding(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let kek = Kek::from_bytes([0x5a; 32]);
        let debug = format!("{kek:?}");
        assert_eq!(debug, "Kek([redacted])");
        assert!(!debug.contains("5a") && !debug.contains("90"));
    }
}
