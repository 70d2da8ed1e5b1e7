//! Resources and attributes between Drover's framework API types (`drover_proto::v1`) and
//! Mesos's, pure, for every edge that speaks Mesos (the masters' scheduler and operator APIs,
//! the framework driver's HTTP transport). Only what both sides can say: unreserved SCALAR and
//! RANGES resources, SCALAR and TEXT attributes.

use drover_proto::v1;

use crate::v1 as mesos;

/// Drover resources as Mesos's. `allocated_to`: the role they are offered or allocated to
/// (an empty role is `*`), which Mesos writes in `allocation_info` beside the unreserved
/// `role: "*"`; `None` for resources a framework asks for (a TaskInfo's).
#[allow(deprecated)] // `role`: "*" for unreserved resources, as Mesos still sends it.
pub fn resources_to_mesos(rs: &[v1::Resource], allocated_to: Option<&str>) -> Vec<mesos::Resource> {
    use mesos::value::Type;
    let allocated_to = allocated_to.map(|r| if r.is_empty() { "*" } else { r });
    rs.iter()
        .filter_map(|r| {
            let mut m = mesos::Resource {
                name: r.name.clone(),
                role: allocated_to.map(|_| "*".to_string()),
                allocation_info: allocated_to.map(|role| mesos::resource::AllocationInfo {
                    role: Some(role.to_string()),
                }),
                ..Default::default()
            };
            match r.value.as_ref()? {
                v1::resource::Value::Scalar(s) => {
                    m.r#type = Type::Scalar as i32;
                    m.scalar = Some(mesos::value::Scalar { value: *s });
                }
                v1::resource::Value::Ranges(rs) => {
                    m.r#type = Type::Ranges as i32;
                    m.ranges = Some(mesos::value::Ranges {
                        range: rs
                            .ranges
                            .iter()
                            .map(|r| mesos::value::Range {
                                begin: r.begin,
                                end: r.end,
                            })
                            .collect(),
                    });
                }
            }
            Some(m)
        })
        .collect()
}

/// Mesos resources as Drover's, leaving out what Drover cannot hold (SET and TEXT values, a
/// SCALAR or RANGES resource without its value). For resources Drover offered; a framework's
/// request is checked field by field by the master instead.
pub fn resources_from_mesos(rs: &[mesos::Resource]) -> Vec<v1::Resource> {
    use mesos::value::Type;
    rs.iter()
        .filter_map(|r| {
            let value = match Type::try_from(r.r#type).ok()? {
                Type::Scalar => v1::resource::Value::Scalar(r.scalar.as_ref()?.value),
                Type::Ranges => v1::resource::Value::Ranges(ranges_from_mesos(r.ranges.as_ref()?)),
                _ => return None,
            };
            Some(v1::Resource {
                name: r.name.clone(),
                value: Some(value),
            })
        })
        .collect()
}

/// Mesos ranges as Drover's.
pub fn ranges_from_mesos(rs: &mesos::value::Ranges) -> v1::Ranges {
    v1::Ranges {
        ranges: rs
            .range
            .iter()
            .map(|r| v1::ValueRange {
                begin: r.begin,
                end: r.end,
            })
            .collect(),
    }
}

/// Drover attributes as Mesos's: numbers as SCALAR, text as TEXT.
pub fn attributes_to_mesos(attrs: &[v1::Attribute]) -> Vec<mesos::Attribute> {
    use mesos::value::Type;
    attrs
        .iter()
        .filter_map(|a| {
            let mut m = mesos::Attribute {
                name: a.name.clone(),
                ..Default::default()
            };
            match a.value.as_ref()? {
                v1::attribute::Value::Number(n) => {
                    m.r#type = Type::Scalar as i32;
                    m.scalar = Some(mesos::value::Scalar { value: *n });
                }
                v1::attribute::Value::Text(t) => {
                    m.r#type = Type::Text as i32;
                    m.text = Some(mesos::value::Text { value: t.clone() });
                }
            }
            Some(m)
        })
        .collect()
}

/// Mesos attributes as Drover's: SCALAR and TEXT ones (RANGES and SET have no Drover form).
pub fn attributes_from_mesos(attrs: &[mesos::Attribute]) -> Vec<v1::Attribute> {
    use mesos::value::Type;
    attrs
        .iter()
        .filter_map(|a| {
            let value = match Type::try_from(a.r#type).ok()? {
                Type::Scalar => v1::attribute::Value::Number(a.scalar.as_ref()?.value),
                Type::Text => v1::attribute::Value::Text(a.text.as_ref()?.value.clone()),
                _ => return None,
            };
            Some(v1::Attribute {
                name: a.name.clone(),
                value: Some(value),
            })
        })
        .collect()
}

/// A Mesos status reason as Drover's: `REASON_X` is `x`, except a health check's, which says
/// the health (`task_healthy` or `task_unhealthy`, from `healthy`); none is empty.
pub fn reason_from_mesos(reason: Option<i32>, healthy: Option<bool>) -> String {
    use drover_model::health::{REASON_HEALTHY, REASON_UNHEALTHY};
    use mesos::task_status::Reason;
    match reason.and_then(|r| Reason::try_from(r).ok()) {
        Some(Reason::TaskHealthCheckStatusUpdated) => match healthy {
            Some(false) => REASON_UNHEALTHY.to_string(),
            _ => REASON_HEALTHY.to_string(),
        },
        Some(r) => r
            .as_str_name()
            .trim_start_matches("REASON_")
            .to_ascii_lowercase(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_attributes_go_both_ways() {
        let rs = vec![
            v1::Resource {
                name: "cpus".into(),
                value: Some(v1::resource::Value::Scalar(1.5)),
            },
            v1::Resource {
                name: "ports".into(),
                value: Some(v1::resource::Value::Ranges(v1::Ranges {
                    ranges: vec![v1::ValueRange { begin: 1, end: 9 }],
                })),
            },
        ];
        let offered = resources_to_mesos(&rs, Some(""));
        assert_eq!(
            offered[0]
                .allocation_info
                .as_ref()
                .and_then(|a| a.role.as_deref()),
            Some("*")
        );
        assert_eq!(resources_from_mesos(&offered), rs);
        let asked = resources_to_mesos(&rs, None);
        assert!(asked.iter().all(|r| r.allocation_info.is_none()));
        let attrs = vec![
            v1::Attribute {
                name: "rack".into(),
                value: Some(v1::attribute::Value::Text("r1".into())),
            },
            v1::Attribute {
                name: "gen".into(),
                value: Some(v1::attribute::Value::Number(3.0)),
            },
        ];
        assert_eq!(attributes_from_mesos(&attributes_to_mesos(&attrs)), attrs);
    }
}
