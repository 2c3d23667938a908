import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// What the netlink tests need from the machine. Making a network namespace
/// takes CAP_SYS_ADMIN (unshare(2)); configuring links in it takes
/// CAP_NET_ADMIN. Both are read from CapEff, so an unprivileged run skips
/// with the reason instead of failing on EPERM.
enum NetworkPrivileges {
    static let effective: UInt64 = {
        guard let text = try? FileSystem.readText("/proc/self/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).filter { !$0.isWhitespace }
            return UInt64(hex, radix: 16) ?? 0
        }
        return 0
    }()

    static let netAdmin: UInt64 = 1 << 12    // CAP_NET_ADMIN
    static let sysAdmin: UInt64 = 1 << 21    // CAP_SYS_ADMIN

    static var available: Bool { effective & netAdmin != 0 && effective & sysAdmin != 0 }
    static let skipReason: Comment =
        "needs CAP_NET_ADMIN and CAP_SYS_ADMIN (CapEff bits 12 and 21) to make and configure a network namespace; run as root"
}

/// ip(8), to check our view against the one everybody trusts.
enum IPTool {
    static let path: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileSystem.isExecutableFile($0) }
    static let skipReason: Comment = "needs ip(8) from iproute2 to compare with (apt-get install iproute2)"
}

/// unshare(2) and pipe2(2): Glibc declares them only under _GNU_SOURCE,
/// which its Swift module is not built with, so they are looked up by name.
enum LibC {
    static let unshare: @convention(c) (Int32) -> Int32 = {
        unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "unshare")!, to: (@convention(c) (Int32) -> Int32).self)
    }()

    static let pipe2: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32 = {
        unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "pipe2")!, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()
}

private final class ThreadBody {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Runs `body` on a thread of its own that first moves into a new, empty
/// network namespace. Namespaces belong to threads, not processes: the
/// host's interfaces and the other tests' threads are untouched, children
/// spawned from this thread inherit its namespace, and the namespace goes
/// away when the thread ends and the last socket in it is closed.
///
/// `body` reports what it saw; the test checks it back on its own task,
/// where Swift Testing attributes expectations to the test.
func inNewNetworkNamespace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let result: Result<T, any Error> = await withCheckedContinuation { continuation in
        let box = ThreadBody {
            let r: Result<T, any Error>
            if LibC.unshare(0x4000_0000) != 0 {            // CLONE_NEWNET
                r = .failure(SystemCallError("unshare(CLONE_NEWNET)", errno: errno))
            } else {
                r = Result { try body() }
            }
            continuation.resume(returning: r)
        }
        let context = Unmanaged.passRetained(box).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            continuation.resume(returning: .failure(SystemCallError("pthread_create", errno: rc)))
        }
    }
    return try result.get()
}

struct CommandResult: Sendable, CustomStringConvertible {
    var arguments: [String]
    var status: Int32          // exit status, or 128 + signal
    var output: String
    var errors: String

    var description: String { "\(arguments.joined(separator: " ")): status \(status), stderr: \(errors)" }
}

struct CommandFailed: Error, CustomStringConvertible {
    var result: CommandResult
    var description: String { "command failed: \(result)" }
}

/// Spawns a program from the calling thread, so that it runs in that
/// thread's network namespace (Foundation.Process may spawn from another
/// thread), collects stdout and stderr, and kills it after `timeout`
/// seconds. Waits for its own pid only: other tests in this process have
/// children too.
@discardableResult
func runCommand(_ arguments: [String], timeout: Double = 10, check: Bool = true) throws -> CommandResult {
    var outPipe: [Int32] = [-1, -1]
    var errPipe: [Int32] = [-1, -1]
    try syscallChecked("pipe2") { LibC.pipe2(&outPipe, O_CLOEXEC) }
    try syscallChecked("pipe2") { LibC.pipe2(&errPipe, O_CLOEXEC) }
    var spec = SpawnSpec(.path(arguments[0]), argv: arguments, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"])
    spec.descriptors = .inherit(map: [.null, .fd(outPipe[1]), .fd(errPipe[1])])
    let pid: pid_t
    do { pid = try spec.spawn() } catch {
        for fd in outPipe + errPipe { close(fd) }
        throw error
    }
    close(outPipe[1])
    close(errPipe[1])

    var collected: [[UInt8]] = [[], []]
    var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
               pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
    let deadline = Process.now() + timeout
    var chunk = [UInt8](repeating: 0, count: 4096)
    var killed = false
    while fds.contains(where: { $0.fd >= 0 }) {
        let left = deadline - Process.now()
        if left <= 0 {
            kill(pid, SIGKILL)
            killed = true
            break
        }
        if poll(&fds, nfds_t(fds.count), Int32(left * 1000) + 1) < 0 && errno != EINTR {
            break
        }
        for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
            let n = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
            if n > 0 {
                collected[i].append(contentsOf: chunk[0..<n])
            } else if n == 0 || errno != EINTR {
                close(fds[i].fd)
                fds[i].fd = -1
            }
        }
    }
    for f in fds where f.fd >= 0 { close(f.fd) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    let signal = status & 0x7f
    let result = CommandResult(
        arguments: arguments,
        status: signal == 0 ? (status >> 8) & 0xff : 128 + signal,
        output: String(decoding: collected[0], as: UTF8.self),
        errors: killed ? "killed after \(timeout) s" : String(decoding: collected[1], as: UTF8.self))
    if check && result.status != 0 { throw CommandFailed(result: result) }
    return result
}

private func syscallChecked(_ name: String, _ body: () -> Int32) throws {
    if body() != 0 { throw SystemCallError(name, errno: errno) }
}

/// Runs ip(8) with these arguments (in the calling thread's namespace).
@discardableResult
func ip(_ arguments: String...) throws -> String {
    guard let path = IPTool.path else { throw SystemCallError("find ip(8)", errno: ENOENT) }
    return try runCommand([path] + arguments).output
}

/// The error a throwing call gave, or nil if it succeeded: lets a namespace
/// thread report failures the test expects.
func failure<T>(_ body: () throws -> T) -> SystemCallError? {
    do {
        _ = try body()
        return nil
    } catch let e as SystemCallError {
        return e
    } catch {
        return SystemCallError("unexpected \(error)", errno: 0)
    }
}
