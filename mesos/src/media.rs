//! The two encodings Mesos's APIs speak, and how a request chooses them: its `Content-Type`
//! names the body's (exactly `application/json` or `application/x-protobuf`, parameters
//! aside), its `Accept` the answer's (JSON unless only protobuf is allowed). Shared by the
//! masters' scheduler and operator APIs and the agents' executor API; each maps a
//! [`MediaError`] to its HTTP status.

pub const JSON: &str = "application/json";
pub const PROTOBUF: &str = "application/x-protobuf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Protobuf,
}

/// Why a request's media cannot be served, with the status Mesos answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// 400.
    #[error("Expecting 'Content-Type' to be present")]
    MissingContentType,
    /// 415.
    #[error("Expecting 'Content-Type' of {JSON} or {PROTOBUF}, got '{0}'")]
    UnsupportedContentType(String),
    /// 406.
    #[error("Expecting 'Accept' to allow {JSON} or {PROTOBUF}")]
    NotAcceptable,
    /// 400: the body does not decode (the field at fault named for JSON).
    #[error("Failed to convert the body into a protobuf message: {0}")]
    Body(String),
}

impl ContentType {
    pub fn media_type(self) -> &'static str {
        match self {
            ContentType::Json => JSON,
            ContentType::Protobuf => PROTOBUF,
        }
    }

    /// The body's encoding from the request's `Content-Type` value, if it has one.
    pub fn of_content_type(value: Option<&str>) -> Result<Self, MediaError> {
        let raw = value.ok_or(MediaError::MissingContentType)?;
        let media = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            JSON => Ok(ContentType::Json),
            PROTOBUF => Ok(ContentType::Protobuf),
            _ => Err(MediaError::UnsupportedContentType(media)),
        }
    }

    /// The answer's encoding from the request's `Accept` value, if it has one.
    pub fn of_accept(value: Option<&str>) -> Result<Self, MediaError> {
        let Some(raw) = value else {
            return Ok(ContentType::Json);
        };
        let accept = raw.to_ascii_lowercase();
        let allows = |t: &str| {
            accept.split(',').any(|part| {
                let media = part.split(';').next().unwrap_or("").trim();
                media == t || media == "*/*" || media == "application/*"
            })
        };
        if allows(JSON) {
            Ok(ContentType::Json)
        } else if allows(PROTOBUF) {
            Ok(ContentType::Protobuf)
        } else {
            Err(MediaError::NotAcceptable)
        }
    }

    /// Decodes a body.
    pub fn decode<T>(self, body: &[u8]) -> Result<T, MediaError>
    where
        T: prost::Message + Default + serde::de::DeserializeOwned,
    {
        match self {
            ContentType::Json => {
                crate::from_json(body).map_err(|e| MediaError::Body(e.to_string()))
            }
            ContentType::Protobuf => T::decode(body).map_err(|e| MediaError::Body(e.to_string())),
        }
    }

    /// Encodes a value (JSON compact and ASCII-only).
    pub fn encode<T: prost::Message + serde::Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            ContentType::Json => crate::to_ascii_json(value),
            ContentType::Protobuf => value.encode_to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_accepts_choose_as_mesos() {
        use ContentType::*;
        for (value, want) in [
            (Some("application/json; charset=utf-8"), Ok(Json)),
            (Some("Application/X-Protobuf"), Ok(Protobuf)),
            (None, Err(MediaError::MissingContentType)),
            (
                Some("text/plain"),
                Err(MediaError::UnsupportedContentType("text/plain".into())),
            ),
        ] {
            assert_eq!(ContentType::of_content_type(value), want, "{value:?}");
        }
        for (value, want) in [
            (None, Ok(Json)),
            (Some("*/*"), Ok(Json)),
            (Some("application/x-protobuf"), Ok(Protobuf)),
            (
                Some("application/x-protobuf;q=1, application/json;q=0.5"),
                Ok(Json),
            ),
            (Some("text/html"), Err(MediaError::NotAcceptable)),
        ] {
            assert_eq!(ContentType::of_accept(value), want, "{value:?}");
        }
    }
}
