// The rtnetlink wire format, built and read by hand. Glibc's Swift module
// imports none of <linux/netlink.h> or <linux/rtnetlink.h>, and the layouts
// are small and frozen kernel ABI, so the constants are spelled out here
// with the header each one comes from. Integers are in host byte order
// (netlink is a local protocol); IPv4 addresses travel in network order.

import SSICore

/// Constants from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
/// <linux/if_addr.h> and <linux/if.h>.
enum NL {
    // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
    static let headerSize = 16
    static let noop: UInt16 = 1
    static let error: UInt16 = 2
    static let done: UInt16 = 3
    static let overrun: UInt16 = 4

    // nlmsg_flags
    static let request: UInt16 = 0x01
    static let multi: UInt16 = 0x02
    static let ack: UInt16 = 0x04
    static let dumpInterrupted: UInt16 = 0x10
    static let dump: UInt16 = 0x300          // NLM_F_ROOT | NLM_F_MATCH
    static let replace: UInt16 = 0x100
    static let exclusive: UInt16 = 0x200
    static let create: UInt16 = 0x400
    // Flags of an NLMSG_ERROR reply.
    static let ackCapped: UInt16 = 0x100     // NLM_F_CAPPED: request not echoed
    static let ackTLVs: UInt16 = 0x200       // NLM_F_ACK_TLVS: extended ack follows
    static let errAttrMessage: UInt16 = 1    // NLMSGERR_ATTR_MSG

    // Socket options (SOL_NETLINK).
    static let solNetlink: Int32 = 270
    static let optCapAck: Int32 = 10         // NETLINK_CAP_ACK
    static let optExtAck: Int32 = 11         // NETLINK_EXT_ACK
    static let netlinkRoute: Int32 = 0       // NETLINK_ROUTE
    static let netlinkSockDiag: Int32 = 4    // NETLINK_SOCK_DIAG

    // <linux/sock_diag.h>, <linux/unix_diag.h>: sock_diag's one request.
    static let sockDiagByFamily: UInt16 = 20
    // struct unix_diag_req { u8 family; u8 protocol; u16 pad; u32 states;
    // u32 ino; u32 show; u32 cookie[2]; }
    static let unixDiagShowPeer: UInt32 = 0x04   // UDIAG_SHOW_PEER
    // struct unix_diag_msg { u8 family; u8 type; u8 state; u8 pad; u32 ino;
    // u32 cookie[2]; }, then attributes.
    static let unixDiagMessageSize = 16
    static let unixDiagPeer: UInt16 = 2          // UNIX_DIAG_PEER: u32

    // rtnetlink message types.
    static let newLink: UInt16 = 16
    static let delLink: UInt16 = 17
    static let getLink: UInt16 = 18
    static let newAddr: UInt16 = 20
    static let getAddr: UInt16 = 22
    static let newRoute: UInt16 = 24
    static let getRoute: UInt16 = 26
    static let newRule: UInt16 = 32
    static let delRule: UInt16 = 33

    // struct fib_rule_hdr { u8 family, dst_len, src_len, tos, table, res1, res2, action; u32 flags; }
    static let fraDst: UInt16 = 1
    static let fraIifname: UInt16 = 3
    static let fraPriority: UInt16 = 6
    static let fraTable: UInt16 = 15
    static let frActToTable: UInt8 = 1
    static let frActBlackhole: UInt8 = 6

    // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
    static let ifinfoSize = 16
    static let iflaAddress: UInt16 = 1
    static let iflaIfname: UInt16 = 3
    static let iflaMTU: UInt16 = 4
    static let iflaOperstate: UInt16 = 16
    static let iflaLinkinfo: UInt16 = 18
    static let iflaExtMask: UInt16 = 29
    static let iflaInfoKind: UInt16 = 1
    static let rtextFilterSkipStats: UInt32 = 1 << 3

    // struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; }
    static let ifaddrSize = 8
    static let ifaAddress: UInt16 = 1
    static let ifaLocal: UInt16 = 2
    static let ifaLabel: UInt16 = 3
    static let ifaBroadcast: UInt16 = 4

    // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
    static let rtmsgSize = 12
    static let rtaDst: UInt16 = 1
    static let rtaOIF: UInt16 = 4
    static let rtaGateway: UInt16 = 5
    static let rtaPriority: UInt16 = 6
    static let rtaPrefSrc: UInt16 = 7
    static let rtaTable: UInt16 = 15
    static let rtnUnicast: UInt8 = 1

    static let afUnspec: UInt8 = 0
    static let afInet: UInt8 = 2

