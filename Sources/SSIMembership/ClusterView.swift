public import SSICore
import SSILinux

/// OpenSSI's node states.
public enum NodeState: String, Sendable, CaseIterable {
    case comingUp = "COMINGUP"
    case up = "UP"
    case goingDown = "GOINGDOWN"
    case down = "DOWN"
}

/// One node as this node sees it.
public struct NodeRecord: Sendable, Equatable {
    public var number: UInt32
    public var name: String
    public var address: String
    public var state: NodeState
    /// The boot stage while COMINGUP ("network", "membership", "root" ...).
    public var stage: String
    /// The GFS2 file systems (lock tables) the node has mounted, as its
    /// agent last said: no shared disk is formatted or checked under them.
    public var gfs2: [String] = []
    /// The block devices the node uses, by file system UUID: "m:UUID"
    /// mounted, "s:UUID" active swap (ssi-fsck and ssi-swapon refuse them).
    public var devices: [String] = []

    public init(number: UInt32, name: String, address: String, state: NodeState, stage: String, gfs2: [String] = []) {
        self.number = number
        self.name = name
        self.address = address
        self.state = state
        self.stage = stage
        self.gfs2 = gfs2
    }
}

/// The boot stages other commands act on. ssi-init tells its agent the
/// stage through /run/ssi/stage; the agent carries it as one token
/// (printable, no spaces) to every member's view.
public enum BootStageName {
    static let emergencyPrefix = "emergency:"

    /// A step failed and ssi-init waits in its emergency shell; the stage
    /// holds until the shell exits and the step is tried again.
    public static func emergency(_ step: String) -> String { emergencyPrefix + step }

    /// The step an `emergency:STEP` stage names; nil for any other stage.
    public static func failedStep(_ stage: String) -> String? {
        guard stage.hasPrefix(emergencyPrefix), stage.count > emergencyPrefix.count else { return nil }
        return String(stage.dropFirst(emergencyPrefix.count))
    }
}

extension NodeRecord {
    /// The boot step this node is stopped at in its emergency shell (its
    /// console says why), nil while it is not.
    public var failedStep: String? {
        state == .comingUp ? BootStageName.failedStep(stage) : nil
    }
}

/// The cluster view the membership agent keeps in /run/ssi, for
/// `ssi-cluster status`, scripts and the other ssi commands: plain text,
/// one node per line, replaced atomically on every change.
public struct ClusterView: Sendable, Equatable {
    public var clusterName: String
    public var localNode: UInt32
    public var quorate: Bool
    public var expectedVotes: UInt32
    public var totalVotes: UInt32
    public var quorum: UInt32
    public var nodes: [NodeRecord]

    public init(clusterName: String, localNode: UInt32, quorate: Bool, expectedVotes: UInt32,
                totalVotes: UInt32, quorum: UInt32, nodes: [NodeRecord]) {
        self.clusterName = clusterName
        self.localNode = localNode
        self.quorate = quorate
        self.expectedVotes = expectedVotes
        self.totalVotes = totalVotes
        self.quorum = quorum
        self.nodes = nodes
    }

    public static let defaultDirectory = "/run/ssi"

    /// The file format:
    ///   cluster NAME
    ///   local N
    ///   quorum quorate=1 expected=3 total=3 needed=2
    ///   node N STATE STAGE NAME ADDRESS
    ///   gfs2 N TABLE[,TABLE...]      (only for a node with GFS2 mounted)
    ///   devs N m:UUID[,s:UUID...]    (only for a node that uses some)
    /// Every word is `word(_:)`-escaped: "-" for empty, a byte that is
    /// not printable ASCII, a space, "%" or "," as %XX (a word "-" is %2D),
    /// so a node name with a space cannot break the line for every reader.
    public func serialized() -> String {
        let w = Self.word
        var s = "cluster \(w(clusterName))\nlocal \(localNode)\n"
        s += "quorum quorate=\(quorate ? 1 : 0) expected=\(expectedVotes) total=\(totalVotes) needed=\(quorum)\n"
        let sorted = nodes.sorted(by: { $0.number < $1.number })
        for n in sorted {
            s += "node \(n.number) \(n.state.rawValue) \(w(n.stage)) \(w(n.name)) \(w(n.address))\n"
        }
        for n in sorted where !n.gfs2.isEmpty {
            s += "gfs2 \(n.number) \(n.gfs2.map(w).joined(separator: ","))\n"
        }
        for n in sorted where !n.devices.isEmpty {
            s += "devs \(n.number) \(n.devices.map(w).joined(separator: ","))\n"
        }
        return s
    }

