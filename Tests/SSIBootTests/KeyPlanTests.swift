import Testing
import SSICore
import SSIConfig
import SSITrust
@testable import SSIBoot

/// The keys part of the membership step: who asks the init node for the
/// cluster key, with which medium and waits, and what stops the boot.
@Suite struct KeyPlanTests {
    let initKey = NodeKey.generate().identity

    func known() -> KnownIdentities {
        var k = KnownIdentities()
        k.set("node1", initKey)
        return k
    }

    func message(_ body: () throws(SSIError) -> KeyPlan) -> String {
        do { return "\(try body())" } catch { return error.description }
    }

    @Test func aServedImageAsksTheInitNodeWithTheMediumAndWaits() throws {
        let config = try BootTestConfigs.cfs("\n[identity]\ndevice = \"/dev/vdb\"\nenroll_wait_seconds = 300\n")
        let node = try #require(config.node(number: 2))
        let plan = try (KeyPlan.decide(config: config, node: node,
                                                   params: BootTestConfigs.params("ssi.enroll"), known: known()))
        #expect(plan.server.number == 1 && plan.serverIdentity == initKey && plan.source == .medium("/dev/vdb"))
        #expect(plan.unreachableSeconds == 120, "[root] wait_seconds of the test config")
        #expect(plan.enrollSeconds == 300 && plan.enroll)
        // The command line wins for the medium and the wait.
        let given = try (KeyPlan.decide(config: config, node: node,
                                                    params: BootTestConfigs.params("ssi.identity=/dev/sdz ssi.root_wait=15"), known: known()))
        #expect(given.source == .medium("/dev/sdz") && given.unreachableSeconds == 15 && !given.enroll)
    }

    @Test func whatStopsTheBootIsNamed() throws {
        let config = try BootTestConfigs.cfs()
        let node2 = try #require(config.node(number: 2)), node1 = try #require(config.node(number: 1))
        // No medium named: the node's TPM; "tpm" names it too.
        let noMedium = try KeyPlan.decide(config: config, node: node2, params: BootParameters(), known: known())
        #expect(noMedium.source == .tpm)
        let named = try KeyPlan.decide(config: BootTestConfigs.cfs("\n[identity]\ndevice = \"/dev/vdb\"\n"), node: node2,
                                       params: BootTestConfigs.params("ssi.identity=tpm"), known: known())
        #expect(named.source == .tpm)
        let noServerIdentity = message { () throws(SSIError) in
            try KeyPlan.decide(config: config, node: node2, params: BootParameters(), known: KnownIdentities())
        }
        #expect(noServerIdentity.contains("does not know the init node node1's identity"), "\(noServerIdentity)")
        let initNode = message { () throws(SSIError) in
            try KeyPlan.decide(config: config, node: node1, params: BootParameters(), known: known())
        }
        #expect(initNode.contains("only a CFS cluster's init node gives the key"), "\(initNode)")
        let gfs2 = try BootTestConfigs.gfs2()
        let g1 = try #require(gfs2.nodes.first)
        let gfs2Message = message { () throws(SSIError) in
            try KeyPlan.decide(config: gfs2, node: g1, params: BootParameters(), known: known())
        }
        #expect(gfs2Message.contains("without --netboot"), "\(gfs2Message)")
    }

    @Test func theSealedKeysPathAndTheNodesKeySource() throws {
        let gfs2 = try BootTestConfigs.gfs2("\n[identity]\nsealed = \"/etc/ssi/keys.sealed\"\n")
        #expect(gfs2.identity.sealed == "/etc/ssi/keys.sealed")
        #expect(try BootTestConfigs.gfs2().identity.sealed == "/etc/ssi/sealed-keys", "the default")
        do {
            _ = try BootTestConfigs.gfs2("\n[identity]\nsealed = \"keys\"\n")
            Issue.record("a relative path is refused")
        } catch {
            #expect("\(error)".contains("identity.sealed"), "\(error)")
        }
        // A disk node opens its line with the same key a served one
        // proves itself with: command line, its own line, [identity], TPM.
        let g1 = try #require(gfs2.nodes.first)
        #expect(try KeyPlan.source(config: gfs2, node: g1, params: BootParameters()) == .tpm)
        #expect(try KeyPlan.source(config: gfs2, node: g1, params: BootTestConfigs.params("ssi.identity=/dev/vdc")) == .medium("/dev/vdc"))
    }

