//! Identifier helpers. Ids are application-generated UUIDs stored as lower-case text; clients may
//! send them with braces (update_engine does), so every entry point normalises before lookups.

use super::ValidationError;

/// A fresh random id.
pub fn new_id() -> String {
    // rand's thread-local generator is a CSPRNG seeded from the OS: unpredictable like
    // `new_v4()`, without a getrandom system call per id (every request gets one).
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Parses a UUID given with or without braces and returns its canonical lower-case form.
pub fn normalize_uuid(field: &str, raw: &str) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(trimmed);
    uuid::Uuid::parse_str(inner)
        .map(|u| u.to_string())
        .map_err(|_| ValidationError::new(field, format!("{raw:?} is not a valid UUID")))
}

/// True when the text looks like a UUID (used to tell group ids from track names).
pub fn is_uuid(raw: &str) -> bool {
    normalize_uuid("id", raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_and_case_are_normalised() {
        assert_eq!(
            normalize_uuid("appid", "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}").unwrap(),
            "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
        );
        assert!(normalize_uuid("appid", "invalid-app-uuid").is_err());
        assert!(normalize_uuid("appid", "{}").is_err());
    }
}
