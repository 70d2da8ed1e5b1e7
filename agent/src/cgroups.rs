//! Cpu and memory limits for tasks through Linux control groups, when the host allows them.
//!
//! The agent calls [`detect`] once at start and logs the [`CgroupMode`] it found: cgroup v2
//! (one hierarchy with the `cpu` and `memory` controllers: tasks go under
//! `/sys/fs/cgroup/drover/<name>` with `cpu.max` and `memory.max`, the controllers enabled in
//! `cgroup.subtree_control` on the way down), cgroup v1 (separate `cpu` and `memory`
//! hierarchies: `cpu.cfs_quota_us`/`cpu.shares` and `memory.limit_in_bytes` under `drover/`
//! in each), or none, with the reason (no cgroup filesystem, read-only, no permission,
//! controllers unavailable). None is never fatal: tasks then run without limits.
//!
//! The mode is written into each task's `task.json`; the executor makes the task's cgroup
//! ([`TaskCgroup::create`]) and the command joins it between fork and exec
//! ([`join_in_child`]), so that every process of the task, from its first instruction, is
//! inside. The executor itself stays out: a task hitting its memory limit must not take down
//! the process that reports its end. After the command ends the executor kills whatever is
//! left in the cgroup and removes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_resources::Resources;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Name of the directory, in each hierarchy, that holds the tasks' cgroups.
pub const PARENT_NAME: &str = "drover";
/// CFS period, microseconds: a task with `cpus:1.5` gets 150 000 µs of cpu time per period.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts, microseconds.
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Longest cgroup directory name, bytes (NAME_MAX).
const MAX_NAME_BYTES: usize = 255;
/// How long removing a cgroup waits for its last processes to be gone.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How tasks' cpu and memory are limited on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum CgroupMode {
    /// Limits cannot be enforced; `reason` says why.
    None { reason: String },
    /// Unified hierarchy; `parent` is e.g. `/sys/fs/cgroup/drover`.
    V2 { parent: PathBuf },
    /// Legacy hierarchies; each path is the `drover` directory in that hierarchy.
    V1 { cpu: PathBuf, memory: PathBuf },
}

