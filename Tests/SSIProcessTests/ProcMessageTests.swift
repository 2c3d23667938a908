import Testing
import Glibc
import SSICore
import SSITestSupport
@testable import SSIProcess

/// The process agents' typed messages (PeerRequest, RunRequest,
/// RestoreRequest, RestoreStep, PeerReply, LocalRequest): every case
/// round-trips through the bytes on the wire, every field is checked on
/// the way in, and mutated bytes never trap a decoder.
@Suite struct ProcMessageTests {
    /// Encode, frame as bytes, decode: what a receiving agent gets.
    static func wire(_ f: Fields) throws(ProcMessageError) -> Fields { try Fields.decode(f.encoded) }

    static let termiosHexValue = String(repeating: "0a", count: MemoryLayout<termios>.size)

    static let run = RunRequest(cwd: "/tmp/a b\r", uid: 1000, gid: 100, groups: [100, 27], argv: ["sh", "-c", "echo 'a\nb' \\ c"],
                                environment: ["X=1=2", "EMPTY="],
                                stdio: [.init(index: 0, spec: ShipSpec(resource: "-", kind: .pipeIn, home: 1, channel: "1-5.0")),
                                        .init(index: 1, spec: ShipSpec(resource: "-", kind: .tty, home: 1, channel: "1-5.1")),
                                        .init(index: 2, spec: ShipSpec(resource: "-", kind: .tty, home: 1, channel: "1-5.1"))],
                                session: "1-5")

    static var restore: RestoreRequest {
        var tcp = ShipSpec(resource: "socket:[40]", kind: .tcp, home: 1, channel: "1-100-7.1")
        tcp.pid = 101
        tcp.fd = 4
        return RestoreRequest(id: "1-100-7", pid: 100, tasks: [100, 101], images: "/cluster/migrate/1-100-7",
                              ships: [ShipSpec(resource: "pipe:[7]", kind: .pipeOut, home: 1, channel: "1-100-7.0"), tcp,
                                      ShipSpec(resource: "run/in|put 100%.txt", kind: .pipeIn, home: 3, channel: "3-9-1.0")],
                              termios: [.init(resource: "tty[8801:d]", hex: termiosHexValue)],
                              reports: [.init(pid: 100, node: 3, session: "3-77")])
    }

    static var peerRequests: [PeerRequest] {
        [.attach(channel: "1-5.0", direction: .in), .attach(channel: "1-100-7.2", direction: .out), .where(pid: 65536), .ps,
         .run(run), .run(RunRequest(cwd: "/", uid: 0, gid: 0, groups: [], argv: ["true"], environment: [], stdio: [], session: nil)),
         .restore(restore),
         .restore(RestoreRequest(id: "2-3-4", pid: 3, tasks: [], images: nil, ships: [], termios: [], reports: [])),
         .precopy(id: "1-70000-42"),
         .migrate(pid: 70000, node: 2, tree: true, uid: 1000, throughRoot: false, precopy: true),
         .migrate(pid: 1, node: 3, tree: false, uid: 0, throughRoot: true, precopy: false),
         .exited(session: "1-5", status: 143, how: "killed by signal 15"), .exited(session: "1-6", status: 0, how: ""),
         .kill(pid: 70000, signal: 15, uid: 65534), .settle(id: "1-70000-42")]
    }

    static let localRequests: [LocalRequest] = [
        .where(pids: [1, 65536, pid_t.max]), .where(pids: []), .ps, .migrate(pid: 70000, node: 2, tree: false, throughRoot: true, precopy: true),
        .migrate(pid: 70000, node: 2, tree: true, throughRoot: false, precopy: false),
        .onnode(OnnodeRequest(node: 2, persistent: false, cwd: "/home/u\\x", argv: ["cat", "a\nb"], environment: ["A=b\r", "PATH=/bin"])),
        .onnode(OnnodeRequest(node: 1, persistent: true, cwd: "/", argv: ["true"], environment: [])),
        .signal(2), .signal(64),
    ]

    static let steps: [RestoreStep] = [.carry(resource: "pipe:[7]", size: 0), .carry(resource: "tty[1:2]", size: ProcAgent.maxCarryBytes),
                                       .file(name: "pages-1.img", size: 1 << 33), .go]

