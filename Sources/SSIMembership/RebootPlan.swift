public import SSICore

/// `ssi cluster reboot NODE...`: which members reboot, one at a time, in
/// the order given, decided from the agent's view. A rolling reboot keeps
/// the cluster running, so every node it takes down must leave quorum
/// standing, and it never takes down what the others cannot do without:
/// the node that drives it (it waits for each node to come back) and the
/// CFS root's server (every diskless node's root hangs while it is away;
/// `ssi cluster shutdown` is the way to stop it).
public struct RebootPlan: Sendable, Equatable {
    /// The members to reboot, in order.
    public var nodes: [NodeRecord]

    /// `words`: node numbers or names, or the one word "all" (every other
    /// member, highest number first, as `ssi cluster shutdown` goes).
    /// `cfsServer`: the CFS root's init node, nil for another root.
    public static func make(view: ClusterView, words: [String], cfsServer: UInt32?) throws(SSIError) -> RebootPlan {
        let members = view.nodes.filter { $0.state != .down }
        guard members.contains(where: { $0.number == view.localNode }) else {
            throw SSIError("reboot", "this node (\(view.localNode)) is not a member in the agent's view",
                           hint: "check `ssi cluster status`; run the command on a member")
        }
        guard !words.isEmpty else {
            throw SSIError("reboot", "no node named", hint: "name the nodes to reboot (numbers or names), or all")
        }
        var chosen: [NodeRecord] = []
        if words == ["all"] {
            chosen = members.filter { $0.number != view.localNode && $0.number != cfsServer }.sorted { $0.number > $1.number }
            if chosen.isEmpty {
                throw SSIError("reboot", "no other member to reboot", hint: "reboot this node with systemctl reboot")
            }
        } else {
            for word in words {
                guard let node = view.nodes.first(where: { String($0.number) == word || $0.name == word }) else {
                    let known = view.nodes.map { "\($0.number) (\(printable($0.name)))" }.joined(separator: ", ")
                    throw SSIError("reboot", "no node \(printable(word)) in the cluster view", hint: "name one of: \(known)")
                }
                if chosen.contains(where: { $0.number == node.number }) { continue }
                chosen.append(node)
            }
        }
        for node in chosen {
            let name = "node \(node.number) (\(printable(node.name)))"
            if node.state == .down {
                throw SSIError("reboot", "\(name) is down: there is nothing to reboot", hint: "power it on; it boots into the cluster")
            }
            if node.number == view.localNode {
                throw SSIError("reboot", "\(name) is this node, which drives the reboot and waits for each node to come back",
                               hint: "run ssi cluster reboot \(node.number) on another member, or systemctl reboot here")
            }
            if node.number == cfsServer {
                throw SSIError("reboot", "\(name) serves the CFS root: every diskless node's root would hang until it is back",
                               hint: "stop the whole cluster with ssi cluster shutdown on node \(node.number), then boot it again")
            }
        }
        // One node away at a time: the members left must keep quorum
        // (one vote each, as ssi configures corosync).
        let votes = UInt32(members.count)
        if view.quorum > 0, votes - 1 < view.quorum {
            throw SSIError("reboot", "with one node away \(votes - 1) of \(view.expectedVotes) votes would be left, below the quorum of "
                           + "\(view.quorum): every member would stop until it is back",
                           hint: "boot the members that are down first (ssi cluster status)")
        }
        return RebootPlan(nodes: chosen)
    }

    /// After `add-journal --reboot`: the members that have the GFS2 file
    /// system with `lockTable` mounted read its journal index when they
    /// mounted it, so each must mount it again, which for a root means a
    /// reboot. The others go first, highest number first, driven from
    /// here; `thisNode` says whether this node has it mounted too (it goes
    /// last, driven from a node already rebooted).
    public static func journalRefresh(view: ClusterView, lockTable: String) throws(SSIError) -> (others: RebootPlan, thisNode: Bool) {
        let holders = view.members(mounting: lockTable)
        let others = holders.filter { $0.number != view.localNode }.sorted { $0.number > $1.number }
        let plan = others.isEmpty ? RebootPlan(nodes: []) : try make(view: view, words: others.map { String($0.number) }, cfsServer: nil)
        return (plan, holders.contains { $0.number == view.localNode })
    }

    /// What `--dry-run` prints, and the first line of a real run.
    public var summary: String {
        if nodes.isEmpty { return "no other member to reboot" }
        let names = nodes.map { "node \($0.number) (\(printable($0.name)))" }
        return nodes.count == 1 ? "\(names[0]) reboots" : "\(nodes.count) nodes reboot one at a time, in this order: " + names.joined(separator: ", ")
    }
}
