#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// Starting and reaping children from PID 1. No threads, no child monitor
/// of its own: a PID 1 must be the only one calling waitpid(-1), or the
/// exit statuses of the children it reaps for the kernel go astray.
public enum Process {
    public enum Exit: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let c): return "exit status \(c)"
            case .signaled(let s): return "killed by signal \(s)"
            }
        }
    }

    /// Starts the program (`path`, not looked up) with the given argv and
    /// environment, our descriptors, signal mask, directory and session:
    /// what posix_spawn did here before there was one spawn (`SpawnSpec`).
    public static func spawn(_ path: String, _ args: [String], environment: [String]) throws(SystemCallError) -> pid_t {
        try SpawnSpec(.path(path), argv: args, environment: environment).spawn()
    }

    /// Waits for `pid`. As PID 1 it reaps (and discards) any other child
    /// that exits meanwhile: PID 1 inherits every orphan in the initramfs.
    /// Anywhere else it waits for that child only: a waitpid(-1) in a tool
    /// that runs beside other code (fsck inside the test runner, a command
    /// in an agent with its own reaper) steals the statuses of children
    /// that are not its own, and their waiters see a wrong exit code.
    public static func wait(for pid: pid_t) throws(SystemCallError) -> Exit {
        let which: pid_t = getpid() == 1 ? -1 : pid
        while true {
            var status: Int32 = 0
            let got = try syscall("waitpid \(pid)") { waitpid(which, &status, 0) }
            if got == pid { return decode(status) }
        }
    }

    /// `wait(for:)` with the child's resource use (wait4): fsck -r's
    /// statistics.
    public static func waitWithUsage(for pid: pid_t) throws(SystemCallError) -> (exit: Exit, usage: rusage) {
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let got = try syscall("wait4 \(pid)") { wait4(pid, &status, 0, &usage) }
            if got == pid { return (decode(status), usage) }
        }
    }

    /// Reaps every child that has exited, without blocking.
    public static func reapZombies() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }

    public static func decode(_ status: Int32) -> Exit {
        // WIFEXITED/WEXITSTATUS are macros Swift does not import.
        let sig = status & 0x7f
        if sig == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(sig)
    }

    /// execve: only returns by throwing.
    public static func exec(_ path: String, _ args: [String], environment: [String]) throws(SystemCallError) -> Never {
        let argv = try CStringArray(args)
        let envp = try CStringArray(environment)
        execve(path, argv.pointer, envp.pointer)
        let e = errno
        throw SystemCallError("exec \(path)", errno: e)
    }

    public static func sleep(milliseconds: Int) {
        var req = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var rem = timespec()
        while nanosleep(&req, &rem) == -1 && errno == EINTR { req = rem }
    }

    /// Monotonic seconds, for bounded waits.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Microseconds of the real-time clock since the epoch (0 before it),
    /// for numbers that must grow across a restart (not for waits: the
    /// clock can be set).
    public static func wallClockMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        guard ts.tv_sec >= 0 else { return 0 }
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec / 1000)
    }

    /// The kernel release the running kernel reports (uname -r).
    public static func kernelRelease() -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.release) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
    }
}
