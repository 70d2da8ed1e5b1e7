//! Mesos's summaries for its state endpoints: resources as one JSON object (scalars as
//! numbers, ranges as `"[a-b, c-d]"`, with `cpus`, `mem`, `disk` and `gpus` always present),
//! attributes as `{name: value}`. The masters' and the agents' state endpoints both write them.

use drover_resources::{AttributeValue, Attributes, Resources};
use serde_json::{json, Map, Value};

/// The summary of `r`.
pub fn resources(r: &Resources) -> Value {
    let mut m = Map::new();
    for name in ["cpus", "disk", "gpus", "mem"] {
        m.insert(name.into(), json!(0.0));
    }
    for (name, amount) in r.scalars() {
        m.insert(name.to_string(), json!(amount.as_f64()));
    }
    for (name, ranges) in r.range_sets() {
        let parts: Vec<String> = ranges
            .intervals()
            .iter()
            .map(|i| format!("{}-{}", i.begin, i.end))
            .collect();
        m.insert(name.to_string(), json!(format!("[{}]", parts.join(", "))));
    }
    Value::Object(m)
}

/// The summary of `a`: numbers as numbers, text as strings.
pub fn attributes(a: &Attributes) -> Value {
    let m: Map<String, Value> = a
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttributeValue::Number(n) => json!(n),
                AttributeValue::Text(t) => json!(t),
            };
            (k.to_string(), v)
        })
        .collect();
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_mesos_writes_them() {
        let r: Resources = "cpus:1.5;mem:128;ports:[31000-31000,31005-31009]"
            .parse()
            .unwrap();
        assert_eq!(
            resources(&r),
            json!({"cpus": 1.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0,
                   "ports": "[31000-31000, 31005-31009]"})
        );
        let a: Attributes = "rack:r1;level:3".parse().unwrap();
        assert_eq!(attributes(&a), json!({"rack": "r1", "level": 3.0}));
    }
}
