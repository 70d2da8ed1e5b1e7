//! The framework store's requests as the gRPC edge decodes and checks them, applied to the
//! store's state machine (the part of the registry each write becomes).

use drover_master::api::store::{compare_and_set_op, delete_op, get_query, list_query, put_op};
use drover_master::registry::FrameworkStore;
use drover_proto::master::{
    CompareAndSetRequest, DeleteRequest, GetRequest, ListRequest, PutRequest,
};
use prost::Message;

/// A sequence of requests, each a selector byte, a length byte and that many bytes of one
/// request's protobuf, applied in order to one store.
pub fn request(data: &[u8]) {
    let mut store = FrameworkStore::default();
    let mut rest = data;
    while let [which, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let op = match which % 5 {
            0 => PutRequest::decode(body).ok().map(put_op),
            1 => DeleteRequest::decode(body).ok().map(delete_op),
            2 => CompareAndSetRequest::decode(body)
                .ok()
                .map(compare_and_set_op),
            3 => {
                if let Ok(req) = ListRequest::decode(body) {
                    if let Ok((framework, limit)) = list_query(&req) {
                        let (keys, _) = store.list(&framework, &req.start_after, limit);
                        assert!(keys.len() <= limit);
                    }
                }
                None
            }
            _ => {
                if let Ok(Ok((framework, key))) = GetRequest::decode(body).map(|r| get_query(&r)) {
                    let _ = store.get(&framework, &key);
                }
                None
            }
        };
        if let Some(Ok(op)) = op {
            let _ = store.apply(&op);
        }
    }
}
