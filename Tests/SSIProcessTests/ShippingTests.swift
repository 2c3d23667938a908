import Testing
import Foundation
import CSSIShim
import SSICore
@testable import SSIProcess
import func SSILinux.startThread

/// The secure channel and fd shipping on loopback, in this process: a
/// home channel served on one side, a stand-in relaying on the other.
@Suite(.serialized) struct ShippingTests {
    static let key = SecureChannel.clusterKey(authkey: Array(repeating: 7, count: 256))

    /// A loopback listener that authenticates each connection and hands
    /// it to `serve` on its own thread.
    final class Server: @unchecked Sendable {
        let fd: Int32
        let port: UInt16
        init(key: [UInt8], node: UInt32, serve: @escaping @Sendable (SecureChannel) -> Void) throws {
            let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            fd = sock
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, len) } }
            listen(sock, 16)
            _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
            port = UInt16(bigEndian: sin.sin_port)
            let listener = sock
            let ended = acceptEnded
            startThread {
                defer { ended.signal() }
                while true {
                    let c = ssi_accept(listener)
                    if c < 0 { return }
                    startThread {
                        if let ch = try? SecureChannel.accept(fd: c, key: key, localNode: node) { serve(ch) }
                    }
                }
            }
        }
        /// Shut, then wait for the accepting thread before the close: a
        /// number closed under a thread still calling accept on it could
        /// be another test's socket a moment later.
        let acceptEnded = DispatchSemaphore(value: 0)
        func stop() {
            shutdown(fd, Int32(SHUT_RDWR))
            _ = acceptEnded.wait(timeout: .now() + 5)
            close(fd)
        }
    }

    @Test func secureChannelAuthenticatesBothWaysAndCarriesMessages() throws {
        let server = try Server(key: Self.key, node: 1) { ch in
            while let (type, payload) = try? ch.receive() { try? ch.send(type, payload.reversed()) }
        }
        defer { server.stop() }
        let ch = try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2)
        #expect(ch.peerNode == 1)
        try ch.send(Wire.data, Array("hello".utf8))
        let reply = try #require(try ch.receive())
        #expect(reply.0 == Wire.data && String(decoding: reply.1, as: UTF8.self) == "olleh")
        let big = (0..<SecureChannel.maxPayload).map { UInt8($0 & 0xff) }
        try ch.send(Wire.data, big)
        #expect(try ch.receive()?.1 == big.reversed())
        ch.close()

        // Another cluster's key: refused, with the reason.
        let other = SecureChannel.clusterKey(authkey: Array(repeating: 8, count: 256))
        #expect(other != Self.key)
        #expect {
            _ = try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: other, localNode: 2)
        } throws: { ($0 as? SSIError)?.message.contains("authentication failed") == true }
    }

    @Test func fieldsKeepNewlinesBackslashesAndRepeats() throws {
        var f = Fields("run", [("arg", "sh"), ("arg", "-c"), ("arg", "echo 'a\nb' \\ done")])
        f.add("env", "X=1=2")
        let back = try Fields.decode(f.encoded)
        #expect(back == f)
        #expect(back.op == "run" && back.all("arg") == ["sh", "-c", "echo 'a\nb' \\ done"] && back["env"] == "X=1=2")
    }

    /// A home channel for a pipe, served by a loopback "home agent".
    func home(_ kind: ShipKind, fd: Int32) throws -> (HomeRegistry, Server) {
        let homes = HomeRegistry()
        homes.add(HomeChannel(id: "c1", kind: kind, fd: fd))
        let server = try Server(key: Self.key, node: 1) { ch in
            guard let f = try? ch.receiveFields(), f.op == "attach", let c = homes.get(f["channel"] ?? ""), let d = f["dir"] else { return }
            c.serve(direction: d, on: ch)
        }
        return (homes, server)
    }

    func readAvailable(_ fd: Int32, until expected: Int, timeoutMs: Int = 5000) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        var waited = 0
        while out.count < expected && waited < timeoutMs {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 50) > 0 {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                out += buf[0..<n]
            } else { waited += 50 }
        }
        return out
    }

    /// A pause that runs out says where the relay was: here home
    /// attaches the pipe and then never answers a read, so the stand-in
    /// cannot settle, and its log names the direction and the wait.
    @Test func aPauseThatRunsOutSaysWhereTheRelayWaits() throws {
        let release = DispatchSemaphore(value: 0)
        let server = try Server(key: Self.key, node: 1) { ch in
            guard (try? ch.receiveFields())?.op == "attach" else { return }
            try? ch.send(RelayMessage.attached(window: nil).encode())
            _ = release.wait(timeout: .now() + 20)   // never answers the read
            ch.close()
        }
        defer { release.signal(); server.stop() }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .pipeIn, home: 1, channel: "c1"))
        defer { close(made.processEnd) }
        let said = Locked<[String]>([])
        let s = StandIn(channelID: "c1", home: 1, kind: .pipeIn, fd: made.agentEnd, resource: made.resource,
                        log: { line in said.withLock { $0.append(line) } })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }
        usleep(300_000)
        #expect(!s.pause(timeoutMs: 400))
        #expect(said.current.contains("stand-in c1: the pause ran out after 400 ms: in waiting for home's answer to a read, out not relayed"),
                "\(said.current)")
        // Let go first, then let home close: a home that ends while the
        // stand-in is still running would have it end the process's side.
        s.finish()
    }

    @Test func shippedPipeIntoTheProcessKeepsOrderPausesAndEnds() throws {
        var real: [Int32] = [-1, -1]
        #expect(ssi_pipe(&real) == 0)
        let (homes, server) = try home(.pipeIn, fd: real[0])
        defer { server.stop() }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .pipeIn, home: 1, channel: "c1"))
        let s = StandIn(channelID: "c1", home: 1, kind: .pipeIn, fd: made.agentEnd, resource: made.resource, log: { _ in })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }

        let first = (1...500).map { "line \($0)\n" }.joined()
        _ = first.withCString { write(real[1], $0, strlen($0)) }
        #expect(String(decoding: readAvailable(made.processEnd, until: first.utf8.count), as: UTF8.self) == first)

        // Paused (as for a migration): nothing moves; resumed: all of it,
        // in order, nothing lost or doubled.
        #expect(s.pause())
        let second = "after pause\n"
        _ = second.withCString { write(real[1], $0, strlen($0)) }
        #expect(readAvailable(made.processEnd, until: 1, timeoutMs: 600).isEmpty)
        s.resume()
        #expect(String(decoding: readAvailable(made.processEnd, until: second.utf8.count), as: UTF8.self) == second)

        // The home writer closes: the process reads end of file.
        close(real[1])
        var buf = [UInt8](repeating: 0, count: 16)
        var p = pollfd(fd: made.processEnd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5000) > 0)
        #expect(read(made.processEnd, &buf, 16) == 0)
        _ = homes
    }

    /// A process that leaves its shipped pipe unread: the stand-in holds
    /// what home sent without blocking in a write to the full pipe, so a
    /// pause (a move) settles at once, and every byte still arrives, in
    /// order, once the process reads.
    @Test func shippedPipeThatTheProcessLeavesUnreadStillPauses() throws {
        var real: [Int32] = [-1, -1]
        #expect(ssi_pipe(&real) == 0)
        let (homes, server) = try home(.pipeIn, fd: real[0])
        defer { server.stop() }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .pipeIn, home: 1, channel: "c1"))
        defer { close(made.processEnd) }
        let s = StandIn(channelID: "c1", home: 1, kind: .pipeIn, fd: made.agentEnd, resource: made.resource, log: { _ in })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }
        // More than the stand-in pipe (1 MiB) and an answer (512 KiB) hold.
        _ = fcntl(real[1], F_SETFL, O_NONBLOCK)
        var sent: [UInt8] = []
        let began = Date()
        var lastProgress = Date()
        while Date().timeIntervalSince(lastProgress) < 1, Date().timeIntervalSince(began) < 60 {
            let chunk = (0..<65536).map { UInt8(truncatingIfNeeded: (sent.count + $0) % 251) }
            let n = chunk.withUnsafeBytes { write(real[1], $0.baseAddress!, $0.count) }
            if n > 0 { sent += chunk[0..<n]; lastProgress = Date() } else { usleep(20_000) }
        }
        #expect(sent.count > 3 << 19, "\(sent.count) bytes went in")
        // The process takes a little: the pipe has room for a page or two,
        // poll says it is writable, and a blocking write of the relay's
        // half megabyte would wait there for the process.
        var first = [UInt8](repeating: 0, count: 8192)
        #expect(read(made.processEnd, &first, first.count) == first.count)
        usleep(500_000)
        let t0 = Date()
        #expect(s.pause(timeoutMs: 5000), "the stand-in did not settle while its process left the pipe full")
        #expect(Date().timeIntervalSince(t0) < 2)
        s.resume()
        close(real[1])
        let got = first + readAvailable(made.processEnd, until: sent.count - first.count, timeoutMs: 20_000)
        #expect(got.count == sent.count && got == sent, "\(got.count) of \(sent.count) bytes, in order: \(got == sent)")
        _ = homes
    }

    @Test func shippedPipeOutOfTheProcessArrivesHomeAndEndsThere() throws {
        var real: [Int32] = [-1, -1]
        #expect(ssi_pipe(&real) == 0)
        let (homes, server) = try home(.pipeOut, fd: real[1])
        defer { server.stop() }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .pipeOut, home: 1, channel: "c1"))
        let s = StandIn(channelID: "c1", home: 1, kind: .pipeOut, fd: made.agentEnd, resource: made.resource, log: { _ in })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }
        let text = (1...2000).map { "out \($0)\n" }.joined()
        let writer = made.processEnd
        startThread {
            _ = text.withCString { write(writer, $0, strlen($0)) }
            close(writer)
        }
        #expect(String(decoding: readAvailable(real[0], until: text.utf8.count), as: UTF8.self) == text)
        // The process closed its end: home closes its copy, the reader
        // at home sees end of file.
        var buf = [UInt8](repeating: 0, count: 16)
        var p = pollfd(fd: real[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5000) > 0)
        #expect(read(real[0], &buf, 16) == 0)
        #expect(homes.count == 0)
    }

    /// A terminal at home (a pty whose master is the "keyboard") shipped
    /// to a stand-in pty: a resize made before a line is typed is applied
    /// there before the line arrives, every time, as on a local terminal.
    /// (Checked only when the read was asked for, a resize during the
    /// home's wait came after the line: a shell that runs its WINCH trap
    /// when `read` returns never printed it.)
    @Test func shippedTerminalGetsEachResizeBeforeTheLineTypedAfterIt() throws {
        var keyboard: Int32 = -1, homeTTY: Int32 = -1
        #expect(ssi_open_pty(&keyboard, &homeTTY) == 0)
        defer { close(keyboard); close(homeTTY) }
        var raw = termios()
        tcgetattr(homeTTY, &raw)
        cfmakeraw(&raw)
        tcsetattr(homeTTY, TCSANOW, &raw)
        // The channel owns (and closes) what it is given: its own copy, so
        // that the test closing homeTTY is not a second close of a number
        // another test may have by then.
        let (homes, server) = try home(.tty, fd: dup(homeTTY))
        defer { server.stop() }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .tty, home: 1, channel: "c1"))
        defer { close(made.processEnd) }
        let s = StandIn(channelID: "c1", home: 1, kind: .tty, fd: made.agentEnd, resource: made.resource, log: { _ in })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }
        tcgetattr(made.processEnd, &raw)
        cfmakeraw(&raw)
        tcsetattr(made.processEnd, TCSANOW, &raw)
        for round in 1...8 {
            // Let the stand-in's read wait at home first (its poll), the
            // moment the old code missed.
            usleep(useconds_t(50_000 + 37_000 * (round % 3)))
            var ws = winsize(ws_row: UInt16(30 + round), ws_col: UInt16(90 + round), ws_xpixel: 0, ws_ypixel: 0)
            #expect(ioctl(homeTTY, UInt(TIOCSWINSZ), &ws) == 0)
            let line = "line \(round)\n"
            _ = line.withCString { write(keyboard, $0, strlen($0)) }
            let got = readAvailable(made.processEnd, until: line.utf8.count)
            var there = winsize()
            _ = ioctl(made.processEnd, UInt(TIOCGWINSZ), &there)
            #expect(String(decoding: got, as: UTF8.self) == line)
            #expect((there.ws_row, there.ws_col) == (ws.ws_row, ws.ws_col), "round \(round): the line came before its resize")
        }
        #expect(s.pause())
        _ = homes
    }

    /// A home terminal (a pty whose master is the "keyboard"), raw, of
    /// size 24x80, shipped as channel c1.
    func homeTerminal() throws -> (keyboard: Int32, tty: Int32, homes: HomeRegistry, server: Server) {
        var keyboard: Int32 = -1, homeTTY: Int32 = -1
        #expect(ssi_open_pty(&keyboard, &homeTTY) == 0)
        var raw = termios()
        tcgetattr(homeTTY, &raw)
        cfmakeraw(&raw)
        tcsetattr(homeTTY, TCSANOW, &raw)
        var ws = winsize(ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(homeTTY, UInt(TIOCSWINSZ), &ws) == 0)
        // The channel owns (and closes) what it is given: its own copy, so
        // that the test closing homeTTY is not a second close of a number
        // another test may have by then.
        let (homes, server) = try home(.tty, fd: dup(homeTTY))
        return (keyboard, homeTTY, homes, server)
    }

    /// The size of a stand-in pty, once it is `rows` x `cols` or after 5 s.
    func windowOf(_ fd: Int32, becoming rows: UInt16, _ cols: UInt16) -> (UInt16, UInt16) {
        var there = winsize()
        for _ in 0..<100 {
            _ = ioctl(fd, UInt(TIOCGWINSZ), &there)
            if there.ws_row == rows && there.ws_col == cols { break }
            usleep(50_000)
        }
        return (there.ws_row, there.ws_col)
    }

    /// A resize reaches a shipped terminal whose process leaves its keys
    /// unread (a full-screen program busy drawing, a stopped job), and
    /// the keys still arrive, all and in order. Before, the stand-in asked
    /// home for nothing while it held keys the process had not taken (it
    /// sat in a blocking write to its pty master), so the new size waited
    /// for the process to read.
    @Test func shippedTerminalGetsAResizeWhileItsKeysAreUnread() throws {
        let (keyboard, homeTTY, homes, server) = try homeTerminal()
        defer { server.stop(); close(keyboard); close(homeTTY) }
        let made = try MadeStandIn.make(ShipSpec(resource: "-", kind: .tty, home: 1, channel: "c1"))
        defer { close(made.processEnd) }
        var raw = termios()
        tcgetattr(made.processEnd, &raw)
        cfmakeraw(&raw)
        tcsetattr(made.processEnd, TCSANOW, &raw)
        let s = StandIn(channelID: "c1", home: 1, kind: .tty, fd: made.agentEnd, resource: made.resource, log: { _ in })
        try s.start { _ throws(SSIError) in try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2) }
        #expect(windowOf(made.processEnd, becoming: 24, 80) == (24, 80))

        // Keys typed at home until nothing more goes in for a second: the
        // stand-in's pty, the relay and the home pty are full (the
        // process end is never read).
        _ = fcntl(keyboard, F_SETFL, fcntl(keyboard, F_GETFL) | O_NONBLOCK)
        var typed: [UInt8] = []
        let began = Date()
        var lastProgress = Date()
        while Date().timeIntervalSince(lastProgress) < 1, Date().timeIntervalSince(began) < 60 {
            let chunk = (0..<4096).map { UInt8(ascii: "a") + UInt8((typed.count + $0) % 26) }
            let n = chunk.withUnsafeBytes { write(keyboard, $0.baseAddress!, $0.count) }
            if n > 0 {
                typed += chunk[0..<n]
                lastProgress = Date()
            } else {
                usleep(20_000)
            }
        }
        #expect(!typed.isEmpty)

        // Resized at home: it reaches the stand-in's pty (and SIGWINCH
        // its process) although none of the keys were taken.
        var ws = winsize(ws_row: 41, ws_col: 99, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(homeTTY, UInt(TIOCSWINSZ), &ws) == 0)
        #expect(windowOf(made.processEnd, becoming: 41, 99) == (41, 99), "the resize waited for the process to read its keys")

        // Asking for the size took no keys and lost none.
        let got = readAvailable(made.processEnd, until: typed.count, timeoutMs: 10_000)
        #expect(got.count == typed.count && got == typed, "\(got.count) of \(typed.count) bytes, in order: \(got == typed)")
        _ = homes
    }

    /// A terminal's process that moves hears of a resize made while it
    /// was frozen. The interleaving of a second move: home told the old
    /// node's stand-in the new size, which applied it after the dump (its
    /// SIGWINCH went to the frozen original, which the move then ends);
    /// the restore gave the new pty that size already (criu restores the
    /// dumped one), so the new stand-in setting it signalled nothing, and
    /// home, having told it, never sent it again. The new stand-in now
    /// signals the foreground group once attached.
    @Test func movedTerminalProcessHearsOfAResizeMadeWhileItWasFrozen() throws {
        let (keyboard, homeTTY, homes, server) = try homeTerminal()
        defer { server.stop(); close(keyboard); close(homeTTY) }
        let connect = { (_: UInt32) throws(SSIError) -> SecureChannel in
            try SecureChannel.connect(address: "127.0.0.1", port: server.port, key: Self.key, localNode: 2)
        }
        // The node the process leaves: its stand-in gets the resize.
        let old = try MadeStandIn.make(ShipSpec(resource: "-", kind: .tty, home: 1, channel: "c1"))
        defer { close(old.processEnd) }
        // Its log is kept: a pause that runs out says where each relay was.
        let said = Locked<[String]>([])
        let leaving = StandIn(channelID: "c1", home: 1, kind: .tty, fd: old.agentEnd, resource: old.resource,
                              log: { line in said.withLock { $0.append(line) } })
        try leaving.start(connect: connect)
        var ws = winsize(ws_row: 41, ws_col: 99, ws_xpixel: 0, ws_ypixel: 0)
        #expect(ioctl(homeTTY, UInt(TIOCSWINSZ), &ws) == 0)
        #expect(windowOf(old.processEnd, becoming: 41, 99) == (41, 99))
        // The move: the old stand-in settles and lets go.
        #expect(leaving.pause(), "\(said.current)")
        leaving.finish()

        // The new node: a pty of the restored size (41x99), and the
        // process on it, waiting for SIGWINCH.
        let new = try MadeStandIn.make(ShipSpec(resource: "-", kind: .tty, home: 1, channel: "c1"))
        defer { close(new.processEnd) }
        #expect(ioctl(new.processEnd, UInt(TIOCSWINSZ), &ws) == 0)
        var out: [Int32] = [-1, -1]
        #expect(ssi_pipe(&out) == 0)
        defer { close(out[0]) }
        var job = JobSpec(root: nil, cwd: "/", argv: ["/bin/sh", "-c", "trap 'echo winch; exit 0' WINCH; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done"],
                          environment: ["PATH=/usr/bin:/bin"], fds: [new.processEnd, out[1], out[1]])
        job.controllingTTY = 0
        let pid = try job.spawn()
        close(out[1])
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        #expect(String(decoding: readAvailable(out[0], until: 6), as: UTF8.self) == "ready\n")
        let arriving = StandIn(channelID: "c1", home: 1, kind: .tty, fd: new.agentEnd, resource: new.resource, log: { _ in })
        try arriving.start(connect: connect)
        #expect(String(decoding: readAvailable(out[0], until: 6, timeoutMs: 5000), as: UTF8.self) == "winch\n",
                "the process on the new node never heard of the resize")
        #expect(windowOf(new.processEnd, becoming: 41, 99) == (41, 99))
        _ = homes
    }
}
