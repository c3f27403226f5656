//! Request bodies: text that is not one JSON value (only whitespace may follow it) is a 400; JSON
//! of the wrong shape is a 422 whose `loc` names the field (found by serde_path_to_error).

use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::ValidationError;

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        // Only whitespace may follow the value: `{...} garbage` is not JSON, whatever serde read.
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(ApiError::BadRequest(format!(
                "request body is not valid JSON: {e}"
            ))),
        },
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::BadRequest(format!(
                    "request body is not valid JSON: {inner}"
                )));
            }
            let mut field = e.path().to_string();
            if field == "." {
                field.clear();
            }
            let msg = inner.to_string();
            // "missing field `name` at line 1 column 2": point at the missing field itself.
            if let Some(rest) = msg.strip_prefix("missing field `") {
                if let Some(name) = rest.split('`').next() {
                    let loc = if field.is_empty() {
                        name.to_string()
                    } else {
                        format!("{field}.{name}")
                    };
                    return Err(ApiError::Validation(vec![ValidationError {
                        field: loc,
                        msg: "field required".into(),
                        kind: "value_error.missing",
                    }]));
                }
            }
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Err(ApiError::Validation(vec![ValidationError {
                field,
                msg,
                kind: "type_error",
            }]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: Option<u8>,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        assert!(matches!(parse::<T>(b"{"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse::<T>(b"nope"), Err(ApiError::BadRequest(_))));
        match parse::<T>(b"{}") {
            Err(ApiError::Validation(v)) => assert_eq!(v[0].field, "name"),
            other => panic!("{other:?}"),
        }
        match parse::<T>(br#"{"name":"x","n":300}"#) {
            Err(ApiError::Validation(v)) => assert_eq!(v[0].field, "n"),
            other => panic!("{other:?}"),
        }
        assert!(parse::<T>(br#"{"name":"x","unknown":1}"#).is_ok());
    }

    #[test]
    fn only_whitespace_may_follow_the_value() {
        assert!(parse::<T>(b"{\"name\":\"x\"} \r\n\t").is_ok());
        for trailing in [
            &b"{\"name\":\"x\"} garbage"[..],
            b"{\"name\":\"x\"}{}",
            b"{\"name\":\"x\"},",
            b"{\"name\":\"x\"} 1",
        ] {
            assert!(
                matches!(parse::<T>(trailing), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(trailing)
            );
        }
    }
}

/// A PATCH field: absent (leave as is), `null` (clear) or a value (set).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Patch<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

impl<T> Patch<T> {
    /// Apply to an optional field.
    pub fn apply_to(self, field: &mut Option<T>) {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Value(v) => *field = Some(v),
        }
    }

    /// Transform a value, keeping absent and null as they are.
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Value(v) => Patch::Value(f(v)),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Patch::Value(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct P {
        #[serde(default)]
        uid: Patch<String>,
    }

    #[test]
    fn patch_tells_absent_from_null() {
        assert_eq!(parse::<P>(b"{}").unwrap().uid, Patch::Absent);
        assert_eq!(parse::<P>(br#"{"uid":null}"#).unwrap().uid, Patch::Null);
        assert_eq!(
            parse::<P>(br#"{"uid":"x"}"#).unwrap().uid,
            Patch::Value("x".into())
        );
    }
}
