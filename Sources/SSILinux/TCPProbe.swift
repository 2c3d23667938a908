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
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .noAnswer("socket: \(errnoDescription(errno))") }
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        let o = address.octets
        sin.sin_addr.s_addr = UInt32(o[0]) | UInt32(o[1]) << 8 | UInt32(o[2]) << 16 | UInt32(o[3]) << 24
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 { return .open }
        guard errno == EINPROGRESS else { return classify(errno) }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&p, 1, timeoutMs)
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
