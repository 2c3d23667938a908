import Foundation
import Testing
@testable import SSIConfig
import SSICore

@Suite struct ConfigModelTests {
    @Test func cfsBaseAndItsDefaults() throws {
        let c = try valid(baseCFS)
        #expect(c.cluster.name == "ssi")
        #expect(c.cluster.authkey == "/etc/ssi/authkey")
        #expect(c.cluster.cryptoCipher == .aes256)
        #expect(c.cluster.cryptoHash == .sha256)
        #expect(c.cluster.tokenTimeoutMs == 3000)
        #expect(c.network.prefix.description == "10.77.0.0/24")
        #expect(c.network.gateway == nil)
        #expect(c.quorum.expectedVotes == 3)
        #expect(c.quorum.quorumVotes == 2)
        #expect(c.quorum.waitForAll == false)
        #expect(c.quorum.twoNode == false)
        #expect(c.quorum.bootWaitSeconds == 60)
        #expect(c.root == .cfs(.init(server: 1, export: "/", device: nil, options: nil)))
        #expect(c.nodes.map(\.number) == [1, 2, 3])
        #expect(c.nodes.map(\.role) == [.initNode, .diskless, .diskless])
        #expect(c.nodes.allSatisfy { $0.votes == 1 })
        // CFS: the init node comes up alone, the others stop.
        #expect(c.onTimeout(for: c.nodes[0]) == .continue)
        #expect(c.onTimeout(for: c.nodes[1]) == .stop)
        #expect(c.summary == "3 nodes, root cfs from node 1 (node1), export /")
    }

    @Test func gfs2Defaults() throws {
        let c = try valid(baseGFS2)
        #expect(c.quorum.waitForAll == true)
        #expect(c.nodes.allSatisfy { c.onTimeout(for: $0) == .stop })
        #expect(c.nodes.map(\.name) == ["node1", "node2", "node3"])
        #expect(c.nodes.allSatisfy { $0.role == .member })
        #expect(c.root == .gfs2(.init(device: "LABEL=ssi:root", lockTable: "ssi:root", options: nil)))
        #expect(c.initNode == nil)
    }

    @Test func cfsServerDefaultsToTheInitNode() throws {
        let c = try valid(replacing("server = 1\n", with: "", in: baseCFS))
        guard case .cfs(let cfs) = c.root else { Issue.record("not cfs"); return }
        #expect(cfs.server == 1)
    }

    @Test func explicitSettingsWin() throws {
        let text = replacing("[root]", with: """
            [quorum]
            expected_votes = 3
            wait_for_all = true
            boot_wait_seconds = 5
            on_timeout = "stop"

            [root]
            """, in: replacing("prefix = \"10.77.0.0/24\"", with: """
            prefix = "10.77.0.0/24"
            gateway = "10.77.0.254"
            interface = "eth1"
            """, in: baseCFS))
        let c = try valid(text)
        #expect(c.quorum.waitForAll)
        #expect(c.quorum.bootWaitSeconds == 5)
        #expect(c.onTimeout(for: c.nodes[0]) == .stop)
        #expect(c.network.gateway?.description == "10.77.0.254")
        #expect(c.network.interface == "eth1")
    }

    @Test func perNodeOnTimeoutOverridesQuorum() throws {
        let text = replacing("role = \"diskless\"", with: "role = \"diskless\"\non_timeout = \"continue\"", in: baseCFS)
        let c = try valid(text)
        #expect(c.onTimeout(for: c.nodes[1]) == .continue)
        #expect(c.onTimeout(for: c.nodes[2]) == .stop)
    }

