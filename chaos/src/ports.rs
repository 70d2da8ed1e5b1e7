//! Who holds a TCP port: so that `drover up` over a cluster still running (a stale one, say)
//! names the process in the way instead of letting a master fail with "address in use".
//!
//! Reads `/proc/net/tcp{,6}` for the listening socket's inode, then `/proc/<pid>/fd` for the
//! process holding it. Best effort: a process of another user may not be visible, in which case
//! only the port is named.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

/// A process listening on a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, arguments separated by spaces.
    pub command: String,
}

/// Whether `port` on 127.0.0.1 can be bound right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

/// The process listening on `port` (any local address), if it can be seen.
pub fn holder(port: u16) -> Option<Holder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if holds_any(&entry.path(), &wanted) {
            return Some(Holder {
                pid,
                command: command_line(&entry.path()),
            });
        }
    }
    None
}

/// The inodes of sockets listening on `port` in one `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let (_, port_hex) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(port_hex, 16).ok()?;
            (p == port && *state == LISTEN && inode != 0).then_some(inode)
        })
        .collect()
}

fn holds_any(proc_dir: &Path, sockets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|t| t.to_str().map(|t| sockets.iter().any(|s| s == t)))
            .unwrap_or(false)
    })
}

fn command_line(proc_dir: &Path) -> String {
    std::fs::read(proc_dir.join("cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A sentence for a port that is taken: what holds it, and what to do.
pub fn explain_taken(port: u16) -> String {
    match holder(port) {
        Some(h) => format!(
            "port {port} is held by process {} ({}); stop it (kill {}) or choose other ports",
            h.pid, h.command, h.pid
        ),
        None => {
            format!("port {port} is in use by a process this user cannot see; choose other ports")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_listening() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!is_free(port));
        let h = holder(port).expect("a listener of this process");
        assert_eq!(h.pid, std::process::id());
        let why = explain_taken(port);
        assert!(
            why.contains(&format!("process {}", std::process::id())),
            "{why}"
        );
        drop(l);
        assert!(holder(port).is_none());
    }

    #[test]
    fn reads_listening_sockets_from_a_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:13BA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:13BA 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 5050), vec![4242]);
        assert!(listening_inodes(table, 5051).is_empty());
    }
}
