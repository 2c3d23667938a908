import Foundation
import Testing
import Synchronization
import CSSIShim
import SSILinux
import SSICore
@testable import SSIMembership

/// Several keepers on one in-memory "CPG": every message goes to every
/// member in one agreed order, as corosync delivers it, as bytes: every
/// message goes through `CPGMessage.encode` and `decode`, as on the wire.
/// The children that do a node's part are replaced by `perform`, which
/// records the order.
final class FakeCluster {
    var keepers: [UInt32: ClusterMountKeeper] = [:]
    var locks: [UInt32: ClusterLocks] = [:]
    var queue: [(UInt32, [UInt8])] = []
    /// Messages the decoder refused, with why.
    var refused: [CPGMessageError] = []
    /// Every message sent, in order.
    var sent: [CPGMessage] = []
    var members: Set<UInt32> = []
    var performed: [String] = []
    var failing: Set<String> = []   // "NODE mount|umount"
    var replies: [UInt32: [String]] = [:]
    /// Each keeper's agent.log lines.
    var traces: [UInt32: [String]] = [:]
    let directory: String

    init(nodes: [UInt32]) throws {
        directory = "/tmp/ssi-keeper-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        for n in nodes { try add(n) }
        join(nodes)
    }

    /// Each test's keepers' state directories go with it (hundreds piled
    /// up in /tmp across runs).
    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func add(_ n: UInt32) throws {
        let dir = directory + "/\(n)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        keepers[n] = ClusterMountKeeper(agent: .init(
            localNode: { n }, members: { [unowned self] in self.members },
            address: { "10.0.0.\($0)" }, network: { "10.0.0.0/24" },
            send: { [unowned self] message in self.post(n, message) },
            reply: { [unowned self] _, line in self.replies[n, default: []].append(line) },
            log: { _ in }, trace: { [unowned self] line in self.traces[n, default: []].append(line) }, stateDirectory: dir,
            perform: { [unowned self] e, unmount in
                let what = "\(n) \(unmount ? "umount" : "mount") \(e.target)"
                self.performed.append(what)
                return self.failing.contains("\(n) \(unmount ? "umount" : "mount")") ? "error: \(e.target): it failed" : "ok"
            }))
        locks[n] = ClusterLocks(localNode: { n }, send: { [unowned self] message in self.post(n, message) },
                                reply: { [unowned self] fd, line in self.replies[n, default: []].append("\(fd) \(line)") })
    }

    func join(_ joined: [UInt32]) {
        members.formUnion(joined)
        for (_, k) in keepers where members.contains(k.agent.localNode()) {
            k.membershipChanged(members: members, left: [], joined: joined)
        }
        for (n, l) in locks where members.contains(n) { l.membershipChanged(members: members, left: [], joined: joined) }
        run()
    }

    func leave(_ n: UInt32) {
        members.remove(n)
        for (m, k) in keepers where members.contains(m) { k.membershipChanged(members: members, left: [n], joined: []) }
        for (m, l) in locks where members.contains(m) { l.membershipChanged(members: members, left: [n], joined: []) }
        run()
    }

    func post(_ from: UInt32, _ message: CPGMessage) {
        sent.append(message)
        queue.append((from, message.encode()))
    }

    /// One message to `nodes` (every member by default), as the agent
    /// dispatches it.
    func deliver(_ from: UInt32, _ bytes: [UInt8], to nodes: [UInt32]? = nil) {
        let message: CPGMessage
        do { message = try CPGMessage.decode(bytes) } catch {
            refused.append(error)
            return
        }
        for n in nodes ?? members.sorted() {
            if !keepers[n]!.received(message, from: from) { _ = locks[n]!.received(message, from: from) }
        }
    }

    /// Delivers until quiet.
    func run() {
        var rounds = 0
        while !queue.isEmpty && rounds < 100_000 {
            rounds += 1
            let (from, bytes) = queue.removeFirst()
            deliver(from, bytes)
        }
    }

    func tables() -> [UInt32: [String]] {
        keepers.filter { members.contains($0.key) }.mapValues { $0.table.map(\.target) }
    }
}

