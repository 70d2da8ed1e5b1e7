//! ACKNOWLEDGE: a framework acknowledges a status update (committed, so a new leader does
//! not send it again); each acknowledgement lets one more backlogged update go.

use drover_proto::v1;

use super::{event, Action, Engine, Pending};
use crate::ids::{FrameworkId, TaskId};
use crate::leader::answer::Reply;
use crate::registry::cluster::ClusterOp;

impl Engine {
    pub(super) fn acknowledge(
        &mut self,
        framework: FrameworkId,
        task: TaskId,
        uuid: uuid::Uuid,
        reply: Reply<()>,
    ) {
        let op = ClusterOp::Acknowledge {
            framework: framework.clone(),
            task,
            uuid,
        };
        self.propose(op, Pending::Acknowledged { framework, reply });
    }

    pub(super) fn acknowledged(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.answer(reply, Ok(()));
        // One acknowledgement makes room for one more update of the backlog.
        if let Some((stream, s)) = self.frameworks.next_backlogged(&framework, false) {
            self.out.push(Action::Send {
                stream,
                event: event(v1::event::Event::Update(v1::Update { status: Some(s) })),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;

    #[test]
    fn unacknowledged_updates_are_sent_again_to_a_resubscribed_framework_until_acknowledged() {
        use crate::registry::TaskState;
        let (mut sim, mut stream) = one_agent_one_framework();
        let f1 = stream.framework.clone();
        let t1 = sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        sim.report("a1", &f1, &t1, TaskState::Running, 1).unwrap();
        let running = v1::TaskState::TaskRunning as i32;
        assert_eq!(updates(&stream.events()), [("t1".to_string(), running)]);
        // Not acknowledged: the framework fails over and gets it again on its new stream.
        let mut again = sim.subscribe_with("f1", 0, true);
        assert_eq!(updates(&again.events()), [("t1".to_string(), running)]);
        let call = sim.call(
            &again,
            Call::Acknowledge {
                task: t1.clone(),
                uuid: uuid::Uuid::from_u128(1),
            },
        );
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let mut third = sim.subscribe_with("f1", 0, true);
        assert!(updates(&third.events()).is_empty());
    }
}
