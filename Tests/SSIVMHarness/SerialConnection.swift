// Typing into a guest's console: a client of qemu's serial chardev socket.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A client of qemu's serial socket. Once connected, qemu also sends the
/// console output here, so a thread drains it (the log file has it all).
final class SerialConnection: Sendable {
    private let fd: Int32
    private let stop = Atomic<Bool>(false)
    private let drained = DispatchSemaphore(value: 0)
    private let closed = Mutex(false)

    private init(fd: Int32) {
        self.fd = fd
        let thread = Thread { [self] in drain() }
        thread.name = "ssi-vm-serial"
        thread.start()
    }

    static func connect(path: String, timeout: Duration) throws -> SerialConnection {
        let deadline = ContinuousClock.now + timeout
        var lastError: Int32 = 0
        while ContinuousClock.now < deadline {
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
            if rc == 0 { return SerialConnection(fd: fd) }
            lastError = errno
            Glibc.close(fd)
            usleep(50_000)
        }
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

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while !stop.load(ordering: .relaxed) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, 100)
            if rc < 0 && errno != EINTR { break }
            guard rc > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { break }   // qemu is gone
        }
        drained.signal()
    }
}
