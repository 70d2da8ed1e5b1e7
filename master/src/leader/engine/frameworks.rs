//! Frameworks on the leader: which are connected and through which stream, what their streams
//! can take, the updates waiting to be sent to each (its backlog), and which asked for no
//! offers or were torn down. The allocator's suppression of a framework is the union of these
//! ([`Frameworks::is_suppressed`]).
//!
//! A stream is named by a [`StreamKey`]; the runtime owns the channel. Its room is what the
//! runtime last said it could take, less what was sent since: never more than the truth, as a
//! framework only makes room by reading.

use std::collections::{HashMap, HashSet, VecDeque};

use drover_proto::v1;

use crate::ids::FrameworkId;
use crate::leader::answer::{CallId, Refusal};

/// Events queued per framework stream; a framework that falls this far behind is disconnected
/// (it re-subscribes and gets every unacknowledged update again).
pub const EVENT_QUEUE: usize = 4096;
/// Room kept free on a stream for events that cannot wait (offers, rescinds, heartbeats, updates
/// as they commit): backlogged updates go only while the stream has more.
pub const RESERVED_ROOM: usize = EVENT_QUEUE / 4;
/// Updates kept per framework for later sending (redelivery and reconciliation beyond what
/// the stream holds); a framework with more is answered in part and must reconcile again.
pub const MAX_BACKLOG: usize = 200_000;

/// A framework's event stream, as the leader names it to the runtime: the id of the
/// SUBSCRIBE call that brought it (unique across leaderships).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(pub CallId);

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

struct Connection {
    /// The id SUBSCRIBED gave the framework; its calls name it.
    stream_id: String,
    stream: StreamKey,
    room: usize,
    /// Updates not sent yet, oldest first; at most [`MAX_BACKLOG`].
    backlog: VecDeque<v1::TaskStatus>,
}

/// Where an update for a framework goes (see [`Frameworks::queue`]).
#[derive(Debug, PartialEq)]
pub enum Queued {
    /// Send it now, on this stream.
    Now(StreamKey, v1::TaskStatus),
    /// It waits in the framework's backlog.
    Later,
    /// The framework has no stream.
    NoStream,
    /// The framework's backlog is full: dropped.
    BacklogFull,
}

#[derive(Default)]
pub struct Frameworks {
    connections: HashMap<FrameworkId, Connection>,
    /// Whose live stream each stream is: the runtime names streams on every send.
    by_stream: HashMap<StreamKey, FrameworkId>,
    /// Frameworks that asked for no offers (SUPPRESS), until they REVIVE or subscribe again.
    self_suppressed: HashSet<FrameworkId>,
    /// Torn down (committed): never offered anything again, their calls refused.
    torn_down: HashSet<FrameworkId>,
}

impl Frameworks {
    /// `framework` subscribed with `stream`, known to it as `stream_id`, and wants offers.
    /// Returns the stream this one replaces, if it had one (to be told and closed).
    pub fn connect(
        &mut self,
        framework: &FrameworkId,
        stream_id: String,
        stream: StreamKey,
    ) -> Option<StreamKey> {
        self.self_suppressed.remove(framework);
        self.by_stream.insert(stream, framework.clone());
        let old = self.connections.insert(
            framework.clone(),
            Connection {
                stream_id,
                stream,
                room: EVENT_QUEUE,
                backlog: VecDeque::new(),
            },
        );
        let old = old.map(|c| c.stream);
        if let Some(old) = old {
            self.by_stream.remove(&old);
        }
        old
    }

    /// `framework`'s stream is gone; returns it, if it had one (to be closed).
    pub fn disconnect(&mut self, framework: &FrameworkId) -> Option<StreamKey> {
        let stream = self.connections.remove(framework)?.stream;
        self.by_stream.remove(&stream);
        Some(stream)
    }

    pub fn is_connected(&self, framework: &FrameworkId) -> bool {
        self.connections.contains_key(framework)
    }

    /// The frameworks connected.
    pub fn connected(&self) -> Vec<FrameworkId> {
        self.connections.keys().cloned().collect()
    }

    /// How many frameworks are connected.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// The framework whose live stream `stream` is.
    pub fn framework_of(&self, stream: StreamKey) -> Option<FrameworkId> {
        self.by_stream.get(&stream).cloned()
    }

