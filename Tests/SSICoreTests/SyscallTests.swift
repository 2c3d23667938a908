import Testing
import Glibc
@testable import SSICore

/// The one EINTR policy (Syscall.swift): interrupted calls are retried in
/// the layer, a poll keeps its deadline, "not now" and failures are told
/// apart with errno read at the call.
@Suite(.serialized) struct SyscallTests {
    /// A pipe whose read end is non-blocking, closed at the end.
    struct Pipe: ~Copyable {
        let read: Int32, write: Int32
        init() {
            var fds: [Int32] = [-1, -1]
            _ = pipe(&fds)
            _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
            (read, write) = (fds[0], fds[1])
        }
        deinit { close(read); close(write) }
    }

    /// Interrupts the calling thread with SIGUSR2 (a handler without
    /// SA_RESTART, so poll(2) fails with EINTR) every 40 ms for `count`
    /// times, from a second thread.
    static func interruptMe(times count: Int) -> pthread_t {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        sigemptyset(&action.sa_mask)
        sigaction(SIGUSR2, &action, nil)
        // The test runner's threads may block signals: unblock it here.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR2)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        final class Box: @unchecked Sendable { let target: pthread_t; let count: Int; init(_ t: pthread_t, _ c: Int) { target = t; count = c } }
        let box = Unmanaged.passRetained(Box(pthread_self(), count)).toOpaque()
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
            for _ in 0..<box.count {
                var t = timespec(tv_sec: 0, tv_nsec: 40_000_000)
                nanosleep(&t, nil)
                pthread_kill(box.target, SIGUSR2)
            }
            return nil
        }, box)
        return thread
    }

    static func monotonicMs() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }

    @Test func rawPollIsCutShortBySignalsWhichIsWhyTheLayerExists() {
        let p = Pipe()
        var fd = pollfd(fd: p.read, events: Int16(POLLIN), revents: 0)
        let thread = Self.interruptMe(times: 1)
        let n = poll(&fd, 1, 2000)
        let e = errno
        pthread_join(thread, nil)
        #expect(n == -1 && e == EINTR)
    }

    @Test func pollRetryingKeepsItsDeadlineThroughSignals() {
        let p = Pipe()
        var fd = pollfd(fd: p.read, events: Int16(POLLIN), revents: 0)
        let start = Self.monotonicMs()
        let thread = Self.interruptMe(times: 5)
        let n = pollRetrying(&fd, timeoutMs: 400)
        let elapsed = Self.monotonicMs() - start
        pthread_join(thread, nil)
        #expect(n == 0)
        // Not cut short by the signals (the first came at 40 ms), and not
        // restarted with the whole timeout each time (5 x 400 ms).
        #expect(elapsed >= 390 && elapsed < 1500)
    }

    @Test func pollRetryingReportsReadiness() {
        let p = Pipe()
        _ = write(p.write, "x", 1)
        var fd = pollfd(fd: p.read, events: Int16(POLLIN), revents: 0)
        #expect(pollRetrying(&fd, timeoutMs: 1000) == 1)
        #expect(fd.revents & Int16(POLLIN) != 0)
    }

    @Test func attemptTellsNotNowFromEndFromFailure() {
        var byte: UInt8 = 0
        let p = Pipe()
        #expect(attempt { read(p.read, &byte, 1) } == .wouldBlock)
        _ = write(p.write, "y", 1)
        #expect(attempt { read(p.read, &byte, 1) } == .done(1))
        #expect(byte == UInt8(ascii: "y"))
        #expect(attempt { read(-1, &byte, 1) } == .failed(EBADF))
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        close(fds[1])
        #expect(attempt { read(fds[0], &byte, 1) } == .done(0))
        close(fds[0])
    }

    @Test func syscallNamesTheCallAndKeepsErrno() {
        #expect(throws: SystemCallError("close fd -1", errno: EBADF)) { try syscall("close fd -1") { close(-1) } }
    }

    @Test func readAllStopsAtItsLimitOnAnEndlessDevice() {
        let fd = open("/dev/zero", O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        #expect(throws: SystemCallError("read /dev/zero", errno: EFBIG)) { _ = try readAll(fd, name: "/dev/zero", limit: 1 << 20) }
    }

    @Test func atomicWritesGiveTheModeAskedWhateverWasThere() throws {
        var template = Array("/tmp/ssi-atomic-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        defer { system("rm -rf '\(dir)'") }
        let path = dir + "/cluster.conf"
        // An old file readable by all (a reload's secret must not stay so).
        let old = open(path, O_WRONLY | O_CREAT, 0o644)
        _ = write(old, "old", 3)
        close(old)
        chmod(path, 0o644)
        try writeFileAtomically(path, Array("new".utf8), mode: 0o600, replace: true)
        var st = stat()
        stat(path, &st)
        #expect(st.st_mode & 0o7777 == 0o600)
        let fd = open(path, O_RDONLY)
        #expect(try readAll(fd, name: path) == Array("new".utf8))
        close(fd)
        // Without replace an existing file is kept, and EEXIST says why.
        #expect(throws: SystemCallError(path, errno: EEXIST)) { try writeFileAtomically(path, Array("x".utf8), mode: 0o600, replace: false) }
        // A missing directory names the directory.
        #expect(throws: SystemCallError("create a file in \(dir)/none", errno: ENOENT)) {
            try writeFileAtomically(dir + "/none/f", [], mode: 0o600, replace: true)
        }
        // No temporary file is left behind by any of it.
        guard let d = opendir(dir) else { Issue.record("opendir \(dir)"); return }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        #expect(names == ["cluster.conf"])
    }
}
