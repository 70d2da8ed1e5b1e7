//! Generates the Mesos v1 types from `proto/mesos/v1/**.proto` with prost, and gives them
//! Mesos's JSON form through serde: field names as in the proto (snake_case), unset optional
//! and empty repeated fields left out, enums as their value names, bytes as padded base64,
//! 64-bit integers as JSON numbers (Mesos's JSON, not proto3's canonical JSON).
//!
//! The serde attributes are derived from the descriptors, field by field: which fields are
//! enums (and of which enum), bytes, optional or repeated. The enums' names and numbers are
//! written to `enums.rs` as tables the JSON helpers (`src/json.rs`) index by a const.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto};

/// Every enum by its full proto name: its index in the generated table, and its values
/// (number, name).
type Enums = BTreeMap<String, (usize, Vec<(i32, String)>)>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment yet.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let protos = [
        "proto/mesos/v1/mesos.proto",
        "proto/mesos/v1/scheduler/scheduler.proto",
        "proto/mesos/v1/executor/executor.proto",
        "proto/mesos/v1/maintenance/maintenance.proto",
        "proto/mesos/v1/master/master.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut config = prost_build::Config::new();
    // The one well-known type Mesos's operator API uses: ours, with serde (prost-types' has none).
    config.extern_path(".google.protobuf.Duration", "crate::json::Duration");
    let fds = config.load_fds(&protos, &["proto"])?;

    // Every enum, by its full name, with its index in the generated table.
    let mut enums = Enums::new();
    for file in fds.file.iter().filter(|f| f.package().starts_with("mesos")) {
        let package = format!(".{}", file.package());
        for e in &file.enum_type {
            add_enum(&mut enums, &package, e);
        }
        for m in &file.message_type {
            collect_enums(&mut enums, &package, m);
        }
    }

    config.message_attribute(
        ".mesos",
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
    );
    let mut maps = BTreeSet::new();
    for file in fds.file.iter().filter(|f| f.package().starts_with("mesos")) {
        let package = format!(".{}", file.package());
        for m in &file.message_type {
            collect_map_entries(&mut maps, &package, m);
        }
    }
    for file in fds.file.iter().filter(|f| f.package().starts_with("mesos")) {
        let package = format!(".{}", file.package());
        for m in &file.message_type {
            field_attributes(&mut config, &enums, &maps, &package, m);
        }
    }
    config.compile_fds(fds)?;

    let mut table = String::from(
        "/// Every Mesos enum's values (number, name), indexed by the const the JSON helpers take.\n\
         pub(crate) static ENUMS: &[&[(i32, &str)]] = &[\n",
    );
    let mut ordered: Vec<_> = enums.iter().collect();
    ordered.sort_by_key(|(_, (i, _))| *i);
    for (name, (_, values)) in ordered {
        writeln!(table, "    // {name}")?;
        table.push_str("    &[");
        for (n, v) in values {
            write!(table, "({n}, \"{v}\"), ")?;
        }
        table.push_str("],\n");
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("enums.rs"), table)?;
    Ok(())
}

fn add_enum(enums: &mut Enums, scope: &str, e: &EnumDescriptorProto) {
    let index = enums.len();
    let values = e
        .value
        .iter()
        .map(|v| (v.number(), v.name().to_string()))
        .collect();
    enums.insert(format!("{scope}.{}", e.name()), (index, values));
}

fn collect_enums(enums: &mut Enums, scope: &str, m: &DescriptorProto) {
    let scope = format!("{scope}.{}", m.name());
    for e in &m.enum_type {
        add_enum(enums, &scope, e);
    }
    for nested in &m.nested_type {
        collect_enums(enums, &scope, nested);
    }
}

/// The full names of the messages protoc made for `map<>` fields (prost makes those fields
/// maps, not vectors).
fn collect_map_entries(maps: &mut BTreeSet<String>, scope: &str, m: &DescriptorProto) {
    let scope = format!("{scope}.{}", m.name());
    for nested in &m.nested_type {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            maps.insert(format!("{scope}.{}", nested.name()));
        }
        collect_map_entries(maps, &scope, nested);
    }
}

fn field_attributes(
    config: &mut prost_build::Config,
    enums: &Enums,
    maps: &BTreeSet<String>,
    scope: &str,
    m: &DescriptorProto,
) {
    let scope = format!("{scope}.{}", m.name());
    for f in &m.field {
        let path = format!("{scope}.{}", f.name());
        let repeated = f.label() == Label::Repeated;
        // prost makes every proto2 optional field an Option (a required message is not).
        let optional = f.label() == Label::Optional;
        let shape = if repeated {
            "repeated"
        } else if optional {
            "optional"
        } else {
            "required"
        };
        let mut attrs = Vec::new();
        if repeated && maps.contains(f.type_name()) {
            attrs.push(
                "skip_serializing_if = \"::std::collections::HashMap::is_empty\"".to_string(),
            );
        } else if repeated {
            attrs.push("skip_serializing_if = \"Vec::is_empty\"".to_string());
        } else if optional {
            attrs.push("skip_serializing_if = \"Option::is_none\"".to_string());
        }
        match f.r#type() {
            Type::Enum => {
                let (index, _) = enums
                    .get(f.type_name())
                    .unwrap_or_else(|| panic!("{path}: unknown enum {}", f.type_name()));
                attrs.push(format!(
                    "serialize_with = \"crate::json::enum_{shape}::serialize::<{index}, _>\""
                ));
                attrs.push(format!(
                    "deserialize_with = \"crate::json::enum_{shape}::deserialize::<{index}, _>\""
                ));
            }
            Type::Bytes => {
                attrs.push(format!("with = \"crate::json::bytes_{shape}\""));
            }
            _ => {}
        }
        if !attrs.is_empty() {
            config.field_attribute(&path, format!("#[serde({})]", attrs.join(", ")));
        }
    }
    for nested in &m.nested_type {
        field_attributes(config, enums, maps, &scope, nested);
    }
}
