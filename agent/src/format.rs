//! The agent's work directory format: one version for every file the agent and its executors
//! keep there (`meta/agent_id`, task directories, record logs), written in `meta/format` and
//! checked before anything else is read. `task.json` also carries its own version (the
//! executor's input, see [`crate::task`]).
//!
//! Versions: 0 is every build before format versions (no `meta/format`); 1 is this one, which
//! reads what version 0 wrote (the files kept their shape; version 1 adds `completed/`), so a
//! version-0 directory is migrated by writing the stamp, and `tests/formats.rs` starts an
//! agent on one made by the previous build. Any other version is refused with a message
//! naming the file and both versions, and nothing is touched.

use std::path::PathBuf;

use crate::checkpoint::{self, CheckpointError};
use crate::layout::Layout;

/// The format this build reads and writes.
pub const WORK_DIR_FORMAT: u32 = 1;
const MAGIC: &str = "drover-agent-work-dir";

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Fresh,
    Current,
    Migrated { from: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: work directory format {found}, written by a newer build; this build reads format {WORK_DIR_FORMAT}: run the newer build, or give this one an empty --work-dir")]
    Newer { path: PathBuf, found: u32 },
    #[error("{path}: work directory format {found}, which this build cannot read (it reads format {WORK_DIR_FORMAT} and migrates format 0)")]
    Unsupported { path: PathBuf, found: u32 },
    #[error(
        "{path}: not a work directory format stamp ({reason}); expected \"{MAGIC} <version>\""
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] CheckpointError),
}

/// Checks the work directory's format, stamping a fresh one and migrating one of an older
/// build; refuses anything else. Blocking.
pub fn check(layout: &Layout) -> Result<Opened, FormatError> {
    let path = layout.format_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = parse(&text).map_err(|reason| FormatError::Corrupt {
                path: path.clone(),
                reason,
            })?;
            match found {
                WORK_DIR_FORMAT => Ok(Opened::Current),
                f if f > WORK_DIR_FORMAT => Err(FormatError::Newer { path, found: f }),
                f => Err(FormatError::Unsupported { path, found: f }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let used = std::fs::read_dir(layout.work_dir())
                .map(|entries| entries.filter_map(Result::ok).next().is_some())
                .unwrap_or(false);
            if let Some(meta) = path.parent() {
                checkpoint::create_dir_all_durable(meta)?;
            }
            checkpoint::write_atomic(&path, format!("{MAGIC} {WORK_DIR_FORMAT}\n").as_bytes())?;
            if used {
                tracing::info!(path = %path.display(), from = 0, to = WORK_DIR_FORMAT, "work directory of a build before format versions migrated (same files, stamped)");
                Ok(Opened::Migrated { from: 0 })
            } else {
                Ok(Opened::Fresh)
            }
        }
        Err(e) => Err(checkpoint::io_err(&path)(e).into()),
    }
}

fn parse(text: &str) -> Result<u32, String> {
    let (magic, version) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("{:?}", text.trim()))?;
    if magic != MAGIC {
        return Err(format!("{magic:?}"));
    }
    version
        .parse()
        .map_err(|_| format!("version {version:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_is_stamped_old_is_migrated_and_others_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("fresh"));
        std::fs::create_dir_all(layout.work_dir()).unwrap();
        assert_eq!(check(&layout).unwrap(), Opened::Fresh);
        assert_eq!(check(&layout).unwrap(), Opened::Current);

        let old = Layout::new(dir.path().join("old"));
        std::fs::create_dir_all(old.work_dir().join("meta")).unwrap();
        std::fs::write(old.agent_id_file(), "agent-1").unwrap();
        assert_eq!(check(&old).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(check(&old).unwrap(), Opened::Current);

        for (text, newer) in [
            ("drover-agent-work-dir 7\n", true),
            ("drover-agent-work-dir 0\n", false),
        ] {
            std::fs::write(old.format_file(), text).unwrap();
            let e = check(&old).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(&old.format_file().display().to_string()),
                "{msg}"
            );
            assert!(msg.contains(&format!("format {WORK_DIR_FORMAT}")), "{msg}");
            assert_eq!(matches!(e, FormatError::Newer { .. }), newer, "{msg}");
            assert_eq!(std::fs::read_to_string(old.format_file()).unwrap(), text);
        }
        std::fs::write(old.format_file(), "something else").unwrap();
        assert!(matches!(check(&old), Err(FormatError::Corrupt { .. })));
    }
}
