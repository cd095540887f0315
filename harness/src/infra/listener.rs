//! Which process listens on a TCP port, read from /proc: the socket's inode
//! in `/proc/net/tcp` and `tcp6`, and the process holding it among
//! `/proc/*/fd`. A target started on a port the harness chose may find the
//! port taken between the choice and its bind; its readiness probe would
//! then be answered by the other process, and the run would measure an
//! application it did not start. Nothing here needs privileges beyond
//! reading the processes of the same user (others' are skipped).

use std::path::Path;

/// The inodes of the sockets listening on `port` (any address).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st … uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port)
                && *state == "0A"
                && let Ok(inode) = inode.parse::<u64>()
                && inode != 0
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Every process's id, from /proc.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// The process holding a socket that listens on `port`, when /proc tells
/// (`None`: nothing listens, or its holder cannot be read).
pub fn listening_pid(port: u16) -> Option<u32> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| Path::new(w) == link)
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The parent of `pid`, from /proc/PID/stat (the field after the
/// parenthesised command, which may itself hold spaces).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `ancestor` or descends from it.
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        match parent(current) {
            Some(next) if next != 0 && next != current => current = next,
            _ => return false,
        }
    }
    false
}

/// Whether `owner`, listening on a port `target` was to bind, is another
/// application that took it first: not the target nor one of its
/// descendants, and started before it. (A process started after the target
/// and outside it, such as Docker's `docker-proxy` for a target that runs
/// a container, is the target's doing.)
pub fn taken_by_another(owner: u32, target: u32) -> bool {
    let started = |pid| super::ownership::start_ticks(pid);
    !descends_from(owner, target)
        && matches!((started(owner), started(target)), (Some(o), Some(t)) if o < t)
}

/// A process's command name, for messages.
pub fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_process_is_found_and_its_ancestry_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        assert_eq!(listening_pid(port), Some(me));
        assert!(descends_from(me, me));
        let parent = parent(me).unwrap();
        assert!(descends_from(me, parent));
        assert!(!descends_from(parent, me));
        // The parent started first and is not ours: it would have taken a
        // port this process was to bind.
        assert!(taken_by_another(parent, me));
        assert!(!taken_by_another(me, me));
        drop(listener);
        assert_eq!(listening_pid(port), None);
    }

    #[test]
    fn a_child_listening_descends_from_its_parent_and_not_from_another() {
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let owner = listening_pid(port);
        let ancestry = (
            descends_from(child.id(), std::process::id()),
            descends_from(std::process::id(), child.id()),
            // The target's own child holds the port: not taken by another.
            taken_by_another(child.id(), std::process::id()),
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(owner, Some(child.id()));
        assert_eq!(ancestry, (true, false, false));
    }
}
