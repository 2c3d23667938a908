import Testing
import Foundation
import SSICore
@testable import SSIMembership

@Suite struct ClusterViewTests {
    let view = ClusterView(clusterName: "alpha", localNode: 2, quorate: true, expectedVotes: 3, totalVotes: 2, quorum: 2,
                           nodes: [NodeRecord(number: 3, name: "node3", address: "", state: .down, stage: ""),
                                   NodeRecord(number: 1, name: "node1", address: "10.77.0.1", state: .up, stage: ""),
                                   NodeRecord(number: 2, name: "node2", address: "10.77.0.2", state: .comingUp, stage: "root")])

    @Test func fileRoundTrip() throws {
        let text = view.serialized()
        #expect(text.contains("node 2 COMINGUP root node2 10.77.0.2\n"))
        #expect(text.contains("node 3 DOWN - node3 -\n"))
        let back = try ClusterView(parsing: text, source: "members")
        #expect(back.clusterName == "alpha" && back.localNode == 2 && back.quorate)
        #expect(back.nodes.map(\.number) == [1, 2, 3])
        #expect(back.nodes[2].address == "" && back.nodes[1].stage == "root")
    }

    @Test func gfs2MountsRoundTripAndOnlyMembersCount() throws {
        var v = view
        v.nodes[0].gfs2 = ["alpha:root"]          // node 3, DOWN: it no longer counts
        v.nodes[1].gfs2 = ["alpha:root", "alpha:data"]
        v.nodes[2].gfs2 = ["alpha:root"]
        let text = v.serialized()
        #expect(text.contains("gfs2 1 alpha:root,alpha:data\n"))
        let back = try ClusterView(parsing: text, source: "members")
        #expect(back.nodes.first { $0.number == 1 }?.gfs2 == ["alpha:root", "alpha:data"])
        #expect(back.members(mounting: "alpha:root").map(\.number) == [1, 2])
        #expect(back.members(mounting: "alpha:data").map(\.number) == [1])
        #expect(back.members(mounting: "beta:root").isEmpty)
        let status = back.statusText()
        #expect(status.contains("GFS2 alpha:root mounted on node1, node2\n"), "\(status)")
        #expect(!view.statusText().contains("GFS2"))
        #expect(throws: SSIError.self) { try ClusterView(parsing: "cluster a\ngfs2 9 a:b\n", source: "m") }
    }

    @Test("a node stopped in its emergency shell: the stage ssi-init tells survives the agent's token and the view file; only COMINGUP counts")
    func emergencyStage() throws {
        let stage = BootStageName.emergency("root")
        #expect(stage == "emergency:root")
        #expect(MembershipAgent.stageToken(stage) == stage, "the agent carries it unchanged")
        var v = view
        v.nodes[2].stage = stage
        let back = try ClusterView(parsing: v.serialized(), source: "members")
        let node2 = try #require(back.nodes.first { $0.number == 2 })
        #expect(node2.failedStep == "root")
        #expect(back.statusText().contains("emergency:root"), "status shows it: \(back.statusText())")
        // Other stages, an empty step, and the same stage on a node that is
        // no longer COMINGUP say nothing failed.
        #expect(back.nodes.first { $0.number == 1 }?.failedStep == nil)
        for other in ["root", "membership", "emergency:", "emergency", "emergencyroot", ""] {
            #expect(BootStageName.failedStep(other) == nil, "\(other)")
        }
        var upAgain = node2
        upAgain.state = .up
        #expect(upAgain.failedStep == nil)
        #expect(BootStageName.failedStep("emergency:cluster-mounts") == "cluster-mounts")
    }

    @Test func badLinesAreNamed() {
        #expect {
            try ClusterView(parsing: "cluster a\nnode x UP - n -\n", source: "/run/ssi/members")
        } throws: { ($0 as? SSIError)?.message.hasPrefix("/run/ssi/members:2:") == true }
    }

    @Test func statusTable() {
        let text = view.statusText(roles: [1: "init", 2: "diskless"])
        #expect(text.hasPrefix("Cluster alpha: 3 nodes, 2 members, quorate (expected votes 3, total votes 2, quorum 2)\n"))
        let rows = text.split(separator: "\n").map(String.init)
        #expect(rows[1] == "node  name   address    state     role      stage")
        #expect(rows[2] == "   1  node1  10.77.0.1  UP        init      -")
        #expect(rows[3] == "  2*  node2  10.77.0.2  COMINGUP  diskless  root")
        #expect(rows[4] == "   3  node3  -          DOWN      -         -")
    }

    @Test func jsonIsValidAndComplete() throws {
        let json = view.json(roles: [1: "init"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(obj["cluster"] as? String == "alpha")
        #expect(obj["quorate"] as? Bool == true)
        let nodes = try #require(obj["nodes"] as? [[String: Any]])
        #expect(nodes.map { $0["state"] as? String } == ["UP", "COMINGUP", "DOWN"])
        #expect(nodes[1]["local"] as? Bool == true)
        #expect(nodes[0]["role"] as? String == "init")
        #expect(nodes[0]["gfs2"] as? [String] == [])
        var mounted = view
        mounted.nodes[1].gfs2 = ["alpha:root"]
        let again = try #require(try JSONSerialization.jsonObject(with: Data(mounted.json().utf8)) as? [String: Any])
        #expect((again["nodes"] as? [[String: Any]])?.first?["gfs2"] as? [String] == ["alpha:root"])
    }

    @Test func quotingEscapesForJSONAndTOML() {
        #expect(quotedString("a\"b\\c\nd\u{1}") == "\"a\\\"b\\\\c\\nd\\u0001\"")
    }
}
