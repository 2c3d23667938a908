import Testing
import Foundation
import SSICore
import SSILinux
import SSIMembership
@testable import ssi

/// The waits `ssi cluster reboot` makes on the agent's view file, against
/// view files written here.
@Suite struct MemberDriverTests {
    func viewDirectory(node2 state: NodeState, stage: String) throws -> String {
        var template = Array("/tmp/ssi-driver.XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        let view = ClusterView(clusterName: "alpha", localNode: 1, quorate: true, expectedVotes: 2, totalVotes: 2, quorum: 2,
                               nodes: [NodeRecord(number: 1, name: "node1", address: "10.77.0.1", state: .up, stage: ""),
                                       NodeRecord(number: 2, name: "node2", address: "10.77.0.2", state: state, stage: stage)])
        try view.write(directory: dir)
        return dir
    }

    let node2 = NodeRecord(number: 2, name: "node2", address: "10.77.0.2", state: .up, stage: "")

    @Test("a node back in its emergency shell ends the wait at once, naming the step; UP ends it; another stage waits out the bound")
    func waitBackStopsAtTheEmergencyShell() throws {
        let stopped = try viewDirectory(node2: .comingUp, stage: BootStageName.emergency("root"))
        defer { try? FileManager.default.removeItem(atPath: stopped) }
        let started = Process.now()
        #expect(MemberDriver(step: "reboot", stateDirectory: stopped).waitBack(node2, seconds: 30) == .stopped(step: "root"))
        #expect(Process.now() - started < 5, "not the whole 30 s bound")

        let up = try viewDirectory(node2: .up, stage: "")
        defer { try? FileManager.default.removeItem(atPath: up) }
        #expect(MemberDriver(step: "reboot", stateDirectory: up).waitBack(node2, seconds: 30) == .up)

        let coming = try viewDirectory(node2: .comingUp, stage: "root")
        defer { try? FileManager.default.removeItem(atPath: coming) }
        #expect(MemberDriver(step: "reboot", stateDirectory: coming).waitBack(node2, seconds: 0.5) == .timedOut)
    }
}
