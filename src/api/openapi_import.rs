//! Event types from an OpenAPI 3.1 document's `webhooks` section (Svix's import): one event type
//! per webhook, named by its key, with the JSON request body's schema (local `$ref`s inlined) as
//! schema version "1", its `description` (else `summary`), `deprecated`, and Svix's
//! `x-svix-group-name` and `x-svix-feature-flags`. Pure: reading and writing the catalogue is the
//! caller's.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{validate, ValidationError};

/// How deep `$ref`s are inlined: a recursive schema keeps its `$ref` below this.
const MAX_REF_DEPTH: usize = 16;
/// Most webhooks one document may define.
const MAX_WEBHOOKS: usize = 1000;

/// An event type as the document defines it (Svix's EventTypeFromOpenApi).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Value>,
    pub deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_flags: Option<Vec<String>>,
}

/// The event types of `spec`'s `webhooks`, sorted by name.
pub fn event_types(spec: &Value) -> Result<Vec<Imported>, ValidationError> {
    let webhooks = match spec.get("webhooks") {
        Some(Value::Object(w)) => w,
        Some(_) => {
            return Err(ValidationError::new(
                "spec.webhooks",
                "must be an object of webhooks",
            ))
        }
        None => {
            return Err(ValidationError::new(
                "spec.webhooks",
                "is missing: the document defines no webhooks to import",
            ))
        }
    };
    if webhooks.len() > MAX_WEBHOOKS {
        return Err(ValidationError::new(
            "spec.webhooks",
            format!("must define at most {MAX_WEBHOOKS} webhooks"),
        ));
    }
    let mut out = Vec::with_capacity(webhooks.len());
    for (name, item) in webhooks {
        let field = format!("spec.webhooks.{name}");
        validate::event_type_name(&field, name)?;
        let Some(op) = item.get("post").filter(|o| o.is_object()) else {
            return Err(ValidationError::new(
                field,
                "must have a post operation (the webhook's request)",
            ));
        };
        let text = |k: &str| op.get(k).and_then(Value::as_str).map(String::from);
        let description = text("description")
            .or_else(|| text("summary"))
            .unwrap_or_default();
        validate::text(
            &format!("{field}.description"),
            &description,
            validate::MAX_DESCRIPTION_LEN,
        )?;
        let schema = op
            .pointer("/requestBody/content/application~1json/schema")
            .map(|s| inline_refs(spec, s, 0));
        let flags = match op.get("x-svix-feature-flags") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let f = f.as_str().ok_or_else(|| {
                            ValidationError::new(
                                format!("{field}.x-svix-feature-flags.{i}"),
                                "must be a string",
                            )
                        })?;
                        validate::token(&format!("{field}.x-svix-feature-flags.{i}"), f)?;
                        Ok(f.to_string())
                    })
                    .collect::<Result<Vec<_>, ValidationError>>()?,
            ),
            Some(_) => {
                return Err(ValidationError::new(
                    format!("{field}.x-svix-feature-flags"),
                    "must be a list of strings",
                ))
            }
        };
        let group_name = op
            .get("x-svix-group-name")
            .and_then(Value::as_str)
            .map(String::from);
        out.push(Imported {
            name: name.clone(),
            description,
            schemas: schema.map(|s| {
                let mut m = Map::new();
                m.insert("1".into(), s);
                Value::Object(m)
            }),
            deprecated: op
                .get("deprecated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            group_name,
            feature_flags: flags,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `v` with every local `$ref` (`#/...`) replaced by what it points at, to `MAX_REF_DEPTH`.
fn inline_refs(spec: &Value, v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(target) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .filter(|_| depth < MAX_REF_DEPTH)
                .and_then(|ptr| spec.pointer(ptr))
            {
                return inline_refs(spec, target, depth + 1);
            }
            Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), inline_refs(spec, x, depth)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| inline_refs(spec, x, depth)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhooks_become_event_types_with_their_schemas() {
        let spec = json!({
            "openapi": "3.1.0",
            "webhooks": {
                "user.created": {"post": {
                    "summary": "A user signed up",
                    "x-svix-group-name": "users",
                    "x-svix-feature-flags": ["beta"],
                    "requestBody": {"content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/User"}}}}
                }},
                "user.deleted": {"post": {"description": "Gone", "deprecated": true}}
            },
            "components": {"schemas": {
                "User": {"type": "object", "properties": {"id": {"type": "string"},
                    "friend": {"$ref": "#/components/schemas/User"}}}
            }}
        });
        let got = event_types(&spec).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "user.created");
        assert_eq!(got[0].description, "A user signed up");
        assert_eq!(got[0].group_name.as_deref(), Some("users"));
        assert_eq!(got[0].feature_flags, Some(vec!["beta".to_string()]));
        let schema = &got[0].schemas.as_ref().unwrap()["1"];
        assert_eq!(schema["properties"]["id"]["type"], "string");
        assert_eq!(
            schema["properties"]["friend"]["properties"]["id"]["type"], "string",
            "a recursive $ref is inlined to a bounded depth"
        );
        assert!(got[1].deprecated);
        assert_eq!(got[1].schemas, None);
        assert!(event_types(&json!({"openapi": "3.1.0"})).is_err());
        assert!(event_types(&json!({"webhooks": {"bad name!": {"post": {}}}})).is_err());
    }
}
