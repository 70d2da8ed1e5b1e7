//! The users' client of the Marathon-compatible scheduler: `drover app …`, `drover task …`,
//! `drover deployment …` and `drover watch`, over `/v2` (`--scheduler URL`, default
//! `http://127.0.0.1:8080`, or `DROVER_SCHEDULER`). Tables for people, `--json` for scripts;
//! an error prints the API's message and each detail's path and errors.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `--wait` looks at the deployment.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Longest wait before `watch` reconnects.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
pub struct SchedulerArg {
    /// The scheduler's URL (any of them: a standby redirects).
    #[arg(
        long,
        global = true,
        env = "DROVER_SCHEDULER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub scheduler: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// An operator's (client) certificate, for a scheduler serving HTTPS with mutual TLS
    /// (with --tls-key and --tls-ca; the URL then starts with `https://`).
    #[arg(long, global = true, env = "DROVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, global = true, env = "DROVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM).
    #[arg(long, global = true, env = "DROVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl SchedulerArg {
    /// The operator's certificate, if the three TLS flags are given.
    fn tls(&self) -> Result<Option<drover_tls::LiveTls>, AppsError> {
        let tls_error = |e: &dyn std::fmt::Display| AppsError::Usage(format!("TLS: {e}"));
        let files = drover_tls::live::files_from_flags(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_ca.clone(),
        )
        .map_err(|e| tls_error(&e))?;
        files
            .map(|f| drover_tls::LiveTls::fixed(f, drover_tls::Role::Client))
            .transpose()
            .map_err(|e| tls_error(&e))
    }
}

