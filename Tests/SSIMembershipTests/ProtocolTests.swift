import Foundation
import Testing
import SSITestSupport
import SSILinux
@testable import SSIMembership

/// The typed protocols: every message survives encode and decode; what
/// may grow travels in bounded parts and is put back together; the local
/// socket's requests carry a version.
@Suite struct CPGProtocolTests {
    static let entry = ClusterMount(id: "2.7.100", rule: .failover(2, 3), source: "/dev/disk/by-uuid/a b",
                                    target: "/mnt/tab\there\r\nx\\y", type: "ext4", options: "rw,noatime")

    @Test("every message round-trips through its bytes")
    func roundTrip() throws {
        let messages: [CPGMessage] = [
            .state(.comingUp, stage: "root-mounted"), .state(.up, stage: ""), .state(.goingDown, stage: "-x"),
            .gfs2([]), .gfs2(["c:root", "c:data"]), .devices(["m:1234-abcd", "s:5678"]),
            .boot(node: 4_294_967_295, stage: "dhcp"),
            .reload(id: "12-345_a", part: CPGMessage.Part(index: 2, count: 3), bytes: Array("[cluster]\r\n\n name = \"x\" \u{0}\u{ff}".utf8) + [0xff, 0x00]),
            .reload(id: "1", part: .only, bytes: []),
            .reloaded(id: "12-345", node: 2, result: "error: two\nlines and  spaces"),
            .mount(Self.entry),
            .mounted(id: "2.7.100", node: 3, result: "ok"), .mounted(id: "2.7.100", node: 1, result: "error: a  b\nc"),
            .umount(id: "1.2.3", target: "/mnt/a b\tc\nd"), .umounted(id: "1.2.3", node: 9, result: ""),
            .table(to: [3], part: .only, entries: []),
            .table(to: [3, 4, 5], part: CPGMessage.Part(index: 1, count: 2), entries: [Self.entry, Self.entry]),
            .lock(name: "fsck:é", holder: "1.5.18446744073709551615"), .unlock(name: "x", holder: "2.0.0"),
            .locks(to: [4], part: .only, queues: []),
            .locks(to: [4, 6], part: CPGMessage.Part(index: 3, count: 3),
                   queues: [.init(name: "a", holders: ["1.2.3", "2.3.4"]), .init(name: "a", holders: ["3.1.1"])]),
        ]
        for m in messages {
            let bytes = m.encode()
            #expect(bytes.starts(with: Array("v4 ".utf8)), "\(m)")
            #expect(try CPGMessage.decode(bytes) == m)
        }
        // The wire form is what PROTOCOLS.md says.
        #expect(String(decoding: CPGMessage.state(.up, stage: "").encode(), as: UTF8.self) == "v4 state UP -")
        #expect(String(decoding: CPGMessage.mounted(id: "1.2.3", node: 2, result: "ok").encode(), as: UTF8.self) == "v4 cmounted 1.2.3 2\nok")
        #expect(String(decoding: CPGMessage.locks(to: [3], part: .only, queues: []).encode(), as: UTF8.self) == "v4 locks 3 1/1")
        // A result is cut when sent, on a scalar boundary.
        let long = String(repeating: "é", count: CPGMessage.maxResultBytes)
        guard case .mounted(_, _, let cut) = try CPGMessage.decode(CPGMessage.mounted(id: "1", node: 1, result: long).encode()) else {
            Issue.record("not a cmounted")
            return
        }
        #expect(cut.utf8.count == CPGMessage.maxResultBytes && cut.allSatisfy { $0 == "é" })
    }

    @Test("ctable: ID not a token, a lone 'ctable' prefix or a bad record is refused")
    func tableRefusals() {
        func refused(_ text: String) -> Bool { (try? CPGMessage.decode(Array(text.utf8))) == nil }
        #expect(refused("v4 ctable3 1/1"))
        #expect(refused("v4 ctable 3 1/1\nnot a record"))
        #expect(refused("v4 ctable 3 1/1\na b\t1\t/mnt/x\ts\tt\to"))
        #expect(refused("v4 ctable 3,x 1/1"))
        #expect(refused("v4 ctable 3 1/\(CPGMessage.maxParts + 1)"))
        #expect(refused("v4 cmount a b\t1\t/mnt/x\ts\tt\to"))
        #expect(refused("v4 cumount 1.2.3 relative"))
        #expect(!refused("v4 ctable 3 1/1\n1.1.1\t1\t/mnt/x\ts\tt\to"))
    }

