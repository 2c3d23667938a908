import Testing
import SSICore
import SSILinux
import SSIConfig
@testable import SSIBoot

/// Which node this machine is: the network step's decision, without a NIC.
@Suite struct NodeIdentityTests {
    @Test func commandLineNodeWinsOverTheMACs() throws {
        let config = try BootTestConfigs.cfs()
        // The machine has node 1's MAC, but ssi.node=3 says otherwise.
        let links = [try BootTestConfigs.link("eth0", "52:54:00:00:00:01")]
        let (node, found) = try NodeIdentity.identify(config, commandLineNode: 3, links: links)
        #expect(node.number == 3)
        #expect(found == .commandLine(3))
        #expect(found.description == "ssi.node=3")
    }

    @Test func commandLineNodeNotInTheConfigurationNamesTheNodes() throws {
        let config = try BootTestConfigs.cfs()
        let error = #expect(throws: SSIError.self) {
            try NodeIdentity.identify(config, commandLineNode: 7, links: [])
        }
        #expect(error?.step == "network")
        #expect(error?.message == "ssi.node=7 is not in /etc/ssi/cluster.conf (nodes: 1, 2, 3)")
    }

    @Test func anyOfANodesMACsOnAnyInterfaceFindsIt() throws {
        let config = try BootTestConfigs.cfs()
        // Node 2's second MAC, on the second interface; the first has none.
        let links = [try BootTestConfigs.link("eth0", "02:00:00:00:00:99"), try BootTestConfigs.link("eth1", "52:54:00:00:00:22")]
        let (node, found) = try NodeIdentity.identify(config, commandLineNode: nil, links: links)
        #expect(node.number == 2)
        #expect(found == .mac)
        #expect(found.description == "by MAC")
    }

    @Test func noMatchingMACNamesEveryInterfaceSeen() throws {
        let config = try BootTestConfigs.cfs()
        let links = [try BootTestConfigs.link("eth0", "02:00:00:00:00:99"), try BootTestConfigs.link("wlan0", nil)]
        let error = #expect(throws: SSIError.self) {
            try NodeIdentity.identify(config, commandLineNode: nil, links: links)
        }
        #expect(error?.message == "no node in /etc/ssi/cluster.conf has a MAC address of this machine (interfaces: eth0 02:00:00:00:00:99, wlan0 no MAC)")
        #expect(error?.hint == "add this machine's MAC to its [[node]], or boot with ssi.node=N")
    }

    @Test func noInterfacesAtAllSaysNone() throws {
        let config = try BootTestConfigs.cfs()
        let error = #expect(throws: SSIError.self) {
            try NodeIdentity.identify(config, commandLineNode: nil, links: [])
        }
        #expect(error?.message.hasSuffix("(interfaces: none)") == true)
    }

    @Test func missingInterfaceNamesTheNodesMACsOrTheConfiguredName() throws {
        let config = try BootTestConfigs.cfs()
        let node2 = try #require(config.node(number: 2))
        let links = [try BootTestConfigs.link("eth0", "02:00:00:00:00:99")]
        let byMAC = NodeIdentity.noInterface(config, node2, links: links)
        #expect(byMAC.message == "node 2 (node2): no interface 52:54:00:00:00:02 or 52:54:00:00:00:22 on this machine (interfaces: eth0 02:00:00:00:00:99)")
        var named = config
        named.network.interface = "ens3"
        #expect(NodeIdentity.noInterface(named, node2, links: []).message
                == "node 2 (node2): no interface ens3 on this machine (interfaces: none)")
    }

    @Test func upLineSaysNodeHowAndAddress() throws {
        let config = try BootTestConfigs.cfs()
        let node = try #require(config.node(number: 2))
        let identity = NodeIdentity(config: config, node: node, found: .mac, interface: "eth1")
        // VMTests grep "this is node": the line must keep its shape.
        #expect(identity.upLine == "this is node 2 (node2, by MAC); eth1 10.77.0.2/24 up")
    }
}
