#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import CSSIShim

/// /shutdown in the exit root (ExitRoot): PID 1 for the last seconds of a
/// GFS2 node's power-off. systemd-shutdown has killed every process but
/// the cluster's daemons (argv[0] "@"), unmounted what it could, run the
/// shutdown hooks (the root remounted read-only, its journal clean) and
/// pivoted here with the old root at /oldroot.
///
/// The order is what makes the leave clean:
/// 1. unmount /oldroot: GFS2 leaves its lockspace, dlm_controld leaving
///    the lockspace's group cleanly (it must still run, and see sysfs and
///    configfs, which systemd unmounted from its root: they are mounted
///    there again first);
/// 2. stop the agents (the membership agent announces GOINGDOWN and
///    leaves its CPG group), then dlm_controld (it exits once no
///    lockspace is left), then corosync, whose leave message tells the
///    others at once;
/// 3. power off, reboot or halt, as systemd-shutdown was asked.
/// Every wait is bounded: a step that does not finish is said on the
/// console, and the node goes down anyway (the others then fence it, as
/// they would have without the exit root). PID 1 never exits.
public enum ShutdownProgram {
    public enum Verb: String, Sendable, CaseIterable {
        case poweroff, reboot, halt, kexec

        /// ssi_reboot's command. kexec is a reboot here: nothing in the
        /// exit root loads a kernel.
        var command: Int32 {
            switch self {
            case .poweroff: return 0
            case .reboot, .kexec: return 1
            case .halt: return 2
            }
        }
    }

    /// systemd-shutdown passes its own arguments on: the verb first, then
    /// options ("--log-level", "info", ...). The first word that is a verb
    /// wins; "exit" (a container's) powers off, as systemd-shutdown does
    /// on a host. Nil when there is none.
    static func parseVerb(_ arguments: [String]) -> Verb? {
        for a in arguments {
            if a == "exit" { return .poweroff }
            if let v = Verb(rawValue: a) { return v }
        }
        return nil
    }