    /// Each with the last round announced before it.
    static let precopySteps: [(step: PrecopyStep, after: Int)] = [
        (.round(number: 1), 0), (.file(name: "pagemap-70000.img", size: 4096), 1), (.round(number: 2), 1),
        (.round(number: MigrationTransaction.maxRounds), MigrationTransaction.maxRounds - 1), (.file(name: "pages-1.img", size: 0), 3),
        (.restore(restore), 2),
    ]

    static let replies: [PeerReply] = [.ok, .error("no such process on node 2"), .error(""), .end, .where(found: true, command: "sleep 30"),
                                       .where(found: false, command: ""), .started(pid: 65537), .restored(pid: 100, ms: 1534)]

    static let localReplies: [LocalReply] = [
        .started(pid: 65537, node: 2), .exit(status: 143, how: "killed by signal 15"), .exit(status: 0, how: ""),
        .migrated(.init(pid: 70000, node: 3, name: "node 3", freezeMs: 812, dumpMs: 300, totalMs: 1500, shipped: 2)),
        .migrated(.init(pid: 70000, node: 3, name: "", freezeMs: 812, dumpMs: 300, totalMs: 9500, shipped: 0, restoreMs: 400, rounds: 3,
                        precopyBytes: 220 << 20, frozenBytes: 9 << 20, note: "")),
        .migrated(.init(pid: 7, node: 2, name: "n2", freezeMs: 1, dumpMs: 1, totalMs: 1, shipped: 0, note: "no pre-copy (criu pre-dump failed)")),
        .where(pid: 70000, nodes: [1, 3]), .where(pid: 5, nodes: []),
        .ps(node: 2, rows: [.init(pid: 1, uid: 0, command: "/sbin/init"), .init(pid: 70000, uid: 1000, command: " two\nlines  x")]),
        .ps(node: 1, rows: []), .error("proc: unknown request x"), .end,
    ]