@Suite struct ClusterMountKeeperTests {
    func entry(_ rule: NodeRule, _ target: String, source: String = "/dev/vdb") -> ClusterMount {
        ClusterMount(id: "-", rule: rule, source: source, target: target, type: "", options: "")
    }

    @Test("node=1 asked on node 2: the owner mounts first, then the others; every table has it; the asker hears from each node")
    func ownerFirst() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.keepers[2]!.requestMount(entry(.node(1), "/mnt/data"), client: 7)
        c.run()
        #expect(c.performed.first == "1 mount /mnt/data")
        #expect(Set(c.performed.dropFirst()) == ["2 mount /mnt/data", "3 mount /mnt/data"])
        #expect(c.replies[2] == ["node 1: mounted", "node 2: mounted", "node 3: mounted", "end 0"])
        #expect(c.tables().values.allSatisfy { $0 == ["/mnt/data"] })
        let file = try String(contentsOfFile: c.directory + "/3/" + ClusterMount.tableFile, encoding: .utf8)
        #expect(ClusterMount.table(parsing: file).map(\.target) == ["/mnt/data"])
    }

    @Test("a node answers for itself only: node 3 saying node 1 failed is ignored (the node came from the text, not from CPG)")
    func answersOnlyForOneself() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.keepers[2]!.requestMount(entry(.node(1), "/mnt/data"), client: 7)
        guard case .mount(let e)? = c.sent.first else { Issue.record("\(c.sent)"); return }
        c.queue.insert((3, CPGMessage.mounted(id: e.id, node: 1, result: "error: forged").encode()), at: 1)
        c.run()
        #expect(c.replies[2] == ["node 1: mounted", "node 2: mounted", "node 3: mounted", "end 0"], "\(c.replies[2] ?? [])")
        #expect(c.tables().values.allSatisfy { $0 == ["/mnt/data"] })
    }

    @Test("node=*: one node fails, so whoever mounted it unmounts it again and no table keeps it")
    func allOrNothing() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.failing = ["3 mount"]
        c.keepers[1]!.requestMount(entry(.every, "/mnt/t", source: "tmpfs"), client: 4)
        c.run()
        #expect(Set(c.performed) == ["1 mount /mnt/t", "2 mount /mnt/t", "3 mount /mnt/t", "1 umount /mnt/t", "2 umount /mnt/t"])
        let said1 = c.replies[1] ?? []
        #expect(said1.firstIndex(of: "node 3: error: /mnt/t: it failed") != nil, "\(said1)")
        #expect(c.replies[1]?.suffix(2) == ["undone: /mnt/t is not mounted on any node", "end 32"])
        #expect(c.tables().values.allSatisfy { $0.isEmpty })
    }

    @Test("agent.log traces the request, each node's answer and the reply; a peer's answer reaches it without control characters")
    func traces() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.keepers[1]!.requestMount(entry(.every, "/mnt/all", source: "tmpfs"), client: 1)
        c.run()
        let lines = c.traces[1] ?? []
        #expect(lines.contains { $0.hasSuffix("asked here to mount /mnt/all") }, "\(lines)")
        for n in 1...3 { #expect(lines.contains { $0.hasSuffix("node \(n) answered ok") }, "\(lines)") }
        #expect(lines.last?.hasSuffix("every node answered; replying to the caller") == true, "\(lines)")
        // A peer's result is its own text: a forged second line and a
        // terminal escape stay on one line, as "?".
        _ = c.keepers[1]!.received(.mounted(id: "2.9.9", node: 2, result: "error: x\n9.9.9 node 3 answered ok\u{1b}[2J"), from: 2)
        #expect(c.traces[1]?.last?.hasSuffix("node 2 answered error: x?9.9.9 node 3 answered ok?[2J") == true, "\(c.traces[1] ?? [])")
    }

    @Test("the owner fails: nobody else tries")
    func ownerFails() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.failing = ["2 mount"]
        c.keepers[3]!.requestMount(entry(.node(2), "/mnt/x"), client: 1)
        c.run()
        #expect(c.performed == ["2 mount /mnt/x"])
        let said3 = c.replies[3] ?? []
        #expect(said3.firstIndex(of: "node 1: not tried: node 2 did not mount it") != nil, "\(said3)")
        #expect(c.replies[3]?.last == "end 32")
    }

    @Test("a target already in the table is refused; the owner must be a member")
    func refusals() throws {
        let c = try FakeCluster(nodes: [1, 2])
        c.keepers[1]!.requestMount(entry(.node(1), "/mnt/a"), client: 1)
        c.run()
        c.replies = [:]
        c.keepers[2]!.requestMount(entry(.every, "/mnt/a", source: "tmpfs"), client: 2)
        c.run()
        #expect(c.replies[2] == ["/mnt/a: already a cluster mount (ssi-umount it first)", "end 32"])
        c.keepers[2]!.requestMount(entry(.node(5), "/mnt/b"), client: 2)
        #expect(c.replies[2]?.suffix(2) == ["node 5: not a member of the cluster now", "end 32"])
    }

    @Test("umount: the others first, the owner (and its export) last; gone from every table")
    func umountOrder() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.keepers[1]!.requestMount(entry(.node(1), "/mnt/data"), client: 1)
        c.run()
        c.performed = []
        c.keepers[3]!.requestUmount(target: "/mnt/data", client: 9)
        c.run()
        #expect(c.performed.last == "1 umount /mnt/data")
        #expect(Set(c.performed) == ["1 umount /mnt/data", "2 umount /mnt/data", "3 umount /mnt/data"])
        #expect(c.replies[3]?.last == "end 0")
        #expect(c.tables().values.allSatisfy { $0.isEmpty })
    }

    @Test("a node that joins later gets the table from the lowest old member")
    func lateJoiner() throws {
        let c = try FakeCluster(nodes: [1, 2])
        c.keepers[2]!.requestMount(entry(.node(2), "/mnt/disk2"), client: 1)
        c.keepers[1]!.requestMount(entry(.every, "/mnt/t", source: "tmpfs"), client: 1)
        c.run()
        try c.add(3)
        c.join([3])
        #expect(c.tables()[3] == ["/mnt/disk2", "/mnt/t"])
        #expect(c.keepers[3]!.awaitingTable == false)
    }

    @Test("a table that comes after the newcomer's wait ran out is still taken: merged, and an unmount seen meanwhile stays out")
    func lateTableAfterTheWait() throws {
        let c = try FakeCluster(nodes: [1, 2])
        c.keepers[2]!.requestMount(entry(.node(2), "/mnt/disk2"), client: 1)
        c.keepers[1]!.requestMount(entry(.every, "/mnt/t", source: "tmpfs"), client: 1)
        c.run()
        try c.add(3)
        c.members.insert(3)
        for n in [UInt32(1), 2, 3] { c.keepers[n]!.membershipChanged(members: c.members, left: [], joined: [3]) }
        // The old member's table is held back; node 3's wait runs out.
        let held = c.queue
        c.queue = []
        c.keepers[3]!.awaitingTable = false
        c.keepers[3]!.tableTimedOut = true
        #expect(c.tables()[3] == [])
        // Meanwhile node 1 unmounts /mnt/t cluster-wide: node 3 sees
        // the request (CPG's order puts it before the late table).
        c.keepers[1]!.requestUmount(target: "/mnt/t", client: 9)
        let umount = c.queue
        c.queue = []
        #expect(!umount.isEmpty)
        for (from, bytes) in umount { c.deliver(from, bytes, to: [3]) }
        // Then the late table (it still lists /mnt/t) arrives.
        for (from, bytes) in held { c.deliver(from, bytes, to: [3]) }
        #expect(c.tables()[3] == ["/mnt/disk2"], "taken late, without what was unmounted since: \(c.tables()[3] ?? [])")
        #expect(c.keepers[3]!.tableTimedOut == false && c.keepers[3]!.awaitingTable == false)
        // A second table (for a later newcomer that lists node 3 too) changes nothing.
        for (from, bytes) in held { c.deliver(from, bytes, to: [3]) }
        #expect(c.tables()[3] == ["/mnt/disk2"])
    }

    @Test("a member leaving mid-request is not waited for")
    func leaverNotAwaited() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        // Node 3 never answers: its messages are dropped.
        c.keepers[1]!.requestMount(entry(.every, "/mnt/t", source: "tmpfs"), client: 1)
        c.queue = c.queue.filter { $0.0 != 3 }
        let first = c.queue.removeFirst()
        c.deliver(first.0, first.1, to: [1, 2])
        c.queue = c.queue.filter { $0.0 != 3 }
        c.members.remove(3)
        for n in [UInt32(1), 2] { c.keepers[n]!.membershipChanged(members: c.members, left: [3], joined: []) }
        c.run()
        #expect(c.replies[1]?.last == "end 0")
    }
}