impl CgroupMode {
    pub fn none(reason: impl Into<String>) -> Self {
        CgroupMode::None {
            reason: reason.into(),
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        match self {
            CgroupMode::None { reason } => {
                format!("cpu and memory limits are NOT enforced: {reason}")
            }
            CgroupMode::V2 { parent } => format!(
                "cgroup v2: tasks limited with cpu.max and memory.max under {}",
                parent.display()
            ),
            CgroupMode::V1 { cpu, memory } => format!(
                "cgroup v1: tasks limited with cpu.cfs_quota_us under {} and memory.limit_in_bytes under {}",
                cpu.display(),
                memory.display()
            ),
        }
    }
}

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/mounts`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _source = f.next()?;
            let point = PathBuf::from(unescape(f.next()?));
            let fstype = f.next()?.to_string();
            let options = f.next()?.split(',').map(str::to_string).collect();
            Some(Mount {
                point,
                fstype,
                options,
            })
        })
        .collect()
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

fn read_words(file: &Path) -> Result<Vec<String>, String> {
    fs::read_to_string(file)
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn write_file(file: &Path, value: &str) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", file.display()))
}

/// Enables `cpu` and `memory` for the children of `dir` (v2).
fn enable_controllers(dir: &Path) -> Result<(), String> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = read_words(&control)?;
    let missing: Vec<String> = ["cpu", "memory"]
        .iter()
        .filter(|c| !enabled.iter().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&control, &missing.join(" "))
}

fn probe_v2(mount: &Path) -> Result<CgroupMode, String> {
    let controllers = read_words(&mount.join("cgroup.controllers"))?;
    for c in ["cpu", "memory"] {
        if !controllers.iter().any(|x| x == c) {
            return Err(format!(
                "the cgroup2 hierarchy at {} has no {c} controller (available: {})",
                mount.display(),
                if controllers.is_empty() {
                    "none".to_string()
                } else {
                    controllers.join(" ")
                }
            ));
        }
    }
    let parent = mount.join(PARENT_NAME);
    mkdir(&parent)?;
    enable_controllers(mount)?;
    enable_controllers(&parent)?;
    Ok(CgroupMode::V2 { parent })
}

fn probe_v1(cpu: &Path, memory: &Path) -> Result<CgroupMode, String> {
    let cpu_parent = cpu.join(PARENT_NAME);
    let memory_parent = memory.join(PARENT_NAME);
    mkdir(&cpu_parent)?;
    mkdir(&memory_parent)?;
    for f in [
        cpu_parent.join("cpu.cfs_quota_us"),
        memory_parent.join("memory.limit_in_bytes"),
    ] {
        if !f.exists() {
            return Err(format!("{} is missing", f.display()));
        }
    }
    Ok(CgroupMode::V1 {
        cpu: cpu_parent,
        memory: memory_parent,
    })
}

/// Finds how this host can limit tasks (see the module docs). Never fails: a host that
/// cannot gives [`CgroupMode::None`] with every reason found.
pub fn detect() -> CgroupMode {
    match fs::read_to_string("/proc/mounts") {
        Ok(text) => detect_from(&parse_mounts(&text)),
        Err(e) => CgroupMode::none(format!("cannot read /proc/mounts: {e}")),
    }
}

fn detect_from(mounts: &[Mount]) -> CgroupMode {
    let mut reasons = Vec::new();
    // v2 first, the unified mount at /sys/fs/cgroup before any other.
    let mut v2: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    v2.sort_by_key(|m| m.point != Path::new("/sys/fs/cgroup"));
    for m in v2 {
        match probe_v2(&m.point) {
            Ok(mode) => return mode,
            Err(e) => reasons.push(e),
        }
    }
    let v1 = |controller: &str| {
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))
    };
    match (v1("cpu"), v1("memory")) {
        (Some(cpu), Some(memory)) => {
            if cpu.options.iter().any(|o| o == "ro") || memory.options.iter().any(|o| o == "ro") {
                reasons.push("the cgroup v1 hierarchies are mounted read-only".into());
            } else {
                match probe_v1(&cpu.point, &memory.point) {
                    Ok(mode) => return mode,
                    Err(e) => reasons.push(e),
                }
            }
        }
        (None, None) if reasons.is_empty() => {
            reasons.push("no cgroup filesystem is mounted".into())
        }
        (cpu, memory) => {
            if cpu.is_none() {
                reasons.push("no cgroup v1 hierarchy has the cpu controller".into());
            }
            if memory.is_none() {
                reasons.push("no cgroup v1 hierarchy has the memory controller".into());
            }
        }
    }
    CgroupMode::none(reasons.join("; "))
}

#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {reason}")]
pub struct CgroupError {
    pub path: PathBuf,
    pub reason: String,
}

/// The name of a task's cgroup: `<framework>_<task>`, shortened with a checksum when it would
/// exceed NAME_MAX.
pub fn cgroup_name(framework: &str, task: &str) -> String {
    let name = format!("{framework}_{task}");
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let crc = crc32fast::hash(name.as_bytes());
    // Ids are ASCII, so any byte index is a char boundary.
    format!("{}-{crc:08x}", &name[..MAX_NAME_BYTES - 9])
}

/// What the cgroup `name` is under a mode, with the limits of some resources.
struct Limits {
    /// Its directories (one in v2, cpu and memory in v1).
    dirs: Vec<PathBuf>,
    /// (directory, file, value) to write.
    files: Vec<(PathBuf, &'static str, String)>,
    v2: bool,
    /// The directory whose memory controller limits it, when it has a memory limit.
    memory: Option<PathBuf>,
    mem_bytes: u64,
}

/// The cgroup `name` under `mode` with the limits of `resources`; `None` for
/// [`CgroupMode::None`].
fn limits_of(mode: &CgroupMode, name: &str, resources: &Resources) -> Option<Limits> {
    let cpus_milli = resources.cpus().milli();
    let mem_bytes = resources.mem_mib().milli().saturating_mul(1024 * 1024) / 1000;
    let quota_us = (cpus_milli * CPU_PERIOD_US / 1000).max(MIN_CPU_QUOTA_US);
    let mut limits: Vec<(PathBuf, &'static str, String)> = Vec::new();
    let (dirs, v2, memory) = match mode {
        CgroupMode::None { .. } => return None,
        CgroupMode::V2 { parent } => {
            let dir = parent.join(name);
            if cpus_milli > 0 {
                limits.push((
                    dir.clone(),
                    "cpu.max",
                    format!("{quota_us} {CPU_PERIOD_US}"),
                ));
            }
            if mem_bytes > 0 {
                limits.push((dir.clone(), "memory.max", mem_bytes.to_string()));
            }
            let memory = (mem_bytes > 0).then(|| dir.clone());
            (vec![dir], true, memory)
        }
        CgroupMode::V1 { cpu, memory } => {
            let (cpu_dir, mem_dir) = (cpu.join(name), memory.join(name));
            if cpus_milli > 0 {
                limits.push((
                    cpu_dir.clone(),
                    "cpu.cfs_period_us",
                    CPU_PERIOD_US.to_string(),
                ));
                limits.push((cpu_dir.clone(), "cpu.cfs_quota_us", quota_us.to_string()));
                limits.push((
                    cpu_dir.clone(),
                    "cpu.shares",
                    (cpus_milli * 1024 / 1000).max(2).to_string(),
                ));
            }
            if mem_bytes > 0 {
                limits.push((
                    mem_dir.clone(),
                    "memory.limit_in_bytes",
                    mem_bytes.to_string(),
                ));
            }
            let memory = (mem_bytes > 0).then(|| mem_dir.clone());
            (vec![cpu_dir, mem_dir], false, memory)
        }
    };
    Some(Limits {
        dirs,
        files: limits,
        v2,
        memory,
        mem_bytes,
    })
}

/// Raises the limits of the existing cgroup `name` to those of `resources` (a custom
/// executor's run takes more tasks); never lowers them. Blocking.
pub fn raise_limits(
    mode: &CgroupMode,
    name: &str,
    resources: &Resources,
) -> Result<(), CgroupError> {
    let Some(limits) = limits_of(mode, name, resources) else {
        return Ok(());
    };
    for (dir, file, value) in &limits.files {
        let path = dir.join(file);
        let current = fs::read_to_string(&path).unwrap_or_default();
        if !is_raise(current.trim(), value) {
            continue;
        }
        write_file(&path, value).map_err(|reason| CgroupError {
            path: dir.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Whether writing `new` to a limit file that holds `current` raises the limit (`max` is no
/// limit; `cpu.max` is "quota period"; other files hold one number).
fn is_raise(current: &str, new: &str) -> bool {
    let first = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
    let (cur, new) = (first(current), first(new));
    if cur == "max" {
        return false;
    }
    match (cur.parse::<u64>(), new.parse::<u64>()) {
        (Ok(c), Ok(n)) => n > c,
        _ => true,
    }
}

/// One task's cgroup(s): the directories, and each one's `cgroup.procs` opened for the child to
/// join.
pub struct TaskCgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<File>,
    v2: bool,
    /// The directory whose memory controller limits the task, when it has a memory limit.
    memory: Option<PathBuf>,
    /// The memory limit, bytes (0: none).
    memory_limit_bytes: u64,
}

/// The kernel's OOM killer acted inside a task's cgroup: the task went over its memory limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimitHit {
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
    pub limit_bytes: u64,
}

impl TaskCgroup {
    /// Creates the task's cgroup with the limits of `resources` (no cpus: no cpu limit; no mem:
    /// no memory limit). `Ok(None)` when the mode is [`CgroupMode::None`].
    pub fn create(
        mode: &CgroupMode,
        name: &str,
        resources: &Resources,
    ) -> Result<Option<TaskCgroup>, CgroupError> {
        let Some(Limits {
            dirs,
            files: limits,
            v2,
            memory,
            mem_bytes,
        }) = limits_of(mode, name, resources)
        else {
            return Ok(None);
        };
        let fail = |path: &Path, reason: String| CgroupError {
            path: path.to_path_buf(),
            reason,
        };
        let mut cg = TaskCgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
            v2,
            memory,
            memory_limit_bytes: mem_bytes,
        };
        for d in &dirs {
            mkdir(d).map_err(|r| fail(d, r))?;
            cg.dirs.push(d.clone());
        }
        for (dir, file, value) in &limits {
            write_file(&dir.join(file), value).map_err(|r| fail(dir, r))?;
        }
        for d in &dirs {
            let p = d.join("cgroup.procs");
            let f = OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| fail(&p, e.to_string()))?;
            cg.procs.push(f);
        }
        Ok(Some(cg))
    }

    /// The descriptors [`join_in_child`] writes to; valid while `self` lives.
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether the OOM killer acted in the task's cgroup (read before [`TaskCgroup::remove`]).
    /// v2 counts in `memory.events`, v1 in `memory.oom_control` (kernels from 4.13); the key
    /// is `oom_kill` in both.
    pub fn memory_limit_hit(&self) -> Option<MemoryLimitHit> {
        let dir = self.memory.as_ref()?;
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = fs::read_to_string(dir.join(file)).ok()?;
        let oom_kills = oom_kill_count(&text)?;
        (oom_kills > 0).then_some(MemoryLimitHit {
            oom_kills,
            limit_bytes: self.memory_limit_bytes,
        })
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILLs every process left in the cgroup, until none is left or a deadline passes.
    pub fn kill_all(&self) {
        if self.v2 {
            if let Some(d) = self.dirs.first() {
                let _ = write_file(&d.join("cgroup.kill"), "1");
            }
        }
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup directories (waiting a little for the kernel to let them go).
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.procs.clear();
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        for d in &self.dirs {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(CgroupError {
                            path: d.clone(),
                            reason: format!("cannot remove: {e}"),
                        })
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        Ok(())
    }
}

/// The `oom_kill N` line of `memory.events` (v2) or `memory.oom_control` (v1).
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Moves the calling process into the cgroups whose `cgroup.procs` are open as `fds` (writing
/// "0" means "me"). Only async-signal-safe calls: meant for `pre_exec`, between fork and exec.
pub fn join_in_child(fds: &[RawFd]) -> io::Result<()> {
    for &fd in fds {
        // SAFETY: the descriptors were opened by the parent and stay open until exec (they are
        // close-on-exec); the child inherited them.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::unistd::write(fd, b"0").map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn limits_are_only_raised() {
        assert!(is_raise("100000 100000", "200000 100000"));
        assert!(!is_raise("200000 100000", "100000 100000"));
        assert!(!is_raise("max", "1048576"), "no limit stays no limit");
        assert!(is_raise("1048576", "2097152"));
        assert!(!is_raise("2097152", "2097152"));
        assert!(is_raise("", "2097152"), "an unreadable file is written");
    }

    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn reads_the_oom_kill_count_of_both_versions() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count(v1), Some(2));
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn parses_proc_mounts() {
        let m = parse_mounts(HYBRID);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(m[1].fstype, "cgroup");
        assert!(m[1].options.contains(&"cpu".to_string()));
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
    }

    #[test]
    fn nothing_mounted_is_not_fatal() {
        let mode = detect_from(&parse_mounts("proc /proc proc rw 0 0\n"));
        assert_eq!(mode, CgroupMode::none("no cgroup filesystem is mounted"));
    }

    #[test]
    fn read_only_v1_is_reported() {
        let text = "cgroup /x/cpu cgroup ro,cpu 0 0\ncgroup /x/memory cgroup ro,memory 0 0\n";
        match detect_from(&parse_mounts(text)) {
            CgroupMode::None { reason } => assert!(reason.contains("read-only"), "{reason}"),
            other => panic!("expected none, got {other:?}"),
        }
    }

    #[test]
    fn unusable_hierarchies_give_reasons() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A "cgroup2" mount without the controllers file, and no v1 memory hierarchy.
        let text = format!(
            "cgroup2 {} cgroup2 rw 0 0\ncgroup {}/cpu cgroup rw,cpu 0 0\n",
            dir.path().display(),
            dir.path().display()
        );
        match detect_from(&parse_mounts(&text)) {
            CgroupMode::None { reason } => {
                assert!(reason.contains("cgroup.controllers"), "{reason}");
                assert!(reason.contains("memory controller"), "{reason}");
            }
            other => panic!("expected none, got {other:?}"),
        }
    }

    #[test]
    fn long_names_are_shortened_uniquely() {
        let a = cgroup_name(&"f".repeat(256), &"t".repeat(256));
        let b = cgroup_name(&"f".repeat(256), &format!("{}u", "t".repeat(255)));
        assert!(a.len() <= MAX_NAME_BYTES && b.len() <= MAX_NAME_BYTES);
        assert_ne!(a, b);
        assert_eq!(cgroup_name("fw", "t1"), "fw_t1");
    }

    #[test]
    fn none_mode_creates_nothing() {
        let r: Resources = "cpus:1;mem:64".parse().expect("resources");
        assert!(TaskCgroup::create(&CgroupMode::none("test"), "x", &r)
            .expect("create")
            .is_none());
    }
}