    @Test("every request and reply round-trips through the wire bytes, which start with the version")
    func roundTrip() throws {
        for r in Self.peerRequests {
            #expect(r.encode().encoded.starts(with: Array("v=\(Fields.version)\nop=".utf8)))
            #expect(try PeerRequest.decode(Self.wire(r.encode()), from: 1) == r, "\(r.encode())")
        }
        for r in Self.localRequests {
            #expect(r.encode().encoded.starts(with: Array("v=\(Fields.version)\nop=".utf8)))
            #expect(try LocalRequest.decode(Self.wire(r.encode())) == r, "\(r.encode())")
        }
        for s in Self.steps { #expect(try RestoreStep.decode(Self.wire(s.encode())) == s) }
        for (s, after) in Self.precopySteps { #expect(try PrecopyStep.decode(Self.wire(s.encode()), after: after) == s, "\(s)") }
        for r in Self.replies { #expect(try PeerReply.decode(Self.wire(r.encode())) == r) }
        for r in Self.localReplies { #expect(try LocalReply.decode(Self.wire(r.encode())) == r, "\(r.encode())") }
        // The agent's ps parts (built as rows under a budget) are LocalReply.ps.
        let parts = ProcAgent.psMessages(node: 4, rows: ["1 0 init", "77 1000 sleep  30"])
        #expect(try parts.map { try LocalReply.decode(Self.wire($0)) }
                == [.ps(node: 4, rows: [.init(pid: 1, uid: 0, command: "init"), .init(pid: 77, uid: 1000, command: "sleep  30")])])
    }

    @Test("a local reply: the numbers a command prints or returns are checked, not defaulted")
    func localRepliesChecked() {
        func refusal(_ f: Fields) -> String {
            do { _ = try LocalReply.decode(Self.wire(f)); return "" } catch { return error.description }
        }
        // onnode's exit status used to default to 255 when missing or bad.
        #expect(refusal(Fields("exit", [("how", "")])) == "the exit message has no status")
        #expect(refusal(Fields("exit", [("status", "x"), ("how", "")])).hasPrefix("the exit message has a bad status"))
        #expect(refusal(Fields("where", [("pid", "5"), ("nodes", "1,,2")])).hasPrefix("the where message has a bad nodes"))
        #expect(refusal(Fields("ps", [("node", "1"), ("p", "1 root init")])).hasPrefix("the ps message has a bad p"))
        #expect(refusal(Fields("started", [("pid", "5")])) == "the started message has no node")
    }

    @Test("the version line: missing or another is a clear error that asks about the ssi versions")
    func version() throws {
        let f = Fields("where", [("pid", "1")])
        #expect(Array(f.encoded.prefix(4)) == Array("v=4\n".utf8))
        func refusal(_ text: String) -> ProcMessageError? {
            do { _ = try Fields.decode(Array(text.utf8)); return nil } catch { return error }
        }
        // An agent before the version: its request starts with op=.
        let old = refusal("op=where\npid=1")
        #expect(old?.isVersionMismatch == true && old?.description.contains("without a protocol version") == true, "\(String(describing: old))")
        #expect(old?.asSSIError.description.contains("are both nodes running the same ssi?") == true)
        let older = refusal("v=1\nop=where\npid=1")
        #expect(older?.isVersionMismatch == true && older?.description.contains("\"1\"") == true, "\(String(describing: older))")
        #expect(refusal("v=4 \nop=where")?.isVersionMismatch == true, "the line is exactly v=4")
        #expect(refusal("v=3\nop=where\npid=1")?.isVersionMismatch == true, "the version before deputies")
        #expect(refusal("v=4\npid=1")?.description == "a message without op", "op comes first after the version")
        #expect(refusal("v=4")?.description == "a message without op")
        #expect(refusal("v=4\nop=ps") == nil)
        // Over the limit: refused by its size alone.
        let big = refusal("v=4\nop=ps\np=" + String(repeating: "x", count: SecureChannel.maxPayload))
        #expect(big?.description.contains("over the limit") == true)
    }

    /// Decodes `pairs` as a peer's request; the refusal's words, or "".
    func peerRefusal(_ op: String, _ pairs: [(String, String)]) -> String {
        do {
            _ = try PeerRequest.decode(Self.wire(Fields(op, pairs)), from: 4)
            return ""
        } catch {
            return error.description
        }
    }

    @Test("a peer's request: missing and bad fields are refused by name, never defaulted")
    func peerFieldsChecked() {
        #expect(peerRefusal("frobnicate", []) == "unknown request frobnicate")
        // `where` without a pid used to ask about pid 0.
        #expect(peerRefusal("where", []) == "the where message has no pid")
        #expect(peerRefusal("where", [("pid", "0")]).hasPrefix("the where message has a bad pid"))
        #expect(peerRefusal("where", [("pid", "4294967296")]).hasPrefix("the where message has a bad pid"))
        #expect(peerRefusal("attach", [("channel", "c"), ("dir", "sideways")]).hasPrefix("the attach message has a bad dir"))
        #expect(peerRefusal("attach", [("dir", "in")]) == "the attach message has no channel")
        // `exited` without a status used to report 255.
        #expect(peerRefusal("exited", [("session", "1-5"), ("how", "")]) == "the exited message has no status")
        #expect(peerRefusal("exited", [("session", "1-5"), ("status", "0")]) == "the exited message has no how")
        for (field, value) in [("uid", "4294967295"), ("uid", "4294967296"), ("pid", "-1"), ("signal", "x")] {
            var pairs = [("pid", "7"), ("signal", "9"), ("uid", "0")]
            pairs.removeAll { $0.0 == field }
            #expect(peerRefusal("kill", pairs + [(field, value)]).hasPrefix("the kill message has a bad \(field)"), "\(field)=\(value)")
        }
        // tree and root: "1" or "0", present.
        #expect(peerRefusal("migrate", [("pid", "7"), ("node", "2"), ("uid", "0"), ("root", "0")]) == "the migrate message has no tree")
        #expect(peerRefusal("migrate", [("pid", "7"), ("node", "2"), ("uid", "0"), ("tree", "yes"), ("root", "0")])
                    .hasPrefix("the migrate message has a bad tree"))
        // run: the identity's own words first, then the rest.
        #expect(peerRefusal("run", [("cwd", "/"), ("arg", "id")]).hasPrefix("node 4's request has no valid uid (none)"))
        let id = [("uid", "1"), ("gid", "1")]
        #expect(peerRefusal("run", id + [("cwd", "/")]) == "the run message has no arg")
        #expect(peerRefusal("run", id + [("arg", "id")]) == "the run message has no cwd")
        for std in ["3|pipe-in|1|c", "0|pipe-in|1|c\u{0}|x", "0|tcp|1|c|5|1", "0|pipe-in|x|c", "0|pipe-in|1|", "00|pipe-in|1|c", "0"] {
            #expect(peerRefusal("run", id + [("cwd", "/"), ("arg", "id"), ("std", std)]).hasPrefix("the run message has a bad std"), "\(std)")
        }
        #expect(peerRefusal("run", id + [("cwd", "/"), ("arg", "id"), ("std", "0|pipe-in|1|a"), ("std", "0|pipe-in|1|b")])
                    .hasPrefix("the run message has a bad std"), "stdin twice")
        #expect(peerRefusal("run", id + [("cwd", "/"), ("arg", "id"), ("session", "")]).hasPrefix("the run message has a bad session"))
    }

    @Test("a restore request: its id is never a path, its images stay under the cluster root, its specs are exact")
    func restoreChecked() {
        let base = [("id", "1-2-3"), ("pid", "2")]
        #expect(peerRefusal("restore", base) == "")
        for id in ["../x", "1-2-3/..", "", "a", String(repeating: "1", count: 65)] {
            #expect(peerRefusal("restore", [("id", id), ("pid", "2")]).contains("bad id") || id.isEmpty, "\(id)")
        }
        #expect(peerRefusal("restore", [("pid", "2")]) == "the restore message has no id")
        #expect(peerRefusal("restore", [("id", "1-2-3")]) == "the restore message has no pid")
        #expect(peerRefusal("restore", base + [("images", "/tmp/x")]).hasPrefix("the restore message has a bad images"))
        #expect(peerRefusal("restore", base + [("images", "/cluster/migrate/../../etc")]).hasPrefix("the restore message has a bad images"))
        #expect(peerRefusal("restore", base + [("task", "0")]).hasPrefix("the restore message has a bad task"))
        // A tcp spec's holder is required (it was injected into pid 0);
        // only tcp has one.
        for ship in ["socket:[4]|tcp|1|c", "socket:[4]|tcp|1|c|0|3", "socket:[4]|tcp|1|c|5|-1", "pipe:[1]|pipe-in|1|c|5|3",
                     "pipe:[1]|pipe-in|1", "pipe:[1]|fifo|1|c", "|pipe-in|1|c", "/dev/x|device|1|c"] {
            #expect(peerRefusal("restore", base + [("ship", ship)]).hasPrefix("the restore message has a bad ship"), "\(ship)")
        }
        #expect(peerRefusal("restore", base + [("ship", "socket:[4]|tcp|1|c|5|3")]) == "")
        // A terminal's modes: this ABI's size, in lower-case hex.
        for mode in ["tty[1:2]|00", "tty[1:2]|" + Self.termiosHexValue.uppercased(), "|" + Self.termiosHexValue,
                     "tty[1:2]|" + String(repeating: "zz", count: MemoryLayout<termios>.size)] {
            #expect(peerRefusal("restore", base + [("termios", mode)]).hasPrefix("the restore message has a bad termios"), "\(mode.prefix(12))")
        }
        for report in ["1|2", "0|2|s", "1|x|s", "1|2|"] {
            #expect(peerRefusal("restore", base + [("report", report)]).hasPrefix("the restore message has a bad report"), "\(report)")
        }
    }

    @Test("the restore transfer's steps: sizes are checked before anything is reserved, names are never paths")
    func stepsChecked() {
        func refusal(_ f: Fields) -> String {
            do { _ = try RestoreStep.decode(Self.wire(f)); return "" } catch { return error.description }
        }
        #expect(refusal(Fields("carry", [("resource", "r"), ("size", String(ProcAgent.maxCarryBytes + 1))])).contains("the limit is"))
        #expect(refusal(Fields("carry", [("resource", "r"), ("size", "-1")])).contains("the limit is"))
        // A carry without a size used to be read as 0 bytes.
        #expect(refusal(Fields("carry", [("resource", "r")])) == "the carry message has no size")
        #expect(refusal(Fields("file", [("name", "../x.img"), ("size", "1")])).hasPrefix("the file message has a bad name"))
        #expect(refusal(Fields("file", [("name", ".hidden"), ("size", "1")])).hasPrefix("the file message has a bad name"))
        #expect(refusal(Fields("file", [("name", "a.img"), ("size", "-5")])).hasPrefix("the file message has a bad size"))
        #expect(refusal(Fields("file", [("name", "a.img"), ("size", "99999999999999999999")])).hasPrefix("the file message has a bad size"))
        #expect(refusal(Fields("restored", [("pid", "1")])) == "unknown request restored")
    }

    @Test("the pre-copy steps: rounds one by one up to the bound, no file before a round, no restore of another shape")
    func precopyStepsChecked() {
        func refusal(_ f: Fields, after: Int) -> String {
            do { _ = try PrecopyStep.decode(Self.wire(f), after: after); return "" } catch { return error.description }
        }
        #expect(refusal(Fields("round", [("n", "2")]), after: 0) == "the round message has a bad n (round 2 after round 0, at most 6)")
        #expect(refusal(Fields("round", [("n", "1")]), after: 1).hasPrefix("the round message has a bad n"), "a round again")
        #expect(refusal(Fields("round", [("n", "7")]), after: 6).hasPrefix("the round message has a bad n"), "past the bound")
        #expect(refusal(Fields("round", [("n", "-1")]), after: 0).hasPrefix("the round message has a bad n"))
        #expect(refusal(Fields("round"), after: 0) == "the round message has no n")
        #expect(refusal(Fields("file", [("name", "pages-1.img"), ("size", "1")]), after: 0)
                == "the file message has a bad name (an image file before any pre-copy round)")
        #expect(refusal(Fields("file", [("name", "../parent"), ("size", "1")]), after: 1).hasPrefix("the file message has a bad name"))
        #expect(refusal(Fields("restore", [("id", "../x"), ("pid", "5")]), after: 1).hasPrefix("the restore message has a bad id"))
        #expect(refusal(Fields("go"), after: 1) == "unknown request go", "the restore comes before its go")
        #expect(refusal(Fields("precopy", [("id", "1-2-3")]), after: 0) == "unknown request precopy")
        func peer(_ f: Fields) -> String {
            do { _ = try PeerRequest.decode(Self.wire(f), from: 2); return "" } catch { return error.description }
        }
        #expect(peer(Fields("precopy", [("id", "1-2/3")])).hasPrefix("the precopy message has a bad id"))
        #expect(peer(Fields("migrate", [("pid", "5"), ("node", "2"), ("tree", "0"), ("uid", "0"), ("root", "0")])) == "the migrate message has no precopy")
    }

