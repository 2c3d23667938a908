#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import CSSIShim

/// The membership agent's half of cluster mounts: the table, the
/// requests in flight, and the workers (threads or children) that do this
/// node's part.
///
/// Every agent sees every message in the same (CPG agreed) order with the
/// same membership, so every agent reaches the same decision on its own:
/// (The messages are `CPGMessage`s; their wire form is in CPGMessage.swift.)
///   - "cmount LINE": every member at that point in the order is asked.
///     For `node=N`, node N mounts (and exports) first; the others mount its
///     export once N said "ok". For `node=*` all mount at once.
///   - "cmounted ID NODE RESULT": a node's answer. When everyone asked has
///     answered (or left), the mount is in the table if all said ok;
///     otherwise every node that mounted it unmounts it again: a cluster
///     mount is all or nothing, and the requester reports each node.
///   - "cumount REQ TARGET": the reverse order (the others, then the owner).
///   - "ctable TO I/N LINES": the table, sent in parts by the lowest-numbered
///     old member when a node joins; the newcomer, once it has every part, mounts its part (`reconcile`), and
///     so does ssi-init before the hand-off from the table file.
final class ClusterMountKeeper {
    struct Request {
        var entry: ClusterMount
        var asked: Set<UInt32>
        var results: [UInt32: String] = [:]
        /// The client of this node that asked, when this node asked.
        var client: Int32?
        var started = false
    }

    /// One node's part under way: a child process, or a thread of the
    /// agent; either writes its "ssi-result ..." line into `fd`'s other end.
    struct Child {
        var id: String
        var unmount: Bool
        var report: Bool
        var fd: Int32
        var output: [UInt8] = []
        var started = Process.now()
        var target = ""
        var killed = false
        /// The child process, or nil for a thread (which cannot be killed:
        /// its part is reported failed after the bound all the same).
        var pid: pid_t? = nil
    }

    /// A child still at it after this long is killed and its part reported
    /// failed: a mount of a silent NFS server must not hold the cluster's
    /// request forever (NFS waits are killable).
    static let childSeconds = 60.0

    private(set) var table: [ClusterMount] = []
    private var mounts: [String: Request] = [:]
    private var umounts: [String: Request] = [:]
    private var children: [Int: Child] = [:]
    private var childKeys = 0
    private var failures: [String: (count: Int, last: Double)] = [:]
    private var sequence = 0
    var awaitingTable = true

    let agent: Agent
    let exeFD: Int32
    /// Why `exeFD` could not be opened (errno is long gone when it is used).
    let exeErrno: Int32

    /// What the keeper needs from the agent.
    struct Agent {
        var localNode: () -> UInt32
        var members: () -> Set<UInt32>
        var address: (UInt32) -> String?
        var network: () -> String?
        var send: (CPGMessage) -> Void
        var reply: (Int32, String) -> Void
        var log: (String) -> Void
        /// Every step, for /run/ssi/agent.log (not the console).
        var trace: (String) -> Void = { _ in }
        var stateDirectory: String
        /// Unit tests: does a node's part in place of the child and
        /// returns its result ("ok" or "error: ...").
        var perform: ((ClusterMount, _ unmount: Bool) -> String)? = nil
    }

