//! Conversions between the resource model and its protobuf form (`drover.v1.Resource`,
//! `drover.v1.Attribute`), used by every gRPC edge: the master's framework and agent APIs, the
//! agent and the framework driver.
//!
//! Input from the network is checked as strictly as the text form: names must be valid, a name
//! may appear once, amounts must be finite, non-negative and exact to a thousandth, ranges must
//! be well formed, and no bundle holds more than [`MAX_NAMES`] names.

use std::collections::BTreeMap;

use drover_proto::v1;

use crate::{
    AttributeValue, Attributes, ResourceError, ResourceName, Resources, Scalar, MAX_NAMES,
};

impl Resources {
    /// Reads a bundle sent over the network.
    pub fn from_proto(items: &[v1::Resource]) -> Result<Resources, ResourceError> {
        if items.len() > MAX_NAMES {
            return Err(ResourceError::Syntax(format!(
                "more than {MAX_NAMES} resources"
            )));
        }
        let mut out = Resources::empty();
        let mut seen = std::collections::BTreeSet::new();
        for r in items {
            let name = ResourceName::new(&r.name)?;
            if !seen.insert(name.clone()) {
                return Err(ResourceError::Invalid {
                    name: r.name.clone(),
                    reason: "given twice".into(),
                });
            }
            out = match &r.value {
                None => {
                    return Err(ResourceError::Invalid {
                        name: r.name.clone(),
                        reason: "no value: set scalar or ranges".into(),
                    })
                }
                Some(v1::resource::Value::Scalar(x)) => {
                    out.with_scalar(name.as_str(), Scalar::from_f64(name.as_str(), *x)?)?
                }
                Some(v1::resource::Value::Ranges(rs)) => {
                    let ranges = crate::Ranges::new(rs.ranges.iter().map(|r| (r.begin, r.end)))
                        .map_err(|reason| ResourceError::Invalid {
                            name: r.name.clone(),
                            reason,
                        })?;
                    out.with_ranges(name.as_str(), ranges)?
                }
            };
        }
        Ok(out)
    }

    /// The bundle in its protobuf form.
    pub fn to_proto(&self) -> Vec<v1::Resource> {
        let scalars = self.scalars().map(|(n, s)| v1::Resource {
            name: n.as_str().to_string(),
            value: Some(v1::resource::Value::Scalar(s.as_f64())),
        });
        let ranges = self.range_sets().map(|(n, r)| v1::Resource {
            name: n.as_str().to_string(),
            value: Some(v1::resource::Value::Ranges(v1::Ranges {
                ranges: r
                    .intervals()
                    .iter()
                    .map(|i| v1::ValueRange {
                        begin: i.begin,
                        end: i.end,
                    })
                    .collect(),
            })),
        });
        scalars.chain(ranges).collect()
    }
}

impl Attributes {
    /// Reads attributes sent over the network (the same rules as the text form).
    pub fn from_proto(items: &[v1::Attribute]) -> Result<Attributes, ResourceError> {
        if items.len() > MAX_NAMES {
            return Err(ResourceError::Syntax(format!(
                "more than {MAX_NAMES} attributes"
            )));
        }
        let mut out = BTreeMap::new();
        for a in items {
            let name = ResourceName::new(&a.name)?.as_str().to_string();
            let value = match &a.value {
                Some(v1::attribute::Value::Number(n)) if n.is_finite() => {
                    AttributeValue::Number(*n)
                }
                Some(v1::attribute::Value::Text(t))
                    if !t.is_empty()
                        && t.len() <= crate::attributes::MAX_VALUE_BYTES
                        && !t.contains(';') =>
                {
                    AttributeValue::Text(t.clone())
                }
                _ => {
                    return Err(ResourceError::Invalid {
                        name,
                        reason: format!(
                            "an attribute value is a finite number or 1 to {} bytes of text without ';'",
                            crate::attributes::MAX_VALUE_BYTES
                        ),
                    })
                }
            };
            if out.insert(name.clone(), value).is_some() {
                return Err(ResourceError::Invalid {
                    name,
                    reason: "attribute given twice".into(),
                });
            }
        }
        Ok(Attributes(out))
    }

    /// The attributes in their protobuf form.
    pub fn to_proto(&self) -> Vec<v1::Attribute> {
        self.iter()
            .map(|(k, v)| v1::Attribute {
                name: k.to_string(),
                value: Some(match v {
                    AttributeValue::Number(n) => v1::attribute::Value::Number(*n),
                    AttributeValue::Text(t) => v1::attribute::Value::Text(t.clone()),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r: Resources = "cpus:2.5;mem:1024;ports:[31000-31009,31020-31020]"
            .parse()
            .unwrap();
        assert_eq!(Resources::from_proto(&r.to_proto()).unwrap(), r);
        let a: Attributes = "rack:a;generation:3".parse().unwrap();
        assert_eq!(Attributes::from_proto(&a.to_proto()).unwrap(), a);
    }

    #[test]
    fn refuses_bad_input_naming_the_resource() {
        let scalar = |name: &str, x: f64| v1::Resource {
            name: name.into(),
            value: Some(v1::resource::Value::Scalar(x)),
        };
        for (items, needle) in [
            (vec![scalar("cpus", -1.0)], "cpus"),
            (vec![scalar("cpus", f64::NAN)], "cpus"),
            (vec![scalar("mem", 1.0), scalar("mem", 2.0)], "mem"),
            (vec![scalar("Bad Name", 1.0)], "Bad Name"),
            (
                vec![v1::Resource {
                    name: "ports".into(),
                    value: None,
                }],
                "ports",
            ),
            (
                vec![v1::Resource {
                    name: "ports".into(),
                    value: Some(v1::resource::Value::Ranges(v1::Ranges {
                        ranges: vec![v1::ValueRange { begin: 9, end: 3 }],
                    })),
                }],
                "ports",
            ),
        ] {
            let e = Resources::from_proto(&items).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should name {needle}");
        }
    }
}