@Suite struct ClusterLocksTests {
    @Test("one holder at a time, in agreed order; a closed connection or a node leaving releases")
    func queue() throws {
        let c = try FakeCluster(nodes: [1, 2, 3])
        c.locks[2]!.request("fsck:abc", client: 5)
        c.locks[3]!.request("fsck:abc", client: 6)
        c.run()
        #expect(c.replies[2] == ["5 end 0"])
        #expect(c.replies[3] == ["6 waiting: held by node 2"])
        c.locks[2]!.clientClosed(5)
        c.run()
        #expect(c.replies[3] == ["6 waiting: held by node 2", "6 end 0"])
        c.locks[1]!.request("fsck:abc", client: 7)
        c.run()
        #expect(c.replies[1] == ["7 waiting: held by node 3"])
        c.leave(3)
        #expect(c.replies[1] == ["7 waiting: held by node 3", "7 end 0"])
    }
}

/// Cluster mount records: every field survives escaping, by scalar (a CR LF
/// in a target went out raw and cut the request line in two).
@Suite struct ClusterMountRecordTests {
    @Test func fieldsRoundTripWithLineBreaksAndTabs() throws {
        for target in ["/mnt/a b", "/mnt/tab\there", "/mnt/crlf\r\nx", "/mnt/back\\slash", "/mnt/cr\rx", "/mnt/é"] {
            let escaped = ClusterMount.escape(target)
            #expect(!escaped.unicodeScalars.contains { $0 == "\n" || $0 == "\r" || $0 == "\t" }, "\(escaped)")
            #expect(ClusterMount.unescape(escaped) == target)
        }
    }
}

