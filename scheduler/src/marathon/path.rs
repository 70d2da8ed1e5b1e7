//! [`PathId`]: a Marathon app or group id (`/prod/web`), always absolute and canonical.
//!
//! Owns the one rule for ids that `/v2` accepts: segments of lowercase letters, digits, `-`
//! and `.`, each dot-separated label starting and ending with a letter or digit (Marathon's
//! rule, so every id it accepts a Marathon client accepts too), at least one segment, and a
//! last segment that is not one of the words the routes reserve (`restart`, `tasks`,
//! `versions`). Drover refuses the relative segments `.` and `..` that Marathon resolves
//! against a parent group: an app is always created by its full id here, and the model's ids
//! refuse them too.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted, bytes (its task ids must stay under the model's id bound).
pub const MAX_PATH_BYTES: usize = 200;

/// Words that cannot end an app id: `/v2/apps/{id}/tasks` would be ambiguous.
const RESERVED_LAST: [&str; 3] = ["restart", "tasks", "versions"];

/// An absolute, canonical app or group id: `/` then segments joined by `/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(String);

/// Why an id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("path must contain at least one path element")]
    Empty,
    #[error("is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("segment {0:?} must be lowercase letters, digits, '-' and '.', each label starting and ending with a letter or digit")]
    Segment(String),
    #[error("must not end with any of the following reserved keywords: restart, tasks, versions")]
    Reserved,
}

impl PathId {
    /// Parses `text` (leading, trailing and doubled slashes allowed: `web`, `/web/`,
    /// `//prod//web` all name `/prod/web` once canonical).
    pub fn parse(text: &str) -> Result<PathId, BadPath> {
        let segments: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(BadPath::Empty);
        }
        if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
            return Err(BadPath::Segment((*bad).to_string()));
        }
        if segments
            .last()
            .is_some_and(|last| RESERVED_LAST.contains(last))
        {
            return Err(BadPath::Reserved);
        }
        let id = format!("/{}", segments.join("/"));
        if id.len() > MAX_PATH_BYTES {
            return Err(BadPath::TooLong);
        }
        Ok(PathId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id without its leading `/`, with `/` replaced by `_`: the prefix of its tasks' ids
    /// (`/prod/web` → `prod_web`), as Marathon forms them.
    pub fn safe(&self) -> String {
        self.0[1..].replace('/', "_")
    }

    /// Whether `self` is `group` or lies under it (`/prod/web` under `/prod`).
    pub fn is_under(&self, group: &PathId) -> bool {
        self == group
            || (self.0.starts_with(&group.0) && self.0.as_bytes().get(group.0.len()) == Some(&b'/'))
    }
}

/// A segment: dot-separated labels of `[a-z0-9-]`, each starting and ending with `[a-z0-9]`.
fn valid_segment(segment: &str) -> bool {
    segment.split('.').all(|label| {
        let bytes = label.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(edge)
            && bytes.last().is_some_and(edge)
            && bytes.iter().all(|b| edge(b) || *b == b'-')
    })
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PathId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PathId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PathId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_absolute_and_canonical() {
        for (given, want) in [
            ("web", "/web"),
            ("/web", "/web"),
            ("/web/", "/web"),
            ("//prod//web", "/prod/web"),
            ("/a.b-c/x1", "/a.b-c/x1"),
        ] {
            assert_eq!(PathId::parse(given).unwrap().as_str(), want, "{given}");
        }
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        assert_eq!(PathId::parse(""), Err(BadPath::Empty));
        assert_eq!(PathId::parse("///"), Err(BadPath::Empty));
        for bad in [
            "/Web", "/my_app", "/-web", "/web-", "/a..b", "/.", "/..", "/a/./b", "/é",
        ] {
            assert!(
                matches!(PathId::parse(bad), Err(BadPath::Segment(_))),
                "{bad}"
            );
        }
        assert_eq!(PathId::parse("/prod/tasks"), Err(BadPath::Reserved));
        assert!(PathId::parse("/tasks/web").is_ok());
        assert_eq!(
            PathId::parse(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
            Err(BadPath::TooLong)
        );
    }

    #[test]
    fn safe_form_and_groups() {
        let id = PathId::parse("/prod/web").unwrap();
        assert_eq!(id.safe(), "prod_web");
        assert!(id.is_under(&PathId::parse("/prod").unwrap()));
        assert!(!id.is_under(&PathId::parse("/pro").unwrap()));
        assert!(id.is_under(&id));
    }
}
