//! Mesos's JSON form of its protobuf types: the serde helpers the generated code names field
//! by field (see `build.rs`), and the writer that escapes every non-ASCII character.
//!
//! Enums are written as their value names and read from names (Mesos's own JSON) or numbers;
//! an unknown name is an error naming it. Bytes are standard base64 with padding.

use std::io;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serializer};

include!(concat!(env!("OUT_DIR"), "/enums.rs"));

fn enum_name<const E: usize>(n: i32) -> Option<&'static str> {
    ENUMS[E]
        .iter()
        .find(|(v, _)| *v == n)
        .map(|(_, name)| *name)
}

/// A JSON enum value: a name, or a number (which protobuf-minded clients send).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawEnum {
    Name(String),
    Number(i32),
}

fn enum_number<const E: usize, Er: serde::de::Error>(raw: RawEnum) -> Result<i32, Er> {
    match raw {
        RawEnum::Name(name) => ENUMS[E]
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(v, _)| *v)
            .ok_or_else(|| {
                let known: Vec<&str> = ENUMS[E].iter().map(|(_, n)| *n).collect();
                Er::custom(format!(
                    "unknown value \"{name}\" (one of {})",
                    known.join(", ")
                ))
            }),
        RawEnum::Number(n) => enum_name::<E>(n)
            .map(|_| n)
            .ok_or_else(|| Er::custom(format!("unknown value {n}"))),
    }
}

fn write_enum<const E: usize, S: Serializer>(n: i32, s: S) -> Result<S::Ok, S::Error> {
    match enum_name::<E>(n) {
        Some(name) => s.serialize_str(name),
        // A number outside the enum (read from protobuf, which keeps them) stays a number.
        None => s.serialize_i32(n),
    }
}

pub mod enum_required {
    use super::*;

    pub fn serialize<const E: usize, S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        write_enum::<E, S>(*v, s)
    }

    pub fn deserialize<'de, const E: usize, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        enum_number::<E, D::Error>(RawEnum::deserialize(d)?)
    }
}

pub mod enum_optional {
    use super::*;

    pub fn serialize<const E: usize, S: Serializer>(
        v: &Option<i32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => write_enum::<E, S>(*v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, const E: usize, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<i32>, D::Error> {
        Option::<RawEnum>::deserialize(d)?
            .map(enum_number::<E, D::Error>)
            .transpose()
    }
}

pub mod enum_repeated {
    use serde::ser::SerializeSeq;

    use super::*;

    pub fn serialize<const E: usize, S: Serializer>(v: &[i32], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for n in v {
            match enum_name::<E>(*n) {
                Some(name) => seq.serialize_element(name)?,
                None => seq.serialize_element(n)?,
            }
        }
        seq.end()
    }

    pub fn deserialize<'de, const E: usize, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<i32>, D::Error> {
        Option::<Vec<RawEnum>>::deserialize(d)?
            .unwrap_or_default()
            .into_iter()
            .map(enum_number::<E, D::Error>)
            .collect()
    }
}

fn decode_base64<Er: serde::de::Error>(s: &str) -> Result<Vec<u8>, Er> {
    STANDARD
        .decode(s)
        .map_err(|e| Er::custom(format!("not padded base64: {e}")))
}

pub mod bytes_required {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        decode_base64(&String::deserialize(d)?)
    }
}

pub mod bytes_optional {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&STANDARD.encode(v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| decode_base64(&s))
            .transpose()
    }
}

pub mod bytes_repeated {
    use serde::ser::SerializeSeq;

    use super::*;

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&STANDARD.encode(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Option::<Vec<String>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(|s| decode_base64(s))
            .collect()
    }
}

/// `google.protobuf.Duration`, the one well-known type Mesos's APIs carry (the operator API's
/// DRAIN_AGENT), with its Mesos JSON form `{"seconds": s, "nanos": n}`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, prost::Message, serde::Serialize, serde::Deserialize,
)]
#[serde(default)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// serde_json's compact output, with every character outside ASCII written as `\uXXXX` (a
/// surrogate pair above U+FFFF): clients that count a record's bytes after decoding it as
/// text (mesoshttp) then count right.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(writer, "\\u{u:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as compact, ASCII-only JSON.
pub fn to_ascii_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serializing these types cannot fail: every map key is a string and writing to a Vec
    // does not fail.
    value
        .serialize(&mut ser)
        .expect("Mesos types serialize to JSON");
    out
}

/// Decodes a Mesos JSON body, naming the path of the field at fault (`accept.offer_ids[0]`).
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, JsonError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| JsonError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// A JSON body that does not decode, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    /// The field at fault, as `a.b[2].c` (`.` for the whole body).
    pub path: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_escaped_and_reads_back() {
        let s = "hôte-é 🚀 \"q\"\n";
        let json = to_ascii_json(&s);
        assert!(json.is_ascii(), "{}", String::from_utf8_lossy(&json));
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            r#""h\u00f4te-\u00e9 \ud83d\ude80 \"q\"\n""#
        );
        let back: String = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
    }
}
