//! The Marathon-compatible scheduler (issue 18, in progress): `drover scheduler` and `/v2`.
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
//! - [`instance`]: the slots of an app that keep a task running, their ids and records.
//! - [`deployment`]: a change of an app being carried out, as Marathon's plans show it.
//! - [`engine`]: the pure core: what the scheduler does about offers, updates, changes of
//!   apps and the passing of time, as a list of effects.
//! - [`events`]: the event stream's payloads.
//! - [`service`]: the running scheduler: the task that owns the engine, and the writer that
//!   carries out its effects in order.
//! - [`health`]: the HTTP and TCP health checks run from the scheduler.
//! - [`lease`]: which scheduler is active: a lease in the store, by compare-and-set.
//! - [`serve`]: `drover scheduler`, the process: active or standby.
//! - [`api`]: `/v2` over HTTP.
//! - [`error`]: the error answers of `/v2` in Marathon's shapes (400, 404, 409, 422).
//! - [`view`]: apps and tasks as `/v2` shows them, with only Marathon's keys.
//! - [`time`]: timestamps as `/v2` writes them (ISO-8601 UTC with milliseconds).
//!
//! `scheduler/MARATHON.md` is the reference these follow: the wire shapes marathon-python
//! and other Marathon clients depend on.

pub mod api;
pub mod app;
pub mod deployment;
pub mod engine;
pub mod error;
pub mod events;
pub mod health;
pub mod instance;
pub mod lease;
pub mod path;
pub mod placement;
pub mod queue;
pub mod serve;
pub mod service;
pub mod state;
pub mod time;
pub mod view;