    init(agent: Agent) {
        self.agent = agent
        exeFD = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)
        exeErrno = exeFD < 0 ? errno : 0
        writeTable()
    }

    // MARK: requests from this node's commands

    func requestMount(_ entry: ClusterMount, client: Int32) {
        sequence += 1
        var e = entry
        e.id = "\(agent.localNode()).\(sequence).\(Int(Process.now()))"
        if let owner = e.rule.owner, !agent.members().contains(owner) {
            agent.reply(client, "node \(owner): not a member of the cluster now")
            agent.reply(client, "end 32")
            return
        }
        // Every record must fit a message and a part of the table.
        guard e.line.utf8.count <= CPGMessage.maxEntryBytes else {
            agent.reply(client, "cluster mount record too long: more than \(CPGMessage.maxEntryBytes) bytes")
            agent.reply(client, "end 1")
            return
        }
        pendingClients[e.id] = client
        agent.trace("cluster mount \(e.id): asked here to mount \(e.target)")
        agent.send(.mount(e))
    }

    func requestUmount(target: String, client: Int32) {
        guard table.contains(where: { $0.target == target }) else {
            agent.reply(client, "\(target): not a cluster mount")
            agent.reply(client, "end 32")
            return
        }
        sequence += 1
        let id = "\(agent.localNode()).\(sequence).\(Int(Process.now()))"
        pendingClients[id] = client
        agent.trace("cluster mount \(id): asked here to unmount \(target)")
        agent.send(.umount(id: id, target: target))
    }

    private var pendingClients: [String: Int32] = [:]

    func clientClosed(_ fd: Int32) {
        for (id, c) in pendingClients where c == fd { pendingClients[id] = nil }
    }

    // MARK: messages

    /// The table for this newcomer, gathered part by part.
    private var incoming = Reassembly<ClusterMount>()
    /// Targets unmounted while this node waited for the table: the table
    /// was taken before, and must not bring them back.
    private var umountedWhileAwaiting: Set<String> = []

    /// A cluster mount message (the decoder checked its fields); false
    /// for any other message.
    func received(_ message: CPGMessage, from node: UInt32) -> Bool {
        switch message {
        case .mount(let e):
            startMount(e)
        case .mounted(let id, let n, let result), .umounted(let id, let n, let result):
            // A node answers for itself only: CPG says who sent it.
            guard n == node else { return true }
            var umount = false
            if case .umounted = message { umount = true }
            // A peer's words: no control character reaches the log.
            agent.trace("cluster mount \(id): node \(n) answered \(MembershipAgent.printable(Substring(result)))")
            answer(id: id, node: n, result: result, umount: umount)
        case .umount(let id, let target):
            if (awaitingTable || tableTimedOut) && umountedWhileAwaiting.count < 1024 { umountedWhileAwaiting.insert(target) }
            startUmount(id: id, target: target)
        case .table(let to, let part, let entries):
            // For the nodes listed (the newcomers), in parts.
            // Also after the wait ran out: an old member on a busy host
            // sent it late (seen in CI: 5 s were not enough), and a node
            // that dropped it never got the mounts made before it came.
            guard awaitingTable || tableTimedOut, to.contains(agent.localNode()),
                  let all = incoming.add(from: node, key: "", part: part, items: entries) else { return true }
            let late = !awaitingTable
            awaitingTable = false
            tableTimedOut = false
            for e in all where !table.contains(where: { $0.target == e.target }) && !umountedWhileAwaiting.contains(e.target) {
                table.append(e)
            }
            umountedWhileAwaiting = []
            writeTable()
            agent.log("agent: cluster mount table from node \(node): \(table.count) entries" + (late ? " (after the wait ran out: merged)" : ""))
        default:
            return false
        }
        return true
    }

    /// A membership change: who left is no longer waited for; when nodes
    /// joined, the lowest-numbered member that was there before (by its
    /// own previous view: corosync's joined list differs between the old
    /// members and the newcomer) sends them the table. A newcomer that
    /// hears nothing in `tableWaitSeconds` (everyone started together:
    /// nobody was there before) starts from an empty table.
    func membershipChanged(members: Set<UInt32>, left: [UInt32], joined: [UInt32]) {
        let me = agent.localNode()
        let newcomers = members.subtracting(previousMembers)
        let old = previousMembers.intersection(members)
        if previousMembers.isEmpty {
            joinedAt = Process.now()
        } else if !newcomers.isEmpty, old.min() == me {
            let established = table.filter { mounts[$0.id] == nil }
            for part in CPGMessage.tableParts(to: newcomers.sorted(), entries: established) { agent.send(part) }
        }
        previousMembers = members
        for n in left { incoming.drop(n) }
        for id in Array(mounts.keys) {
            mounts[id]?.asked.subtract(left)
            progressMount(id)
        }
        for id in Array(umounts.keys) {
            umounts[id]?.asked.subtract(left)
            progressUmount(id)
        }
    }

    private var previousMembers: Set<UInt32> = []
    private var joinedAt = 0.0
    /// The wait ran out before a table came: one that comes later is
    /// still taken, merged into what this node learnt since.
    var tableTimedOut = false
    static let tableWaitSeconds = 5.0

    /// Still waiting for the table, or given up on it.
    func checkTableWait() {
        if awaitingTable && joinedAt > 0 && Process.now() - joinedAt > Self.tableWaitSeconds {
            awaitingTable = false
            // A table that still comes is merged (its umounts seen since
            // kept out of it): see the `.table` case.
            tableTimedOut = true
            agent.log("agent: no cluster mount table came in \(Int(Self.tableWaitSeconds)) s: starting from an empty one")
        }
    }

    private func startMount(_ e: ClusterMount) {
        if table.contains(where: { $0.target == e.target }) {
            if let c = pendingClients.removeValue(forKey: e.id) {
                agent.reply(c, "\(e.target): already a cluster mount (ssi-umount it first)")
                agent.reply(c, "end 32")
            }
            return
        }
        table.append(e)
        mounts[e.id] = Request(entry: e, asked: agent.members())
        progressMount(e.id)
    }

    /// Starts this node's part when its turn came, and finishes the
    /// request once everybody asked has answered.
    private func progressMount(_ id: String) {
        guard var r = mounts[id] else { return }
        let me = agent.localNode()
        let owner = r.entry.rule.owner
        let ownerResult = owner.flatMap { r.results[$0] }
        let ownerFailed = owner != nil && (!r.asked.contains(owner!) || (ownerResult != nil && ownerResult != "ok"))
        if !r.started && r.asked.contains(me) && !ownerFailed {
            let role = r.entry.role(on: me)
            let myTurn: Bool
            if case .mountFrom = role { myTurn = ownerResult == "ok" } else { myTurn = true }
            if myTurn {
                r.started = true
                mounts[id] = r
                spawn(r.entry, unmount: false, report: true)
            }
        }
        let finished = ownerFailed || r.asked.isSubset(of: Set(r.results.keys))
        guard finished else { return }
        mounts[id] = nil
        let ok = r.asked.allSatisfy { r.results[$0] == "ok" } && !ownerFailed
        if !ok {
            // All or nothing: whoever mounted it unmounts it.
            table.removeAll { $0.id == id }
            if r.results[me] == "ok" { spawn(r.entry, unmount: true, report: false) }
        }
        writeTable()
        if let c = pendingClients.removeValue(forKey: id) {
            agent.trace("cluster mount \(id): every node answered; replying to the caller")
            for n in r.asked.union(r.results.keys).sorted() {
                let result = r.results[n] ?? (ownerFailed ? "not tried: node \(owner!) did not mount it" : "left the cluster")
                agent.reply(c, "node \(n): \(result == "ok" ? "mounted" : result)")
            }
            if ok {
                agent.reply(c, "end 0")
            } else {
                agent.reply(c, "undone: \(r.entry.target) is not mounted on any node")
                agent.reply(c, "end 32")
            }
        }
    }

    private func startUmount(id: String, target: String) {
        guard let e = table.first(where: { $0.target == target }) else {
            if let c = pendingClients.removeValue(forKey: id) {
                agent.reply(c, "\(target): not a cluster mount")
                agent.reply(c, "end 32")
            }
            return
        }
        table.removeAll { $0.target == target }
        writeTable()
        var entry = e
        entry.id = id   // answers carry the request's id
        umounts[id] = Request(entry: entry, asked: agent.members())
        progressUmount(id)
    }

    private func progressUmount(_ id: String) {
        guard var r = umounts[id] else { return }
        let me = agent.localNode()
        if !r.started && r.asked.contains(me) {
            // The owner goes last: its export serves the others until then.
            let othersDone = r.asked.subtracting([me]).isSubset(of: Set(r.results.keys))
            if r.entry.rule.owner != me || othersDone {
                r.started = true
                umounts[id] = r
                spawn(r.entry, unmount: true, report: true)
            }
        }
        guard r.asked.isSubset(of: Set(r.results.keys)) else { return }
        umounts[id] = nil
        if let c = pendingClients.removeValue(forKey: id) {
            agent.trace("cluster mount \(id): every node answered; replying to the caller")
            for n in r.results.keys.sorted() {
                agent.reply(c, "node \(n): \(r.results[n] == "ok" ? "unmounted" : r.results[n]!)")
            }
            agent.reply(c, "end \(r.results.values.allSatisfy { $0 == "ok" } ? 0 : 32)")
        }
    }

    private func answer(id: String, node: UInt32, result: String, umount: Bool) {
        if umount {
            umounts[id]?.results[node] = result
            progressUmount(id)
        } else {
            mounts[id]?.results[node] = result
            progressMount(id)
        }
    }

    // MARK: this node's part, in a child in the system's root

    /// True while PID 1 is still the initramfs: mounts made now would stay
    /// behind at the hand-off (ssi-init replays the table itself then).
    /// Read from PID 1's mount table, never through its root: on a CFS
    /// node whose init node is gone, anything under /proc/1/root waits
    /// on the hard NFS mount, and the agent's loop (which must say that
    /// the init node is down) would wait with it.
    var systemIsInitramfs: Bool {
        let root = Mount.entries(path: "/proc/1/mountinfo").last { $0.mountPoint == "/" }
        return ["rootfs", "ramfs", "tmpfs"].contains(root?.type ?? "rootfs")
    }

    private func spawn(_ e: ClusterMount, unmount: Bool, report: Bool) {
        let me = agent.localNode()
        let role = e.role(on: me)
        var args = ["ssi", "cluster", "mount-apply", unmount ? "--unmount" : "--mount", "--entry", e.line,
                    "--local-address", agent.address(me) ?? "", "--network", agent.network() ?? ""]
        if case .mountFrom(let owner) = role { args += ["--server-address", agent.address(owner) ?? ""] }
        if let perform = agent.perform {
            finish(Child(id: e.id, unmount: unmount, report: report, fd: -1), result: perform(e, unmount))
            return
        }
        if systemIsInitramfs && !unmount {
            // Before the hand-off ssi-init mounts the table in the new root.
            if report { agent.send(.mounted(id: e.id, node: me, result: "ok")) }
            return
        }
        let environment: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        // The result comes back on a socket: a thread given up on after the
        // bound may still write to it, and a send there is an EPIPE, never
        // a SIGPIPE for the agent.
        var ends: [Int32] = [-1, -1]
        do throws(SystemCallError) {
            guard exeFD >= 0 || role == .mountItself else { throw SystemCallError("open /proc/self/exe", errno: exeErrno) }
            try syscall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) }
        } catch {
            finish(Child(id: e.id, unmount: unmount, report: report, fd: -1), result: "error: cannot start: \(errnoDescription(error.errno))")
            return
        }
        let (output, input) = (ends[0], ends[1])
        agent.trace("cluster mount \(e.id): \(unmount ? "unmounting" : "mounting") \(e.target) here (\(role))")
        childKeys += 1
        var child = Child(id: e.id, unmount: unmount, report: report, fd: output, target: e.target)
        if role == .mountItself {
            // A mount of this node's own (node=*, or the owner's without an
            // export) is done by a thread of the agent moved into the
            // system's root: under TCG a child (this 10 MB binary started
            // again, its libraries read from the system's root) cost most
            // of a node's part. The thread starts a child itself when the
            // part needs a helper program (below).
            let (local, network, exe, args) = (agent.address(me) ?? "", agent.network() ?? "", exeFD, args)
            startThread {
                Self.partOnThread(e, unmount: unmount, localAddress: local, network: network,
                                  childArguments: args, environment: environment, exe: exe, output: input)
            }
        } else {
            // An export runs the distro's exportfs, an NFS client's mount
            // can wait on a silent server: a child, which can be killed.
            var pid: pid_t = -1, failure = ""
            do throws(SystemCallError) { pid = try SpawnSpec.inRoot("/proc/1/root", .descriptor(exeFD), argv: args, environment: environment, output: input).spawn() } catch { failure = error.description }
            // Only the child may hold the write end, or the read never ends.
            close(input)
            guard pid > 0 else {
                close(output)
                finish(Child(id: e.id, unmount: unmount, report: report, fd: -1, target: e.target), result: "error: cannot start: \(failure)")
                return
            }
            child.pid = pid
        }
        // Closed by checkChildren when the output ends.
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
        children[childKeys] = child
    }

    /// This node's part of a `mountItself` entry, on a thread of its own:
    /// the thread alone moves into the system's root (the agent lives in
    /// the daemons' root), does the mount or unmount with libmount there,
    /// and sends "ssi-result ..." into `output`, which it closes. A part
    /// that needs a helper program (/sbin/mount.TYPE, umount.TYPE, or a
    /// type libmount must probe) runs in a child as before: the agent's
    /// loop reaps every child it has (waitpid -1), so a helper forked by
    /// libmount on this thread could lose its exit status to it.
    static func partOnThread(_ e: ClusterMount, unmount: Bool, localAddress: String, network: String,
                             childArguments: [String], environment: [String], exe: Int32, output: Int32) {
        defer { close(output) }
        func result(_ text: String) { try? sendAll(output, Array("ssi-result \(text)\n".utf8), name: "cluster mount result") }
        do throws(SystemCallError) {
            try enterRootOnThisThread("/proc/1/root")
        } catch {
            result("error: cannot enter the system's root: \(error.description)")
            return
        }
        if ClusterMountApplier.needsHelper(type: e.type, unmount: unmount) {
            guard exe >= 0 else { return result("error: cannot start: no /proc/self/exe") }
            do throws(SystemCallError) {
                // This thread's root is the system's: "/" is it.
                _ = try SpawnSpec.inRoot("/", .descriptor(exe), argv: childArguments, environment: environment, output: output).spawn()
            } catch {
                result("error: cannot start: \(error.description)")
            }
            return
        }
        var applier = ClusterMountApplier(localAddress: localAddress, network: network)
        applier.onOwnRootThread = true
        do throws(SSIError) {
            if unmount {
                try applier.unmount(e, role: .mountItself)
            } else {
                try applier.mount(e, role: .mountItself, serverAddress: nil)
            }
            result("ok")
        } catch {
            result("error: \(error.message)")
        }
    }

    var childFDs: [Int32] { children.values.map(\.fd) }

    /// A cluster mount or unmount under way: a request still waiting for
    /// answers, or this node's part still running.
    var busy: Bool { !children.isEmpty || !mounts.isEmpty || !umounts.isEmpty }

    /// Collects the workers' output (called from the poll loop); one is
    /// done when its output reaches end of file (a child exited: its exit
    /// status is not used, because the agent's loop reaps every child it
    /// has, ours included; a thread closed its end).
    func checkChildren() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        for (key, var c) in children {
            var ended = false
            while true {
                switch attempt({ read(c.fd, &chunk, chunk.count) }) {
                case .done(let n) where n > 0: c.output.append(contentsOf: chunk[0..<n]); continue
                case .wouldBlock: break
                case .done, .failed: ended = true
                }
                break
            }
            children[key] = c
            // A killed child whose output never closes (stuck in the
            // kernel), or a thread, is given up on: its part is reported
            // failed all the same.
            if c.killed && Process.now() - c.started > Self.childSeconds + 5 { ended = true }
            guard ended else {
                if !c.killed && Process.now() - c.started > Self.childSeconds {
                    if let pid = c.pid { kill(pid, SIGKILL) }
                    c.killed = true
                    c.output += Array("\nssi-result error: \(c.target): no answer in \(Int(Self.childSeconds)) s (\(c.pid == nil ? "given up" : "stopped"))\n".utf8)
                    children[key] = c
                }
                continue
            }
            close(c.fd)
            children[key] = nil
            let text = String(decoding: c.output, as: UTF8.self)
            let result = text.lines().last { $0.hasPrefix("ssi-result ") }.map { String($0.dropFirst(11)) }
                ?? "error: the mount helper ended without a result: \(text.lines().last ?? "")"
            finish(c, result: result)
        }
    }

    private func finish(_ c: Child, result: String) {
        let me = agent.localNode()
        agent.trace("cluster mount \(c.id): \(c.unmount ? "unmount" : "mount") of \(c.target) here: \(result)")
        if c.report {
            agent.send(c.unmount ? .umounted(id: c.id, node: me, result: result) : .mounted(id: c.id, node: me, result: result))
        } else if result != "ok" {
            failures[c.id] = ((failures[c.id]?.count ?? 0) + 1, Process.now())
            agent.log("agent: cluster mount \(c.id) on this node: \(result)")
        } else {
            failures[c.id] = nil
        }
    }

    /// Mounts what this node should have and has not (a node that joined,
    /// or booted after the table was made; an owner back after a reboot).
    /// Failures are retried a few times, a minute apart.
    func reconcile() {
        checkTableWait()
        guard !systemIsInitramfs, !awaitingTable else { return }
        let me = agent.localNode()
        let members = agent.members()
        let mounted = Set(Mount.entries(path: "/proc/1/mountinfo").map(\.mountPoint))
        let busy = Set(children.values.map(\.id))
        for e in table where mounts[e.id] == nil && !busy.contains(e.id) {
            let role = e.role(on: me)
            if case .mountFrom(let owner) = role, !members.contains(owner) { continue }
            if mounted.contains(e.target) { continue }
            if let f = failures[e.id], f.count >= 3 || Process.now() - f.last < 60 { continue }
            spawn(e, unmount: false, report: false)
        }
    }

    private func writeTable() {
        let established = table.filter { mounts[$0.id] == nil }
        let text = established.map { $0.line + "\n" }.joined()
        let path = agent.stateDirectory + "/" + ClusterMount.tableFile
        try? FileSystem.writeFile(path + ".new", text)
        try? FileSystem.rename(path + ".new", path)
    }
}
