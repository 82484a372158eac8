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

/// A fresh id for rows written at a high rate (packages, deliveries): a version-7 UUID, the
/// current Unix time in milliseconds followed by 74 random bits. Consecutive ids sort together,
/// so a batch of inserts extends the right edge of each index on the id instead of dirtying a
/// random page of it per row (SQLite writes every page a commit touches to the WAL again).
/// Not for secrets: the time prefix is public.
pub fn new_time_ordered_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
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

    #[test]
    fn time_ordered_ids_are_uuids_that_sort_by_creation() {
        let first = new_time_ordered_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_time_ordered_id();
        assert!(is_uuid(&first) && is_uuid(&second));
        assert_eq!(uuid::Uuid::parse_str(&first).unwrap().get_version_num(), 7);
        assert!(first < second, "{first} should sort before {second}");
        // The random tail still differs within one millisecond.
        assert_ne!(new_time_ordered_id(), new_time_ordered_id());
    }
}
