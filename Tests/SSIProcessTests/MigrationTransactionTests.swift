import Testing
import Foundation
import CSSIShim
import SSICore
import SSILinux
import SSIMembership
@testable import SSIProcess

/// The migration transaction against fakes of CRIU, the target and the
/// node: each phase made to fail in turn. Whatever fails, the tree must
/// run on here (nothing stopped), nothing of the move is left behind (no
/// home channel, no image directory, no process killed), and the failure
/// names its phase; the message is the user's, unchanged.
@Suite(.serialized) struct MigrationTransactionTests {
    /// The node: processes are pids in a set, stopped or not; descriptor
    /// copies are real pipes (home channels close them), injections real
    /// socketpairs.
    final class FakeHost: MigrationHost {
        let localNode: UInt32 = 1
        let homes = HomeRegistry()
        let standIns = StandInRegistry()
        var tree: [pid_t] = [100, 101]
        var owners: [pid_t: uid_t] = [:]
        var stopped = Set<pid_t>()
        var retired: [pid_t] = []
        var directories = Set<String>()
        var relayed: [String] = []
        var log: [String] = []
        /// Failures to make, by name.
        var fail = Set<String>()
        /// (pid, fd) -> the descriptor a copy duplicates.
        var objects: [String: Int32] = [:]
        var toClose: [Int32] = []

        deinit { toClose.forEach { close($0) } }

        func trace(_ line: String) { log.append(line) }

        func makeImageDirectory(_ dir: String, throughRoot: Bool) throws(SSIError) {
            if fail.contains("directory") { throw SSIError("migrate", "\(dir): No space left on device") }
            directories.insert(dir)
        }

        /// With its rounds' directories in it.
        func removeImageDirectory(_ dir: String) { directories = directories.filter { $0 != dir && !$0.hasPrefix(dir + "/") } }

        /// What each pre-copy round's pages come to, in order.
        var roundBytes: [Int] = [60 << 20, 3 << 20]
        var pageReads: [String] = []
        var released: [String] = []
        func releasePages(in dir: String) { released.append(dir) }
        func pageBytes(in dir: String) -> Int {
            pageReads.append(dir)
            return pageReads.count <= roundBytes.count ? roundBytes[pageReads.count - 1] : 0
        }

        func takeCopy(pid: pid_t, fd: Int32) -> (fd: Int32, errno: Int32) {
            if fail.contains("copy \(pid).\(fd)") { return (-1, EBADF) }
            if let object = objects["\(pid).\(fd)"] { return (dup(object), 0) }
            var p: [Int32] = [-1, -1]
            _ = pipe(&p)
            toClose.append(p[1])
            return (p[0], 0)
        }

        func injectStandIn(pid: pid_t, fd: Int32, name: String, stop: Bool, what kind: String) throws(SSIError) -> (Int32, String) {
            if fail.contains("inject \(pid).\(fd)") {
                throw SSIError("migrate", "giving process \(pid) its \(kind) stand-in on fd \(fd): ptrace: Operation not permitted")
            }
            var s: [Int32] = [-1, -1]
            _ = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &s)
            toClose.append(s[1])
            return (s[0], "socket:[\(900 + fd)]")
        }

        func relayDevice(agentEnd: Int32, device: Int32, path: String) {
            relayed.append(path)
            close(agentEnd)
            close(device)
        }

        func processTree(root: pid_t) -> [pid_t] { tree }

        func processStatus(_ pid: pid_t) -> ProcessStatus? {
            let u = owners[pid] ?? 1000
            return ProcessStatus(parsing: "Uid:\t\(u)\t\(u)\t\(u)\t\(u)\nGid:\t1000\t1000\t1000\t1000\n")
        }

        func resumeProcesses(_ tasks: [pid_t]) { tasks.forEach { stopped.remove($0) } }

        func exitReport(_ pid: pid_t) -> (node: UInt32, session: String)? { pid == 100 ? (3, "s-1") : nil }

        func retireProcesses(_ tasks: [pid_t]) { retired += tasks }

