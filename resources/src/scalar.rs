//! Fixed-point scalar amounts with three decimals.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ResourceError;

/// Largest scalar accepted: 2^53 thousandths, so every amount converts to `f64` exactly.
const MAX_MILLI: u64 = 1 << 53;

/// An amount of a scalar resource in thousandths (`cpus:0.5` is 500). Never negative.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Scalar(u64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    /// `milli` thousandths; fails above 2^53.
    pub fn from_milli(milli: u64) -> Option<Self> {
        (milli <= MAX_MILLI).then_some(Self(milli))
    }

    /// Rounds `value` to the nearest thousandth, as Mesos does; `name` is for the error.
    pub fn from_f64(name: &str, value: f64) -> Result<Self, ResourceError> {
        let invalid = |reason: &str| ResourceError::Invalid {
            name: name.to_string(),
            reason: format!("{value}: {reason}"),
        };
        if !value.is_finite() {
            return Err(invalid("not a finite number"));
        }
        if value < 0.0 {
            return Err(invalid("negative"));
        }
        let milli = (value * 1000.0).round();
        if milli > MAX_MILLI as f64 {
            return Err(invalid("too large"));
        }
        Ok(Self(milli as u64))
    }

    pub fn milli(self) -> u64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Scalar) -> Option<Scalar> {
        self.0.checked_add(other.0).and_then(Self::from_milli)
    }

    pub fn checked_sub(self, other: Scalar) -> Option<Scalar> {
        self.0.checked_sub(other.0).map(Self)
    }

    pub fn saturating_sub(self, other: Scalar) -> Scalar {
        Self(self.0.saturating_sub(other.0))
    }
}

impl TryFrom<u64> for Scalar {
    type Error = ResourceError;
    fn try_from(milli: u64) -> Result<Self, ResourceError> {
        Self::from_milli(milli).ok_or_else(|| ResourceError::Overflow(format!("{milli}/1000")))
    }
}

impl From<Scalar> for u64 {
    fn from(s: Scalar) -> u64 {
        s.0
    }
}

impl fmt::Display for Scalar {
    /// The shortest exact decimal: `4`, `0.5`, `0.125`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