    func entries(_ n: Int, padding: Int) -> [ClusterMount] {
        (0..<n).map { i in
            ClusterMount(id: "1.\(i).5", rule: .every, source: "tmpfs", target: "/mnt/\(i)",
                         type: "tmpfs", options: "size=" + String(repeating: "9", count: padding))
        }
    }

    @Test("a table larger than a part is split, each part within the bound, and a newcomer gets all of it in order")
    func tableSplitAndReassembled() throws {
        let c = try FakeCluster(nodes: [1, 2])
        // 80 records of about 4 KiB: several parts.
        for e in entries(80, padding: 4000) {
            c.keepers[1]!.requestMount(e, client: 1)
        }
        c.run()
        #expect(c.tables()[2]?.count == 80)
        c.sent = []
        try c.add(3)
        c.join([3])
        let parts = c.sent.compactMap { m -> CPGMessage.Part? in if case .table(_, let p, _) = m { p } else { nil } }
        #expect(parts.count >= 5 && parts.map(\.index) == Array(1...parts.count), "\(parts)")
        #expect(c.sent.allSatisfy { $0.encode().count <= CPGMessage.partBudget + CPGMessage.maxEntryBytes })
        #expect(c.tables()[3] == c.tables()[1])
        #expect(c.keepers[3]!.awaitingTable == false)
    }

    @Test("a table whose sender leaves halfway is not taken; a part out of order drops the transfer")
    func tableCutShort() throws {
        let c = try FakeCluster(nodes: [1, 2])
        for e in entries(60, padding: 4000) { c.keepers[1]!.requestMount(e, client: 1) }
        c.run()
        try c.add(3)
        c.members.insert(3)
        for n in [UInt32(1), 2, 3] { c.keepers[n]!.membershipChanged(members: c.members, left: [], joined: [3]) }
        let table = c.queue.filter { (try? CPGMessage.decode($0.1)).map { if case .table = $0 { true } else { false } } ?? false }
        #expect(table.count >= 3)
        // Only the first part arrives, then its sender leaves.
        c.queue = []
        c.deliver(table[0].0, table[0].1)
        c.leave(1)
        #expect(c.keepers[3]!.awaitingTable && c.tables()[3] == [])
        // A part out of order (2 after nothing) is not taken either.
        c.deliver(table[1].0, table[1].1)
        c.deliver(table.last!.0, table.last!.1)
        #expect(c.keepers[3]!.awaitingTable && c.tables()[3] == [])
    }

    @Test("a cluster unmount while a newcomer waits for the table does not come back with the table")
    func umountWhileAwaitingTable() throws {
        let c = try FakeCluster(nodes: [1, 2])
        c.keepers[1]!.requestMount(ClusterMount(id: "-", rule: .every, source: "tmpfs", target: "/mnt/t", type: "tmpfs", options: ""), client: 1)
        c.run()
        try c.add(3)
        c.members.insert(3)
        for n in [UInt32(1), 2, 3] { c.keepers[n]!.membershipChanged(members: c.members, left: [], joined: [3]) }
        // The table (with /mnt/t) is in flight; an unmount is ordered before it.
        let table = c.queue
        c.queue = []
        c.keepers[2]!.requestUmount(target: "/mnt/t", client: 5)
        c.queue += table
        c.run()
        #expect(c.tables().values.allSatisfy { $0.isEmpty }, "\(c.tables())")
    }

