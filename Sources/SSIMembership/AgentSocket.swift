#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// The membership agent's local door: a unix stream socket in its state
/// directory (root only, 0600) where ssi-mount, ssi-fsck and ssi-swapon
/// ask for cluster-wide work. A request is one line; the answers are
/// lines, the last one "end CODE". A client's connection is also its
/// lifetime: a cluster lock is released when its holder's connection
/// closes, however the holder ended.
final class AgentSocket {
    static let name = "agent.sock"
    let listenFD: Int32
    private var buffers: [Int32: [UInt8]] = [:]

    init(directory: String) throws(SSIError) {
        let path = directory + "/" + Self.name
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SSIError("agent", "socket: \(errnoDescription(errno))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw SSIError("agent", "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let old = umask(0o077)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw SSIError("agent", "listening on \(path): \(errnoDescription(e))")
        }
        listenFD = fd
    }

    var clientFDs: [Int32] { Array(buffers.keys).sorted() }

    func accept() {
        while true {
            let fd = Glibc.accept(listenFD, nil, nil)
            guard fd >= 0 else { return }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            buffers[fd] = []
        }
    }

    /// Reads what a client sent: complete lines go to `line`; a closed
    /// connection to `closed` (after which the fd is gone).
    func read(_ fd: Int32, line: (String) -> Void, closed: () -> Void) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n > 0 {
                buffers[fd, default: []].append(contentsOf: chunk[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
            // EOF or error: lines already complete still count.
            deliver(fd, line)
            buffers[fd] = nil
            close(fd)
            closed()
            return
        }
        deliver(fd, line)
    }

    private func deliver(_ fd: Int32, _ line: (String) -> Void) {
        while let buf = buffers[fd], let nl = buf.firstIndex(of: 10) {
            buffers[fd] = Array(buf[(nl + 1)...])
            line(String(decoding: buf[..<nl], as: UTF8.self))
        }
    }

    /// One answer line; a client that went away is simply dropped later.
    func send(_ fd: Int32, _ text: String) {
        guard buffers[fd] != nil else { return }
        // Blocking for a moment is fine: answers are short and the
        // client reads them.
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        writeAll(fd, text + "\n")
        _ = fcntl(fd, F_SETFL, flags)
    }

    func isOpen(_ fd: Int32) -> Bool { buffers[fd] != nil }
}

/// The client side, for the commands: one request, the answer lines until
/// "end CODE", bounded in time.
public enum AgentClient {
    public struct Answer: Sendable {
        public var lines: [String]
        public var code: Int32
    }

    public static func path(directory: String = ClusterView.defaultDirectory) -> String { directory + "/" + AgentSocket.name }

    /// Connects; nil when no agent listens here (no cluster running).
    public static func connect(directory: String = ClusterView.defaultDirectory) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path(directory: directory).utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() where i < p.count - 1 { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Sends `request` on `fd` and reads answer lines until "end CODE" (each
    /// line also goes to `progress`), waiting at most `timeoutMs` in all.
    public static func exchange(_ fd: Int32, _ request: String, timeoutMs: Int, progress: (String) -> Void = { _ in })
        throws(SSIError) -> Answer
    {
        writeAll(fd, request + "\n")
        var buffer: [UInt8] = []
        var lines: [String] = []
        let deadline = Process.now() + Double(timeoutMs) / 1000
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            while let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                if line.hasPrefix("end ") {
                    return Answer(lines: lines, code: Int32(line.dropFirst(4)) ?? 1)
                }
                lines.append(line)
                progress(line)
            }
            let left = Int32(max(0, (deadline - Process.now()) * 1000))
            guard left > 0 else {
                throw SSIError("cluster", "the membership agent did not finish in \(timeoutMs / 1000) s; answers so far: \(lines.joined(separator: "; "))",
                               hint: "check the other nodes (ssi cluster status)")
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, left)
            if p.revents == 0 { continue }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw SSIError("cluster", "the membership agent closed the connection", hint: "is it running? ssi cluster status")
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}