    @Test("ssi-migrate's answer: the freeze's parts and the pre-copy rounds, or why there were none")
    func movedLine() {
        var m = LocalReply.Migrated(pid: 70000, node: 2, name: "node2", freezeMs: 900, dumpMs: 300, totalMs: 9000, shipped: 1,
                                    restoreMs: 500, rounds: 3, precopyBytes: 230 << 20, frozenBytes: 12 << 20)
        #expect(ProcTools.movedLine(pid: 70000, m) == "70000: moved to node 2 (node2), frozen 900 ms (dump 300 ms of 12 MB, transfer 100 ms, restore 500 ms); 3 pre-copy rounds sent 230 MB while it ran; 9000 ms in all, 1 descriptors shipped")
        m.rounds = 1
        m.precopyBytes = 3 << 19
        #expect(ProcTools.movedLine(pid: 70000, m).contains("; 1 pre-copy round sent 1.5 MB while it ran;"))
        m.rounds = 0
        m.restoreMs = 0
        m.frozenBytes = 0
        #expect(ProcTools.movedLine(pid: 70000, m).contains("frozen 900 ms (dump 300 ms); stop and copy;"))
        m.note = "no pre-copy (criu pre-dump failed (exited 1))"
        #expect(ProcTools.movedLine(pid: 70000, m).contains("; no pre-copy (criu pre-dump failed (exited 1));"))
        // Numbers at the ends of their range (a peer's) print, never trap.
        let extreme = LocalReply.Migrated(pid: 1, node: 2, name: "", freezeMs: .min, dumpMs: .max, totalMs: .max, shipped: .min,
                                          restoreMs: .max, rounds: .max, precopyBytes: .max, frozenBytes: .min)
        #expect(ProcTools.movedLine(pid: 1, extreme).contains("pre-copy rounds sent"))
        m.frozenBytes = (5 << 20) + (1 << 19)
        m.restoreMs = 1
        #expect(ProcTools.movedLine(pid: 70000, m).contains("dump 300 ms of 5.5 MB"))
    }

