//! Test harness shared by the crate's tests: an in-process fake `AgentRegistry` (the master's
//! side of the agent API) on 127.0.0.1:0 whose answers a test scripts, and [`wait_for`], the
//! one way tests wait (a condition, polled, with a deadline; never a bare sleep).
//!
//! Test support only: nothing in the agent uses it. [`wait_for`] panics when its deadline
//! passes, as a test assertion does.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_client::{MasterClient, RetryPolicy};
use drover_proto::v1::agent_registry_server::{AgentRegistry, AgentRegistryServer};
use drover_proto::v1::{
    ExecutorExitedReply, ExecutorExitedRequest, ExecutorMessageReply, ExecutorMessageRequest,
    HeartbeatReply, HeartbeatRequest, RegisterReply, RegisterRequest, StatusUpdateOutcome,
    StatusUpdateReply, StatusUpdateRequest, TaskStatus,
};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the fake master saw and how it answers.
#[derive(Default)]
pub struct FakeState {
    /// Every update of every UpdateStatus call, in arrival order.
    pub calls: Vec<(String, TaskStatus)>,
    /// The number of updates in each UpdateStatus call, in arrival order.
    pub batches: Vec<usize>,
    /// Updates applied (first time a uuid was seen), in order.
    pub applied: Vec<TaskStatus>,
    /// Answer this many UpdateStatus calls with UNAVAILABLE first.
    pub unavailable_remaining: usize,
    /// Tasks whose updates are refused with FAILED_PRECONDITION.
    pub refuse_tasks: HashSet<String>,
    /// Tasks whose updates make the whole call fail with INVALID_ARGUMENT.
    pub refuse_calls_with_task: HashSet<String>,
    /// UpdateStatus calls in progress, per task, and whether two ever overlapped.
    pub in_flight: HashMap<String, usize>,
    pub overlap: bool,
    /// Registrations: the agent info received, in order.
    pub registrations: Vec<RegisterRequest>,
    pub heartbeats: usize,
    /// Agents the fake knows (a heartbeat from another gets `reregister`).
    pub known_agents: HashSet<String>,
    pub next_agent: u64,
    /// The id a new agent gets (default: `agent-N`).
    pub assign_id: Option<String>,
    pub heartbeat_interval_seconds: f64,
    /// Agents whose registration is refused as removed (GONE).
    pub gone_agents: HashSet<String>,
    /// Custom executors' messages: (executor id, data), in arrival order.
    pub executor_messages: Vec<(String, Vec<u8>)>,
    /// Custom executors' ends: (executor id, raw wait status), in arrival order.
    pub executor_exits: Vec<(String, Option<i32>)>,
}

#[derive(Clone, Default)]
pub struct FakeMaster {
    state: Arc<Mutex<FakeState>>,
    /// How long each UpdateStatus takes.
    update_delay: Duration,
    /// While false, UpdateStatus calls wait (after being recorded) before they are answered.
    gate: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

impl FakeMaster {
    /// A fake whose UpdateStatus answers take `delay`.
    pub fn with_update_delay(delay: Duration) -> Self {
        Self {
            update_delay: delay,
            ..Default::default()
        }
    }

    /// A fake whose UpdateStatus calls are recorded and then held until
    /// [`FakeMaster::open_gate`].
    pub fn gated() -> Self {
        Self {
            gate: Some(Arc::new(tokio::sync::watch::channel(false).0)),
            ..Default::default()
        }
    }

    /// Lets held and later UpdateStatus calls through.
    pub fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.send_replace(true);
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applied updates of `task`, as (state, uuid).
    pub fn applied_for(&self, task: &str) -> Vec<(i32, String)> {
        self.state()
            .applied
            .iter()
            .filter(|s| s.task_id == task)
            .map(|s| (s.state, s.uuid.clone()))
            .collect()
    }

    /// Serves the fake on 127.0.0.1:0; returns its address. The server lives as long as the
    /// test's runtime.
    pub async fn try_serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let svc = AgentRegistryServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        Ok(addr)
    }

