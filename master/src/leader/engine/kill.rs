//! KILL: a framework asks for a task to be killed; the KillTask goes to its agent (whose
//! update, committed, ends the task). A task already ended is answered as done.

use super::Engine;
use crate::ids::{FrameworkId, TaskId};
use crate::leader::answer::{Refusal, Reply};

impl Engine {
    pub(super) fn kill(
        &mut self,
        framework: FrameworkId,
        task: TaskId,
        grace_ms: Option<u64>,
        reply: Reply<()>,
    ) {
        let state = self.state();
        let r = match state.task(&framework, &task) {
            None => Err(Refusal::NotFound(format!(
                "task_id: framework {framework} has no task {task}"
            ))),
            Some(t) if t.state.is_terminal() => Ok(()),
            Some(t) => {
                let grace = grace_ms.unwrap_or(t.spec.kill_grace_ms);
                self.kill_on_agent(&state, &framework, &t.agent, &task, grace);
                Ok(())
            }
        };
        self.answer(reply, r);
    }
}
