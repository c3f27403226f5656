//! Stored values: a format-version byte, then bincode (serde, standard config). A value with an
//! unknown version is an error, never a silent misread. A value type whose layout changed writes
//! its new version (`encode_as`) and reads each version it knows (`decode_as`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_as(FORMAT_V1, value)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_as(FORMAT_V1, bytes)
}

/// `value` under format `version`.
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![version];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

/// A value stored under format `version`; any other version is an error.
pub fn decode_as<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == version => {
            bincode::serde::decode_from_slice(rest, bincode::config::standard())
                .map(|(v, _)| v)
                .map_err(|e| StoreError::Codec(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Codec(format!(
            "unknown value format version {v}"
        ))),
        None => Err(StoreError::Codec("empty value".into())),
    }
}

/// Like `decode`, but a value may be followed by more bytes (a trailer some records append for
/// fields added later); returns them too.
pub fn decode_with_rest<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            bincode::serde::decode_from_slice(rest, bincode::config::standard())
                .map(|(v, n)| (v, &rest[n..]))
                .map_err(|e| StoreError::Codec(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Codec(format!(
            "unknown value format version {v}"
        ))),
        None => Err(StoreError::Codec("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppId, Application, Timestamp};

    #[test]
    fn values_round_trip_with_a_version_byte() {
        let app = Application {
            id: AppId::generate(),
            uid: Some("u".into()),
            name: "n".into(),
            metadata: [("k".to_string(), "v".to_string())].into(),
            throttle_rate: Some(3),
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
        };
        let bytes = encode(&app).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<Application>(&bytes).unwrap(), app);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(decode::<Application>(&future).is_err());
        assert!(decode::<Application>(&[]).is_err());
        assert!(decode::<Application>(&bytes[..bytes.len() / 2]).is_err());
    }
}
