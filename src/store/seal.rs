//! Sealing secrets at rest: endpoint signing keys are stored encrypted with ChaCha20-Poly1305
//! under the main key (nonce ‖ ciphertext, the record's key as associated data, so a sealed value
//! cannot be moved to another record). A check value written at first open refuses a wrong key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::StoreError;

const NONCE_LEN: usize = 12;
/// Sealed under the main key at first open; opening it proves the key is the same.
const CHECK_PLAINTEXT: &[u8] = b"herald main key check v1";
pub const CHECK_AAD: &[u8] = b"meta/main_key_check";

pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Codec(format!("random nonce: {e}")))?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Codec("sealing failed".into()))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Codec("sealed value too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| StoreError::Codec("a sealed value does not open with the main key".into()))
    }

    pub fn check_value(&self) -> Result<Vec<u8>, StoreError> {
        self.seal(CHECK_PLAINTEXT, CHECK_AAD)
    }

    pub fn verify_check(&self, stored: &[u8]) -> bool {
        self.open(stored, CHECK_AAD)
            .is_ok_and(|p| p == CHECK_PLAINTEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_their_record() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal(b"secret", b"ep1").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(&sealed, b"ep1").unwrap(), b"secret");
        assert!(s.open(&sealed, b"ep2").is_err(), "bound to its record");
        assert!(
            Sealer::new(&[8; 32]).open(&sealed, b"ep1").is_err(),
            "another key fails"
        );
        assert_ne!(
            s.seal(b"secret", b"ep1").unwrap(),
            sealed,
            "fresh nonce each time"
        );
        let check = s.check_value().unwrap();
        assert!(s.verify_check(&check));
        assert!(!Sealer::new(&[9; 32]).verify_check(&check));
    }
}
