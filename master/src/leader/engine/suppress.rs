//! SUPPRESS and REVIVE: a framework asks for no offers, or for offers again (at once).

use super::Engine;
use crate::ids::FrameworkId;
use crate::leader::answer::Reply;

impl Engine {
    pub(super) fn suppress(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.frameworks.set_self_suppressed(&framework, true);
        self.update_suppression(&framework);
        self.answer(reply, Ok(()));
    }

    pub(super) fn revive(&mut self, framework: FrameworkId, reply: Reply<()>) {
        self.frameworks.set_self_suppressed(&framework, false);
        self.update_suppression(&framework);
        self.allocate_soon();
        self.answer(reply, Ok(()));
    }
}