    @Test("lock queues for a newcomer: many queues go in several parts and every one arrives")
    func locksSplit() throws {
        let c = try FakeCluster(nodes: [1, 2])
        // 300 locks with 250-byte names, held on node 1, one waiter each on node 2: about 80 KB.
        let names = (0..<300).map { "fsck:\($0)-" + String(repeating: "u", count: 240) }
        for (i, name) in names.enumerated() {
            c.locks[1]!.request(name, client: Int32(100 + i))
            c.locks[2]!.request(name, client: Int32(100 + i))
        }
        c.run()
        c.sent = []
        try c.add(3)
        c.join([3])
        let parts = c.sent.filter { if case .locks = $0 { true } else { false } }
        #expect(parts.count >= 2, "\(parts.count)")
        #expect(parts.allSatisfy { $0.encode().count <= CPGMessage.partBudget })
        // Node 3 knows every queue: its client waits behind node 1, then
        // behind node 2's waiter.
        c.locks[3]!.request(names[0], client: 7)
        c.locks[3]!.request(names[299], client: 8)
        c.run()
        #expect(c.replies[3] == ["7 waiting: held by node 1", "8 waiting: held by node 1"], "\(c.replies[3] ?? [])")
        c.leave(1)
        #expect(c.replies[3]?.count == 2)
        c.leave(2)
        #expect(c.replies[3]?.suffix(2).sorted() == ["7 end 0", "8 end 0"])
    }

    @Test("one very long queue is cut into items of the same name, in order, each part within the budget")
    func longQueueSplit() throws {
        let holders = (0..<20000).map { "2.\($0).\($0 * 7)" }
        let parts = CPGMessage.lockParts(to: [3], queues: [.init(name: "q", holders: holders)])
        #expect(parts.count >= 3)
        var r = Reassembly<CPGMessage.LockQueue>()
        var all: [CPGMessage.LockQueue]?
        for p in parts {
            #expect(p.encode().count <= CPGMessage.partBudget)
            guard case .locks(_, let part, let queues) = try CPGMessage.decode(p.encode()) else { Issue.record("\(p)"); return }
            all = r.add(from: 1, key: "", part: part, items: queues)
        }
        let got = try #require(all)
        #expect(Set(got.map(\.name)) == ["q"] && got.flatMap(\.holders) == holders)
    }

    @Test("a holder unlocked while a newcomer waits for the lock state is not brought back by it")
    func unlockWhileAwaitingState() throws {
        let c = try FakeCluster(nodes: [1, 2])
        c.locks[1]!.request("fsck:x", client: 3)
        c.run()
        try c.add(3)
        c.members.insert(3)
        for n in [UInt32(1), 2, 3] { c.locks[n]!.membershipChanged(members: c.members, left: [], joined: [3]) }
        let state = c.queue
        c.queue = []
        c.locks[1]!.clientClosed(3)
        c.queue += state
        c.run()
        c.locks[3]!.request("fsck:x", client: 8)
        c.run()
        #expect(c.replies[3] == ["8 end 0"], "\(c.replies[3] ?? [])")
    }

    @Test("a reload is sent in parts of the budget and only a whole one is applied; more than the bound is refused")
    func reloadParts() throws {
        let text = Array(String(repeating: "# a comment line of a long cluster.conf\n", count: 5000).utf8)
        let parts = try #require(CPGMessage.reloadParts(id: "1-2", text: text))
        #expect(parts.count == (text.count + CPGMessage.partBudget - 1) / CPGMessage.partBudget)
        var r = Reassembly<UInt8>()
        var whole: [UInt8]?
        for p in parts {
            let decoded = try CPGMessage.decode(p.encode())
            guard case .reload(let id, let part, let bytes) = decoded else { Issue.record("\(decoded)"); return }
            #expect(whole == nil)
            whole = r.add(from: 2, key: id, part: part, items: bytes)
        }
        #expect(whole == text && r.isEmpty)
        #expect(CPGMessage.reloadParts(id: "1", text: [UInt8](repeating: 0, count: CPGMessage.maxReloadBytes + 1)) == nil)
        #expect(CPGMessage.reloadParts(id: "1", text: [])?.count == 1)
        // Two senders' parts interleave in the agreed order: each is its own.
        var r2 = Reassembly<UInt8>()
        #expect(r2.add(from: 1, key: "a", part: .init(index: 1, count: 2), items: [1]) == nil)
        #expect(r2.add(from: 2, key: "b", part: .init(index: 1, count: 2), items: [2]) == nil)
        #expect(r2.add(from: 1, key: "a", part: .init(index: 2, count: 2), items: [3]) == [1, 3])
        // Another id from the same sender drops the first.
        #expect(r2.add(from: 2, key: "c", part: .init(index: 2, count: 2), items: [4]) == nil)
        #expect(r2.isEmpty)
    }