    /// [`FakeMaster::try_serve`], panicking (a test failure) when it cannot bind.
    pub async fn serve(&self) -> String {
        match self.try_serve().await {
            Ok(a) => a,
            Err(e) => panic!("fake master cannot listen on 127.0.0.1:0: {e}"),
        }
    }

    /// A client for the fake with short retry deadlines.
    pub fn client(addr: &str) -> MasterClient {
        match MasterClient::with_policy(
            &[addr.to_string()],
            RetryPolicy {
                deadline: Duration::from_secs(2),
                backoff_start: Duration::from_millis(10),
                backoff_max: Duration::from_millis(50),
            },
        ) {
            Ok(c) => c,
            Err(e) => panic!("client for {addr}: {e}"),
        }
    }
}

#[tonic::async_trait]
impl AgentRegistry for FakeMaster {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        let req = request.into_inner();
        let mut s = self.state();
        let mut id = req.agent.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        if s.gone_agents.contains(&id) {
            s.registrations.push(req);
            let mut status = Status::failed_precondition(format!("agent {id} was removed"));
            status.metadata_mut().insert(
                drover_proto::metadata::AGENT_GONE,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            return Err(status);
        }
        if id.is_empty() {
            s.next_agent += 1;
            id = s
                .assign_id
                .clone()
                .unwrap_or_else(|| format!("agent-{}", s.next_agent));
        }
        s.known_agents.insert(id.clone());
        s.registrations.push(req);
        Ok(Response::new(RegisterReply {
            agent_id: id,
            master_id: 1,
            heartbeat_interval_seconds: s.heartbeat_interval_seconds,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let req = request.into_inner();
        let mut s = self.state();
        s.heartbeats += 1;
        Ok(Response::new(HeartbeatReply {
            reregister: !s.known_agents.contains(&req.agent_id),
        }))
    }

    async fn update_status(
        &self,
        request: Request<StatusUpdateRequest>,
    ) -> Result<Response<StatusUpdateReply>, Status> {
        let req = request.into_inner();
        let mut items = Vec::new();
        for u in req.updates {
            let status = u
                .status
                .ok_or_else(|| Status::invalid_argument("status: missing"))?;
            items.push((u.framework_id, status));
        }
        {
            let mut s = self.state();
            s.batches.push(items.len());
            for (framework, status) in &items {
                s.calls.push((framework.clone(), status.clone()));
                let n = s.in_flight.entry(status.task_id.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    s.overlap = true;
                }
            }
        }
        tokio::time::sleep(self.update_delay).await;
        if let Some(g) = &self.gate {
            // An error means the fake is gone; answering then does not matter.
            let _ = g.subscribe().wait_for(|open| *open).await;
        }
        let mut s = self.state();
        for (_, status) in &items {
            if let Some(n) = s.in_flight.get_mut(&status.task_id) {
                *n -= 1;
            }
        }
        if s.unavailable_remaining > 0 {
            s.unavailable_remaining -= 1;
            return Err(Status::unavailable("fake master: try again"));
        }
        if let Some((_, bad)) = items
            .iter()
            .find(|(_, st)| s.refuse_calls_with_task.contains(&st.task_id))
        {
            return Err(Status::invalid_argument(format!(
                "updates[?].status: fake master: malformed update of {}",
                bad.task_id
            )));
        }
        let mut outcomes = Vec::new();
        for (_, status) in items {
            let (code, message) = if s.refuse_tasks.contains(&status.task_id) {
                (
                    tonic::Code::FailedPrecondition,
                    "fake master: illegal transition".to_string(),
                )
            } else {
                if !s.applied.iter().any(|a| a.uuid == status.uuid) {
                    s.applied.push(status.clone());
                }
                (tonic::Code::Ok, String::new())
            };
            outcomes.push(StatusUpdateOutcome {
                uuid: status.uuid,
                code: code as i32,
                message,
            });
        }
        Ok(Response::new(StatusUpdateReply { outcomes }))
    }

    async fn executor_message(
        &self,
        request: Request<ExecutorMessageRequest>,
    ) -> Result<Response<ExecutorMessageReply>, Status> {
        let r = request.into_inner();
        self.state().executor_messages.push((r.executor_id, r.data));
        Ok(Response::new(ExecutorMessageReply {}))
    }

    async fn executor_exited(
        &self,
        request: Request<ExecutorExitedRequest>,
    ) -> Result<Response<ExecutorExitedReply>, Status> {
        let r = request.into_inner();
        self.state().executor_exits.push((r.executor_id, r.status));
        Ok(Response::new(ExecutorExitedReply {}))
    }
}

/// A test's stand-in for a custom executor: raw HTTP/1.1 to the agent's executor API, as
/// pymesos speaks it (JSON, `Connection: close`), reading the SUBSCRIBE stream's chunks and
/// RecordIO records.
pub struct ExecutorClient {
    pub addr: String,
}

/// An answer: the status code and the body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// One SUBSCRIBE's stream of events (JSON values).
pub struct EventStream {
    stream: tokio::net::TcpStream,
    /// Bytes read and not yet taken apart.
    buf: Vec<u8>,
    records: drover_mesos::recordio::Decoder,
    pub status: u16,
    ended: bool,
}

async fn read_head(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, String)> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((status, head));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl ExecutorClient {
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_string(),
        }
    }

    /// Sends `body` with `method` and `content_type` (none when `None`); the whole answer.
    pub async fn request(
        &self,
        method: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<HttpAnswer> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.addr).await?;
        let ct = content_type
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} /api/v1/executor HTTP/1.1\r\nHost: {}\r\n{ct}Accept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut buf = Vec::new();
        let (status, headers) = read_head(&mut s, &mut buf).await?;
        s.read_to_end(&mut buf).await?;
        Ok(HttpAnswer {
            status,
            headers,
            body: String::from_utf8_lossy(&buf).into_owned(),
        })
    }

    /// POSTs a JSON call.
    pub async fn call(&self, call: &serde_json::Value) -> HttpAnswer {
        match self
            .request(
                "POST",
                Some("application/json"),
                call.to_string().as_bytes(),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => panic!("executor API call to {}: {e}", self.addr),
        }
    }

    /// SUBSCRIBEs; the stream (its status is the answer's).
    pub async fn subscribe(&self, call: &serde_json::Value) -> EventStream {
        use tokio::io::AsyncWriteExt;
        let body = call.to_string();
        let connect = async {
            let mut s = tokio::net::TcpStream::connect(&self.addr).await?;
            let head = format!(
                "POST /api/v1/executor HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                self.addr,
                body.len()
            );
            s.write_all(head.as_bytes()).await?;
            let mut buf = Vec::new();
            let (status, _) = read_head(&mut s, &mut buf).await?;
            Ok::<_, std::io::Error>((s, buf, status))
        };
        match connect.await {
            Ok((stream, buf, status)) => EventStream {
                stream,
                buf,
                records: drover_mesos::recordio::Decoder::new(4 * 1024 * 1024),
                status,
                ended: false,
            },
            Err(e) => panic!("SUBSCRIBE to {}: {e}", self.addr),
        }
    }
}

