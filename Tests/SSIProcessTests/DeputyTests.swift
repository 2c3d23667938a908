#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSITestSupport
@testable import SSIProcess
import Testing

@Suite struct DeputyTests {
    @Test("the deputy's lines: each message round-trips; numbers out of range, other words and long lines are refused")
    func messages() {
        for m in [DeputyMessage.exit(0), .exit(255), .killed(9), .killed(64), .stop(SIGTSTP), .stop(SIGSTOP), .signal(2), .signal(64)] {
            var buffer = Array(m.line.utf8)
            #expect(DeputyMessage.take(&buffer) == [m] && buffer.isEmpty, "\(m)")
        }
        for bad in ["exit 256", "exit -1", "killed 0", "killed 65", "stop 15", "signal 0", "exit  1", "exit 1 2", "exit", "EXIT 1",
                    "exit 0x1", "exit +1", "exit 0007", "sig 1"] {
            #expect(DeputyMessage.decode(ArraySlice(bad.utf8)) == nil, "\(bad)")
        }
        // Two lines and a half: two messages, the half kept.
        var buffer = Array("signal 2\nsignal 20\nsig".utf8)
        #expect(DeputyMessage.take(&buffer) == [.signal(2), .signal(20)] && buffer == Array("sig".utf8))
        var long = [UInt8](repeating: UInt8(ascii: "1"), count: DeputyMessage.maxLine + 1)
        #expect(DeputyMessage.take(&long) == nil, "a line without an end, longer than any message")
    }

