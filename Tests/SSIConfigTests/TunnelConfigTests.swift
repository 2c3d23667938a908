import Foundation
import Testing
import SSICore
@testable import SSIConfig

/// [tunnel]: off without the section; with it, node N's cluster address is
/// host N of the prefix, and corosync, the exports and the NFS mounts use
/// it; every problem is named by line and field.
@Suite struct TunnelConfigTests {
    func withTunnel(_ body: String) -> String {
        replacing("[[node]]", with: "[tunnel]\n" + body + "\n[[node]]", in: baseCFS)
    }

    @Test("without [tunnel] the cluster address is the node's address; with it, host N of the prefix")
    func addresses() throws {
        let plain = try valid(baseCFS)
        #expect(plain.tunnel == nil)
        #expect(plain.clusterAddress(plain.nodes[1]).description == "10.77.0.2")
        #expect(plain.clusterNetwork.description == "10.77.0.0/24")

        let c = try valid(withTunnel("prefix = \"10.78.0.0/24\"\n"))
        #expect(c.tunnel == ClusterConfig.Tunnel(prefix: try IPv4CIDR(parsingNetwork: "10.78.0.0/24"), port: 51820))
        #expect(c.nodes.map { c.clusterAddress($0).description } == ["10.78.0.1", "10.78.0.2", "10.78.0.3"])
        #expect(c.nodes.map(\.address.description) == ["10.77.0.1", "10.77.0.2", "10.77.0.3"], "DHCP and the endpoints keep these")
        #expect(c.clusterNetwork.description == "10.78.0.0/24")
        let corosync = c.corosyncConf(keyfile: "/etc/corosync/authkey")
        #expect(corosync.contains("ring0_addr: 10.78.0.2") && !corosync.contains("ring0_addr: 10.77.0.2"), "\(corosync)")
        #expect(corosync.contains("system {\n    sched_rr: no\n    priority: max\n}"), "not realtime over WireGuard: \(corosync)")
        #expect(!plain.corosyncConf().contains("sched_rr"), "corosync's own default without a tunnel")
        #expect(try valid(withTunnel("prefix = \"172.16.0.0/16\"\nport = 4500\n")).tunnel?.port == 4500)
    }

    @Test("a reload may change the nodes but not [tunnel]: added, removed, moved or another port is refused with both sides named")
    func reloadKeepsTheTunnel() throws {
        let plain = try valid(baseCFS)
        let tunnel = try valid(withTunnel("prefix = \"10.78.0.0/24\"\n"))
        let fewer = try valid(withTunnel("prefix = \"10.78.0.0/24\"\n").components(separatedBy: "[[node]]").dropLast().joined(separator: "[[node]]"))
        #expect(fewer.nodes.count == tunnel.nodes.count - 1)
        #expect(tunnel.reloadRefusal(to: fewer) == nil, "a node removed: the tunnel stays")
        #expect(plain.reloadRefusal(to: plain) == nil)
        let added = plain.reloadRefusal(to: tunnel) ?? ""
        #expect(added.contains("running: none; new: prefix 10.78.0.0/24, port 51820") && added.contains("reboot every node"), "\(added)")
        #expect(tunnel.reloadRefusal(to: plain)?.contains("running: prefix 10.78.0.0/24, port 51820; new: none") == true)
        let moved = try valid(withTunnel("prefix = \"10.79.0.0/24\"\n"))
        #expect(tunnel.reloadRefusal(to: moved)?.contains("new: prefix 10.79.0.0/24") == true)
        let port = try valid(withTunnel("prefix = \"10.78.0.0/24\"\nport = 4500\n"))
        #expect(tunnel.reloadRefusal(to: port)?.contains("new: prefix 10.78.0.0/24, port 4500") == true)
    }

    @Test("problems: no prefix, overlap with the cluster network, too small for the node numbers, a bad port, a typo")
    func problemsNamed() {
        let missing = withTunnel("port = 1\n")
        expectOneProblem(missing, line: line(of: "[tunnel]", in: missing), field: "tunnel.prefix", "missing")
        let overlap = withTunnel("prefix = \"10.77.0.0/16\"\n")
        expectOneProblem(overlap, line: line(of: "prefix = \"10.77.0.0/16\"", in: overlap), field: "tunnel.prefix",
                         "overlaps network.prefix 10.77.0.0/24")
        let inside = withTunnel("prefix = \"10.77.0.128/25\"\n")
        expectOneProblem(inside, line: line(of: "prefix = \"10.77.0.128/25\"", in: inside), field: "tunnel.prefix", "overlaps")
        let small = withTunnel("prefix = \"10.78.0.0/30\"\n")
        expectOneProblem(small, line: line(of: "prefix = \"10.78.0.0/30\"", in: small), field: "tunnel.prefix",
                         "2 host addresses; node 3", "needs host 3")
        let hostBits = withTunnel("prefix = \"10.78.0.5/24\"\n")
        #expect(problems(hostBits).contains { $0.field == "tunnel.prefix" })
        let port = withTunnel("prefix = \"10.78.0.0/24\"\nport = 70000\n")
        expectOneProblem(port, line: line(of: "port = 70000", in: port), field: "tunnel.port", "out of range")
        // A gfs2 root takes it too (each node's key is its identity, as
        // its sealed cluster key is; since 2026-12-05).
        let gfs2 = replacing("[[node]]", with: "[tunnel]\nprefix = \"10.78.0.0/24\"\n\n[[node]]", in: baseGFS2)
        #expect(problems(gfs2).isEmpty, "\(problems(gfs2))")
        let typo = withTunnel("prefix = \"10.78.0.0/24\"\nprot = 1\n")
        expectOneProblem(typo, line: line(of: "prot = 1", in: typo), field: "tunnel.prot", "did you mean port?")
    }
}
