import SSICore

/// Every message the membership agents send each other over CPG, with
/// its encoder and its decoder (docs/PROTOCOLS.md 1.). Decoding is a pure
/// function over bytes, so every message a peer may send is tested,
/// mutated bytes included, without corosync.
///
/// Wire format: text, one CPG message = one `CPGMessage`, always starting
/// with the protocol version word and the kind:
///
///     v2 KIND FIELDS...
///
/// Version rule (a mixed-version cluster): a message whose version is
/// not `version` (or that has none: every message of an ssi before v2,
/// `v1 UP -` included) is refused with `CPGMessageError.unsupportedVersion`
/// or `.unversioned`; the agent logs it once per sender and ignores it.
/// Nothing is translated between versions: a node of another version is
/// heard by nobody (it stays COMINGUP or DOWN in the others' views) and
/// hears nobody, so a cluster runs one ssi version; an upgrade is a
/// whole-cluster restart. A known version with an unknown kind is
/// `.unknownKind` (logged, ignored): a kind is added only with a new
/// version.
///
/// Size: a message is at most `maxMessageBytes`, checked before anything
/// is decoded. What can grow without bound (the cluster mount table and
/// the lock queues told to a newcomer, a reload's configuration) is sent
/// in parts (`Part`, "I/N") of about `partBudget` bytes each, which the
/// receiver reassembles (`Reassembly`) in the sender's order (CPG keeps
/// one sender's messages in order).
enum CPGMessage: Equatable, Sendable {
    /// `state STATE STAGE`: the sender's state and boot stage ("" sent as "-").
    case state(NodeState, stage: String)
    /// `gfs2 LIST`: the GFS2 lock tables the sender has mounted.
    case gfs2([String])
    /// `devs LIST`: the block devices the sender uses (`m:UUID`, `s:UUID`).
    case devices([String])
    /// `boot NODE STAGE`: the CFS init node saw NODE at a firmware stage.
    case boot(node: UInt32, stage: String)
    /// `reload ID I/N` LF BYTES: part of a configuration for every member.
    case reload(id: String, part: Part, bytes: [UInt8])
    /// `reloaded ID NODE` LF RESULT: a member's answer to a reload.
    case reloaded(id: String, node: UInt32, result: String)
    /// `cmount` SP MOUNTLINE: a cluster mount request (`ClusterMount.line`).
    case mount(ClusterMount)
    /// `cmounted ID NODE` LF RESULT: a node's part of a mount ended.
    case mounted(id: String, node: UInt32, result: String)
    /// `cumount ID` SP ESCAPED-TARGET: a cluster unmount request.
    case umount(id: String, target: String)
    /// `cumounted ID NODE` LF RESULT: a node's part of an unmount ended.
    case umounted(id: String, node: UInt32, result: String)
    /// `ctable TO I/N` { LF MOUNTLINE }: part of the mount table, for the
    /// newcomers listed in TO.
    case table(to: [UInt32], part: Part, entries: [ClusterMount])
    /// `lock NAME HOLDER`
    case lock(name: String, holder: String)
    /// `unlock NAME HOLDER`
    case unlock(name: String, holder: String)
    /// `locks TO I/N` { SP NAME=H[,H...] }: part of the lock queues, for
    /// the newcomers listed in TO. A NAME may come again (in this part or
    /// a later one): its holders continue the queue.
    case locks(to: [UInt32], part: Part, queues: [LockQueue])
    /// `peers` { LF NAME SP IDENTITY }: the enrolled identities, from the
    /// CFS init node, for the tunnel's peers (`[tunnel]`). Tokens only;
    /// the receiver parses them as an identities file.
    case peers([Identity])
    /// `load RUNNABLE CPUS`: the sender's load for the load leveler, in
    /// hundredths of a runnable process (0...100000), and its CPUs (1...4096).
    case load(hundredths: UInt32, cpus: UInt32)

    struct Identity: Equatable, Sendable {
        var name: String
        var key: String
    }

    struct LockQueue: Equatable, Sendable {
        var name: String
        var holders: [String]
    }

    /// Part I of N, 1-based, "I/N" on the wire.
    struct Part: Equatable, Sendable, CustomStringConvertible {
        var index: Int
        var count: Int
        static let only = Part(index: 1, count: 1)
        var isLast: Bool { index == count }
        var description: String { "\(index)/\(count)" }
    }

