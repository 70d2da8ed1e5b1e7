//! Agent attributes (`rack:a;zone:z1;generation:3`): labels a scheduler matches offers on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ResourceError, MAX_NAMES, MAX_TEXT_BYTES};

/// Longest attribute value, bytes.
pub const MAX_VALUE_BYTES: usize = 256;

/// An attribute's value: a number when it parses as one, text otherwise (as Mesos).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    Number(f64),
    Text(String),
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Number(n) => write!(f, "{n}"),
            AttributeValue::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// An agent's attributes, by name.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes(pub(crate) BTreeMap<String, AttributeValue>);

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These attributes with `name` set to the text `value` (replacing what it had).
    pub fn with_text(mut self, name: &str, value: &str) -> Result<Self, ResourceError> {
        let name = crate::ResourceName::new(name)?.as_str().to_string();
        if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.contains(';') {
            return Err(ResourceError::Invalid {
                name,
                reason: format!("an attribute value has 1 to {MAX_VALUE_BYTES} bytes, no ';'"),
            });
        }
        self.0.insert(name, AttributeValue::Text(value.to_string()));
        Ok(self)
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}:{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Attributes({self})")
    }
}

impl FromStr for Attributes {
    type Err = ResourceError;

    /// `name:value;…`; names follow the resource-name rules, values are non-empty and free of
    /// `;`. A name given twice is an error.
    fn from_str(text: &str) -> Result<Self, ResourceError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ResourceError::Syntax(format!(
                "attributes longer than {MAX_TEXT_BYTES} bytes"
            )));
        }
        let mut out = BTreeMap::new();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once(':').ok_or_else(|| {
                ResourceError::Syntax(format!("attribute {item:?}: expected name:value"))
            })?;
            let name = crate::ResourceName::new(name.trim())?.as_str().to_string();
            let value = value.trim();
            if value.is_empty() || value.len() > MAX_VALUE_BYTES {
                return Err(ResourceError::Invalid {
                    name,
                    reason: format!("an attribute value has 1 to {MAX_VALUE_BYTES} bytes"),
                });
            }
            let value = match value.parse::<f64>() {
                Ok(n) if n.is_finite() => AttributeValue::Number(n),
                _ => AttributeValue::Text(value.to_string()),
            };
            if out.insert(name.clone(), value).is_some() {
                return Err(ResourceError::Invalid {
                    name,
                    reason: "attribute given twice".into(),
                });
            }
            if out.len() > MAX_NAMES {
                return Err(ResourceError::Syntax(format!(
                    "more than {MAX_NAMES} attributes"
                )));
            }
        }
        Ok(Attributes(out))
    }
}