    /// This process's arguments, from /proc/self/cmdline (systemd-shutdown
    /// has bound /proc into the exit root): Swift's CommandLine.arguments
    /// came out empty for PID 1 there, on the VM and in a PID namespace.
    public static func arguments(cmdline: String = "/proc/self/cmdline") -> [String] {
        guard let raw = try? FileSystem.readFile(cmdline), !raw.isEmpty else { return CommandLine.arguments }
        return (raw.last == 0 ? raw.dropLast() : raw[...]).split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// One of the daemons that outlived systemd's killing.
    struct Daemon: Equatable, Sendable {
        var pid: pid_t
        var argv0: String
    }

    /// The order the daemons stop in: the agents (and anything else
    /// marked "@"), then dlm_controld, then corosync. A group with no
    /// process is left out.
    static func stopOrder(_ daemons: [Daemon]) -> [(what: String, pids: [pid_t])] {
        func program(_ d: Daemon) -> String { basename(of: String(d.argv0.dropFirst())) }
        let dlm = daemons.filter { program($0) == "dlm_controld" }.map(\.pid)
        let corosync = daemons.filter { program($0) == "corosync" }.map(\.pid)
        let others = daemons.filter { !["dlm_controld", "corosync"].contains(program($0)) }.map(\.pid)
        return [("the agents", others), ("dlm_controld", dlm), ("corosync", corosync)].filter { !$0.pids.isEmpty }
    }

    /// The processes whose argv[0] starts with "@" (systemd's mark for a
    /// root storage daemon), but this one.
    static func daemons(proc: String = "/proc") -> [Daemon] {
        let me = getpid()
        return ((try? FileSystem.list(proc)) ?? []).compactMap { name -> Daemon? in
            guard let pid = pid_t(name), pid != me, pid > 0,
                  let raw = try? FileSystem.readFile(proc + "/" + name + "/cmdline") else { return nil }
            let argv0 = String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            return argv0.hasPrefix("@") ? Daemon(pid: pid, argv0: argv0) : nil
        }.sorted { $0.pid < $1.pid }
    }

    /// The lockspaces the kernel's dlm still has, and the GFS2 file
    /// systems still alive (each has a directory in sysfs).
    static func remaining(sys: String = "/sys") -> (lockspaces: [String], gfs2: [String]) {
        let lockspaces = ((try? FileSystem.list(sys + "/kernel/dlm")) ?? []).filter { FileSystem.isDirectory(sys + "/kernel/dlm/" + $0) }
        let gfs2 = ((try? FileSystem.list(sys + "/fs/gfs2")) ?? []).filter { FileSystem.isDirectory(sys + "/fs/gfs2/" + $0) }
        return (lockspaces.sorted(), gfs2.sorted())
    }

    static let unmountTimeoutMs: Int32 = 60_000
    static let leaveTimeout = 30.0
    static let stopTimeout = 5.0

    public static func run(arguments: [String]) -> Never {
        let log = Log(tag: "ssi-shutdown", useKmsg: true)
        let verb: Verb
        if let v = parseVerb(arguments) {
            verb = v
        } else {
            verb = .poweroff
            log.warning("exit", "no verb among systemd-shutdown's arguments \(printable(arguments.dropFirst().joined(separator: " "))): powering off")
        }
        log.info("exit", "in the exit root for \(verb.rawValue): unmounting the old root so that this node leaves its lockspaces")

        // 1. The daemons' file systems back. systemd unmounted the daemons'
        // root's /sys, /proc, /dev and /run on its way down (each is a mount
        // unit, and then systemd-shutdown's too), and dlm_controld cannot
        // leave a lockspace without sysfs and configfs: the unmount below
        // waited for it in vain. The old /run, which holds the daemons' root,
        // moves out of the old root first, so that detaching the old root
        // leaves the daemons' mounts alone.
        lendDaemonsTheirFileSystems(log: log)

        // 2. The old root, and every mount still under it, detached in one
        // call; the GFS2 file system goes when its last user does, in the
        // child, which waits for dlm_controld to leave the lockspace.
        let started = Process.now()
        do throws(SystemCallError) {
            try Mount.unmountBounded("/oldroot", detach: true, timeoutMs: unmountTimeoutMs)
        } catch {
            log.warning("exit", "\(error.description): the lockspace may stay, and the others fence this node")
        }
        var left = remaining()
        while !(left.lockspaces.isEmpty && left.gfs2.isEmpty) && Process.now() - started < leaveTimeout {
            Process.sleep(milliseconds: 100)
            left = remaining()
        }
        let ms = Int((Process.now() - started) * 1000)
        if left.lockspaces.isEmpty && left.gfs2.isEmpty {
            log.info("exit", "the old root is unmounted and no lockspace is left (\(ms) ms)")
        } else {
            log.warning("exit", "after \(ms) ms, still mounted: \(left.gfs2.isEmpty ? "none" : left.gfs2.joined(separator: " ")); "
                        + "lockspaces: \(left.lockspaces.isEmpty ? "none" : left.lockspaces.joined(separator: " ")): "
                        + "the others fence this node")
        }

        // 3. The daemons, in order. Said before each signal: the others
        // may power this node off as soon as they see it go.
        for group in stopOrder(daemons()) {
            log.info("exit", "stopping \(group.what) (pid \(group.pids.map(String.init).joined(separator: " ")))"
                     + (group.what == "corosync" ? ", whose leave message tells the others at once" : ""))
            for pid in group.pids { kill(pid, SIGTERM) }
            if !waitGone(group.pids, seconds: stopTimeout) {
                let alive = group.pids.filter(isAlive)
                log.warning("exit", "\(group.what) did not stop within \(Int(stopTimeout)) s: killing pid "
                            + alive.map(String.init).joined(separator: " "))
                for pid in alive { kill(pid, SIGKILL) }
                _ = waitGone(alive, seconds: 1)
            }
        }

        // 4. Down.
        sync()
        log.info("exit", "\(verb == .halt ? "halting" : verb == .poweroff ? "powering off" : "rebooting")")
        while true {
            if ssi_reboot(verb.command) != 0 {
                let e = errno
                log.error("exit", "reboot(2) failed: \(errnoDescription(e)); trying again in 10 s")
            }
            Process.sleep(milliseconds: 10_000)
        }
    }

    /// The old /run's place in the exit root, and the daemons' root in it.
    static let oldRun = "/oldrun"
    static var daemonsRoot: String { oldRun + String(AgentsRoot.path.dropFirst("/run".count)) }

    /// What the daemons' root needs mounted for dlm_controld to leave a
    /// lockspace (and the agents to say so): (type, source, place in the
    /// daemons' root), parents before children. The old /run is bound
    /// back as the daemons' /run.
    static let daemonMounts: [(type: String?, source: String, at: String)] = [
        ("proc", "proc", "proc"), ("sysfs", "sysfs", "sys"), ("configfs", "configfs", "sys/kernel/config"),
        ("devtmpfs", "devtmpfs", "dev"), (nil, oldRun, "run"),
    ]

    static func lendDaemonsTheirFileSystems(log: borrowing Log) {
        do throws(SystemCallError) {
            try Mount.move("/oldroot/run", to: oldRun)
        } catch {
            log.warning("exit", "\(error.description): the daemons keep the old root busy, and dlm_controld may not leave the lockspace")
            return
        }
        var mounted: [String] = [], failed: [String] = []
        for m in daemonMounts {
            let target = daemonsRoot + "/" + m.at
            guard FileSystem.isDirectory(target), !Mount.isMountPoint(target) else { continue }
            do throws(SystemCallError) {
                try Mount.mount(source: m.source, target: target, type: m.type, flags: m.type == nil ? [.bind] : [.noSuid], data: nil)
                mounted.append(m.at)
            } catch {
                failed.append("\(m.at) (\(error.description))")
            }
        }
        log.info("exit", "moved the old /run (the daemons' root) out of the old root; mounted for the daemons again: "
                 + (mounted.isEmpty ? "nothing" : mounted.joined(separator: " "))
                 + (failed.isEmpty ? "" : "; could not mount \(failed.joined(separator: ", "))"))
    }

    /// Reaps exited children (the daemons ssi-init started are PID 1's
    /// children, this program's now) until none of `pids` is alive.
    static func waitGone(_ pids: [pid_t], seconds: Double) -> Bool {
        let deadline = Process.now() + seconds
        while true {
            Process.reapZombies()
            if !pids.contains(where: isAlive) { return true }
            if Process.now() > deadline { return false }
            Process.sleep(milliseconds: 50)
        }
    }

    /// Alive and not a zombie (a zombie someone else must reap counts as gone).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard let status = try? FileSystem.readText("/proc/\(pid)/status") else { return false }
        return !status.contains("\nState:\tZ")
    }
}