    /// Whether a call naming `framework` and `stream_id` comes from the framework's live
    /// stream.
    pub fn check_caller(&self, framework: &FrameworkId, stream_id: &str) -> Result<(), Refusal> {
        match self.connections.get(framework) {
            Some(c) if c.stream_id == stream_id => Ok(()),
            Some(_) => Err(Refusal::StaleCaller {
                message: "caller.stream_id: not the framework's live stream (a newer subscription replaced it)".into(),
                replaced: true,
            }),
            None => Err(Refusal::StaleCaller {
                message: format!(
                    "caller.framework_id: framework {framework} is not subscribed to this leader; subscribe first"
                ),
                replaced: false,
            }),
        }
    }

    /// One event goes to `framework` now: the stream it goes on (its room one less), if it
    /// has one.
    pub fn sent(&mut self, framework: &FrameworkId) -> Option<StreamKey> {
        let c = self.connections.get_mut(framework)?;
        c.room = c.room.saturating_sub(1);
        Some(c.stream)
    }

    /// A best-effort event goes to `framework` now, if its stream has room beyond
    /// [`RESERVED_ROOM`] (a chatty executor's messages never cost its framework the stream):
    /// the stream it goes on.
    pub fn sent_if_room(&mut self, framework: &FrameworkId) -> Option<StreamKey> {
        let c = self.connections.get_mut(framework)?;
        if c.room <= RESERVED_ROOM {
            return None;
        }
        c.room -= 1;
        Some(c.stream)
    }

    /// The runtime's word on how many more events `stream` can take now.
    pub fn set_room(&mut self, stream: StreamKey, room: usize) {
        if let Some(c) = self
            .by_stream
            .get(&stream)
            .and_then(|f| self.connections.get_mut(f))
        {
            c.room = room;
        }
    }

    /// An update for `framework` that may wait: now if its stream has room beyond
    /// [`RESERVED_ROOM`] and nothing waits before it, else in its backlog.
    pub fn queue(&mut self, framework: &FrameworkId, status: v1::TaskStatus) -> Queued {
        let Some(c) = self.connections.get_mut(framework) else {
            return Queued::NoStream;
        };
        if c.backlog.is_empty() && c.room > RESERVED_ROOM {
            c.room -= 1;
            Queued::Now(c.stream, status)
        } else if c.backlog.len() < MAX_BACKLOG {
            c.backlog.push_back(status);
            Queued::Later
        } else {
            Queued::BacklogFull
        }
    }

    /// The oldest update waiting for `framework`, taken, with the stream it goes on; when
    /// `room_only`, only if the stream has room beyond [`RESERVED_ROOM`].
    pub fn next_backlogged(
        &mut self,
        framework: &FrameworkId,
        room_only: bool,
    ) -> Option<(StreamKey, v1::TaskStatus)> {
        let c = self.connections.get_mut(framework)?;
        if room_only && c.room <= RESERVED_ROOM {
            return None;
        }
        let status = c.backlog.pop_front()?;
        c.room = c.room.saturating_sub(1);
        Some((c.stream, status))
    }

    /// Updates waiting for `framework`.
    pub fn backlog_len(&self, framework: &FrameworkId) -> usize {
        self.connections
            .get(framework)
            .map_or(0, |c| c.backlog.len())
    }

