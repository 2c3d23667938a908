#if canImport(Glibc)
import Glibc
#endif
public import SSICore

/// Whether a TCP service answers: one connect with a deadline, nothing
/// sent. ssi-init uses it to wait for the init node's NFS server with a
/// message that says which of "unreachable" and "not serving" it is.
public enum TCPProbe {
    public enum Result: Sendable, Equatable {
        case open
        /// The host answered with a reset: it is up, the service is not.
        case refused
        /// No answer in time, or no route: the host is down or unreachable.
        case noAnswer(String)
    }

    public static func probe(_ address: IPv4Address, port: UInt16, timeoutMs: Int32) -> Result {
        switch connect(address, port: port, timeoutMs: timeoutMs) {
        case .connected: return .open
        case .failed(let result): return result
        }
    }

    /// A connected socket, or why there is none (a tuple cannot hold a
    /// `Descriptor`).
    enum Connection: ~Copyable {
        case connected(Descriptor)
        case failed(Result)
    }

    /// A non-blocking socket connected (or not) within the deadline.
    static func connect(_ address: IPv4Address, port: UInt16, timeoutMs: Int32) -> Connection {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { let lastErrno = errno; return .failed(.noAnswer("socket: \(errnoDescription(lastErrno))")) }
        let owned = Descriptor(owning: fd)
        let result = connect(fd, address, port: port, timeoutMs: timeoutMs)
        guard result == .open else { return .failed(result) }
        return .connected(owned)
    }

    static func connect(_ fd: Int32, _ address: IPv4Address, port: UInt16, timeoutMs: Int32) -> Result {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        let o = address.octets
        sin.sin_addr.s_addr = UInt32(o[0]) | UInt32(o[1]) << 8 | UInt32(o[2]) << 16 | UInt32(o[3]) << 24
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 { return .open }
        guard errno == EINPROGRESS else { return classify(errno) }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = pollRetrying(&p, timeoutMs: timeoutMs)
        if n == 0 { return .noAnswer("no answer within \(timeoutMs) ms") }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err == 0 ? .open : classify(err)
    }

    static func classify(_ e: Int32) -> Result {
        e == ECONNREFUSED ? .refused : .noAnswer(errnoDescription(e))
    }
}

/// One request line, one answer line, over TCP with one deadline for all
/// of it: the fence agent's talk with a fence switch.
public enum TCPLineClient {
    public enum Failure: Error, Sendable, Equatable {
        case connect(TCPProbe.Result)
        case io(String)
    }

    public static func request(_ line: String, to address: IPv4Address, port: UInt16, timeoutMs: Int32) -> Swift.Result<String, Failure> {
        let deadline = Process.now() + Double(timeoutMs) / 1000
        let socket: Descriptor
        switch TCPProbe.connect(address, port: port, timeoutMs: timeoutMs) {
        case .connected(let connected): socket = connected
        case .failed(let result): return .failure(.connect(result))
        }
        let fd = socket.rawValue
        var out = Array((line + "\n").utf8)
        while !out.isEmpty {
            switch attempt({ out.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }) {
            case .done(let n): out.removeFirst(n)
            case .wouldBlock:
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = pollRetrying(&p, timeoutMs: 100)
                if Process.now() > deadline { return .failure(.io("timed out sending")) }
            case .failed(let e): return .failure(.io("send: \(errnoDescription(e))"))
            }
        }
        var answer: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while !answer.contains(UInt8(ascii: "\n")) {
            let left = Int32(max(0, (deadline - Process.now()) * 1000))
            if left == 0 { return .failure(.io("no answer within \(timeoutMs) ms")) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if pollRetrying(&p, timeoutMs: left) <= 0 { continue }
            switch attempt({ buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }) {
            case .done(0): break
            case .done(let n): answer += buf[0..<n]; continue
            case .wouldBlock: continue
            case .failed(let e): return .failure(.io("recv: \(errnoDescription(e))"))
            }
            break
        }
        let text = String(decoding: answer, as: UTF8.self)
        guard let first = text.lines(omittingEmpty: false).first, !answer.isEmpty else {
            return .failure(.io("the connection closed without an answer"))
        }
        return .success(String(first))
    }
}

/// Socket addresses of connected IPv4 sockets.
public enum SocketAddress {
    /// The IPv4 address of a connected socket's peer, or nil (not IPv4,
    /// not connected).
    public static func peer(_ fd: Int32) -> IPv4Address? {
        var sin = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        guard rc == 0, sin.sin_family == sa_family_t(AF_INET) else { return nil }
        return IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr))
    }
}
