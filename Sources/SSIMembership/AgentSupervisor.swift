#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// Keeps an agent running: the agent's process forks before it does
/// anything else; the parent stays behind as a small supervisor and the
/// child returns to become the agent. When the agent dies other than by
/// being asked to stop (SIGTERM, SIGINT, exit status 0), the supervisor
/// logs it (the agent's log, and the kernel log when it runs as a booted
/// agent) and forks a new one within `restartDelayMs`.
///
/// Why in-process and not a loop in ssi-init: PID 1 execs the distro's
/// init at the hand-off, and the agents outlive it; the supervisor must
/// too. Forking before the agent starts its threads keeps the child a
/// clean copy of a process that has done nothing yet, so a restart needs
/// no exec and no second command line.
///
/// Bounded: at most `maxRestarts` in `windowSeconds`; beyond that the
/// next start waits until the oldest restart leaves the window (an agent
/// that cannot start, corosync gone, does not spin). Signals a booted
/// system sends the agent's PID (ssi-init's SIGHUP for a new boot stage,
/// SIGUSR1/2, SIGTERM, SIGINT) go on to the current agent.
///
/// The supervisor itself does nothing that can fail on outside input; if
/// it is killed (kill -9), the agent runs on unsupervised.
///
/// What a restarted agent resumes and what it closes, per object:
/// - membership agent: the view, the cluster mount table and the other
///   nodes' states are resumed (learned again: CPG tells every member of
///   the newcomer, they announce again, the lowest old member sends the
///   table). Its clients' requests and cluster locks are closed: their
///   connections end, the clients say so, and the other members drop this
///   node's lock holders when its old CPG member leaves. The other nodes
///   see this node leave and come back (their "down" and "up" hooks run).
/// - process agent, as a home: its copies of shipped descriptors close
///   with it. Stand-ins on other nodes see their connection break and
///   close the process's side: end of file on input, EPIPE on output, a
///   hangup on a terminal (StandIn.homeLost). Nothing is resumed: the
///   real object's state (a pipe's buffered bytes) died with the copy.
/// - process agent, as a stand-in node: the stand-ins' agent ends close
///   with it, so migrated processes see end of file / EPIPE / hangup;
///   their homes release the channels after HomeChannel.reattachSeconds
///   and an onnode waiting for an exit status hears exit 255 and why.
///   Processes it had restored keep running (reparented to init), but
///   their exit is no longer reported.
/// - a migration in progress when the source agent dies: not resumed and
///   not rolled back; the frozen original stays stopped (CRIU's
///   --leave-stopped) until someone sends it SIGCONT or kills it.
public enum AgentSupervisor {
    public static let restartDelayMs = 200
    public static let maxRestarts = 5
    public static let windowSeconds = 60.0

    /// SSI_AGENT_UNSUPERVISED=1: run the agent in this process, with no
    /// supervisor (a debugger, a test that wants the agent's own exit).
    public static var disabled: Bool { getenv("SSI_AGENT_UNSUPERVISED").map { String(cString: $0) == "1" } ?? false }

