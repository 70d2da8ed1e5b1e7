//! Building and loading a snapshot hold the registry plus bounded buffers, never the whole
//! state a second time, encoded: measured with a counting allocator around each step. (Its
//! own test binary, with one test, so that nothing else allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use drover_master::raft::snapshot::{self, SnapshotDir};
use drover_master::raft::SnapshotMeta;
use drover_master::registry::{FrameworkName, Op, Proposal, Registry, StoreKey, StoreOp};
use openraft::{CommittedLeaderId, LogId};

/// Counts the bytes allocated now and the most allocated at once since the last reset.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = NOW.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `step`; returns its result, the bytes it left allocated and the most it held at once
/// beyond what was allocated before it.
fn measured<T>(step: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = step();
    let after = NOW.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    (
        out,
        after.saturating_sub(before),
        peak.saturating_sub(before),
    )
}

const MIB: usize = 1024 * 1024;

#[test]
fn snapshots_are_written_and_loaded_one_record_at_a_time() {
    // About 24 MB of store entries across frameworks.
    let mut registry = Registry::default();
    for batch in 0..24u32 {
        let framework = FrameworkName::new(&format!("f{}", batch % 4)).unwrap();
        let ops = (0..1024u32)
            .map(|i| {
                Op::Store(StoreOp::Put {
                    framework: framework.clone(),
                    key: StoreKey::new(&format!("b{batch}-k{i}")).unwrap(),
                    value: vec![(i % 251) as u8; 1000].into(),
                })
            })
            .collect();
        registry.apply(u64::from(batch) + 1, &Proposal::new(1, ops).unwrap());
    }
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 24)),
        last_membership: Default::default(),
        snapshot_id: "1-24".to_string(),
    };
    let dir = tempfile::tempdir().unwrap();
    let snaps = SnapshotDir::open(dir.path()).unwrap();

    let (written, _, write_peak) = measured(|| snaps.write(&meta, &registry).unwrap());
    let file = written.bytes as usize;
    assert!(file > 20 * MIB, "snapshot of {file} bytes");
    // The write buffer (1 MiB) and one record: nowhere near the file's size.
    assert!(
        write_peak < 4 * MIB,
        "writing a {file}-byte snapshot held {write_peak} bytes at once"
    );

    let ((_, loaded), kept, load_peak) = measured(|| snapshot::load(&written.path).unwrap());
    assert_eq!(loaded, registry);
    // Beyond the registry it builds (what it keeps), a load holds a read buffer and one
    // record. Reading the file whole would hold about `file` bytes more.
    let transient = load_peak - kept;
    assert!(
        transient < 4 * MIB,
        "loading a {file}-byte snapshot held {transient} bytes beyond the {kept}-byte registry it built"
    );

    // Verifying a received file decodes nothing.
    let (_, _, verify_peak) = measured(|| snapshot::verify(&written.path, &meta).unwrap());
    println!(
        "snapshot {file} B: write held {write_peak} B at most; load kept {kept} B and held \
         {transient} B more at most; verify held {verify_peak} B at most"
    );
    assert!(
        verify_peak < MIB,
        "verifying held {verify_peak} bytes at once"
    );
}
