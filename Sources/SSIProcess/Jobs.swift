#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
import SSILinux

/// Children of the process agent. The agent is a child subreaper, so a
/// process CRIU restores (criu's child, detached) becomes the agent's
/// child when criu exits: one reaper thread collects every exit status
/// and hands it to whoever waits for that pid (an onnode session wants
/// its command's status even after the command migrated here).
public final class Reaper: @unchecked Sendable {
    private let statuses = Locked<[pid_t: Process.Exit]>([:])
    private let watched = Locked<Set<pid_t>>([])

    public init() {}

    /// Starts the reaper thread.
    public func start() {
        _ = ssi_set_child_subreaper()
        startThread { [self] in
            while true {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, 0)
                if pid < 0 {
                    if errno == ECHILD { Process.sleep(milliseconds: 50) }
                    continue
                }
                let exit = Process.decode(status)
                if watched.withLock({ $0.remove(pid) != nil }) {
                    statuses.withLock { $0[pid] = exit }
                }
            }
        }
    }

    /// Starts `job` and registers its pid in one step: the reaper thread
    /// takes the same lock before it looks a reaped pid up, so a child that
    /// exits at once is still seen as watched (registering after `spawn`
    /// returned lost such a child's status, and its waiter hung).
    public func spawn(_ job: JobSpec) throws(SSIError) -> pid_t {
        try watched.withLock { (w: inout Set<pid_t>) throws(SSIError) -> pid_t in
            let pid = try job.spawn()
            w.insert(pid)
            return pid
        }
    }

    /// Marks `pid` as one whose status someone will ask for: for children
    /// that something else started (criu's restored process, which becomes
    /// ours when criu exits). Children we start go through `spawn`.
    public func watch(_ pid: pid_t) { watched.withLock { _ = $0.insert(pid) } }
    public func unwatch(_ pid: pid_t) { watched.withLock { _ = $0.remove(pid) } }

    /// Waits for a watched child's status (polling; bounded when
    /// `timeoutMs` >= 0).
    public func wait(_ pid: pid_t, timeoutMs: Int = -1) -> Process.Exit? {
        var waited = 0
        while timeoutMs < 0 || waited <= timeoutMs {
            if let s = statuses.withLock({ $0.removeValue(forKey: pid) }) { return s }
            Process.sleep(milliseconds: 20)
            waited += 20
        }
        return nil
    }
}

/// What a job needs to start.
public struct JobSpec: Sendable {
    public var root: String?
    public var cwd: String
    public var argv: [String]
    public var environment: [String]
    /// Descriptors for 0, 1, 2, ...
    public var fds: [Int32]
    public var controllingTTY: Int32 = -1
    public var uid: Int32 = -1
    public var gid: Int32 = -1
    public var groups: [gid_t] = []
    /// See ssi_job.keeper: 0 none, 1 the program in its own group under a
    /// session keeper that exits with its status, 2 the keeper reports the
    /// status on `statusFD` and stays after a success.
    public var keeper: Int32 = 0
    public var statusFD: Int32 = -1
    public var subreaper: Int32 = 0

    public init(root: String?, cwd: String, argv: [String], environment: [String], fds: [Int32]) {
        self.root = root
        self.cwd = cwd
        self.argv = argv
        self.environment = environment
        self.fds = fds
    }

    /// Starts it; errors name the step ("exec sh: No such file or directory").
    public func spawn() throws(SSIError) -> pid_t {
        let argvC = argv.map { strdup($0) } + [nil]
        let envC = environment.map { strdup($0) } + [nil]
        let rootC = root.map { strdup($0) }, cwdC = strdup(cwd)
        defer {
            argvC.forEach { free($0) }
            envC.forEach { free($0) }
            free(rootC ?? nil)
            free(cwdC)
        }
        var failed: UnsafePointer<CChar>? = nil
        let pid = fds.withUnsafeBufferPointer { f in
            groups.withUnsafeBufferPointer { g in
                argvC.withUnsafeBufferPointer { a in
                    envC.withUnsafeBufferPointer { e in
                        let rootP: UnsafePointer<CChar>? = rootC.flatMap { $0.map { UnsafePointer($0) } }
                        var job = ssi_job(root: rootP, cwd: UnsafePointer(cwdC), path: UnsafePointer(argvC[0]!),
                                          argv: a.baseAddress, envp: e.baseAddress, fds: f.baseAddress, nfds: Int32(f.count),
                                          ctty: controllingTTY, uid: uid, gid: gid, groups: g.baseAddress, ngroups: Int32(g.count),
                                          keeper: keeper, status_fd: statusFD, subreaper: subreaper)
                        return ssi_spawn_job(&job, &failed)
                    }
                }
            }
        }
        if pid < 0 {
            let e = errno
            let step = failed.map { String(validatingCString: $0) ?? "fork" } ?? "fork"
            let what = step == "exec" ? "\(argv[0])" : step == "chdir" ? "chdir \(cwd)" : step
            throw SSIError("proc", "\(what): \(errnoDescription(e))")
        }
        return pid
    }
}