    @Test("a local request: bounded, exact, and identity fields are not read")
    func localChecked() throws {
        func refusal(_ f: Fields) -> String {
            do { _ = try LocalRequest.decode(Self.wire(f)); return "" } catch { return error.description }
        }
        var many = Fields("where")
        for p in 1...(ProcAgent.maxWherePIDs + 1) { many.add("pid", p) }
        #expect(refusal(many).contains("1025 PIDs in one request: at most 1024"))
        #expect(refusal(Fields("where", [("pid", "1"), ("pid", "x")])).hasPrefix("the where message has a bad pid"))
        #expect(refusal(Fields("migrate", [("pid", "5"), ("tree", "0"), ("root", "0")])) == "the migrate message has no node")
        #expect(refusal(Fields("onnode", [("node", "2"), ("persistent", "0"), ("cwd", "/")])) == "the onnode message has no arg")
        #expect(refusal(Fields("signal", [("signal", "0")])).hasPrefix("the signal message has a bad signal"))
        #expect(refusal(Fields("signal", [("signal", "65")])).hasPrefix("the signal message has a bad signal"))
        #expect(refusal(Fields("kill", [("pid", "5")])) == "the kill message has no signal")
        #expect(refusal(Fields("kill", [("pid", "5"), ("signal", "65")])).hasPrefix("the kill message has a bad signal"))
        #expect(try LocalRequest.decode(Self.wire(LocalRequest.kill(pid: 70001, signal: 0).encode())) == .kill(pid: 70001, signal: 0))
        #expect(refusal(Fields("nope", [])) == "unknown request nope")
        // A forged identity in an onnode request decodes to the same request.
        var forged = LocalRequest.onnode(OnnodeRequest(node: 2, persistent: false, cwd: "/", argv: ["id"], environment: [])).encode()
        for (k, v) in [("client", "1"), ("uid", "0"), ("gid", "0"), ("group", "0")] { forged.add(k, v) }
        #expect(try LocalRequest.decode(Self.wire(forged))
                == .onnode(OnnodeRequest(node: 2, persistent: false, cwd: "/", argv: ["id"], environment: [])))
    }

    @Test("Fuzz: every decoder, on mutated wire bytes: never traps, and what it takes re-encodes to itself")
    func fuzz() {
        let seeds = Self.peerRequests.map { $0.encode().encoded } + Self.localRequests.map { $0.encode().encoded }
            + Self.steps.map { $0.encode().encoded } + Self.replies.map { $0.encode().encoded }
            + Self.precopySteps.map { $0.step.encode().encoded }
            + Self.localReplies.map { $0.encode().encoded }
        var mismatches: [String] = []
        var taken = 0
        Fuzz.run("proc-messages", seeds: seeds, iterations: Fuzz.iterations(default: 1500)) { bytes in
            guard let f = try? Fields.decode(bytes) else { return }
            if let r = try? PeerRequest.decode(f, from: 2) {
                taken += 1
                if (try? PeerRequest.decode(Self.wire(r.encode()), from: 2)) != r { mismatches.append("\(r)") }
            }
            if let r = try? LocalRequest.decode(f) {
                taken += 1
                if (try? LocalRequest.decode(Self.wire(r.encode()))) != r { mismatches.append("\(r)") }
            }
            if let s = try? RestoreStep.decode(f) {
                taken += 1
                if (try? RestoreStep.decode(Self.wire(s.encode()))) != s { mismatches.append("\(s)") }
            }
            for after in [0, 1, MigrationTransaction.maxRounds] {
                if let s = try? PrecopyStep.decode(f, after: after) {
                    taken += 1
                    if (try? PrecopyStep.decode(Self.wire(s.encode()), after: after)) != s { mismatches.append("\(s)") }
                }
            }
            if let r = try? PeerReply.decode(f) {
                taken += 1
                if (try? PeerReply.decode(Self.wire(r.encode()))) != r { mismatches.append("\(r)") }
            }
            if let r = try? LocalReply.decode(f) {
                taken += 1
                if (try? LocalReply.decode(Self.wire(r.encode()))) != r { mismatches.append("\(r)") }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
        // The seeds at least, and mutants that kept their meaning.
        #expect(taken >= Self.peerRequests.count + Self.localRequests.count, "\(taken)")
    }
}

/// The relay's messages (PROTOCOLS.md 3.8).
@Suite struct RelayMessageTests {
    static let messages: [RelayMessage] = [.attached(window: nil), .attached(window: .init(rows: 41, cols: 99)), .read(waiting: false),
                                           .read(waiting: true), .close,
                                           .winsize(.init(rows: 0, cols: UInt16.max)), .size,
                                           .keys(.init(isig: true, intr: 3, quit: 28, susp: 26)), .keys(.init(isig: false, intr: 0, quit: 255, susp: 0))]

    @Test("round-trip; a window is both numbers or neither, each a UInt16")
    func roundTripAndChecks() throws {
        for m in Self.messages { #expect(try RelayMessage.decode(ProcMessageTests.wire(m.encode())) == m) }
        func refusal(_ f: Fields) -> String {
            do { _ = try RelayMessage.decode(ProcMessageTests.wire(f)); return "" } catch { return error.description }
        }
        #expect(refusal(Fields("attached", [("rows", "24")])) == "the attached message has no cols")
        #expect(refusal(Fields("winsize", [("rows", "65536"), ("cols", "80")])).hasPrefix("the winsize message has a bad rows"))
        #expect(refusal(Fields("termios")) == "unknown request termios")
        #expect(refusal(Fields("read", [("waiting", "yes")])).hasPrefix("the read message has a bad waiting"))
        #expect(try RelayMessage.decode(ProcMessageTests.wire(Fields("read"))) == .read(waiting: false), "a peer before `waiting` sends none")
        #expect(RelayMessage.read(waiting: false).encode() == Fields("read"), "and is sent none when it is not set")
        #expect(refusal(Fields("keys", [("isig", "1"), ("intr", "256"), ("quit", "28"), ("susp", "26")])).hasPrefix("the keys message has a bad intr"))
        #expect(refusal(Fields("keys", [("isig", "2"), ("intr", "3"), ("quit", "28"), ("susp", "26")])).hasPrefix("the keys message has a bad isig"))
    }

    @Test("the signal keys: read from a terminal's modes, and put on home's raw modes (ISIG and the three characters only)")
    func signalKeys() {
        var cooked = termios()
        cooked.c_lflag = tcflag_t(ISIG | ICANON | ECHO)
        withUnsafeMutableBytes(of: &cooked.c_cc) { cc in cc[Int(VINTR)] = 3; cc[Int(VQUIT)] = 28; cc[Int(VSUSP)] = 26; cc[Int(VEOF)] = 4 }
        let keys = RelayMessage.SignalKeys(cooked)
        #expect(keys == .init(isig: true, intr: 3, quit: 28, susp: 26))
        var raw = cooked
        cfmakeraw(&raw)
        let home = keys.applied(to: raw)
        #expect(home.c_lflag & tcflag_t(ISIG) != 0 && home.c_lflag & tcflag_t(ICANON | ECHO) == 0, "raw, but making signals")
        let off = RelayMessage.SignalKeys(isig: false, intr: 3, quit: 28, susp: 26).applied(to: home)
        #expect(off.c_lflag & tcflag_t(ISIG) == 0, "a program that turned ISIG off gets its keys as bytes")
    }

    @Test("Fuzz: relay messages never trap, and what is taken re-encodes to itself")
    func fuzz() {
        var mismatches = 0
        Fuzz.run("relay-messages", seeds: Self.messages.map { $0.encode().encoded }, iterations: Fuzz.iterations(default: 400)) { bytes in
            guard let f = try? Fields.decode(bytes), let m = try? RelayMessage.decode(f) else { return }
            if (try? RelayMessage.decode(ProcMessageTests.wire(m.encode()))) != m { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test("a ship line's RESOURCE may hold | and %: escaped on the way out, and a bad escape is refused")
    func shipResourceEscapes() {
        let spec = ShipSpec(resource: "/srv/a|b%7C%.log", kind: .pipeOut, home: 2, channel: "2-9.0")
        #expect(spec.line == "/srv/a%7Cb%257C%25.log|pipe-out|2|2-9.0")
        #expect(ShipSpec(line: spec.line) == spec)
        #expect(ShipSpec(line: "/srv/a%zz|pipe-out|2|2-9.0") == nil)
        #expect(ShipSpec(line: "/srv/a%7|pipe-out|2|2-9.0") == nil)
        #expect(ShipSpec(line: "/srv/a|b|pipe-out|2|2-9.0") == nil)
    }
}