    /// 3: `peers` (the tunnel's) was added. 4: `load` (the load leveler's).
    static let version = 4
    /// The longest message, sent or accepted (corosync takes about 1 MiB).
    static let maxMessageBytes = 256 * 1024
    /// What a split message aims at per part.
    static let partBudget = 60 * 1024
    /// The most parts of one table, lock state or reload.
    static let maxParts = 256
    /// The longest reload configuration (a cluster.conf is a few KiB).
    static let maxReloadBytes = 4 * 1024 * 1024
    static let maxReloadParts = (maxReloadBytes + partBudget - 1) / partBudget
    /// The longest cluster mount record (the local socket's line bound).
    static let maxEntryBytes = 64 * 1024
    /// Results ("ok", "error: ...") are cut to this many bytes when sent.
    static let maxResultBytes = 4096
    /// The longest stage, table or device name, and the most of them in a
    /// list: what the view file and `ssi cluster status` show.
    static let maxTokenBytes = 256
    static let maxListItems = 1024

    // MARK: values

    /// A word the space-separated view file can hold: printable ASCII
    /// without spaces, bounded.
    static func isToken(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.count <= maxTokenBytes && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// A reload's id ("PID-MILLISECONDS" from `ssi cluster reload`): it
    /// names a file in the reload directory, so letters, digits, "-" and
    /// "_" only (no "/", no "..").
    static func isReloadID(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.count <= 64
            && s.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 95 }
    }

    /// `-` for none, else tokens joined by ",", without commas in them.
    static func list(_ s: Substring) -> [String]? {
        if s == "-" { return [] }
        let items = s.split(separator: ",", omittingEmptySubsequences: false)
        guard items.count <= maxListItems, items.allSatisfy(isToken) else { return nil }
        return items.map(String.init)
    }

    static func listText(_ items: [String]) -> String { items.isEmpty ? "-" : items.joined(separator: ",") }

    // MARK: encoding

    func encode() -> [UInt8] {
        let v = "v\(Self.version) "
        switch self {
        case .state(let state, let stage):
            return Array("\(v)state \(state.rawValue) \(stage.isEmpty ? "-" : stage)".utf8)
        case .gfs2(let tables):
            return Array("\(v)gfs2 \(Self.listText(tables))".utf8)
        case .devices(let devices):
            return Array("\(v)devs \(Self.listText(devices))".utf8)
        case .boot(let node, let stage):
            return Array("\(v)boot \(node) \(stage)".utf8)
        case .reload(let id, let part, let bytes):
            return Array("\(v)reload \(id) \(part)\n".utf8) + bytes
        case .reloaded(let id, let node, let result):
            return Array("\(v)reloaded \(id) \(node)\n\(Self.clip(result))".utf8)
        case .mount(let entry):
            return Array("\(v)cmount \(entry.line)".utf8)
        case .mounted(let id, let node, let result):
            return Array("\(v)cmounted \(id) \(node)\n\(Self.clip(result))".utf8)
        case .umount(let id, let target):
            return Array("\(v)cumount \(id) \(ClusterMount.escape(target))".utf8)
        case .umounted(let id, let node, let result):
            return Array("\(v)cumounted \(id) \(node)\n\(Self.clip(result))".utf8)
        case .table(let to, let part, let entries):
            return Array(([Self.tableHeader(to, part)] + entries.map(\.line)).joined(separator: "\n").utf8)
        case .lock(let name, let holder):
            return Array("\(v)lock \(name) \(holder)".utf8)
        case .unlock(let name, let holder):
            return Array("\(v)unlock \(name) \(holder)".utf8)
        case .locks(let to, let part, let queues):
            return Array(([Self.locksHeader(to, part)] + queues.map(Self.queueText)).joined(separator: " ").utf8)
        case .peers(let list):
            return Array((["\(v)peers"] + list.map { "\($0.name) \($0.key)" }).joined(separator: "\n").utf8)
        case .load(let hundredths, let cpus):
            return Array("\(v)load \(hundredths) \(cpus)".utf8)
        }
    }

    private static func tableHeader(_ to: [UInt32], _ part: Part) -> String {
        "v\(version) ctable \(to.map(String.init).joined(separator: ",")) \(part)"
    }