    /// One word of the view file (see `serialized`).
    static func word(_ s: String) -> String {
        if s.isEmpty { return "-" }
        if s == "-" { return "%2D" }
        return PercentEscaping.viewWords.escape(s)
    }

    /// The reverse of `word`: "-" is empty; a "%" not followed by two hex
    /// digits is kept as it is.
    static func unword(_ s: Substring) -> String {
        if s == "-" { return "" }
        return PercentEscaping.viewWords.unescape(s, strict: false) ?? String(s)
    }

    /// The members (not DOWN) that have the GFS2 file system with this
    /// lock table mounted.
    public func members(mounting lockTable: String) -> [NodeRecord] {
        nodes.filter { $0.state != .down && $0.gfs2.contains(lockTable) }.sorted { $0.number < $1.number }
    }

    /// The members (not DOWN) that use the device with this UUID: "m"
    /// mounted, "s" swapping on it.
    public func members(using uuid: String, as kind: String) -> [NodeRecord] {
        nodes.filter { $0.state != .down && $0.devices.contains(kind + ":" + uuid) }.sorted { $0.number < $1.number }
    }

    public init(parsing text: String, source: String) throws(SSIError) {
        var view = ClusterView(clusterName: "", localNode: 0, quorate: false, expectedVotes: 0,
                               totalVotes: 0, quorum: 0, nodes: [])
        for (i, line) in text.lines().enumerated() {
            let f = line.split(separator: " ").map(String.init)
            func bad() -> SSIError { SSIError("status", "\(source):\(i + 1): cannot read '\(line)'") }
            switch f.first {
            case "cluster": view.clusterName = f.count > 1 ? Self.unword(Substring(f[1])) : ""
            case "local": view.localNode = f.count > 1 ? UInt32(f[1]) ?? 0 : 0
            case "quorum":
                for kv in f.dropFirst() {
                    let p = kv.split(separator: "=").map(String.init)
                    guard p.count == 2, let v = UInt32(p[1]) else { throw bad() }
                    switch p[0] {
                    case "quorate": view.quorate = v != 0
                    case "expected": view.expectedVotes = v
                    case "total": view.totalVotes = v
                    case "needed": view.quorum = v
                    default: break
                    }
                }
            case "node":
                guard f.count == 6, let n = UInt32(f[1]), let st = NodeState(rawValue: f[2]) else { throw bad() }
                func v(_ s: String) -> String { Self.unword(Substring(s)) }
                view.nodes.append(NodeRecord(number: n, name: v(f[4]), address: v(f[5]), state: st, stage: v(f[3])))
            case "gfs2":
                guard f.count == 3, let n = UInt32(f[1]), let i = view.nodes.firstIndex(where: { $0.number == n }) else { throw bad() }
                view.nodes[i].gfs2 = f[2].split(separator: ",").map(Self.unword)
            case "devs":
                guard f.count == 3, let n = UInt32(f[1]), let i = view.nodes.firstIndex(where: { $0.number == n }) else { throw bad() }
                view.nodes[i].devices = f[2].split(separator: ",").map(Self.unword)
            default:
                throw bad()
            }
        }
        self = view
    }

