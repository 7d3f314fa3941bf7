//! JSON request bodies, typed with the path of every mistake: a field of the
//! wrong type answers `url: expected a string, got integer 123`, not serde's
//! "invalid type … at line 1 column 11"; and an object field sent as an array
//! (`"trim": ["2", "3"]`, which serde's derive would silently read by position)
//! is refused.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Code, HasCode};

/// A request body type, with the dotted paths of its fields that must be JSON
/// objects (add a path here when a body gains an object field).
pub trait JsonBody: DeserializeOwned {
    const OBJECT_FIELDS: &'static [&'static str];
}

/// A body that does not have the request's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BodyError {
    pub path: String,
    pub message: String,
}

impl HasCode for BodyError {
    fn code(&self) -> Code {
        Code::InvalidRequest
    }
}

/// Parses `value` as `T`, naming the path of the first mistake.
pub fn parse<T: JsonBody>(value: Value) -> Result<T, BodyError> {
    if !value.is_object() {
        return Err(BodyError {
            path: "body".into(),
            message: format!("expected an object, got {}", kind(&value)),
        });
    }
    for path in T::OBJECT_FIELDS {
        if let Some(v) = lookup(&value, path).filter(|v| !v.is_object() && !v.is_null()) {
            return Err(BodyError {
                path: (*path).into(),
                message: format!("expected an object, got {}", kind(v)),
            });
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "body".to_owned() } else { path };
        BodyError { path, message: plain(&e.into_inner().to_string()) }
    })
}

fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde's "invalid type: integer `123`, expected a string" → "expected a
/// string, got integer `123`"; other messages are kept.
fn plain(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    match message.strip_prefix("invalid type: ").and_then(|rest| rest.split_once(", expected ")) {
        Some((got, expected)) => format!("expected {expected}, got {got}"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::requests::{DownloadBody, ProcessBody};

    fn err<T: JsonBody + std::fmt::Debug>(v: Value) -> String {
        parse::<T>(v).expect_err("refused").to_string()
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        assert_eq!(err::<DownloadBody>(json!({"url": 123})), "url: expected a string, got integer `123`");
        assert!(
            err::<DownloadBody>(json!({"url": "x", "include_subtitles": "yes"}))
                .starts_with("include_subtitles: expected a boolean")
        );
        let e = err::<ProcessBody>(json!({"input_file": "a.mp4", "operations": {"trim": {"start": true}}}));
        assert!(e.starts_with("operations.trim.start: "), "{e}");
        let e = err::<ProcessBody>(json!({"input_file": "a.mp4", "operations": {"audio_only": 1}}));
        assert!(e.starts_with("operations.audio_only: expected a boolean"), "{e}");
        assert!(err::<DownloadBody>(json!([1])).starts_with("body: expected an object"));
    }

    #[test]
    fn an_object_field_sent_as_an_array_is_refused() {
        let e = err::<ProcessBody>(json!({"input_file": "a.mp4", "operations": {"trim": ["2", "3"]}}));
        assert_eq!(e, "operations.trim: expected an object, got an array");
        let e = err::<ProcessBody>(json!({"input_file": "a.mp4", "operations": [{"quality": 20}]}));
        assert_eq!(e, "operations: expected an object, got an array");
        let e = err::<DownloadBody>(json!({"url": "x", "process": {"operations": {"resize": [320, 180]}}}));
        assert_eq!(e, "process.operations.resize: expected an object, got an array");
        assert!(
            parse::<ProcessBody>(json!({"input_file": "a.mp4", "operations": {"trim": {"start": 1}}}))
                .is_ok()
        );
    }

    #[test]
    fn unknown_fields_name_themselves() {
        let e = err::<DownloadBody>(json!({"url": "x", "exec": "id"}));
        assert!(e.contains("unknown field `exec`"), "{e}");
    }
}