    private static func locksHeader(_ to: [UInt32], _ part: Part) -> String {
        "v\(version) locks \(to.map(String.init).joined(separator: ",")) \(part)"
    }

    private static func queueText(_ q: LockQueue) -> String { q.name + "=" + q.holders.joined(separator: ",") }

    /// At most `maxResultBytes` of UTF-8, cut on a scalar boundary.
    static func clip(_ result: String) -> String {
        guard result.utf8.count > maxResultBytes else { return result }
        var out = ""
        var bytes = 0
        for s in result.unicodeScalars {
            bytes += UTF8.width(s)
            if bytes > maxResultBytes { break }
            out.unicodeScalars.append(s)
        }
        return out
    }

    // MARK: splitting (the sender's side of the parts)

    /// The mount table for newcomers, in parts of about `partBudget`
    /// bytes (at least one part: an empty table still ends the wait).
    static func tableParts(to: [UInt32], entries: [ClusterMount]) -> [CPGMessage] {
        let header = tableHeader(to, Part(index: maxParts, count: maxParts)).utf8.count
        let groups = pack(entries.map { $0.line.utf8.count + 1 }, overhead: header)
        return groups.enumerated().map { i, range in
            .table(to: to, part: Part(index: i + 1, count: groups.count), entries: Array(entries[range]))
        }
    }

    /// The lock queues for newcomers, in parts; a long queue is cut into
    /// several items of the same name (the receiver joins them in order).
    static func lockParts(to: [UInt32], queues: [LockQueue]) -> [CPGMessage] {
        var items: [LockQueue] = []
        for q in queues {
            var current = LockQueue(name: q.name, holders: [])
            var size = q.name.utf8.count + 2
            for h in q.holders {
                if size + h.utf8.count + 1 > partBudget / 2, !current.holders.isEmpty {
                    items.append(current)
                    current.holders = []
                    size = q.name.utf8.count + 2
                }
                current.holders.append(h)
                size += h.utf8.count + 1
            }
            if !current.holders.isEmpty { items.append(current) }
        }
        let header = locksHeader(to, Part(index: maxParts, count: maxParts)).utf8.count
        let groups = pack(items.map { queueText($0).utf8.count + 1 }, overhead: header)
        return groups.enumerated().map { i, range in
            .locks(to: to, part: Part(index: i + 1, count: groups.count), queues: Array(items[range]))
        }
    }

    /// A reload's configuration in parts; nil when it is longer than
    /// `maxReloadBytes`.
    static func reloadParts(id: String, text: [UInt8]) -> [CPGMessage]? {
        guard text.count <= maxReloadBytes else { return nil }
        let count = max(1, (text.count + partBudget - 1) / partBudget)
        return (0..<count).map { i in
            .reload(id: id, part: Part(index: i + 1, count: count),
                    bytes: Array(text[min(text.count, i * partBudget)..<min(text.count, (i + 1) * partBudget)]))
        }
    }

    /// Consecutive runs of items whose sizes fit `partBudget` after the
    /// header (an item larger than that goes alone); at least one run.
    private static func pack(_ sizes: [Int], overhead: Int) -> [Range<Int>] {
        var groups: [Range<Int>] = []
        var start = 0
        var size = overhead
        for (i, s) in sizes.enumerated() {
            if size + s > partBudget && i > start {
                groups.append(start..<i)
                start = i
                size = overhead
            }
            size += s
        }
        groups.append(start..<sizes.count)
        return groups
    }

    // MARK: decoding

