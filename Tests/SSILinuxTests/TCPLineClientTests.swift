import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
@testable import SSILinux

/// A listener on 127.0.0.1 (an ephemeral port) that answers one
/// connection with `answer` after reading a line, on its own thread.
final class OneShotServer: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    private(set) var received = ""
    private var thread: pthread_t?

    init(answer: String?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 1) == 0 else { throw SystemCallError("bind/listen", errno: errno) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        port = UInt16(bigEndian: sin.sin_port)
        let box = Unmanaged.passRetained(Box(server: self, answer: answer))
        var t = pthread_t()
        pthread_create(&t, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.server.serve(answer: box.answer)
            return nil
        }, box.toOpaque())
        thread = t
    }

    final class Box { let server: OneShotServer; let answer: String?; init(server: OneShotServer, answer: String?) { self.server = server; self.answer = answer } }

    func serve(answer: String?) {
        let client = accept(fd, nil, nil)
        guard client >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = recv(client, &buf, buf.count, 0)
        if n > 0 { received = String(decoding: buf[0..<n], as: UTF8.self) }
        if let answer { _ = Array(answer.utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) } }
        close(client)
    }

    func finish() {
        if let thread { pthread_join(thread, nil) }
        close(fd)
    }
}

@Suite struct TCPLineClientTests {
    var loopback: IPv4Address { IPv4Address(127, 0, 0, 1) }

    @Test func sendsALineAndReadsTheAnswer() throws {
        let server = try OneShotServer(answer: "ok\n")
        let result = TCPLineClient.request("off 3", to: loopback, port: server.port, timeoutMs: 5000)
        server.finish()
        #expect(server.received == "off 3\n")
        #expect(try result.get() == "ok")
    }

    @Test func aClosedConnectionWithoutAnswerIsAnError() throws {
        let server = try OneShotServer(answer: nil)
        let result = TCPLineClient.request("monitor", to: loopback, port: server.port, timeoutMs: 5000)
        server.finish()
        #expect(result == .failure(.io("the connection closed without an answer")))
    }

    @Test func nothingListeningIsRefused() throws {
        // A port bound and never listened on: the connection is refused.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        try #require(ok)
        let result = TCPLineClient.request("off 1", to: loopback, port: UInt16(bigEndian: sin.sin_port), timeoutMs: 2000)
        #expect(result == .failure(.connect(.refused)))
    }
}
