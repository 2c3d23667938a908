#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// The few TCP calls the key exchange makes, on IPv4 (the cluster
/// network), with every wait bounded.
enum TCP {
    static func address(_ text: String, port: UInt16) throws(SSIError) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, text, &sin.sin_addr) == 1 else { throw SSIError("keys", "\(text) is not an IPv4 address") }
        return sin
    }

    static func socketFD() throws(SystemCallError) -> Int32 {
        try syscall("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    /// Sends and receives each give up after `seconds`.
    static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A connection within `seconds` (a non-blocking connect and a poll).
    static func connect(_ host: String, port: UInt16, seconds: Int) throws(SSIError) -> Int32 {
        var sin = try address(host, port: port)
        do throws(SystemCallError) {
            let fd = try socketFD()
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 {
                let e = errno
                guard e == EINPROGRESS else { close(fd); throw SystemCallError("connect", errno: e) }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                guard pollRetrying(&p, timeoutMs: Int32(seconds * 1000)) == 1 else { close(fd); throw SystemCallError("connect", errno: ETIMEDOUT) }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                if soError != 0 { close(fd); throw SystemCallError("connect", errno: soError) }
            }
            _ = fcntl(fd, F_SETFL, flags)
            setTimeouts(fd, seconds: seconds)
            return fd
        } catch {
            throw SSIError("keys", "connecting to \(host):\(port): \(error.description)")
        }
    }

    static func listen(_ host: String, port: UInt16) throws(SSIError) -> Int32 {
        var sin = try address(host, port: port)
        do throws(SystemCallError) {
            let fd = try socketFD()
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            do throws(SystemCallError) {
                try syscall("bind \(host):\(port)") {
                    withUnsafePointer(to: &sin) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
                try syscall("listen") { Glibc.listen(fd, 16) }
            } catch {
                close(fd)
                throw error
            }
            return fd
        } catch {
            throw SSIError("keys", "listening on \(host):\(port): \(error.description)")
        }
    }

    /// The next connection and its peer's address.
    static func accept(_ listener: Int32) throws(SystemCallError) -> (fd: Int32, peer: String) {
        var sin = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = try syscall("accept") {
            withUnsafeMutablePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listener, $0, &len) }
            }
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return (fd, IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr)).description)
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) throws(SSIError) {
        do { try sendAll(fd, bytes, name: "send") } catch { throw SSIError("keys", "sending: \(error.description)") }
    }

    /// Monotonic seconds, for whole-exchange deadlines.
    static func now() -> Double { Process.now() }

    /// Exactly `count` bytes (fewer only at end of stream) by `deadline`:
    /// each read waits only for what is left of it, so a peer that sends
    /// one byte at a time cannot stretch the exchange past it.
    static func receive(_ fd: Int32, _ count: Int, what: String, deadline: Double) throws(SSIError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let left = deadline - now()
            guard left > 0 else { throw SSIError("keys", "reading the \(what): no answer in time") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard pollRetrying(&p, timeoutMs: Int32(min(left, 3600) * 1000) + 1) == 1 else {
                throw SSIError("keys", "reading the \(what): no answer in time")
            }
            let at = done
            switch attempt({ buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + at, count - at, Int32(MSG_DONTWAIT)) } }) {
            case .done(0): return Array(buffer.prefix(done))
            case .done(let n): done += n
            case .wouldBlock: continue
            case .failed(let e): throw SSIError("keys", "reading the \(what): \(errnoDescription(e))")
            }
        }
        return buffer
    }
}
