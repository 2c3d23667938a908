// What the rtnetlink dumps report, decoded from the kernel's messages.
// The decoders return nil for a message too short for its fixed header or
// with attribute lengths out of bounds; the caller turns that into EBADMSG.

public import SSICore

/// A network interface as RTM_NEWLINK describes it.
public struct NetworkLink: Sendable, Equatable, CustomStringConvertible {
    /// The ifi_flags bits of <linux/if.h>.
    public struct Flags: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let up = Flags(rawValue: 0x1)
        public static let broadcast = Flags(rawValue: 0x2)
        public static let loopback = Flags(rawValue: 0x8)
        public static let pointToPoint = Flags(rawValue: 0x10)
        /// Operationally up (RFC 2863 "up"): administratively up and with carrier.
        public static let running = Flags(rawValue: 0x40)
        public static let noARP = Flags(rawValue: 0x80)
        public static let promiscuous = Flags(rawValue: 0x100)
        public static let multicast = Flags(rawValue: 0x1000)
        /// Carrier: the driver sees a link partner. Only reported while up.
        public static let lowerUp = Flags(rawValue: 0x10000)
        public static let dormant = Flags(rawValue: 0x20000)

        private static let names: [(Flags, String)] = [
            (.loopback, "LOOPBACK"), (.broadcast, "BROADCAST"), (.pointToPoint, "POINTOPOINT"),
            (.multicast, "MULTICAST"), (.noARP, "NOARP"), (.promiscuous, "PROMISC"), (.up, "UP"),
            (.running, "RUNNING"), (.lowerUp, "LOWER_UP"), (.dormant, "DORMANT"),
        ]

        /// "<BROADCAST,MULTICAST,UP,LOWER_UP>", in ip(8)'s order.
        public var description: String {
            "<" + Self.names.filter { contains($0.0) }.map(\.1).joined(separator: ",") + ">"
        }
    }

    /// IFLA_OPERSTATE, RFC 2863.
    public enum OperationalState: UInt8, Sendable {
        case unknown = 0, notPresent, down, lowerLayerDown, testing, dormant, up
    }

    public var index: Int32
    public var name: String
    /// IFLA_ADDRESS; absent for links without one (ipip, wireguard).
    public var mac: MACAddress?
    public var flags: Flags
    public var mtu: Int
    /// IFLA_INFO_KIND: "dummy", "veth", "bridge", "vlan"... nil for a
    /// plain hardware driver (virtio_net, e1000e), which has no link ops.
    public var kind: String?
    /// ifi_type, an ARPHRD_* value: 1 Ethernet, 772 loopback.
    public var hardwareType: UInt16
    public var operationalState: OperationalState?

    public var isUp: Bool { flags.contains(.up) }
    public var hasCarrier: Bool { flags.contains(.lowerUp) }

    public init(index: Int32, name: String, mac: MACAddress?, flags: Flags, mtu: Int, kind: String?,
                hardwareType: UInt16, operationalState: OperationalState?) {
        self.index = index
        self.name = name
        self.mac = mac
        self.flags = flags
        self.mtu = mtu
        self.kind = kind
        self.hardwareType = hardwareType
        self.operationalState = operationalState
    }

    init?(_ message: NetlinkMessage) {
        let p = message.payload
        guard message.type == NL.newLink,
              let type = loadInteger(UInt16.self, p, at: 2),
              let index = loadInteger(Int32.self, p, at: 4),
              let flags = loadInteger(UInt32.self, p, at: 8),
              p.count >= NL.ifinfoSize,
              let attributes = NetlinkAttributes(p.dropFirst(NL.ifinfoSize)),
              let name = attributes.string(NL.iflaIfname)
        else { return nil }
        self.index = index
        self.name = name
        self.mac = attributes[NL.iflaAddress].map { MACAddress(Array($0)) }
        self.flags = Flags(rawValue: flags)
        self.mtu = attributes.u32(NL.iflaMTU).map { Int($0) } ?? 0
        self.kind = attributes.nested(NL.iflaLinkinfo)?.string(NL.iflaInfoKind)
        self.hardwareType = type
        self.operationalState = attributes.u8(NL.iflaOperstate).flatMap(OperationalState.init(rawValue:))
    }

    /// "2: eth0 52:54:00:12:34:56 <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500".
    public var description: String {
        var s = "\(index): \(name)"
        if let mac { s += " \(mac)" }
        s += " \(flags) mtu \(mtu)"
        if let kind { s += " (\(kind))" }
        return s
    }
}

/// RT_SCOPE_* of <linux/rtnetlink.h>, for addresses and routes.
public enum RouteScope {
    public static let universe: UInt8 = 0
    public static let link: UInt8 = 253
    public static let host: UInt8 = 254
}

/// An IPv4 address on a link, as RTM_NEWADDR describes it.
public struct InterfaceAddress: Sendable, Equatable, CustomStringConvertible {
    public var index: Int32
    /// IFA_LOCAL (the address itself) with the prefix length.
    public var address: IPv4CIDR
    public var broadcast: IPv4Address?
    /// IFA_LABEL: the link name, or an alias like "eth0:1".
    public var label: String?
    public var scope: UInt8

