//! Mesos's resource summaries, as its state endpoints write resources: one JSON object, scalars
//! as numbers, ranges as `"[a-b, c-d]"`, with `cpus`, `mem`, `disk` and `gpus` always present.

use serde_json::{json, Map, Value};

/// The summary of `scalars` (name, amount) and `ranges` (name, inclusive intervals).
pub fn resources<'a>(
    scalars: impl IntoIterator<Item = (&'a str, f64)>,
    ranges: impl IntoIterator<Item = (&'a str, Vec<(u64, u64)>)>,
) -> Value {
    let mut m = Map::new();
    for name in ["cpus", "disk", "gpus", "mem"] {
        m.insert(name.into(), json!(0.0));
    }
    for (name, amount) in scalars {
        m.insert(name.to_string(), json!(amount));
    }
    for (name, intervals) in ranges {
        let parts: Vec<String> = intervals.iter().map(|(b, e)| format!("{b}-{e}")).collect();
        m.insert(name.to_string(), json!(format!("[{}]", parts.join(", "))));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_mesos_writes_them() {
        let v = resources(
            [("cpus", 1.5), ("mem", 128.0)],
            [("ports", vec![(31000, 31000), (31005, 31009)])],
        );
        assert_eq!(
            v,
            json!({"cpus": 1.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0,
                   "ports": "[31000-31000, 31005-31009]"})
        );
    }
}
