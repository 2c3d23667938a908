import Testing
import SSICore
@testable import SSIMembership

/// `ssi cluster reboot`'s choice of nodes and its refusals, from the
/// agent's view.
@Suite struct RebootPlanTests {
    static func view(local: UInt32, _ nodes: [(UInt32, NodeState)]) -> ClusterView { ShutdownPlanTests.view(local: local, nodes) }

    static func refusal(_ view: ClusterView, _ words: [String], cfsServer: UInt32? = nil) -> SSIError? {
        do {
            _ = try RebootPlan.make(view: view, words: words, cfsServer: cfsServer)
            return nil
        } catch {
            return error
        }
    }

    @Test("nodes by number or name, in the order given, each once; all: every other member, highest first, the CFS server left out")
    func choice() throws {
        let v = Self.view(local: 1, [(1, .up), (2, .up), (3, .up), (4, .up)])
        let named = try RebootPlan.make(view: v, words: ["node3", "2", "3"], cfsServer: nil)
        #expect(named.nodes.map(\.number) == [3, 2])
        #expect(named.summary == "2 nodes reboot one at a time, in this order: node 3 (node3), node 2 (node2)")
        #expect(try RebootPlan.make(view: v, words: ["4"], cfsServer: nil).summary == "node 4 (node4) reboots")
        #expect(try RebootPlan.make(view: v, words: ["all"], cfsServer: nil).nodes.map(\.number) == [4, 3, 2])
        let cfs = Self.view(local: 2, [(1, .up), (2, .up), (3, .up), (4, .up)])
        #expect(try RebootPlan.make(view: cfs, words: ["all"], cfsServer: 1).nodes.map(\.number) == [4, 3])
        let withDown = Self.view(local: 1, [(1, .up), (2, .up), (3, .up), (4, .up), (5, .down)])
        #expect(try RebootPlan.make(view: withDown, words: ["all"], cfsServer: nil).nodes.map(\.number) == [4, 3, 2])
    }

    @Test("refused with the reason and the way out: this node, the CFS root's server, a node down, an unknown word, nothing named")
    func refusals() throws {
        let v = Self.view(local: 1, [(1, .up), (2, .up), (3, .up), (4, .down)])
        let me = Self.refusal(v, ["1"])
        #expect(me?.message == "node 1 (node1) is this node, which drives the reboot and waits for each node to come back"
                && (me?.hint ?? "").contains("on another member"), "\(String(describing: me))")
        let server = Self.refusal(Self.view(local: 2, [(1, .up), (2, .up), (3, .up)]), ["3", "1"], cfsServer: 1)
        #expect((server?.message ?? "").contains("node 1 (node1) serves the CFS root") && (server?.hint ?? "").contains("ssi cluster shutdown"),
                "\(String(describing: server))")
        let down = Self.refusal(Self.view(local: 1, [(1, .up), (2, .up), (3, .up), (4, .up), (5, .down)]), ["5"])
        #expect(down?.message == "node 5 (node5) is down: there is nothing to reboot", "\(String(describing: down))")
        let unknown = Self.refusal(v, ["node9"])
        #expect(unknown?.message == "no node node9 in the cluster view" && (unknown?.hint ?? "").contains("1 (node1), 2 (node2)"),
                "\(String(describing: unknown))")
        #expect(Self.refusal(v, [])?.message == "no node named")
        #expect(Self.refusal(Self.view(local: 1, [(1, .up), (2, .down)]), ["all"])?.message == "no other member to reboot")
        #expect(Self.refusal(Self.view(local: 7, [(1, .up)]), ["1"]) != nil, "not a member in the view")
        // Bytes from the command line are shown escaped.
        #expect(Self.refusal(v, ["\u{1b}[2J"])?.message.contains("\u{1b}") == false)
    }

    @Test("quorum must stand with one node away: 3 of 4 up with a quorum of 3 is refused, 4 of 4 goes")
    func quorum() throws {
        var v = Self.view(local: 1, [(1, .up), (2, .up), (3, .up), (4, .down)])
        v.expectedVotes = 4
        v.quorum = 3
        let refused = Self.refusal(v, ["2"])
        #expect(refused?.message == "with one node away 2 of 4 votes would be left, below the quorum of 3: every member would stop until it is back",
                "\(String(describing: refused))")
        v.nodes[3].state = .up
        #expect(try RebootPlan.make(view: v, words: ["2"], cfsServer: nil).nodes.map(\.number) == [2])
    }

    @Test("add-journal --reboot: the other members with the table mounted, highest first; whether this node has it too")
    func journalRefresh() throws {
        var v = Self.view(local: 2, [(1, .up), (2, .up), (3, .up), (4, .up), (5, .down)])
        for i in v.nodes.indices where v.nodes[i].number != 4 { v.nodes[i].gfs2 = ["ssi:root"] }
        v.nodes[3].gfs2 = ["ssi:other"]
        let (plan, me) = try RebootPlan.journalRefresh(view: v, lockTable: "ssi:root")
        #expect(plan.nodes.map(\.number) == [3, 1] && me, "node 4 has another table mounted, node 5 is down")
        let alone = try RebootPlan.journalRefresh(view: Self.view(local: 1, [(1, .up), (2, .up)]), lockTable: "ssi:root")
        #expect(alone.others.nodes.isEmpty && !alone.thisNode && alone.others.summary == "no other member to reboot")
    }
}