    static func decode(_ payload: [UInt8]) throws(CPGMessageError) -> CPGMessage {
        // Before anything is copied.
        guard payload.count <= maxMessageBytes else { throw .tooLong(bytes: payload.count) }
        let lf = payload.firstIndex(of: 10)
        let header = String(decoding: payload[..<(lf ?? payload.count)], as: UTF8.self)
        let words = header.split(separator: " ", omittingEmptySubsequences: false)
        let versionWord = words[0]
        guard versionWord.count >= 2, versionWord.first == "v", versionWord.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw .unversioned
        }
        guard let v = Int(versionWord.dropFirst()), v == version else {
            throw .unsupportedVersion(String(versionWord.prefix(24)))
        }
        guard words.count >= 2 else { throw .malformed(kind: "", why: "no kind") }
        let kind = String(words[1].prefix(24))
        let args = Array(words.dropFirst(2))
        /// The text after the header's LF, if there is one.
        let body = lf.map { payload[($0 + 1)...] }
        func bad(_ why: String) -> CPGMessageError { .malformed(kind: kind, why: why) }
        func expect(_ n: Int, body wanted: Bool = false) throws(CPGMessageError) {
            guard args.count == n else { throw bad("\(args.count) fields, want \(n)") }
            guard (body != nil) == wanted else { throw bad(wanted ? "no line break" : "a line break") }
        }
        func node(_ s: Substring) throws(CPGMessageError) -> UInt32 {
            guard s.utf8.count <= 10, s.utf8.allSatisfy({ (48...57).contains($0) }), let n = UInt32(s) else { throw bad("node '\(s.prefix(24))'") }
            return n
        }
        func token(_ s: Substring, _ what: String) throws(CPGMessageError) -> String {
            guard isToken(s) else { throw bad("\(what) is not a token") }
            return String(s)
        }
        func part(_ s: Substring) throws(CPGMessageError) -> Part {
            let p = s.split(separator: "/", omittingEmptySubsequences: false)
            guard p.count == 2, p.allSatisfy({ $0.utf8.count <= 4 && $0.utf8.allSatisfy { (48...57).contains($0) } }),
                  let i = Int(p[0]), let n = Int(p[1]), 1 <= i, i <= n, n <= maxParts else { throw bad("part '\(s.prefix(24))'") }
            return Part(index: i, count: n)
        }
        func nodes(_ s: Substring) throws(CPGMessageError) -> [UInt32] {
            let items = s.split(separator: ",", omittingEmptySubsequences: false)
            guard items.count <= maxListItems else { throw bad("too many nodes") }
            var out: [UInt32] = []
            for i in items { out.append(try node(i)) }
            return out
        }
        func result() -> String { String(decoding: body ?? [], as: UTF8.self) }
        func entry(_ s: Substring) throws(CPGMessageError) -> ClusterMount {
            guard s.utf8.count <= maxEntryBytes else { throw bad("a mount record of \(s.utf8.count) bytes") }
            guard let e = try? ClusterMount(line: String(s)), isToken(Substring(e.id)) else { throw bad("a bad mount record") }
            return e
        }

        switch kind {
        case "load":
            try expect(2)
            let load = try node(args[0]), cpus = try node(args[1])
            guard load <= 100_000, (1...4096).contains(cpus) else { throw bad("load \(load) on \(cpus) CPUs") }
            return .load(hundredths: load, cpus: cpus)
        case "state":
            try expect(2)
            guard let state = NodeState(rawValue: String(args[0])) else { throw bad("state '\(args[0].prefix(24))'") }
            let stage = try token(args[1], "the stage")
            return .state(state, stage: stage == "-" ? "" : stage)
        case "gfs2", "devs":
            try expect(1)
            guard let items = list(args[0]) else { throw bad("a bad list") }
            return kind == "gfs2" ? .gfs2(items) : .devices(items)
        case "boot":
            try expect(2)
            return .boot(node: try node(args[0]), stage: try token(args[1], "the stage"))
        case "reload":
            try expect(2, body: true)
            guard isReloadID(args[0]) else { throw bad("reload id") }
            let p = try part(args[1])
            guard p.count <= maxReloadParts, body!.count <= partBudget else { throw bad("more than \(maxReloadBytes) bytes") }
            return .reload(id: String(args[0]), part: p, bytes: Array(body!))
        case "reloaded", "cmounted", "cumounted":
            try expect(2, body: true)
            let n = try node(args[1])
            if kind == "reloaded" {
                guard isReloadID(args[0]) else { throw bad("reload id") }
                return .reloaded(id: String(args[0]), node: n, result: result())
            }
            let id = try token(args[0], "the id")
            return kind == "cmounted" ? .mounted(id: id, node: n, result: result()) : .umounted(id: id, node: n, result: result())
        case "cmount":
            // The record's fields are escaped: no LF, and its spaces are its own.
            guard body == nil, words.count >= 3 else { throw bad("no record") }
            return .mount(try entry(Substring(args.joined(separator: " "))))
        case "cumount":
            guard body == nil, args.count >= 2 else { throw bad("no target") }
            let id = try token(args[0], "the id")
            let target = ClusterMount.unescape(args.dropFirst().joined(separator: " "))
            guard target.hasPrefix("/") else { throw bad("target not absolute") }
            return .umount(id: id, target: target)
        case "peers":
            guard args.isEmpty else { throw bad("\(args.count) fields, want 0") }
            var list: [Identity] = []
            for line in body?.split(separator: 10, omittingEmptySubsequences: false) ?? [] {
                let f = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
                guard f.count == 2, list.count < maxListItems else { throw bad("a bad identity line") }
                list.append(Identity(name: try token(f[0], "the name"), key: try token(f[1], "the key")))
            }
            return .peers(list)
        case "ctable":
            guard args.count == 2 else { throw bad("\(args.count) fields, want 2") }
            var entries: [ClusterMount] = []
            if let body {
                for line in body.split(separator: 10, omittingEmptySubsequences: false) {
                    entries.append(try entry(Substring(String(decoding: line, as: UTF8.self))))
                }
            }
            return .table(to: try nodes(args[0]), part: try part(args[1]), entries: entries)
        case "lock", "unlock":
            try expect(2)
            let name = String(args[0])
            guard ClusterLocks.isValidName(name) else { throw bad("lock name") }
            guard ClusterLocks.holderNode(String(args[1])) != nil else { throw bad("holder") }
            return kind == "lock" ? .lock(name: name, holder: String(args[1])) : .unlock(name: name, holder: String(args[1]))
        case "locks":
            guard body == nil, args.count >= 2 else { throw bad("\(args.count) fields, want 2 or more") }
            var queues: [LockQueue] = []
            for item in args.dropFirst(2) {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard kv.count == 2, ClusterLocks.isValidName(String(kv[0])) else { throw bad("lock name") }
                let holders = kv[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard holders.allSatisfy({ ClusterLocks.holderNode($0) != nil }) else { throw bad("holder") }
                queues.append(LockQueue(name: String(kv[0]), holders: holders))
            }
            return .locks(to: try nodes(args[0]), part: try part(args[1]), queues: queues)
        default:
            throw .unknownKind(kind)
        }
    }
}

