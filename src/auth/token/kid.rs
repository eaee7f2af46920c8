//! A key's `kid`: Docker's libtrust key ID, the first 240 bits of SHA-256
//! over the DER SubjectPublicKeyInfo, base32 in twelve groups of four
//! joined by `:` (`PYYO:TEWU:…:Z7Q6`).

use p256::pkcs8::EncodePublicKey;
use p256::PublicKey;
use sha2::{Digest as _, Sha256};

/// Docker's libtrust key ID of a public key.
pub(super) fn key_id(public: &PublicKey) -> String {
    let spki = public
        .to_public_key_der()
        .expect("a P-256 public key always encodes");
    let hash = Sha256::digest(spki.as_bytes());
    let encoded = base32(&hash[..30]);
    let groups: Vec<&str> = encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), output);
        }
    }
}
