import Testing
import SSICore
import SSILinux
import SSIConfig
import SSIMembership
@testable import SSIBoot

/// What a cluster node does just before the hand-off: which cluster
/// mounts it makes, which swap it uses, its PID range.
@Suite struct HandOffDecisionTests {
    func mount(_ id: String, _ rule: NodeRule) -> ClusterMount {
        ClusterMount(id: id, rule: rule, source: "/srv/\(id)", target: "/mnt/\(id)", type: "nfs", options: "")
    }

    @Test func mountsEveryNodesEntriesAndMembersExportsButNotItsOwn() throws {
        let config = try BootTestConfigs.cfs()
        let me = try #require(config.node(number: 2))
        let table = [mount("all", .every), mount("mine", .node(2)), mount("from1", .node(1)), mount("from3", .node(3)),
                     mount("from9", .node(9))]
        // Node 3 is down in the agent's view; node 9 is a member but not in
        // this configuration (a stale table): both wait for the agent.
        let mounts = Boot.mountsBeforeHandOff(table, config: config, me: me, members: [1, 2, 9])
        #expect(mounts == [
            Boot.HandOffMount(entry: table[0], role: .mountItself, server: nil),
            Boot.HandOffMount(entry: table[2], role: .mountFrom(1), server: "10.77.0.1"),
        ])
    }

    @Test func failoverEntriesBelongToTheirFirstNode() throws {
        let config = try BootTestConfigs.cfs()
        let me = try #require(config.node(number: 1))
        let table = [mount("f", .failover(1, 2))]
        // Node 1 owns it (exports it): the agent does that after the hand-off.
        #expect(Boot.mountsBeforeHandOff(table, config: config, me: me, members: [1, 2]).isEmpty)
        let other = try #require(config.node(number: 3))
        #expect(Boot.mountsBeforeHandOff(table, config: config, me: other, members: [1, 3]).map(\.server) == ["10.77.0.1"])
    }

    @Test func swapIsUsedOnlyWithASwapSignature() {
        let disks = [BlockDevice(name: "vdb", path: "/dev/vdb", type: "swap", label: "swap1"),
                     BlockDevice(name: "vdc", path: "/dev/vdc", type: "ext4", label: "data")]
        #expect(Boot.swapChoice("LABEL=swap1", devices: disks) == .use(path: "/dev/vdb"))
        #expect(Boot.swapChoice("LABEL=data", devices: disks)
                == .skip(warning: "/dev/vdc (LABEL=data) holds no swap signature (ext4): not used; mkswap it"))
        #expect(Boot.swapChoice("LABEL=gone", devices: disks)
                == .skip(warning: "this node's swap LABEL=gone (cluster.conf) is not on any disk here: no swap"))
        guard case .skip(let warning) = Boot.swapChoice("vdb", devices: disks) else {
            Issue.record("a spec that does not parse must not be used"); return
        }
        #expect(warning.contains("vdb"))
    }

    @Test func pidRangesAreNodeTimes65536ForNodes1To63() {
        #expect(Boot.pidRangeStart(node: 1) == 65536)
        #expect(Boot.pidRangeStart(node: 63) == 63 * 65536)
        // 64 × 65536 is pid_max (2^22): no room left.
        #expect(Boot.pidRangeStart(node: 64) == nil)
        #expect(Boot.pidRangeStart(node: 0) == nil)
    }
}
