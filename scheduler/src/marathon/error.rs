//! [`ApiError`]: the errors `/v2` answers with, in Marathon's shapes, and [`Violation`], one
//! invalid field of a definition.
//!
//! Marathon clients read `message` and `details` of a JSON body (and only when the response
//! says `application/json`): `{"message": "Object is not valid", "details": [{"path":
//! "/cpus", "errors": ["must be at least 0"]}]}` for 422, `{"message": "..."}` otherwise.
//! Paths are JSON-pointer-like, array positions in parentheses as Marathon writes them
//! (`/healthChecks(0)/protocol`).

use serde::Serialize;

/// One field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub path: String,
    pub errors: Vec<String>,
}

impl Violation {
    pub fn new(path: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            errors: vec![error.into()],
        }
    }
}

/// An error answer: its HTTP status and its body.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub details: Vec<Violation>,
    /// The deployments that lock the app (409 locked), as `[{"id"}]`.
    pub deployments: Vec<String>,
}

/// The body of an error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "<[Violation]>::is_empty")]
    details: &'a [Violation],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deployments: Vec<serde_json::Value>,
}

impl ApiError {
    /// An error with only a message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: Vec::new(),
            deployments: Vec::new(),
        }
    }

    /// 409: deployments lock the app and the change is not forced. Marathon's body names them
    /// (`"deployments": [{"id": …}]`) besides the message.
    pub fn locked(deployments: Vec<String>) -> Self {
        let first = deployments.first().cloned().unwrap_or_default();
        Self {
            deployments,
            ..Self::new(
                409,
                format!(
                    "App is locked by one or more deployments. Override with the option \
                     '?force=true'. View details at '/v2/deployments/{first}'."
                ),
            )
        }
    }

    /// 400: the body is not JSON at all.
    pub fn invalid_json(reason: impl std::fmt::Display) -> Self {
        Self::new(400, format!("Invalid JSON: {reason}"))
    }

    /// 422: the definition is JSON but not a valid one. Violations on one path are merged.
    pub fn invalid(violations: Vec<Violation>) -> Self {
        let mut details: Vec<Violation> = Vec::new();
        for v in violations {
            match details.iter_mut().find(|d| d.path == v.path) {
                Some(d) => d.errors.extend(v.errors),
                None => details.push(v),
            }
        }
        Self {
            details,
            ..Self::new(422, "Object is not valid")
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message.into())
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody {
            message: &self.message,
            details: &self.details,
            deployments: self
                .deployments
                .iter()
                .map(|id| serde_json::json!({ "id": id }))
                .collect(),
        })
        .unwrap_or_else(|_| r#"{"message":"error"}"#.to_string())
    }
}

/// The Marathon form of a path made of object keys and array positions.
pub fn pointer<'a>(segments: impl IntoIterator<Item = PathSegment<'a>>) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            PathSegment::Key(k) => {
                out.push('/');
                out.push_str(k);
            }
            PathSegment::Index(i) => out.push_str(&format!("({i})")),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// One step of a path into a JSON document.
#[derive(Clone, Copy, Debug)]
pub enum PathSegment<'a> {
    Key(&'a str),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_marathons_shapes() {
        let e = ApiError::invalid(vec![
            Violation::new("/cpus", "must be at least 0"),
            Violation::new("/mem", "must be at least 0"),
            Violation::new("/cpus", "must be a finite number"),
        ]);
        assert_eq!(e.status, 422);
        assert_eq!(
            e.body(),
            r#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["must be at least 0","must be a finite number"]},{"path":"/mem","errors":["must be at least 0"]}]}"#
        );
        assert_eq!(
            ApiError::not_found("App '/x' does not exist").body(),
            r#"{"message":"App '/x' does not exist"}"#
        );
    }

    #[test]
    fn pointers_write_positions_in_parentheses() {
        use PathSegment::*;
        assert_eq!(
            pointer([Key("healthChecks"), Index(0), Key("protocol")]),
            "/healthChecks(0)/protocol"
        );
        assert_eq!(pointer([]), "/");
    }
}