    @Test func macsAreNormalizedAndLookedUp() throws {
        let text = replacing("mac = \"52:54:00:00:00:02\"", with: "mac = [\"52-54-00-00-00-02\", \"52:54:00:AA:BB:CC\"]", in: baseCFS)
        let c = try valid(text)
        #expect(c.nodes[1].macs.map(\.description) == ["52:54:00:00:00:02", "52:54:00:aa:bb:cc"])
        #expect(c.nodeForMAC("52:54:00:aa:bb:cc")?.number == 2)
        #expect(c.nodeForMAC("52:54:00:AA:BB:CC")?.number == 2)
        #expect(c.nodeForMAC("52:54:00:00:00:03")?.name == "node3")
        #expect(c.nodeForMAC("52:54:00:00:00:09") == nil)
        #expect(c.nodeForMAC("garbage") == nil)
        #expect(try c.nodeForAnyMAC([MACAddress(parsing: "00:11:22:33:44:55"), MACAddress(parsing: "52:54:00:00:00:01")])?.number == 1)
        #expect(c.node(number: 3)?.address.description == "10.77.0.3")
        #expect(c.node(number: 4) == nil)
        #expect(c.node(named: "NODE2")?.number == 2)
    }

    @Test func optionalNodeFields() throws {
        let text = replacing("role = \"init\"", with: """
            role = "init"
            votes = 2
            swap = "PARTLABEL=swap1"
            private = ["/var", "/tmp"]
            """, in: baseCFS)
        let c = try valid(text)
        #expect(c.nodes[0].votes == 2)
        #expect(c.nodes[0].swap == "PARTLABEL=swap1")
        #expect(c.nodes[0].privatePaths == ["/var", "/tmp"])
        #expect(c.quorum.expectedVotes == 4)
        #expect(c.nodes[0].line == 11)
    }

    @Test func twoNodeCluster() throws {
        var text = String(baseGFS2[..<baseGFS2.range(of: "[[node]]\nnumber = 3")!.lowerBound])
        text = replacing("[root]", with: "[quorum]\ntwo_node = true\n\n[root]", in: text)
        let c = try valid(text)
        #expect(c.quorum.twoNode)
        #expect(c.quorum.waitForAll, "two_node turns wait_for_all on")
        #expect(c.quorum.expectedVotes == 2)
    }

    @Test func loadReadsAFileAndNamesIt() throws {
        let dir = try TempDir()
        let path = dir.path + "/cluster.conf"
        try baseCFS.write(toFile: path, atomically: true, encoding: .utf8)
        let c = try ClusterConfig.load(path: path)
        #expect(c.file == path)
        #expect(c.nodes.count == 3)

        try replacing("address = \"10.77.0.2\"", with: "address = \"10.78.0.2\"", in: baseCFS)
            .write(toFile: path, atomically: true, encoding: .utf8)
        let e = #expect(throws: SSIError.self) { try ClusterConfig.load(path: path) }
        #expect(e?.step == "config")
        #expect(e?.message.hasPrefix("\(path):\(line(of: "10.78.0.2", in: replacing("address = \"10.77.0.2\"", with: "address = \"10.78.0.2\"", in: baseCFS))): node.address: ") == true, "\(e?.message ?? "")")

        let missing = #expect(throws: SSIError.self) { try ClusterConfig.load(path: dir.path + "/none.conf") }
        #expect(missing?.description.contains("No such file") == true)
    }

    @Test func invalidUTF8NamesTheLine() throws {
        let dir = try TempDir()
        let path = dir.path + "/bad.conf"
        var bytes = Array("[cluster]\nname = \"".utf8) + [0xff, 0xfe] + Array("\"\n".utf8)
        bytes += []
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: SSIError.self) { try ClusterConfig.load(path: path) }
        #expect(e?.message.contains("line 2 is not UTF-8") == true, "\(e?.message ?? "")")
    }
}

@Suite struct ConfigValidationTests {
    // MARK: structure and types

