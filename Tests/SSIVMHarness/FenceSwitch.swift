// A fence switch for a test cluster: the "power switch" fence_ssi talks to.
// It listens on the test namespace's bridge address (the socket is made by
// a thread that entered the namespace, so nothing listens outside it) and
// answers `off N` by killing node N's qemu: a real power cut, after which
// the node cannot write to the shared disk. Every request is recorded.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class FenceSwitch: Sendable {
    public struct Event: Sendable, CustomStringConvertible {
        public let request: String
        public let answer: String
        public let at: ContinuousClock.Instant
        public var description: String { "\(request) -> \(answer)" }
    }

    public let address: String
    public let port: UInt16
    /// Required after every request when set (`off N PASSWORD`), as a real
    /// power switch's login is; the events record the request without it.
    public let password: String?
    private let guests = Mutex<[Int: Guest]>([:])
    private let log = Mutex<[Event]>([])
    private let stopped = Atomic<Bool>(false)
    private let listener: Int32

    /// Listens on `address:port` inside `network`'s namespace (the address
    /// must be the network's host address).
    public init(network: TestNetwork, address: String, port: UInt16 = 7070, password: String? = nil) throws {
        self.address = address
        self.port = port
        self.password = password
        let ready = Mutex<Result<Int32, HarnessError>?>(nil)
        let namespace = network.namespace
        let thread = Thread {
            ready.withLock { $0 = Self.listen(namespace: namespace, address: address, port: port) }
        }
        thread.start()
        let deadline = ContinuousClock.now + .seconds(10)
        var result: Result<Int32, HarnessError>? = nil
        while result == nil && ContinuousClock.now < deadline {
            usleep(10_000)
            result = ready.withLock { $0 }
        }
        guard let result else { throw HarnessError("fence switch: the listener thread did not start") }
        listener = try result.get()
        let serving = Thread { [self] in self.serve() }
        serving.start()
    }

    deinit { stop() }

    /// The guest that is node `n` now (a node booted again is a new guest).
    public func attach(node n: Int, _ guest: Guest) {
        guests.withLock { $0[n] = guest }
    }

    public var events: [Event] { log.withLock { $0 } }

    /// The nodes switched off so far, in order.
    public var fencedNodes: [Int] {
        events.filter { $0.answer == "ok" && $0.request.hasPrefix("off ") }.compactMap { Int($0.request.dropFirst(4)) }
    }

    /// Waits until node `n` has been switched off (polling every 100 ms,
    /// at most `timeout`); true when it was.
    public func waitUntilFenced(node n: Int, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !fencedNodes.contains(n) {
            if ContinuousClock.now >= deadline { return false }
            try await Task.sleep(for: .milliseconds(100))
        }
        return true
    }

    public func stop() {
        if stopped.exchange(true, ordering: .relaxed) { return }
        close(listener)
    }

    /// Glibc declares setns(2) only under _GNU_SOURCE.
    private static let setns: @convention(c) (Int32, Int32) -> Int32 = {
        unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "setns")!, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    private static func listen(namespace: String, address: String, port: UInt16) -> Result<Int32, HarnessError> {
        let ns = open("/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
        guard ns >= 0 else { return .failure(HarnessError("fence switch: open /run/netns/\(namespace): \(String(cString: strerror(errno)))")) }
        defer { close(ns) }
        // This thread only: the socket is created in the namespace and
        // stays there.
        guard Self.setns(ns, 0x4000_0000 /* CLONE_NEWNET */) == 0 else {
            return .failure(HarnessError("fence switch: setns: \(String(cString: strerror(errno)))"))
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(HarnessError("fence switch: socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &sin.sin_addr)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 8) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            return .failure(HarnessError("fence switch: bind/listen \(address):\(port): \(e)"))
        }
        return .success(fd)
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let client = accept(listener, nil, nil)
            if client < 0 { continue }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 256)
        while !data.contains(UInt8(ascii: "\n")) && data.count < 1024 {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            data += buf[0..<n]
        }
        var request = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        let answer: String
        if let password {
            var words = request.split(separator: " ")
            let given = words.count > 1 ? words.removeLast() : ""
            request = words.joined(separator: " ")
            answer = given == password ? respond(to: request) : "error wrong password"
        } else {
            answer = respond(to: request)
        }
        log.withLock { $0.append(Event(request: request, answer: answer, at: .now)) }
        _ = Array((answer + "\n").utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func respond(to request: String) -> String {
        let f = request.split(separator: " ")
        if f == ["monitor"] { return "ok" }
        guard f.count == 2, f[0] == "off", let n = Int(f[1]) else { return "error unknown request" }
        guard let guest = guests.withLock({ $0[n] }) else { return "error no guest is node \(n)" }
        guest.kill()
        return guest.isRunning ? "error node \(n) is still running" : "ok"
    }
}
