import Foundation
import Testing
import SSITestSupport
import SSILinux
@testable import SSIMembership

/// What peers and local clients send the membership agent: errors or
/// nothing, never a trap, and nothing the view file cannot hold.
@Suite struct MembershipRobustnessTests {
    @Test("the agent's own messages decode exactly; values the view cannot hold are refused")
    func decodeExact() {
        #expect(MembershipMessage.decode(Array("v1 UP -".utf8)) == .state(.up, stage: ""))
        #expect(MembershipMessage.decode(Array("v1 COMINGUP root-mounted".utf8)) == .state(.comingUp, stage: "root-mounted"))
        #expect(MembershipMessage.decode(Array("boot 3 dhcp".utf8)) == .boot(node: 3, stage: "dhcp"))
        #expect(MembershipMessage.decode(Array("gfs2 c:root,c:data".utf8)) == .gfs2(["c:root", "c:data"]))
        #expect(MembershipMessage.decode(Array("devs -".utf8)) == .devices([]))
        #expect(MembershipMessage.decode(Array("reload 12-345\n[cluster]\r\nname = \"x\"\n".utf8))
                == .reload(id: "12-345", text: "[cluster]\r\nname = \"x\"\n"))
        #expect(MembershipMessage.decode(Array("reloaded 12-345 2 error: it failed".utf8))
                == .reloaded(id: "12-345", node: "2", result: "error: it failed"))
        // A stage with a newline would add a line to the view file.
        #expect(MembershipMessage.decode(Array("v1 UP a\nnode 9 UP - x 1.2.3.4".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("v1 UP \u{1b}[2J".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("v1 SIDEWAYS -".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("boot 99999999999 dhcp".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("devs a,,b".utf8)) == nil)
        #expect(MembershipMessage.decode(Array(("devs " + String(repeating: "a,", count: 2000) + "a").utf8)) == nil)
        // A reload id names a file: no paths.
        #expect(MembershipMessage.decode(Array("reload ../../etc/passwd\nx".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("reloaded ../x 1 ok".utf8)) == nil)
        #expect(MembershipMessage.decode(Array("reload 1".utf8)) == nil)
        #expect(MembershipMessage.decode([]) == nil)
    }

    @Test("a lock holder named \".\" (or anything but NODE.FD.SEQ of the sender) is ignored; real locks still work")
    func lockHolderValidated() throws {
        let c = try FakeCluster(nodes: [1, 2])
        // Node 2 queues a bogus holder, then one of node 1's, then its own.
        for bogus in ["lock fsck:x .", "lock fsck:x ..", "lock fsck:x 1.3.1", "lock fsck:x a.b.c", "lock fsck:x 2.3",
                      "unlock fsck:x 1.3.1", "locks 1,2 fsck:x=.,..", "lock . 2.1.1x"] {
            c.queue.append((2, bogus))
        }
        c.run()
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

    @Test("Fuzz: membership messages from a peer: decoder, locks and cluster mounts never trap")
    func membershipMessagesFuzz() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.locks[1]!.request("fsck:abc", client: 4)
        c.run()
        let seeds = Fuzz.seeds([
            "v1 UP -", "v1 COMINGUP network", "boot 3 image", "gfs2 c:root", "devs m:1234-abcd,s:5678",
            "reload 12-34\n[cluster]\nname = \"t\"\n", "reloaded 12-34 2 ok",
            "lock fsck:abc 2.5.1", "unlock fsck:abc 2.5.1", "locks 3 fsck:abc=1.4.1,2.5.1",
            "cmount 1 node=1 /dev/vdb /mnt/x ext4 -", "cmounted 1 2 ok", "cumount 1\t/mnt/x", "ctable 3\n1 node=1 /dev/vdb /mnt/x ext4 -",
        ])
        Fuzz.run("membership-messages", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            _ = MembershipMessage.decode(bytes)
            let text = String(decoding: bytes, as: UTF8.self)
            for n in [UInt32(1), 2, 3] {
                if !c.keepers[n]!.received(text, from: 2) { _ = c.locks[n]!.received(text, from: 2) }
            }
            c.queue.removeAll()
        }
        // Still working: a new lock on node 3 waits behind node 1's.
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