    @Test func unknownKeySuggestsTheClosest() {
        let text = replacing("name = \"node2\"", with: "name = \"node2\"\nadress = \"x\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "adress", in: text), field: "node.adress", "unknown key", "did you mean address?")
    }

    @Test func keyInTheWrongSectionSaysWhereItBelongs() {
        let text = replacing("name = \"ssi\"", with: "name = \"ssi\"\nwait_for_all = true", in: baseCFS)
        expectOneProblem(text, line: 3, field: "cluster.wait_for_all", "unknown key in [cluster]", "belongs in [quorum]")
    }

    @Test func unknownSectionSuggestsTheClosest() {
        let text = baseCFS + "\n[[nodes]]\nnumber = 4\n"
        expectOneProblem(text, line: line(of: "[[nodes]]", in: text), field: "nodes", "unknown section", "did you mean [[node]]?")
        let t2 = replacing("[network]", with: "[netwrok]", in: baseCFS)
        let ps = problems(t2)
        #expect(ps.contains { $0.field == "netwrok" && $0.description.contains("did you mean [network]?") })
        #expect(ps.contains { $0.field == "network" && $0.line == 0 && $0.message.contains("missing [network]") })
    }

    @Test func keyBeforeAnySection() {
        let text = "name = \"ssi\"\n" + baseCFS
        let ps = problems(text)
        #expect(ps.first?.description == "test.conf:1: name: a key outside any section; name belongs in [cluster]")
    }

    @Test func aBadGatewayDoesNotHideAddressChecks() {
        var text = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\ngateway = \"10.77.0.0\"", in: baseCFS)
        text = replacing("address = \"10.77.0.3\"", with: "address = \"10.7.0.3\"", in: text)
        let ps = problems(text)
        #expect(ps.map(\.field) == ["network.gateway", "node.address"], "\(ps)")
    }

    @Test("[network] mtu: unset keeps the link's; 9000 taken; out of range or quoted named with its line; the tunnel's is 80 less")
    func networkMTU() throws {
        #expect(try valid(baseCFS).network.mtu == nil)
        let jumbo = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\nmtu = 9000", in: baseCFS)
        #expect(try valid(jumbo).network.mtu == 9000)
        let small = replacing("mtu = 9000", with: "mtu = 576", in: jumbo)
        expectOneProblem(small, line: line(of: "mtu = 576", in: small), field: "network.mtu", "576 is out of range 1280...65535")
        let quoted = replacing("mtu = 9000", with: "mtu = \"9000\"", in: jumbo)
        expectOneProblem(quoted, line: line(of: "mtu = \"9000\"", in: quoted), field: "network.mtu", "must be an integer, not a string", "drop the quotes")
        #expect(ClusterConfig.Tunnel.mtu(onLink: 1500) == 1420)
        #expect(ClusterConfig.Tunnel.mtu(onLink: 9000) == 8920)
        #expect(ClusterConfig.Tunnel.mtu(onLink: 600) == 576)
    }

