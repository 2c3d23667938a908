// The kernel's WireGuard, configured the way wg(8) does it: generic
// netlink, family "wireguard" (<linux/wireguard.h>), no daemon and no
// wireguard-tools in the image. The link itself is made with rtnetlink
// (`addLink(named:kind: "wireguard")`); its address and routes likewise.
// Requests are built by static functions so that tests compare them byte
// for byte; the device reply is kernel input and is read without trusting
// one length in it (a fuzz test feeds it mutants).

#if canImport(Glibc)
import Glibc
#endif
public import SSICore

/// Constants from <linux/genetlink.h>.
enum GENL {
    static let netlinkGeneric: Int32 = 16        // NETLINK_GENERIC
    static let idCtrl: UInt16 = 0x10             // GENL_ID_CTRL: the family of families
    static let ctrlCmdGetFamily: UInt8 = 3       // CTRL_CMD_GETFAMILY
    static let ctrlVersion: UInt8 = 2
    static let ctrlAttrFamilyID: UInt16 = 1      // u16
    static let ctrlAttrFamilyName: UInt16 = 2    // string
    /// struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }
    static let headerSize = 4
}

/// Constants from <linux/wireguard.h>.
enum WG {
    static let familyName = "wireguard"
    static let version: UInt8 = 1
    static let cmdGetDevice: UInt8 = 0
    static let cmdSetDevice: UInt8 = 1
    static let keyLength = 32

    static let deviceFlagReplacePeers: UInt32 = 1
    static let deviceIfname: UInt16 = 2
    static let devicePrivateKey: UInt16 = 3
    static let devicePublicKey: UInt16 = 4
    static let deviceFlags: UInt16 = 5
    static let deviceListenPort: UInt16 = 6
    static let devicePeers: UInt16 = 8

    static let peerFlagRemove: UInt32 = 1
    static let peerFlagReplaceAllowedIPs: UInt32 = 2
    static let peerPublicKey: UInt16 = 1
    static let peerFlags: UInt16 = 3
    static let peerEndpoint: UInt16 = 4
    static let peerKeepalive: UInt16 = 5
    static let peerLastHandshake: UInt16 = 6
    static let peerReceived: UInt16 = 7
    static let peerSent: UInt16 = 8
    static let peerAllowedIPs: UInt16 = 9

    static let allowedFamily: UInt16 = 1
    static let allowedAddress: UInt16 = 2
    static let allowedCIDR: UInt16 = 3

    /// struct sockaddr_in { u16 family; u16 port (network order); u32 addr; u8 zero[8]; }
    static let sockaddrInSize = 16
}

/// A peer's UDP endpoint (IPv4: the cluster network is IPv4).
public struct WireGuardEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var port: UInt16
    public init(_ address: IPv4Address, port: UInt16) {
        self.address = address
        self.port = port
    }
    public var description: String { "\(address):\(port)" }
}

/// One peer as set, or as the kernel reports it (then with its counters).
public struct WireGuardPeer: Sendable, Equatable {
    /// Curve25519, 32 bytes.
    public var publicKey: [UInt8]
    public var endpoint: WireGuardEndpoint?
    /// The source addresses accepted from this peer, and the destinations
    /// sent to it: WireGuard's cryptokey routing.
    public var allowedIPs: [IPv4CIDR]
    /// 0: off.
    public var keepaliveSeconds: UInt16
    /// Seconds since the epoch of the last handshake; 0: none yet.
    public var lastHandshakeSeconds: Int64 = 0
    public var receivedBytes: UInt64 = 0
    public var sentBytes: UInt64 = 0

    public init(publicKey: [UInt8], endpoint: WireGuardEndpoint?, allowedIPs: [IPv4CIDR], keepaliveSeconds: UInt16 = 0) {
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.allowedIPs = allowedIPs
        self.keepaliveSeconds = keepaliveSeconds
    }
}

/// A WireGuard link's state as WG_CMD_GET_DEVICE reports it (never the
/// private key: only its public half is kept).
public struct WireGuardDevice: Sendable, Equatable {
    public var name: String
    public var publicKey: [UInt8]?
    public var listenPort: UInt16
    public var peers: [WireGuardPeer]

    public init(name: String, publicKey: [UInt8]?, listenPort: UInt16, peers: [WireGuardPeer]) {
        self.name = name
        self.publicKey = publicKey
        self.listenPort = listenPort
        self.peers = peers
    }
}

extension Netlink {
    /// A generic netlink socket (NETLINK_GENERIC), for WireGuard.
    public static func generic() throws(SystemCallError) -> Netlink { try Netlink(protocol: GENL.netlinkGeneric) }

    /// The number the kernel gave a generic netlink family; ENOENT when no
    /// loaded module provides it.
    public mutating func genericFamily(_ name: String) throws(SystemCallError) -> UInt16 {
        let replies = try perform(Self.familyRequest(name), "look up the generic netlink family \(name)")
        for m in replies {
            if let id = Self.familyID(m) { return id }
        }
        throw SystemCallError("look up the generic netlink family \(name) (no id in the reply)", errno: EBADMSG)
    }

