//! The marathon workload: apps created, scaled, restarted and deleted through `/v2` of two
//! `drover scheduler` processes (one active, one standby) while the nemesis runs, with the
//! active scheduler SIGKILLed (and started again) on a seeded schedule of its own until the
//! faults stop. Every operation is recorded (invoke, then ok / fail / info); after the run it
//! waits, bounded, until every app runs its instances both as `/v2` shows them and in the
//! masters' registry, and records what it saw (`final`) for [`crate::checker::marathon`].
//!
//! Outcomes: a 2xx is `ok`; a 4xx is `fail` (the scheduler refused before writing: a
//! duplicate id, an unknown app, an invalid change); anything else (5xx, a broken
//! connection, a timeout) is `info`, and the client goes on as a new process name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{BoxFuture, Context, Workload, WorkloadError};
use crate::cluster::marathon::MarathonScheduler;
use crate::history::Kind;
use crate::http::Http;

/// The schedulers' framework name (and store namespace).
const FRAMEWORK_NAME: &str = "chaos-marathon";
/// The app ids' group: the tasks' ids start with its safe form.
pub const GROUP: &str = "chaos";
/// What a task id of this workload starts with (`/chaos/app-3` → `chaos_app-3.instance-…`).
pub const TASK_PREFIX: &str = "chaos_app-";
/// How long one `/v2` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the schedulers are given to bring every app to its instances after the run.
pub const CONVERGE_BOUND: Duration = Duration::from_secs(90);

/// Its shape.
#[derive(Clone, Debug)]
pub struct MarathonWorkload {
    pub schedulers: usize,
    /// App ids in use (`/chaos/app-0` …).
    pub apps: usize,
    pub max_instances: u32,
    /// Mean time between SIGKILLs of the active scheduler.
    pub kill_every: Duration,
    /// How long a killed scheduler stays down.
    pub down_for: Duration,
}

impl Default for MarathonWorkload {
    fn default() -> Self {
        Self {
            schedulers: 2,
            apps: 6,
            max_instances: 3,
            kill_every: Duration::from_secs(12),
            down_for: Duration::from_secs(2),
        }
    }
}

/// An HTTP answer, or why there was none.
enum Reply {
    Status(u16, Value),
    Lost(String),
}

async fn call(
    http: &Http,
    method: reqwest::Method,
    addr: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    match http
        .request_json(method, addr, path, body.as_ref(), CALL_TIMEOUT)
        .await
    {
        Ok((status, v)) => Reply::Status(status, v),
        Err(e) => Reply::Lost(e),
    }
}

fn app_id(k: usize) -> String {
    format!("/{GROUP}/app-{k}")
}

impl Workload for MarathonWorkload {
    fn name(&self) -> &'static str {
        "marathon"
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<Result<(), WorkloadError>> {
        Box::pin(async move {
            let (Some(binary), Some(out)) = (ctx.binary.clone(), ctx.out.clone()) else {
                return Err(WorkloadError::Setup(
                    "the marathon workload runs in the chaos runner only".into(),
                ));
            };
            let masters = ctx.masters.join(",");
            let mut schedulers = Vec::new();
            for i in 0..self.schedulers.max(1) {
                let s = MarathonScheduler::start_on_free_port(
                    &binary,
                    &masters,
                    out.join(format!("marathon-scheduler-{i}.log")),
                    &["--framework-name".to_string(), FRAMEWORK_NAME.to_string()],
                )
                .map_err(|e| WorkloadError::Setup(e.to_string()))?;
                schedulers.push(s);
            }
            let addrs: Vec<String> = schedulers.iter().map(|s| s.addr.clone()).collect();
            let http = Http::plain();
            let ops = tokio::spawn(operate(
                self.clone(),
                ctx.clone(),
                addrs.clone(),
                http.clone(),
            ));
            let schedulers = kill_schedulers(&self, &ctx, schedulers, &http).await;
            let _ = ops.await;
            final_view(&ctx, &addrs, &http).await;
            for s in &schedulers {
                s.terminate();
            }
            for mut s in schedulers {
                s.stop(Duration::from_secs(5)).await;
            }
            Ok(())
        })
    }
}

