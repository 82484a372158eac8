//! Semantic versions as CoreRoller compares them: build metadata is ignored, pre-releases sort
//! before their release. The original text is kept for display and storage.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::ValidationError;

#[derive(Clone, Debug)]
pub struct Version {
    raw: String,
    parsed: semver::Version,
}

impl Version {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_field("version", raw)
    }

    /// Parses and names the field in the error, for API validation messages.
    pub fn parse_field(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.len() > 255 {
            return Err(ValidationError::new(field, "longer than 255 characters"));
        }
        semver::Version::parse(trimmed)
            .map(|parsed| Self {
                raw: trimmed.to_string(),
                parsed,
            })
            .map_err(|e| {
                ValidationError::new(field, format!("{raw:?} is not a semantic version ({e})"))
            })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn semver(&self) -> &semver::Version {
        &self.parsed
    }

    pub fn is_prerelease(&self) -> bool {
        !self.parsed.pre.is_empty()
    }
}

impl FromStr for Version {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parsed.cmp_precedence(&other.parsed)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Orders two version strings; unparsable ones sort first so they never look newer.
pub fn cmp_version_text(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn build_metadata_is_ignored() {
        assert_eq!(v("1010.5.0+2016-05-27-1832"), v("1010.5.0"));
        assert!(v("12.1.0") < v("1010.5.0+2016-05-27-1832"));
        assert!(v("1.0.10-1") > v("1.0.9-1"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
    }

    #[test]
    fn invalid_versions_name_the_field() {
        let err = Version::parse_field("version", "1.2").unwrap_err();
        assert_eq!(err.field, "version");
        assert!(Version::parse("").is_err());
        assert!(Version::parse("latest").is_err());
    }

    proptest! {
        #[test]
        fn ordering_is_total_and_ignores_build(a in 0u64..50, b in 0u64..50, c in 0u64..50,
                                               d in 0u64..50, e in 0u64..50, f in 0u64..50,
                                               build in "[a-z0-9]{1,8}") {
            let x = v(&format!("{a}.{b}.{c}"));
            let y = v(&format!("{d}.{e}.{f}"));
            let xb = v(&format!("{a}.{b}.{c}+{build}"));
            prop_assert_eq!(x.cmp(&y), (a, b, c).cmp(&(d, e, f)));
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            prop_assert_eq!(&x, &xb);
        }
    }
}