    /// Sets a WireGuard link's key, port and peers. `replacePeers`: the
    /// peers given become the whole list (others are removed in the same
    /// request, so no moment has both); otherwise they are added or updated.
    public mutating func setWireGuard(_ name: String, privateKey: [UInt8]?, listenPort: UInt16?,
                                      peers: [WireGuardPeer], replacePeers: Bool) throws(SystemCallError) {
        let family = try wireGuardFamily()
        let request = Self.setDeviceRequest(family: family, name: name, privateKey: privateKey, listenPort: listenPort,
                                            peers: peers, replacePeers: replacePeers, removing: [])
        try perform(request, "configure WireGuard on \(name)")
    }

    /// Removes peers by public key; a key the link does not have is not an error.
    public mutating func removeWireGuardPeers(_ name: String, publicKeys: [[UInt8]]) throws(SystemCallError) {
        guard !publicKeys.isEmpty else { return }
        let family = try wireGuardFamily()
        let request = Self.setDeviceRequest(family: family, name: name, privateKey: nil, listenPort: nil,
                                            peers: [], replacePeers: false, removing: publicKeys)
        try perform(request, "remove WireGuard peers from \(name)")
    }

    /// The link's state: public key, port, peers with their counters.
    public mutating func wireGuardDevice(_ name: String) throws(SystemCallError) -> WireGuardDevice {
        let family = try wireGuardFamily()
        let operation = "read WireGuard link \(name)"
        let messages = try dump(Self.getDeviceRequest(family: family, name: name), operation)
        guard let device = Self.device(messages.map(\.payload)) else {
            throw SystemCallError("\(operation) (a malformed reply)", errno: EBADMSG)
        }
        return device
    }

    private mutating func wireGuardFamily() throws(SystemCallError) -> UInt16 {
        do {
            return try genericFamily(WG.familyName)
        } catch where error.errno == ENOENT {
            throw SystemCallError("find the kernel's WireGuard (is the wireguard module loaded? modprobe wireguard)", errno: ENOENT)
        }
    }

    // MARK: the wire format

    static func genericRequest(family: UInt16, command: UInt8, version: UInt8, flags: UInt16) -> NetlinkRequest {
        var r = NetlinkRequest(type: family, flags: flags)
        r.generic = true
        r.append(command)
        r.append(version)
        r.append(UInt16(0))
        return r
    }

    static func familyRequest(_ name: String) -> NetlinkRequest {
        var r = genericRequest(family: GENL.idCtrl, command: GENL.ctrlCmdGetFamily, version: GENL.ctrlVersion, flags: 0)
        r.attribute(GENL.ctrlAttrFamilyName, string: name)
        return r
    }

    /// CTRL_ATTR_FAMILY_ID of a CTRL_CMD_NEWFAMILY reply.
    static func familyID(_ m: NetlinkMessage) -> UInt16? {
        guard m.type == GENL.idCtrl, m.payload.count >= GENL.headerSize,
              let attributes = NetlinkAttributes(m.payload.dropFirst(GENL.headerSize)),
              let raw = attributes[GENL.ctrlAttrFamilyID]
        else { return nil }
        return loadInteger(UInt16.self, raw, at: 0)
    }

    static func setDeviceRequest(family: UInt16, name: String, privateKey: [UInt8]?, listenPort: UInt16?,
                                 peers: [WireGuardPeer], replacePeers: Bool, removing: [[UInt8]]) -> NetlinkRequest {
        var r = genericRequest(family: family, command: WG.cmdSetDevice, version: WG.version, flags: 0)
        r.attribute(WG.deviceIfname, string: name)
        if let privateKey { r.attribute(WG.devicePrivateKey, privateKey) }
        if let listenPort { r.attribute(WG.deviceListenPort, withUnsafeBytes(of: listenPort) { Array($0) }) }
        if replacePeers { r.attribute(WG.deviceFlags, u32: WG.deviceFlagReplacePeers) }
        guard !peers.isEmpty || !removing.isEmpty else { return r }
        r.nested(WG.devicePeers) { list in
            for peer in peers {
                list.nested(0) { p in
                    p.attribute(WG.peerPublicKey, peer.publicKey)
                    // The allowed IPs given are the whole list for the peer.
                    p.attribute(WG.peerFlags, u32: WG.peerFlagReplaceAllowedIPs)
                    if let endpoint = peer.endpoint { p.attribute(WG.peerEndpoint, sockaddrIn(endpoint)) }
                    p.attribute(WG.peerKeepalive, withUnsafeBytes(of: peer.keepaliveSeconds) { Array($0) })
                    p.nested(WG.peerAllowedIPs) { ips in
                        for cidr in peer.allowedIPs {
                            ips.nested(0) { ip in
                                ip.attribute(WG.allowedFamily, withUnsafeBytes(of: UInt16(NL.afInet)) { Array($0) })
                                ip.attribute(WG.allowedAddress, cidr.address.octets)
                                ip.attribute(WG.allowedCIDR, [UInt8(cidr.prefixLength)])
                            }
                        }
                    }
                }
            }
            for key in removing {
                list.nested(0) { p in
                    p.attribute(WG.peerPublicKey, key)
                    p.attribute(WG.peerFlags, u32: WG.peerFlagRemove)
                }
            }
        }
        return r
    }

