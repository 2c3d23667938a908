// The address types of the cluster network: the cluster file's node
// addresses and MACs, and what the netlink wrapper configures at boot.
// Parsed strictly and in plain Swift: no Foundation (PID 1), and no
// inet_pton, whose 0 return says only "invalid" where a boot message or a
// config check should say what is wrong with the text. A config error is
// far cheaper than a node that configures the wrong address at boot.

/// A string that is not an address, with the reason: `invalid IPv4 address
/// "10.0.0.256": 256 is more than 255`.
public struct AddressParseError: Error, CustomStringConvertible, Sendable, Equatable {
    /// "IPv4 address", "IPv4 address/prefix", "IPv4 network", "MAC address".
    public var kind: String
    public var input: String
    public var reason: String

    public init(kind: String, input: String, reason: String) {
        self.kind = kind
        self.input = input
        self.reason = reason
    }

    /// The input and the reason (which quotes parts of it) are escaped:
    /// they come from files and command lines, and reach terminals.
    public var description: String { printable("invalid \(kind) \"\(input)\": \(reason)") }
}

/// An IPv4 address. `value` is in host order (10.0.0.1 is 0x0A00_0001);
/// on the wire the octets go in network order, see `octets`.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Dotted decimal, exactly four numbers 0...255. Leading zeros are
    /// refused: inet_aton reads "010" as octal 8, and a cluster file that
    /// means different things to different tools is worse than an error.
    public init(parsing text: String) throws(AddressParseError) {
        func fail(_ reason: String) -> AddressParseError {
            AddressParseError(kind: "IPv4 address", input: text, reason: reason)
        }
        if text.isEmpty { throw fail("empty") }
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else {
            throw fail("expected four numbers separated by dots, found \(parts.count) part\(parts.count == 1 ? "" : "s")")
        }
        var value: UInt32 = 0
        for part in parts {
            let s = String(decoding: part, as: UTF8.self)
            if part.isEmpty { throw fail("empty number between dots") }
            guard part.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw fail("\"\(s)\" is not a decimal number")
            }
            if part.count > 1 && part.first == UInt8(ascii: "0") {
                throw fail("\"\(s)\" has a leading zero (octal is not accepted)")
            }
            // At most three digits keeps the arithmetic far from overflow.
            guard part.count <= 3, let n = UInt32(s), n <= 255 else { throw fail("\(s) is more than 255") }
            value = value << 8 | n
        }
        self.value = value
    }

    /// From four bytes in network order (an IFA_LOCAL or RTA_GATEWAY payload).
    package init?(networkBytes bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The four octets in network order, as they go on the wire.
    public var octets: [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    public static let any = IPv4Address(0)
    public static let loopback = IPv4Address(127, 0, 0, 1)

    /// 127.0.0.0/8: such addresses get host scope, like the kernel's own 127.0.0.1.
    public var isLoopback: Bool { value >> 24 == 127 }
}

/// An address with a prefix length, "10.77.0.1/24": an interface address or
/// (with the host bits zero, see `init(parsingNetwork:)` and `network`) a
/// network.
public struct IPv4CIDR: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    /// 0...32, checked by every public initializer.
    public private(set) var prefixLength: Int

    public init(_ address: IPv4Address, prefixLength: Int) throws(AddressParseError) {
        guard (0...32).contains(prefixLength) else {
            throw AddressParseError(kind: "IPv4 address/prefix", input: "\(address)/\(prefixLength)",
                                    reason: "prefix length \(prefixLength) is not between 0 and 32")
        }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// For lengths already known to be in range (a kernel reply's u8, a
    /// constant, a loop over 8...24).
    package init(unchecked address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// "10.77.0.1/24", an interface address. The prefix length is required:
    /// a bare address could mean /32 or the class-based guess, and either
    /// guess breaks a cluster network silently.
    public init(parsing text: String) throws(AddressParseError) {
        self = try IPv4CIDR(parsing: text, kind: "IPv4 address/prefix", example: "10.77.0.1/24")
    }

    /// "10.77.0.0/24", a network: the address is the network itself, and
    /// host bits set are an error naming the network the text probably
    /// meant ("10.77.0.1/24" is usually a pasted interface address).
    public init(parsingNetwork text: String) throws(AddressParseError) {
        let cidr = try IPv4CIDR(parsing: text, kind: "IPv4 network", example: "10.77.0.0/24")
        let network = cidr.network
        guard network == cidr else {
            throw AddressParseError(kind: "IPv4 network", input: text,
                                    reason: "host bits are set: the network is \(network)")
        }
        self = cidr
    }

    private init(parsing text: String, kind: String, example: String) throws(AddressParseError) {
        func fail(_ reason: String) -> AddressParseError {
            AddressParseError(kind: kind, input: text, reason: reason)
        }
        let halves = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard halves.count == 2 else { throw fail("no prefix length (write it as \(example))") }
        let address: IPv4Address
        do {
            address = try IPv4Address(parsing: String(halves[0]))
        } catch {
            throw fail(error.reason)
        }
        let p = halves[1]
        guard !p.isEmpty, p.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              p.count <= 2, let n = Int(p), n <= 32
        else { throw fail("prefix length \"\(p)\" is not a number between 0 and 32") }
        self.address = address
        self.prefixLength = n
    }

    /// 255.255.255.0 for /24.
    public var netmask: IPv4Address {
        IPv4Address(prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength))
    }

    /// The network itself, host bits cleared: 10.77.0.0/24 for 10.77.0.5/24.
    public var network: IPv4CIDR {
        var n = self
        n.address = IPv4Address(address.value & netmask.value)
        return n
    }

    /// The directed broadcast address; none for /31 (RFC 3021 point to
    /// point) and /32, where every address is a host.
    public var broadcast: IPv4Address? {
        prefixLength >= 31 ? nil : IPv4Address(address.value | ~netmask.value)
    }

    public func contains(_ a: IPv4Address) -> Bool {
        a.value & netmask.value == address.value & netmask.value
    }

    /// An address a host may use: in the network, and (for /30 and wider)
    /// not its network or broadcast address.
    public func isHostAddress(_ a: IPv4Address) -> Bool {
        guard contains(a) else { return false }
        if prefixLength >= 31 { return true }
        let host = a.value & ~netmask.value
        return host != 0 && host != ~netmask.value
    }

    public var description: String { "\(address)/\(prefixLength)" }

    /// 0.0.0.0/0.
    public static let defaultRoute = IPv4CIDR(unchecked: .any, prefixLength: 0)
}

/// A link-layer address: six bytes for Ethernet; other link types report
/// other lengths, so `init(_:)` keeps the bytes as the kernel gives them.
/// Printed lower case with colons (the form of /sys/class/net/IF/address).
public struct MACAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var bytes: [UInt8]

    /// Any length, e.g. netlink's IFLA_ADDRESS.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Six two-digit hexadecimal bytes separated by ":" or "-", either case
    /// ("52:54:00:AB:cd:01", "52-54-00-ab-cd-01").
    public init(parsing text: String) throws(AddressParseError) {
        func fail(_ reason: String) -> AddressParseError {
            AddressParseError(kind: "MAC address", input: text, reason: reason)
        }
        let separator: Character = text.contains("-") ? "-" : ":"
        let parts = text.split(separator: separator, omittingEmptySubsequences: false)
        guard parts.count == 6 else {
            throw fail("expected six hexadecimal pairs separated by \":\", found \(parts.count) part\(parts.count == 1 ? "" : "s")")
        }
        var bytes: [UInt8] = []
        for part in parts {
            // UInt8(_:radix:) also takes a sign ("+f"): digits only.
            guard (1...2).contains(part.count), part.allSatisfy(\.isHexDigit), let b = UInt8(part, radix: 16) else {
                throw fail("\"\(part)\" is not a hexadecimal byte")
            }
            guard part.count == 2 else { throw fail("\"\(part)\" is not two hexadecimal digits") }
            bytes.append(b)
        }
        self.bytes = bytes
    }

    /// The group bit: a multicast or broadcast address, never a NIC's.
    public var isMulticast: Bool { (bytes.first ?? 0) & 1 != 0 }
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// Lower case with colons, as ip(8) and /sys/class/net/*/address print it.
    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool {
        a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}
