// Typing into a guest's console: a client of qemu's serial chardev socket.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one client of qemu's serial socket, connected before the guest
/// runs (qemu waits for it: `wait=on`). A thread copies everything qemu
/// sends to the serial log file, so the log is exactly the bytes the
/// guest's UART sent.
///
/// Why not qemu's own `logfile=`: qemu logs a byte it could not write to
/// a full socket and then, when the serial device retries it, logs it
/// again. The socket holds only a few hundred one-byte writes, so a busy
/// host that left this thread unscheduled for a moment doubled a byte in
/// the log ("memmbership" in a CI run's `ssi cluster status`, "GFS22",
/// a doubled digit in a command's marker). Here a full socket only
/// delays the guest's output.
final class SerialConnection: Sendable {
    private let fd: Int32
    private let logFD: Int32
    private let stop = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    private let gaveUp = Atomic<Bool>(false)
    private let heldUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let drained = DispatchSemaphore(value: 0)
    private let closed = Mutex(false)

    private init(fd: Int32, logFD: Int32) {
        self.fd = fd
        self.logFD = logFD
        let thread = Thread { [self] in drain() }
        thread.name = "ssi-vm-serial"
        thread.start()
    }

    /// Connects to qemu's serial socket at `path` (retrying while qemu
    /// starts, and giving up early once `alive` says it has exited) and
    /// appends all console output to `logPath`.
    static func connect(path: String, logPath: String, timeout: Duration,
                        alive: () -> Bool = { true }) throws -> SerialConnection {
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw HarnessError("cannot open the serial log \(logPath): \(String(cString: strerror(errno)))") }
        let deadline = ContinuousClock.now + timeout
        var lastError: Int32 = 0
        while ContinuousClock.now < deadline && alive() {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket(): \(String(cString: strerror(errno)))") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let bytes = Array(path.utf8.prefix(raw.count - 1))
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if rc == 0 { return SerialConnection(fd: fd, logFD: logFD) }
            lastError = errno
            Glibc.close(fd)
            usleep(50_000)
        }
        Glibc.close(logFD)
        throw HarnessError("cannot connect to the serial socket \(path): \(String(cString: strerror(lastError)))")
    }

    func write(_ bytes: [UInt8]) throws {
        try closed.withLock { isClosed in
            guard !isClosed else { throw HarnessError("serial connection closed") }
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw HarnessError("writing to the serial socket: \(String(cString: strerror(errno)))") }
                done += n
            }
        }
    }

    func close() {
        let first = closed.withLock { isClosed -> Bool in
            defer { isClosed = true }
            return !isClosed
        }
        guard first else { return }
        stop.store(true, ordering: .relaxed)
        // The drain thread polls with a short timeout; only close the fd
        // once it has stopped using it.
        if drained.wait(timeout: .now() + 3) == .success {
            Glibc.close(fd)
        }
    }

    /// Stops copying for `duration`, so qemu's side of the socket fills
    /// and the guest's output waits: for the harness's own test that this
    /// loses and doubles nothing.
    func hold(for duration: Duration) {
        heldUntil.withLock { $0 = .now + duration }
    }

    /// Waits (bounded) until qemu's end of the socket has closed and
    /// everything it sent is in the log: after the guest exited, so that
    /// its last lines (a power-off's) are there to read. Waits at most
    /// once: a qemu that outlived its wrapper must not slow every later
    /// look at the guest.
    func waitForEnd(timeout: Duration) {
        guard !gaveUp.load(ordering: .relaxed) else { return }
        let deadline = ContinuousClock.now + timeout
        while !finished.load(ordering: .acquiring) {
            guard ContinuousClock.now < deadline else { gaveUp.store(true, ordering: .relaxed); return }
            usleep(10_000)
        }
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while !stop.load(ordering: .relaxed) {
            if let until = heldUntil.withLock({ $0 }), until > .now {
                usleep(20_000)
                continue
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, 100)
            if rc < 0 && errno != EINTR { break }
            guard rc > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { break }   // qemu is gone
            guard n > 0 else { continue }
            var done = 0
            while done < n {
                let w = buffer[done..<n].withUnsafeBytes { Glibc.write(logFD, $0.baseAddress, $0.count) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { break }   // a full disk: the test's own checks will say what is missing
                done += w
            }
        }
        Glibc.close(logFD)
        finished.store(true, ordering: .releasing)
        drained.signal()
    }
}
