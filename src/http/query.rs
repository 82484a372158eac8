//! Query strings into typed structs, with errors that name the field and the expected type
//! (`severity: expected an integer, got "abc"`); warp's own `query` filter says only "Invalid
//! query string". Numeric fields use [`int`] / [`uint`]; an empty value counts as absent, as in
//! CoreRoller (`?page=&perpage=` from a form).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use warp::{Filter, Rejection};

use super::dashboard::Form;
use super::ApiError;

/// The request's query string parsed into `T` (400 naming the field when a value has the
/// wrong type). Repeated keys: the first wins.
pub fn query<T: DeserializeOwned + Send + 'static>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            parse::<T>(&raw).map_err(|message| warp::reject::custom(ApiError::Invalid(message)))
        })
}

/// Parses a raw (still percent-encoded) query string into `T`.
pub fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, String> {
    let mut map = serde_json::Map::new();
    for (key, value) in Form::parse(raw).0 {
        map.entry(key).or_insert(serde_json::Value::String(value));
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(map))
        .map_err(|e| format!("invalid query string: {}: {}", e.path(), e.inner()))
}

/// An optional `i64` sent as text.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d, "an integer")
}

/// An optional `u64` sent as text.
pub fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    number(d, "a non-negative integer")
}

fn number<'de, D, N>(d: D, expected: &str) -> Result<Option<N>, D::Error>
where
    D: Deserializer<'de>,
    N: std::str::FromStr,
{
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        let shown: String = text.chars().take(40).collect();
        D::Error::custom(format!("expected {expected}, got {shown:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Q {
        #[serde(default, deserialize_with = "int")]
        severity: Option<i64>,
        #[serde(default, deserialize_with = "uint")]
        wait: Option<u64>,
        app: Option<String>,
    }

    #[test]
    fn values_parse_and_errors_name_field_and_type() {
        let q: Q = parse("severity=3&app=a%20b&wait=5&unknown=x").unwrap();
        assert_eq!(
            q,
            Q {
                severity: Some(3),
                wait: Some(5),
                app: Some("a b".into())
            }
        );
        let q: Q = parse("").unwrap();
        assert_eq!(q.severity, None);
        let q: Q = parse("severity=&wait=").unwrap();
        assert_eq!((q.severity, q.wait), (None, None));
        assert_eq!(
            parse::<Q>("severity=abc").unwrap_err(),
            r#"invalid query string: severity: expected an integer, got "abc""#
        );
        assert_eq!(
            parse::<Q>("wait=-1").unwrap_err(),
            r#"invalid query string: wait: expected a non-negative integer, got "-1""#
        );
        assert!(parse::<Q>("severity=99999999999999999999999")
            .unwrap_err()
            .contains("severity: expected an integer"));
        // The first of repeated keys counts.
        let q: Q = parse("severity=1&severity=x").unwrap();
        assert_eq!(q.severity, Some(1));
    }
}
