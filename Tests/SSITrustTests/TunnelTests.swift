import SSICore
import SSIConfig
import SSILinux
import SSITestSupport
import Testing
@testable import SSITrust

/// The tunnel's keys and peers from the identities alone: no key is made
/// or sent for it. (The kernel's side, in the CFS VM test.)
@Suite struct TunnelTests {
    func config(tunnel: Bool = true) throws -> ClusterConfig {
        var text = SampleConfigs.cfsWithIdentities(dir: "/nonexistent", nodes: 4)
        if tunnel { text = text.replacingOccurrences(of: "[identity]", with: "[tunnel]\nprefix = \"10.78.0.0/24\"\nport = 51999\n\n[identity]") }
        return try ClusterConfig.parse(text: text, file: "t.conf")
    }

    @Test("a peer per enrolled node but this one: its identity's X25519 key, its cluster address as endpoint, only its tunnel address allowed")
    func peers() throws {
        let keys = (1...3).map { _ in NodeKey.generate() }
        var known = KnownIdentities()
        for (i, k) in keys.enumerated() { known.set("node\(i + 1)", k.identity) }
        let (peers, missing) = ClusterTunnel.peers(config: try config(), known: known, me: 2)
        #expect(missing == ["node4"], "node 4 has no enrolled identity")
        #expect(peers.count == 3)
        #expect(peers.map { $0.endpoint?.description } == ["10.77.0.1:51999", "10.77.0.3:51999", "10.77.0.4:51999"])
        #expect(peers.map { $0.allowedIPs.map(\.description) } == [["10.78.0.1/32"], ["10.78.0.3/32"], ["10.78.0.4/32"]])
        #expect(peers[0].publicKey == ClusterTunnel.publicKey(keys[0].identity))
        #expect(peers[1].publicKey == ClusterTunnel.publicKey(keys[2].identity))
        #expect(peers.allSatisfy { $0.publicKey.count == 32 && $0.publicKey != keys[0].identity.key })
        // Node 4's stand-in: no identity's, and the same on the next call
        // (a sync sees no change); once enrolled, its own.
        let standIn = peers[2].publicKey
        #expect(!keys.contains { ClusterTunnel.publicKey($0.identity) == standIn })
        #expect(ClusterTunnel.peers(config: try config(), known: known, me: 2).peers[2].publicKey == standIn)
        let four = NodeKey.generate()
        known.set("node4", four.identity)
        #expect(ClusterTunnel.peers(config: try config(), known: known, me: 2).peers[2].publicKey == ClusterTunnel.publicKey(four.identity))
        #expect(ClusterTunnel.peers(config: try config(tunnel: false), known: known, me: 2).peers.isEmpty, "no [tunnel], no peers")
    }

    @Test("the tunnel key is the identity's: the private key's X25519 form is fixed by the seed and not the seed itself")
    func keys() throws {
        let k = NodeKey.generate()
        let again = try NodeKey(seed: k.seed)
        #expect(k.tunnelPrivateKey == again.tunnelPrivateKey && k.tunnelPrivateKey.count == 32)
        #expect(k.tunnelPrivateKey != k.seed)
        #expect(NodeKey.generate().tunnelPrivateKey != k.tunnelPrivateKey)
    }
}

@Suite struct TunnelGuardTests {
    @Test("the guard: the local table moves to 1 first, then the node's own packets and the tunnel's look it up at 0, and the rest for the address is dropped")
    func guardRulesInOrder() throws {
        let address = try IPv4Address(parsing: "10.78.0.3")
        let rules = ClusterTunnel.guardRules(address: address, interface: "ssi0")
        #expect(rules.add.map(\.description) == ["1: from all lookup local", "0: from all iif lo lookup local",
                                                  "0: from all iif ssi0 lookup local", "0: from all to 10.78.0.3 blackhole"])
        #expect(rules.remove.description == "0: from all lookup local")
    }
}
