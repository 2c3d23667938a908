import Foundation
import Testing
import SSITestSupport
import SSILinux
@testable import SSIMembership

/// What peers and local clients send the membership agent: errors or
/// nothing, never a trap, and nothing the view file cannot hold.
@Suite struct MembershipRobustnessTests {
    func decode(_ text: String) -> CPGMessage? { try? CPGMessage.decode(Array(text.utf8)) }

    @Test("the agent's own messages decode exactly; values the view cannot hold are refused")
    func decodeExact() {
        #expect(decode("v4 state UP -") == .state(.up, stage: ""))
        #expect(decode("v4 state COMINGUP root-mounted") == .state(.comingUp, stage: "root-mounted"))
        #expect(decode("v4 boot 3 dhcp") == .boot(node: 3, stage: "dhcp"))
        #expect(decode("v4 gfs2 c:root,c:data") == .gfs2(["c:root", "c:data"]))
        #expect(decode("v4 devs -") == .devices([]))
        #expect(decode("v4 peers\nnode1 ed25519:AAAA\nnode2 ed25519:BB+/=") == .peers([.init(name: "node1", key: "ed25519:AAAA"),
                                                                                        .init(name: "node2", key: "ed25519:BB+/=")]))
        #expect(decode("v4 peers") == .peers([]))
        #expect(decode("v4 load 150 2") == .load(hundredths: 150, cpus: 2))
        #expect(decode("v4 load 100001 2") == nil && decode("v4 load 1 0") == nil && decode("v4 load 1") == nil, "out of range, or short")
        #expect(decode("v4 peers x") == nil)
        #expect(decode("v4 peers\nnode1 ed25519:A extra") == nil)
        #expect(decode("v4 peers\nnode1 \u{1b}[2J") == nil)
        #expect(String(decoding: CPGMessage.peers([.init(name: "n1", key: "k")]).encode(), as: UTF8.self) == "v4 peers\nn1 k")
        #expect(decode("v4 reload 12-345 1/1\n[cluster]\r\nname = \"x\"\n")
                == .reload(id: "12-345", part: .only, bytes: Array("[cluster]\r\nname = \"x\"\n".utf8)))
        #expect(decode("v4 reloaded 12-345 2\nerror: it failed") == .reloaded(id: "12-345", node: 2, result: "error: it failed"))
        // A stage with a newline would add a line to the view file.
        #expect(decode("v4 state UP a\nnode 9 UP - x 1.2.3.4") == nil)
        #expect(decode("v4 state UP \u{1b}[2J") == nil)
        #expect(decode("v4 state SIDEWAYS -") == nil)
        #expect(decode("v4 boot 99999999999 dhcp") == nil)
        #expect(decode("v4 devs a,,b") == nil)
        #expect(decode("v4 devs " + String(repeating: "a,", count: 2000) + "a") == nil)
        // A reload id names a file: no paths.
        #expect(decode("v4 reload ../../etc/passwd 1/1\nx") == nil)
        #expect(decode("v4 reloaded ../x 1\nok") == nil)
        #expect(decode("v4 reload 1 1/1") == nil)
        #expect(decode("v4 reload 1 2/1\nx") == nil)
        #expect(decode("v4 reload 1 0/1\nx") == nil)
        #expect(decode("") == nil)
        // Exact fields: a double space is not a separator run any more.
        #expect(decode("v4 cmounted  1.1.1 2\nok") == nil)
        #expect(decode("v4 lock fsck:x 1.2.3 extra") == nil)
    }

    @Test("versions: an old agent's messages, another version and an unknown kind are typed errors, not misparses")
    func versions() {
        func error(_ text: String) -> CPGMessageError? {
            do { _ = try CPGMessage.decode(Array(text.utf8)); return nil } catch { return error }
        }
        // What an ssi before v2 sends.
        #expect(error("v1 UP -") == .unsupportedVersion("v1"))
        #expect(error("gfs2 -") == .unversioned)
        #expect(error("ctable 3") == .unversioned)
        #expect(error("v5 state UP -") == .unsupportedVersion("v5"))
        #expect(error("v3 state UP -") == .unsupportedVersion("v3"), "the version before `load`")
        #expect(error("v99999999999999999999999 state UP -") == .unsupportedVersion("v99999999999999999999999"))
        #expect(error("v4 ctablex 3 1/1") == .unknownKind("ctablex"))
        #expect(error("v4 ctable") == .malformed(kind: "ctable", why: "0 fields, want 2"))
        #expect(error("v4") == .malformed(kind: "", why: "no kind"))
        #expect(error("v4 state UP -")?.isVersionMismatch == nil)
        #expect(error("v1 UP -")?.isVersionMismatch == true)
        // Before anything is copied.
        let big = [UInt8](repeating: 65, count: CPGMessage.maxMessageBytes + 1)
        #expect(error(String(decoding: big, as: UTF8.self)) == .tooLong(bytes: CPGMessage.maxMessageBytes + 1))
    }

    @Test("a lock holder named \".\" (or anything but NODE.FD.SEQ of the sender) is ignored; real locks still work")
    func lockHolderValidated() throws {
        let c = try FakeCluster(nodes: [1, 2])
        // Node 2 queues a bogus holder, then one of node 1's, then its own.
        for bogus in ["v4 lock fsck:x .", "v4 lock fsck:x ..", "v4 lock fsck:x 1.3.1", "v4 lock fsck:x a.b.c", "v4 lock fsck:x 2.3",
                      "v4 unlock fsck:x 1.3.1", "v4 locks 1,2 1/1 fsck:x=.,..", "v4 lock . 2.1.1x"] {
            c.queue.append((2, Array(bogus.utf8)))
        }
        c.run()
        // The decoder refused the malformed ones; the locks refused node 2
        // speaking for node 1's holder.
        #expect(c.refused.count == 6, "\(c.refused)")
        // A real client on node 1 gets the lock at once: nothing bogus queued.
        c.locks[1]!.request("fsck:x", client: 5)
        c.run()
        #expect(c.replies[1]?.contains("5 end 0") == true, "\(c.replies)")
        // Node 2's client waits, and is told who holds it.
        c.locks[2]!.request("fsck:x", client: 6)
        c.run()
        #expect(c.replies[2]?.contains("6 waiting: held by node 1") == true, "\(c.replies)")
        c.locks[1]!.clientClosed(5)
        c.run()
        #expect(c.replies[2]?.contains("6 end 0") == true, "\(c.replies)")
        // Local names: bounded, no separators.
        c.locks[1]!.request(String(repeating: "n", count: 300), client: 7)
        c.locks[1]!.request("a=b", client: 8)
        #expect(c.replies[1]?.filter { $0.hasPrefix("7 bad lock name") || $0.hasPrefix("8 bad lock name") }.count == 2, "\(c.replies)")
    }

    @Test("Fuzz: CPG messages from a peer: the decoder, locks and cluster mounts never trap")
    func membershipMessagesFuzz() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.locks[1]!.request("fsck:abc", client: 4)
        c.run()
        let seeds = Fuzz.seeds([
            "v4 peers\nnode1 ed25519:AAAA\nnode2 ed25519:BBBB", "v4 state UP -", "v4 state COMINGUP network", "v4 boot 3 image", "v4 gfs2 c:root", "v4 devs m:1234-abcd,s:5678",
            "v4 reload 12-34 1/2\n[cluster]\nname = \"t\"\n", "v4 reloaded 12-34 2\nok",
            "v4 lock fsck:abc 2.5.1", "v4 unlock fsck:abc 2.5.1", "v4 locks 3 1/1 fsck:abc=1.4.1,2.5.1",
            "v4 cmount 1.1.1\t1\t/mnt/x\t/dev/vdb\text4\t-", "v4 cmounted 1.1.1 2\nok", "v4 cumount 1.2.3 /mnt/x",
            "v4 cumounted 1.2.3 2\nerror: x", "v4 ctable 3 1/2\n1.1.1\t1\t/mnt/x\t/dev/vdb\text4\t-",
            "v4 ctable 3 2/2\n2.1.1\t*\t/mnt/y\ttmpfs\ttmpfs\t-",
        ])
        Fuzz.run("cpg-messages", seeds: seeds, iterations: Fuzz.iterations(default: 800)) { bytes in
            if bytes.count <= CPGMessage.maxResultBytes, let m = try? CPGMessage.decode(bytes) {
                // What decodes encodes back to something that decodes the same.
                #expect((try? CPGMessage.decode(m.encode())) == m)
            }
            c.deliver(2, bytes)
            c.queue.removeAll()
        }
        // Still working: a new lock on node 3 is granted.
        c.locks[3]!.request("fsck:other", client: 9)
        c.run()
        #expect(c.replies[3]?.contains("9 end 0") == true, "\(c.replies[3] ?? [])")
    }

    @Test("the local socket: a line without end is cut at 64 KiB and the client dropped; at most 64 clients")
    func agentSocketBounded() throws {
        let dir = "/tmp/ssi-agentsock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let door = try AgentSocket(directory: dir)
        defer { close(door.listenFD) }
        signal(SIGPIPE, SIG_IGN)
        guard let fd = AgentClient.connect(directory: dir) else { Issue.record("no connection"); return }
        defer { close(fd) }
        door.accept()
        #expect(door.clientFDs.count == 1)
        let server = door.clientFDs[0]
        // 100 KiB without a newline, in pieces as a client would send them.
        let piece = [UInt8](repeating: 65, count: 16 * 1024)
        var lines: [String] = []
        var closed = false
        for _ in 0..<7 where !closed {
            _ = piece.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            door.read(server, line: { lines.append($0) }, closed: { closed = true })
        }
        #expect(closed && lines.isEmpty)
        var answer = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &answer, answer.count)
        #expect(n > 0 && String(decoding: answer[0..<max(0, n)], as: UTF8.self).contains("request too long"))

        var extra: [Int32] = []
        defer { extra.forEach { close($0) } }
        // One at a time: the backlog is 16, and a full backlog blocks connect.
        for _ in 0..<(AgentSocket.maxClients + 6) {
            if let c = AgentClient.connect(directory: dir) { extra.append(c) }
            door.accept()
        }
        #expect(door.clientFDs.count == AgentSocket.maxClients)

        // None of them said anything: after the request timeout they go.
        var expired: [Int32] = []
        door.expireSilent(now: Process.now() + AgentSocket.requestTimeoutSeconds + 1) { expired.append($0) }
        #expect(expired.count == AgentSocket.maxClients && door.clientFDs.isEmpty)
    }
}
