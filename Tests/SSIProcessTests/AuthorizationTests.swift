import Testing
import Foundation
import CSSIShim
import SSICore
import SSITestSupport
@testable import SSIProcess

/// A local user gets exactly what they hold: who asks comes from the
/// kernel (SO_PEERCRED, SO_PEERGROUPS), a command runs as exactly that
/// identity with its directory entered as it, and a migration moves only
/// processes the caller owns, every one of a tree.
@Suite struct AuthorizationTests {
    // MARK: who asks

    /// An abstract unix socket address (no file to clean up).
    static func abstractAddress() -> (UnsafeMutablePointer<sockaddr_un>, socklen_t) {
        let a = UnsafeMutablePointer<sockaddr_un>.allocate(capacity: 1)
        a.initialize(to: sockaddr_un())
        a.pointee.sun_family = sa_family_t(AF_UNIX)
        let name = Array("ssi-auth-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))".utf8)
        withUnsafeMutableBytes(of: &a.pointee.sun_path) { p in for (i, b) in name.enumerated() { p[i + 1] = b } }
        return (a, socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.count))
    }

    @Test("SO_PEERCRED and SO_PEERGROUPS name the process that connected: its pid, uid, gid and exactly its groups (also more than the first buffer holds)",
          .enabled(if: AsUser.skip == nil, Comment(rawValue: AsUser.skip ?? "")), .timeLimit(.minutes(1)),
          arguments: [AsUser.groups, (1000..<1100).map { gid_t($0) }])
    func peerCredentialsOfAnotherProcess(groups: [gid_t]) throws {
        let (addr, len) = Self.abstractAddress()
        defer { addr.deallocate() }
        let sa = UnsafeRawPointer(addr).assumingMemoryBound(to: sockaddr.self)
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        try #require(bind(listener, sa, len) == 0 && listen(listener, 1) == 0)
        let child = AsUser.fork(groups: groups) {
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0, connect(s, sa, len) == 0 else { return 2 }
            // Until the test has looked and closes its end.
            var b: UInt8 = 0
            _ = read(s, &b, 1)
            return 0
        }
        try #require(child > 0)
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        try #require(poll(&p, 1, 10_000) == 1, "the child did not connect within 10 s")
        let fd = accept(listener, nil, nil)
        try #require(fd >= 0)
        let caller = try Caller(peerOf: fd)
        #expect(caller.pid == child, "\(caller)")
        #expect(caller.uid == AsUser.nobody && caller.gid == AsUser.nogroup, "\(caller)")
        #expect(caller.groups.sorted() == groups.sorted(), "exactly the child's groups: \(caller)")
        // The /proc fallback (kernels without SO_PEERGROUPS) reads the same,
        // and refuses a pid whose process is not the one that connected.
        #expect(try Caller.groupsFromProc(pid: child, uid: AsUser.nobody, gid: AsUser.nogroup).sorted() == groups.sorted())
        #expect(throws: SSIError.self) { try Caller.groupsFromProc(pid: child, uid: 0, gid: 0) }
        close(fd)
        #expect(AsUser.wait(child) == 0)
    }

    @Test("a socket whose peer the kernel cannot name (a pipe, a TCP connection) is refused: no uid defaults to 0")
    func unnamedPeerRefused() throws {
        func refusal(_ fd: Int32) -> String? {
            do {
                let c = try Caller(peerOf: fd)
                return "accepted as \(c)"
            } catch {
                return error.message
            }
        }
        var p: [Int32] = [-1, -1]
        try #require(pipe(&p) == 0)
        defer { close(p[0]); close(p[1]) }
        let onPipe = refusal(p[0])
        #expect(onPipe?.contains("request refused") == true && onPipe?.contains("SO_PEERCRED") == true, "\(onPipe ?? "")")

        let (listener, tcp) = AgentPairTests.loopbackTCP()
        try #require(tcp >= 0)
        let accepted = accept(listener, nil, nil)
        defer { [listener, tcp, accepted].forEach { close($0) } }
        let onTCP = refusal(accepted)
        #expect(onTCP?.contains("request refused") == true, "\(onTCP ?? "")")
    }

    // MARK: a job as the caller

    /// Runs `job` with stdout and stderr on a pipe: its status and output.
    func run(_ job: JobSpec, stdin: Int32? = nil) throws(SSIError) -> (status: Int32, out: String) {
        var p: [Int32] = [-1, -1]
        guard ssi_pipe(&p) == 0 else { throw SSIError("test", "pipe") }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(p[0]); close(null) }
        var job = job
        job.fds = [stdin ?? null, p[1], p[1]]
        let pid: pid_t
        do throws(SSIError) { pid = try job.spawn() } catch {
            close(p[1])
            throw error
        }
        close(p[1])
        var out: [UInt8] = [], buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(p[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return (AsUser.wait(pid), String(decoding: out, as: UTF8.self))
    }

    func nobodyJob(cwd: String, _ argv: [String]) -> JobSpec {
        var j = JobSpec(root: nil, cwd: cwd, argv: argv, environment: ["PATH=/usr/bin:/bin"], fds: [])
        j.uid = Int32(AsUser.nobody)
        j.gid = Int32(AsUser.nogroup)
        j.groups = AsUser.groups
        return j
    }

    @Test("a job as nobody runs with exactly nobody's uids, gids and groups, and enters its directory as nobody (not under a root-only directory)",
          .enabled(if: AsUser.skip == nil, Comment(rawValue: AsUser.skip ?? "")), .timeLimit(.minutes(1)))
    func jobDropsPrivilegesBeforeItsDirectory() throws {
        let r = try run(nobodyJob(cwd: "/tmp", ["/bin/sh", "-c", AsUser.printIdentity + "; pwd"]))
        #expect(r.status == 0, "\(r)")
        let s = try #require(ProcessStatus(parsing: r.out), "\(r.out)")
        #expect(s.uids == Array(repeating: AsUser.nobody, count: 4) && s.gids == Array(repeating: AsUser.nogroup, count: 4), "\(r.out)")
        #expect(s.groups.sorted() == AsUser.groups.sorted(), "\(r.out)")
        #expect(r.out.hasSuffix("\n/tmp\n"), "\(r.out)")

        let dir = try AsUser.RootOnlyDirectory()
        // The agent's own jobs (criu's, uid -1) still enter it: what follows
        // is refused for nobody's sake, not because the directory is bad.
        let asRoot = try run(JobSpec(root: nil, cwd: dir.inner, argv: ["/bin/cat", "secret"], environment: [], fds: []))
        #expect(asRoot.status == 0 && asRoot.out == AsUser.RootOnlyDirectory.secret, "\(asRoot)")
        do {
            let leaked = try run(nobodyJob(cwd: dir.inner, ["/bin/cat", "secret"]))
            Issue.record("nobody's job entered \(dir.inner) under a 0700 root directory: \(leaked)")
        } catch {
            #expect(error.message.contains("chdir \(dir.inner)") && error.message.contains("Permission denied"), "\(error.message)")
        }

        // A terminal becomes the controlling terminal of nobody's session
        // (TIOCSCTTY now comes after the drop): tty_nr in its stat is set.
        var master: Int32 = -1, slave: Int32 = -1
        try #require(ssi_open_pty(&master, &slave) == 0)
        defer { close(master); close(slave) }
        var ttyJob = nobodyJob(cwd: "/tmp", ["/bin/sh", "-c", "cut -d' ' -f7 /proc/self/stat"])
        ttyJob.controllingTTY = 0
        let onTTY = try run(ttyJob, stdin: slave)
        #expect(onTTY.status == 0 && Int(onTTY.out.filter(\.isNumber)).map { $0 != 0 } == true, "\(onTTY)")

        // A uid without a gid is refused, not run with root's gid.
        var noGID = nobodyJob(cwd: "/tmp", ["/bin/true"])
        noGID.gid = -1
        #expect(throws: SSIError.self) { try run(noGID) }
    }

    @Test("a run request's identity: uid and gid required and in range, groups valid and bounded; never a default of root")
    func runIdentityFromAPeer() throws {
        func identity(_ pairs: [(String, String)]) -> String {
            do {
                let i = try ProcAgent.runIdentity(Fields("run", pairs), from: 1)
                return "\(i.uid) \(i.gid) \(i.groups.map(String.init).joined(separator: ","))"
            } catch {
                return "refused: " + error.message
            }
        }
        #expect(identity([("uid", "1000"), ("gid", "100"), ("group", "100"), ("group", "27")]) == "1000 100 100,27")
        #expect(identity([("uid", "0"), ("gid", "0")]) == "0 0 ")
        #expect(identity([("gid", "100")]).hasPrefix("refused: node 1's request has no valid uid (none)"))
        #expect(identity([("uid", "1000")]).hasPrefix("refused: node 1's request has no valid gid (none)"))
        for bad in ["-1", "4294967295", "2147483648", "", "1e3", " 1000", "0x10"] {
            #expect(identity([("uid", bad), ("gid", "100")]).hasPrefix("refused:"), "uid \(bad)")
        }
        #expect(identity([("uid", "1000"), ("gid", "100"), ("group", "4294967295")]).hasPrefix("refused:"))
        #expect(identity([("uid", "1000"), ("gid", "100"), ("group", "x")]).hasPrefix("refused:"))
        // A control character in a bad value is printed escaped.
        #expect(identity([("uid", "1\u{1b}[2J"), ("gid", "1")]).contains("\"1\\u001B[2J\""))
        let many = (0...Caller.maxGroups).map { ("group", String($0)) }
        #expect(identity([("uid", "1"), ("gid", "1")] + many).contains("more than a process can hold"))
    }

    // MARK: who may move and signal what

    static func status(_ uids: [uid_t], groups: [gid_t] = []) -> ProcessStatus {
        let text = "Name:\tx\nUid:\t" + uids.map(String.init).joined(separator: "\t") + "\nGid:\t1\t1\t1\t1\nGroups:\t"
            + groups.map(String.init).joined(separator: " ") + " \n"
        return ProcessStatus(parsing: text)!
    }

    @Test("migration: every process of the tree must be the caller's (all four uids), unless the caller is root; each refusal names the process and its owner")
    func everyProcessOfTheTreeIsChecked() {
        let mine = Self.status([1000, 1000, 1000, 1000])
        let table: [pid_t: ProcessStatus] = [100: mine, 101: mine, 102: Self.status([0, 0, 0, 0]),
                                             103: Self.status([1000, 0, 0, 0]), 104: mine]
        let tree: [pid_t] = [100, 101, 102, 103, 104]
        let refusals = ProcAgent.ownershipRefusals(tree: tree, uid: 1000, status: { table[$0] })
        #expect(refusals == ["process 102 belongs to uid 0, not to uid 1000: only its owner or root can move it",
                             "process 103 belongs to uid 1000 (effective 0, saved 0, file system 0), not to uid 1000: only its owner or root can move it"])
        #expect(ProcAgent.ownershipRefusals(tree: tree, uid: 0, status: { table[$0] }).isEmpty, "root moves anything")
        #expect(ProcAgent.ownershipRefusals(tree: [100, 101, 104], uid: 1000, status: { table[$0] }).isEmpty)
        // Another user's tree with only its root owned: the root check alone
        // passed this one.
        #expect(ProcAgent.ownershipRefusals(tree: [100, 102], uid: 1000, status: { table[$0] }).count == 1)
        // A child that ended since the tree was read is not there to move;
        // a root that is not there is refused.
        #expect(ProcAgent.ownershipRefusals(tree: [100, 999], uid: 1000, status: { table[$0] }).isEmpty)
        #expect(ProcAgent.ownershipRefusals(tree: [999, 100], uid: 1000, status: { table[$0] }) == ["process 999: no such process"])
    }

    @Test("signals: kill(2)'s rule (the target's real or saved uid is the caller's), so a setuid program the caller started, not a root daemon that borrowed their uid")
    func signalRule() {
        #expect(Self.status([1000, 1000, 1000, 1000]).signallable(by: 1000))
        #expect(Self.status([1000, 0, 0, 0]).signallable(by: 1000), "a setuid program the caller ran")
        #expect(!Self.status([0, 1000, 0, 1000]).signallable(by: 1000), "root with a borrowed effective uid")
        #expect(!Self.status([0, 0, 0, 0]).signallable(by: 1000))
        #expect(!Self.status([1001, 1001, 1001, 1001]).signallable(by: 1000))
        #expect(Self.status([1001, 1001, 1001, 1001]).signallable(by: 0))
    }

    /// A process of nobody's with a child of root's: `sh` starts the child
    /// (root), then becomes nobody's `sleep` by exec through setpriv.
    static func nobodyTreeWithRootChild() throws -> (parent: Process, child: pid_t) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "sleep 60 & exec /usr/bin/setpriv --reuid=\(AsUser.nobody) --regid=\(AsUser.nogroup) --clear-groups sleep 60"]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        for _ in 0..<100 {
            let tree = ProcessInspector.tree(root: pid)
            if tree.count == 2, ProcessStatus.of(pid)?.uids[0] == AsUser.nobody, ProcessInspector.command(pid).hasPrefix("sleep") {
                return (p, tree[1])
            }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        throw SSIError("test", "the tree of \(pid) did not become nobody's sleep with a child: \(ProcessInspector.tree(root: pid))")
    }

    @Test("migration: a real tree of nobody's with a child of root's is refused for nobody, naming the child",
          .enabled(if: AsUser.skip == nil, Comment(rawValue: AsUser.skip ?? "")), .timeLimit(.minutes(1)))
    func realTreeWithRootChild() throws {
        let (parent, child) = try Self.nobodyTreeWithRootChild()
        defer { kill(child, SIGKILL); kill(parent.processIdentifier, SIGKILL); parent.waitUntilExit() }
        let tree = ProcessInspector.tree(root: parent.processIdentifier)
        let refusals = ProcAgent.ownershipRefusals(tree: tree, uid: AsUser.nobody, status: ProcessStatus.of)
        #expect(refusals == ["process \(child) belongs to uid 0, not to uid \(AsUser.nobody): only its owner or root can move it"], "\(refusals)")
        #expect(ProcAgent.ownershipRefusals(tree: tree, uid: 0, status: ProcessStatus.of).isEmpty)
    }

    @Test("messages reach the terminal with control characters escaped (newline and tab kept)")
    func terminalSafeMessages() {
        #expect(ProcTools.terminalSafe("a\u{1b}]0;owned\u{07}b\nc\td\u{7f}\u{9b}é") == "a\\u001B]0;owned\\u0007b\nc\td\\u007F\\u009Bé")
        #expect(ProcTools.terminalSafe("plain: text") == "plain: text")
    }

    // MARK: parsers

    static let realStatus = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""

    @Test("/proc/PID/status: Uid and Gid need their four numbers; Groups bounded; anything else is nil")
    func statusParsing() {
        let s = ProcessStatus(parsing: "Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \n")
        #expect(s?.uids == [1, 2, 3, 4] && s?.gids == [5, 6, 7, 8] && s?.groups == [9, 10])
        #expect(ProcessStatus(parsing: "Uid:\t1\t2\t3\nGid:\t5\t6\t7\t8\n") == nil)
        #expect(ProcessStatus(parsing: "Uid:\t1\t2\t3\t4\t5\nGid:\t5\t6\t7\t8\n") == nil)
        #expect(ProcessStatus(parsing: "Uid:\t-1\t2\t3\t4\nGid:\t5\t6\t7\t8\n") == nil)
        #expect(ProcessStatus(parsing: "Uid:\t4294967296\t2\t3\t4\nGid:\t5\t6\t7\t8\n") == nil)
        #expect(ProcessStatus(parsing: "Gid:\t5\t6\t7\t8\n") == nil)
        #expect(ProcessStatus(parsing: Self.realStatus)?.uids[0] == getuid())
        let tooMany = "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t" + String(repeating: "1 ", count: Caller.maxGroups + 1) + "\n"
        #expect(ProcessStatus(parsing: tooMany) == nil)
    }

    @Test("Fuzz: /proc status lines never trap")
    func fuzzProcStatus() {
        Fuzz.run("proc-status", seeds: Fuzz.seeds([Self.realStatus, "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n"]),
                 iterations: Fuzz.iterations(default: 500)) { bytes in
            if let s = ProcessStatus(parsing: String(decoding: bytes, as: UTF8.self)) {
                _ = s.movable(by: 1000)
                _ = s.signallable(by: 1000)
                _ = s.ownerDescription
            }
        }
    }

    @Test("Fuzz: a run request's identity never traps")
    func fuzzRunIdentity() {
        let request = Fields("run", [("cwd", "/tmp"), ("uid", "1000"), ("gid", "100"), ("arg", "id"), ("group", "100"), ("group", "27")])
        Fuzz.run("run-identity", seeds: [request.encoded], iterations: Fuzz.iterations(default: 400)) { bytes in
            _ = try ProcAgent.runIdentity(try Fields.decode(bytes), from: 2)
        }
    }
}