    @Test("Fuzz: reassembly of mutated parts never traps and never returns more than was sent")
    func reassemblyFuzz() {
        let seeds = Fuzz.seeds(["v4 reload 1 1/3\nabc", "v4 reload 1 2/3\ndef", "v4 reload 1 3/3\ng", "v4 reload 2 1/1\n"])
        var r = Reassembly<UInt8>()
        Fuzz.run("cpg-reassembly", seeds: seeds, iterations: Fuzz.iterations(default: 400)) { bytes in
            guard case .reload(let id, let part, let b)? = try? CPGMessage.decode(bytes) else { return }
            if let whole = r.add(from: UInt32(bytes.count % 3), key: id, part: part, items: b) {
                #expect(whole.count <= part.count * CPGMessage.partBudget)
            }
        }
    }
}

@Suite struct AgentProtocolTests {
    @Test("requests round-trip; every request starts with the version")
    func roundTrip() throws {
        let requests: [AgentRequest] = [
            .mount(CPGProtocolTests.entry), .umount(target: "/mnt/a b\tc\r\nd\\"), .lock(name: "fsck:1234"), .lock(name: ""),
        ]
        for r in requests {
            #expect(r.encode().hasPrefix("v2 "))
            #expect(!r.encode().contains("\n"))
            #expect(try AgentRequest.decode(r.encode()) == r)
        }
        #expect(AgentReply.decode("end 32") == .end(32))
        #expect(AgentReply.decode("end x") == .end(1))
        #expect(AgentReply.decode("node 2: mounted") == .line("node 2: mounted"))
        #expect(AgentReply.line("a\nb").encode() == "a b")
        #expect(AgentReply.end(0).encode() == "end 0")
    }

    @Test("an old client, another version and an unknown request each get a clear answer")
    func refusals() {
        func error(_ line: String) -> AgentRequestError? {
            do { _ = try AgentRequest.decode(line); return nil } catch { return error }
        }
        #expect(error("mount 1\t1\t/mnt/x\ts\tt\to") == .unversioned("mount 1\t1\t/mnt/x\ts\tt\to"))
        #expect(error("v4 lock x") == .unsupportedVersion("v4"))
        #expect(error("v4 lock x")?.description.contains("speaks protocol v2") == true)
        #expect(error("v2 frobnicate") == .unknownKind("v2 frobnicate"))
        #expect(error("v2 frobnicate")?.description == "unknown request: v2 frobnicate")
        #expect(error("v2 mount not-a-record") != nil)
        #expect(error(String(repeating: "x", count: AgentSocket.maxLineBytes + 1)) == .tooLong(bytes: AgentSocket.maxLineBytes + 1))
    }

    @Test("Fuzz: request lines never trap")
    func requestFuzz() {
        let seeds = Fuzz.seeds(["v2 mount 1\t1\t/mnt/x\t/dev/vdb\text4\t-", "v2 umount /mnt/a\\tb", "v2 lock fsck:abc", "mount x", "v9 lock y"])
        Fuzz.run("agent-requests", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            let line = String(decoding: bytes, as: UTF8.self)
            if let r = try? AgentRequest.decode(line), case .mount = r {
                #expect((try? AgentRequest.decode(r.encode())) == r)
            }
            _ = AgentReply.decode(line)
        }
    }