    // struct nlattr { u16 len; u16 type; }; the top two type bits are flags.
    static let attrHeaderSize = 4
    static let attrTypeMask: UInt16 = 0x3fff
    static let attrNested: UInt16 = 0x8000

    /// NLMSG_ALIGN / NLA_ALIGN: everything is padded to four bytes.
    static func align(_ n: Int) -> Int { (n + 3) & ~3 }
}

/// One request, laid out as the kernel expects: header, family header,
/// attributes. Length and sequence number are filled in when it is sent.
struct NetlinkRequest {
    private(set) var bytes: [UInt8] = []
    /// A generic netlink request (WireGuard's): its type is a family
    /// number the kernel chose, so only the flags say whether it is a dump.
    var generic = false

    init(type: UInt16, flags: UInt16) {
        append(UInt32(0))          // nlmsg_len, set by finished(sequence:)
        append(type)
        append(flags | NL.request | NL.ack)
        append(UInt32(0))          // nlmsg_seq
        append(UInt32(0))          // nlmsg_pid: 0, the kernel fills in ours
    }

    var type: UInt16 { load(UInt16.self, at: 4) }
    var flags: UInt16 { load(UInt16.self, at: 6) }

    /// A dump request: a GET (rtnetlink numbers each family NEW, DEL, GET,
    /// SET, so GET is 2 modulo 4) with NLM_F_DUMP. The type matters because
    /// the flag bits mean other things in other requests: NLM_F_DUMP is
    /// NLM_F_REPLACE | NLM_F_EXCL on a NEW.
    /// sock_diag's SOCK_DIAG_BY_FAMILY, the one request on that family,
    /// is a dump with the flag.
    var isDump: Bool { (generic || type & 3 == 2 || type == NL.sockDiagByFamily) && flags & NL.dump == NL.dump }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

    mutating func pad() {
        bytes.append(contentsOf: repeatElement(0, count: NL.align(bytes.count) - bytes.count))
    }

    mutating func attribute(_ type: UInt16, _ payload: [UInt8]) {
        pad()
        append(UInt16(NL.attrHeaderSize + payload.count))
        append(type)
        append(payload)
        pad()
    }

    mutating func attribute(_ type: UInt16, u32 value: UInt32) {
        attribute(type, withUnsafeBytes(of: value) { Array($0) })
    }

    /// NLA_STRING / NLA_NUL_STRING: the kernel accepts the terminating NUL
    /// for both, and IFLA_IFNAME wants it.
    mutating func attribute(_ type: UInt16, string: String) {
        attribute(type, Array(string.utf8) + [0])
    }

    /// A nested attribute whose length covers what `body` appends.
    mutating func nested(_ type: UInt16, _ body: (inout NetlinkRequest) -> Void) {
        pad()
        let start = bytes.count
        append(UInt16(0))
        append(type | NL.attrNested)
        body(&self)
        pad()
        store(UInt16(truncatingIfNeeded: bytes.count - start), at: start)
    }

    /// The bytes to send, with length and sequence number in place.
    func finished(sequence: UInt32) -> [UInt8] {
        var copy = self
        copy.store(UInt32(truncatingIfNeeded: bytes.count), at: 0)
        copy.store(sequence, at: 8)
        return copy.bytes
    }

    private mutating func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value) { raw in
            for (i, b) in raw.enumerated() { bytes[offset + i] = b }
        }
    }

    private func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}

/// Reads a host-order integer out of received bytes, or nil when the bytes
/// are too short: replies are kernel input, and a short one must become an
/// error, never a trap in PID 1.
func loadInteger<T: FixedWidthInteger>(_: T.Type, _ bytes: ArraySlice<UInt8>, at offset: Int) -> T? {
    let size = MemoryLayout<T>.size
    guard offset >= 0, bytes.count - offset >= size else { return nil }
    let start = bytes.startIndex + offset
    return bytes[start..<start + size].withUnsafeBytes { $0.loadUnaligned(as: T.self) }
}

/// One received message: header fields and the payload after the header.
struct NetlinkMessage {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var portID: UInt32
    var payload: ArraySlice<UInt8>