    @Test func onlyAnEnrollingNodeWaitsForTheAdministrator() {
        #expect(KeyPlan.waits(after: .unknownIdentity, enroll: true))
        #expect(KeyPlan.waits(after: .identityChanged, enroll: true))
        #expect(!KeyPlan.waits(after: .unknownIdentity, enroll: false))
        #expect(!KeyPlan.waits(after: .notANode, enroll: true))
        #expect(!KeyPlan.waits(after: .badProof, enroll: true))
    }

    @Test func commandLine() throws {
        let p = try BootTestConfigs.params("ssi.identity=/dev/vdb ssi.enroll")
        #expect(p.identityDevice == "/dev/vdb" && p.enroll)
        #expect(p.explanation.contains("identity: /dev/vdb") && p.explanation.contains("enrollment mode"))
        #expect(try BootTestConfigs.params("ssi.identity=tpm").identityDevice == "tpm")
        do {
            _ = try BootTestConfigs.params("ssi.identity=vdb")
            Issue.record("a relative medium path is refused")
        } catch {
            #expect("\(error)".contains("ssi.identity=vdb must be \"tpm\" or an absolute path"))
        }
    }

    @Test("a disk node's key (to open its sealed key, or for the tunnel): ssi.identity=, else the image's key file, else the node's identity, else [identity] device, else the TPM")
    func diskNodeKeySource() throws {
        let config = try BootTestConfigs.cfs("\n[identity]\ndevice = \"/dev/vdb\"\nkey = \"/etc/ssi/node.key\"\n")
        let node = try #require(config.node(number: 2))
        func source(_ node: ClusterConfig.Node, _ params: BootParameters = BootParameters(), keyFile: Bool,
                    in config: ClusterConfig) throws -> KeySource {
            try KeyPlan.diskNodeSource(config: config, node: node, params: params, imageHasKeyFile: keyFile)
        }
        #expect(try source(node, try BootTestConfigs.params("ssi.identity=/dev/sdz"), keyFile: true, in: config) == .medium("/dev/sdz"))
        #expect(try source(node, keyFile: true, in: config) == .medium("/etc/ssi/node.key"))
        #expect(try source(node, keyFile: false, in: config) == .medium("/dev/vdb"))
        var tpmNode = node
        tpmNode.identity = "tpm"
        #expect(try source(tpmNode, keyFile: false, in: config) == .tpm)
        // Nothing named: the TPM, the default for every node.
        #expect(try source(node, keyFile: false, in: try BootTestConfigs.cfs()) == .tpm)
    }

    @Test func aNodesOwnIdentityLineComesBetweenTheCommandLineAndTheSection() throws {
        var config = try BootTestConfigs.cfs("\n[identity]\ndevice = \"/dev/vdb\"\n")
        let index = try #require(config.nodes.firstIndex { $0.number == 2 })
        config.nodes[index].identity = "tpm"
        let node2 = config.nodes[index], node3 = try #require(config.node(number: 3))
        #expect(try KeyPlan.decide(config: config, node: node2, params: BootParameters(), known: known()).source == .tpm)
        #expect(try KeyPlan.decide(config: config, node: node3, params: BootParameters(), known: known()).source == .medium("/dev/vdb"))
        let given = try KeyPlan.decide(config: config, node: node2, params: BootTestConfigs.params("ssi.identity=/dev/sdz"), known: known())
        #expect(given.source == .medium("/dev/sdz"))
    }
}
