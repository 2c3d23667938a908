import SSICore

/// Cluster-wide named locks for the tools (ssi-fsck takes "fsck:UUID" so
/// that two nodes never check one device at once), built on CPG's agreed
/// order: every agent keeps the same queue per name, and the head of the
/// queue holds the lock. A holder is "NODE.FD.SEQ" (its node and its client's
/// connection on that node's agent): the lock goes when the connection
/// closes, however the holder ended, or when its node leaves the cluster.
final class ClusterLocks {
    private var queues: [String: [String]] = [:]
    private var clients: [String: Int32] = [:]   // our holders: "NODE.FD.SEQ" -> fd
    private var awaitingState = true
    let localNode: () -> UInt32
    let send: (String) -> Void
    let reply: (Int32, String) -> Void

    init(localNode: @escaping () -> UInt32, send: @escaping (String) -> Void, reply: @escaping (Int32, String) -> Void) {
        self.localNode = localNode
        self.send = send
        self.reply = reply
    }

    /// The longest lock name (ssi-fsck's "fsck:UUID" is 41 bytes): a
    /// name travels in every lock message and sits in every queue.
    static let maxNameBytes = 256

    /// A name a client may ask for: printable, no spaces (the messages
    /// are space-separated) and no "=" or "," (the state message's
    /// separators), bounded.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maxNameBytes
            && name.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7f && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: ",") }
    }

    /// A holder's node, if `holder` has the form "NODE.FD.SEQ" (three
    /// decimal numbers): a peer's message naming anything else is
    /// ignored, never split and indexed blindly.
    static func holderNode(_ holder: String) -> UInt32? {
        let parts = holder.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 20 && $0.utf8.allSatisfy { (48...57).contains($0) } }),
              UInt64(parts[1]) != nil, UInt64(parts[2]) != nil else { return nil }
        return UInt32(parts[0])
    }

    func request(_ name: String, client: Int32) {
        guard Self.isValidName(name) else {
            reply(client, "bad lock name: at most \(Self.maxNameBytes) printable bytes, without spaces, \"=\" or \",\"")
            reply(client, "end 1")
            return
        }
        // Unique even when a closed client's descriptor number comes back
        // before its unlock went round the cluster.
        sequence += 1
        let holder = "\(localNode()).\(client).\(sequence)"
        clients[holder] = client
        send("lock \(name) \(holder)")
    }

    func clientClosed(_ fd: Int32) {
        for (holder, c) in clients where c == fd {
            clients[holder] = nil
            for (name, q) in queues where q.contains(holder) { send("unlock \(name) \(holder)") }
        }
    }

    private var sequence = 0

    func received(_ text: String, from node: UInt32) -> Bool {
        let f = text.split(separator: " ").map(String.init)
        switch f.first {
        case "lock" where f.count == 3:
            // A node queues its own holders only.
            guard Self.isValidName(f[1]), Self.holderNode(f[2]) == node else { return true }
            var queue = queues[f[1], default: []]
            guard !queue.contains(f[2]) else { return true }
            queue.append(f[2])
            queues[f[1]] = queue
            if queue.count > 1, let fd = clients[f[2]], let holder = Self.holderNode(queue[0]) {
                reply(fd, "waiting: held by node \(holder)")
            }
            grant(f[1])
        case "unlock" where f.count == 3:
            guard Self.holderNode(f[2]) == node else { return true }
            queues[f[1]]?.removeAll { $0 == f[2] }
            granted.remove(f[2] + " " + f[1])
            grant(f[1])
        case "locks" where f.count >= 2:
            // "locks N,N NAME=H1,H2 ...": the queues, for the nodes listed.
            let to = f[1].split(separator: ",").compactMap { UInt32($0) }
            guard awaitingState, to.contains(localNode()) else { return true }
            awaitingState = false
            for item in f.dropFirst(2) {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, Self.isValidName(kv[0]) else { continue }
                let mine = queues[kv[0]] ?? []
                let theirs = kv[1].split(separator: ",").map(String.init).filter { Self.holderNode($0) != nil && !mine.contains($0) }
                if !(theirs + mine).isEmpty { queues[kv[0]] = theirs + mine }
            }
        default:
            return false
        }
        return true
    }

    func membershipChanged(members: Set<UInt32>, left: [UInt32], joined: [UInt32]) {
        // As for the mount table: the old members are by our own
        // previous view, and the lowest of them tells the newcomers.
        let me = localNode()
        for name in Array(queues.keys) {
            queues[name]?.removeAll { h in left.contains { h.hasPrefix("\($0).") } }
            grant(name)
        }
        let newcomers = members.subtracting(previousMembers)
        let old = previousMembers.intersection(members)
        if previousMembers.isEmpty {
            // Alone, there is nothing to learn.
            if members == [me] { awaitingState = false }
        } else if !newcomers.isEmpty, old.min() == me {
            let state = queues.filter { !$0.value.isEmpty }.map { "\($0.key)=\($0.value.joined(separator: ","))" }
            send((["locks", newcomers.sorted().map(String.init).joined(separator: ",")] + state.sorted()).joined(separator: " "))
        }
        previousMembers = members
    }

    private var previousMembers: Set<UInt32> = []

    private var granted: Set<String> = []

    /// Tells our client when it reached the head of the queue.
    private func grant(_ name: String) {
        if queues[name]?.isEmpty == true { queues[name] = nil }
        guard let head = queues[name]?.first, let fd = clients[head], !granted.contains(head + " " + name) else { return }
        granted.insert(head + " " + name)
        reply(fd, "end 0")
    }
}
