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
    let send: (CPGMessage) -> Void
    let reply: (Int32, String) -> Void

    init(localNode: @escaping () -> UInt32, send: @escaping (CPGMessage) -> Void, reply: @escaping (Int32, String) -> Void) {
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
        send(.lock(name: name, holder: holder))
    }

    func clientClosed(_ fd: Int32) {
        for (holder, c) in clients where c == fd {
            clients[holder] = nil
            for (name, q) in queues where q.contains(holder) { send(.unlock(name: name, holder: holder)) }
        }
    }

    private var sequence = 0

    /// The lock state for newcomers, gathered part by part (CPGMessage.locks).
    private var incoming = Reassembly<CPGMessage.LockQueue>()
    /// Holders unlocked while this node waited for the lock state: the
    /// state was taken before those unlocks, and must not bring them back.
    private var unlockedWhileAwaiting: Set<String> = []

    /// A lock message (the decoder checked names and holders); false for
    /// any other message.
    func received(_ message: CPGMessage, from node: UInt32) -> Bool {
        switch message {
        case .lock(let name, let holder):
            // A node queues its own holders only.
            guard Self.holderNode(holder) == node else { return true }
            var queue = queues[name, default: []]
            guard !queue.contains(holder) else { return true }
            queue.append(holder)
            queues[name] = queue
            if queue.count > 1, let fd = clients[holder], let head = Self.holderNode(queue[0]) {
                reply(fd, "waiting: held by node \(head)")
            }
            grant(name)
        case .unlock(let name, let holder):
            guard Self.holderNode(holder) == node else { return true }
            queues[name]?.removeAll { $0 == holder }
            // Holders are never reused (SEQ), so forgetting one is safe;
            // bounded for a node that never gets a state (it started with
            // the others: nobody was there before).
            if awaitingState && unlockedWhileAwaiting.count < 4096 { unlockedWhileAwaiting.insert(holder) }
            granted.remove(holder + " " + name)
            grant(name)
        case .locks(let to, let part, let items):
            // The queues, for the nodes listed, in parts.
            guard awaitingState, to.contains(localNode()),
                  let all = incoming.add(from: node, key: "", part: part, items: items) else { return true }
            awaitingState = false
            var theirs: [String: [String]] = [:]
            var order: [String] = []
            for q in all {
                if theirs[q.name] == nil { order.append(q.name) }
                theirs[q.name, default: []] += q.holders
            }
            for name in order {
                let mine = queues[name] ?? []
                let kept = theirs[name]!.filter { !mine.contains($0) && !unlockedWhileAwaiting.contains($0) }
                if !(kept + mine).isEmpty { queues[name] = kept + mine }
            }
            unlockedWhileAwaiting = []
        default:
            return false
        }
        return true
    }

    func membershipChanged(members: Set<UInt32>, left: [UInt32], joined: [UInt32]) {
        // As for the mount table: the old members are by our own
        // previous view, and the lowest of them tells the newcomers.
        let me = localNode()
        for n in left { incoming.drop(n) }
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
            let state = queues.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }.map { CPGMessage.LockQueue(name: $0.key, holders: $0.value) }
            for part in CPGMessage.lockParts(to: newcomers.sorted(), queues: state) { send(part) }
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