impl EventStream {
    /// Takes complete chunks out of `buf` into the record decoder; false once the last chunk
    /// was read.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return true;
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&self.buf[..line_end]).trim(), 16)
                    .unwrap_or(0);
            if size == 0 {
                self.ended = true;
                return false;
            }
            if self.buf.len() < line_end + 2 + size + 2 {
                return true;
            }
            let data: Vec<u8> = self.buf[line_end + 2..line_end + 2 + size].to_vec();
            self.buf.drain(..line_end + 2 + size + 2);
            self.records.push(&data);
        }
    }

    /// The next event, `None` once the stream ended; panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(r)) = self.records.next_record() {
                return Some(serde_json::from_slice(&r).expect("an event is JSON"));
            }
            if self.ended {
                return None;
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("no event within {timeout:?}"),
            };
            if n == 0 {
                self.ended = true;
                continue;
            }
            self.buf.extend_from_slice(&chunk[..n]);
            self.dechunk();
        }
    }

    /// The next event other than HEARTBEAT if one comes within `within`: `Err(())` when none
    /// did, `Ok(None)` when the stream ended.
    pub async fn next_event_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<serde_json::Value>, ()> {
        match tokio::time::timeout(within, self.next_event(within + Duration::from_secs(1))).await {
            Ok(e) => Ok(e),
            Err(_) => Err(()),
        }
    }

    /// The next event other than HEARTBEAT.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        loop {
            let e = self.next(timeout).await?;
            if e["type"] != "HEARTBEAT" {
                return Some(e);
            }
        }
    }
}

