//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), one
//! per valid key, separated by spaces (during a secret rotation's grace period).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::SigningKey;

/// The `webhook-signature` header value for this message and timestamp under every key given.
///
/// ```
/// use herald::delivery::signer::sign;
/// use herald::domain::SigningKey;
///
/// let key = SigningKey::parse("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let header = sign([&key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
/// assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// ```
pub fn sign<'a>(
    keys: impl IntoIterator<Item = &'a SigningKey>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let prefix = format!("{msg_id}.{timestamp}.");
    keys.into_iter()
        .map(|k| {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(&k.0).expect("hmac takes any key length");
            mac.update(prefix.as_bytes());
            mac.update(body);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            format!("v1,{sig}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How far a signed timestamp may be from now and still verify.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Verify a `webhook-signature` header as a receiver would: some `v1` entry matches under `key`
/// (compared in constant time), and the timestamp is within five minutes of `now`.
pub fn verify(
    key: &SigningKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
) -> bool {
    use subtle::ConstantTimeEq;
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return false;
    }
    let expected = sign([key], msg_id, timestamp, body);
    header
        .split(' ')
        .filter(|entry| entry.starts_with("v1,"))
        .fold(subtle::Choice::from(0), |ok, entry| {
            ok | entry.as_bytes().ct_eq(expected.as_bytes())
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(whsec: &str) -> SigningKey {
        SigningKey::parse("secret", whsec).unwrap()
    }

    #[test]
    fn matches_the_standard_webhooks_test_vectors() {
        let k1 = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            sign(
                [&k1],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let k2 = key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        assert_eq!(
            sign(
                [&k2],
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verification_follows_the_standard_webhooks_rules() {
        let k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert!(verify(&k, id, ts, body, good, ts));
        assert!(
            !verify(&k, id, ts, body, bad, ts),
            "the negative vector is rejected"
        );
        assert!(
            verify(
                &k,
                id,
                ts,
                body,
                &format!("v1,{} v2,other {good}", &bad[3..]),
                ts
            ),
            "any v1 entry"
        );
        assert!(!verify(&k, id, ts, body, good, ts + 301), "too old");
        assert!(
            !verify(&k, id, ts, body, good, ts - 301),
            "too far in the future"
        );
        assert!(verify(&k, id, ts, body, good, ts + 299));
    }

    #[test]
    fn one_signature_per_key_and_any_change_breaks_it() {
        let k1 = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let k2 = key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let both = sign([&k1, &k2], "msg_1", 10, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign([&k1], "msg_1", 10, b"{}"));
        assert_eq!(parts[1], sign([&k2], "msg_1", 10, b"{}"));
        assert_ne!(sign([&k1], "msg_1", 11, b"{}"), parts[0]);
        assert_ne!(sign([&k1], "msg_2", 10, b"{}"), parts[0]);
        assert_ne!(sign([&k1], "msg_1", 10, b"{ }"), parts[0]);
    }
}
