import Testing
import Foundation
import SSICore
import SSIMembership
import SSITestSupport

/// Two process agents on this machine (127.0.0.1 and 127.0.0.2, each with
/// its own state directory and membership view), and the commands against
/// them: onnode's stdio, environment, working directory and exit status
/// go through the real agents and their secure channel. Migration itself
/// needs CRIU, which only works in the VM tests' guests.
@Suite(.serialized) struct AgentPairTests {
    static let ssi = ProcessInfo.processInfo.environment["SSI_BIN"]

    /// `ssi ARGS` as a process of node 1 of `pair` (its agent's state
    /// directory), not started: the caller sets its stdio.
    func onnodeOnNode1(_ args: [String], pair: Pair) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: AgentPairTests.ssi!)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["SSI_STATE_DIR"] = pair.dir + "/node1"
        p.environment = env
        return p
    }
    static let skip: String? = ssi == nil ? "SSI_BIN is not set (scripts/test sets it to the release binary)"
        : getuid() != 0 ? "needs root: the agent starts commands chrooted in the system root" : nil

    /// A listening socket on 127.0.0.1 (a free port) and a client
    /// connected to it (-1 when the connection failed).
    static func loopbackTCP() -> (listener: Int32, client: Int32) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        var slen = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, slen) } }
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &slen) } }
        listen(listener, 1)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let rc = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, slen) } }
        if rc != 0 { close(client); return (listener, -1) }
        return (listener, client)
    }

    /// This test process's port for the agents: one the kernel says is
    /// free, so that two test runs on one machine (a developer's beside a
    /// CI run) do not take each other's agents (a fixed port did).
    static let port = freePort()

    static func freePort() -> Int { freeLoopbackPort().map(Int.init) ?? 17791 }

    /// Two agents on `addresses` and `port`: another suite that runs at
    /// the same time takes other addresses and another port.
    final class Pair {
        let dir: String
        var agents: [Process] = []
        init(addresses: (String, String) = ("127.0.0.1", "127.0.0.2"), port: Int = AgentPairTests.port) throws {
            // A command that exits before reading its stdin: EPIPE, not death.
            signal(SIGPIPE, SIG_IGN)
            dir = NSTemporaryDirectory() + "ssi-proc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let key = dir + "/authkey"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data((0..<256).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
            chmod(key, 0o400)
            for n in [1, 2] {
                let state = dir + "/node\(n)"
                try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
                let view = ClusterView(clusterName: "t", localNode: UInt32(n), quorate: true, expectedVotes: 2, totalVotes: 2, quorum: 2,
                                       nodes: [NodeRecord(number: 1, name: "one", address: addresses.0, state: .up, stage: ""),
                                               NodeRecord(number: 2, name: "two", address: addresses.1, state: .up, stage: "")])
                try view.write(directory: state)
                let p = Process()
                p.executableURL = URL(fileURLWithPath: AgentPairTests.ssi!)
                p.arguments = ["cluster", "proc-agent", "--state-dir", state, "--port", String(port), "--authkey", key, "--system-root", "/"]
                // Kept for the failure message of a test that finds no agent.
                _ = FileManager.default.createFile(atPath: state + "/agent.stderr", contents: nil)
                p.standardError = FileHandle(forWritingAtPath: state + "/agent.stderr")
                try p.run()
                agents.append(p)
            }
            for n in [1, 2] {
                var waited = 0
                while !FileManager.default.fileExists(atPath: dir + "/node\(n)/proc.sock") && waited < 100 {
                    usleep(100_000)
                    waited += 1
                }
            }
        }
        deinit {
            agents.forEach { $0.terminate(); $0.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: dir)
        }

        /// Runs a command as node `n`'s user would; stdin from `input`.
        func run(_ args: [String], node n: Int = 1, input: String = "", cwd: String = "/tmp",
                 env extra: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
            try execute([AgentPairTests.ssi!] + args, node: n, input: input, cwd: cwd, env: extra)
        }

        /// `argv` with node `n`'s state directory in its environment, its
        /// stdin fed `input` (nil: /dev/null), its output collected.
        func execute(_ argv: [String], node n: Int, input: String?, cwd: String,
                     env extra: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: argv[0])
            p.arguments = Array(argv.dropFirst())
            p.currentDirectoryURL = URL(fileURLWithPath: cwd)
            var env = ProcessInfo.processInfo.environment
            env["SSI_STATE_DIR"] = dir + "/node\(n)"
            for (k, v) in extra { env[k] = v }
            p.environment = env
            let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
            p.standardInput = input == nil ? FileHandle.nullDevice : inPipe
            p.standardOutput = outPipe
            p.standardError = errPipe
            try p.run()
            if let input {
                // A command that exits before reading its stdin: EPIPE is an
                // error here, not a trap that ends every test of the run.
                try? inPipe.fileHandleForWriting.write(contentsOf: Data(input.utf8))
                try? inPipe.fileHandleForWriting.close()
            }
            let out = outPipe.fileHandleForReading.readDataToEndOfFile()
            let err = errPipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }
    }

    @Test("onnode: the command runs through node 2's agent with the caller's environment, directory and stdio, and its exit status comes back",
          .enabled(if: skip == nil, Comment(rawValue: skip ?? "")), .timeLimit(.minutes(2)))
    func onnodeThroughTwoAgents() throws {
        let pair = try Pair()
        let r = try pair.run(["onnode", "2", "sh", "-c", "echo cwd=$PWD; echo foo=$FOO; cat; echo err >&2; exit 3"],
                             input: "from-stdin\nsecond line\n", env: ["FOO": "bar baz"])
        #expect(r.status == 3, "\(r)")
        #expect(r.out == "cwd=/tmp\nfoo=bar baz\nfrom-stdin\nsecond line\n", "\(r)")
        #expect(r.err == "err\n", "\(r)")

        // By node name, as `ssi onnode`; a large stream through cat, in order.
        let big = (1...20000).map { "row \($0)\n" }.joined()
        let cat = try pair.run(["onnode", "two", "cat"], input: big)
        #expect(cat.status == 0 && cat.out == big, "\(cat.status) \(cat.err) \(cat.out.count) of \(big.count) bytes")

        // A signal's death is 128+N, and said.
        let killed = try pair.run(["onnode", "2", "sh", "-c", "kill -TERM $$"])
        #expect(killed.status == 143 && killed.err.contains("killed by signal 15"), "\(killed)")

        // A command that does not exist there.
        let missing = try pair.run(["onnode", "2", "no-such-command-xyz"])
        #expect(missing.status == 255 && missing.err.contains("no-such-command-xyz: No such file or directory"), "\(missing)")

        // Bad nodes and usage.
        let nine = try pair.run(["onnode", "9", "true"])
        #expect(nine.status == 255 && nine.err.contains("node 9 is not in the cluster"), "\(nine)")
        let noName = try pair.run(["onnode", "seven", "true"])
        #expect(noName.status == 255 && noName.err.contains("no node named seven") && noName.err.contains("1 (one), 2 (two)"), "\(noName)")
        let usage = try pair.run(["onnode", "2"])
        #expect(usage.status == 2 && usage.err.contains("missing command"), "\(usage)")

        // -p: returns at once; the command goes on there.
        let marker = pair.dir + "/persistent"
        let p = try pair.run(["onnode", "-b", "2", "sh", "-c", "sleep 1; echo done > \(marker)"])
        #expect(p.status == 0 && p.err.contains("runs on node 2"), "\(p)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        var waited = 0
        while !FileManager.default.fileExists(atPath: marker) && waited < 50 { usleep(100_000); waited += 1 }
        #expect(FileManager.default.fileExists(atPath: marker), "the -p command did not finish on node 2")

        // stdin and stdout on one socket: one channel, every byte echoed.
        var sp: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sp) == 0)
        let echo = onnodeOnNode1(["onnode", "2", "cat"], pair: pair)
        echo.standardInput = FileHandle(fileDescriptor: sp[1], closeOnDealloc: false)
        echo.standardOutput = FileHandle(fileDescriptor: sp[1], closeOnDealloc: false)
        echo.standardError = FileHandle.nullDevice
        try echo.run()
        close(sp[1])
        var echoed: [UInt8] = []
        for i in 0..<20 {
            var b = UInt8(65 + i)
            _ = write(sp[0], &b, 1)
            var p = pollfd(fd: sp[0], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 5000) > 0, read(sp[0], &b, 1) == 1 else { break }
            echoed.append(b)
        }
        #expect(echoed == (0..<20).map { UInt8(65 + $0) }, "one byte at a time through the socket and back: \(echoed)")
        shutdown(sp[0], Int32(SHUT_WR))
        echo.waitUntilExit()
        close(sp[0])
        #expect(echo.terminationStatus == 0)

        // stdout a socket that the caller keeps too (a systemd unit's
        // journal stream): the command's end is not a shutdown of it, and
        // the caller writes on after onnode returned (it died of SIGPIPE
        // when home shut the socket down).
        var kept: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &kept) == 0)
        let once = onnodeOnNode1(["onnode", "2", "echo", "from-node-2"], pair: pair)
        once.standardInput = FileHandle.nullDevice
        once.standardOutput = FileHandle(fileDescriptor: kept[1], closeOnDealloc: false)
        once.standardError = FileHandle.nullDevice
        try once.run()
        once.waitUntilExit()
        #expect(once.terminationStatus == 0)
        // Home's copy may still be letting go: a write after the command's
        // end must reach the peer all the same, however long that takes.
        usleep(300_000)
        let after = Array("caller-after\n".utf8)
        let wrote = after.withUnsafeBytes { send(kept[1], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(wrote == after.count, "the caller's write on its own socket after onnode: \(wrote), errno \(errno)")
        close(kept[1])
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        for _ in 0..<50 {
            var p = pollfd(fd: kept[0], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let n = read(kept[0], &chunk, chunk.count)
            if n <= 0 { break }
            got += chunk[0..<n]
            if String(decoding: got, as: UTF8.self).contains("caller-after") { break }
        }
        let text = String(decoding: got, as: UTF8.self)
        #expect(text.contains("from-node-2\n") && text.contains("caller-after\n"), "the peer read: \(text)")
        close(kept[0])

        // A signal to onnode goes to the command; onnode waits for its end.
        let signalled = onnodeOnNode1(["onnode", "2", "sleep", "30"], pair: pair)
        let errPipe = Pipe()
        signalled.standardInput = FileHandle.nullDevice
        signalled.standardOutput = FileHandle.nullDevice
        signalled.standardError = errPipe
        try signalled.run()
        usleep(1_000_000)
        kill(signalled.processIdentifier, SIGTERM)
        var left = 100
        while signalled.isRunning && left > 0 { usleep(100_000); left -= 1 }
        #expect(!signalled.isRunning, "onnode still waits 10 s after SIGTERM")
        if signalled.isRunning { kill(signalled.processIdentifier, SIGKILL) }
        signalled.waitUntilExit()
        let signalledErr = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(signalled.terminationReason == .exit && signalled.terminationStatus == 143 && signalledErr.contains("killed by signal 15"),
                "onnode's SIGTERM reached the command: \(signalled.terminationStatus) \(signalledErr)")

        // The cluster's ps: both nodes' lists, a line per process even for
        // a command line with a newline in it (shown as "?", as procps does).
        let odd = Process()
        odd.executableURL = URL(fileURLWithPath: "/bin/bash")
        odd.arguments = ["-c", "exec -a 'two\nlines' sleep 30"]
        odd.standardInput = FileHandle.nullDevice
        odd.standardOutput = FileHandle.nullDevice
        odd.standardError = FileHandle.nullDevice
        try odd.run()
        defer { kill(odd.processIdentifier, SIGKILL); odd.waitUntilExit() }
        let ps = try pair.run(["cluster", "ps"])
        #expect(ps.status == 0 && ps.out.hasPrefix("NODE     PID   UID COMMAND"), "\(ps)")
        let nodes = Set(ps.out.split(separator: "\n").dropFirst().compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(nodes == ["1", "2"], "\(ps.out.prefix(400))")
        #expect(ps.out.contains(" two?lines 30\n"), "\(ps.out.prefix(400))")

        // A terminal and a TCP connection together: refused before any
        // freeze, with the reason (CRIU is never reached).
        let (listener, tcp) = Self.loopbackTCP()
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0, ptyNumber: Int32 = -1
        _ = ioctl(master, UInt(0x4004_5431) /* TIOCSPTLCK */, &unlock)
        _ = ioctl(master, UInt(0x8004_5430) /* TIOCGPTN */, &ptyNumber)
        let slave = open("/dev/pts/\(ptyNumber)", O_RDWR | O_NOCTTY)
        #expect(slave >= 0, "a pty for the test")
        let both = Process()
        both.executableURL = URL(fileURLWithPath: "/bin/sleep")
        both.arguments = ["30"]
        both.standardInput = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        both.standardOutput = FileHandle(fileDescriptor: tcp, closeOnDealloc: false)
        both.standardError = FileHandle.nullDevice
        try both.run()
        defer { kill(both.processIdentifier, SIGKILL); both.waitUntilExit(); [listener, tcp, master, slave].forEach { close($0) } }
        let refused = try pair.run(["migrate", String(both.processIdentifier), "2"])
        #expect(refused.status == 1 && refused.err.contains("cannot move")
                && refused.err.contains("it has both a terminal and a TCP connection"), "\(refused)")

        // migrate's own checks, before CRIU is ever needed.
        let same = try pair.run(["migrate", String(getpid()), "1"])
        #expect(same.status == 1 && same.err.contains("already on node 1"), "\(same)")
        let badPID = try pair.run(["migrate", "x", "2"])
        #expect(badPID.status == 2 && badPID.err.contains("not a process ID"), "\(badPID)")
    }
}
