#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// CRIU as a move uses it: the dump on the source, the restore on the
/// target. A protocol so that the migration transaction (and its
/// rollback) runs in tests against a fake that fails where it is told to;
/// `CRIU` is the one implementation that runs criu.
protocol Checkpointer {
    /// criu dump with `arguments` (MigrationPlan.dumpArguments); its log
    /// is dump.log in `imageDirectory` (criu's path), read through
    /// `readFrom` (the agent's path to the same directory) on failure.
    /// Leaves the tree stopped when it succeeds (--leave-stopped).
    func dump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError)
    /// criu pre-dump with `arguments` (MigrationPlan.preDumpArguments): one
    /// pre-copy round, the tree running on; its log is pre-dump.log.
    func preDump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError)
    /// criu restore of a process without a terminal or TCP connection,
    /// with the stand-ins' process ends `fds` as its --inherit-fd 3...
    func restore(_ arguments: [String], imageDirectory: String, fds: [Int32], readFrom: String) throws(SSIError)
    /// criu restore under a keeper (a terminal's session leader, or the
    /// subreaper of a process restored stopped); returns the keeper.
    func restoreWithKeeper(_ arguments: [String], imageDirectory: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t
}

/// The real CRIU, run by the agent in the system's root.
struct CRIU: Checkpointer {
    let agent: ProcAgent

    func dump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
        try agent.runCRIU(arguments, dir: imageDirectory, log: "dump.log", readFrom: readFrom)
    }

    func preDump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
        try agent.runCRIU(arguments, dir: imageDirectory, log: "pre-dump.log", readFrom: readFrom)
    }

    func restore(_ arguments: [String], imageDirectory: String, fds: [Int32], readFrom: String) throws(SSIError) {
        // Less than the source waits for the answer (240 s): a restore the
        // target gave up on is killed here before the source resumes its
        // own copy, never finished after it (two copies running).
        try agent.runCRIU(arguments, dir: imageDirectory, log: "restore.log", fds: fds, readFrom: readFrom, timeoutSeconds: 180)
    }

    func restoreWithKeeper(_ arguments: [String], imageDirectory: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t {
        try agent.restoreWithKeeper(arguments, dir: imageDirectory, tty: tty, fds: fds, readFrom: readFrom)
    }
}

extension ProcAgent {
    /// Runs criu in the system's root and waits; on failure the error has
    /// criu's own error lines from its log.
    func runCRIU(_ args: [String], dir: String, log logName: String, fds extra: [Int32] = [], readFrom: String? = nil,
                 timeoutSeconds: Int = 600) throws(SSIError) {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        var spec = JobSpec(root: options.systemRoot, cwd: "/", argv: [Self.criu] + args + ["-o", dir + "/" + logName, "-v4"],
                           environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [null, null, null] + extra)
        // criu restore --shell-job must not lead its session or group.
        spec.keeper = 1
        loadCRIUModules()
        trace("criu " + args.joined(separator: " "))
        let pid: pid_t
        do throws(SSIError) { pid = try reaper.spawn(spec) } catch {
            throw SSIError("migrate", "cannot run criu on node \(localNode): \(error.message)",
                           hint: FileSystem.exists(options.systemRoot + Self.criu) ? nil : "install it there: apt-get install criu")
        }
        guard let exit = reaper.wait(pid, timeoutMs: timeoutSeconds * 1000) else {
            kill(pid, SIGKILL)
            throw SSIError("migrate", "criu \(args[0]) did not finish in \(timeoutSeconds) s")
        }
        if exit != .exited(0) {
            let logText = (try? FileSystem.readText((readFrom ?? dir) + "/" + logName)) ?? ""
            var errors = logText.lines().filter { $0.contains("Error") || $0.contains("error") }
                .suffix(6).map { String($0) }
            if errors.isEmpty { errors = logText.lines().suffix(3).map { String($0) } }
            throw SSIError("migrate", "criu \(args[0]) failed (\(exit)): " + (errors.isEmpty ? "no log in \(dir)/\(logName)" : errors.joined(separator: " | ")))
        }
    }

    /// criu restore for a process with a terminal: a keeper leads the
    /// session of the stand-in pty (its controlling terminal), runs criu in
    /// a group of its own with the pty as its stdio, and stays as long as
    /// the process. Returns the keeper's pid.
    /// Without a terminal (`tty` nil): a keeper that holds a process
    /// restored stopped (a subreaper, see ssi_job.subreaper).
    func restoreWithKeeper(_ args: [String], dir: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t {
        loadCRIUModules()
        var status: [Int32] = [-1, -1]
        guard ssi_pipe(&status) == 0 else { let lastErrno = errno; throw SSIError("migrate", "pipe: \(errnoDescription(lastErrno))") }
        defer { close(status[0]) }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let std = tty ?? null
        var spec = JobSpec(root: options.systemRoot, cwd: "/", argv: [Self.criu] + args + ["-o", dir + "/restore.log", "-v4"],
                           environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [std, std, std] + fds)
        spec.controllingTTY = tty == nil ? -1 : 0
        spec.subreaper = tty == nil ? 1 : 0
        spec.keeper = 2
        spec.statusFD = status[1]
        trace("criu (terminal keeper) " + args.joined(separator: " "))
        let keeper: pid_t
        do throws(SSIError) { keeper = try reaper.spawn(spec) } catch {
            close(status[1])
            throw error
        }
        close(status[1])
        var p = pollfd(fd: status[0], events: Int16(POLLIN), revents: 0)
        var code: UInt8 = 255
        // Less than the source waits for the answer (240 s), so that the
        // answer is criu's own error.
        if pollRetrying(&p, timeoutMs: 180_000) > 0, read(status[0], &code, 1) == 1, code == 0 {
            reaper.unwatch(keeper)
            return keeper
        }
        // What the keeper and its children were doing, for the message.
        let states = ProcessInspector.tree(root: keeper).map { p -> String in
            let stat = (try? FileSystem.readText("/proc/\(p)/stat")) ?? ""
            let state = stat.lastIndex(of: ")").map { String(stat[stat.index($0, offsetBy: 2)...].prefix(1)) } ?? "?"
            let wchan = (try? FileSystem.readText("/proc/\(p)/wchan")) ?? "?"
            return "\(p) \(ProcessInspector.command(p).prefix(40)) \(state) \(wchan)"
        }
        trace("terminal keeper \(keeper) gave no status: " + states.joined(separator: "; "))
        kill(keeper, SIGKILL)
        let logText = (try? FileSystem.readText(readFrom + "/restore.log")) ?? ""
        var errors = logText.lines().filter { $0.contains("Error") }.suffix(6).map { String($0) }
        if errors.isEmpty { errors = logText.lines().suffix(3).map { String($0) } }
        throw SSIError("migrate", "criu restore failed (status \(code); \(states.joined(separator: "; "))): " + (errors.isEmpty ? "no log in \(readFrom)/restore.log" : errors.joined(separator: " | ")))
    }
}
