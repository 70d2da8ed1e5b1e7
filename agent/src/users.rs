//! Who a task runs as on this agent: the agent's policy (`--default-task-user`,
//! `--allowed-users`, `--allow-root-tasks`) applied to the user a task's command names
//! ([`UserPolicy::decide`], a pure function of the policy and an account lookup), the account
//! it resolves to ([`RunAs`], checkpointed in `task.json` and `executor.json`), and how a
//! process is started as it ([`RunAs::prepare_sandbox`], [`RunAs::drop_in_child`]).
//!
//! The rules, in order:
//! - the user is the command's, else the agent's default task user (`nobody` when the agent
//!   runs as root), else the agent's own;
//! - an agent that does not run as root cannot switch users: it runs tasks as itself, and
//!   refuses a task that names anyone else;
//! - the user must exist on the agent; root (uid 0, or gid 0 as its primary group) is
//!   refused unless `--allow-root-tasks`; a
//!   non-empty `--allowed-users` must list it.
//!
//! A task started as another user keeps the executor (Drover's own, or a custom executor's
//! supervisor) as root: only the task's process (and its command health check, and a custom
//! executor's command) drops to the user, after it has joined its cgroup and entered its
//! sandbox. Its primary group is its only group (`initgroups` is not safe between fork and
//! exec). Its sandbox is chowned to it; the directories above it need not be reachable.
//!
//! A Docker container's user is the image's (the command's user is handed to the engine as
//! the container's `--user`): this policy is about the agent's host accounts.

use serde::{Deserialize, Serialize};

/// Where an account comes from: the host's user database, or a table in tests.
pub trait Accounts {
    /// `(uid, gid)` of the user called `name`, if there is one.
    fn lookup(&self, name: &str) -> Option<(u32, u32)>;
}

/// The host's accounts (`getpwnam_r`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostAccounts;

impl Accounts for HostAccounts {
    fn lookup(&self, name: &str) -> Option<(u32, u32)> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    }
}

/// The account a task's process runs as, when it is not the agent's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Why a task may not run as the user it named (or the default one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefused {
    #[error("user {user:?} does not exist on this agent")]
    NoSuchUser { user: String },
    #[error("tasks may not run as root ({user:?}, or in root's group) on this agent: start it with --allow-root-tasks to allow that")]
    Root { user: String },
    #[error("user {user:?} is not in this agent's --allowed-users ({allowed})")]
    NotAllowed { user: String, allowed: String },
    #[error("this agent runs as {agent:?}, not as root, so it runs tasks only as {agent:?}, not as {user:?}")]
    CannotSwitch { agent: String, user: String },
}

/// The agent's rules for task users (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPolicy {
    /// The agent's own uid and user name.
    pub agent_uid: u32,
    pub agent_user: String,
    /// Whom a task that names no user runs as (`None`: the agent's own user).
    pub default_user: Option<String>,
    /// Whom tasks may run as; empty: anyone who exists (root aside).
    pub allowed: Vec<String>,
    pub allow_root: bool,
}

/// The user tasks naming none run as on an agent running as root.
pub const DEFAULT_TASK_USER: &str = "nobody";

impl UserPolicy {
    /// The policy of an agent running as the current process's user: as root, tasks run as
    /// `default_user` (else [`DEFAULT_TASK_USER`]); otherwise as the agent's own user.
    pub fn for_this_process(
        default_user: Option<String>,
        allowed: Vec<String>,
        allow_root: bool,
    ) -> Self {
        let uid = nix::unistd::getuid();
        let agent_user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let default_user = match (uid.is_root(), default_user) {
            (_, Some(u)) => Some(u),
            (true, None) => Some(DEFAULT_TASK_USER.to_string()),
            (false, None) => None,
        };
        UserPolicy {
            agent_uid: uid.as_raw(),
            agent_user,
            default_user,
            allowed,
            allow_root,
        }
    }

    /// The policy of an agent whose tasks run as the agent itself whatever they name (for
    /// tests that run an agent in-process and do not exercise users).
    pub fn as_agent() -> Self {
        let mut p = Self::for_this_process(None, Vec::new(), true);
        p.default_user = None;
        p
    }

    /// Whom a task whose command names `asked` (empty: none) runs as: `None` for the agent's
    /// own account, a [`RunAs`] for another one, or why it may not run.
    pub fn decide(
        &self,
        asked: &str,
        accounts: &impl Accounts,
    ) -> Result<Option<RunAs>, UserRefused> {
        let user = match (asked, &self.default_user) {
            ("", Some(d)) => d.as_str(),
            ("", None) => self.agent_user.as_str(),
            (u, _) => u,
        };
        if self.agent_uid != 0 {
            return if user == self.agent_user {
                Ok(None)
            } else {
                Err(UserRefused::CannotSwitch {
                    agent: self.agent_user.clone(),
                    user: user.to_string(),
                })
            };
        }
        let (uid, gid) = accounts
            .lookup(user)
            .ok_or_else(|| UserRefused::NoSuchUser {
                user: user.to_string(),
            })?;
        if (uid == 0 || gid == 0) && !self.allow_root {
            return Err(UserRefused::Root {
                user: user.to_string(),
            });
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == user) {
            return Err(UserRefused::NotAllowed {
                user: user.to_string(),
                allowed: self.allowed.join(","),
            });
        }
        if uid == self.agent_uid {
            return Ok(None);
        }
        Ok(Some(RunAs {
            user: user.to_string(),
            uid,
            gid,
        }))
    }
}

