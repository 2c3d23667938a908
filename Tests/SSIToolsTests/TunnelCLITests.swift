import Testing
import SSICore
import SSIConfig
import SSILinux
import SSITestSupport
import SSITrust
@testable import ssi

/// `ssi cluster tunnel`'s report: each peer named by the node whose
/// tunnel address it carries, its handshake age and traffic.
@Suite struct TunnelCLITests {
    @Test func rendersPeersByNode() throws {
        let text = SampleConfigs.cfsWithIdentities(dir: "/nonexistent", nodes: 2)
            .replacingOccurrences(of: "[identity]", with: "[tunnel]\nprefix = \"10.78.0.0/24\"\n\n[identity]")
        let config = try ClusterConfig.parse(text: text, file: "t.conf")
        var seen = WireGuardPeer(publicKey: [UInt8](repeating: 1, count: 32),
                                 endpoint: WireGuardEndpoint(IPv4Address(10, 77, 0, 2), port: 51820),
                                 allowedIPs: [try IPv4CIDR(parsing: "10.78.0.2/32")])
        seen.lastHandshakeSeconds = 1000
        seen.receivedBytes = 92
        seen.sentBytes = 148
        let stranger = WireGuardPeer(publicKey: [UInt8](repeating: 2, count: 32), endpoint: nil,
                                     allowedIPs: [try IPv4CIDR(parsing: "10.78.0.9/32")])
        let device = WireGuardDevice(name: "ssi0", publicKey: [UInt8](repeating: 0, count: 32), listenPort: 51820, peers: [seen, stranger])
        let out = ClusterTunnelCommand.render(device, config: config, tunnel: config.tunnel!, known: nil, now: 1042)
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[0] == "ssi0: port 51820, public key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, 2 peers")
        #expect(lines[1] == "  node2 10.78.0.2/32 at 10.77.0.2:51820: handshake 42 s ago, received 92 B, sent 148 B")
        #expect(lines[2] == "  ? 10.78.0.9/32 at -: no handshake yet, received 0 B, sent 0 B")
        // With the identities: node 2's key is not its enrolled one here,
        // so its peer is a stand-in.
        var known = KnownIdentities()
        known.set("node2", NodeKey.generate().identity)
        let marked = ClusterTunnelCommand.render(device, config: config, tunnel: config.tunnel!, known: known, now: 1042)
        #expect(marked.contains("  node2 10.78.0.2/32 at 10.77.0.2:51820: not enrolled (a stand-in key: nothing passes), handshake 42 s ago"))
        let two = NodeKey.generate()
        known.set("node2", two.identity)
        seen.publicKey = ClusterTunnel.publicKey(two.identity)!
        let real = ClusterTunnelCommand.render(WireGuardDevice(name: "ssi0", publicKey: nil, listenPort: 51820, peers: [seen]),
                                               config: config, tunnel: config.tunnel!, known: known, now: 1042)
        #expect(real.contains("  node2 10.78.0.2/32 at 10.77.0.2:51820: handshake 42 s ago"), "\(real)")
    }
}