/// The active scheduler (the one `/v2/leader` names), asked of each in turn.
async fn active(http: &Http, addrs: &[String]) -> Option<String> {
    for a in addrs {
        if let Reply::Status(200, v) = call(http, reqwest::Method::GET, a, "/v2/leader", None).await
        {
            if let Some(l) = v["leader"].as_str() {
                return Some(l.to_string());
            }
        }
    }
    None
}

/// SIGKILLs the active scheduler now and then until the faults stop; returns the schedulers
/// (all running again).
async fn kill_schedulers(
    shape: &MarathonWorkload,
    ctx: &Context,
    mut schedulers: Vec<MarathonScheduler>,
    http: &Http,
) -> Vec<MarathonScheduler> {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ 0x6d61_7261);
    let mut faults_stopped = ctx.faults_stopped.clone();
    let addrs: Vec<String> = schedulers.iter().map(|s| s.addr.clone()).collect();
    loop {
        let wait = shape.kill_every.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = faults_stopped.wait_for(|s| *s) => return schedulers,
        }
        let Some(leader) = active(http, &addrs).await else {
            continue;
        };
        let Some(s) = schedulers.iter_mut().find(|s| s.addr == leader) else {
            continue;
        };
        ctx.rec
            .record(
                "marathon-nemesis",
                Kind::Info,
                "kill-scheduler",
                json!({"addr": leader}),
                None,
            )
            .await;
        s.kill().await;
        tokio::time::sleep(shape.down_for).await;
        if let Err(e) = s.start() {
            tracing::warn!("restarting a scheduler: {e}");
        }
        ctx.rec
            .record(
                "marathon-nemesis",
                Kind::Info,
                "start-scheduler",
                json!({"addr": leader}),
                None,
            )
            .await;
    }
}

/// Invokes operations at the workload's rate until told to stop.
async fn operate(shape: Arc<MarathonWorkload>, ctx: Context, addrs: Vec<String>, http: Http) {
    let mut rng = StdRng::seed_from_u64(ctx.seed);
    let period = Duration::from_secs_f64((1.0 / ctx.rate.max(0.1)).min(10.0));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What this client believes of each app (true: created and not deleted, as last acked).
    let mut exists = vec![false; shape.apps.max(1)];
    let mut incarnation = 0u64;
    loop {
        tick.tick().await;
        if *ctx.stop.borrow() {
            return;
        }
        let k = rng.random_range(0..exists.len());
        let id = app_id(k);
        let addr = &addrs[rng.random_range(0..addrs.len())];
        let path = format!("/v2/apps{id}?force=true");
        let (f, method, path, body) = if !exists[k] {
            let n = rng.random_range(1..=shape.max_instances);
            let app =
                json!({"id": id, "cmd": "sleep 100000", "instances": n, "cpus": 0.01, "mem": 4});
            (
                "create",
                reqwest::Method::POST,
                "/v2/apps".to_string(),
                Some(app),
            )
        } else {
            match rng.random_range(0..10) {
                0..=4 => {
                    let n = rng.random_range(0..=shape.max_instances);
                    (
                        "scale",
                        reqwest::Method::PUT,
                        path,
                        Some(json!({"instances": n})),
                    )
                }
                5..=6 => (
                    "restart",
                    reqwest::Method::POST,
                    format!("/v2/apps{id}/restart?force=true"),
                    None,
                ),
                _ => ("delete", reqwest::Method::DELETE, path, None),
            }
        };
        let process = format!("marathon.{incarnation}");
        let value = json!({"app": id, "instances": body.as_ref().and_then(|b| b.get("instances")).cloned()});
        ctx.rec
            .record(&process, Kind::Invoke, f, value.clone(), None)
            .await;
        match call(&http, method, addr, &path, body).await {
            Reply::Status(s, _) if (200..300).contains(&s) => {
                exists[k] = f != "delete";
                ctx.rec.record(&process, Kind::Ok, f, value, None).await;
            }
            Reply::Status(s, v) if (400..500).contains(&s) => {
                if s == 409 && f == "create" {
                    exists[k] = true;
                }
                if s == 404 {
                    exists[k] = false;
                }
                let why = format!("{s} {}", v["message"].as_str().unwrap_or(""));
                ctx.rec
                    .record(&process, Kind::Fail, f, value, Some(why))
                    .await;
            }
            Reply::Status(s, v) => {
                let why = format!("{s} {}", v["message"].as_str().unwrap_or(""));
                ctx.rec
                    .record(&process, Kind::Info, f, value, Some(why))
                    .await;
                incarnation += 1;
            }
            Reply::Lost(why) => {
                ctx.rec
                    .record(&process, Kind::Info, f, value, Some(why))
                    .await;
                incarnation += 1;
            }
        }
    }
}

