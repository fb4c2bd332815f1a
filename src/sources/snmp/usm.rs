//! The User-based Security Model's cryptography (RFC 3414, RFC 7860, RFC 3826): password to
//! key, key localisation, HMAC-SHA-96 and HMAC-192-SHA-256 digests, AES-128-CFB privacy.
//! Pure functions; the client keeps the keys.
//!
//! Design: hashing and HMAC come from ring (already in the agent for DNSSEC and rustls), the
//! AES block cipher and CFB mode from RustCrypto's `aes` and `cfb-mode` (pure Rust: no
//! system library, no C toolchain beyond ring's); ring has no CFB mode.

use aes::cipher::KeyIvInit;
use ring::{digest, hmac};
use std::fmt;

/// `auth_protocol`: the digest a v3 user signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol (RFC 3414): HMAC-SHA-1 truncated to 12 bytes.
    Sha1,
    /// usmHMAC192SHA256AuthProtocol (RFC 7860): HMAC-SHA-256 truncated to 24 bytes.
    Sha256,
}

impl AuthProtocol {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthProtocol::Sha1 => "sha1",
            AuthProtocol::Sha256 => "sha256",
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            AuthProtocol::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            AuthProtocol::Sha256 => &digest::SHA256,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            AuthProtocol::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            AuthProtocol::Sha256 => hmac::HMAC_SHA256,
        }
    }

    /// Length of `msgAuthenticationParameters`.
    pub fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha256 => 24,
        }
    }
}

impl fmt::Display for AuthProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `priv_protocol`: how a v3 user's scoped PDUs are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivProtocol {
    None,
    /// usmAesCfb128Protocol (RFC 3826).
    Aes128,
}

impl PrivProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PrivProtocol::None => "none",
            PrivProtocol::Aes128 => "aes128",
        }
    }
}

impl fmt::Display for PrivProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The password-to-key algorithm (RFC 3414 A.2): the digest of the password repeated to
/// one megabyte. Slow by design (milliseconds); the client does it once per password.
pub fn password_to_key(proto: AuthProtocol, password: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(proto.digest());
    if password.is_empty() {
        return ctx.finish().as_ref().to_vec();
    }
    let mut block = [0u8; 64];
    let mut index = 0;
    for _ in 0..(1_048_576 / 64) {
        for b in &mut block {
            *b = password[index % password.len()];
            index += 1;
        }
        ctx.update(&block);
    }
    ctx.finish().as_ref().to_vec()
}

/// Localises a key to an engine (RFC 3414 A.2.2): digest(Ku || engineID || Ku).
pub fn localize(proto: AuthProtocol, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(proto.digest());
    ctx.update(ku);
    ctx.update(engine_id);
    ctx.update(ku);
    ctx.finish().as_ref().to_vec()
}

/// The truncated HMAC of a whole message whose authentication parameters are zeros.
pub fn sign(proto: AuthProtocol, key: &[u8], msg: &[u8]) -> Vec<u8> {
    let tag = hmac::sign(&hmac::Key::new(proto.hmac(), key), msg);
    tag.as_ref()[..proto.mac_len()].to_vec()
}

/// Checks a received message's digest: `msg` as received, `range` where the digest sits.
pub fn verify(proto: AuthProtocol, key: &[u8], msg: &[u8], range: std::ops::Range<usize>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(received) = msg.get(range.clone()) else {
        return false;
    };
    if received.len() != proto.mac_len() {
        return false;
    }
    let mut zeroed = msg.to_vec();
    zeroed[range].fill(0);
    let expected = sign(proto, key, &zeroed);
    expected.ct_eq(received).into()
}

type Aes128CfbEnc = cfb_mode::Encryptor<aes::Aes128>;
type Aes128CfbDec = cfb_mode::Decryptor<aes::Aes128>;

