import Testing
import SSICore
@testable import SSIMembership

/// `ssi cluster shutdown`'s order, from the agent's view.
@Suite struct ShutdownPlanTests {
    static func view(local: UInt32, _ nodes: [(UInt32, NodeState)]) -> ClusterView {
        ClusterView(clusterName: "ssi", localNode: local, quorate: true, expectedVotes: UInt32(nodes.count), totalVotes: UInt32(nodes.count),
                    quorum: UInt32(nodes.count / 2 + 1),
                    nodes: nodes.map { NodeRecord(number: $0.0, name: "node\($0.0)", address: "10.0.0.\($0.0)", state: $0.1, stage: "") })
    }

    @Test("GFS2: the others highest number first, this node last; a node already down is left out")
    func gfs2Order() throws {
        let plan = try ShutdownPlan.make(view: Self.view(local: 4, [(1, .up), (2, .up), (3, .up), (4, .up), (5, .down)]), cfsServer: nil)
        #expect(plan.others.map(\.number) == [3, 2, 1] && plan.me.number == 4)
        #expect(plan.summary == "4 nodes power off in this order: node 3 (node3), node 2 (node2), node 1 (node1), then this node, node 4 (node4)")
        let middle = try ShutdownPlan.make(view: Self.view(local: 2, [(1, .up), (2, .up), (3, .goingDown)]), cfsServer: nil)
        #expect(middle.others.map(\.number) == [3, 1], "a node going down is still asked: it is still a member")
    }

    @Test("CFS: only the root's server may run it (it goes last); there the diskless nodes go first")
    func cfsServerLast() throws {
        let v = Self.view(local: 2, [(1, .up), (2, .up), (3, .up)])
        #expect(throws: SSIError.self) { try ShutdownPlan.make(view: v, cfsServer: 1) }
        do {
            _ = try ShutdownPlan.make(view: v, cfsServer: 1)
        } catch {
            #expect(error.message.contains("node 1 (node1) serves the CFS root and must go last") && (error.hint ?? "").contains("on node 1"))
        }
        let onServer = try ShutdownPlan.make(view: Self.view(local: 1, [(1, .up), (2, .up), (3, .up)]), cfsServer: 1)
        #expect(onServer.others.map(\.number) == [3, 2] && onServer.me.number == 1)
        // The server already gone: the rest may still be stopped from anywhere.
        let serverDown = try ShutdownPlan.make(view: Self.view(local: 2, [(1, .down), (2, .up), (3, .up)]), cfsServer: 1)
        #expect(serverDown.others.map(\.number) == [3])
    }

    @Test("alone: just this node; not a member in the view: refused")
    func edges() throws {
        let alone = try ShutdownPlan.make(view: Self.view(local: 1, [(1, .up), (2, .down)]), cfsServer: nil)
        #expect(alone.others.isEmpty && alone.summary == "this node, node 1 (node1), is the only member: it powers off")
        #expect(throws: SSIError.self) { try ShutdownPlan.make(view: Self.view(local: 7, [(1, .up)]), cfsServer: nil) }
    }
}