        /// pid -> home node of a process restored here from elsewhere.
        var remoteHomes: [pid_t: UInt32] = [:]
        var expectedDeputies: [pid_t: (uid: uid_t, node: UInt32)] = [:]
        var deputies: [pid_t] = []
        func deputyHome(of pid: pid_t) -> UInt32? {
            if exitReport(pid) != nil { return nil }
            return remoteHomes[pid] ?? localNode
        }
        func expectDeputy(pid: pid_t, uid: uid_t, node: UInt32) { expectedDeputies[pid] = (uid, node) }
        func forgetDeputy(_ pid: pid_t) { expectedDeputies[pid] = nil }
        func becomeDeputy(_ pid: pid_t, moveID: String, shippedTTY: Bool) -> String? {
            if fail.contains("deputy") { return "execve: Permission denied" }
            deputies.append(pid)
            return nil
        }
        /// The cgroup freezer (off unless set: the stop is what most tests
        /// look at); what was done with it.
        var freezer = false
        var freezes: [String] = []
        func freezeTree(_ pid: pid_t, moveID: String) -> String? {
            if !freezer { return nil }
            freezes.append("freeze \(pid)")
            tree.forEach { frozenInCgroup.insert($0) }
            return "/sys/fs/cgroup/ssi-move-" + moveID
        }
        var frozenInCgroup = Set<pid_t>()
        func thawTree(moveID: String) { freezes.append("thaw"); frozenInCgroup = [] }
        func releaseTree(moveID: String, deputy: pid_t?) { freezes.append("release \(deputy.map(String.init) ?? "-")"); frozenInCgroup = [] }
    }

    /// criu: a dump stops the tree (--leave-stopped). A failing one leaves
    /// it stopped too (the worst criu can do) so the rollback's resume is
    /// what the test sees; it may also change the tree's owner meanwhile.
    final class FakeCRIU: Checkpointer {
        let host: FakeHost
        var dumps: [[String]] = []
        var preDumps: [[String]] = []
        init(host: FakeHost) { self.host = host }

        /// A pre-dump leaves the tree running, failed or not.
        func preDump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
            preDumps.append(arguments)
            if host.fail.contains("pre-dump \(preDumps.count)") {
                throw SSIError("migrate", "criu pre-dump failed (exited 1): Error (criu/mem.c:1): soft-dirty tracking is off")
            }
        }

        func dump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
            dumps.append(arguments)
            // Frozen in its cgroup, criu leaves it so (--leave-running).
            if !arguments.contains("--leave-running") { host.stopped.formUnion(host.tree) }
            if host.fail.contains("dump") { throw SSIError("migrate", "criu dump failed (exited 1): Error (criu/cr-dump.c:1): oops") }
            if host.fail.contains("fork") {
                // A setuid child appeared in the tree just before the freeze.
                host.tree.append(102)
                host.owners[102] = 0
            }
        }

        func restore(_ arguments: [String], imageDirectory: String, fds: [Int32], readFrom: String) throws(SSIError) {
            Issue.record("the source never restores")
        }

        func restoreWithKeeper(_ arguments: [String], imageDirectory: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t {
            Issue.record("the source never restores")
            return 0
        }
    }

    final class FakeTarget: MigrationTarget {
        let node: UInt32 = 2
        var inUse: [pid_t: String] = [:]
        var answer = Fields("restored", [("pid", "100")])
        var unreachable = false
        var requests: [Fields] = []
        var carried: [String: [UInt8]] = [:]
        /// Rounds taken (number, the source's directory); the round that
        /// fails; how often the move's connection was closed.
        var rounds: [(Int, String)] = []
        var failRound = 0
        var closed = 0

        func commandHolding(_ pid: pid_t) throws(SSIError) -> String? { inUse[pid] }

        /// `settle`'s answer (nil: the target cannot be reached); the
        /// ids asked about.
        var settled: Fields? = nil
        var settleAsked: [String] = []
        func settle(id: String) -> Fields? {
            settleAsked.append(id)
            return settled
        }

        func sendRound(_ round: Int, id: String, imageDirectory: String) throws(SSIError) {
            if round == failRound { throw SSIError("proc", "node 2: connection reset by peer") }
            rounds.append((round, imageDirectory))
        }

        func close() { closed += 1 }

        func restore(_ request: Fields, carries: [(resource: String, bytes: [UInt8])], imageDirectory: String,
                     sendImages: Bool) throws(SSIError) -> Fields {
            if unreachable { throw SSIError("proc", "node 2: connection reset by peer") }
            requests.append(request)
            for (r, b) in carries { carried[r] = b }
            return answer
        }
    }

    /// A tree 100 (with a child 101) shipping a pipe, a device and a
    /// node-local file.
    static let plan = MigrationPlan(
        request: MigrationRequest(pid: 100, target: 2, tree: true, uid: 1000), targetName: "node2", tasks: [100, 101],
        shipped: [ShippedDescriptor(resource: "pipe:[7]", kind: .pipeOut, pid: 100, fd: 1),
                  ShippedDescriptor(resource: "/dev/ttyS1#100.4", kind: .device, pid: 100, fd: 4),
                  ShippedDescriptor(resource: "run/in.txt", kind: .pipeIn, pid: 101, fd: 0)])

    static func transaction(_ host: FakeHost, _ criu: FakeCRIU, _ target: FakeTarget, plan: MigrationPlan = plan) -> MigrationTransaction {
        MigrationTransaction(plan: plan, id: "1-100-7", systemRoot: "/proc/1/root", stateDirectory: "/run/ssi", host: host,
                             checkpointer: criu, target: target, clock: { 0 })
    }

    @Test("the restore's answer is lost: the target is asked (settle); restored there, the move commits; given up or unreachable, the copy here resumes")
    func lostAnswer() throws {
        // Restored there: one copy, the target's.
        do {
            let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
            target.unreachable = true
            target.settled = Fields("restored", [("pid", "100"), ("restore_ms", "420")])
            let move = Self.transaction(host, criu, target)
            try move.run()
            #expect(target.settleAsked == ["1-100-7"])
            #expect(host.retired == [100, 101], "the original goes: the target runs it")
            #expect(move.restoreMs == 420 && move.answerLost?.contains("node 2 confirmed it") == true, "\(move.answerLost ?? "")")
        }
        // Given up there (or never received), or the target unreachable:
        // the copy here runs on, and the error says what the target said.
        for settled in [Fields("error", [("message", "the restore of 1-100-7 was still going on here: given up, it will be undone")]), nil] {
            let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
            target.unreachable = true
            target.settled = settled
            let move = Self.transaction(host, criu, target)
            var failure: MigrationFailure?
            do throws(MigrationFailure) { try move.run() } catch { failure = error }
            let f = try #require(failure)
            #expect(f.phase == .transfer && host.retired.isEmpty && host.stopped.isEmpty, "\(f.error.message)")
            #expect(f.error.message.contains("connection reset by peer") && f.error.message.hasSuffix("it goes on running on node 1"))
            if settled != nil { #expect(f.error.message.contains("then: the restore of 1-100-7 was still going on here: given up")) }
        }
        // An explicit refusal from the target is not asked about again.
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        target.answer = Fields("error", [("message", "no")])
        do throws(MigrationFailure) { try Self.transaction(host, criu, target).run() } catch {}
        #expect(target.settleAsked.isEmpty)
    }

    @Test("the target's record of a move: restored or given up, decided once, under one lock")
    func moveRecords() {
        let m = MoveRecords()
        // Asked while restoring: given up, and the restore may not claim.
        m.begin("1-5-1", now: 0)
        #expect(m.settle("1-5-1") == .error("the restore of 1-5-1 was still going on here: given up, it will be undone"))
        #expect(!m.claim("1-5-1", pid: 5, ms: 10, now: 1))
        m.end("1-5-1")
        #expect(m.settle("1-5-1") == .error("no restore of 1-5-1 runs here"))
        // Claimed first: the question gets the answer that was lost.
        m.begin("1-6-1", now: 0)
        #expect(m.claim("1-6-1", pid: 6, ms: 20, now: 1))
        m.end("1-6-1")
        #expect(m.settle("1-6-1") == .restored(pid: 6, ms: 20))
        // A failed restore leaves nothing; an unknown id is said so.
        m.begin("1-7-1", now: 0)
        m.end("1-7-1")
        #expect(m.settle("1-7-1") == .error("no restore of 1-7-1 runs here"))
        // Bounded: old outcomes go.
        for k in 0..<(MoveRecords.limit + 5) { m.begin("9-\(k)-1", now: 10 + Double(k)) }
        #expect(m.settle("1-6-1") == .error("no restore of 1-6-1 runs here"))
    }

    @Test("a move that succeeds: the phases in order, the homes kept for the target, the original retired")
    func success() throws {
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        let move = Self.transaction(host, criu, target)
        try move.run()
        #expect(move.done == [.prepare, .precopy, .dump, .transfer, .commit])
        #expect(host.retired == [100, 101], "the stopped original goes once the target runs it")
        #expect(host.homes.count == 3 && host.homes.get("1-100-7.0") != nil && host.homes.get("1-100-7.1") != nil
                && host.homes.get("1-100-7.2") != nil, "the target attaches to them")
        #expect(host.directories.isEmpty && host.relayed.isEmpty)
        // Two rounds (60 MB, then 3 MB: settled), the final dump on the second.
        #expect(criu.preDumps == [["pre-dump", "-t", "100", "-D", "/run/ssi/migrate/1-100-7/pre-1", "--shell-job", "--manage-cgroups=ignore",
                                   "--track-mem", "--pre-dump-mode=read"],
                                  ["pre-dump", "-t", "100", "-D", "/run/ssi/migrate/1-100-7/pre-2", "--shell-job", "--manage-cgroups=ignore",
                                   "--track-mem", "--pre-dump-mode=read", "--prev-images-dir", "../pre-1"]])
        #expect(target.rounds.map(\.0) == [1, 2] && target.rounds.map(\.1) == ["/proc/1/root/run/ssi/migrate/1-100-7/pre-1",
                                                                             "/proc/1/root/run/ssi/migrate/1-100-7/pre-2"])
        #expect(move.rounds.map(\.bytes) == [60 << 20, 3 << 20])
        #expect(host.released == target.rounds.map(\.1), "each round's pages are let go once sent")
        #expect(criu.dumps == [["dump", "-t", "100", "-D", "/run/ssi/migrate/1-100-7", "--shell-job", "--leave-stopped",
                                "--manage-cgroups=ignore", "--skip-in-flight", "--track-mem", "--prev-images-dir", "pre-2",
                                "--external", "unix[904]"]])
        #expect(target.closed == 1, "the move's connection is closed once the target runs it")
        let req = try #require(target.requests.first)
        #expect(req.op == "restore" && req["id"] == "1-100-7" && req.all("task") == ["100", "101"] && req["images"] == nil)
        // Devices first (injected, shipped as their socket), then the rest,
        // each on the channel of its place in the plan.
        #expect(req.all("ship") == ["socket:[904]|socket|1|1-100-7.1", "pipe:[7]|pipe-out|1|1-100-7.0", "run/in.txt|pipe-in|1|1-100-7.2"])
        #expect(req.all("report") == ["100|3|s-1"])
        for h in ["1-100-7.0", "1-100-7.1", "1-100-7.2"] { host.homes.release(h) }
    }

    @Test("the deputy: a process moving from its home leaves one (registered before the restore, named in the request); one moving on names its home; an onnode command none; a failed deputy is killed; a failed move forgets it",
          arguments: ["home", "moving on", "onnode", "deputy fails", "target error"])
    func deputy(_ situation: String) throws {
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        // 200: no onnode session waits for it (100 is an onnode command).
        var plan = Self.plan
        if situation != "onnode" {
            plan.request.pid = 200
            plan.tasks = [200, 201]
            plan.shipped = []
            host.tree = [200, 201]
        }
        if situation == "moving on" { host.remoteHomes[200] = 3 }
        if situation == "deputy fails" { host.fail = ["deputy"] }
        if situation == "target error" { target.answer = Fields("error", [("message", "no")]) }
        let move = Self.transaction(host, criu, target, plan: plan)
        var failed = false
        do throws(MigrationFailure) { try move.run() } catch { failed = true }
        let req = try #require(target.requests.first)
        switch situation {
        case "home":
            #expect(req["deputy"] == "1" && host.deputies == [200] && host.retired == [201],
                    "the original stays as the deputy, its child goes: \(host.retired)")
            #expect(host.expectedDeputies[200]?.node == 2 && host.expectedDeputies[200]?.uid == 1000)
        case "moving on":
            #expect(req["deputy"] == "3" && host.deputies.isEmpty && host.retired == [200, 201], "its deputy is at its home, node 3")
        case "onnode":
            #expect(req["deputy"] == nil && host.deputies.isEmpty && host.retired == [100, 101] && host.expectedDeputies.isEmpty)
        case "deputy fails":
            #expect(!failed && host.retired == [201, 200] && host.expectedDeputies.isEmpty, "killed as before deputies (its child first)")
            #expect(move.deputyNote?.contains("execve: Permission denied") == true)
        default:
            #expect(failed && host.expectedDeputies.isEmpty && host.retired.isEmpty && host.deputies.isEmpty,
                    "a failed move leaves no deputy record and kills nothing")
        }
    }

    @Test("frozen in a cgroup (no stop its parent sees): criu leaves it frozen; the commit retires the rest of the tree before the deputy's injection thaws the cgroup, then releases it; a failed move thaws it with no SIGCONT; a failed deputy still releases it",
          arguments: ["home", "target error", "deputy fails", "moving on"])
    func frozenInCgroup(_ situation: String) throws {
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        host.freezer = true
        var plan = Self.plan
        plan.request.pid = 200
        plan.tasks = [200, 201]
        plan.shipped = []
        host.tree = [200, 201]
        if situation == "target error" { target.answer = Fields("error", [("message", "no")]) }
        if situation == "deputy fails" { host.fail = ["deputy"] }
        if situation == "moving on" { host.remoteHomes[200] = 3 }
        let move = Self.transaction(host, criu, target, plan: plan)
        var failed = false
        do throws(MigrationFailure) { try move.run() } catch { failed = true }
        let dump = try #require(criu.dumps.first)
        #expect(Array(dump.prefix(9)) == ["dump", "-t", "200", "-D", "/run/ssi/migrate/1-100-7", "--shell-job",
                                          "--leave-running", "--freeze-cgroup", "/sys/fs/cgroup/ssi-move-1-100-7"], "\(dump)")
        #expect(!dump.contains("--leave-stopped") && host.stopped.isEmpty, "never stopped")
        #expect(host.frozenInCgroup.isEmpty, "nothing stays frozen")
        switch situation {
        case "home":
            #expect(!failed && host.retired == [201] && host.deputies == [200] && host.freezes == ["freeze 200", "release 200"])
        case "deputy fails":
            #expect(!failed && host.retired == [201, 200] && host.freezes == ["freeze 200", "release -"])
        case "moving on":
            #expect(!failed && host.retired == [200, 201] && host.deputies.isEmpty && host.freezes == ["freeze 200", "release -"])
        default:
            #expect(failed && host.retired.isEmpty && host.freezes == ["freeze 200", "thaw"])
            #expect(move.undone.contains("the frozen tree thawed") && !move.undone.contains("the stopped tree resumed"), "\(move.undone)")
        }
    }

    @Test("through the root: the images' directory is the cluster root's, named in the request",
          arguments: [true, false])
    func throughRoot(_ root: Bool) throws {
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        var plan = Self.plan
        plan.request.throughRoot = root
        plan.shipped = []
        try Self.transaction(host, criu, target, plan: plan).run()
        let dir = root ? "/cluster/migrate/1-100-7" : "/run/ssi/migrate/1-100-7"
        #expect(criu.dumps.first?[4] == dir)
        #expect(target.requests.first?["images"] == (root ? dir : nil))
        // The rounds are on the cluster root too: the target reads them there.
        #expect(criu.preDumps.map { $0[4] } == [dir + "/pre-1", dir + "/pre-2"])
        #expect(target.rounds.count == (root ? 0 : 2))
        #expect(host.released.count == (root ? 0 : 2), "the target reads the root's rounds: they stay")
    }

    @Test("when the rounds stop: the bound, a small round, or a round that did not shrink by a fifth")
    func roundsSettle() {
        func settled(_ mb: [Int]) -> Bool { MigrationTransaction.settled(mb.map { PrecopyRound(bytes: $0 << 20, dumpMs: 0, sendMs: 0) }) }
        #expect(!settled([]))
        #expect(!settled([200]) && !settled([200, 100]) && !settled([200, 100, 60, 30, 10]))
        #expect(settled([200, 100, 60, 30, 10, 5]), "at most \(MigrationTransaction.maxRounds) rounds")
        #expect(settled([3]) && settled([200, 4]), "4 MB or less: the final dump carries the rest")
        #expect(settled([200, 170]) && settled([200, 250]), "not shrinking by a fifth: more rounds would not shorten the freeze")
        #expect(!settled([200, 159]))
    }

    @Test("pre-copy that cannot run (criu's first pre-dump fails): a stop and copy, and the answer says why; a later round that fails: the rounds done stand")
    func precopyFallsBack() throws {
        for failing in [1, 2] {
            let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
            host.roundBytes = [60 << 20, 40 << 20, 20 << 20]
            host.fail = ["pre-dump \(failing)"]
            let move = Self.transaction(host, criu, target)
            try move.run()
            #expect(move.done == [.prepare, .precopy, .dump, .transfer, .commit])
            #expect(move.rounds.count == failing - 1 && target.rounds.count == failing - 1)
            #expect(!host.directories.contains("/proc/1/root/run/ssi/migrate/1-100-7/pre-\(failing)"), "the failed round's directory is gone")
            if failing == 1 {
                #expect(move.precopyNote == "no pre-copy (criu pre-dump failed (exited 1): Error (criu/mem.c:1): soft-dirty tracking is off)")
                #expect(criu.dumps.first?.contains("--track-mem") == false)
            } else {
                #expect(move.precopyNote == nil)
                #expect(criu.dumps.first.map { Array($0[9...12]) } == ["--track-mem", "--prev-images-dir", "pre-1", "--external"])
            }
            for h in ["1-100-7.0", "1-100-7.1", "1-100-7.2"] { host.homes.release(h) }
        }
    }

    @Test("--stop-and-copy: no round, the final dump carries every page")
    func stopAndCopy() throws {
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        var plan = Self.plan
        plan.request.precopy = false
        plan.shipped = []
        let move = Self.transaction(host, criu, target, plan: plan)
        try move.run()
        #expect(criu.preDumps.isEmpty && target.rounds.isEmpty && move.rounds.isEmpty && move.precopyNote == nil)
        #expect(criu.dumps.first?.contains("--prev-images-dir") == false)
    }

    /// Where each failure is made, the phase it must be reported in, and
    /// the start of the user's message.
    static let failures: [(fail: String, phase: MigrationPhase, message: String)] = [
        ("pid in use", .prepare, "PID 101 is in use on node 2 by `sshd`; CRIU restores a process under its own PID"),
        ("directory", .prepare, "/proc/1/root/run/ssi/migrate/1-100-7: No space left on device"),
        ("inject 100.4", .prepare, "giving process 100 its device stand-in on fd 4: ptrace: Operation not permitted"),
        ("copy 101.0", .prepare, "fd 0 of process 101: pidfd_getfd: "),
        ("round 1 unreachable", .precopy, "node 2 did not take pre-copy round 1 of process 100: node 2: connection reset by peer; it goes on running on node 1"),
        ("round 2 unreachable", .precopy, "node 2 did not take pre-copy round 2 of process 100: node 2: connection reset by peer; it goes on running on node 1"),
        ("dump", .dump, "criu dump failed (exited 1): Error (criu/cr-dump.c:1): oops"),
        ("fork", .dump, "process 100 cannot move: process 102 belongs to uid 0, not to uid 1000"),
        ("target unreachable", .transfer, "node 2 could not restore process 100: node 2: connection reset by peer; it goes on running on node 1"),
        ("target error", .transfer, "node 2 could not restore process 100: criu restore failed (exited 1): Error (criu/files.c:1): no; it goes on running on node 1"),
    ]

    @Test("a failure in any phase: rolled back in reverse, the tree running here, nothing left, the phase named",
          arguments: 0..<failures.count)
    func failureRollsBack(_ index: Int) throws {
        let (fail, phase, message) = Self.failures[index]
        let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
        host.fail = [fail]
        if fail == "pid in use" { target.inUse[101] = "sshd" }
        if fail == "target unreachable" { target.unreachable = true }
        if fail.hasPrefix("round") { target.failRound = Int(fail.dropFirst(6).prefix(1))! }
        if fail == "target error" { target.answer = Fields("error", [("message", "criu restore failed (exited 1): Error (criu/files.c:1): no")]) }
        let move = Self.transaction(host, criu, target)
        var failure: MigrationFailure?
        do throws(MigrationFailure) { try move.run() } catch { failure = error }
        let f = try #require(failure, "\(fail) must fail the move")
        #expect(f.phase == phase, "\(fail)")
        #expect(f.error.message.hasPrefix(message), "\(f.error.message)")
        #expect(move.done == Array(MigrationPhase.allCases.prefix(while: { $0 != phase })), "the phases before it were done, no later one")
        // The process runs on here; nothing of the move is left.
        #expect(host.stopped.isEmpty, "\(fail): stopped \(host.stopped)")
        #expect(host.retired.isEmpty, "\(fail): nothing is killed here")
        #expect(host.homes.count == 0, "\(fail): a home channel was left")
        #expect(host.directories.isEmpty, "\(fail): the image directory was left")
        // The device's injected stand-in stays in the process: once it was
        // injected, it is relayed to the device here.
        let injected = fail != "pid in use" && fail != "directory" && fail != "inject 100.4"
        #expect(host.relayed == (injected ? ["/dev/ttyS1"] : []), "\(fail)")
        // Undone in reverse: the tree resumed before its channels went.
        if phase == .precopy {
            #expect(move.undone == ["the target's pre-copy rounds", "the home channel 1-100-7.2", "the home channel 1-100-7.0",
                                    "the home channel 1-100-7.1 of /dev/ttyS1", "the image directory"], "\(move.undone)")
            #expect(criu.dumps.isEmpty, "nothing was frozen")
        } else if phase != .prepare {
            #expect(move.undone.first == "the stopped tree resumed" && move.undone.last == "the image directory", "\(move.undone)")
            #expect(move.undone.contains("the target's pre-copy rounds"), "the target drops what it received")
        }
        if phase != .prepare { #expect(target.closed >= 1, "\(fail): the move's connection is closed") }
        #expect(host.log.contains { $0.contains("failed in the \(phase.rawValue) phase") }, "the log names the phase: \(host.log)")
        if phase == .prepare { #expect(criu.dumps.isEmpty, "nothing was frozen") }
    }

    @Test("a stand-in from an earlier move: paused and drained for the target; on a failure its unread bytes go back and it runs again")
    func earlierStandIn() throws {
        for succeed in [true, false] {
            let host = FakeHost(), criu = FakeCRIU(host: host), target = FakeTarget()
            // The process reads pipe:[7] (its end: p[0]); the relay writes
            // into p[1] what home sent, and holds "def" fetched but not given.
            var p: [Int32] = [-1, -1]
            _ = pipe(&p)
            defer { close(p[0]) }
            let old = StandIn(channelID: "3-9-1.0", home: 3, kind: .pipeIn, fd: p[1], resource: "pipe:[7]", log: { _ in })
            old.carry.withLock { $0 = Array("def".utf8) }
            host.standIns.add(old)
            host.objects["100.0"] = p[0]
            _ = write(p[1], "abc", 3)
            if !succeed { target.answer = Fields("error", [("message", "no")]) }
            var plan = Self.plan
            plan.shipped = [ShippedDescriptor(resource: "pipe:[7]", kind: .pipeIn, pid: 100, fd: 0)]
            let move = Self.transaction(host, criu, target, plan: plan)
            do throws(MigrationFailure) { try move.run() } catch {
                #expect(!succeed && error.phase == .transfer)
            }
            #expect(target.carried == ["pipe:[7]": Array("abcdef".utf8)], "unread, then fetched, go with it")
            #expect(target.requests.first?.all("ship") == ["pipe:[7]|pipe-in|3|3-9-1.0"], "it keeps its home")
            #expect(host.homes.count == 0, "no new home channel for it")
            if succeed {
                #expect(old.state.current == .closing && host.standIns.get("pipe:[7]") == nil, "it lets go of home")
            } else {
                #expect(old.state.current == .running && host.standIns.get("pipe:[7]") === old)
                // The relay gives its carry to the process before anything
                // new: the unread bytes first, then what it had fetched
                // (never written back into a pipe that may be full).
                #expect(old.carry.current == Array("abcdef".utf8), "what was put back comes before what it fetched")
                var buf = [UInt8](repeating: 0, count: 16)
                _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
                #expect(read(p[0], &buf, 16) == -1 && errno == EAGAIN, "nothing is given twice")
                #expect(host.stopped.isEmpty)
                close(p[1])
            }
        }
    }

    /// criu as far as the process sees it: the tree is stopped
    /// (--leave-stopped, or a criu that died mid-dump), then the dump
    /// fails or succeeds.
    final class StoppingCRIU: Checkpointer {
        let fails: Bool
        init(fails: Bool) { self.fails = fails }
        func dump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
            for t in ProcessInspector.tree(root: pid_t(arguments[2])!) { kill(t, SIGSTOP) }
            if fails { throw SSIError("migrate", "criu dump failed (killed by signal 9)") }
        }
        /// A round's pages, and criu's link to the round before, in the
        /// agent's view of the directory: the rollback removes them all.
        func preDump(_ arguments: [String], imageDirectory: String, readFrom: String) throws(SSIError) {
            _ = FileManager.default.createFile(atPath: readFrom + "/pages-1.img", contents: Data(count: 8192))
            _ = symlink("../pre-0", readFrom + "/parent")
        }
        func restore(_ arguments: [String], imageDirectory: String, fds: [Int32], readFrom: String) throws(SSIError) {}
        func restoreWithKeeper(_ arguments: [String], imageDirectory: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t { 0 }
    }

    static func state(_ pid: pid_t) -> String {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return "?" }
        return String(stat[stat.index(close, offsetBy: 2)...].prefix(1))
    }

    @Test("a peer out of the membership is given up only after the departure grace; one back in time is kept")
    func departureGrace() throws {
        let dir = NSTemporaryDirectory() + "ssi-grace-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func view(node2: NodeState) throws {
            try ClusterView(clusterName: "t", localNode: 1, quorate: true, expectedVotes: 2, totalVotes: 2, quorum: 2,
                            nodes: [NodeRecord(number: 1, name: "one", address: "127.0.0.1", state: .up, stage: ""),
                                    NodeRecord(number: 2, name: "two", address: "127.0.0.2", state: node2, stage: "")])
                .write(directory: dir)
        }
        var options = ProcAgent.Options()
        options.stateDirectory = dir
        let agent = ProcAgent(options: options, log: { _ in })
        var since: Double?
        try view(node2: .up)
        #expect(!agent.peerDeparted(2, downSince: &since) && since == nil)
        // The membership re-forms: node 2 is listed down for a moment.
        try view(node2: .down)
        #expect(!agent.peerDeparted(2, downSince: &since), "not given up when first seen out")
        #expect(since != nil)
        try view(node2: .up)
        #expect(!agent.peerDeparted(2, downSince: &since) && since == nil, "back in time: kept, and the clock starts again")
        try view(node2: .down)
        #expect(!agent.peerDeparted(2, downSince: &since))
        since = (since ?? 0) - ProcAgent.departureGraceSeconds
        #expect(agent.peerDeparted(2, downSince: &since), "still out after the grace: gone")
        #expect(agent.peerDeparted(7, downSince: &since), "a node the view does not list is out too")
    }

    @Test("a sent round's pages: their memory goes, their size and page map stay; a round's directory is removed with the image directory")
    func releaseAndRemove() throws {
        // /dev/shm is a tmpfs, as the images' directory is.
        let dir = "/dev/shm/ssi-release-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/pre-1", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pages = dir + "/pre-1/pages-1.img"
        _ = FileManager.default.createFile(atPath: pages, contents: Data(repeating: 7, count: 1 << 20))
        _ = FileManager.default.createFile(atPath: dir + "/pre-1/pagemap-5.img", contents: Data(repeating: 1, count: 100))
        _ = symlink("../pre-0", dir + "/pre-1/parent")
        var options = ProcAgent.Options()
        options.stateDirectory = dir
        let agent = ProcAgent(options: options, log: { _ in })
        var st = stat()
        #expect(stat(pages, &st) == 0 && st.st_blocks > 0)
        agent.releasePages(in: dir + "/pre-1")
        #expect(stat(pages, &st) == 0 && st.st_size == 1 << 20 && st.st_blocks == 0, "punched: \(st.st_blocks) blocks")
        #expect(stat(dir + "/pre-1/pagemap-5.img", &st) == 0 && st.st_blocks > 0, "the page map stays")
        #expect(agent.pageBytes(in: dir + "/pre-1") == 1 << 20)
        agent.removeImageDirectory(dir)
        #expect(!FileManager.default.fileExists(atPath: dir), "the directory and its round, link and all, are gone")
    }

    @Test("the agent as the node, a real process: stopped by the dump, running again after a failed dump or transfer; its pipe's home channel and the image directory gone",
          arguments: ["dump", "transfer"])
    func realProcessResumes(_ failIn: String) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ssi-mig-\(getpid())-\(failIn)").path
        try FileManager.default.createDirectory(atPath: root + "/run", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var options = ProcAgent.Options()
        options.systemRoot = root
        options.stateDirectory = root + "/run"
        let agent = ProcAgent(options: options, log: { _ in })
        let out = Pipe()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        child.standardOutput = out
        try child.run()
        let pid = child.processIdentifier
        defer { kill(pid, SIGKILL); child.waitUntilExit() }
        let pipe = try FileSystem.readLink("/proc/\(pid)/fd/1")
        // Through the root: the images' directory is made under `root`,
        // with no tmpfs mounted for the test.
        let plan = MigrationPlan(request: MigrationRequest(pid: pid, target: 2, tree: true, uid: getuid(), throughRoot: true),
                                 targetName: "node2", tasks: [pid],
                                 shipped: [ShippedDescriptor(resource: pipe, kind: .pipeOut, pid: pid, fd: 1)])
        let target = FakeTarget()
        target.answer = Fields("error", [("message", "no")])
        let move = MigrationTransaction(plan: plan, id: "0-\(pid)-1", systemRoot: root, stateDirectory: options.stateDirectory,
                                        host: agent, checkpointer: StoppingCRIU(fails: failIn == "dump"), target: target)
        var failure: MigrationFailure?
        do throws(MigrationFailure) { try move.run() } catch { failure = error }
        #expect(failure?.phase.rawValue == failIn)
        #expect(failIn == "dump" || target.requests.first?.all("ship") == ["\(pipe)|pipe-out|0|0-\(pid)-1.0"], "the home channel was made")
        var state = Self.state(pid)
        for _ in 0..<50 where state == "T" {
            usleep(20_000)
            state = Self.state(pid)
        }
        #expect(state == "S" || state == "R", "the process runs on here (state \(state))")
        #expect(agent.homes.count == 0, "its pipe's home channel is released")
        #expect(!FileManager.default.fileExists(atPath: root + "/cluster/migrate/0-\(pid)-1"), "the image directory is gone")
        let log = (try? String(contentsOfFile: root + "/run/proc-agent.log", encoding: .utf8)) ?? ""
        #expect(log.contains("failed in the \(failIn) phase"), "\(log)")
    }
}
