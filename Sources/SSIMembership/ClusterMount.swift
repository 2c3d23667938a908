public import SSICore

/// OpenSSI's `node=` mount option: which node mounts a file system.
public enum NodeRule: Sendable, Equatable, CustomStringConvertible {
    /// `node=N`: the device lives on node N, which mounts it and exports it
    /// over NFSv4 to the cluster network; every other member mounts that.
    case node(UInt32)
    /// `node=*`: each node mounts it itself (network file systems, tmpfs,
    /// GFS2 on a shared disk).
    case every
    /// `node=N:M`: N mounts it; M is named to take over when N leaves
    /// (recorded and shown; the takeover itself is not implemented: see
    /// DESIGN-NOTES.md).
    case failover(UInt32, UInt32)

    public init(parsing text: String) throws(SSIError) {
        if text == "*" {
            self = .every
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let numbers = parts.compactMap { UInt32($0) }
        guard numbers.count == parts.count, numbers.allSatisfy({ $0 > 0 }) else {
            throw SSIError("mount", "node=\(text): not a node number, \"*\" or N:M",
                           hint: "node=2 (node 2 mounts it, the others see it through CFS), node=* (every node mounts it), node=2:3 (3 takes over)")
        }
        switch numbers.count {
        case 1: self = .node(numbers[0])
        case 2 where numbers[0] != numbers[1]: self = .failover(numbers[0], numbers[1])
        default:
            throw SSIError("mount", "node=\(text): want one node, or two different nodes N:M",
                           hint: "node=2 or node=2:3")
        }
    }

    public var description: String {
        switch self {
        case .node(let n): "\(n)"
        case .every: "*"
        case .failover(let a, let b): "\(a):\(b)"
        }
    }

    /// The node that mounts the device itself (nil: every node does).
    public var owner: UInt32? {
        switch self {
        case .node(let n), .failover(let n, _): n
        case .every: nil
        }
    }
}

/// One entry of the cluster mount table: kept by every membership agent,
/// in the same order everywhere (CPG's agreed order), replayed by nodes
/// that join later.
public struct ClusterMount: Sendable, Equatable {
    /// "NODE.SEQ": the requesting node and its agent's counter.
    public var id: String
    public var rule: NodeRule
    public var source: String
    public var target: String
    public var type: String
    /// Without `node=`.
    public var options: String

    public init(id: String, rule: NodeRule, source: String, target: String, type: String, options: String) {
        self.id = id
        self.rule = rule
        self.source = source
        self.target = target
        self.type = type
        self.options = options
    }

    /// One line, tab-separated, with `\`, tab and newline escaped:
    /// ID RULE TARGET SOURCE TYPE OPTIONS.
    public var line: String {
        [id, rule.description, target, source, type, options].map(Self.escape).joined(separator: "\t")
    }

    public init(line: String) throws(SSIError) {
        let f = line.split(separator: "\t", omittingEmptySubsequences: false).map { Self.unescape(String($0)) }
        guard f.count == 6, !f[0].isEmpty, f[2].hasPrefix("/") else {
            throw SSIError("mount", "malformed cluster mount record '\(line)'")
        }
        self.init(id: f[0], rule: try NodeRule(parsing: f[1]), source: f[3], target: f[2], type: f[4], options: f[5])
    }

    /// A field of a record: backslash, tab, LF and CR escaped, by Unicode
    /// scalar (by Character, "\r\n" is one Character that matched neither
    /// case and went out raw, cutting a request line in two).
    public static func escape(_ s: String) -> String { BackslashEscaping.records.escape(s) }

    public static func unescape(_ s: String) -> String { BackslashEscaping.records.unescape(s) }

    /// What node `local` does for this entry.
    public func role(on local: UInt32) -> Role {
        guard let owner = rule.owner else { return .mountItself }
        return owner == local ? .mountAndExport : .mountFrom(owner)
    }

    public enum Role: Sendable, Equatable {
        case mountItself
        case mountAndExport
        case mountFrom(UInt32)
    }

    /// The NFS export's fsid: stable for a target, the same on every node
    /// (FNV-1a of the path), never 0 (the NFSv4 pseudo-root's).
    public var exportFSID: UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in target.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h == 0 ? 1 : h & 0x7fff_ffff
    }

    /// The file of the table the agent keeps in the state directory, one
    /// `line` per entry, for ssi-init's replay and for `ssi-mount` listing.
    public static let tableFile = "cluster-mounts"

    public static func table(parsing text: String) -> [ClusterMount] {
        text.lines().compactMap { try? ClusterMount(line: String($0)) }
    }
}