    public static func load(directory: String = defaultDirectory) throws(SSIError) -> ClusterView {
        let path = directory + "/members"
        let text: String
        do { text = try FileSystem.readText(path) } catch {
            throw SSIError("status", "no cluster view at \(path): \(errnoDescription(error.errno))",
                           hint: "is the membership agent running (ssi cluster agent)?")
        }
        return try ClusterView(parsing: text, source: path)
    }

    public func write(directory: String = defaultDirectory) throws(SSIError) {
        do {
            try FileSystem.makeDirectories(directory)
            let tmp = directory + "/.members.tmp"
            try FileSystem.writeFile(tmp, serialized())
            try FileSystem.rename(tmp, directory + "/members")
        } catch {
            throw SSIError("agent", "writing the cluster view in \(directory): \(error.description)")
        }
    }

    /// `ssi-cluster status` text, like `corosync-quorumtool -s` and
    /// OpenSSI's `cluster -v`.
    public func statusText(roles: [UInt32: String] = [:]) -> String {
        let up = nodes.filter { $0.state == .up || $0.state == .comingUp }.count
        var s = "Cluster \(clusterName.isEmpty ? "(unnamed)" : clusterName): \(nodes.count) nodes, \(up) members, "
        s += quorate ? "quorate" : "NOT quorate"
        s += " (expected votes \(expectedVotes), total votes \(totalVotes), quorum \(quorum))\n"
        var rows = [["node", "name", "address", "state", "role", "stage"]]
        for n in nodes.sorted(by: { $0.number < $1.number }) {
            rows.append(["\(n.number)\(n.number == localNode ? "*" : "")", n.name.isEmpty ? "-" : n.name,
                         n.address.isEmpty ? "-" : n.address, n.state.rawValue, roles[n.number] ?? "-",
                         n.state == .comingUp && !n.stage.isEmpty ? n.stage : "-"])
        }
        let widths = (0..<6).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for r in rows {
            var line = ""
            for (c, cell) in r.enumerated() {
                line += c == 0 ? String(repeating: " ", count: widths[c] - cell.count) + cell
                               : "  " + cell + String(repeating: " ", count: widths[c] - cell.count)
            }
            s += line.trimmingTrailingSpaces() + "\n"
        }
        s += "(* = this node)\n"
        let tables = Set(nodes.flatMap(\.gfs2)).sorted()
        for t in tables {
            s += "GFS2 \(t) mounted on " + members(mounting: t).map { $0.name.isEmpty ? "node \($0.number)" : $0.name }.joined(separator: ", ") + "\n"
        }
        return s
    }

    public func json(roles: [UInt32: String] = [:]) -> String {
        let q = quotedString
        let ns = nodes.sorted(by: { $0.number < $1.number }).map { n in
            "{\"node\":\(n.number),\"name\":\(q(n.name)),\"address\":\(q(n.address)),\"state\":\(q(n.state.rawValue)),"
                + "\"role\":\(q(roles[n.number] ?? "")),\"stage\":\(q(n.stage)),\"local\":\(n.number == localNode),"
                + "\"gfs2\":[\(n.gfs2.map(q).joined(separator: ","))],"
                + "\"mounted_uuids\":[\(n.devices.filter { $0.hasPrefix("m:") }.map { q(String($0.dropFirst(2))) }.joined(separator: ","))],"
                + "\"swap_uuids\":[\(n.devices.filter { $0.hasPrefix("s:") }.map { q(String($0.dropFirst(2))) }.joined(separator: ","))]}"
        }
        return "{\"cluster\":\(q(clusterName)),\"local_node\":\(localNode),\"quorate\":\(quorate),"
            + "\"expected_votes\":\(expectedVotes),\"total_votes\":\(totalVotes),\"quorum\":\(quorum),"
            + "\"nodes\":[\(ns.joined(separator: ","))]}"
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.hasSuffix(" ") { s = s.dropLast() }
        return String(s)
    }
}