    @Test("Fuzz: the deputy's lines never trap, and what decodes encodes back to the same line")
    func messagesFuzz() {
        let seeds = Fuzz.seeds(["exit 7\n", "killed 15\nstop 20\n", "signal 28\nsignal 18\n"])
        var mismatches = 0
        Fuzz.run("deputy-lines", seeds: seeds, iterations: Fuzz.iterations(default: 500)) { bytes in
            var buffer = bytes
            guard let ms = DeputyMessage.take(&buffer) else { return }
            if ms.map(\.line).joined() + String(decoding: buffer, as: UTF8.self) != String(decoding: bytes, as: UTF8.self) { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test("a deputy's reports: each acted on once, in the order of its sender's numbers, per node (a report sent again after a lost answer is dropped)")
    func reportNumbers() {
        let r = DeputyRecord(pid: 70001, uid: 0, node: 2)
        #expect(r.isNew(report: 10, from: 2))
        #expect(!r.isNew(report: 10, from: 2), "the same report again")
        #expect(!r.isNew(report: 9, from: 2), "an older one")
        #expect(r.isNew(report: 11, from: 2))
        // Another node's numbers are its own (the process moved on).
        #expect(r.isNew(report: 3, from: 3))
        #expect(!r.isNew(report: 3, from: 3))
        #expect(r.isNew(report: 12, from: 2))
    }

    @Test("the deputy events a node reports home: encoded in a deputy request and decoded back; values out of range refused")
    func events() throws {
        for e in [DeputyEvent.at(node: 3), .exited(code: 7), .killed(signal: 15), .stopped(signal: SIGTSTP), .continued] {
            let f = PeerRequest.deputy(pid: 70001, event: e, seq: 1_765_000_000_000_001).encode()
            #expect(try PeerRequest.decode(try Fields.decode(f.encoded), from: 2) == .deputy(pid: 70001, event: e, seq: 1_765_000_000_000_001))
        }
        for (name, value) in [("at", 0), ("exited", 256), ("killed", 0), ("killed", 65), ("stopped", 15), ("continued", 1), ("gone", 1)] {
            let f = Fields("deputy", [("pid", "70001"), ("event", name), ("value", String(value)), ("seq", "1")])
            #expect(throws: ProcMessageError.self, "\(name) \(value)") { try PeerRequest.decode(try Fields.decode(f.encoded), from: 2) }
        }
        // A report without its number, or with one that is no number.
        for seq in [nil, "-1", "x", "18446744073709551616"] as [String?] {
            var f = Fields("deputy", [("pid", "70001"), ("event", "continued"), ("value", "0")])
            if let seq { f.add("seq", seq) }
            #expect(throws: ProcMessageError.self, "seq \(seq ?? "none")") { try PeerRequest.decode(try Fields.decode(f.encoded), from: 2) }
        }
        // The restore request names the deputy's node, or none.
        var r = RestoreRequest(id: "1-70001-5", pid: 70001, tasks: [70001], images: nil, ships: [], termios: [], reports: [], deputy: 1)
        #expect(try RestoreRequest.decode(try Fields.decode(r.encode().encoded)).deputy == 1)
        r.deputy = nil
        #expect(try RestoreRequest.decode(try Fields.decode(r.encode().encoded)).deputy == nil)
        var zero = r.encode()
        zero.add("deputy", "0")
        #expect(throws: ProcMessageError.self) { try RestoreRequest.decode(try Fields.decode(zero.encoded)) }
    }

    @Test("the injected page: the abstract socket address, the mask without SIGCONT, the strings, argv and envp as relocated pointers")
    func image() throws {
        let img = try #require(DeputyImage.make(socketName: "ssi-deputy-1-2-3", path: "/run/ssi/root/usr/bin/ssi",
                                                argv: ["ssi-deputy", "sleep", "100"], environment: ["SSI_DEPUTY_COMM=sleep"]))
        #expect(Array(img.blob[0..<3]) == [UInt8(AF_UNIX), 0, 0], "family, then the abstract name's 0")
        #expect(Array(img.blob[3..<19]) == Array("ssi-deputy-1-2-3".utf8))
        let mask = img.blob[112..<120].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        #expect(mask == UInt64.max & ~(UInt64(1) << 17), "every signal but SIGCONT (18) blocked")
        func string(at off: Int) -> String { String(decoding: img.blob[off...].prefix { $0 != 0 }, as: UTF8.self) }
        func pointer(at off: Int) -> Int {
            img.blob[off..<off + 8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        }
        #expect(string(at: img.pathOffset) == "/run/ssi/root/usr/bin/ssi")
        #expect((0..<3).map { string(at: pointer(at: img.argvOffset + 8 * $0)) } == ["ssi-deputy", "sleep", "100"])
        #expect(pointer(at: img.argvOffset + 24) == 0, "argv ends with NULL")
        #expect(string(at: pointer(at: img.envpOffset)) == "SSI_DEPUTY_COMM=sleep" && pointer(at: img.envpOffset + 8) == 0)
        #expect(img.relocations == [img.argvOffset, img.argvOffset + 8, img.argvOffset + 16, img.envpOffset],
                "exactly the pointer words are relocated, never the NULLs")
        #expect(img.blob.count % 8 == 0 && img.blob.count <= DeputyImage.pageSize)
        // Too much for the page, or a NUL in a string: nil, not a bad page.
        #expect(DeputyImage.make(socketName: "s", path: "/x", argv: [String(repeating: "a", count: 5000)], environment: []) == nil)
        #expect(DeputyImage.make(socketName: "s", path: "/x\0y", argv: [], environment: []) == nil)
        // The argv is cut to its budget, its mark first.
        let args = DeputyImage.arguments(command: ["cc"] + Array(repeating: String(repeating: "x", count: 100), count: 50))
        #expect(args.first == "ssi-deputy" && args.dropFirst().joined(separator: " ").utf8.count <= 2048 && args.count < 51)
    }

    @Test("the reaper tells ends, stops and continues apart (the W* macros Swift does not import)")
    func reaperEvents() {
        #expect(Reaper.event(7 << 8) == .ended(.exited(7)))
        #expect(Reaper.event(15) == .ended(.signaled(15)))
        #expect(Reaper.event(SIGTSTP << 8 | 0x7f) == .stopped(SIGTSTP))
        #expect(Reaper.event(0xffff) == .continued)
    }

    @Test("which signals a process handles: SigCgt and SigIgn of a real process")
    func handles() {
        // This test process: SIGPIPE ignored by some suites, SIGTSTP at its default.
        signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, SIG_DFL) }
        #expect(ProcessInspector.handles(getpid(), signal: SIGUSR2))
        #expect(!ProcessInspector.handles(getpid(), signal: SIGTSTP))
        #expect(!ProcessInspector.handles(getpid(), signal: 0))
    }

    @Test("ssi kill's signal names: names with or without SIG, any case, and numbers; others refused")
    func signalNames() {
        #expect(ProcTools.signalNumber("TERM") == 15 && ProcTools.signalNumber("sigkill") == 9 && ProcTools.signalNumber("Tstp") == 20)
        #expect(ProcTools.signalNumber("0") == 0 && ProcTools.signalNumber("64") == 64)
        #expect(ProcTools.signalNumber("65") == nil && ProcTools.signalNumber("NOPE") == nil && ProcTools.signalNumber("") == nil)
    }

    /// A real child of this test (sleep), stopped, made to exec the real
    /// ssi binary as its deputy by the real injection: what its parent
    /// (this test) sees through waitpid, and what the deputy says.
    static func deputyChild(_ ssi: String) throws -> (pid: pid_t, channel: Int32) {
        let pid = try Process.spawn("/bin/sleep", ["sleep", "100"], environment: [])
        kill(pid, SIGSTOP)
        var st: Int32 = 0
        #expect(waitpid(pid, &st, WUNTRACED) == pid && Reaper.event(st) == .stopped(SIGSTOP))
        let name = "ssi-deputy-test-\(getpid())-\(pid)"
        let listener = try abstractListener(name)
        defer { close(listener) }
        let image = try #require(DeputyImage.make(socketName: name, path: ssi, argv: DeputyImage.arguments(command: ["sleep", "100"]),
                                                  environment: ["SSI_DEPUTY_COMM=sleep", "SSI_DEPUTY_TTY=0"]))
        var step: UnsafePointer<CChar>? = nil
        let relocs = image.relocations
        let rc = image.blob.withUnsafeBufferPointer { b in
            relocs.withUnsafeBufferPointer { r in
                ssi_inject_deputy(pid, name, Deputy.channel, b.baseAddress, b.count, r.baseAddress, r.count,
                                  image.pathOffset, image.argvOffset, image.envpOffset, -1, &step)
            }
        }
        #expect(rc == 0, "injection: \(step.map { String(cString: $0) } ?? "?"): \(errnoDescription(errno))")
        kill(pid, SIGCONT)
        // The continue, as the parent sees it.
        #expect(waitpid(pid, &st, WCONTINUED) == pid && Reaper.event(st) == .continued)
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        #expect(pollRetrying(&p, timeoutMs: 5000) == 1, "the deputy connects")
        let fd = accept(listener, nil, nil)
        return (pid, fd)
    }

    static func line(_ fd: Int32) -> String {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard pollRetrying(&p, timeoutMs: 5000) == 1 else { return "(nothing in 5 s)" }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : "(end)"
    }

    @Test("a real deputy (the stopped child made to exec ssi-deputy): same PID and parent, its command marked and its name kept; it forwards signals; it stops, continues and exits as it is told, and its parent's waitpid sees each",
          .enabled(if: BuiltBinary.ssi != nil && getuid() == 0, "needs the built ssi (SSI_BIN) and root (ptrace)"))
    func realDeputy() throws {
        let ssi = try #require(BuiltBinary.ssi)
        let (pid, fd) = try Self.deputyChild(ssi)
        defer { close(fd); kill(pid, SIGKILL) }
        // Signals it receives are said, not acted on (the first answer
        // also says that it runs its loop, its start-up done).
        kill(pid, SIGUSR1)
        #expect(Self.line(fd) == "signal 10\n")
        kill(pid, SIGINT)
        #expect(Self.line(fd) == "signal 2\n")
        let cmdline = ProcessInspector.arguments(pid)
        #expect(cmdline == ["ssi-deputy", "sleep", "100"], "\(cmdline)")
        #expect((try? FileSystem.readText("/proc/\(pid)/comm")) == "sleep\n")
        #expect((try? FileSystem.readText("/proc/\(pid)/status"))?.contains("\nPPid:\t\(getpid())\n") == true, "its parent is still this test")
        // Its descriptors: /dev/null on 0-2, the agent's socket, its
        // signalfd; nothing it had as the process.
        let fds = ((try? FileSystem.list("/proc/\(pid)/fd")) ?? []).compactMap { Int($0) }.sorted()
        #expect(fds == [0, 1, 2, 3, 4], "\(fds)")
        #expect((try? FileSystem.readLink("/proc/\(pid)/fd/1")) == "/dev/null")
        // Told to stop (the process stopped on SIGTSTP there): the parent
        // sees WSTOPSIG 20; its continue is said again.
        writeAll(fd, DeputyMessage.stop(SIGTSTP).line)
        var st: Int32 = 0
        #expect(waitpid(pid, &st, WUNTRACED) == pid && Reaper.event(st) == .stopped(SIGTSTP))
        kill(pid, SIGCONT)
        #expect(waitpid(pid, &st, WCONTINUED) == pid && Reaper.event(st) == .continued)
        #expect(Self.line(fd) == "signal 18\n")
        // Told how the process ended: the parent sees that exit.
        writeAll(fd, DeputyMessage.exit(7).line)
        #expect(waitpid(pid, &st, 0) == pid && Reaper.event(st) == .ended(.exited(7)))
    }

    /// The host's cgroup2 hierarchy with a freezer (pure v2, or the
    /// hybrid layout's "unified"), for the freezer tests.
    static let cgroup2: String? = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].first {
        FileSystem.exists($0 + "/cgroup.procs") && FileSystem.exists($0 + "/cgroup.subtree_control")
    }

    @Test("a move's freeze in a cgroup: a threaded process frozen, its parent sees no stop; thawed, it runs on in its own cgroup and the cgroup goes; frozen again and made a deputy by the real injection, still no stop or continue, its threads gone, back in its own cgroup",
          .enabled(if: BuiltBinary.ssi != nil && getuid() == 0 && cgroup2 != nil && FileSystem.exists("/usr/bin/python3"),
                   "needs the built ssi (SSI_BIN), root (ptrace, cgroups), a cgroup2 hierarchy and python3 (a threaded child)"))
    func frozenDeputy() throws {
        let ssi = try #require(BuiltBinary.ssi)
        let mount = try #require(Self.cgroup2)
        // Three threads besides the main one, each writing its tick.
        let ticks = "/tmp/ssi-freeze-ticks-\(getpid())"
        defer { unlink(ticks) }
        let pid = try Process.spawn("/usr/bin/python3", ["python3", "-c", """
            import threading, time, os
            def tick():
                while True:
                    with open("\(ticks)", "a") as f: f.write("t\\n")
                    time.sleep(0.05)
            for _ in range(3): threading.Thread(target=tick, daemon=True).start()
            time.sleep(100)
            """], environment: [])
        defer { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0) }
        for _ in 0..<100 where ((try? FileSystem.list("/proc/\(pid)/task")) ?? []).count < 4 { usleep(20_000) }
        #expect(((try? FileSystem.list("/proc/\(pid)/task")) ?? []).count == 4, "python started its threads")
        let home = TreeFreezer.cgroup(of: pid)
        var st: Int32 = 0
        func noStop() -> Bool { waitpid(pid, &st, WUNTRACED | WCONTINUED | WNOHANG) == 0 }
        func tickCount() -> Int { ((try? FileSystem.readText(ticks)) ?? "").count }

        // Frozen, then thawed: nothing ticks meanwhile, then it ticks on.
        let a = try TreeFreezer.freeze(name: "ssi-test-a-\(getpid())", mount: mount, criuMount: "/c", tree: { [pid] })
        #expect(a.criuPath == "/c/ssi-test-a-\(getpid())" && a.isFrozen)
        #expect(TreeFreezer.cgroup(of: pid)?.hasSuffix("/ssi-test-a-\(getpid())") == true)
        let before = tickCount()
        usleep(300_000)
        #expect(tickCount() == before, "frozen: no thread runs")
        #expect(noStop(), "its parent sees no stop")
        a.thaw()
        #expect(TreeFreezer.cgroup(of: pid) == home, "back in its own cgroup")
        #expect(!FileSystem.exists(a.path), "the move's cgroup is removed")
        usleep(300_000)
        #expect(tickCount() > before, "thawed: it runs on")
        #expect(noStop(), "and its parent saw no continue either")

        // Frozen again, made a deputy through the freezer.
        let b = try TreeFreezer.freeze(name: "ssi-test-b-\(getpid())", mount: mount, criuMount: "/c", tree: { [pid] })
        let name = "ssi-deputy-freeze-\(getpid())-\(pid)"
        let listener = try abstractListener(name)
        defer { close(listener) }
        let image = try #require(DeputyImage.make(socketName: name, path: ssi, argv: DeputyImage.arguments(command: ["python3"]),
                                                  environment: ["SSI_DEPUTY_COMM=python3", "SSI_DEPUTY_TTY=0"]))
        let frozenTicks = tickCount()
        let freezeFile = b.openFreezeFile()
        #expect(freezeFile >= 0)
        var step: UnsafePointer<CChar>? = nil
        let relocs = image.relocations
        let rc = image.blob.withUnsafeBufferPointer { bb in
            relocs.withUnsafeBufferPointer { r in
                ssi_inject_deputy(pid, name, Deputy.channel, bb.baseAddress, bb.count, r.baseAddress, r.count,
                                  image.pathOffset, image.argvOffset, image.envpOffset, freezeFile, &step)
            }
        }
        close(freezeFile)
        #expect(rc == 0, "injection: \(step.map { String(cString: $0) } ?? "?"): \(errnoDescription(errno))")
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        #expect(pollRetrying(&p, timeoutMs: 5000) == 1, "the deputy runs and connects, with no SIGCONT")
        let fd = accept(listener, nil, nil)
        defer { close(fd) }
        b.release(deputy: pid)
        #expect(tickCount() == frozenTicks, "no thread of the process ran between the freeze and the exec")
        #expect(((try? FileSystem.list("/proc/\(pid)/task")) ?? []) == [String(pid)], "the exec ended the other threads")
        #expect(ProcessInspector.arguments(pid).first == "ssi-deputy")
        #expect(TreeFreezer.cgroup(of: pid) == home && !FileSystem.exists(b.path), "the deputy is back in its own cgroup, the move's is gone")
        #expect(noStop(), "its parent saw neither a stop nor a continue")
        kill(pid, SIGUSR1)
        #expect(Self.line(fd) == "signal 10\n", "the deputy forwards what it gets")
    }

    @Test("a real deputy ends by the signal that ended its process, and as SIGKILL when its agent goes",
          .enabled(if: BuiltBinary.ssi != nil && getuid() == 0, "needs the built ssi (SSI_BIN) and root (ptrace)"))
    func realDeputyEnds() throws {
        let ssi = try #require(BuiltBinary.ssi)
        var st: Int32 = 0
        let (a, fa) = try Self.deputyChild(ssi)
        writeAll(fa, DeputyMessage.killed(SIGTERM).line)
        #expect(waitpid(a, &st, 0) == a && Reaper.event(st) == .ended(.signaled(SIGTERM)))
        close(fa)
        let (b, fb) = try Self.deputyChild(ssi)
        close(fb)
        #expect(waitpid(b, &st, 0) == b && Reaper.event(st) == .ended(.signaled(SIGKILL)))
    }

    /// `sh` with job control leading a session on pty `slave`: it starts
    /// `sleep 30 &` (its background job, in a group of its own), then runs
    /// `then`. Returns the shell and the job once the job is started (0
    /// if it never said so within 3 s).
    static func jobControlShell(on slave: Int32, then: String) throws -> (shell: pid_t, job: pid_t) {
        let file = "/tmp/ssi-jobshell-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(file) }
        var spec = SpawnSpec(.path("/bin/sh"), argv: ["sh", "-c", "set -m; sleep 30 & echo $! > \(file); \(then)"], environment: ["PATH=/usr/bin:/bin"])
        spec.newSession = true
        spec.controllingTTY = slave
        spec.descriptors = .exactly([.fd(slave), .fd(slave), .fd(slave)])
        let shell = try spec.spawn()
        var job: pid_t = 0
        for _ in 0..<300 where job == 0 {
            job = pid_t(((try? FileSystem.readText(file)) ?? "").trimmingCharacters(in: "\n")) ?? 0
            if job == 0 { Process.sleep(milliseconds: 10) }
        }
        return (shell, job)
    }

    @Test("keys go to a process only while its group is its terminal's foreground group; another terminal, or a process gone: always; orphaned groups as the kernel sees them")
    func mayRead() throws {
        var master: Int32 = -1, slave: Int32 = -1
        #expect(ssi_open_pty(&master, &slave) == 0)
        defer { close(master); close(slave) }
        // A shell leading a session on the pty, with job control: its
        // group is the foreground group, its background job's is not.
        let (shell, background) = try Self.jobControlShell(on: slave, then: "sleep 30")
        defer {
            kill(background, SIGKILL)
            kill(shell, SIGKILL)
            var st: Int32 = 0
            waitpid(shell, &st, 0)
        }
        #expect(background > 0, "the shell started its background job")
        // Its foreground job (the last sleep) leads the terminal's
        // foreground group (stat's tpgid); the shell waits for it.
        var foreground: pid_t = 0
        for _ in 0..<300 where foreground == 0 || foreground == shell {
            let stat = (try? FileSystem.readText("/proc/\(shell)/stat")) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            foreground = fields.count > 5 ? pid_t(fields[5]) ?? 0 : 0
            if foreground == 0 || foreground == shell { Process.sleep(milliseconds: 10) }
        }
        defer { kill(foreground, SIGKILL) }
        #expect(ProcessInspector.mayRead(terminal: slave, pid: foreground), "the foreground job: keys")
        #expect(!ProcessInspector.mayRead(terminal: slave, pid: shell), "the shell while its job has the terminal: none")
        #expect(!ProcessInspector.mayRead(terminal: slave, pid: background), "a background job of that terminal: none")
        #expect(ProcessInspector.isForeground(foreground) && !ProcessInspector.isForeground(background) && !ProcessInspector.isForeground(shell),
                "the foreground job's group is its terminal's foreground group, the others' are not")
        #expect(!ProcessInspector.isForeground(4_000_000), "a process gone: no")
        // Orphaned groups: the shell leads its session, its parent (this
        // test) is in another: orphaned. Its jobs' parent is the shell, in
        // the same session and another group: not orphaned.
        #expect(ProcessInspector.group(of: shell) == shell && ProcessInspector.isOrphaned(group: shell))
        #expect(ProcessInspector.group(of: background) == background && !ProcessInspector.isOrphaned(group: background))
        var other: Int32 = -1, otherSlave: Int32 = -1
        #expect(ssi_open_pty(&other, &otherSlave) == 0)
        defer { close(other); close(otherSlave) }
        #expect(ProcessInspector.mayRead(terminal: otherSlave, pid: background), "not its controlling terminal: always")
        #expect(ProcessInspector.mayRead(terminal: slave, pid: 4_000_000), "a process gone: always")
    }

    @Test("a process asleep in a read of its terminal is seen (not one asleep elsewhere, nor one stopped in the read); a background job is stopped with SIGTTIN, an orphaned group is not")
    func backgroundRead() throws {
        var master: Int32 = -1, slave: Int32 = -1
        #expect(ssi_open_pty(&master, &slave) == 0)
        defer { close(master); close(slave) }
        var name = [CChar](repeating: 0, count: 64)
        #expect(ssi_pty_slave_name(master, &name, name.count) == 0)
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        func state(_ pid: pid_t) -> Substring {
            let stat = (try? FileSystem.readText("/proc/\(pid)/stat")) ?? ""
            return stat.split(separator: ")").last?.split(separator: " ").first ?? ""
        }
        var reader = SpawnSpec(.path("/bin/cat"), argv: ["cat"], environment: [])
        reader.descriptors = .exactly([.fd(slave), .null, .null])
        let cat = try reader.spawn()
        var sleeper = SpawnSpec(.path("/bin/sleep"), argv: ["sleep", "30"], environment: [])
        sleeper.descriptors = .exactly([.fd(slave), .fd(slave), .fd(slave)])
        let sleep = try sleeper.spawn()
        defer {
            for p in [cat, sleep] { kill(p, SIGKILL); var st: Int32 = 0; waitpid(p, &st, 0) }
        }
        var seen = false
        for _ in 0..<300 where !seen {
            seen = ProcessInspector.sleepsInRead(of: path, among: [sleep, cat])
            if !seen { Process.sleep(milliseconds: 10) }
        }
        #expect(seen, "cat sleeps in read(0) of \(path)")
        #expect(!ProcessInspector.sleepsInRead(of: path, among: [sleep]), "sleep holds the terminal and does not read it")
        #expect(!ProcessInspector.sleepsInRead(of: "/dev/pts/999999", among: [cat]), "another terminal")
        kill(cat, SIGSTOP)
        for _ in 0..<300 where state(cat) != "T" { Process.sleep(milliseconds: 10) }
        #expect(!ProcessInspector.sleepsInRead(of: path, among: [cat]), "stopped in its read: not reading")

        // A shell with job control on another terminal: its background
        // job's group is not orphaned, and is stopped by SIGTTIN; the
        // shell's own group (its parent, this test, is in another
        // session) is orphaned and gets nothing.
        var m2: Int32 = -1, s2: Int32 = -1
        #expect(ssi_open_pty(&m2, &s2) == 0)
        defer { close(m2); close(s2) }
        let (shell, job) = try Self.jobControlShell(on: s2, then: "wait; sleep 30")
        defer {
            kill(job, SIGKILL)
            kill(shell, SIGKILL)
            var st: Int32 = 0
            waitpid(shell, &st, 0)
        }
        #expect(job > 0, "the shell started its background job")
        #expect(!ProcessInspector.stopForTerminalInput(shell), "an orphaned group: nothing sent")
        #expect(state(shell) != "T")
        #expect(ProcessInspector.stopForTerminalInput(job), "the background job's group: SIGTTIN")
        for _ in 0..<300 where state(job) != "T" { Process.sleep(milliseconds: 10) }
        #expect(state(job) == "T", "stopped by it")
        #expect(!ProcessInspector.stopForTerminalInput(job), "stopped already: not sent again")
    }
}