    static func getDeviceRequest(family: UInt16, name: String) -> NetlinkRequest {
        var r = genericRequest(family: family, command: WG.cmdGetDevice, version: WG.version, flags: NL.dump)
        r.attribute(WG.deviceIfname, string: name)
        return r
    }

    static func sockaddrIn(_ e: WireGuardEndpoint) -> [UInt8] {
        withUnsafeBytes(of: UInt16(NL.afInet)) { Array($0) } + [UInt8(e.port >> 8), UInt8(e.port & 0xff)]
            + e.address.octets + [UInt8](repeating: 0, count: 8)
    }

    /// A WG_CMD_GET_DEVICE dump's payloads (genlmsghdr first) as one
    /// device: a big one comes in several messages, each repeating the
    /// device's attributes, and a peer whose allowed IPs did not fit goes
    /// on in the next one under the same public key. nil: malformed.
    static func device(_ payloads: [ArraySlice<UInt8>]) -> WireGuardDevice? {
        var device: WireGuardDevice?
        for payload in payloads {
            guard payload.count >= GENL.headerSize,
                  let top = NetlinkAttributes.list(payload.dropFirst(GENL.headerSize))
            else { return nil }
            var name: String?, publicKey: [UInt8]?, port: UInt16 = 0, peers: [WireGuardPeer] = []
            for (type, value) in top {
                switch type {
                case WG.deviceIfname: name = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
                case WG.devicePublicKey:
                    guard value.count == WG.keyLength else { return nil }
                    publicKey = Array(value)
                case WG.deviceListenPort:
                    guard let p = loadInteger(UInt16.self, value, at: 0) else { return nil }
                    port = p
                case WG.devicePeers:
                    guard let list = NetlinkAttributes.list(value) else { return nil }
                    for (_, entry) in list {
                        guard let peer = Self.peer(entry) else { return nil }
                        peers.append(peer)
                    }
                default: continue
                }
            }
            guard let name else { return nil }
            var d = device ?? WireGuardDevice(name: name, publicKey: publicKey, listenPort: port, peers: [])
            guard d.name == name else { return nil }
            for peer in peers {
                if let last = d.peers.indices.last, d.peers[last].publicKey == peer.publicKey {
                    d.peers[last].allowedIPs += peer.allowedIPs
                } else {
                    d.peers.append(peer)
                }
            }
            device = d
        }
        return device
    }

    static func peer(_ bytes: ArraySlice<UInt8>) -> WireGuardPeer? {
        guard let attributes = NetlinkAttributes.list(bytes) else { return nil }
        var peer = WireGuardPeer(publicKey: [], endpoint: nil, allowedIPs: [])
        for (type, value) in attributes {
            switch type {
            case WG.peerPublicKey:
                guard value.count == WG.keyLength else { return nil }
                peer.publicKey = Array(value)
            case WG.peerEndpoint:
                // An IPv6 endpoint (28 bytes) is not ours to read: left nil.
                guard value.count >= WG.sockaddrInSize, loadInteger(UInt16.self, value, at: 0) == UInt16(NL.afInet) else { continue }
                let s = value.startIndex
                let port = UInt16(value[s + 2]) << 8 | UInt16(value[s + 3])
                guard let address = IPv4Address(networkBytes: value[(s + 4)..<(s + 8)]) else { return nil }
                peer.endpoint = WireGuardEndpoint(address, port: port)
            case WG.peerKeepalive:
                guard let k = loadInteger(UInt16.self, value, at: 0) else { return nil }
                peer.keepaliveSeconds = k
            case WG.peerLastHandshake:
                // struct __kernel_timespec { s64 sec; s64 nsec; }
                guard let seconds = loadInteger(Int64.self, value, at: 0) else { return nil }
                peer.lastHandshakeSeconds = seconds
            case WG.peerReceived:
                guard let n = loadInteger(UInt64.self, value, at: 0) else { return nil }
                peer.receivedBytes = n
            case WG.peerSent:
                guard let n = loadInteger(UInt64.self, value, at: 0) else { return nil }
                peer.sentBytes = n
            case WG.peerAllowedIPs:
                guard let list = NetlinkAttributes.list(value) else { return nil }
                for (_, entry) in list {
                    guard let ip = NetlinkAttributes(entry) else { return nil }
                    // IPv6 entries are skipped, like the IPv6 endpoint.
                    guard ip[WG.allowedFamily].flatMap({ loadInteger(UInt16.self, $0, at: 0) }) == UInt16(NL.afInet) else { continue }
                    guard let address = ip.ipv4(WG.allowedAddress), let mask = ip.u8(WG.allowedCIDR),
                          let cidr = try? IPv4CIDR(address, prefixLength: Int(mask))
                    else { return nil }
                    peer.allowedIPs.append(cidr)
                }
            default: continue
            }
        }
        guard peer.publicKey.count == WG.keyLength else { return nil }
        return peer
    }
}