impl RunAs {
    /// Gives `sandbox` and its output files (opened already, by the root executor) to the
    /// user, so that the task can write beside them. Nothing is followed: the sandbox itself
    /// is changed, not what a link there points to, and the files through their descriptors
    /// (a task that ran in this sandbox before cannot have the root executor hand it another
    /// file through a link it planted).
    pub fn prepare_sandbox(
        &self,
        sandbox: &std::path::Path,
        outputs: &[&std::fs::File],
    ) -> std::io::Result<()> {
        let (uid, gid) = (
            Some(nix::unistd::Uid::from_raw(self.uid)),
            Some(nix::unistd::Gid::from_raw(self.gid)),
        );
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            sandbox,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)?;
        for f in outputs {
            nix::unistd::fchown(f, uid, gid).map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// Drops the calling process to the user: its primary group as its only group, then the
    /// group, then the user. Only async-signal-safe calls (no allocation, no lock): meant for
    /// `pre_exec`, after the child has joined its cgroup and entered its working directory.
    pub fn drop_in_child(uid: u32, gid: u32) -> std::io::Result<()> {
        let gid = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid]).map_err(std::io::Error::from)?;
        nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(std::io::Error::from)
    }

    /// Adds the drop to `cmd`: its `pre_exec` hooks run in the order they were added, so this
    /// goes after any that need root (joining a cgroup).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: drop_in_child makes only the setgroups, setgid and setuid system calls on
        // values copied before the fork; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || Self::drop_in_child(uid, gid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;
    impl Accounts for Table {
        fn lookup(&self, name: &str) -> Option<(u32, u32)> {
            match name {
                "root" => Some((0, 0)),
                "nobody" => Some((65534, 65534)),
                "app" => Some((1000, 1000)),
                "sync" => Some((4, 0)),
                _ => None,
            }
        }
    }

    fn root_agent() -> UserPolicy {
        UserPolicy {
            agent_uid: 0,
            agent_user: "root".into(),
            default_user: Some("nobody".into()),
            allowed: Vec::new(),
            allow_root: false,
        }
    }

    fn run_as(user: &str, id: u32) -> Option<RunAs> {
        Some(RunAs {
            user: user.into(),
            uid: id,
            gid: id,
        })
    }

    #[test]
    fn a_root_agent_runs_unnamed_tasks_as_its_default_user_and_named_ones_as_named() {
        let p = root_agent();
        assert_eq!(p.decide("", &Table), Ok(run_as("nobody", 65534)));
        assert_eq!(p.decide("app", &Table), Ok(run_as("app", 1000)));
    }

    #[test]
    fn root_is_refused_unless_allowed_and_then_needs_no_switch() {
        let mut p = root_agent();
        // Root's group is root's too.
        assert!(matches!(
            p.decide("sync", &Table),
            Err(UserRefused::Root { .. })
        ));
        assert!(matches!(
            p.decide("root", &Table),
            Err(UserRefused::Root { .. })
        ));
        p.default_user = Some("root".into());
        assert!(matches!(
            p.decide("", &Table),
            Err(UserRefused::Root { .. })
        ));
        p.allow_root = true;
        assert_eq!(p.decide("root", &Table), Ok(None));
        assert_eq!(p.decide("", &Table), Ok(None));
    }

    #[test]
    fn unknown_users_and_users_off_the_allowed_list_are_refused() {
        let mut p = root_agent();
        assert!(matches!(
            p.decide("ghost", &Table),
            Err(UserRefused::NoSuchUser { .. })
        ));
        p.allowed = vec!["app".into()];
        assert_eq!(p.decide("app", &Table), Ok(run_as("app", 1000)));
        let e = p.decide("nobody", &Table).unwrap_err();
        assert!(matches!(e, UserRefused::NotAllowed { .. }));
        assert!(e.to_string().contains("--allowed-users (app)"), "{e}");
        // The default user is held to the same list.
        assert!(matches!(
            p.decide("", &Table),
            Err(UserRefused::NotAllowed { .. })
        ));
        // The list does not let root past --allow-root-tasks.
        p.allowed = vec!["root".into()];
        assert!(matches!(
            p.decide("root", &Table),
            Err(UserRefused::Root { .. })
        ));
    }

    #[test]
    fn an_agent_not_running_as_root_runs_tasks_only_as_itself() {
        let p = UserPolicy {
            agent_uid: 1000,
            agent_user: "app".into(),
            default_user: None,
            allowed: Vec::new(),
            allow_root: false,
        };
        assert_eq!(p.decide("", &Table), Ok(None));
        assert_eq!(p.decide("app", &Table), Ok(None));
        let e = p.decide("nobody", &Table).unwrap_err();
        assert!(matches!(e, UserRefused::CannotSwitch { .. }), "{e}");
    }
}
