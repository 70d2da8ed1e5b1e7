//! `drover store …`: the framework store from the command line.

use drover_client::MasterClient;
use drover_proto::master::compare_and_set_request::Expected;

use super::{CliError, Exit};

/// What the compare-and-set compares against.
#[derive(Debug, Clone)]
pub enum CasExpectation {
    Value(String),
    Version(u64),
    Absent,
}

#[derive(Debug, Clone)]
pub enum StoreCommand {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
        show_version: bool,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        expected: CasExpectation,
        new: String,
    },
    List {
        start_after: String,
        limit: u32,
    },
}

pub async fn run(
    client: &MasterClient,
    framework: &str,
    cmd: StoreCommand,
) -> Result<Exit, CliError> {
    match cmd {
        StoreCommand::Put { key, value } => {
            let version = client.put(framework, &key, value.into_bytes()).await?;
            println!("version {version}");
            Ok(Exit::Success)
        }
        StoreCommand::Get { key, show_version } => match client.get(framework, &key).await? {
            Some(v) => {
                println!("{}", String::from_utf8_lossy(&v.value));
                if show_version {
                    eprintln!("version {}", v.version);
                }
                Ok(Exit::Success)
            }
            None => {
                eprintln!("{key}: not found");
                Ok(Exit::No)
            }
        },
        StoreCommand::Delete { key } => {
            if client.delete(framework, &key).await? {
                println!("deleted");
            } else {
                println!("{key}: was absent");
            }
            Ok(Exit::Success)
        }
        StoreCommand::Cas { key, expected, new } => {
            let expected = match expected {
                CasExpectation::Value(v) => Expected::ExpectedValue(v.into_bytes()),
                CasExpectation::Version(v) => Expected::ExpectedVersion(v),
                CasExpectation::Absent => Expected::ExpectedAbsent(true),
            };
            let reply = client
                .compare_and_set(framework, &key, expected, new.into_bytes())
                .await?;
            if reply.succeeded {
                println!("version {}", reply.version);
                Ok(Exit::Success)
            } else {
                match reply.current {
                    Some(cur) => eprintln!(
                        "{key}: compare-and-set refused: current value is {:?} (version {})",
                        String::from_utf8_lossy(&cur.value),
                        cur.version
                    ),
                    None => eprintln!("{key}: compare-and-set refused: the key does not exist"),
                }
                Ok(Exit::No)
            }
        }
        StoreCommand::List { start_after, limit } => {
            let reply = client.list(framework, &start_after, limit).await?;
            for k in &reply.keys {
                println!("{k}");
            }
            if reply.truncated {
                eprintln!(
                    "(more keys follow; continue with --start-after {:?})",
                    reply.keys.last().cloned().unwrap_or_default()
                );
            }
            Ok(Exit::Success)
        }
    }
}
