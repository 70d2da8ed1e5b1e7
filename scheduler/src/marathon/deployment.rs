//! Deployments: the change of one app that the scheduler is carrying out (start, scale,
//! restart with a new configuration, stop), as Marathon's deployment plans show them.
//!
//! Owns the plan's steps and its two JSON forms: the record the store keeps
//! (`deployments/<id>`, so that a scheduler taking over finishes what its predecessor
//! started) and the shapes `/v2/deployments` and the event stream show (MARATHON.md §4.4 and
//! §5: a bare array of plans; events carry `original` and `target` groups). A deployment holds
//! its app: another change of the app is refused (409) unless forced, which replaces it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::AppDefinition;
use super::path::PathId;
use super::time::Timestamp;

/// A deployment's id (a UUID, as Marathon's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeploymentId(pub String);

impl DeploymentId {
    pub fn new() -> DeploymentId {
        DeploymentId(uuid::Uuid::new_v4().to_string())
    }
}

impl Default for DeploymentId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one step does to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
}

/// A change of one app being carried out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub version: Timestamp,
    pub app_id: PathId,
    pub steps: Vec<Action>,
    /// The step being carried out, from 1.
    pub current_step: usize,
    /// The app before the change; `None` if it did not exist (a rollback deletes it).
    pub original: Option<AppDefinition>,
    /// The app after the change; `None` if the change deletes it.
    pub target: Option<AppDefinition>,
}

impl Deployment {
    /// The deployment that takes `app_id` from `original` to `target`.
    pub fn plan(
        app_id: &PathId,
        original: Option<AppDefinition>,
        target: Option<AppDefinition>,
        version: Timestamp,
        config_changed: bool,
    ) -> Deployment {
        let steps = match (&original, &target) {
            (_, None) => vec![Action::StopApplication],
            (None, Some(t)) if t.instances > 0 => {
                vec![Action::StartApplication, Action::ScaleApplication]
            }
            (None, Some(_)) => vec![Action::StartApplication],
            (Some(_), Some(_)) if config_changed => vec![Action::RestartApplication],
            (Some(_), Some(_)) => vec![Action::ScaleApplication],
        };
        Deployment {
            id: DeploymentId::new(),
            version,
            app_id: app_id.clone(),
            steps,
            current_step: 1,
            original,
            target,
        }
    }

    /// The action of the current step.
    pub fn current_action(&self) -> Action {
        self.steps[self.current_step.clamp(1, self.steps.len()) - 1]
    }

    /// Whether the current step is the last.
    pub fn on_last_step(&self) -> bool {
        self.current_step >= self.steps.len()
    }

    fn step_json(&self, action: Action) -> Value {
        json!({"actions": [{"action": action, "app": self.app_id.to_string()}]})
    }

    /// The plan as `/v2/deployments` shows it.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id.0,
            "version": self.version,
            "affectedApps": [self.app_id.to_string()],
            "affectedPods": [],
            "steps": self.steps.iter().map(|a| self.step_json(*a)).collect::<Vec<_>>(),
            "currentActions": [{
                "action": self.current_action(),
                "app": self.app_id.to_string(),
                "readinessCheckResults": [],
            }],
            "currentStep": self.current_step,
            "totalSteps": self.steps.len(),
        })
    }

    /// The plan as events carry it (with the root group before and after).
    pub fn plan_json(&self) -> Value {
        let group = |app: &Option<AppDefinition>| {
            json!({
                "id": "/",
                "apps": app.iter().collect::<Vec<_>>(),
                "groups": [],
                "pods": [],
                "dependencies": [],
                "version": self.version,
            })
        };
        json!({
            "id": self.id.0,
            "version": self.version,
            "original": group(&self.original),
            "target": group(&self.target),
            "steps": self.steps.iter().map(|a| self.step_json(*a)).collect::<Vec<_>>(),
        })
    }

    /// The current step as events carry it.
    pub fn current_step_json(&self) -> Value {
        self.step_json(self.current_action())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::app::parse_app;

    #[test]
    fn plans_have_marathons_steps_and_shapes() {
        let app = parse_app(br#"{"id": "/web", "cmd": "x", "instances": 2}"#).unwrap();
        let start = Deployment::plan(&app.id, None, Some(app.clone()), Timestamp(1), true);
        assert_eq!(
            start.steps,
            vec![Action::StartApplication, Action::ScaleApplication]
        );
        let v = start.view();
        assert_eq!(v["steps"][1]["actions"][0]["action"], "ScaleApplication");
        assert_eq!(v["currentActions"][0]["app"], "/web");
        assert_eq!(v["totalSteps"], 2);
        let p = start.plan_json();
        assert!(p["original"]["apps"].as_array().unwrap().is_empty());
        assert_eq!(p["target"]["apps"][0]["id"], "/web");
        let restart = Deployment::plan(
            &app.id,
            Some(app.clone()),
            Some(app.clone()),
            Timestamp(2),
            true,
        );
        assert_eq!(restart.steps, vec![Action::RestartApplication]);
        let scale = Deployment::plan(
            &app.id,
            Some(app.clone()),
            Some(app.clone()),
            Timestamp(2),
            false,
        );
        assert_eq!(scale.steps, vec![Action::ScaleApplication]);
        let stop = Deployment::plan(&app.id.clone(), Some(app), None, Timestamp(3), false);
        assert_eq!(stop.current_action(), Action::StopApplication);
        assert!(stop.on_last_step());
    }
}
