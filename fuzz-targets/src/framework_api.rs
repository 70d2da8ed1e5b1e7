//! The gRPC edges' checks of what frameworks and agents send: an ACCEPT (its offers and the
//! tasks to launch), a framework's SUBSCRIBE, an agent's registration and its status updates.
//! Each message is decoded from protobuf as tonic would, then converted as the edge does.

use drover_master::leader::convert;
use drover_proto::v1;
use prost::Message;

use crate::select;

pub fn message(data: &[u8]) {
    let (which, body) = select(data);
    match which % 4 {
        0 => {
            if let Ok(a) = v1::AcceptRequest::decode(body) {
                if let Ok((_, tasks)) = convert::accept_from_proto(&a.offer_ids, &a.launch) {
                    assert_eq!(tasks.len(), a.launch.len());
                    for t in &tasks {
                        // What the registry keeps of a task gives it back.
                        let _ = convert::task_to_proto(t);
                    }
                }
            }
        }
        1 => {
            if let Ok(s) = v1::SubscribeRequest::decode(body) {
                if let Some(info) = &s.framework {
                    let _ = convert::framework_from_proto(info, 0);
                }
            }
        }
        2 => {
            if let Ok(r) = v1::RegisterRequest::decode(body) {
                let _ = convert::registration_from_proto(&r, 0);
            }
        }
        _ => {
            if let Ok(r) = v1::StatusUpdateRequest::decode(body) {
                for u in &r.updates {
                    if let Some(s) = &u.status {
                        let _ = convert::status_from_proto(s);
                    }
                }
            }
        }
    }
}
