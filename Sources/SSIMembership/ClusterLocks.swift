import SSICore

/// Cluster-wide named locks for the tools (ssi-fsck takes "fsck:UUID" so
/// that two nodes never check one device at once), built on CPG's agreed
/// order: every agent keeps the same queue per name, and the head of the
/// queue holds the lock. A holder is "NODE.FD" (its node and its client's
/// connection on that node's agent): the lock goes when the connection
/// closes, however the holder ended, or when its node leaves the cluster.
final class ClusterLocks {
    private var queues: [String: [String]] = [:]
    private var clients: [String: Int32] = [:]   // our holders: "NODE.FD" -> fd
    private var awaitingState = true
    let localNode: () -> UInt32
    let send: (String) -> Void
    let reply: (Int32, String) -> Void

    init(localNode: @escaping () -> UInt32, send: @escaping (String) -> Void, reply: @escaping (Int32, String) -> Void) {
        self.localNode = localNode
        self.send = send
        self.reply = reply
    }

    func request(_ name: String, client: Int32) {
        guard !name.isEmpty, !name.contains(" "), !name.contains("\n") else {
            reply(client, "bad lock name")
            reply(client, "end 1")
            return
        }
        let holder = "\(localNode()).\(client)"
        clients[holder] = client
        send("lock \(name) \(holder)")
    }

    func clientClosed(_ fd: Int32) {
        let holder = "\(localNode()).\(fd)"
        guard clients.removeValue(forKey: holder) != nil else { return }
        for (name, q) in queues where q.contains(holder) { send("unlock \(name) \(holder)") }
    }

    func received(_ text: String, from node: UInt32) -> Bool {
        let f = text.split(separator: " ").map(String.init)
        switch f.first {
        case "lock" where f.count == 3:
            queues[f[1], default: []].append(f[2])
            if queues[f[1]]!.count > 1, let fd = clients[f[2]] {
                reply(fd, "waiting: held by node \(queues[f[1]]![0].split(separator: ".")[0])")
            }
            grant(f[1])
        case "unlock" where f.count == 3:
            queues[f[1]]?.removeAll { $0 == f[2] }
            granted.remove(f[2] + " " + f[1])
            grant(f[1])
        case "locks":
            // "locks NAME=H1,H2 ...": the queues, for a node that joined.
            guard awaitingState else { return true }
            awaitingState = false
            for item in f.dropFirst() {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { continue }
                let mine = queues[kv[0]] ?? []
                queues[kv[0]] = kv[1].split(separator: ",").map(String.init) + mine
            }
        default:
            return false
        }
        return true
    }

    func membershipChanged(members: Set<UInt32>, left: [UInt32], joined: [UInt32]) {
        let me = localNode()
        if joined.contains(me) && members.count == joined.count { awaitingState = false }
        for name in Array(queues.keys) {
            queues[name]?.removeAll { h in left.contains { h.hasPrefix("\($0).") } }
            grant(name)
        }
        let old = members.subtracting(joined)
        if !joined.isEmpty, let sender = old.min(), sender == me {
            let state = queues.filter { !$0.value.isEmpty }.map { "\($0.key)=\($0.value.joined(separator: ","))" }
            send((["locks"] + state.sorted()).joined(separator: " "))
        }
    }

    private var granted: Set<String> = []

    /// Tells our client when it reached the head of the queue.
    private func grant(_ name: String) {
        if queues[name]?.isEmpty == true { queues[name] = nil }
        guard let head = queues[name]?.first, let fd = clients[head], !granted.contains(head + " " + name) else { return }
        granted.insert(head + " " + name)
        reply(fd, "end 0")
    }
}