/// The image container tests run.
pub const TEST_IMAGE: &str = "drover-test/busybox:1";

/// Makes sure the local Docker engine has [`TEST_IMAGE`], building it once per machine (no
/// registry is needed): a root file system of Debian's static busybox with a link per applet
/// and an `/etc/passwd`, given to `docker import`. `Err(reason)` when the engine does not
/// answer or busybox-static is missing (`scripts/setup.sh` installs it): the test then says
/// why and skips.
pub async fn docker_test_image() -> Result<&'static str, String> {
    let socket = std::path::Path::new(crate::docker::DEFAULT_SOCKET);
    let docker = crate::docker::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return Ok(TEST_IMAGE);
    }
    tokio::task::spawn_blocking(build_test_image)
        .await
        .map_err(|e| e.to_string())??;
    Ok(TEST_IMAGE)
}

/// Whether a 64-bit little-endian ELF file names a program interpreter (`PT_INTERP`): it is
/// linked dynamically. The bytes alone do not tell: a static glibc binary carries the string
/// `ld-linux-x86-64.so.2` too.
fn elf_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    (0..usize::from(count)).any(|i| {
        usize::try_from(phoff)
            .ok()
            .and_then(|off| u32_at(off + i * usize::from(entsize)))
            == Some(PT_INTERP)
    })
}

fn build_test_image() -> Result<(), String> {
    use std::process::{Command, Stdio};
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.exists())
        .ok_or("busybox is not installed (apt-get install busybox-static)")?;
    let bytes = std::fs::read(busybox).map_err(|e| e.to_string())?;
    if elf_interpreter(&bytes) {
        return Err(format!(
            "{} is linked dynamically: install busybox-static",
            busybox.display()
        ));
    }
    let root = TempRoot(std::env::temp_dir().join(format!(
        "drover-test-image-{}-{}",
        std::process::id(),
        drover_model::unix_ms()
    )));
    let bin = root.path().join("bin");
    for d in [&bin, &root.path().join("tmp"), &root.path().join("etc")] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(bin.join("busybox"), &bytes).map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        bin.join("busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .map_err(|e| e.to_string())?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tar: {e}"))?;
    let tar_out = tar.stdout.take().ok_or("tar: no output")?;
    let import = Command::new("docker")
        .args(["import", "-c", "ENV PATH=/bin", "-", TEST_IMAGE])
        .stdin(tar_out)
        .output()
        .map_err(|e| format!("docker import: {e}"))?;
    let tar_status = tar.wait().map_err(|e| e.to_string())?;
    if !tar_status.success() || !import.status.success() {
        return Err(format!(
            "building {TEST_IMAGE} failed: {}",
            String::from_utf8_lossy(&import.stderr)
        ));
    }
    Ok(())
}

/// A directory removed when dropped.
struct TempRoot(std::path::PathBuf);

impl TempRoot {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_program_names_its_interpreter() {
        let ls = std::fs::read("/bin/ls").expect("/bin/ls");
        assert!(elf_interpreter(&ls), "/bin/ls is linked dynamically here");
        assert!(!elf_interpreter(b"#!/bin/sh\n"));
        assert!(!elf_interpreter(b"\x7fELF"), "a truncated header");
    }
}
