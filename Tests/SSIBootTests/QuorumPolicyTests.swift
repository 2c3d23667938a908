import Testing
import SSICore
import SSIConfig
@testable import SSIBoot

/// What the membership step does when its wait for quorum ends without
/// quorum, and how long it waits: decided without corosync.
@Suite struct QuorumPolicyTests {
    func timeout(_ config: ClusterConfig, node number: Int, members: [UInt32]) throws -> QuorumPolicy.Timeout {
        let node = try #require(config.node(number: number))
        return QuorumPolicy.onTimeout(config, node: node, waited: 60, seen: "members: seen", members: members)
    }

    @Test("a member this image's configuration lacks: the image is stale; on GFS2 the boot stops (dlm would never reach it), named with the fix")
    func membersUnknownToTheImage() throws {
        #expect(QuorumPolicy.strangers(try BootTestConfigs.gfs2(), members: [1, 2, 3]) == nil)
        let stale = try #require(QuorumPolicy.strangers(try BootTestConfigs.gfs2(), members: [1, 2, 3, 4]))
        #expect(stale.step == "membership")
        #expect(stale.message == "node 4 is a member of the cluster but not in this image's configuration (nodes 1, 2, 3): the image is older than "
                + "the configuration the cluster runs; dlm cannot reach it, and the root's mount would wait for it forever", "\(stale.message)")
        #expect((stale.hint ?? "").contains("ssi-mkinitrd -u"))
        let cfs = try #require(QuorumPolicy.strangers(try BootTestConfigs.cfs(), members: [1, 5, 7]))
        #expect(cfs.message.hasPrefix("node 5, node 7 are members of the cluster but not in this image's configuration")
                && cfs.message.hasSuffix("its name and address are unknown here"), "\(cfs.message)")
    }

    @Test func cfsInitNodeGoesOnWithoutQuorumAndSaysWhy() throws {
        guard case .goOn(let warning) = try timeout(try BootTestConfigs.cfs(), node: 1, members: [1]) else {
            Issue.record("the CFS init node must go on: the others need its root"); return
        }
        // It serves the root itself: nothing to say about the init node.
        #expect(warning == "no quorum after 60 s (members: seen); going on without quorum (on_timeout = continue for node1)")
    }

    @Test func cfsClientStopsNamingTheMissingInitNode() throws {
        guard case .stop(let error) = try timeout(try BootTestConfigs.cfs(), node: 2, members: [2, 3]) else {
            Issue.record("a CFS client without quorum must stop"); return
        }
        #expect(error.step == "membership")
        #expect(error.message == "no quorum after 60 s (members: seen); the init node node1 (10.77.0.1), which serves this node's root, is not among them")
        #expect(error.hint?.hasSuffix("ssi.quorum_wait=N waits longer") == true)
    }

    @Test func cfsClientThatSeesTheInitNodeDoesNotBlameIt() throws {
        guard case .stop(let error) = try timeout(try BootTestConfigs.cfs(), node: 2, members: [1, 2]) else {
            Issue.record("a CFS client without quorum must stop"); return
        }
        #expect(error.message == "no quorum after 60 s (members: seen)")
    }

    @Test func quorumTableOnTimeoutOverridesTheRootDefault() throws {
        let config = try BootTestConfigs.cfs("\n[quorum]\non_timeout = \"stop\"\n")
        guard case .stop = try timeout(config, node: 1, members: [1]) else {
            Issue.record("[quorum] on_timeout = stop must stop the init node too"); return
        }
    }

    @Test func nodeOnTimeoutOverridesTheQuorumTable() throws {
        // Appended after the last [[node]]: node 3's own on_timeout.
        let config = try BootTestConfigs.cfs("on_timeout = \"continue\"\n")
        guard case .goOn(let warning) = try timeout(config, node: 3, members: [3]) else {
            Issue.record("node 3's own on_timeout = continue must let it go on"); return
        }
        #expect(warning.hasSuffix("going on without quorum (on_timeout = continue for node3)"))
        guard case .stop = try timeout(config, node: 2, members: [2]) else {
            Issue.record("node 2 keeps the default, stop"); return
        }
    }

    @Test func gfs2NodesAlwaysStop() throws {
        // GFS2 before quorum would mount a disk no one can fence for; the
        // configuration refuses on_timeout = continue for it.
        let config = try BootTestConfigs.gfs2()
        for number in [1, 2, 3] {
            guard case .stop(let error) = try timeout(config, node: number, members: [UInt32(number)]) else {
                Issue.record("gfs2 node \(number) went on without quorum"); return
            }
            // No CFS server on a gfs2 root: nothing about an init node.
            #expect(error.message == "no quorum after 60 s (members: seen)")
        }
    }

    @Test func waitIsTheCommandLinesThenTheConfigurations() throws {
        let config = try BootTestConfigs.cfs()
        let client = try #require(config.node(number: 2))
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params(""), config, node: client) == ClusterConfig.Quorum.defaultBootWaitSeconds)
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params("ssi.quorum_wait=5"), config, node: client) == 5)
        let configured = try BootTestConfigs.cfs("\n[quorum]\nboot_wait_seconds = 90\n")
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params(""), configured, node: client) == 90)
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params("ssi.quorum_wait=0"), configured, node: client) == 0)
    }

    @Test func cfsInitNodeOfDisklessNodesWaitsOnlyForRunningOnesToRejoin() throws {
        let config = try BootTestConfigs.cfs()
        let server = try #require(config.node(number: 1))
        #expect(config.nodes.filter { $0.number != 1 }.allSatisfy { $0.role == .diskless }, "the test configuration's others are diskless")
        #expect(QuorumPolicy.isColdStartServer(config, node: server))
        // Two 3 s token timeouts and 5 s, not the 60 s boot wait.
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params(""), config, node: server) == 11)
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params("ssi.quorum_wait=40"), config, node: server) == 40, "the command line wins")
        guard case .serve(let note) = QuorumPolicy.onTimeout(config, node: server, waited: 11, seen: "members: node1", members: [1],
                                                              coldStart: true) else {
            Issue.record("a cold start is said as information"); return
        }
        #expect(note.hasPrefix("no quorum after 11 s (members: node1); the other nodes are diskless and boot from this node's root"))
        // A member with a disk of its own may come up first: the whole wait.
        let withMember = try BootTestConfigs.cfs().replacingRole(of: 3, with: .member)
        #expect(!QuorumPolicy.isColdStartServer(withMember, node: server))
        #expect(QuorumPolicy.waitSeconds(try BootTestConfigs.params(""), withMember, node: server) == 60)
        // Told to stop without quorum: no shortcut.
        let stops = try BootTestConfigs.cfs("\n[quorum]\non_timeout = \"stop\"\n")
        #expect(!QuorumPolicy.isColdStartServer(stops, node: server))
        // Not the server: never.
        #expect(!QuorumPolicy.isColdStartServer(config, node: try #require(config.node(number: 2))))
    }

    @Test func onlyAGFS2RootPreparesTheKernelDLM() throws {
        #expect(QuorumPolicy.needsDLMKernel(try BootTestConfigs.gfs2()))
        #expect(!QuorumPolicy.needsDLMKernel(try BootTestConfigs.cfs()))
    }

    @Test func memberNamesByNumber() throws {
        #expect(QuorumPolicy.names(try BootTestConfigs.cfs()) == [1: "node1", 2: "node2", 3: "node3"])
    }
}

extension ClusterConfig {
    func replacingRole(of number: Int, with role: Role) -> ClusterConfig {
        var c = self
        c.nodes = nodes.map { n in var n = n; if n.number == number { n.role = role }; return n }
        return c
    }
}
