// Running host commands: posix_spawn from one long-lived thread, output to
// files (no pipe deadlocks), bounded waits, errors that name the command.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An error from the harness itself: a command that failed, a guest that did
/// not say what it should, a host that cannot run VMs. The message is meant
/// to be read in CI output, so it carries the context (command line, stderr,
/// serial log tail).
public struct HarnessError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a finished host command left behind.
public struct CommandOutput: Sendable {
    public let commandLine: String
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public enum Command {
    /// Runs `argv` (argv[0] looked up in PATH, /usr/sbin and /sbin) and waits
    /// at most `timeout`; a command still running then is killed. With
    /// `check`, a non-zero exit status throws an error naming the command
    /// line and quoting its stderr.
    @discardableResult
    public static func run(_ argv: [String], timeout: Duration = .seconds(60),
                           check: Bool = true) throws -> CommandOutput {
        precondition(!argv.isEmpty, "Command.run needs a command")
        let line = commandLine(argv)
        guard let exe = find(argv[0]) else {
            throw HarnessError("command not found: \(argv[0]) (running: \(line))")
        }
        let dir = try makeTemporaryDirectory(prefix: "ssi-cmd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outPath = dir + "/stdout", errPath = dir + "/stderr"

        let pid = try spawn([exe] + argv.dropFirst(), stdout: outPath, stderr: errPath)
        let status = waitForExit(pid: pid, timeout: timeout)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        guard let status else {
            throw HarnessError("timed out after \(timeout) and killed: \(line)\nstderr:\n\(err)")
        }
        let result = CommandOutput(commandLine: line, status: status, stdout: out, stderr: err)
        if check && status != 0 {
            throw HarnessError("""
                command failed with status \(status): \(line)
                stderr:
                \(err.isEmpty ? "(empty)" : err)\(out.isEmpty ? "" : "\nstdout:\n\(out.suffix(2000))")
                """)
        }
        return result
    }

    /// The full path of an executable, searching PATH plus the sbin folders
    /// (a non-login root shell may lack them). Paths with a slash are
    /// returned when executable.
    public static func find(_ name: String) -> String? {
        if name.contains("/") {
            return access(name, X_OK) == 0 ? name : nil
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        var dirs = path.split(separator: ":").map(String.init)
        dirs += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        for dir in dirs where !dir.isEmpty {
            let candidate = dir + "/" + name
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// A shell-like rendering of argv for messages.
    public static func commandLine(_ argv: [String]) -> String {
        argv.map { arg in
            let safe = arg.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }
            return safe && !arg.isEmpty ? arg : "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    // MARK: - Process primitives (also used by Guest)

    /// Starts argv[0] (a full path) with stdin from /dev/null and stdout and
    /// stderr appended to the given files. Runs on the spawner thread so
    /// that a child's `--pdeathsig` follows this process, not a worker
    /// thread that may exit while the child still runs.
    static func spawn(_ argv: [String], stdout: String, stderr: String) throws -> pid_t {
        let result = SpawnThread.shared.sync { () -> Result<pid_t, HarnessError> in
            spawnHere(argv, stdout: stdout, stderr: stderr)
        }
        return try result.get()
    }

    private static func spawnHere(_ argv: [String], stdout: String, stderr: String) -> Result<pid_t, HarnessError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if stderr == stdout {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        // Nothing else of the runner's: a descriptor another test opened
        // without O_CLOEXEC (a probe's socket, a unit test's connection)
        // held by a long-lived qemu kept its peer waiting for an end that
        // never came (a CFS run hung on its swtpm that way).
        // (glibc 2.34's call; Swift's Glibc module does not declare it.)
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
            return .failure(HarnessError("cannot start \(commandLine(argv)): glibc has no posix_spawn_file_actions_addclosefrom_np (2.34 or later is needed)"))
        }
        _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)

        // A clean signal state: the test runner's threads may block or
        // ignore signals that `timeout` and qemu rely on.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] {
            sigaddset(&defaults, sig)
        }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, environ)
        guard rc == 0 else {
            return .failure(HarnessError("cannot start \(commandLine(argv)): \(String(cString: strerror(rc)))"))
        }
        return .success(pid)
    }

    /// Polls a child until it exits or `timeout` passes; on timeout it is
    /// killed (SIGKILL) and reaped, and nil is returned. The status is the
    /// exit code, or 128+signal.
    static func waitForExit(pid: pid_t, timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = reap(pid: pid) { return status }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = reap(pid: pid, blocking: true)
                return nil
            }
            usleep(10_000)
        }
    }

    /// One waitpid; nil while the child runs. Blocking waits are only used
    /// after a SIGKILL.
    static func reap(pid: pid_t, blocking: Bool = false) -> Int32? {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if rc == pid { break }
            if rc == -1 && errno == EINTR { continue }
            if rc == -1 { return -1 }       // not our child any more (ECHILD)
            return nil
        }
        let sig = status & 0x7f
        return sig == 0 ? (status >> 8) & 0xff : 128 + sig
    }

    static func makeTemporaryDirectory(prefix: String) throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/" + prefix + ".XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw HarnessError("mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }
}

/// One thread that lives as long as the test process and does every spawn.
/// PR_SET_PDEATHSIG (setpriv --pdeathsig) fires when the *thread* that
/// created the child exits, and Swift's cooperative pool retires idle
/// threads after a few seconds: spawning from a pool thread would kill a
/// healthy qemu in the middle of a test.
final class SpawnThread: Sendable {
    static let shared = SpawnThread()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let wake = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            while true {
                wake.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "ssi-vm-spawner"
        thread.start()
    }

    /// Runs `body` on the spawner thread and returns its result.
    func sync<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let slot = ResultSlot<T>()
        jobs.withLock {
            $0.append {
                slot.set(body())
                done.signal()
            }
        }
        wake.signal()
        done.wait()
        return slot.get()
    }
}

/// A write-once box handed between the spawner thread and its caller.
private final class ResultSlot<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ v: T) { value.withLock { $0 = v } }
    func get() -> T { value.withLock { $0! } }
}
