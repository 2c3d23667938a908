/// The membership agents' own messages on CPG (cluster mounts and locks
/// have theirs in ClusterMountKeeper and ClusterLocks). Decoding is a
/// pure function so that every message a peer may send is tested,
/// mutated bytes included, without corosync: a message that is not one
/// of these, or that carries a value the view could not hold (a stage
/// with a newline would add a line to the view file), is nil and ignored.
///
/// - `v1 STATE STAGE`: the sender's state and boot stage ("-": none).
/// - `boot NODE STAGE`: the CFS init node saw NODE at a firmware stage.
/// - `gfs2 TABLE,TABLE` / `gfs2 -`: the lock tables the sender has mounted.
/// - `devs m:UUID,s:UUID` / `devs -`: block devices the sender uses.
/// - `reload ID\nTEXT`: a configuration for every member.
/// - `reloaded ID NODE RESULT`: a member's answer to a reload.
enum MembershipMessage: Equatable {
    case state(NodeState, stage: String)
    case boot(node: UInt32, stage: String)
    case gfs2([String])
    case devices([String])
    case reload(id: String, text: String)
    case reloaded(id: String, node: String, result: String)

    /// The longest stage, table or device name, and the most of them in a
    /// list: what the view file and `ssi cluster status` show.
    static let maxTokenBytes = 256
    static let maxListItems = 1024

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

    static func list(_ s: Substring) -> [String]? {
        if s == "-" { return [] }
        let items = s.split(separator: ",", omittingEmptySubsequences: false)
        guard items.count <= maxListItems, items.allSatisfy(isToken) else { return nil }
        return items.map(String.init)
    }

    static func decode(_ payload: [UInt8]) -> MembershipMessage? {
        // Bytes, not Characters: "\r\n" is one Character and would hide
        // the newline of a reload.
        if payload.starts(with: Array("reload ".utf8)) {
            guard let nl = payload.firstIndex(of: 10) else { return nil }
            let id = Substring(String(decoding: payload[7..<nl], as: UTF8.self))
            guard isReloadID(id) else { return nil }
            return .reload(id: String(id), text: String(decoding: payload[(nl + 1)...], as: UTF8.self))
        }
        let text = String(decoding: payload, as: UTF8.self)
        if text.hasPrefix("reloaded ") {
            let f = text.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count == 4, isReloadID(f[1]), UInt32(f[2]) != nil else { return nil }
            return .reloaded(id: String(f[1]), node: String(f[2]), result: String(f[3]))
        }
        let f = text.split(separator: " ", omittingEmptySubsequences: false)
        guard f.count == 3 || (f.count == 2 && (f[0] == "gfs2" || f[0] == "devs")) else { return nil }
        switch f[0] {
        case "gfs2" where f.count == 2:
            return list(f[1]).map { .gfs2($0) }
        case "devs" where f.count == 2:
            return list(f[1]).map { .devices($0) }
        case "boot":
            guard let node = UInt32(f[1]), isToken(f[2]) else { return nil }
            return .boot(node: node, stage: String(f[2]))
        case "v1":
            guard let state = NodeState(rawValue: String(f[1])), isToken(f[2]) else { return nil }
            return .state(state, stage: f[2] == "-" ? "" : String(f[2]))
        default:
            return nil
        }
    }
}