    /// Splits one datagram into its messages; nil if any length field
    /// points outside the datagram.
    static func split(_ datagram: ArraySlice<UInt8>) -> [NetlinkMessage]? {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while datagram.count - offset >= NL.headerSize {
            let rest = datagram[(datagram.startIndex + offset)...]
            guard let length = loadInteger(UInt32.self, rest, at: 0).map(Int.init),
                  length >= NL.headerSize, length <= rest.count,
                  let type = loadInteger(UInt16.self, rest, at: 4),
                  let flags = loadInteger(UInt16.self, rest, at: 6),
                  let sequence = loadInteger(UInt32.self, rest, at: 8),
                  let portID = loadInteger(UInt32.self, rest, at: 12)
            else { return nil }
            let payloadStart = rest.startIndex + NL.headerSize
            messages.append(NetlinkMessage(type: type, flags: flags, sequence: sequence, portID: portID,
                                           payload: datagram[payloadStart..<rest.startIndex + length]))
            offset += NL.align(length)
        }
        // Anything left is shorter than a header: padding or garbage.
        guard offset >= datagram.count || datagram[(datagram.startIndex + offset)...].allSatisfy({ $0 == 0 })
        else { return nil }
        return messages
    }
}

/// The attributes that follow a family header, by type (flag bits masked
/// off). A repeated type keeps the last one, which is all rtnetlink's
/// replies ever need for the attributes read here.
struct NetlinkAttributes {
    private(set) var values: [UInt16: ArraySlice<UInt8>] = [:]

    /// nil if an attribute's length runs past the end.
    init?(_ bytes: ArraySlice<UInt8>) {
        guard let all = Self.list(bytes) else { return nil }
        for (type, payload) in all { values[type] = payload }
    }

    subscript(type: UInt16) -> ArraySlice<UInt8>? { values[type] }

    /// Every attribute in order, repeats kept: the lists generic netlink
    /// families nest (WireGuard numbers every peer 0). nil if a length
    /// runs past the end.
    static func list(_ bytes: ArraySlice<UInt8>) -> [(type: UInt16, payload: ArraySlice<UInt8>)]? {
        var out: [(type: UInt16, payload: ArraySlice<UInt8>)] = []
        var offset = 0
        while bytes.count - offset >= NL.attrHeaderSize {
            let rest = bytes[(bytes.startIndex + offset)...]
            guard let length = loadInteger(UInt16.self, rest, at: 0).map(Int.init),
                  let type = loadInteger(UInt16.self, rest, at: 2),
                  length >= NL.attrHeaderSize, length <= rest.count
            else { return nil }
            out.append((type & NL.attrTypeMask, rest[(rest.startIndex + NL.attrHeaderSize)..<(rest.startIndex + length)]))
            offset += NL.align(length)
        }
        // A tail shorter than an attribute header is padding at most.
        return out
    }

    func u8(_ type: UInt16) -> UInt8? { values[type].flatMap { loadInteger(UInt8.self, $0, at: 0) } }
    func u32(_ type: UInt16) -> UInt32? { values[type].flatMap { loadInteger(UInt32.self, $0, at: 0) } }

    /// A string attribute without its NUL terminator.
    func string(_ type: UInt16) -> String? {
        guard let raw = values[type] else { return nil }
        let text = raw.prefix { $0 != 0 }
        return String(decoding: text, as: UTF8.self)
    }

    func ipv4(_ type: UInt16) -> IPv4Address? { values[type].flatMap { IPv4Address(networkBytes: $0) } }

    func nested(_ type: UInt16) -> NetlinkAttributes? { values[type].flatMap { NetlinkAttributes($0) } }
}

/// An NLMSG_ERROR payload: struct nlmsgerr { int error; struct nlmsghdr
/// msg; } then, with NLM_F_ACK_TLVS, the extended ack attributes, where the
/// kernel says in words what it did not like ("Nexthop has invalid
/// gateway") that errno alone cannot.
struct NetlinkErrorReply {
    /// 0 for an acknowledgement, else a negative errno.
    var error: Int32
    var kernelMessage: String?

    init?(_ message: NetlinkMessage) {
        guard let error = loadInteger(Int32.self, message.payload, at: 0) else { return nil }
        self.error = error
        guard message.flags & NL.ackTLVs != 0 else { return }
        // Without NLM_F_CAPPED the whole request is echoed before the TLVs.
        var tlvOffset = 4 + NL.headerSize
        if message.flags & NL.ackCapped == 0 {
            guard let echoed = loadInteger(UInt32.self, message.payload, at: 4) else { return }
            tlvOffset = 4 + NL.align(Int(echoed))
        }
        guard tlvOffset <= message.payload.count,
              let attributes = NetlinkAttributes(message.payload.dropFirst(tlvOffset))
        else { return }
        kernelMessage = attributes.string(NL.errAttrMessage).flatMap { $0.isEmpty ? nil : $0 }
    }
}
