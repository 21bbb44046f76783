//! Personal data: sealed at rest with an AEAD, masked on the way out.
//!
//! Sealed values are text: `{key_id}:{base64(nonce || ciphertext)}`. The key id travels with
//! each value, so keys can be rotated: new values use the active key, old ones still open with
//! the retired keys kept in the [`Keyring`].

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("encryption key `{0}` is not 32 bytes of base64")]
    BadKey(String),
    #[error("no encryption key with id `{0}` (rotated away without keeping it?)")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication (wrong key or tampered)")]
    Tampered,
    #[error("the active key id `{0}` is not in the keyring")]
    NoActiveKey(String),
}

/// Encryption keys by id; one of them is active for new values.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from `(id, base64 key)` pairs.
    pub fn new<'a>(
        active: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PiiError> {
        let mut map = BTreeMap::new();
        for (id, b64) in keys {
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|_| PiiError::BadKey(id.to_owned()))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| PiiError::BadKey(id.to_owned()))?;
            map.insert(id.to_owned(), cipher);
        }
        if !map.contains_key(active) {
            return Err(PiiError::NoActiveKey(active.to_owned()));
        }
        Ok(Self {
            active: active.to_owned(),
            keys: map,
        })
    }

    /// A fresh random key, base64: what `minyi dev` writes for development.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn seal(&self, plaintext: &str) -> Result<String, PiiError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| PiiError::NoActiveKey(self.active.clone()))?;
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| PiiError::Malformed)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{}:{}", self.active, STANDARD.encode(blob)))
    }

    pub fn open(&self, sealed: &str) -> Result<String, PiiError> {
        let (id, b64) = sealed.split_once(':').ok_or(PiiError::Malformed)?;
        let cipher = self
            .keys
            .get(id)
            .ok_or_else(|| PiiError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(b64).map_err(|_| PiiError::Malformed)?;
        if blob.len() < 24 {
            return Err(PiiError::Malformed);
        }
        let (nonce, ct) = blob.split_at(24);
        let pt = cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| PiiError::Tampered)?;
        String::from_utf8(pt).map_err(|_| PiiError::Malformed)
    }

    /// The key id a sealed value was written with.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split_once(':').map(|(id, _)| id)
    }
}

/// `13812345678` → `138****5678`; landlines keep the first 3 and last 4 digits too.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// `张三丰` → `张**`.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// `11010519491231002X` → `110***********002X` (region prefix and last 4 kept).
pub fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Masks runs of 11 or more digits in free text (mobile and landline numbers, ID numbers with
/// their final X) keeping the first 3 and last 4: `13800138000` → `138****8000`. Citizens
/// write their numbers into petition texts; every view of a text to a role that does not see
/// personal data goes through this.
pub fn mask_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i - start == 17 && i < chars.len() && matches!(chars[i], 'X' | 'x') {
            i += 1;
        }
        let run = &chars[start..i];
        if run.len() >= 11 {
            out.extend(&run[..3]);
            out.extend(std::iter::repeat_n('*', run.len() - 7));
            out.extend(&run[run.len() - 4..]);
        } else {
            out.extend(run);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str) -> (Keyring, String, String) {
        let k1 = Keyring::generate_key();
        let k2 = Keyring::generate_key();
        let r = Keyring::new(active, [("k1", k1.as_str()), ("k2", k2.as_str())]).unwrap();
        (r, k1, k2)
    }

    #[test]
    fn seal_open_roundtrip_and_no_plaintext() {
        let (r, ..) = ring("k1");
        let s = r.seal("13812345678").unwrap();
        assert!(!s.contains("13812345678"));
        assert!(s.starts_with("k1:"));
        assert_eq!(r.open(&s).unwrap(), "13812345678");
        // Same plaintext, different ciphertext (random nonce).
        assert_ne!(s, r.seal("13812345678").unwrap());
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let (r1, k1, k2) = ring("k1");
        let old = r1.seal("张三").unwrap();
        let r2 = Keyring::new("k2", [("k1", k1.as_str()), ("k2", k2.as_str())]).unwrap();
        assert_eq!(r2.open(&old).unwrap(), "张三");
        assert!(r2.seal("x").unwrap().starts_with("k2:"));
        let r3 = Keyring::new("k2", [("k2", k2.as_str())]).unwrap();
        assert!(matches!(r3.open(&old), Err(PiiError::UnknownKey(_))));
    }

    #[test]
    fn tampering_is_detected() {
        let (r, ..) = ring("k1");
        let mut s = r.seal("secret").unwrap();
        let last = s.pop().unwrap();
        s.push(if last == 'A' { 'B' } else { 'A' });
        assert!(r.open(&s).is_err());
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("李"), "李*");
        assert_eq!(mask_id_number("11010519491231002X"), "110***********002X");
        assert_eq!(mask_numbers("电话13800138000谢谢"), "电话138****8000谢谢");
        assert_eq!(
            mask_numbers("身份证11010519491231002X"),
            "身份证110***********002X"
        );
        assert_eq!(mask_numbers("3号楼 2026年 12345"), "3号楼 2026年 12345");
    }
}