/// Which parts the agent does on a thread of its own, and which need a
/// helper program (and so a child: the agent reaps every child it has).
@Suite struct ClusterMountHelperTests {
    @Test("a type libmount must probe, a list, a subtype or one with /sbin/mount.TYPE needs a helper; tmpfs and ext4 do not")
    func needsHelper() {
        for type in ["", "auto", "ext4,xfs", "fuse.sshfs"] {
            #expect(ClusterMountApplier.needsHelper(type: type, unmount: false), "'\(type)'")
        }
        // Debian ships no mount.tmpfs or mount.ext4 (the kernel mounts them).
        for type in ["tmpfs", "ext4"] {
            #expect(!ClusterMountApplier.needsHelper(type: type, unmount: false), "'\(type)'")
            #expect(!ClusterMountApplier.needsHelper(type: type, unmount: true), "'\(type)'")
        }
        // nfs-common's helpers, where this host has them.
        if FileManager.default.fileExists(atPath: "/sbin/mount.nfs4") {
            #expect(ClusterMountApplier.needsHelper(type: "nfs4", unmount: false))
        }
        if FileManager.default.fileExists(atPath: "/sbin/umount.nfs4") {
            #expect(ClusterMountApplier.needsHelper(type: "nfs4", unmount: true))
        }
    }
}