// MARK: two real agents, a caller that is nobody

extension AgentPairTests {
    /// The bytes LocalChannel sends for `f` (its framing, whatever it is).
    static func frame(_ f: Fields) throws -> [UInt8] {
        var sp: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sp) == 0)
        defer { close(sp[1]) }
        let ch = LocalChannel(fd: sp[0])
        try ch.send(f)
        ch.close()
        var out: [UInt8] = [], buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(sp[1], &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    @Test("as nobody, onnode runs as exactly nobody (uid, gid, groups), cannot enter a directory nobody cannot, a request naming another process as client changes nothing, and a tree with a root child does not move",
          .enabled(if: skip == nil && AsUser.skip == nil, Comment(rawValue: skip ?? AsUser.skip ?? "")), .timeLimit(.minutes(2)))
    func callerIsWhoTheKernelSays() throws {
        let pair = try Pair()
        let nobodyIDs = (uids: Array(repeating: AsUser.nobody, count: 4), gids: Array(repeating: AsUser.nogroup, count: 4),
                         groups: AsUser.groups.sorted())
        func ids(_ out: String) -> String {
            guard let s = ProcessStatus(parsing: out) else { return "no status in \(out)" }
            return "\(s.uids) \(s.gids) \(s.groups.sorted())"
        }
        let expected = "\(nobodyIDs.uids) \(nobodyIDs.gids) \(nobodyIDs.groups)"

        // Exactly nobody's ids and groups on node 2.
        let id = try pair.runAsNobody(["onnode", "2", "sh", "-c", AsUser.printIdentity])
        #expect(id.status == 0 && ids(id.out) == expected, "\(id)")

        // Not into a directory under a root-only one (root can: the control).
        let dir = try AsUser.RootOnlyDirectory()
        let asRoot = try pair.run(["onnode", "2", "cat", "secret"], cwd: dir.inner)
        #expect(asRoot.status == 0 && asRoot.out == AsUser.RootOnlyDirectory.secret, "\(asRoot)")
        let refused = try pair.runAsNobody(["onnode", "2", "cat", "secret"], cwd: dir.inner)
        #expect(refused.status == 255 && refused.err.contains("chdir \(dir.inner): Permission denied")
                && !refused.out.contains("secret"), "\(refused)")

        // A request of nobody's naming a root process with the disk and
        // shadow groups as its client, and uid, gid and a group 0 of its own.
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        victim.arguments = ["--groups=6,42", "sleep", "60"]
        try victim.run()
        // SIGKILL: the test runner's blocked signals are the victim's too.
        defer { kill(victim.processIdentifier, SIGKILL); victim.waitUntilExit() }
        var forged = Fields("onnode", [("node", "2"), ("persistent", "0"), ("cwd", "/tmp"), ("client", String(victim.processIdentifier)),
                                       ("uid", "0"), ("gid", "0"), ("group", "0")])
        for a in ["sh", "-c", AsUser.printIdentity] { forged.add("arg", a) }
        forged.add("env", "PATH=/usr/bin:/bin")
        let frame = try Self.frame(forged)
        let path = Array((pair.dir + "/node1/" + ProcAgent.socketName).utf8)
        let addr = UnsafeMutablePointer<sockaddr_un>.allocate(capacity: 1)
        defer { addr.deallocate() }
        addr.initialize(to: sockaddr_un())
        addr.pointee.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.pointee.sun_path) { p in for (i, b) in path.enumerated() { p[i] = b } }
        let sa = UnsafeRawPointer(addr).assumingMemoryBound(to: sockaddr.self)
        let salen = socklen_t(MemoryLayout<sockaddr_un>.size)
        var out: [Int32] = [-1, -1]
        try #require(pipe(&out) == 0)
        let null = open("/dev/null", O_RDWR)
        let stdio = UnsafeMutablePointer<Int32>.allocate(capacity: 3)
        defer { stdio.deallocate() }
        stdio.initialize(from: [null, out[1], out[1]], count: 3)
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 1)
        defer { bytes.deallocate() }
        bytes.copyBytes(from: frame)
        let client = AsUser.fork(keep: [null, out[1]]) {
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0, connect(s, sa, salen) == 0 else { return 2 }
            guard ssi_send_fds(s, stdio, 3, bytes.baseAddress, bytes.count) == bytes.count else { return 3 }
            close(null)
            close(out[1])
            // Onnode's part: stay connected until the test is done.
            var b: UInt8 = 0
            while read(s, &b, 1) > 0 {}
            return 0
        }
        close(null)
        close(out[1])
        var got: [UInt8] = [], buf = [UInt8](repeating: 0, count: 4096)
        var p = pollfd(fd: out[0], events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, 20_000) == 1 {
            let n = read(out[0], &buf, buf.count)
            if n <= 0 { break }
            got += buf[0..<n]
        }
        close(out[0])
        kill(client, SIGKILL)
        _ = AsUser.wait(client)
        let forgedOut = String(decoding: got, as: UTF8.self)
        #expect(ids(forgedOut) == expected, "the client field, uid, gid and group in the request changed who ran it: \(forgedOut)")

        // A tree of nobody's with a root child: nobody cannot move it.
        let (parent, child) = try AuthorizationTests.nobodyTreeWithRootChild()
        defer { kill(child, SIGKILL); kill(parent.processIdentifier, SIGKILL); parent.waitUntilExit() }
        let moved = try pair.runAsNobody(["migrate", "-t", String(parent.processIdentifier), "2"])
        #expect(moved.status == 1 && moved.err.contains("process \(child) belongs to uid 0, not to uid \(AsUser.nobody)"), "\(moved)")

        // A refusal naming a directory whose name holds an escape sequence
        // reaches the terminal escaped.
        let odd = pair.dir + "/odd\u{1b}]0;owned\u{07}dir"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: false)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 3<\"$D\"; exec sleep 60"]
        holder.environment = ["D": odd, "PATH": "/usr/bin:/bin"]
        holder.standardInput = FileHandle.nullDevice
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        try holder.run()
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        for _ in 0..<100 where !ProcessInspector.command(holder.processIdentifier).hasPrefix("sleep") { usleep(20_000) }
        let named = try pair.run(["migrate", String(holder.processIdentifier), "2"])
        #expect(named.status == 1 && named.err.contains("odd\\u001B]0;owned\\u0007dir") && !named.err.contains("\u{1b}"), "\(named)")
    }
}
