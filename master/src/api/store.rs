//! The framework store's gRPC service (`drover.master.v1.FrameworkStore`).
//!
//! Owns the API edge of the store: it validates every field and names the one at fault,
//! turns requests into registry commands or linearizable reads through [`Replicated`], and
//! counts every operation by type and outcome. It keeps no state of its own.

use bytes::Bytes;
use drover_proto::master::framework_store_server::FrameworkStore;
use drover_proto::master::{
    compare_and_set_request::Expected, CompareAndSetReply, CompareAndSetRequest, DeleteReply,
    DeleteRequest, GetReply, GetRequest, ListReply, ListRequest, PutReply, PutRequest,
    VersionedValue,
};
use tonic::{Request, Response, Status};

use crate::metrics as m;
use crate::registry::store::check_value;
use crate::registry::{
    Expectation, FrameworkName, Op, Outcome, StoreError, StoreKey, StoreOp, StoreOutcome, Versioned,
};
use crate::replicated::Replicated;

/// Largest request the store service decodes, bytes: a maximal value plus room for the rest.
pub const MAX_REQUEST_BYTES: usize = 2 * crate::registry::store::MAX_VALUE_BYTES + 64 * 1024;

pub struct StoreService {
    replicated: Replicated,
}

impl StoreService {
    pub fn new(replicated: Replicated) -> Self {
        Self { replicated }
    }
}

fn count(op: &'static str, outcome: &'static str) {
    metrics::counter!(m::STORE_OPERATIONS_TOTAL, "op" => op, "outcome" => outcome).increment(1);
}

fn field(name: &'static str, e: StoreError) -> Status {
    Status::invalid_argument(format!("{name}: {e}"))
}

fn framework(s: &str) -> Result<FrameworkName, Status> {
    FrameworkName::new(s).map_err(|e| field("framework", e))
}

fn key(s: &str) -> Result<StoreKey, Status> {
    StoreKey::new(s).map_err(|e| field("key", e))
}

fn value(name: &'static str, v: Vec<u8>) -> Result<Bytes, Status> {
    check_value(&v).map_err(|e| field(name, e))?;
    Ok(Bytes::from(v))
}

fn versioned(v: &Versioned) -> VersionedValue {
    VersionedValue {
        value: v.value.to_vec(),
        version: v.version,
    }
}

/// The write a PUT asks for, its fields checked.
pub fn put_op(req: PutRequest) -> Result<StoreOp, Status> {
    Ok(StoreOp::Put {
        framework: framework(&req.framework)?,
        key: key(&req.key)?,
        value: value("value", req.value)?,
    })
}

/// The write a DELETE asks for, its fields checked.
pub fn delete_op(req: DeleteRequest) -> Result<StoreOp, Status> {
    Ok(StoreOp::Delete {
        framework: framework(&req.framework)?,
        key: key(&req.key)?,
    })
}

/// The write a COMPARE_AND_SET asks for, its fields checked.
pub fn compare_and_set_op(req: CompareAndSetRequest) -> Result<StoreOp, Status> {
    let expected = match req.expected {
        None => {
            return Err(Status::invalid_argument(
                "expected: missing; set expected_value, expected_version or expected_absent",
            ))
        }
        Some(Expected::ExpectedValue(v)) => Expectation::Value(value("expected_value", v)?),
        Some(Expected::ExpectedVersion(v)) => Expectation::Version(v),
        Some(Expected::ExpectedAbsent(true)) => Expectation::Absent,
        Some(Expected::ExpectedAbsent(false)) => {
            return Err(Status::invalid_argument(
                "expected_absent: must be true when set",
            ))
        }
    };
    Ok(StoreOp::CompareAndSet {
        framework: framework(&req.framework)?,
        key: key(&req.key)?,
        expected,
        new_value: value("new_value", req.new_value)?,
    })
}

/// The namespace and the page size (100 when unset) a LIST asks for.
pub fn list_query(req: &ListRequest) -> Result<(FrameworkName, usize), Status> {
    let limit = if req.limit == 0 {
        100
    } else {
        req.limit as usize
    };
    Ok((framework(&req.framework)?, limit))
}

/// The namespace and key a GET asks for.
pub fn get_query(req: &GetRequest) -> Result<(FrameworkName, StoreKey), Status> {
    Ok((framework(&req.framework)?, key(&req.key)?))
}

/// Counts the call by its outcome and passes the result through.
fn counted<T>(op: &'static str, r: Result<T, Status>, ok: &'static str) -> Result<T, Status> {
    let outcome = match &r {
        Ok(_) => ok,
        Err(s) => match s.code() {
            tonic::Code::InvalidArgument => "invalid",
            tonic::Code::Unavailable
                if s.metadata()
                    .get(drover_proto::metadata::NOT_LEADER)
                    .is_some() =>
            {
                "not_leader"
            }
            tonic::Code::DeadlineExceeded => "timeout",
            _ => "error",
        },
    };
    count(op, outcome);
    r
}

impl StoreService {
    async fn write(&self, op: StoreOp) -> Result<StoreOutcome, Status> {
        match self.replicated.propose(Op::Store(op)).await? {
            Outcome::Store(StoreOutcome::Rejected(e)) if e.is_full() => {
                Err(Status::resource_exhausted(e.to_string()))
            }
            Outcome::Store(StoreOutcome::Rejected(e)) => {
                Err(Status::invalid_argument(e.to_string()))
            }
            Outcome::Store(o) => Ok(o),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

#[tonic::async_trait]
impl FrameworkStore for StoreService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        let r = async {
            let (f, k) = get_query(&request.into_inner())?;
            let state = self.replicated.read().await?;
            Ok(GetReply {
                entry: state.registry.store().get(&f, &k).map(versioned),
            })
        }
        .await;
        counted("get", r, "ok").map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutReply>, Status> {
        let r = async {
            let op = put_op(request.into_inner())?;
            match self.write(op).await? {
                StoreOutcome::Put { version } => Ok(PutReply { version }),
                other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
            }
        }
        .await;
        counted("put", r, "ok").map(Response::new)
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let r = async {
            let op = delete_op(request.into_inner())?;
            match self.write(op).await? {
                StoreOutcome::Delete { existed } => Ok(DeleteReply { existed }),
                other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
            }
        }
        .await;
        counted("delete", r, "ok").map(Response::new)
    }

    async fn compare_and_set(
        &self,
        request: Request<CompareAndSetRequest>,
    ) -> Result<Response<CompareAndSetReply>, Status> {
        let r = async {
            let op = compare_and_set_op(request.into_inner())?;
            match self.write(op).await? {
                StoreOutcome::CompareAndSet {
                    succeeded,
                    version,
                    current,
                } => Ok(CompareAndSetReply {
                    succeeded,
                    version,
                    current: current.as_ref().map(versioned),
                }),
                other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
            }
        }
        .await;
        let outcome = match &r {
            Ok(reply) if !reply.succeeded => "cas_failed",
            _ => "ok",
        };
        counted("cas", r, outcome).map(Response::new)
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let r = async {
            let req = request.into_inner();
            let (f, limit) = list_query(&req)?;
            let state = self.replicated.read().await?;
            let (keys, truncated) = state.registry.store().list(&f, &req.start_after, limit);
            Ok(ListReply {
                keys: keys.into_iter().map(String::from).collect(),
                truncated,
            })
        }
        .await;
        counted("list", r, "ok").map(Response::new)
    }
}