    /// Frameworks with updates waiting.
    pub fn backlogged(&self) -> Vec<FrameworkId> {
        self.connections
            .iter()
            .filter(|(_, c)| !c.backlog.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// SUPPRESS (true) or REVIVE (false).
    pub fn set_self_suppressed(&mut self, framework: &FrameworkId, suppressed: bool) {
        if suppressed {
            self.self_suppressed.insert(framework.clone());
        } else {
            self.self_suppressed.remove(framework);
        }
    }

    /// `framework` was torn down (committed); returns its stream, if it had one (to be closed).
    pub fn tear_down(&mut self, framework: &FrameworkId) -> Option<StreamKey> {
        self.torn_down.insert(framework.clone());
        self.disconnect(framework)
    }

    pub fn is_torn_down(&self, framework: &FrameworkId) -> bool {
        self.torn_down.contains(framework)
    }

    /// `framework` is forgotten by the registry (pruned): nothing is kept of it.
    pub fn forget(&mut self, framework: &FrameworkId) {
        self.torn_down.remove(framework);
        self.self_suppressed.remove(framework);
        self.disconnect(framework);
    }

    /// Whether `framework` is to be offered nothing: it asked so, was torn down, or is not
    /// connected.
    pub fn is_suppressed(&self, framework: &FrameworkId) -> bool {
        self.self_suppressed.contains(framework)
            || self.torn_down.contains(framework)
            || !self.connections.contains_key(framework)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: &str) -> FrameworkId {
        FrameworkId::new(n).unwrap()
    }

    fn status(task: &str) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_live_stream_may_call_and_a_new_subscription_replaces_the_old() {
        let mut fw = Frameworks::default();
        assert!(matches!(
            fw.check_caller(&f("f1"), "s1"),
            Err(Refusal::StaleCaller {
                replaced: false,
                ..
            })
        ));
        assert_eq!(fw.connect(&f("f1"), "s1".into(), StreamKey(1)), None);
        assert_eq!(fw.check_caller(&f("f1"), "s1"), Ok(()));
        assert_eq!(
            fw.connect(&f("f1"), "s2".into(), StreamKey(2)),
            Some(StreamKey(1))
        );
        assert!(matches!(
            fw.check_caller(&f("f1"), "s1"),
            Err(Refusal::StaleCaller { replaced: true, .. })
        ));
        assert_eq!(fw.framework_of(StreamKey(1)), None);
        assert_eq!(fw.framework_of(StreamKey(2)), Some(f("f1")));
        assert_eq!(fw.disconnect(&f("f1")), Some(StreamKey(2)));
        assert_eq!(fw.disconnect(&f("f1")), None);
    }

    #[test]
    fn updates_wait_in_order_past_the_reserved_room_and_the_backlog_is_bounded() {
        let mut fw = Frameworks::default();
        fw.connect(&f("f1"), "s1".into(), StreamKey(1));
        fw.set_room(StreamKey(1), RESERVED_ROOM + 2);
        assert_eq!(
            fw.queue(&f("f1"), status("t1")),
            Queued::Now(StreamKey(1), status("t1"))
        );
        assert_eq!(
            fw.queue(&f("f1"), status("t2")),
            Queued::Now(StreamKey(1), status("t2"))
        );
        assert_eq!(fw.queue(&f("f1"), status("t3")), Queued::Later);
        // Room again: still behind what waits.
        assert_eq!(fw.next_backlogged(&f("f1"), true), None);
        fw.set_room(StreamKey(1), EVENT_QUEUE);
        assert_eq!(fw.queue(&f("f1"), status("t4")), Queued::Later);
        let order: Vec<String> = std::iter::from_fn(|| fw.next_backlogged(&f("f1"), true))
            .map(|(_, s)| s.task_id)
            .collect();
        assert_eq!(order, ["t3", "t4"]);
        // Full: dropped, not queued.
        fw.set_room(StreamKey(1), 0);
        for i in 0..MAX_BACKLOG {
            assert_eq!(fw.queue(&f("f1"), status(&format!("b{i}"))), Queued::Later);
        }
        assert_eq!(fw.queue(&f("f1"), status("over")), Queued::BacklogFull);
        assert_eq!(fw.backlog_len(&f("f1")), MAX_BACKLOG);
        // One acknowledgement sends one more whatever the room.
        assert_eq!(
            fw.next_backlogged(&f("f1"), false).map(|(_, s)| s.task_id),
            Some("b0".into())
        );
        assert_eq!(fw.queue(&f("f2"), status("x")), Queued::NoStream);
    }

    #[test]
    fn a_framework_is_offered_nothing_unless_connected_not_suppressed_and_not_torn_down() {
        let mut fw = Frameworks::default();
        let f1 = f("f1");
        assert!(fw.is_suppressed(&f1), "not connected");
        fw.connect(&f1, "s1".into(), StreamKey(1));
        assert!(!fw.is_suppressed(&f1));
        fw.set_self_suppressed(&f1, true);
        assert!(fw.is_suppressed(&f1));
        // Subscribing again revives it.
        fw.connect(&f1, "s2".into(), StreamKey(2));
        assert!(!fw.is_suppressed(&f1));
        assert_eq!(fw.tear_down(&f1), Some(StreamKey(2)));
        assert!(fw.is_suppressed(&f1) && fw.is_torn_down(&f1));
        fw.forget(&f1);
        assert!(!fw.is_torn_down(&f1));
    }
}