/// The applier as the agent's thread runs it: on a thread whose root (here,
/// whose mount namespace) is its own, the process's /proc/self/mountinfo
/// does not show the thread's mounts, so a check there would skip the
/// unmount and report "ok" with the file system still mounted (the fault
/// the fresh-clone CI of 05f824a found).
@Suite struct ClusterMountThreadTests {
    @Test("on a thread with mounts of its own, the applier sees its tmpfs in /proc/thread-self and the unmount really removes it",
          .enabled(if: getuid() == 0, "needs root: mount(2) and unshare(CLONE_NEWNS)"))
    func unmountOnAThreadIsDone() throws {
        var template = Array("/tmp/ssi-tmount-XXXXXX".utf8CString)
        let target = String(cString: try #require(mkdtemp(&template)))
        defer { rmdir(target) }
        let entry = ClusterMount(id: "t1", rule: try NodeRule(parsing: "*"), source: "ssi-test", target: target, type: "tmpfs", options: "size=1m")
        final class Shared: Sendable { let state = Mutex<(steps: [String], done: Bool)>(([], false)) }
        let shared = Shared()
        startThread {
            var steps: [String] = []
            func table(_ path: String) -> Bool { ClusterMountApplier.isMounted(target, table: path) }
            if ssi_unshare_fs_and_mounts() != 0 || mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) != 0 {
                steps.append("cannot make a private mount namespace: errno \(errno)")
            } else {
                var applier = ClusterMountApplier(localAddress: "", network: "")
                applier.onOwnRootThread = true
                do throws(SSIError) {
                    try applier.mount(entry, role: .mountItself, serverAddress: nil)
                    steps.append("mounted: thread-self \(table("/proc/thread-self/mountinfo")), self \(table("/proc/self/mountinfo"))")
                    try applier.unmount(entry, role: .mountItself)
                    steps.append("unmounted: thread-self \(table("/proc/thread-self/mountinfo"))")
                    // A second unmount of what is gone is no error.
                    try applier.unmount(entry, role: .mountItself)
                    steps.append("again: ok")
                } catch {
                    steps.append("error: \(error.message)")
                }
            }
            shared.state.withLock { $0 = (steps, true) }
        }
        for _ in 0..<500 where !shared.state.withLock({ $0.done }) { usleep(10_000) }
        let (steps, done) = shared.state.withLock { $0 }
        #expect(done, "the thread did not finish in 5 s")
        #expect(steps == ["mounted: thread-self true, self false", "unmounted: thread-self false", "again: ok"], "\(steps)")
        // Nothing of it reached this namespace.
        #expect(!ClusterMountApplier.isMounted(target))
    }
}

/// A busy umount on an NFS server: knfsd's caches flushed as `exportfs -f`
/// flushes them, and the retries' back-off.
@Suite struct NFSDCacheFlushTests {
    @Test("each of the four caches present gets the time and a newline; a missing one is passed over")
    func flushWritesEveryCache() throws {
        let root = "/tmp/ssi-rpc-flush-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for cache in ["auth.unix.ip", "nfsd.fh", "nfsd.export"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(cache)", withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: "\(root)/\(cache)/flush", contents: Data()))
        }
        ClusterMountApplier.flushNFSDCaches(now: 1_700_000_123, root: root)
        for cache in ["auth.unix.ip", "nfsd.fh", "nfsd.export"] {
            #expect(try String(contentsOfFile: "\(root)/\(cache)/flush", encoding: .utf8) == "1700000123\n", "\(cache)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(root)/auth.unix.gid/flush"), "a cache the kernel lacks is not made")
    }

    @Test("retries come 20, 40, 80, 160, 320 ms apart, then every 500 ms")
    func backOff() {
        #expect((0..<8).map(ClusterMountApplier.retryDelay) == [20, 40, 80, 160, 320, 500, 500, 500])
    }
}