/// What the schedulers and the registry say of every app, once they agree or the bound
/// passes; recorded as `final`.
async fn final_view(ctx: &Context, addrs: &[String], http: &Http) {
    let started = Instant::now();
    let mut last = json!(null);
    let mut converged = false;
    while started.elapsed() < CONVERGE_BOUND {
        match observe(ctx, addrs, http).await {
            Ok((done, view)) => {
                last = view;
                if done {
                    converged = true;
                    break;
                }
            }
            Err(e) => last = json!({ "error": e }),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ctx.rec
        .record(
            "marathon",
            Kind::Info,
            "final",
            json!({"converged": converged, "waited_ms": started.elapsed().as_millis() as u64, "view": last}),
            None,
        )
        .await;
}

/// One look: the apps `/v2` shows (instances, running tasks) and the registry's live tasks of
/// this workload by app; whether every app runs exactly its instances in both.
async fn observe(ctx: &Context, addrs: &[String], http: &Http) -> Result<(bool, Value), String> {
    let leader = active(http, addrs).await.ok_or("no active scheduler")?;
    let apps = match call(
        http,
        reqwest::Method::GET,
        &leader,
        "/v2/apps?embed=apps.tasks",
        None,
    )
    .await
    {
        Reply::Status(200, v) => v,
        Reply::Status(s, v) => return Err(format!("GET /v2/apps: {s} {v}")),
        Reply::Lost(e) => return Err(e),
    };
    let mut shown: BTreeMap<String, Value> = BTreeMap::new();
    let mut done = true;
    for a in apps["apps"].as_array().into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or("").to_string();
        let want = a["instances"].as_u64().unwrap_or(0);
        let listed = a["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let tasks: Vec<&str> = listed.iter().filter_map(|t| t["id"].as_str()).collect();
        let running = listed
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count() as u64;
        let deploying = a["deployments"].as_array().is_some_and(|d| !d.is_empty());
        done &= running == want && tasks.len() as u64 == want && !deploying;
        shown.insert(
            id,
            json!({"instances": want, "tasks": tasks, "deploying": deploying}),
        );
    }
    // The registry's live tasks of this workload, by app.
    let mut registry: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut state = None;
    for m in &ctx.masters {
        if let Ok(s) = crate::http::get_json(m, "/v1/state").await {
            state = Some(s);
            break;
        }
    }
    let state = state.ok_or("no master answered /v1/state")?;
    for t in state["tasks"].as_array().into_iter().flatten() {
        let (Some(id), Some(st)) = (t["id"].as_str(), t["state"].as_str()) else {
            continue;
        };
        if !id.starts_with(TASK_PREFIX) || crate::checker::marathon::is_terminal(st) {
            continue;
        }
        let app = crate::checker::marathon::app_of_task(id);
        registry.entry(app).or_default().push(format!("{id} {st}"));
    }
    for (id, v) in &shown {
        let live = registry.get(id).map_or(0, Vec::len) as u64;
        done &= live == v["instances"].as_u64().unwrap_or(0);
    }
    done &= registry.keys().all(|app| shown.contains_key(app));
    Ok((done, json!({"apps": shown, "registry": registry})))
}