    @Test("a client talking to an agent before v2 is told the agent is older")
    func oldAgent() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let request = AgentRequest.lock(name: "fsck:x")
        // What the old agent answers to a line it does not know.
        let answer = "unknown request: \(request.encode())\nend 1\n"
        _ = answer.withCString { write(pair[1], $0, strlen($0)) }
        do {
            _ = try AgentClient.exchange(pair[0], request, timeoutMs: 2000)
            Issue.record("no error")
        } catch {
            #expect(error.description.contains("older than this command"), "\(error)")
        }
        // A v2 agent's ordinary refusal stays an answer.
        _ = "bad lock name\nend 1\n".withCString { write(pair[1], $0, strlen($0)) }
        let a = try AgentClient.exchange(pair[0], request, timeoutMs: 2000)
        #expect(a.code == 1 && a.lines == ["bad lock name"])
        // A peer's words in an answer (a mount's error from node 2) reach
        // the caller, and its terminal, with their controls escaped.
        _ = "node 2: \u{1B}[2Jmount failed\tEBUSY\u{7F}\nend 32\n".withCString { write(pair[1], $0, strlen($0)) }
        var seen: [String] = []
        let b = try AgentClient.exchange(pair[0], request, timeoutMs: 2000) { seen.append($0) }
        #expect(b.code == 32 && b.lines == ["node 2: \\u001B[2Jmount failed\\tEBUSY\\u007F"], "\(b.lines)")
        #expect(seen == b.lines)
    }
}

@Suite struct ClusterViewEscapingTests {
    @Test("a node name or stage with a space, a %, a comma or a '-' survives the view file, and other readers' lines are unchanged")
    func escaped() throws {
        var n1 = NodeRecord(number: 1, name: "node one", address: "10.0.0.1", state: .comingUp, stage: "a b%c")
        n1.gfs2 = ["c:x%y"]
        n1.devices = ["m:1,2"]
        let n2 = NodeRecord(number: 2, name: "-", address: "", state: .up, stage: "")
        let view = ClusterView(clusterName: "my cluster", localNode: 1, quorate: true, expectedVotes: 2, totalVotes: 2, quorum: 2, nodes: [n1, n2])
        let text = view.serialized()
        #expect(text.contains("node 1 COMINGUP a%20b%25c node%20one 10.0.0.1\n"), "\(text)")
        #expect(text.contains("node 2 UP - %2D -\n"), "\(text)")
        #expect(try ClusterView(parsing: text, source: "t") == view)
        // Plain tokens are written as before.
        let plain = ClusterView(clusterName: "c", localNode: 1, quorate: false, expectedVotes: 1, totalVotes: 1, quorum: 1,
                                nodes: [NodeRecord(number: 1, name: "node1", address: "10.0.0.1", state: .up, stage: "")])
        #expect(plain.serialized().contains("node 1 UP - node1 10.0.0.1\n"))
        #expect(ClusterView.unword("%4") == "%4" && ClusterView.unword("%zz") == "%zz" && ClusterView.unword("%41") == "A")
    }

    @Test("a stage from the stage file becomes a token")
    func stageToken() {
        #expect(MembershipAgent.stageToken("root mounted\u{1b}") == "root_mounted_")
        #expect(MembershipAgent.stageToken(String(repeating: "s", count: 400)).utf8.count == CPGMessage.maxTokenBytes)
        #expect(CPGMessage.isToken(Substring(MembershipAgent.stageToken("é"))))
    }
}

@Suite struct ClusterViewFuzzTests {
    @Test("Fuzz: the view file's reader never traps, and a view it reads writes back to one it reads the same")
    func viewFuzz() {
        let seeds = Fuzz.seeds([
            "cluster c%20x\nlocal 1\nquorum quorate=1 expected=3 total=3 needed=2\nnode 1 UP - node1 10.0.0.1\n"
                + "node 2 COMINGUP a%20b n%2C2 -\ngfs2 1 c:root,c:d%25\ndevs 2 m:1234,s:5678\n",
            "node 3 DOWN %2D - -\n",
        ])
        Fuzz.run("cluster-view", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            guard let view = try? ClusterView(parsing: String(decoding: bytes, as: UTF8.self), source: "fuzz") else { return }
            // Whatever a reader accepted, the writer's form of it reads back equal
            // (names with spaces included: they are escaped).
            #expect((try? ClusterView(parsing: view.serialized(), source: "again")) == view)
        }
    }
}
