#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// A move's freeze without a stop anyone can see (DESIGN-NOTES "A deputy
/// at home", the freeze). criu's --leave-stopped ends a dump with
/// SIGSTOP, which the process's parent sees: a job-control shell says
/// "Stopped" and takes its terminal back from a foreground job that was
/// only being moved. Instead the tree goes into a cgroup of its own,
/// frozen with cgroup v2's freezer (no signal, no wait status), and criu
/// dumps it with --freeze-cgroup --leave-running, which leaves it frozen
/// (criu freezes again a cgroup it found frozen before it detaches).
/// A failed move thaws it where it was; a committed one keeps the
/// original frozen until it becomes its deputy (the injection thaws it
/// under ptrace).
struct TreeFreezer {
    /// The cgroup as the agent reaches it, and as criu (in the system's
    /// root) does.
    let path: String
    let criuPath: String
    /// Each task's own cgroup before the move, as the agent reaches it.
    let homes: [pid_t: String]

    /// The cgroup2 mount in the system's root, or nil (no cgroup v2
    /// there, or no freezer: the kernel is older than 5.2).
    static func hierarchy(systemRoot: String) -> String? {
        let mount = systemRoot + "/sys/fs/cgroup"
        guard FileSystem.exists(mount + "/cgroup.controllers"), FileSystem.exists(mount + "/cgroup.subtree_control") else { return nil }
        return mount
    }

    /// A task's cgroup (the `0::` line of /proc/PID/cgroup), relative to
    /// the hierarchy's root.
    static func cgroup(of pid: pid_t) -> String? {
        guard let text = try? FileSystem.readText("/proc/\(pid)/cgroup") else { return nil }
        for line in text.lines() where line.hasPrefix("0::") { return String(line.dropFirst(3)) }
        return nil
    }

    /// Moves `tasks` (and any child they make meanwhile, listed again by
    /// `tree`) into a new cgroup `name` and freezes it. Throws, with
    /// everything put back, when it cannot: the caller then stops the
    /// tree as before.
    static func freeze(name: String, systemRoot: String, tree: () -> [pid_t], timeoutMs: Int = 10_000) throws(SSIError) -> TreeFreezer {
        guard let mount = hierarchy(systemRoot: systemRoot) else {
            throw SSIError("migrate", "no cgroup v2 hierarchy at \(systemRoot)/sys/fs/cgroup")
        }
        return try freeze(name: name, mount: mount, criuMount: "/sys/fs/cgroup", tree: tree, timeoutMs: timeoutMs)
    }

    /// As above, in the cgroup2 hierarchy at `mount` (the agent's path;
    /// criu's is `criuMount`).
    static func freeze(name: String, mount: String, criuMount: String, tree: () -> [pid_t], timeoutMs: Int = 10_000) throws(SSIError) -> TreeFreezer {
        let path = mount + "/" + name
        guard mkdir(path, 0o755) == 0 else {
            let e = errno
            throw SSIError("migrate", "cannot make the freezer cgroup \(path): \(errnoDescription(e))")
        }
        var homes: [pid_t: String] = [:]
        var made = TreeFreezer(path: path, criuPath: criuMount + "/" + name, homes: [:])
        do throws(SSIError) {
            // Frozen first (an empty cgroup freezes at once), so that a task
            // moved in stops where it is; listed again until every task of
            // the tree is in (a child forked before its parent moved stays
            // in the old cgroup).
            try write(path + "/cgroup.freeze", "1")
            for _ in 0..<5 {
                let tasks = tree()
                let outside = tasks.filter { homes[$0] == nil }
                if outside.isEmpty { break }
                for t in outside {
                    guard let home = cgroup(of: t) else { continue }   // gone
                    let here = mount + (home == "/" ? "" : home)
                    if here == path {
                        // Forked inside, after its parent moved in: it goes
                        // back where the tree's root came from.
                        homes[t] = tasks.first.flatMap { homes[$0] } ?? mount
                        made = TreeFreezer(path: path, criuPath: made.criuPath, homes: homes)
                        continue
                    }
                    homes[t] = here
                    made = TreeFreezer(path: path, criuPath: made.criuPath, homes: homes)
                    do throws(SSIError) { try write(path + "/cgroup.procs", String(t)) } catch {
                        if FileSystem.exists("/proc/\(t)") { throw error }
                    }
                }
            }
            let deadline = Process.now() + Double(timeoutMs) / 1000
            while !made.isFrozen {
                if Process.now() > deadline { throw SSIError("migrate", "the freezer cgroup \(path) did not freeze in \(timeoutMs / 1000) s") }
                usleep(5_000)
            }
        } catch {
            made.thaw()
            throw error
        }
        return made
    }

    var isFrozen: Bool {
        guard let events = try? FileSystem.readText(path + "/cgroup.events") else { return false }
        return events.lines().contains("frozen 1")
    }

    /// The failed move's undo: every task back in its own cgroup, which
    /// lets it run on (no SIGCONT: it never saw a stop), and the cgroup
    /// removed.
    func thaw() {
        try? Self.write(path + "/cgroup.freeze", "0")
        for (t, home) in homes.sorted(by: { $0.key < $1.key }) {
            try? Self.write(home + "/cgroup.procs", String(t))
        }
        remove()
    }

    /// After a commit: the deputy (thawed by its injection) back in its
    /// own cgroup, and the cgroup removed once the retired tasks left it.
    func release(deputy: pid_t?) {
        if let deputy, let home = homes[deputy] { try? Self.write(home + "/cgroup.procs", String(deputy)) }
        // Killed while frozen, the rest leave it as they exit.
        try? Self.write(path + "/cgroup.freeze", "0")
        remove()
    }

    /// rmdir, retried while exiting tasks still populate it (up to 5 s).
    private func remove() {
        for _ in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { return }
            usleep(50_000)
        }
    }

    /// An open cgroup.freeze for the deputy's injection (it thaws through
    /// it), or -1.
    func openFreezeFile() -> Int32 { open(path + "/cgroup.freeze", O_WRONLY | O_CLOEXEC) }

    private static func write(_ file: String, _ text: String) throws(SSIError) {
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { let e = errno; throw SSIError("migrate", "\(file): \(errnoDescription(e))") }
        defer { close(fd) }
        let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard n == text.utf8.count else { let e = errno; throw SSIError("migrate", "writing \(text) to \(file): \(errnoDescription(e))") }
    }
}