    /// Returns in the agent's process; the supervisor never returns (it
    /// exits with the agent's status once the agent was asked to stop).
    public static func superviseSelf(name: String, logPath: String, log: (String) -> Void) {
        if disabled { return }
        var forwarded = sigset_t()
        sigemptyset(&forwarded)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&forwarded, s) }
        var original = sigset_t()
        sigprocmask(SIG_BLOCK, &forwarded, &original)
        var restarts: [Double] = []
        var stopping = false
        var originalTitle: (area: UnsafeMutablePointer<UInt8>, bytes: [UInt8])?
        var retitled = false
        while true {
            let child = fork()
            if child == 0 {
                // The agent: the signals and the command line as they were
                // (a restarted agent is forked from the retitled supervisor).
                sigprocmask(SIG_SETMASK, &original, nil)
                if let (area, bytes) = originalTitle {
                    for (i, b) in bytes.enumerated() { area[i] = b }
                    if let comm = try? Descriptor(open: "/proc/self/comm", O_WRONLY) { writeAll(comm.rawValue, "ssi") }
                }
                return
            }
            if child < 0 {
                let e = errno
                note("\(name): fork: \(errnoDescription(e)); trying again in 1 s", logPath: logPath, log: log)
                Process.sleep(milliseconds: 1000)
                continue
            }
            if !retitled {
                retitled = true
                originalTitle = retitle(name)
            }
            let exit = waitForAgent(child, signals: &forwarded, stopping: &stopping)
            if stopping { Glibc.exit(exitStatus(exit)) }
            if case .exited(0) = exit { Glibc.exit(0) }
            if case .signaled(let s) = exit, s == SIGTERM || s == SIGINT { Glibc.exit(0) }
            let now = Process.now()
            restarts = restarts.filter { now - $0 < windowSeconds }
            var delay = restartDelayMs
            if restarts.count >= maxRestarts, let oldest = restarts.first {
                delay = max(delay, Int((windowSeconds - (now - oldest)) * 1000))
            }
            note("\(name) (pid \(child)) died: \(exit); restarting it in \(delay) ms (restart \(restarts.count + 1) in the last \(Int(windowSeconds)) s)",
                 logPath: logPath, log: log)
            if sleepUnlessStopped(milliseconds: delay, signals: &forwarded) { Glibc.exit(0) }
            restarts.append(Process.now())
        }
    }

    /// The supervisor's command line becomes "@ssi-supervisor NAME" and
    /// its name "ssi-supervisor", so that `pgrep -f 'cluster proc-agent'`
    /// and `ps -C ssi` find the agent once, as before there was a
    /// supervisor; the "@" keeps systemd's shutdown from killing it before
    /// the agent. The kernel shows /proc/self/cmdline from the argument
    /// area of our stack (its bounds are in /proc/self/stat, fields 48
    /// and 49), so the new title is written there, within its length.
    /// Returns the area and its original bytes, for the agents forked later.
    private static func retitle(_ name: String) -> (area: UnsafeMutablePointer<UInt8>, bytes: [UInt8])? {
        // prctl(PR_SET_NAME) by its file (prctl is variadic: not imported).
        if let comm = try? Descriptor(open: "/proc/self/comm", O_WRONLY) { writeAll(comm.rawValue, "ssi-supervisor") }
        guard let stat = try? FileSystem.readText("/proc/self/stat"), let paren = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: paren)...].split(separator: " ")
        // fields[0] is field 3 (state): field N is fields[N - 3].
        guard fields.count > 46, let start = UInt(fields[45]), let end = UInt(fields[46]), end > start, end - start < 1 << 20,
              let area = UnsafeMutablePointer<UInt8>(bitPattern: start) else { return nil }
        let length = Int(end - start)
        let saved = Array(UnsafeBufferPointer(start: area, count: length))
        let title = Array("@ssi-supervisor".utf8) + [0] + Array(name.utf8.prefix(64))
        for i in 0..<length { area[i] = i < title.count && i < length - 1 ? title[i] : 0 }
        return (area, saved)
    }

    /// Waits for the agent, passing signals on; `stopping` once SIGTERM
    /// or SIGINT came.
    private static func waitForAgent(_ child: pid_t, signals: inout sigset_t, stopping: inout Bool) -> Process.Exit {
        while true {
            var status: Int32 = 0
            switch attempt({ waitpid(child, &status, WNOHANG) }) {
            case .done(let got) where got == Int(child): return Process.decode(status)
            case .failed: return .exited(1)
            default: break
            }
            var info = siginfo_t()
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            let sig = sigtimedwait(&signals, &info, &timeout)
            guard sig > 0, sig != SIGCHLD else { continue }
            if sig == SIGTERM || sig == SIGINT { stopping = true }
            kill(child, sig)
        }
    }

    /// Sleeps, unless asked to stop meanwhile (true).
    private static func sleepUnlessStopped(milliseconds: Int, signals: inout sigset_t) -> Bool {
        let end = Process.now() + Double(milliseconds) / 1000
        while Process.now() < end {
            var info = siginfo_t()
            let left = max(0, end - Process.now())
            var timeout = timespec(tv_sec: Int(left), tv_nsec: Int((left - Double(Int(left))) * 1e9))
            let sig = sigtimedwait(&signals, &info, &timeout)
            if sig == SIGTERM || sig == SIGINT { return true }
        }
        return false
    }

    private static func exitStatus(_ exit: Process.Exit) -> Int32 {
        switch exit {
        case .exited(let c): return c
        case .signaled(let s): return s == SIGTERM || s == SIGINT ? 0 : 128 + s
        }
    }

    /// The agent's log, stderr, and the kernel log (console and dmesg)
    /// when running as a booted agent (SSI_AGENT set by ssi-init).
    private static func note(_ text: String, logPath: String, log: (String) -> Void) {
        log(text)
        if let file = try? Descriptor(open: logPath, O_WRONLY | O_APPEND | O_CREAT, mode: 0o600) {
            writeAll(file.rawValue, "\(Log.uptimeString()) supervisor: \(text)\n")
        }
        guard getenv("SSI_AGENT") != nil else { return }
        if let kmsg = try? Descriptor(open: "/dev/kmsg", O_WRONLY) { writeAll(kmsg.rawValue, "<3>ssi-supervisor: \(text)\n") }
    }
}
