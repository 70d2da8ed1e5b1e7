//! [`Timestamp`]: a point in time as `/v2` writes it: ISO-8601 in UTC with milliseconds and
//! a `Z` (`2026-12-04T18:00:00.123Z`), the one form Marathon clients parse (marathon-python
//! refuses `+00:00` and nanoseconds).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, written as ISO-8601 UTC with milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now, by the wall clock.
    pub fn now() -> Self {
        Timestamp(drover_model::unix_ms())
    }

    /// Reads an RFC 3339 time (`Z` or an offset, any fraction of a second; kept to the ms).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let t = humantime::parse_rfc3339_weak(text)
            .map_err(|e| format!("{text:?} is not an ISO-8601 time: {e}"))?;
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("{text:?} is before 1970"))?
            .as_millis();
        u64::try_from(ms)
            .map(Timestamp)
            .map_err(|_| format!("{text:?} is too far away"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_milliseconds_and_z() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_796_407_200_123).to_string(),
            "2026-12-04T18:00:00.123Z"
        );
    }

    #[test]
    fn read_back_and_from_other_forms() {
        let t = Timestamp(1_796_407_200_123);
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        assert_eq!(Timestamp::parse("2026-12-04T18:00:00.123456789Z"), Ok(t));
        assert_eq!(
            Timestamp::parse("2026-12-04T18:00:00Z"),
            Ok(Timestamp(1_796_407_200_000))
        );
        assert!(Timestamp::parse("yesterday").is_err());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-12-04T18:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
