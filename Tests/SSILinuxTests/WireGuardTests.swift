import SSICore
import SSITestSupport
import Testing
@testable import SSILinux

/// WireGuard's generic netlink messages byte for byte as <linux/genetlink.h>
/// and <linux/wireguard.h> lay them out, the device reply read back
/// (several messages, a peer split across two, IPv6 skipped), mutants of
/// it refused without a trap. The real kernel module is driven in the CFS
/// VM test (this host's kernel has none: the family lookup's error is
/// checked here).
@Suite struct WireGuardTests {
    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let raw = u16(UInt16(4 + payload.count)) + u16(type) + payload
        return raw + [UInt8](repeating: 0, count: NL.align(raw.count) - raw.count)
    }

    func nested(_ type: UInt16, _ body: [UInt8]) -> [UInt8] { u16(UInt16(4 + body.count)) + u16(type | 0x8000) + body }

    let keyA = [UInt8](repeating: 0xA1, count: 32)
    let keyB = [UInt8](repeating: 0xB2, count: 32)

    func allowed(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ mask: UInt8) -> [UInt8] {
        nested(0, attribute(1, u16(2)) + attribute(2, [a, b, c, d]) + attribute(3, [mask]))
    }

    @Test("the family lookup and a set-device request, byte for byte")
    func requests() throws {
        let family = Netlink.familyRequest("wireguard").finished(sequence: 7)
        let name = attribute(2, Array("wireguard".utf8) + [0])       // 14 bytes, padded to 16
        #expect(family == u32(UInt32(16 + 4 + name.count)) + u16(0x10) + u16(0x0001 | 0x0004) + u32(7) + u32(0)
                + [3, 2, 0, 0] + name)

        let peer = WireGuardPeer(publicKey: keyA, endpoint: WireGuardEndpoint(IPv4Address(10, 77, 0, 1), port: 51820),
                                 allowedIPs: [try IPv4CIDR(parsing: "10.78.0.1/32")], keepaliveSeconds: 25)
        let set = Netlink.setDeviceRequest(family: 0x1c, name: "ssi0", privateKey: keyB, listenPort: 51820,
                                           peers: [peer], replacePeers: true, removing: [keyB])
        #expect(set.generic && !set.isDump)
        let endpoint = u16(2) + [0xCA, 0x6C] + [10, 77, 0, 1] + [UInt8](repeating: 0, count: 8)   // port 51820 big-endian
        let peerBody = attribute(1, keyA) + attribute(3, u32(2)) + attribute(4, endpoint) + attribute(5, u16(25))
            + nested(9, allowed(10, 78, 0, 1, 32))
        let removal = nested(0, attribute(1, keyB) + attribute(3, u32(1)))
        let body = [1, 1, 0, 0] + attribute(2, Array("ssi0".utf8) + [0]) + attribute(3, keyB) + attribute(6, u16(51820))
            + attribute(5, u32(1)) + nested(8, nested(0, peerBody) + removal)
        let bytes = set.finished(sequence: 9)
        #expect(bytes == u32(UInt32(16 + body.count)) + u16(0x1c) + u16(0x0005) + u32(9) + u32(0) + body)

        let get = Netlink.getDeviceRequest(family: 0x1c, name: "ssi0")
        #expect(get.isDump, "a generic GET with NLM_F_DUMP is a dump whatever the family's number")
        #expect(!Netlink.setDeviceRequest(family: 0x1e, name: "x", privateKey: nil, listenPort: nil, peers: [],
                                          replacePeers: false, removing: []).isDump)
    }

    /// A reply as the kernel writes it: genlmsghdr, the device's
    /// attributes, its peers (every one numbered 0).
    func reply(peers: [[UInt8]]) -> [UInt8] {
        [0, 1, 0, 0] + attribute(1, u32(5)) + attribute(2, Array("ssi0".utf8) + [0]) + attribute(4, keyB)
            + attribute(6, u16(51820)) + nested(8, peers.reduce([], +))
    }

    func peerA(allowedIPs: [[UInt8]], counters: Bool = true) -> [UInt8] {
        let endpoint = u16(2) + [0xCA, 0x6C] + [10, 77, 0, 2] + [UInt8](repeating: 0, count: 8)
        var body = attribute(1, keyA) + attribute(4, endpoint) + attribute(5, u16(0))
        if counters { body += attribute(6, u64(1_700_000_000) + u64(5)) + attribute(7, u64(1234)) + attribute(8, u64(99)) }
        return nested(0, body + nested(9, allowedIPs.reduce([], +)))
    }

    @Test("a device reply: peers with counters; a peer split across messages is one peer; IPv6 skipped; lies refused")
    func readsTheDevice() throws {
        let v6 = nested(0, attribute(1, u16(10)) + attribute(2, [UInt8](repeating: 0xfd, count: 16)) + attribute(3, [64]))
        let first = reply(peers: [peerA(allowedIPs: [allowed(10, 78, 0, 2, 32), v6])])
        let second = reply(peers: [peerA(allowedIPs: [allowed(10, 78, 1, 0, 24)], counters: false),
                                   nested(0, attribute(1, keyB) + nested(9, []))])
        let device = try #require(Netlink.device([first[...], second[...]]))
        #expect(device.name == "ssi0" && device.publicKey == keyB && device.listenPort == 51820)
        #expect(device.peers.count == 2)
        let a = device.peers[0]
        #expect(a.publicKey == keyA && a.endpoint?.description == "10.77.0.2:51820")
        #expect(a.allowedIPs.map(\.description) == ["10.78.0.2/32", "10.78.1.0/24"])
        #expect(a.lastHandshakeSeconds == 1_700_000_000 && a.receivedBytes == 1234 && a.sentBytes == 99)
        #expect(device.peers[1].publicKey == keyB && device.peers[1].allowedIPs.isEmpty && device.peers[1].endpoint == nil)

        // A short key, an attribute running past its end, a second device.
        let shortKey = [0, 1, 0, 0] + attribute(2, Array("ssi0".utf8) + [0]) + nested(8, nested(0, attribute(1, [1, 2, 3])))
        #expect(Netlink.device([shortKey[...]]) == nil)
        var overrun = first
        overrun[4] = 0xff
        #expect(Netlink.device([overrun[...]]) == nil)
        let other = [0, 1, 0, 0] + attribute(2, Array("ssi1".utf8) + [0])
        #expect(Netlink.device([first[...], other[...]]) == nil)
        #expect(Netlink.device([[0, 1][...]]) == nil)
    }

    @Test func deviceReplyFuzz() {
        let seeds = [reply(peers: [peerA(allowedIPs: [allowed(10, 78, 0, 2, 32)])]), reply(peers: []),
                     reply(peers: [peerA(allowedIPs: []), peerA(allowedIPs: [allowed(1, 2, 3, 4, 33)])])]
        Fuzz.run("wireguard-device", seeds: seeds, iterations: Fuzz.iterations(default: 2000)) { bytes in
            if let d = Netlink.device([bytes[...], bytes.dropFirst(0)]) {
                #expect(d.peers.allSatisfy { $0.publicKey.count == 32 && $0.allowedIPs.allSatisfy { $0.prefixLength <= 32 } })
            }
        }
    }

    @Test("on a kernel without WireGuard: an error that names the module, in a namespace of our own")
    func missingModule() async throws {
        let hasWireGuard = FileSystem.exists("/sys/module/wireguard")
        let result = try await inNewNetworkNamespace { () -> String in
            var nl = try Netlink.generic()
            // Every kernel has the family of families itself.
            let control = try nl.genericFamily("nlctrl")
            guard control == 0x10 else { return "nlctrl is \(control)" }
            do {
                _ = try nl.wireGuardDevice("ssi0")
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        if hasWireGuard {
            #expect(result.contains("ssi0"), "\(result)")
        } else {
            #expect(result.contains("modprobe wireguard"), "\(result)")
        }
    }
}