/// Why a CPG message was not decoded: the receiver logs it and ignores
/// the message (docs/PROTOCOLS.md 1.).
enum CPGMessageError: Error, Equatable, CustomStringConvertible {
    case tooLong(bytes: Int)
    /// No version word: an ssi before protocol v2.
    case unversioned
    case unsupportedVersion(String)
    case unknownKind(String)
    case malformed(kind: String, why: String)

    /// A sender's version, not its message, is the problem: said once
    /// per sender rather than for every message.
    var isVersionMismatch: Bool {
        switch self {
        case .unversioned, .unsupportedVersion: true
        default: false
        }
    }

    var description: String {
        switch self {
        case .tooLong(let n): "a message of \(n) bytes (at most \(CPGMessage.maxMessageBytes))"
        case .unversioned: "no protocol version (an ssi older than protocol v\(CPGMessage.version))"
        case .unsupportedVersion(let v): "protocol \(v), this agent speaks v\(CPGMessage.version)"
        case .unknownKind(let k): "unknown message '\(MembershipAgent.printable(Substring(k)))'"
        case .malformed(let kind, let why): "malformed \(MembershipAgent.printable(Substring(kind))): \(MembershipAgent.printable(Substring(why)))"
        }
    }
}

/// The receiving side of split messages: one transfer per sender at a
/// time, its parts in order (CPG delivers one sender's messages in the
/// order sent). A part out of order, or a new transfer's first part,
/// drops what was gathered.
struct Reassembly<Item> {
    private var pending: [UInt32: (key: String, next: Int, items: [Item])] = [:]

    /// Adds a part; the whole, once its last part came.
    mutating func add(from node: UInt32, key: String, part: CPGMessage.Part, items: [Item]) -> [Item]? {
        if part.index == 1 {
            pending[node] = nil
            if part.isLast { return items }
            pending[node] = (key, 2, items)
            return nil
        }
        guard var p = pending[node], p.key == key, p.next == part.index else {
            pending[node] = nil
            return nil
        }
        pending[node] = nil
        p.items += items
        if part.isLast { return p.items }
        p.next += 1
        pending[node] = p
        return nil
    }

    /// A sender that left: its transfer will not end.
    mutating func drop(_ node: UInt32) { pending[node] = nil }

    var isEmpty: Bool { pending.isEmpty }
}
