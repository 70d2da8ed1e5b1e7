//! The Marathon-compatible scheduler's model and API shapes (issue 18, in progress).
//!
//! - [`path`]: app and group ids (`/prod/web`) with Marathon's rule.
//! - [`app`]: app definitions in Marathon's JSON, their defaults and every rule a definition
//!   must satisfy, reported with the field at fault.
//! - [`placement`]: how many instances one offer takes, with which resources and host ports,
//!   under the app's constraints.
//! - [`queue`]: the launch queue: instances still to launch per app, backoff after failed
//!   launches, whether the framework wants offers.
//! - [`state`]: apps and their versions in the masters' framework store, changed by
//!   compare-and-set.
//! - [`api`]: `/v2` over HTTP (the first routes).
//! - [`error`]: the error answers of `/v2` in Marathon's shapes (400, 404, 409, 422).
//! - [`view`]: apps and tasks as `/v2` shows them, with only Marathon's keys.
//! - [`time`]: timestamps as `/v2` writes them (ISO-8601 UTC with milliseconds).
//!
//! `scheduler/MARATHON.md` is the reference these follow: the wire shapes marathon-python
//! and other Marathon clients depend on.

pub mod api;
pub mod app;
pub mod error;
pub mod path;
pub mod placement;
pub mod queue;
pub mod state;
pub mod time;
pub mod view;
