import Foundation
import Testing
@testable import SSIConfig
import SSICore

@Suite struct ClustertabTests {
    let tab = """
        # OpenSSI clustertab
        1\t10.77.0.1\t52:54:00:00:00:01\tP\t1\t/dev/hda1
        2\t10.77.0.2\t52:54:00:00:00:02\tP\t0

        3   10.77.0.3   52:54:00:00:00:03   E   0   # spaces work too
        """

    @Test func parsesOpenSSIFields() throws {
        let entries = try Clustertab.parse(text: tab, file: "clustertab")
        #expect(entries.map(\.number) == [1, 2, 3])
        #expect(entries.map(\.line) == [2, 3, 5])
        #expect(entries[0].initNode && !entries[1].initNode)
        #expect(entries[0].bootDevice == "/dev/hda1")
        #expect(entries[2].bootProtocol == "E")
        #expect(entries[1].mac.description == "52:54:00:00:00:02")
    }

    @Test func roundTripImportThenCheck() throws {
        let conv = try Clustertab.convert(text: tab, file: "clustertab", clusterName: "ssi", prefix: "10.77.0.0/24")
        #expect(conv.notes.isEmpty)
        let c = try valid(conv.text)
        #expect(c.cluster.name == "ssi")
        #expect(c.network.prefix.description == "10.77.0.0/24")
        #expect(c.root == .cfs(.init(server: 1, export: "/", device: nil, options: nil)))
        #expect(c.nodes.map(\.role) == [.initNode, .diskless, .diskless])
        #expect(c.nodes.map(\.name) == ["node1", "node2", "node3"])
        #expect(c.nodes.map { $0.macs.map(\.description) } == [["52:54:00:00:00:01"], ["52:54:00:00:00:02"], ["52:54:00:00:00:03"]])
        #expect(conv.text.contains("# clustertab line 2, boot protocol PXE, boot device /dev/hda1"))
        #expect(conv.text.contains("# clustertab line 5, boot protocol Etherboot"))
    }

    @Test func guessesThePrefixAndSaysSo() throws {
        let wide = tab.replacingOccurrences(of: "10.77.0.3", with: "10.77.3.3")
        let conv = try Clustertab.convert(text: wide, file: "clustertab")
        let c = try valid(conv.text)
        #expect(c.network.prefix.description == "10.77.0.0/22")
        #expect(c.cluster.name == "openssi")
        #expect(conv.notes.count == 2)
        #expect(conv.notes.contains { $0.contains("is a guess") })
        #expect(conv.text.contains("#   - network.prefix 10.77.0.0/22 is a guess"))
    }

    @Test func secondInitNodeBecomesAMemberWithANote() throws {
        let two = tab.replacingOccurrences(of: "52:54:00:00:00:02\tP\t0", with: "52:54:00:00:00:02\tP\t1")
        let conv = try Clustertab.convert(text: two, file: "clustertab", clusterName: "ssi", prefix: "10.77.0.0/24")
        let c = try valid(conv.text)
        #expect(c.nodes.map(\.role) == [.initNode, .member, .diskless])
        #expect(conv.notes.first?.contains("node 2 (clustertab line 3) was also a potential init node") == true)
    }

    @Test func errorsNameTheClustertabLine() {
        let bad = """
            1 10.77.0.1 52:54:00:00:00:01 P 1
            x 10.77.0.2 52:54:00:00:00:02 P 0
            3 10.77.0.300 52:54:00:00:00:03 P 0
            4 10.77.0.4 52:54:00:00:00 P 0
            5 10.77.0.5 52:54:00:00:00:05 P yes
            6 10.77.0.6
            7 10.77.0.1 52:54:00:00:00:01 P 0
            1 10.77.0.8 52:54:00:00:00:08 P 0
            """
        let e = #expect(throws: SSIError.self) { try Clustertab.parse(text: bad, file: "ct") }
        let lines = e?.messageLines ?? []
        #expect(lines.count == 8, "\(lines)")
        #expect(lines.contains("ct:2: field 1 (node number): \"x\" is not a node number (1 or more)"))
        #expect(lines.contains("ct:3: field 2 (IP address): invalid IPv4 address \"10.77.0.300\": 300 is more than 255"))
        #expect(lines.contains("ct:4: field 3 (MAC address): invalid MAC address \"52:54:00:00:00\": expected six hexadecimal pairs separated by \":\", found 5 parts"))
        #expect(lines.contains("ct:5: field 5 (init node flag): \"yes\" is not 0 or 1"))
        #expect(lines.contains { $0.hasPrefix("ct:6: 2 fields") })
        #expect(lines.contains("ct:7: field 3 (MAC address): 52:54:00:00:00:01 is on two nodes: node 7 and node 1 (line 1)"))
        #expect(lines.contains("ct:7: field 2 (IP address): 10.77.0.1 is also node 1's (line 1)"))
        #expect(lines.contains("ct:8: field 1 (node number): node 1 is also on line 1"))
    }

    @Test func noInitNodeAndBadOptions() {
        let noInit = tab.replacingOccurrences(of: "P\t1", with: "P\t0")
        let e = #expect(throws: SSIError.self) { try Clustertab.parse(text: noInit, file: "ct") }
        #expect(e?.message.contains("no init node") == true)
        let outside = #expect(throws: SSIError.self) {
            try Clustertab.convert(text: tab, file: "ct", clusterName: "ssi", prefix: "10.78.0.0/24")
        }
        #expect(outside?.messageLines.first == "ct:2: field 2 (IP address): 10.77.0.1 is outside --prefix 10.78.0.0/24")
        let hostBits = #expect(throws: SSIError.self) {
            try Clustertab.convert(text: tab, file: "ct", clusterName: "ssi", prefix: "10.77.0.1/24")
        }
        #expect(hostBits?.description == "clustertab: --prefix: invalid IPv4 network \"10.77.0.1/24\": host bits are set: the network is 10.77.0.0/24")
        let ipv6 = #expect(throws: SSIError.self) {
            try Clustertab.convert(text: tab, file: "ct", clusterName: "ssi", prefix: "fd00::/64")
        }
        #expect(ipv6?.hint == "IPv6 is not supported")
        let badName = #expect(throws: SSIError.self) { try Clustertab.convert(text: tab, file: "ct", clusterName: "my cluster") }
        #expect(badName?.message.contains("--name my cluster") == true)
    }

    @Test func theExampleConverts() throws {
        let text = try String(contentsOfFile: configsDirectory + "/clustertab.example", encoding: .utf8)
        let conv = try Clustertab.convert(text: text, file: "clustertab.example", clusterName: "ssi", prefix: "10.77.0.0/24")
        let c = try valid(conv.text)
        #expect(c.nodes.count == 3)
        // The same cluster as the cfs example, node for node.
        let example = try ClusterConfig.load(path: configsDirectory + "/cfs-3node.conf")
        #expect(c.nodes.map(\.macs) == example.nodes.map(\.macs))
        #expect(c.nodes.map(\.address) == example.nodes.map(\.address))
        #expect(c.nodes.map(\.role) == example.nodes.map(\.role))
        #expect(c.root == example.root)
    }
}
