//! The Mesos v1 HTTP APIs' decoders: scheduler calls (JSON or protobuf) with the conversions
//! the master's edge applies to SUBSCRIBE and ACCEPT, executor calls with the agent's checks
//! of an UPDATE, operator calls, and the RecordIO framing a client reads events through.

use drover_agent::executor_api::convert::{exec_key, status_from_mesos};
use drover_agent::ids::{AgentId, TaskId};
use drover_master::api::mesos::{convert, scheduler::launch_of};
use drover_master::leader::convert as grpc;
use drover_mesos::media::ContentType;
use drover_mesos::recordio::Decoder;
use drover_mesos::v1 as mesos;

use crate::select;

/// The selector's low bit picks the body's media type.
fn media(which: u8) -> ContentType {
    if which & 1 == 0 {
        ContentType::Json
    } else {
        ContentType::Protobuf
    }
}

/// `POST /api/v1/scheduler`'s body, and what the edge makes of a SUBSCRIBE or an ACCEPT.
pub fn scheduler_call(data: &[u8]) {
    let (which, body) = select(data);
    let Ok(call) = media(which).decode::<mesos::scheduler::Call>(body) else {
        return;
    };
    if let Some(sub) = &call.subscribe {
        if let Ok(info) = convert::framework_info(&sub.framework_info) {
            let _ = grpc::framework_from_proto(&info, 0);
        }
    }
    if let Some(accept) = &call.accept {
        if let Ok((launch, _refused)) = launch_of(accept) {
            // What the edge passes on, the gRPC edge's checks take.
            for (i, t) in launch.iter().enumerate() {
                grpc::task_from_proto(i, t).expect("launch_of checked it");
            }
        }
    }
    // `POST /api/v1`'s operator calls share the media decoder.
    let _ = media(which).decode::<mesos::master::Call>(body);
}

/// `POST /api/v1/executor`'s body, and the agent's checks of an UPDATE.
pub fn executor_call(data: &[u8]) {
    let (which, body) = select(data);
    let Ok(call) = media(which).decode::<mesos::executor::Call>(body) else {
        return;
    };
    let Ok(exec) = exec_key(&call) else {
        return;
    };
    if let Some(u) = &call.update {
        if let (Ok(task), Ok(agent)) = (TaskId::new(&u.status.task_id.value), AgentId::new("a1")) {
            let _ = status_from_mesos(&u.status, &exec, &task, &agent);
        }
    }
}

/// A RecordIO stream fed in pieces (the selector sets the piece size): records come out
/// whole and in order, never over the bound.
pub fn recordio(data: &[u8]) {
    const MAX_RECORD: usize = 4096;
    let (which, stream) = select(data);
    let piece = usize::from(which).max(1);
    let mut decoder = Decoder::new(MAX_RECORD);
    for chunk in stream.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => assert!(!record.is_empty() && record.len() <= MAX_RECORD),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}
