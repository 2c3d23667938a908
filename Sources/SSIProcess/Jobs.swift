#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
public import SSILinux

/// Children of the process agent. The agent is a child subreaper, so a
/// process CRIU restores (criu's child, detached) becomes the agent's
/// child when criu exits: one reaper thread collects every exit status
/// and hands it to whoever waits for that pid (an onnode session wants
/// its command's status even after the command migrated here).
public final class Reaper: @unchecked Sendable {
    private let statuses = Locked<[pid_t: Process.Exit]>([:])
    private let watched = Locked<Set<pid_t>>([])
    /// Exits of children nobody had registered yet, with when they were
    /// reaped: a process criu restores is running (and may end) before
    /// criu's pidfile names it to `watch`. Kept for `unclaimedSeconds`, at
    /// most `unclaimedLimit` of them, so that a pid the kernel reuses
    /// later does not find an old status.
    private var unclaimed: [pid_t: (exit: Process.Exit, at: Double)] = [:]
    static let unclaimedSeconds = 60.0
    static let unclaimedLimit = 1024

    public init() {}

    /// A child stopped (with the signal) or continued (nil): restored
    /// processes whose deputy is elsewhere report it there. Set before
    /// `start`.
    public var onJobControl: (@Sendable (pid_t, Int32?) -> Void)?

    /// What one waitpid status is: an end, a stop (and its signal) or a
    /// continue. (The W* macros, which Swift does not import.)
    enum Event: Equatable {
        case ended(Process.Exit)
        case stopped(Int32)
        case continued
    }

    static func event(_ status: Int32) -> Event {
        if status == 0xffff { return .continued }
        if status & 0xff == 0x7f { return .stopped((status >> 8) & 0xff) }
        return .ended(Process.decode(status))
    }

    /// Starts the reaper thread.
    public func start() {
        _ = ssi_set_child_subreaper()
        let onJobControl = self.onJobControl
        startThread { [self] in
            while true {
                var status: Int32 = 0
                switch attempt({ waitpid(-1, &status, WUNTRACED | WCONTINUED) }) {
                case .done(let pid):
                    switch Self.event(status) {
                    case .ended(let exit): reaped(pid_t(pid), exit)
                    case .stopped(let sig): onJobControl?(pid_t(pid), sig)
                    case .continued: onJobControl?(pid_t(pid), nil)
                    }
                case .wouldBlock, .failed: Process.sleep(milliseconds: 50)   // ECHILD: none yet
                }
            }
        }
    }

    /// What the thread does with an exit: to its waiter if the pid is
    /// watched, else kept a while for a `watch` that comes late.
    func reaped(_ pid: pid_t, _ exit: Process.Exit, now: Double = Process.now()) {
        watched.withLock { w in
            if w.remove(pid) != nil {
                statuses.withLock { $0[pid] = exit }
                return
            }
            unclaimed = unclaimed.filter { now - $0.value.at < Self.unclaimedSeconds }
            if unclaimed.count >= Self.unclaimedLimit, let oldest = unclaimed.min(by: { $0.value.at < $1.value.at }) {
                unclaimed[oldest.key] = nil
            }
            unclaimed[pid] = (exit, now)
        }
    }

    /// Starts `spec` and registers its pid in one step: the reaper thread
    /// takes the same lock before it looks a reaped pid up, so a child that
    /// exits at once is still seen as watched (registering after `spawn`
    /// returned lost such a child's status, and its waiter hung).
    public func spawn(_ spec: SpawnSpec) throws(SystemCallError) -> pid_t {
        try watched.withLock { (w: inout Set<pid_t>) throws(SystemCallError) -> pid_t in
            let pid = try spec.spawn()
            w.insert(pid)
            // A new process: an old exit under the same (reused) pid is not its.
            unclaimed[pid] = nil
            return pid
        }
    }

    /// The same for the agent's jobs; errors as `JobSpec.spawn`'s.
    public func spawn(_ job: JobSpec) throws(SSIError) -> pid_t {
        let spec = try job.spawnSpec()
        do throws(SystemCallError) { return try spawn(spec) } catch { throw JobSpec.error(error) }
    }

    /// Marks `pid` as one whose status someone will ask for: for children
    /// that something else started (criu's restored process, which becomes
    /// ours when criu exits). Children we start go through `spawn`.
    /// An exit reaped before the call (within `unclaimedSeconds`) counts.
    public func watch(_ pid: pid_t, now: Double = Process.now()) {
        watched.withLock { w in
            if let early = unclaimed.removeValue(forKey: pid), now - early.at < Self.unclaimedSeconds {
                statuses.withLock { $0[pid] = early.exit }
            } else {
                w.insert(pid)
            }
        }
    }
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

/// The process agent's jobs (a remote caller's command, criu), in the
/// agent's terms: one preset of `SpawnSpec`, the one spawn. The program is
/// looked up in the job's own PATH, every signal is back to its default,
/// the descriptors are exactly `fds`, and the job leads a new session.
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
    /// See `SpawnSpec.Keeper`: 0 none, 1 the program in its own group
    /// under a session keeper that exits with its status, 2 the keeper
    /// reports the status on `statusFD` and stays after a success.
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

    /// The one spawn's specification of this job.
    public func spawnSpec() throws(SSIError) -> SpawnSpec {
        guard let program = argv.first else { throw SSIError("proc", "a job with no program") }
        var spec = SpawnSpec(.search(program), argv: argv, environment: environment)
        spec.root = root
        spec.cwd = cwd
        if uid >= 0 {
            // A uid without a gid is refused, never run with root's gid.
            guard gid >= 0 else { throw SSIError("proc", "setgid: \(errnoDescription(EINVAL)) (a uid without a gid)") }
            spec.credentials = .init(uid: uid_t(uid), gid: gid_t(gid), groups: groups)
        }
        spec.descriptors = .exactly(fds.map { .fd($0) })
        spec.signals = .reset
        spec.newSession = true
        spec.controllingTTY = controllingTTY >= 0 ? controllingTTY : nil
        switch keeper {
        case 0: spec.keeper = .none
        case 1: spec.keeper = .exits(subreaper: subreaper != 0)
        default: spec.keeper = .reports(statusFD, subreaper: subreaper != 0)
        }
        return spec
    }

    /// Starts it; errors name the step ("exec sh: No such file or directory").
    public func spawn() throws(SSIError) -> pid_t {
        let spec = try spawnSpec()
        do throws(SystemCallError) { return try spec.spawn() } catch { throw Self.error(error) }
    }

    static func error(_ e: SystemCallError) -> SSIError {
        SSIError("proc", e.description)
    }
}
