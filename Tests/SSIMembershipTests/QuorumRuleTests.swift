import Testing
@testable import SSIMembership

/// The view's states as corosync's quorum lists and CPG's messages arrive,
/// in either order.
@Suite struct QuorumRuleTests {
    func nodes(_ states: [NodeState]) -> [NodeRecord] {
        states.enumerated().map { NodeRecord(number: UInt32($0.offset + 1), name: "node\($0.offset + 1)", address: "", state: $0.element, stage: "") }
    }

    @Test("a stale quorum list after a merge: node 1 goes down, the next list brings back what it said")
    func staleListAfterMerge() {
        // Node 2's view: node 1's CPG state (UP) already arrived.
        var view = nodes([.up, .comingUp, .up])
        let reported: [UInt32: QuorumRule.Reported] = [1: .init(state: .up, stage: ""), 3: .init(state: .up, stage: "")]
        // The quorum list of the partition before the merge, {2, 3}.
        let first = QuorumRule.apply(to: &view, quorum: [2, 3], cpg: [1, 2, 3], reported: reported, local: 2)
        #expect(first.down == [1] && view[0].state == .down)
        // Then the merged one, {1, 2, 3}: node 1 is back as it said.
        let second = QuorumRule.apply(to: &view, quorum: [1, 2, 3], cpg: [1, 2, 3], reported: reported, local: 2)
        #expect(second.back == [1] && view[0].state == .up)
        #expect(view[1].state == .comingUp, "this node's own record is its own business")
    }

    @Test("listed again but not (yet) a CPG member: stays down; a member that said nothing yet: COMINGUP")
    func backNeedsCPG() {
        var view = nodes([.down, .up, .down])
        let r = QuorumRule.apply(to: &view, quorum: [1, 2, 3], cpg: [2, 3], reported: [:], local: 2)
        #expect(r.back == [3] && view[0].state == .down && view[2].state == .comingUp)
        #expect(view[2].stage == "")
    }

    @Test("a booting node's stage comes back with it")
    func stageComesBack() {
        var view = nodes([.up, .up, .down])
        _ = QuorumRule.apply(to: &view, quorum: [1, 2, 3], cpg: [1, 2, 3], reported: [3: .init(state: .comingUp, stage: "root")], local: 1)
        #expect(view[2].state == .comingUp && view[2].stage == "root")
    }
}