    init?(_ message: NetlinkMessage) {
        let p = message.payload
        guard let family = loadInteger(UInt8.self, p, at: 0), family == NL.afInet,
              let prefix = loadInteger(UInt8.self, p, at: 1), prefix <= 32,
              let scope = loadInteger(UInt8.self, p, at: 3),
              let index = loadInteger(UInt32.self, p, at: 4),
              let attributes = NetlinkAttributes(p.dropFirst(NL.ifaddrSize)),
              // IFA_ADDRESS is the peer on point-to-point links; IFA_LOCAL is ours.
              let local = attributes.ipv4(NL.ifaLocal) ?? attributes.ipv4(NL.ifaAddress)
        else { return nil }
        self.index = Int32(bitPattern: index)
        self.address = IPv4CIDR(unchecked: local, prefixLength: Int(prefix))
        self.broadcast = attributes.ipv4(NL.ifaBroadcast)
        self.label = attributes.string(NL.ifaLabel)
        self.scope = scope
    }

    /// "10.99.0.1/24 brd 10.99.0.255 (index 2)".
    public var description: String {
        var s = "\(address)"
        if let broadcast { s += " brd \(broadcast)" }
        return s + " (index \(index))"
    }
}

/// rtm_protocol: who put a route there. The names are ip(8)'s.
public struct RouteProtocol: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let redirect = RouteProtocol(rawValue: 1)
    /// The kernel's own: the connected route of an address.
    public static let kernel = RouteProtocol(rawValue: 2)
    /// Configured at boot, what this module adds.
    public static let boot = RouteProtocol(rawValue: 3)
    public static let `static` = RouteProtocol(rawValue: 4)
    public static let dhcp = RouteProtocol(rawValue: 16)

    public var description: String {
        switch rawValue {
        case 1: return "redirect"
        case 2: return "kernel"
        case 3: return "boot"
        case 4: return "static"
        case 16: return "dhcp"
        default: return String(rawValue)
        }
    }
}

/// An IPv4 route, as RTM_NEWROUTE describes it.
public struct Route: Sendable, Equatable, CustomStringConvertible {
    /// 0.0.0.0/0 for the default route.
    public var destination: IPv4CIDR
    public var gateway: IPv4Address?
    /// RTA_OIF: the link the route leaves by.
    public var outputIndex: Int32?
    public var preferredSource: IPv4Address?
    /// RTA_PRIORITY, the metric.
    public var metric: UInt32?
    public var table: UInt32
    public var routeProtocol: RouteProtocol
    public var scope: UInt8
    /// RTN_*: 1 unicast, 2 local, 3 broadcast, 6 blackhole, 7 unreachable.
    public var type: UInt8
    public var tos: UInt8

    public var isDefault: Bool { destination.prefixLength == 0 }

    init?(_ message: NetlinkMessage) {
        let p = message.payload
        guard let family = loadInteger(UInt8.self, p, at: 0), family == NL.afInet,
              let dstLength = loadInteger(UInt8.self, p, at: 1), dstLength <= 32,
              let tos = loadInteger(UInt8.self, p, at: 3),
              let table = loadInteger(UInt8.self, p, at: 4),
              let proto = loadInteger(UInt8.self, p, at: 5),
              let scope = loadInteger(UInt8.self, p, at: 6),
              let type = loadInteger(UInt8.self, p, at: 7),
              p.count >= NL.rtmsgSize,
              let attributes = NetlinkAttributes(p.dropFirst(NL.rtmsgSize))
        else { return nil }
        self.destination = IPv4CIDR(unchecked: attributes.ipv4(NL.rtaDst) ?? .any, prefixLength: Int(dstLength))
        self.gateway = attributes.ipv4(NL.rtaGateway)
        self.outputIndex = attributes.u32(NL.rtaOIF).map { Int32(bitPattern: $0) }
        self.preferredSource = attributes.ipv4(NL.rtaPrefSrc)
        self.metric = attributes.u32(NL.rtaPriority)
        // rtm_table is a byte; tables past 255 come only in RTA_TABLE.
        self.table = attributes.u32(NL.rtaTable) ?? UInt32(table)
        self.routeProtocol = RouteProtocol(rawValue: proto)
        self.scope = scope
        self.type = type
        self.tos = tos
    }

    /// "default via 10.99.0.254 dev index 2 proto boot", ip(8)'s order.
    public var description: String {
        var s = isDefault ? "default" : "\(destination)"
        if let gateway { s += " via \(gateway)" }
        if let outputIndex { s += " dev index \(outputIndex)" }
        s += " proto \(routeProtocol)"
        if let preferredSource { s += " src \(preferredSource)" }
        if let metric { s += " metric \(metric)" }
        return s
    }
}

/// An IPv4 routing policy rule, as `ip rule` writes one: a priority, an
/// optional input interface and destination, and a table to look up or a
/// blackhole.
public struct RoutingRule: Sendable, Equatable, CustomStringConvertible {
    public enum Action: Sendable, Equatable {
        case lookup(table: UInt32)
        case blackhole
    }

    /// The kernel's table of local and broadcast addresses.
    public static let localTable: UInt32 = 255

    public var priority: UInt32
    /// Matches packets that arrived on this link ("lo": the node's own).
    public var inputInterface: String?
    public var destination: IPv4CIDR?
    public var action: Action

    public init(priority: UInt32, inputInterface: String? = nil, destination: IPv4CIDR? = nil, action: Action) {
        self.priority = priority
        self.inputInterface = inputInterface
        self.destination = destination
        self.action = action
    }

    /// ip(8)'s words for the rule.
    public var description: String {
        var s = "\(priority): from all"
        if let inputInterface { s += " iif \(inputInterface)" }
        if let destination { s += " to \(destination.prefixLength == 32 ? "\(destination.address)" : "\(destination)")" }
        switch action {
        case .lookup(let table): s += " lookup " + (table == Self.localTable ? "local" : "\(table)")
        case .blackhole: s += " blackhole"
        }
        return s
    }
}