/// The AES IV (RFC 3826 3.1.2.1): the authoritative engine's boots and time, then the salt
/// sent as `msgPrivacyParameters`.
fn aes_iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// Encrypts a scoped PDU with AES-128-CFB; `key` is the localised privacy key (its first 16
/// bytes are the AES key).
pub fn aes_encrypt(key: &[u8], boots: u32, time: u32, salt: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    let key: [u8; 16] = key[..16]
        .try_into()
        .expect("localised keys are 20 or 32 bytes");
    Aes128CfbEnc::new(&key.into(), &aes_iv(boots, time, salt).into()).encrypt(&mut buf);
    buf
}

pub fn aes_decrypt(key: &[u8], boots: u32, time: u32, salt: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    let key: [u8; 16] = key[..16]
        .try_into()
        .expect("localised keys are 20 or 32 bytes");
    Aes128CfbDec::new(&key.into(), &aes_iv(boots, time, salt).into()).decrypt(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const ENGINE: &str = "000000000000000000000002";

    #[test]
    fn sha1_keys_match_rfc_3414_appendix_a_3_2() {
        let ku = password_to_key(AuthProtocol::Sha1, b"maplesyrup");
        assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
        let kul = localize(AuthProtocol::Sha1, &ku, &hex(ENGINE));
        assert_eq!(kul, hex("6695febc9288e36282235fc7151f128497b38f3f"));
    }

    #[test]
    fn sha256_keys_localise_the_same_way_with_the_longer_digest() {
        // The same password and engine with SHA-256 (cross-checked with Python's hashlib).
        let ku = password_to_key(AuthProtocol::Sha256, b"maplesyrup");
        let kul = localize(AuthProtocol::Sha256, &ku, &hex(ENGINE));
        assert_eq!(kul.len(), 32);
        assert_eq!(
            kul,
            hex("8982e0e549e866db361a6b625d84cccc11162d453ee8ce3a6445c2d6776f0f8b")
        );
    }

    #[test]
    fn a_digest_checks_only_with_the_same_key_and_bytes() {
        for proto in [AuthProtocol::Sha1, AuthProtocol::Sha256] {
            let key = localize(proto, &password_to_key(proto, b"authpass123"), b"engine");
            let mut msg = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789".to_vec();
            let range = 10..10 + proto.mac_len();
            msg[range.clone()].fill(0);
            let mac = sign(proto, &key, &msg);
            assert_eq!(mac.len(), proto.mac_len());
            msg[range.clone()].copy_from_slice(&mac);
            assert!(verify(proto, &key, &msg, range.clone()), "{proto}");
            let other = localize(proto, &password_to_key(proto, b"authpass124"), b"engine");
            assert!(!verify(proto, &other, &msg, range.clone()), "{proto}");
            msg[0] ^= 1;
            assert!(!verify(proto, &key, &msg, range.clone()), "{proto}");
            assert!(!verify(proto, &key, &msg, 40..60), "{proto}");
        }
    }

    #[test]
    fn aes_cfb_round_trips_any_length_and_depends_on_boots_time_and_salt() {
        let key = localize(
            AuthProtocol::Sha256,
            &password_to_key(AuthProtocol::Sha256, b"privpass123"),
            b"engine",
        );
        let data: Vec<u8> = (0..37).collect();
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let enc = aes_encrypt(&key, 3, 1000, &salt, &data);
        assert_eq!(enc.len(), data.len());
        assert_ne!(enc, data);
        assert_eq!(aes_decrypt(&key, 3, 1000, &salt, &enc), data);
        assert_ne!(aes_decrypt(&key, 3, 1001, &salt, &enc), data);
        assert_ne!(aes_decrypt(&key, 4, 1000, &salt, &enc), data);
    }

    #[test]
    fn aes_128_cfb_matches_the_nist_sp800_38a_vector() {
        // F.3.13 CFB128-AES128.Encrypt, first block; the IV split as boots, time, salt.
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let salt: [u8; 8] = hex("08090a0b0c0d0e0f").try_into().unwrap();
        let enc = aes_encrypt(
            &key,
            0x00010203,
            0x04050607,
            &salt,
            &hex("6bc1bee22e409f96e93d7e117393172a"),
        );
        assert_eq!(enc, hex("3b3fd92eb72dad20333449f8e83cfb4a"));
    }
}
