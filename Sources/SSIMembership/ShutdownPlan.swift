public import SSICore

/// `ssi cluster shutdown`: in which order the members power off, decided
/// from the view. The node that runs the command goes last (it drives the
/// others and then itself); the others go highest number first. On a CFS
/// cluster the root's server must go last, after every node that boots
/// from it (a diskless node whose server went first hangs on its root), so
/// the command runs there or nowhere.
public struct ShutdownPlan: Sendable, Equatable {
    /// The other members, in the order they power off.
    public var others: [NodeRecord]
    /// This node, last.
    public var me: NodeRecord

    /// `cfsServer`: the CFS root's init node, nil for another root.
    public static func make(view: ClusterView, cfsServer: UInt32?) throws(SSIError) -> ShutdownPlan {
        let members = view.nodes.filter { $0.state != .down }
        guard let me = members.first(where: { $0.number == view.localNode }) else {
            throw SSIError("shutdown", "this node (\(view.localNode)) is not a member in the agent's view",
                           hint: "check `ssi cluster status`; run the command on a member")
        }
        if let server = cfsServer, server != me.number, let s = members.first(where: { $0.number == server }) {
            throw SSIError("shutdown", "node \(s.number) (\(printable(s.name))) serves the CFS root and must go last, after every node that boots from it",
                           hint: "run ssi cluster shutdown on node \(s.number)")
        }
        let others = members.filter { $0.number != me.number }.sorted { $0.number > $1.number }
        return ShutdownPlan(others: others, me: me)
    }

    /// What `--dry-run` prints, and the first line of a real run.
    public var summary: String {
        let mine = "node \(me.number) (\(printable(me.name)))"
        if others.isEmpty { return "this node, \(mine), is the only member: it powers off" }
        return "\(others.count + 1) nodes power off in this order: "
            + others.map { "node \($0.number) (\(printable($0.name)))" }.joined(separator: ", ") + ", then this node, \(mine)"
    }
}