    @Test func wrongTypes() {
        var text = replacing("number = 2", with: "number = \"2\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "number = \"2\"", in: text), field: "node.number", "must be an integer, not a string", "drop the quotes")
        text = replacing("name = \"ssi\"", with: "name = 7", in: baseCFS)
        expectOneProblem(text, line: 2, field: "cluster.name", "must be a string, not an integer", "quote it")
        text = replacing("[root]", with: "[quorum]\nwait_for_all = 1\n\n[root]", in: baseCFS)
        expectOneProblem(text, line: line(of: "wait_for_all", in: text), field: "quorum.wait_for_all", "must be true or false", "write wait_for_all = true")
        text = replacing("mac = \"52:54:00:00:00:02\"", with: "mac = [\"52:54:00:00:00:02\", 5]", in: baseCFS)
        expectOneProblem(text, line: line(of: "mac = [", in: text), field: "node.mac", "array of strings")
    }

    @Test func theKeyMediumIsTheTPMOrAPath() throws {
        // Unset: the TPM (ssi-init's default). "tpm" says so; a path names a medium.
        #expect(try valid(baseCFS).identity.device == nil)
        let tpm = baseCFS + "\n[identity]\ndevice = \"tpm\"\n"
        #expect(try valid(tpm).identity.device == "tpm")
        let text = baseCFS + "\n[identity]\ndevice = \"usbstick\"\n"
        expectOneProblem(text, line: line(of: "usbstick", in: text), field: "identity.device", "or \"tpm\"")
        // A node's own line: "tpm" or a path, over [identity] device.
        let own = replacing("name = \"node2\"", with: "name = \"node2\"\nidentity = \"tpm\"", in: baseCFS)
        #expect(try valid(own).node(number: 2)?.identity == "tpm")
        let bad = replacing("name = \"node2\"", with: "name = \"node2\"\nidentity = \"vdb\"", in: baseCFS)
        expectOneProblem(bad, line: line(of: "identity = \"vdb\"", in: bad), field: "node.identity", "or \"tpm\"")
        // The other paths stay paths.
        let known = baseCFS + "\n[identity]\nknown = \"tpm\"\n"
        #expect(!problems(known).isEmpty)
    }

    @Test func singleNodeTableInsteadOfArray() {
        let text = """
            [cluster]
            name = "ssi"
            [network]
            prefix = "10.77.0.0/24"
            [root]
            type = "gfs2"
            device = "LABEL=x"
            lock_table = "ssi:x"
            [fence]
            agent = "/usr/sbin/fence_ssi"
            [node]
            number = 1
            address = "10.77.0.1"
            """
        expectOneProblem(text, line: 11, field: "node", "[node] is a single table", "write [[node]]")
    }

    @Test func missingSectionsAndKeys() {
        let ps = problems("")
        #expect(Set(ps.map(\.field)) == ["cluster", "network", "root", "node"])
        #expect(ps.allSatisfy { $0.line == 0 && $0.description.hasPrefix("test.conf: ") })

        var text = replacing("address = \"10.77.0.3\"\n", with: "", in: baseCFS)
        expectOneProblem(text, line: line(of: "number = 3", in: text) - 1, field: "node.address", "missing")
        text = replacing("number = 2\n", with: "", in: baseCFS)
        expectOneProblem(text, line: line(of: "[[node]]", in: text, occurrence: 2), field: "node.number", "missing")
        text = replacing("name = \"ssi\"\n", with: "", in: baseCFS)
        expectOneProblem(text, line: 1, field: "cluster.name", "missing")
    }

    @Test func syntaxErrorsAreAllReportedWithLines() {
        let text = replacing("address = \"10.77.0.2\"", with: "address = 10.77.0.2", in:
                    replacing("mac = \"52:54:00:00:00:01\"", with: "mac = 52:54:00:00:00:01", in: baseCFS))
        let ps = problems(text)
        #expect(ps.map(\.line) == [line(of: "mac = 52", in: text), line(of: "address = 10", in: text)])
        #expect(ps.allSatisfy { $0.field.isEmpty && $0.description.contains("strings need quotes") })
    }

    // MARK: cluster

    @Test(arguments: [
        ("\"\"", "empty"),
        ("\"a-cluster-name-of-more-than-32-chars\"", "at most 32"),
        ("\"my cluster\"", "contains \" \""),
        ("\"ssi.test\"", "contains \".\""),
    ])
    func badClusterName(value: String, expected: String) {
        let text = replacing("name = \"ssi\"", with: "name = \(value)", in: baseCFS)
        expectOneProblem(text, line: 2, field: "cluster.name", expected)
    }

    @Test func crypto() {
        var text = replacing("name = \"ssi\"", with: "name = \"ssi\"\ncrypto_cipher = \"aes265\"", in: baseCFS)
        expectOneProblem(text, line: 3, field: "cluster.crypto_cipher", "\"aes265\" is not one of", "did you mean \"aes256\"?")
        text = replacing("name = \"ssi\"", with: "name = \"ssi\"\ncrypto_hash = \"none\"", in: baseCFS)
        expectOneProblem(text, line: 1, field: "cluster.crypto_cipher", "needs a crypto_hash")
        text = replacing("name = \"ssi\"", with: "name = \"ssi\"\ncrypto_cipher = \"none\"\ncrypto_hash = \"none\"", in: baseCFS)
        #expect(problems(text).isEmpty)
        text = replacing("name = \"ssi\"", with: "name = \"ssi\"\nauthkey = \"authkey\"", in: baseCFS)
        expectOneProblem(text, line: 3, field: "cluster.authkey", "not an absolute path")
        text = replacing("name = \"ssi\"", with: "name = \"ssi\"\ntoken_timeout_ms = 10", in: baseCFS)
        expectOneProblem(text, line: 3, field: "cluster.token_timeout_ms", "out of range")
    }

    // MARK: network

    @Test(arguments: [
        ("\"10.77.0.0\"", "invalid IPv4 network \"10.77.0.0\": no prefix length (write it as 10.77.0.0/24)"),
        ("\"10.77.0.1/24\"", "invalid IPv4 network \"10.77.0.1/24\": host bits are set: the network is 10.77.0.0/24"),
        ("\"10.77.0.0/33\"", "prefix length \"33\" is not a number between 0 and 32"),
        ("\"10.77.0.0/31\"", "/8 and /30"),
        ("\"10.256.0.0/16\"", "invalid IPv4 network \"10.256.0.0/16\": 256 is more than 255"),
        ("\"010.77.0.0/24\"", "\"010\" has a leading zero (octal is not accepted)"),
        ("\"fd00::/64\"", "; IPv6 is not supported"),
    ])
    func badPrefix(value: String, expected: String) {
        let text = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \(value)", in: baseCFS)
        let ps = problems(text)
        #expect(ps.first?.line == 5)
        #expect(ps.first?.field == "network.prefix")
        #expect(ps.first?.description.contains(expected) == true, "\(ps)")
    }

    @Test func gatewayAndInterface() {
        var text = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\ngateway = \"10.78.0.1\"", in: baseCFS)
        expectOneProblem(text, line: 6, field: "network.gateway", "not in network.prefix 10.77.0.0/24 (line 5)")
        text = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\ngateway = \"10.77.0.1\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "address = \"10.77.0.1\"", in: text), field: "node.address", "also network.gateway (line 6)")
        text = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\ninterface = \"a-very-long-interface\"", in: baseCFS)
        expectOneProblem(text, line: 6, field: "network.interface", "15 bytes")
    }

    // MARK: nodes

    @Test func duplicateNodeNumber() {
        let text = replacing("number = 3", with: "number = 2", in: baseCFS)
        expectOneProblem(text, line: line(of: "number = 2", in: text, occurrence: 2), field: "node.number",
                         "node number 2 is used twice", "node 2 (node2, line 18)")
    }

    @Test func macOnTwoNodesNamesBothNodesAndTheOtherLine() {
        let text = replacing("mac = \"52:54:00:00:00:03\"", with: "mac = \"52:54:00:00:00:01\"", in: baseCFS)
        let first = line(of: "52:54:00:00:00:01", in: text)
        expectOneProblem(text, line: line(of: "52:54:00:00:00:01", in: text, occurrence: 2), field: "node.mac",
                         "52:54:00:00:00:01 is on two nodes", "node 3 (node3)", "node 1 (node1, line \(first))")
    }

    @Test func macCompareIsCaseInsensitive() {
        let text = replacing("mac = \"52:54:00:00:00:03\"", with: "mac = [\"52:54:00:00:00:33\", \"52:54:00:00:00:0A\"]",
                             in: replacing("mac = \"52:54:00:00:00:01\"", with: "mac = \"52-54-00-00-00-0a\"", in: baseCFS))
        #expect(problems(text).count == 1)
        #expect(problems(text).first?.field == "node.mac")
    }

    @Test func duplicateNameAndAddress() {
        var text = replacing("name = \"node3\"", with: "name = \"Node1\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "Node1", in: text), field: "node.name", "Node1 is also the name of node 1 (node1, line 11)")
        text = replacing("address = \"10.77.0.3\"", with: "address = \"10.77.0.2\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "10.77.0.2", in: text, occurrence: 2), field: "node.address", "10.77.0.2 is also the address of node 2")
    }

    @Test func addressOutsideTheNetwork() {
        var text = replacing("address = \"10.77.0.3\"", with: "address = \"10.77.1.3\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "10.77.1.3", in: text), field: "node.address",
                         "10.77.1.3 is outside the cluster network 10.77.0.0/24 (network.prefix, line 5)")
        text = replacing("address = \"10.77.0.3\"", with: "address = \"10.77.0.255\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "10.77.0.255", in: text), field: "node.address", "broadcast address")
        text = replacing("address = \"10.77.0.3\"", with: "address = \"10.77.0.0\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "\"10.77.0.0\"", in: text), field: "node.address", "network address")
        text = replacing("address = \"10.77.0.3\"", with: "address = \"fd00::3\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "fd00::3", in: text), field: "node.address",
                         "invalid IPv4 address \"fd00::3\": expected four numbers separated by dots, found 1 part; IPv6 is not supported")
    }

    @Test(arguments: [
        ("\"52:54:00:00:00\"", "invalid MAC address \"52:54:00:00:00\": expected six hexadecimal pairs"),
        ("\"52:54:00:00:00:0g\"", "\"0g\" is not a hexadecimal byte"),
        ("\"52:54:00:00:00:2\"", "\"2\" is not two hexadecimal digits"),
        ("\"01:00:5e:00:00:01\"", "multicast"),
        ("\"00:00:00:00:00:00\"", "null"),
        ("[]", "an empty list"),
        ("[\"52:54:00:00:00:02\", \"52:54:00:00:00:02\"]", "listed twice for this node"),
    ])
    func badMAC(value: String, expected: String) {
        let text = replacing("mac = \"52:54:00:00:00:02\"", with: "mac = \(value)", in: baseCFS)
        expectOneProblem(text, line: line(of: "mac = \(value)", in: text), field: "node.mac", expected)
    }

    @Test(arguments: [
        ("\"-node\"", "starts or ends with -"),
        ("\"node_1\"", "contains \"_\""),
        ("\"node.example.com\"", "has a dot"),
    ])
    func badNodeName(value: String, expected: String) {
        let text = replacing("name = \"node2\"", with: "name = \(value)", in: baseCFS)
        expectOneProblem(text, line: line(of: "name = \(value)", in: text), field: "node.name", expected)
    }

    @Test func badNodeFields() {
        var text = replacing("number = 2", with: "number = 0", in: baseCFS)
        expectOneProblem(text, line: line(of: "number = 0", in: text), field: "node.number", "out of range 1...2147483647")
        text = replacing("role = \"diskless\"", with: "role = \"disk-less\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "disk-less", in: text), field: "node.role", "did you mean \"diskless\"?")
        text = replacing("role = \"diskless\"", with: "role = \"diskless\"\nswap = \"sda2\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "swap", in: text), field: "node.swap", "not a device")
        text = replacing("role = \"diskless\"", with: "role = \"diskless\"\nswap = \"uuid=abc\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "swap", in: text), field: "node.swap", "in capitals, UUID=abc")
        text = replacing("role = \"diskless\"", with: "role = \"diskless\"\nprivate = [\"/var\", \"tmp\", \"/\", \"/var\", \"/a/../b\"]", in: baseCFS)
        let ps = problems(text)
        #expect(ps.map(\.field) == ["node.private", "node.private", "node.private", "node.private"])
        #expect(ps.map(\.line) == Array(repeating: line(of: "private", in: text), count: 4))
    }

    @Test func nodeWithoutMACNeedsAnInterface() {
        let text = replacing("mac = \"52:54:00:00:00:03\"\n", with: "", in: baseCFS)
        expectOneProblem(text, line: line(of: "[[node]]", in: text, occurrence: 3), field: "node.mac", "no mac and [network] names no interface")
        let ok = replacing("prefix = \"10.77.0.0/24\"", with: "prefix = \"10.77.0.0/24\"\ninterface = \"eth0\"", in: text)
        #expect(problems(ok).isEmpty)
    }

    @Test func everyProblemIsReportedInLineOrder() {
        var text = replacing("number = 3", with: "number = 2", in: baseCFS)
        text = replacing("address = \"10.77.0.1\"", with: "address = \"10.99.0.1\"", in: text)
        text = replacing("name = \"ssi\"", with: "name = \"s s\"", in: text)
        text = replacing("role = \"diskless\"", with: "role = \"boss\"", in: text)
        let ps = problems(text)
        #expect(ps.count == 4, "\(ps.map(\.description))")
        #expect(ps.map(\.line) == ps.map(\.line).sorted())
        #expect(Set(ps.map(\.field)) == ["cluster.name", "node.address", "node.role", "node.number"])
        let e = #expect(throws: SSIError.self) { try ClusterConfig.parse(text: text, file: "test.conf") }
        #expect(e?.messageLines.count == 4)
        #expect(e?.messageLines == ps.map(\.description))
    }

    // MARK: root

    @Test func cfsNeedsAnInitNode() {
        let text = replacing("role = \"init\"", with: "role = \"member\"", in: baseCFS)
        expectOneProblem(text, line: 8, field: "root.type", "needs one node with role = \"init\"", "set role = \"init\" on node 1")
    }

    @Test func cfsServerMustBeTheInitNode() {
        var text = replacing("server = 1", with: "server = 2", in: baseCFS)
        expectOneProblem(text, line: 9, field: "root.server", "node 2 (node2) is not the init node", "set server = 1 (the init node, node1)")
        text = replacing("server = 1", with: "server = 7", in: baseCFS)
        expectOneProblem(text, line: 9, field: "root.server", "no node has number 7")
    }

    @Test func cfsHasExactlyOneInitNode() {
        let text = replacing("role = \"diskless\"", with: "role = \"init\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "role = \"init\"", in: text, occurrence: 2), field: "node.role",
                         "node 2 (node2) is a second init node", "node 1 (node1, line 11)")
    }

    @Test func gfs2AllowsAtMostOneInitNode() {
        var text = replacing("address = \"10.77.0.1\"", with: "address = \"10.77.0.1\"\nrole = \"init\"", in: baseGFS2)
        #expect(problems(text).isEmpty)
        text = replacing("address = \"10.77.0.2\"", with: "address = \"10.77.0.2\"\nrole = \"init\"", in: text)
        expectOneProblem(text, line: line(of: "role = \"init\"", in: text, occurrence: 2), field: "node.role", "at most one")
    }

    @Test func lockTableMustNameTheCluster() {
        var text = replacing("lock_table = \"ssi:root\"", with: "lock_table = \"other:root\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "lock_table", in: text), field: "root.lock_table",
                         "cluster \"other\" is not the cluster name \"ssi\"", "lock_table = \"ssi:root\"")
        text = replacing("lock_table = \"ssi:root\"", with: "lock_table = \"ssiroot\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "lock_table", in: text), field: "root.lock_table", "not CLUSTER:FSNAME")
        text = replacing("lock_table = \"ssi:root\"", with: "lock_table = \"ssi:a-file-system-name-longer-than-30\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "lock_table", in: text), field: "root.lock_table", "at most 30")
    }

    @Test func rootTypeAndTypeSpecificKeys() {
        var text = replacing("type = \"gfs2\"", with: "type = \"gfs\"", in: baseGFS2)
        let ps = problems(text)
        #expect(ps.count == 1)
        #expect(ps.first?.description.contains("did you mean \"gfs2\"?") == true, "\(ps)")
        text = replacing("lock_table = \"ssi:root\"", with: "lock_table = \"ssi:root\"\nserver = 1", in: baseGFS2)
        expectOneProblem(text, line: line(of: "server", in: text), field: "root.server", "only for type = \"cfs\"")
        text = replacing("server = 1", with: "server = 1\nlock_table = \"ssi:root\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "lock_table", in: text), field: "root.lock_table", "only for type = \"gfs2\"")
        text = replacing("device = \"LABEL=ssi:root\"\n", with: "", in: baseGFS2)
        expectOneProblem(text, line: 7, field: "root.device", "missing")
        text = replacing("server = 1", with: "server = 1\noptions = \"a, b\"", in: baseCFS)
        expectOneProblem(text, line: line(of: "options", in: text), field: "root.options", "not a mount option list")
    }

    // MARK: quorum

    @Test func twoNodeNeedsExactlyTwoNodes() {
        let text = replacing("[root]", with: "[quorum]\ntwo_node = true\n\n[root]", in: baseCFS)
        expectOneProblem(text, line: line(of: "two_node", in: text), field: "quorum.two_node", "exactly 2 nodes", "has 3 nodes and 3 votes")
    }

    @Test func expectedVotesBelowAMajorityIsSplitBrain() {
        let text = replacing("[root]", with: "[quorum]\nexpected_votes = 1\n\n[root]", in: baseCFS)
        expectOneProblem(text, line: line(of: "expected_votes", in: text), field: "quorum.expected_votes",
                         "smaller than a majority", "split brain", "use at least 2")
        // 2 of 3: quorum 2, two partitions cannot both have 2: safe.
        #expect(problems(replacing("[root]", with: "[quorum]\nexpected_votes = 2\n\n[root]", in: baseCFS)).isEmpty)
    }

    @Test func expectedVotesThatCanNeverBeReached() {
        let text = replacing("[root]", with: "[quorum]\nexpected_votes = 6\n\n[root]", in: baseCFS)
        expectOneProblem(text, line: line(of: "expected_votes", in: text), field: "quorum.expected_votes", "could never be quorate")
        #expect(problems(replacing("[root]", with: "[quorum]\nexpected_votes = 5\n\n[root]", in: baseCFS)).isEmpty)
    }

    @Test func continueIsRefusedWithGFS2() {
        var text = replacing("[root]", with: "[quorum]\non_timeout = \"continue\"\n\n[root]", in: baseGFS2)
        expectOneProblem(text, line: line(of: "on_timeout", in: text), field: "quorum.on_timeout", "refused with a gfs2 root")
        text = replacing("address = \"10.77.0.2\"", with: "address = \"10.77.0.2\"\non_timeout = \"continue\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "on_timeout", in: text), field: "node.on_timeout", "node 2 must never mount")
    }

    @Test func twoNodeWithoutWaitForAllIsRefused() {
        var text = replacing("""
            [[node]]
            number = 3
            mac = "52:54:00:00:00:03"
            address = "10.77.0.3"

            """, with: "", in: baseGFS2)
        text = replacing("[root]", with: "[quorum]\ntwo_node = true\nwait_for_all = false\n\n[root]", in: text)
        expectOneProblem(text, line: line(of: "wait_for_all", in: text), field: "quorum.wait_for_all", "split brain")
    }

    @Test func noVotesAtAll() {
        var text = baseGFS2
        for n in 1...3 {
            text = replacing("address = \"10.77.0.\(n)\"", with: "address = \"10.77.0.\(n)\"\nvotes = 0", in: text)
        }
        expectOneProblem(text, line: line(of: "number = 1", in: text) - 1, field: "node.votes", "never be quorate")
    }
}