#[derive(Subcommand, Debug)]
pub enum AppOp {
    /// Create an app from a Marathon app definition (a file, or - for stdin).
    Add {
        file: PathBuf,
        /// Follow the deployment until it finishes.
        #[arg(long)]
        wait: bool,
    },
    /// List the apps.
    List,
    /// Show one app and its tasks.
    Show { id: String },
    /// Change how many instances run.
    Scale {
        id: String,
        instances: u32,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Replace every task (rolling, as the app's upgrade strategy says).
    Restart {
        id: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Change an app: the file's fields replace the app's.
    Update {
        id: String,
        file: PathBuf,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Delete an app and kill its tasks.
    Rm {
        id: String,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskOp {
    /// List tasks (of one app with --app).
    List {
        #[arg(long)]
        app: Option<String>,
    },
    /// Kill a task; it is relaunched unless --scale.
    Kill {
        id: String,
        #[arg(long)]
        scale: bool,
    },
    /// Print a task's stdout (or stderr), read from its sandbox on its agent.
    Logs {
        id: String,
        /// Keep printing what the task writes, until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
        /// Its stderr instead of its stdout.
        #[arg(long)]
        stderr: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeploymentOp {
    /// List the deployments under way.
    List,
    /// Roll a deployment back (a new deployment to the app as it was before).
    Rollback { id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the scheduler at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Api(String),
}

/// A `/v2` client.
pub(super) struct Api {
    base: String,
    http: reqwest::Client,
    /// The operator's certificate, for the masters and agents `task logs` reads from.
    pub(super) tls: Option<drover_tls::LiveTls>,
}

impl Api {
    /// The scheduler's client: HTTPS with the operator's certificate (checking that the
    /// scheduler's is a framework's) when the TLS flags are given.
    fn new(s: &SchedulerArg) -> Result<Api, AppsError> {
        let tls = s.tls()?;
        let http = match &tls {
            None => drover_chaos::http::Http::plain(),
            Some(_) if !s.scheduler.starts_with("https://") => {
                return Err(AppsError::Usage(format!(
                    "--scheduler {}: with a TLS certificate the scheduler's URL is https://",
                    s.scheduler
                )))
            }
            Some(t) => drover_chaos::http::Http::tls(&t.client(&[drover_tls::Role::Framework]))
                .map_err(|e| AppsError::Usage(format!("TLS: {e}")))?,
        };
        Ok(Api {
            base: s.scheduler.trim_end_matches('/').to_string(),
            http: http.client().clone(),
            tls,
        })
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AppsError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| AppsError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        Err(AppsError::Api(api_error(status.as_u16(), &json, &text)))
    }
}

/// The API's error as a person reads it: the message, then each field at fault.
fn api_error(status: u16, json: &Value, text: &str) -> String {
    let mut out = format!(
        "{status}: {}",
        json["message"].as_str().unwrap_or(text.trim())
    );
    for d in json["details"].as_array().into_iter().flatten() {
        let errors: Vec<&str> = d["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "\n  {}: {}",
            d["path"].as_str().unwrap_or("/"),
            errors.join("; ")
        ));
    }
    out
}

fn read_definition(file: &PathBuf) -> Result<Value, AppsError> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| AppsError::Usage(format!("{}: {e}", file.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| AppsError::Usage(format!("{}: not JSON: {e}", file.display())))
}

/// An id as the API's paths take it.
fn app_path(id: &str) -> String {
    format!("/v2/apps/{}", id.trim_start_matches('/'))
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Follows deployment `id` of `app` until it is gone, printing progress.
async fn wait_for(api: &Api, app: &str, deployment: &str) -> Result<(), AppsError> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = String::new();
    loop {
        let deployments = api
            .call(reqwest::Method::GET, "/v2/deployments", None)
            .await?;
        let running = deployments
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["id"] == deployment);
        let shown = match api.call(reqwest::Method::GET, &app_path(app), None).await {
            Ok(a) => {
                let a = &a["app"];
                let want = a["instances"].as_u64().unwrap_or(0);
                let run = a["tasksRunning"].as_u64().unwrap_or(0);
                let bar_len = 30usize;
                let filled = if want == 0 {
                    bar_len
                } else {
                    (run.min(want) as usize * bar_len) / want as usize
                };
                format!(
                    "[{}{}] {run}/{want} running, {} staged, {} healthy",
                    "#".repeat(filled),
                    ".".repeat(bar_len - filled),
                    a["tasksStaged"],
                    a["tasksHealthy"]
                )
            }
            Err(_) => "app removed".to_string(),
        };
        if tty {
            print!("\r{shown}   ");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if shown != last {
            println!("{shown}");
        }
        last = shown;
        if !running {
            if tty {
                println!();
            }
            println!("deployment {deployment} done");
            return Ok(());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Prints a change's answer (`{"deploymentId", "version"}`) and follows it if asked.
async fn changed(
    api: &Api,
    s: &SchedulerArg,
    app: &str,
    answer: Value,
    wait: bool,
) -> Result<(), AppsError> {
    if s.json {
        print_json(&answer);
    } else {
        println!(
            "deployment {} (version {})",
            answer["deploymentId"].as_str().unwrap_or("?"),
            answer["version"].as_str().unwrap_or("?")
        );
    }
    match answer["deploymentId"].as_str() {
        Some(d) if wait => wait_for(api, app, d).await,
        _ => Ok(()),
    }
}

pub async fn app(s: &SchedulerArg, op: AppOp) -> Result<(), AppsError> {
    let api = Api::new(s)?;
    use reqwest::Method;
    match op {
        AppOp::Add { file, wait } => {
            let def = read_definition(&file)?;
            let app = api.call(Method::POST, "/v2/apps", Some(&def)).await?;
            let id = app["id"].as_str().unwrap_or("?").to_string();
            if s.json {
                print_json(&app);
            } else {
                println!("created {id}");
            }
            let deployment = app["deployments"][0]["id"].as_str().map(str::to_string);
            if let (true, Some(d)) = (wait, deployment) {
                wait_for(&api, &id, &d).await?;
            }
            Ok(())
        }
        AppOp::List => list_apps(&api, s).await,
        AppOp::Show { id } => show_app(&api, s, &id).await,
        AppOp::Scale {
            id,
            instances,
            force,
            wait,
        } => {
            let path = format!("{}?force={force}", app_path(&id));
            let r = api
                .call(Method::PUT, &path, Some(&json!({ "instances": instances })))
                .await?;
            changed(&api, s, &id, r, wait).await
        }
        AppOp::Restart { id, force, wait } => {
            let path = format!("{}/restart?force={force}", app_path(&id));
            let r = api.call(Method::POST, &path, None).await?;
            changed(&api, s, &id, r, wait).await
        }
        AppOp::Update {
            id,
            file,
            force,
            wait,
        } => {
            let def = read_definition(&file)?;
            let path = format!("{}?force={force}", app_path(&id));
            let r = api.call(Method::PUT, &path, Some(&def)).await?;
            changed(&api, s, &id, r, wait).await
        }
        AppOp::Rm { id, wait } => {
            let r = api.call(Method::DELETE, &app_path(&id), None).await?;
            changed(&api, s, &id, r, wait).await
        }
    }
}

/// `drover app list`: a table of the apps (or their JSON).
async fn list_apps(api: &Api, s: &SchedulerArg) -> Result<(), AppsError> {
    use reqwest::Method;
    let apps = api.call(Method::GET, "/v2/apps", None).await?;
    if s.json {
        print_json(&apps);
        return Ok(());
    }
    println!(
        "{:<32} {:>9} {:>7} {:>6} {:>7} {:>7}  DEPLOYING  CMD",
        "ID", "INSTANCES", "RUNNING", "STAGED", "HEALTHY", "CPUS"
    );
    for a in apps["apps"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:>9} {:>7} {:>6} {:>7} {:>7}  {:<9}  {}",
            a["id"].as_str().unwrap_or("?"),
            a["instances"],
            a["tasksRunning"],
            a["tasksStaged"],
            a["tasksHealthy"],
            a["cpus"],
            if a["deployments"].as_array().is_some_and(|d| !d.is_empty()) {
                "yes"
            } else {
                "no"
            },
            a["cmd"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `drover app show ID`: one app and its tasks.
async fn show_app(api: &Api, s: &SchedulerArg, id: &str) -> Result<(), AppsError> {
    use reqwest::Method;
    let app = api.call(Method::GET, &app_path(id), None).await?;
    if s.json {
        print_json(&app);
        return Ok(());
    }
    let a = &app["app"];
    println!("id        {}", a["id"].as_str().unwrap_or("?"));
    println!("cmd       {}", a["cmd"].as_str().unwrap_or(""));
    println!(
        "instances {} (running {}, staged {}, healthy {})",
        a["instances"], a["tasksRunning"], a["tasksStaged"], a["tasksHealthy"]
    );
    println!(
        "resources cpus {} mem {} disk {}",
        a["cpus"], a["mem"], a["disk"]
    );
    println!("version   {}", a["version"].as_str().unwrap_or("?"));
    print_tasks(a["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    Ok(())
}

fn print_tasks(tasks: &[Value]) {
    println!(
        "{:<64} {:<14} {:<20} {:<12} STARTED",
        "TASK", "STATE", "HOST", "PORTS"
    );
    for t in tasks {
        let ports: Vec<String> = t["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        println!(
            "{:<64} {:<14} {:<20} {:<12} {}",
            t["id"].as_str().unwrap_or("?"),
            t["state"].as_str().unwrap_or("?"),
            t["host"].as_str().unwrap_or(""),
            ports.join(","),
            t["startedAt"].as_str().unwrap_or("-")
        );
    }
}

pub async fn task(s: &SchedulerArg, op: TaskOp) -> Result<(), AppsError> {
    let api = Api::new(s)?;
    use reqwest::Method;
    match op {
        TaskOp::List { app } => {
            let path = match &app {
                Some(a) => format!("{}/tasks", app_path(a)),
                None => "/v2/tasks".to_string(),
            };
            let tasks = api.call(Method::GET, &path, None).await?;
            if s.json {
                print_json(&tasks);
            } else {
                print_tasks(tasks["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
            Ok(())
        }
        TaskOp::Kill { id, scale } => {
            let r = api
                .call(
                    Method::POST,
                    &format!("/v2/tasks/delete?scale={scale}"),
                    Some(&json!({ "ids": [id] })),
                )
                .await?;
            if s.json {
                print_json(&r);
            } else if let Some(d) = r["deploymentId"].as_str() {
                println!("killed {id}; deployment {d}");
            } else {
                println!("killed {id}");
            }
            Ok(())
        }
        TaskOp::Logs { id, follow, stderr } => super::logs::logs(&api, &id, follow, stderr).await,
    }
}

pub async fn deployment(s: &SchedulerArg, op: DeploymentOp) -> Result<(), AppsError> {
    let api = Api::new(s)?;
    use reqwest::Method;
    match op {
        DeploymentOp::List => {
            let d = api.call(Method::GET, "/v2/deployments", None).await?;
            if s.json {
                print_json(&d);
                return Ok(());
            }
            println!(
                "{:<38} {:<24} {:<22} {:>4}  VERSION",
                "ID", "APPS", "ACTION", "STEP"
            );
            for d in d.as_array().into_iter().flatten() {
                let apps: Vec<&str> = d["affectedApps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<38} {:<24} {:<22} {:>2}/{}  {}",
                    d["id"].as_str().unwrap_or("?"),
                    apps.join(","),
                    d["currentActions"][0]["action"].as_str().unwrap_or("?"),
                    d["currentStep"],
                    d["totalSteps"],
                    d["version"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        DeploymentOp::Rollback { id } => {
            let r = api
                .call(Method::DELETE, &format!("/v2/deployments/{id}"), None)
                .await?;
            if s.json {
                print_json(&r);
            } else {
                println!(
                    "rolling back with deployment {}",
                    r["deploymentId"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
    }
}

/// Follows the event stream, one line per event, reconnecting (with backoff) when it breaks.
pub async fn watch(s: &SchedulerArg) -> Result<(), AppsError> {
    let Api { base, http, .. } = Api::new(s)?;
    let url = format!("{base}/v2/events");
    let mut backoff = Duration::from_millis(200);
    loop {
        match http
            .get(&url)
            .header("Accept", "text/event-stream")
            .send()
            .await
        {
            Ok(mut resp) if resp.status().is_success() => {
                backoff = Duration::from_millis(200);
                let mut pending = String::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    pending.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(at) = pending.find('\n') {
                        let line: String = pending.drain(..=at).collect();
                        if let Some(data) = line.trim_end().strip_prefix("data: ") {
                            print_event(data, s.json);
                        }
                    }
                }
                eprintln!("event stream ended; reconnecting");
            }
            Ok(resp) => eprintln!("event stream: {}; reconnecting", resp.status()),
            Err(e) => eprintln!("event stream: {e}; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

fn print_event(data: &str, json: bool) {
    if json {
        println!("{data}");
        return;
    }
    let Ok(e) = serde_json::from_str::<Value>(data) else {
        println!("{data}");
        return;
    };
    let kind = e["eventType"].as_str().unwrap_or("?");
    let at = e["timestamp"].as_str().unwrap_or("");
    let what = match kind {
        "status_update_event" => format!(
            "{} {} {}",
            e["appId"].as_str().unwrap_or(""),
            e["taskId"].as_str().unwrap_or(""),
            e["taskStatus"].as_str().unwrap_or("")
        ),
        "deployment_info" | "deployment_step_success" => format!(
            "{} {}",
            e["plan"]["id"].as_str().unwrap_or(""),
            e["currentStep"]["actions"][0]["action"]
                .as_str()
                .unwrap_or("")
        ),
        "deployment_success" | "deployment_failed" => e["id"].as_str().unwrap_or("").to_string(),
        _ => e["appId"]
            .as_str()
            .or(e["instanceId"].as_str())
            .unwrap_or("")
            .to_string(),
    };
    println!("{at} {kind:<28} {what}");
}
