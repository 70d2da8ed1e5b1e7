//! Raft's decoders: what a peer sends (append entries, votes, snapshot metadata, the replies),
//! what the log store reads back (entries, votes, log ids), and snapshot files.

use drover_master::raft::codec::decode;
use drover_master::raft::{snapshot, Entry, LogId, MasterId, SnapshotMeta, TypeConfig, Vote};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use crate::select;

/// A Raft RPC's payload as a peer sends it (the selector byte picks the message).
pub fn rpc(data: &[u8]) {
    let (which, payload) = select(data);
    match which % 6 {
        0 => drop(decode::<AppendEntriesRequest<TypeConfig>>(
            "append entries",
            payload,
        )),
        1 => drop(decode::<VoteRequest<MasterId>>("vote", payload)),
        2 => drop(decode::<(Vote, SnapshotMeta)>("snapshot meta", payload)),
        3 => drop(decode::<
            Result<AppendEntriesResponse<MasterId>, RaftError<MasterId>>,
        >("raft reply", payload)),
        4 => drop(
            decode::<Result<VoteResponse<MasterId>, RaftError<MasterId>>>("raft reply", payload),
        ),
        _ => drop(
            decode::<Result<SnapshotResponse<MasterId>, Fatal<MasterId>>>(
                "snapshot reply",
                payload,
            ),
        ),
    }
}

/// What the log store reads back from RocksDB: a log entry (whose proposal is decoded in
/// turn), a vote, a log id.
pub fn log(data: &[u8]) {
    let (which, payload) = select(data);
    match which % 3 {
        0 => {
            if let Ok(entry) = decode::<Entry>("log entry", payload) {
                // What decodes encodes again, to the same entry.
                let bytes = drover_master::raft::codec::encode("log entry", &entry)
                    .expect("a decoded entry encodes");
                let again: Entry = decode("log entry", &bytes).expect("and decodes again");
                assert_eq!(again.log_id, entry.log_id);
            }
        }
        1 => drop(decode::<Vote>("raft meta", payload)),
        _ => drop(decode::<Option<LogId>>("raft meta", payload)),
    }
}

/// A snapshot file, as a peer streams it or a replica finds it on disk. The input is the
/// file's content before its checksum, which is computed here, so that mutations reach the
/// records instead of dying at the checksum.
pub fn snapshot_file(data: &[u8]) {
    // One file per thread: the corpus replay runs targets on several test threads.
    let path = std::env::temp_dir().join(format!(
        "drover-fuzz-snapshot-{}-{:?}.snap",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = data.to_vec();
    file.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    std::fs::write(&path, &file).expect("write the snapshot under test");
    if let Ok(meta) = snapshot::read_meta(&path) {
        let _ = snapshot::verify(&path, &meta);
    }
    let _ = snapshot::load(&path);
    let _ = std::fs::remove_file(&path);
}
