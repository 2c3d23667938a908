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
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("agent", "socket: \(errnoDescription(lastErrno))") }
        let listener = Descriptor(owning: fd)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
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
            throw SSIError("agent", "listening on \(path): \(errnoDescription(e))")
        }
        // Never closed: the agent listens until it exits.
        listenFD = listener.take()
    }

    var clientFDs: [Int32] { Array(buffers.keys).sorted() }

    /// Clients connected at once, at most (each is a poll entry and a
    /// buffer in the agent's single loop); extras are closed at once.
    static let maxClients = 64
    /// The longest request line: a cluster mount's line is a few hundred
    /// bytes. A client that sends more without a newline is dropped
    /// rather than buffered without end.
    static let maxLineBytes = 64 * 1024
    /// Seconds an answer may wait for a client that does not read.
    static let sendTimeoutSeconds = 2

    /// Until when accepting pauses: out of descriptors, the pending
    /// connection stays in the backlog and poll would wake the loop again
    /// at once; 100 ms of not listening keeps it from spinning.
    private(set) var pausedUntil = 0.0
    /// What poll should wait for on the listening socket now.
    var listenEvents: Int16 { Process.now() < pausedUntil ? 0 : Int16(POLLIN) }

    func accept() {
        while true {
            let fd = Glibc.accept(listenFD, nil, nil)
            guard fd >= 0 else {
                let e = errno
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM { pausedUntil = Process.now() + 0.1 }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard buffers.count < Self.maxClients else {
                close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var tv = timeval(tv_sec: Self.sendTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            buffers[fd] = []
            silentSince[fd] = Process.now()
        }
    }

    /// Seconds a client may stay connected without sending its request.
    /// After it, the connection is its lifetime (a lock holder is quiet
    /// for as long as it holds the lock), so only the first line is timed.
    static let requestTimeoutSeconds = 10.0
    private var silentSince: [Int32: Double] = [:]

    /// Drops the clients that connected and said nothing in time;
    /// `closed` gets each (as for a connection that ended).
    func expireSilent(now: Double = Process.now(), closed: (Int32) -> Void) {
        for (fd, since) in silentSince where now - since >= Self.requestTimeoutSeconds {
            silentSince[fd] = nil
            buffers[fd] = nil
            close(fd)
            closed(fd)
        }
    }

    /// Reads what a client sent: complete lines go to `line`; a closed
    /// connection to `closed` (after which the fd is gone).
    func read(_ fd: Int32, line: (String) -> Void, closed: () -> Void) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while buffers[fd] != nil {
            let got = attempt { Glibc.read(fd, &chunk, chunk.count) }
            if got == .wouldBlock { return }
            guard case .done(let n) = got else { deliver(fd, line); break }
            if n > 0 {
                buffers[fd, default: []].append(contentsOf: chunk[0..<n])
                deliver(fd, line)
                if let rest = buffers[fd], rest.count > Self.maxLineBytes {
                    send(fd, .line("request too long: more than \(Self.maxLineBytes) bytes without a newline"))
                    send(fd, .end(1))
                    break
                }
                continue
            }
            // EOF or error: lines already complete still count.
            deliver(fd, line)
            break
        }
        // EOF, an error, a line too long or a client that stopped reading
        // its answers (send shut it down).
        buffers[fd] = nil
        silentSince[fd] = nil
        close(fd)
        closed()
    }

    private func deliver(_ fd: Int32, _ line: (String) -> Void) {
        while let buf = buffers[fd], let nl = buf.firstIndex(of: 10) {
            silentSince[fd] = nil
            buffers[fd] = Array(buf[(nl + 1)...])
            line(String(decoding: buf[..<nl], as: UTF8.self))
        }
    }

    /// One answer line; a client that went away is simply dropped later.
    func send(_ fd: Int32, _ reply: AgentReply) {
        guard buffers[fd] != nil else { return }
        // Blocking for a moment is fine: answers are short and the client
        // reads them. One that does not read gets `sendTimeoutSeconds`
        // (SO_SNDTIMEO), then its connection is shut down: its next read
        // sees the end and closes it the usual way (locks released).
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        let failed = (try? sendAll(fd, (reply.encode() + "\n").utf8, name: "reply")) == nil
        _ = fcntl(fd, F_SETFL, flags)
        if failed { shutdown(fd, Int32(SHUT_RDWR)) }
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
        let connection = Descriptor(owning: fd)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path(directory: directory).utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() where i < p.count - 1 { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { return nil }
        return connection.take()
    }

    /// Sends `request` on `fd` and reads answer lines until "end CODE" (each
    /// line also goes to `progress`, both with control characters escaped),
    /// waiting at most `timeoutMs` in all.
    /// An agent older than the request's protocol is an error that says so.
    public static func exchange(_ fd: Int32, _ request: AgentRequest, timeoutMs: Int, progress: (String) -> Void = { _ in })
        throws(SSIError) -> Answer
    {
        let line = request.encode()
        writeAll(fd, line + "\n")
        var buffer: [UInt8] = []
        var lines: [String] = []
        let deadline = Process.now() + Double(timeoutMs) / 1000
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            while let nl = buffer.firstIndex(of: 10) {
                let text = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                switch AgentReply.decode(text) {
                case .end(let code):
                    // An agent before v2 knows no version word.
                    if code == 1 && lines == ["unknown request: " + line] {
                        throw SSIError("cluster", "the membership agent on this node is older than this command (it does not speak protocol v\(AgentRequest.version))",
                                       hint: "run one ssi version: restart the agent (or the node) after an upgrade")
                    }
                    return Answer(lines: lines, code: code)
                case .line(let text):
                    // An answer can carry a peer's own words (its mount's
                    // error): its control characters never reach the
                    // terminal or a log as such.
                    let safe = printable(text)
                    lines.append(safe)
                    progress(safe)
                }
            }
            guard buffer.count <= AgentSocket.maxLineBytes else {
                throw SSIError("cluster", "the membership agent sent a line of more than \(AgentSocket.maxLineBytes) bytes")
            }
            let left = Int32(max(0, (deadline - Process.now()) * 1000))
            guard left > 0 else {
                throw SSIError("cluster", "the membership agent did not finish in \(timeoutMs / 1000) s; answers so far: \(lines.joined(separator: "; "))",
                               hint: "check the other nodes (ssi cluster status)")
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = pollRetrying(&p, timeoutMs: left)
            if p.revents == 0 { continue }
            let n = (try? syscall("read") { read(fd, &chunk, chunk.count) }) ?? -1
            guard n > 0 else {
                throw SSIError("cluster", "the membership agent closed the connection", hint: "is it running? ssi cluster status")
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}
