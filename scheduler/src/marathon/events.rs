//! The events of `/v2/events`, in Marathon's shapes (MARATHON.md §5): every payload is one
//! JSON object with `eventType` and `timestamp`, and only event types Marathon clients know
//! are built here (marathon-python ends its stream on any other).

use serde_json::{json, Map, Value};

use super::time::Timestamp;

/// One event for the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Marathon's `eventType`.
    pub kind: &'static str,
    /// The whole payload, `eventType` and `timestamp` included.
    pub body: Value,
}

/// The event types this scheduler sends.
pub const KINDS: &[&str] = &[
    "event_stream_attached",
    "api_post_event",
    "status_update_event",
    "instance_changed_event",
    "deployment_info",
    "deployment_step_success",
    "deployment_success",
    "deployment_failed",
    "health_status_changed_event",
    "failed_health_check_event",
    "unhealthy_instance_kill_event",
    "app_terminated_event",
];

impl Event {
    /// An event of `kind` at `at` with `fields` (an object) besides the two every event has.
    pub fn new(kind: &'static str, at: Timestamp, fields: Value) -> Event {
        debug_assert!(KINDS.contains(&kind), "{kind} is not an event type we send");
        let mut body = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        body.insert("eventType".into(), json!(kind));
        body.insert("timestamp".into(), json!(at));
        Event {
            kind,
            body: Value::Object(body),
        }
    }

    /// The event as one Server-Sent Events frame: `event:` and one `data:` line.
    pub fn sse_frame(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.kind, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_line_of_json_with_type_and_time() {
        let e = Event::new(
            "app_terminated_event",
            Timestamp(0),
            json!({"appId": "/a\nb"}),
        );
        let frame = e.sse_frame();
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), 3, "{frame:?}");
        assert_eq!(lines[0], "event: app_terminated_event");
        let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["eventType"], "app_terminated_event");
        assert_eq!(data["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(data["appId"], "/a\nb");
        assert!(frame.ends_with("\n\n"));
    }
}
