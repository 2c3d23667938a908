import Testing
import SSICore
@testable import SSILinux

/// The wire format without a kernel: requests laid out byte for byte as
/// <linux/netlink.h> says, and replies that lie about their lengths
/// rejected instead of read past (a trap in PID 1 is a kernel panic).
@Suite struct NetlinkMessageTests {
    /// Little-endian helpers for writing expected bytes (x86_64, arm64).
    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    func message(type: UInt16, flags: UInt16 = 0, sequence: UInt32 = 1, port: UInt32 = 77, _ payload: [UInt8]) -> [UInt8] {
        u32(UInt32(16 + payload.count)) + u16(type) + u16(flags) + u32(sequence) + u32(port) + payload
    }

    func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let raw = u16(UInt16(4 + payload.count)) + u16(type) + payload
        return raw + [UInt8](repeating: 0, count: NL.align(raw.count) - raw.count)
    }

    @Test func requestHeaderAttributesAndNesting() {
        var r = NetlinkRequest(type: NL.newLink, flags: NL.create | NL.exclusive)
        r.append([UInt8](repeating: 0, count: 16))               // ifinfomsg
        r.attribute(NL.iflaIfname, string: "d0")
        r.nested(NL.iflaLinkinfo) { $0.attribute(NL.iflaInfoKind, string: "dummy") }
        let bytes = r.finished(sequence: 42)

        let ifname = attribute(3, Array("d0".utf8) + [0])        // 7 bytes, padded to 8
        let kind = attribute(1, Array("dummy".utf8) + [0])       // 10 bytes, padded to 12
        let linkinfo = u16(UInt16(4 + kind.count)) + u16(18 | 0x8000) + kind
        let expected = u32(UInt32(16 + 16 + ifname.count + linkinfo.count))
            + u16(16) + u16(0x0001 | 0x0004 | 0x0400 | 0x0200)   // REQUEST ACK CREATE EXCL
            + u32(42) + u32(0)
            + [UInt8](repeating: 0, count: 16) + ifname + linkinfo
        #expect(bytes == expected)
        #expect(bytes.count % 4 == 0)
        #expect(!r.isDump, "CREATE|EXCL shares bits with DUMP; only a GET is a dump")
        #expect(NetlinkRequest(type: NL.getLink, flags: NL.dump).isDump)
        #expect(!NetlinkRequest(type: NL.newRoute, flags: NL.replace | NL.exclusive).isDump)
    }

    @Test("policy rules: RTM_NEWRULE and RTM_DELRULE byte for byte, as ip(8) sends them")
    func ruleRequests() throws {
        let lookup = RoutingRule(priority: 0, inputInterface: "lo", action: .lookup(table: 255))
        let bytes = Netlink.ruleRequest(lookup, type: NL.newRule, flags: NL.create | NL.exclusive).finished(sequence: 3)
        let attributes = attribute(6, u32(0)) + attribute(3, Array("lo".utf8) + [0]) + attribute(15, u32(255))
        #expect(bytes == u32(UInt32(16 + 12 + attributes.count)) + u16(32) + u16(0x0001 | 0x0004 | 0x0400 | 0x0200) + u32(3) + u32(0)
                + [2, 0, 0, 0, 255, 0, 0, 1] + u32(0) + attributes)            // AF_INET, table local, FR_ACT_TO_TBL
        let blackhole = RoutingRule(priority: 0, destination: try IPv4CIDR(parsing: "10.78.0.1/32"), action: .blackhole)
        let dropped = Netlink.ruleRequest(blackhole, type: NL.delRule, flags: 0).finished(sequence: 4)
        let dropAttributes = attribute(6, u32(0)) + attribute(1, [10, 78, 0, 1])
        #expect(dropped == u32(UInt32(16 + 12 + dropAttributes.count)) + u16(33) + u16(0x0001 | 0x0004) + u32(4) + u32(0)
                + [2, 32, 0, 0, 0, 0, 0, 6] + u32(0) + dropAttributes)         // dst_len 32, FR_ACT_BLACKHOLE
    }

    @Test("sock_diag: the unix sockets' dump request byte for byte; a reply's socket and peer, a short one refused")
    func unixDiag() throws {
        let bytes = Netlink.unixPeersRequest().finished(sequence: 7)
        let expected = u32(16 + 24) + u16(20) + u16(0x0001 | 0x0004 | 0x0300) + u32(7) + u32(0)   // REQUEST ACK DUMP
            + [1, 0] + u16(0) + u32(.max) + u32(0) + u32(4) + u32(.max) + u32(.max)                 // AF_UNIX, all states, SHOW_PEER
        #expect(bytes == expected)
        #expect(Netlink.unixPeersRequest().isDump, "sock_diag's request is a dump")
        // unix_diag_msg: family, type, state, pad, ino, cookie; then UNIX_DIAG_PEER.
        let reply = message(type: 20, [1, 1, 1, 0] + u32(4711) + u32(0) + u32(0) + attribute(2, u32(4712)))
        let m = try #require(NetlinkMessage.split(reply[...])?.first)
        #expect(Netlink.unixPeer(m)?.inode == 4711 && Netlink.unixPeer(m)?.peer == 4712)
        let lonely = try #require(NetlinkMessage.split(message(type: 20, [1, 1, 10, 0] + u32(9) + u32(0) + u32(0))[...])?.first)
        #expect(Netlink.unixPeer(lonely)?.inode == 9 && Netlink.unixPeer(lonely)?.peer == nil, "a listener has no peer")
        let short = try #require(NetlinkMessage.split(message(type: 20, [1, 1, 1, 0, 5, 0])[...])?.first)
        #expect(Netlink.unixPeer(short) == nil)
    }

    @Test func splitsADatagramIntoMessages() throws {
        // The first message's length (17) is not a multiple of four: the
        // next one starts after the padding.
        let first = message(type: NL.newLink, [1]) + [0, 0, 0]
        let second = message(type: NL.done, flags: NL.multi, sequence: 9, u32(0))
        let messages = try #require(NetlinkMessage.split((first + second)[...]))
        #expect(messages.count == 2)
        #expect(messages[0].type == NL.newLink)
        #expect(Array(messages[0].payload) == [1])
        #expect(messages[0].portID == 77)
        #expect(messages[1].type == NL.done)
        #expect(messages[1].sequence == 9)
        #expect(messages[1].flags == NL.multi)
    }

    @Test func rejectsLyingLengths() {
        var tooLong = message(type: NL.newLink, [1, 2, 3, 4])
        tooLong[0] = 200                                         // claims 200 bytes, has 20
        #expect(NetlinkMessage.split(tooLong[...]) == nil)
        var tooShort = message(type: NL.newLink, [1, 2, 3, 4])
        tooShort[0] = 8                                          // shorter than its own header
        #expect(NetlinkMessage.split(tooShort[...]) == nil)
        // Trailing garbage shorter than a header.
        #expect(NetlinkMessage.split((message(type: NL.done, u32(0)) + [1, 2])[...]) == nil)
        #expect(NetlinkMessage.split([][...])?.isEmpty == true)

        #expect(NetlinkAttributes((u16(40) + u16(3) + [0, 0])[...]) == nil)
        #expect(NetlinkAttributes((u16(2) + u16(3))[...]) == nil)
    }

    @Test func readsAttributes() throws {
        let bytes = attribute(3, Array("eth0".utf8) + [0]) + attribute(4, u32(1500))
            + attribute(18 | 0x8000, attribute(1, Array("veth".utf8) + [0]))
        let a = try #require(NetlinkAttributes(bytes[...]))
        #expect(a.string(3) == "eth0")
        #expect(a.u32(4) == 1500)
        #expect(a.nested(18)?.string(1) == "veth", "the nested flag is masked off")
        #expect(a.u32(3) == UInt32(littleEndian: 0x3068_7465))
        #expect(a.u8(99) == nil)
        // Short payloads read as absent, never out of bounds.
        let short = try #require(NetlinkAttributes(attribute(4, [1, 2])[...]))
        #expect(short.u32(4) == nil)
        #expect(short.ipv4(4) == nil)
    }

    func first(_ bytes: [UInt8]) throws -> NetlinkMessage {
        try #require(NetlinkMessage.split(bytes[...])?.first)
    }

    @Test func readsErrorsWithTheKernelsExplanation() throws {
        let text = Array("Nexthop has invalid gateway".utf8) + [0]
        // Capped: the request's header only, then the TLVs.
        let capped = message(type: NL.error, flags: NL.ackCapped | NL.ackTLVs,
                             u32(UInt32(bitPattern: -101)) + [UInt8](repeating: 0, count: 16) + attribute(1, text))
        let reply = try #require(NetlinkErrorReply(try first(capped)))
        #expect(reply.error == -101)
        #expect(reply.kernelMessage == "Nexthop has invalid gateway")

        // Not capped: the whole request (here 24 bytes) is echoed first.
        let echoed = u32(24) + [UInt8](repeating: 0, count: 20)
        let uncapped = message(type: NL.error, flags: NL.ackTLVs, u32(UInt32(bitPattern: -22)) + echoed + attribute(1, text))
        let reply2 = try #require(NetlinkErrorReply(try first(uncapped)))
        #expect(reply2.error == -22)
        #expect(reply2.kernelMessage == "Nexthop has invalid gateway")

        // A plain ACK.
        let ack = message(type: NL.error, flags: NL.ackCapped, u32(0) + [UInt8](repeating: 0, count: 16))
        let reply3 = try #require(NetlinkErrorReply(try first(ack)))
        #expect(reply3.error == 0)
        #expect(reply3.kernelMessage == nil)
        // An echo length pointing past the end gives no message, not a crash.
        let lying = message(type: NL.error, flags: NL.ackTLVs, u32(UInt32(bitPattern: -22)) + u32(4000) + [0, 0, 0, 0])
        #expect(NetlinkErrorReply(try first(lying))?.kernelMessage == nil)
    }

    @Test func decodesALinkMessage() throws {
        let ifinfo: [UInt8] = [0, 0] + u16(1) + u32(2) + u32(0x1_0043) + u32(0)   // ether, index 2, UP|BROADCAST|RUNNING|LOWER_UP
        let attrs = attribute(3, Array("eth0".utf8) + [0]) + attribute(1, [0x52, 0x54, 0, 0x12, 0x34, 0x56])
            + attribute(4, u32(1500)) + attribute(16, [6])
        let m = try first(message(type: NL.newLink, ifinfo + attrs))
        let link = try #require(NetworkLink(m))
        #expect(link.description == "2: eth0 52:54:00:12:34:56 <BROADCAST,UP,RUNNING,LOWER_UP> mtu 1500")
        #expect(link.isUp && link.hasCarrier)
        #expect(link.kind == nil)
        #expect(link.operationalState == .up)

        // Without a name, or with a short ifinfomsg, it is not a link.
        let nameless = try first(message(type: NL.newLink, ifinfo))
        #expect(NetworkLink(nameless) == nil)
        let short = try first(message(type: NL.newLink, Array(ifinfo.prefix(8))))
        #expect(NetworkLink(short) == nil)
    }

    @Test func decodesAddressAndRouteMessages() throws {
        let ifaddr: [UInt8] = [2, 24, 0x80, 0] + u32(3)
        let addr = try first(message(type: NL.newAddr,
            ifaddr + attribute(1, [10, 99, 0, 1]) + attribute(2, [10, 99, 0, 1]) + attribute(4, [10, 99, 0, 255])
                + attribute(3, Array("d0".utf8) + [0])))
        let a = try #require(InterfaceAddress(addr))
        #expect(a.description == "10.99.0.1/24 brd 10.99.0.255 (index 3)")
        #expect(a.label == "d0")

        let rtmsg: [UInt8] = [2, 0, 0, 0, 254, 3, 0, 1] + u32(0)
        let route = try first(message(type: NL.newRoute,
            rtmsg + attribute(15, u32(254)) + attribute(5, [10, 99, 0, 254]) + attribute(4, u32(3))))
        let r = try #require(Route(route))
        #expect(r.isDefault)
        #expect(r.description == "default via 10.99.0.254 dev index 3 proto boot")
        #expect(r.table == Netlink.mainTable)

        // IPv6 and impossible prefix lengths are not IPv4 routes.
        let v6 = try first(message(type: NL.newRoute, [10, 0, 0, 0, 254, 3, 0, 1] + u32(0)))
        #expect(Route(v6) == nil)
        let wide = try first(message(type: NL.newAddr, [2, 40, 0, 0] + u32(3) + attribute(2, [10, 0, 0, 1])))
        #expect(InterfaceAddress(wide) == nil)
    }
}
