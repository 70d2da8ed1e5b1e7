//! A Mesos HTTP API client for the tests, on a raw TCP connection so that the wire itself is
//! checked: the status line, the headers, each HTTP chunk as sent, and the RecordIO records
//! inside them. Calls other than SUBSCRIBE go through reqwest without following redirects.

use std::time::Duration;

use drover_mesos::recordio::Decoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest record the tests' decoder takes.
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// An HTTP/1.1 response read off a socket: status, headers, and the body chunk by chunk.
pub struct RawResponse {
    sock: TcpStream,
    buf: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    ended: bool,
}

impl RawResponse {
    /// POSTs `body` to `http://addr{path}` with `headers` and reads the status and headers.
    pub async fn post(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<RawResponse> {
        let mut sock = TcpStream::connect(addr).await?;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await?;
        sock.write_all(body).await?;
        let mut r = RawResponse {
            sock,
            buf: Vec::new(),
            status: 0,
            headers: Vec::new(),
            ended: false,
        };
        let head_end = loop {
            if let Some(i) = find(&r.buf, b"\r\n\r\n") {
                break i;
            }
            if !r.fill(Duration::from_secs(30)).await? {
                return Err(std::io::Error::other(
                    "connection closed before the headers",
                ));
            }
        };
        let head = String::from_utf8_lossy(&r.buf[..head_end]).into_owned();
        r.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        r.status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                r.headers
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok(r)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// Reads more bytes; false at the end of the connection.
    async fn fill(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout(timeout, self.sock.read(&mut tmp)).await {
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no bytes in time",
            )),
        }
    }

    /// The next HTTP chunk's data, as sent; None at the last chunk or the connection's end.
    pub async fn next_chunk(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let size_line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| {
                            std::io::Error::other(format!("bad chunk size {size_line:?}"))
                        })?;
                if self.buf.len() >= i + 2 + size + 2 {
                    let data = self.buf[i + 2..i + 2 + size].to_vec();
                    self.buf.drain(..i + 2 + size + 2);
                    if size == 0 {
                        self.ended = true;
                        return Ok(None);
                    }
                    return Ok(Some(data));
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.fill(left).await? {
                self.ended = true;
                return Ok(None);
            }
        }
    }

    /// The whole body of a response with a Content-Length (an error answer).
    pub async fn body(&mut self) -> String {
        let len: usize = self
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < len {
            if !self.fill(Duration::from_secs(10)).await.unwrap_or(false) {
                break;
            }
        }
        String::from_utf8_lossy(&self.buf[..len.min(self.buf.len())]).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A subscription's event stream: records out of chunks.
pub struct Events {
    pub raw: RawResponse,
    decoder: Decoder,
    pub stream_id: String,
    pub framework_id: String,
}

impl Events {
    /// SUBSCRIBEs with the JSON `call` at `addr`; panics unless answered 200 with SUBSCRIBED.
    pub async fn subscribe(addr: &str, call: &serde_json::Value) -> Events {
        let body = serde_json::to_vec(call).unwrap();
        let raw = RawResponse::post(
            addr,
            "/api/v1/scheduler",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            &body,
        )
        .await
        .expect("SUBSCRIBE");
        assert_eq!(raw.status, 200, "SUBSCRIBE answered {:?}", raw.headers);
        let stream_id = raw
            .header("mesos-stream-id")
            .expect("Mesos-Stream-Id")
            .to_string();
        let mut e = Events {
            raw,
            decoder: Decoder::new(MAX_RECORD),
            stream_id,
            framework_id: String::new(),
        };
        let first = e.next(Duration::from_secs(10)).await.expect("SUBSCRIBED");
        assert_eq!(first["type"], "SUBSCRIBED", "{first}");
        e.framework_id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        e
    }

    /// The events of a SUBSCRIBE answer already read up to its SUBSCRIBED.
    pub fn from_raw(raw: RawResponse, stream_id: &str, framework_id: &str) -> Events {
        Events {
            raw,
            decoder: Decoder::new(MAX_RECORD),
            stream_id: stream_id.to_string(),
            framework_id: framework_id.to_string(),
        }
    }

    /// The next record's bytes.
    pub async fn next_record(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.decoder.next_record().expect("RecordIO") {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.raw.next_chunk(left).await {
                Ok(Some(c)) => self.decoder.push(&c),
                _ => return None,
            }
        }
    }

    /// The next event, as JSON.
    pub async fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let r = self.next_record(timeout).await?;
        assert!(
            r.is_ascii(),
            "a record is not ASCII: {}",
            String::from_utf8_lossy(&r)
        );
        Some(serde_json::from_slice(&r).expect("event JSON"))
    }

    /// The first event `pick` accepts (others are skipped), within `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) if pick(&e) => return e,
                Some(_) => {}
                None => panic!("no {what} before the stream ended or {timeout:?} passed"),
            }
        }
    }

    /// The next UPDATE of `task` in `state`.
    pub async fn wait_update(&mut self, task: &str, state: &str) -> serde_json::Value {
        self.wait_updates(&[(task, state)]).await.remove(0)
    }

    /// Waits until every (task, state) of `wanted` was seen in an UPDATE, in any order;
    /// returns those statuses in the order of `wanted`.
    pub async fn wait_updates(&mut self, wanted: &[(&str, &str)]) -> Vec<serde_json::Value> {
        let mut found: Vec<Option<serde_json::Value>> = vec![None; wanted.len()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(e) = self.next(left).await else {
                panic!("not all of {wanted:?} came before the stream ended or 60 s passed");
            };
            if e["type"] != "UPDATE" {
                continue;
            }
            let s = &e["update"]["status"];
            for (i, (t, st)) in wanted.iter().enumerate() {
                if found[i].is_none() && s["task_id"]["value"] == *t && s["state"] == *st {
                    found[i] = Some(s.clone());
                }
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Sends a call on this subscription (framework id and stream id filled in).
    pub async fn call(&self, addr: &str, mut call: serde_json::Value) -> (u16, String) {
        call["framework_id"] = serde_json::json!({ "value": self.framework_id });
        post_call(
            addr,
            Some(&self.stream_id),
            &serde_json::to_vec(&call).unwrap(),
            "application/json",
        )
        .await
    }
}

/// POSTs a call body to `/api/v1/scheduler` at `addr`, without following redirects.
pub async fn post_call(
    addr: &str,
    stream_id: Option<&str>,
    body: &[u8],
    content_type: &str,
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut req = client
        .post(format!("http://{addr}/api/v1/scheduler"))
        .header("Content-Type", content_type)
        .body(body.to_vec());
    if let Some(s) = stream_id {
        req = req.header("Mesos-Stream-Id", s);
    }
    let resp = req.send().await.expect("call");
    let code = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap_or_default();
    match location {
        Some(l) => (code, l),
        None => (code, text),
    }
}

/// A SUBSCRIBE call's JSON for a new framework named `name`.
pub fn subscribe_call(name: &str, partition_aware: bool) -> serde_json::Value {
    let mut info = serde_json::json!({"user": "test", "name": name, "failover_timeout": 60});
    if partition_aware {
        info["capabilities"] = serde_json::json!([{"type": "PARTITION_AWARE"}]);
    }
    serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}})
}

/// A command TaskInfo's JSON.
pub fn task(id: &str, agent_id: &serde_json::Value, command: &str) -> serde_json::Value {
    serde_json::json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": agent_id,
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}
        ],
        "command": {"value": command}
    })
}

/// An ACCEPT call launching `tasks` on `offer`.
pub fn accept(offer: &serde_json::Value, tasks: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
            "filters": {"refuse_seconds": 1}
        }
    })
}
