import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
@testable import SSILinux

/// A stand-in for the cluster NIC: a dummy link, or where the kernel was
/// built without the dummy driver (CONFIG_DUMMY=n; some cloud and microVM
/// kernels) one end of a veth pair whose other end (named by the kernel) is
/// up. Either is Ethernet, takes a MAC, addresses and routes, and has
/// carrier once up. (ifb is no substitute: it refuses a MAC address.)
func addTestLink(_ netlink: inout Netlink, named name: String) throws(SystemCallError) -> NetworkLink {
    do {
        return try netlink.addLink(named: name, kind: "dummy")
    } catch where error.errno == EOPNOTSUPP {
        let link = try netlink.addLink(named: name, kind: "veth")
        for peer in try netlink.links() where peer.kind == "veth" && peer.index != link.index {
            try netlink.setUp(peer.index)
        }
        return link
    }
}

/// ip(8)'s one-line rendering of a route, from our dump, for comparing with
/// `ip -4 route show table main`. Like ip, it leaves out "proto boot",
/// ip's own default.
func ipStyle(_ r: Route, names: [Int32: String]) -> String {
    var s = r.isDefault ? "default" : "\(r.destination)"
    if let g = r.gateway { s += " via \(g)" }
    if let i = r.outputIndex { s += " dev \(names[i] ?? "?")" }
    if r.routeProtocol != .boot { s += " proto \(r.routeProtocol)" }
    switch r.scope {
    case RouteScope.link: s += " scope link"
    case RouteScope.host: s += " scope host"
    default: break
    }
    if let src = r.preferredSource { s += " src \(src)" }
    if let m = r.metric { s += " metric \(m)" }
    return s
}

/// The netlink wrapper against the real kernel, each test in a network
/// namespace of its own made for it (see `inNewNetworkNamespace`), never
/// the host's.
@Suite(.enabled(if: NetworkPrivileges.available, NetworkPrivileges.skipReason), .timeLimit(.minutes(1)))
struct NetlinkTests {
    struct Configured: Sendable {
        var kind: String?
        var mac: MACAddress
        var byName: NetworkLink?
        var byMAC: NetworkLink?
        var before: NetworkLink?
        var after: NetworkLink?
        var carrier: Bool
        var addedAddress: Bool
        var addedAddressAgain: Bool
        var addresses: [InterfaceAddress]
        var addedDefault: Bool
        var addedDefaultAgain: Bool
        var addedNetworkRoute: Bool
        var routes: [Route]
        var names: [Int32: String]
        var ipAddresses: [String]
        var ipRoutes: [String]
        var ipLink: String
    }

    /// The cluster NIC set up as ssi-init will: found by name and by MAC,
    /// up, carrier, address, routes; then what our dumps say is compared
    /// with what ip(8) says about the same namespace.
    @Test(.enabled(if: IPTool.path != nil, IPTool.skipReason))
    func configuresALinkAsIpSeesIt() async throws {
        let seen = try await inNewNetworkNamespace { () throws -> Configured in
            var nl = try Netlink()
            let made = try addTestLink(&nl, named: "d0")
            let index = made.index
            let mac = try MACAddress(parsing: "02:53:53:00:00:0a")
            try nl.setMACAddress(index, mac)
            let byName = try nl.link(named: "d0")
            // Upper case and dashes: the match is on the bytes, not the text.
            let byMAC = try nl.link(withMAC: MACAddress(parsing: "02-53-53-00-00-0A"))
            try nl.setUp(index)
            let carrier = try nl.waitForCarrier(index, timeout: .seconds(5))
            let after = try nl.link(index: index)
            let address = try IPv4Address(parsing: "10.99.0.1")
            let gateway = try IPv4Address(parsing: "10.99.0.254")
            let added = try nl.addAddress(address, prefixLength: 24, to: index)
            let addedAgain = try nl.addAddress(address, prefixLength: 24, to: index)
            let addedDefault = try nl.addDefaultRoute(via: gateway)
            let addedDefaultAgain = try nl.addDefaultRoute(via: gateway)
            let addedNetwork = try nl.addRoute(to: IPv4CIDR(parsing: "10.98.0.0/16"), via: gateway, device: index)
            let names = Dictionary(uniqueKeysWithValues: try nl.links().map { ($0.index, $0.name) })

            let ipAddresses = try ip("-o", "-4", "addr", "show", "dev", "d0")
                .split(separator: "\n").map { line -> String in
                    // "2: d0    inet 10.99.0.1/24 brd 10.99.0.255 scope global d0\ ..."
                    let words = line.split(separator: " ")
                    var s = ""
                    if let i = words.firstIndex(of: "inet") { s = String(words[i + 1]) }
                    if let i = words.firstIndex(of: "brd") { s += " brd \(words[i + 1])" }
                    return s
                }
            return Configured(
                kind: made.kind, mac: mac, byName: byName, byMAC: byMAC, before: made, after: after,
                carrier: carrier, addedAddress: added, addedAddressAgain: addedAgain,
                addresses: try nl.addresses(of: index),
                addedDefault: addedDefault, addedDefaultAgain: addedDefaultAgain, addedNetworkRoute: addedNetwork,
                routes: try nl.routes(), names: names,
                ipAddresses: ipAddresses,
                ipRoutes: try ip("-4", "route", "show", "table", "main")
                    .split(separator: "\n").map { $0.trimmingSpaces() },
                ipLink: try ip("-o", "link", "show", "dev", "d0"))
        }

        #expect(seen.kind == "dummy" || seen.kind == "veth")
        let link = try #require(seen.byName)
        #expect(link.name == "d0")
        #expect(link.kind == seen.kind)
        #expect(link.mac == seen.mac)
        #expect(link.hardwareType == 1)                          // ARPHRD_ETHER
        #expect(seen.byMAC?.index == link.index)
        #expect(seen.before?.isUp == false)
        #expect(seen.after?.isUp == true)
        #expect(seen.after?.hasCarrier == true)
        #expect(seen.carrier)

        #expect(seen.addedAddress)
        #expect(!seen.addedAddressAgain, "the second add found the address in place")
        #expect(seen.addresses.map(\.description) == ["10.99.0.1/24 brd 10.99.0.255 (index \(link.index))"])
        #expect(seen.addresses.first?.scope == RouteScope.universe)

        #expect(seen.addedDefault)
        #expect(!seen.addedDefaultAgain, "the second add found the route in place")
        #expect(seen.addedNetworkRoute)
        let routes = seen.routes.map { ipStyle($0, names: seen.names) }
        #expect(Set(routes) == [
            "default via 10.99.0.254 dev d0",
            "10.98.0.0/16 via 10.99.0.254 dev d0",
            "10.99.0.0/24 dev d0 proto kernel scope link src 10.99.0.1",
        ])
        #expect(seen.routes.filter { $0.gateway != nil }.allSatisfy {
            $0.routeProtocol == .boot && $0.scope == RouteScope.universe && $0.table == Netlink.mainTable
        })

        // The same namespace through ip(8): it sees what we made, and we
        // read what it prints.
        #expect(seen.ipAddresses == seen.addresses.map { "\($0.address) brd \($0.broadcast!)" })
        #expect(Set(seen.ipRoutes) == Set(routes))
        #expect(seen.ipLink.contains("link/ether 02:53:53:00:00:0a"), "\(seen.ipLink)")
        #expect(seen.ipLink.contains(",UP,") || seen.ipLink.contains("<UP"), "\(seen.ipLink)")
        #expect(seen.ipLink.contains("LOWER_UP"), "\(seen.ipLink)")
        #expect(seen.ipLink.contains("mtu \(link.mtu) "), "\(seen.ipLink)")
    }

    struct Carrier: Sendable {
        var ours: [String]
        var theirs: [String]
        var kind: String?
        var withoutPeer: Bool
        var waited: Double
        var withPeer: Bool
        var downError: SystemCallError?
        var mtu: Int?
        var hugeMTU: SystemCallError?
        var deleted: Bool
    }

    /// A veth pair made by ip(8) from the namespace's thread (children
    /// inherit the thread's namespace): our dump lists exactly what ip
    /// lists, and the carrier wait sees the pair's carrier come and go
    /// with the peer, timing out in bounded time when it does not.
    @Test(.enabled(if: IPTool.path != nil, IPTool.skipReason))
    func waitsForCarrierOnALinkIpMade() async throws {
        let seen = try await inNewNetworkNamespace { () throws -> Carrier in
            try ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
            var nl = try Netlink()
            let ours = try nl.links().map(\.name)
            let theirs = try ip("-o", "link", "show").split(separator: "\n").map { line in
                // "3: v0@v1: <BROADCAST,...": the name, without the peer.
                String(line.split(separator: ":")[1].trimmingSpaces().split(separator: "@")[0])
            }
            guard let v0 = try nl.link(named: "v0"), let v1 = try nl.link(named: "v1") else {
                throw SystemCallError("veth pair made by ip not found", errno: ENODEV)
            }
            try nl.setUp(v0.index)
            let start = Process.now()
            let withoutPeer = try nl.waitForCarrier(v0.index, timeout: .milliseconds(400))
            let waited = Process.now() - start
            try nl.setUp(v1.index)
            let withPeer = try nl.waitForCarrier(v0.index, timeout: .seconds(5))
            try nl.setDown(v1.index)
            let downError = failure { try nl.waitForCarrier(v1.index, timeout: .seconds(1)) }
            try nl.setMTU(v0.index, 9000)
            let mtu = try nl.link(index: v0.index)?.mtu
            let hugeMTU = failure { try nl.setMTU(v0.index, 70_000) }
            try nl.deleteLink(v0.index)                          // takes its peer along
            let deleted = try nl.link(named: "v0") == nil && nl.link(named: "v1") == nil
            return Carrier(ours: ours, theirs: theirs, kind: v0.kind, withoutPeer: withoutPeer, waited: waited,
                           withPeer: withPeer, downError: downError, mtu: mtu, hugeMTU: hugeMTU, deleted: deleted)
        }
        #expect(Set(seen.ours) == ["lo", "v0", "v1"])
        #expect(seen.ours.sorted() == seen.theirs.sorted())
        #expect(seen.kind == "veth")
        #expect(!seen.withoutPeer, "no carrier while the peer is down")
        #expect(seen.waited >= 0.35 && seen.waited < 3, "waited \(seen.waited) s for a 0.4 s timeout")
        #expect(seen.withPeer)
        #expect(seen.downError?.errno == ENETDOWN)
        #expect(seen.downError?.description.hasPrefix("wait for carrier on v1 (the link is down") == true,
                "\(String(describing: seen.downError))")
        #expect(seen.mtu == 9000)
        #expect(seen.hugeMTU?.errno == EINVAL)
        #expect(seen.hugeMTU?.description.hasPrefix("set mtu 70000 on v0") == true, "\(String(describing: seen.hugeMTU))")
        #expect(seen.deleted)
    }

    struct ManyAddresses: Sendable {
        var ours: [String]
        var theirs: [String]
        var datagrams: Int
    }

    /// 300 addresses do not fit one dump datagram (the kernel starts with
    /// about a page): the dump is read across datagrams to NLMSG_DONE, and
    /// has what ip(8) has.
    @Test(.enabled(if: IPTool.path != nil, IPTool.skipReason))
    func readsDumpsThatSpanDatagrams() async throws {
        let seen = try await inNewNetworkNamespace { () throws -> ManyAddresses in
            var nl = try Netlink()
            let d0 = try addTestLink(&nl, named: "d0").index
            try nl.setUp(d0)
            for i in 0..<300 {
                try nl.addAddress(IPv4Address(10, 100, UInt8(i / 200), UInt8(1 + i % 200)), prefixLength: 32, to: d0)
            }
            let before = nl.datagramsReceived
            let ours = try nl.addresses(of: d0).map { "\($0.address)" }
            let datagrams = nl.datagramsReceived - before
            let theirs = try ip("-o", "-4", "addr", "show", "dev", "d0").split(separator: "\n").compactMap { line in
                let words = line.split(separator: " ")
                return words.firstIndex(of: "inet").map { String(words[$0 + 1]) }
            }
            return ManyAddresses(ours: ours, theirs: theirs, datagrams: datagrams)
        }
        #expect(seen.ours.count == 300)
        #expect(Set(seen.ours).count == 300)
        #expect(Set(seen.ours) == Set(seen.theirs))
        #expect(seen.datagrams > 1, "one datagram: the multipart path was not exercised")
    }

    struct Errors: Sendable {
        var setUpMissing: SystemCallError?
        var addressMissing: SystemCallError?
        var badPrefix: SystemCallError?
        var hostBitsRoute: SystemCallError?
        var unreachableGateway: SystemCallError?
        var otherDefault: SystemCallError?
        var duplicateLink: SystemCallError?
        var unknownKind: SystemCallError?
        var missingByName: Bool
        var missingByIndex: Bool
        var tooLongName: Bool
        var unknownMAC: Bool
        var addressesAfter: [String]
    }

    /// Failures come back as errors that name the operation and the link,
    /// with the kernel's own explanation when it gives one; lookups of
    /// what is not there are nil, not errors.
    @Test("sock_diag on this kernel: a socketpair's two ends name each other, as ss -x shows them")
    func unixSocketPeers() throws {
        var fds: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var a = stat(), b = stat()
        fstat(fds[0], &a)
        fstat(fds[1], &b)
        var diag = try Netlink.socketDiagnostics()
        let peers = try diag.unixSocketPeers()
        #expect(peers[UInt32(a.st_ino)] == UInt32(b.st_ino) && peers[UInt32(b.st_ino)] == UInt32(a.st_ino), "\(a.st_ino) <-> \(b.st_ino)")
    }

    @Test func errorsNameTheOperation() async throws {
        let seen = try await inNewNetworkNamespace { () throws -> Errors in
            var nl = try Netlink()
            let missing: Int32 = 999_999
            let setUpMissing = failure { try nl.setUp(missing) }
            let address = try IPv4Address(parsing: "10.99.0.1")
            let addressMissing = failure { try nl.addAddress(address, prefixLength: 24, to: missing) }

            let d0 = try addTestLink(&nl, named: "d0").index
            let badPrefix = failure { try nl.addAddress(address, prefixLength: 33, to: d0) }
            try nl.setUp(d0)
            try nl.addAddress(address, prefixLength: 24, to: d0)
            let gateway = try IPv4Address(parsing: "10.99.0.254")
            let hostBitsRoute = failure { try nl.addRoute(to: IPv4CIDR(parsing: "10.98.0.5/16"), via: gateway) }
            let unreachableGateway = failure { try nl.addDefaultRoute(via: IPv4Address(parsing: "192.0.2.1")) }
            try nl.addDefaultRoute(via: gateway, device: d0)
            let otherDefault = failure { try nl.addDefaultRoute(via: IPv4Address(parsing: "10.99.0.253")) }
            let kind = try nl.link(index: d0)?.kind ?? "dummy"
            let duplicateLink = failure { try nl.addLink(named: "d0", kind: kind) }
            let unknownKind = failure { try nl.addLink(named: "x0", kind: "ssi-no-such-kind") }
            return Errors(
                setUpMissing: setUpMissing, addressMissing: addressMissing, badPrefix: badPrefix,
                hostBitsRoute: hostBitsRoute, unreachableGateway: unreachableGateway, otherDefault: otherDefault,
                duplicateLink: duplicateLink, unknownKind: unknownKind,
                missingByName: try nl.link(named: "nope0") == nil,
                missingByIndex: try nl.link(index: missing) == nil,
                tooLongName: try nl.link(named: "a-name-longer-than-ifnamsiz") == nil,
                unknownMAC: try nl.link(withMAC: MACAddress(parsing: "02:00:00:00:00:99")) == nil,
                addressesAfter: try nl.addresses(of: d0).map { "\($0.address)" })
        }

        #expect(seen.setUpMissing?.errno == ENODEV)
        #expect(seen.setUpMissing?.description == "set link index 999999 up: No such device (ENODEV)")
        #expect(seen.addressMissing?.errno == ENODEV)
        #expect(seen.addressMissing?.description.hasPrefix("add address 10.99.0.1/24 to link index 999999 (kernel: ") == true,
                "\(String(describing: seen.addressMissing))")
        #expect(seen.badPrefix?.errno == EINVAL)
        #expect(seen.badPrefix?.description
                == "add address 10.99.0.1/33 to d0 (prefix length 33 is not between 0 and 32): Invalid argument (EINVAL)")
        // The kernel's extended ack says why in words.
        #expect(seen.hostBitsRoute?.errno == EINVAL)
        #expect(seen.hostBitsRoute?.description.hasPrefix("add route 10.98.0.5/16 via 10.99.0.254 (kernel: ") == true,
                "\(String(describing: seen.hostBitsRoute))")
        #expect(seen.unreachableGateway?.errno == ENETUNREACH)
        #expect(seen.unreachableGateway?.description.hasPrefix("add default route via 192.0.2.1") == true,
                "\(String(describing: seen.unreachableGateway))")
        // EEXIST is tolerated only for the same route; another gateway for
        // the same destination names the one in place.
        #expect(seen.otherDefault?.errno == EEXIST)
        #expect(seen.otherDefault?.description
                == "add default route via 10.99.0.253 (the main table already has default via 10.99.0.254 dev d0): File exists (EEXIST)")
        #expect(seen.duplicateLink?.errno == EEXIST)
        #expect(seen.duplicateLink?.description.hasPrefix("create ") == true && seen.duplicateLink?.description.contains(" link d0") == true)
        #expect(seen.unknownKind?.errno == EOPNOTSUPP)
        #expect(seen.unknownKind?.description.hasPrefix("create ssi-no-such-kind link x0") == true,
                "\(String(describing: seen.unknownKind))")
        #expect(seen.missingByName)
        #expect(seen.missingByIndex)
        #expect(seen.tooLongName)
        #expect(seen.unknownMAC)
        #expect(seen.addressesAfter == ["10.99.0.1/24"])
    }

    struct Loopback: Sendable {
        var before: NetworkLink?
        var sendBefore: Int32
        var after: NetworkLink
        var again: NetworkLink
        var addresses: [InterfaceAddress]
        var echo: String?
    }

    /// `lo` starts down in a new namespace, as in the initramfs: after
    /// bringUpLoopback it is up with 127.0.0.1/8, and a datagram to
    /// 127.0.0.1 comes back, which is what corosync needs.
    @Test func bringsUpLoopback() async throws {
        let seen = try await inNewNetworkNamespace { () throws -> Loopback in
            var nl = try Netlink()
            let before = try nl.link(named: "lo")
            let sendBefore = udpEcho("x").errno
            let after = try nl.bringUpLoopback()
            let again = try nl.bringUpLoopback()
            return Loopback(before: before, sendBefore: sendBefore, after: after, again: again,
                            addresses: try nl.addresses(of: after.index), echo: udpEcho("hello lo").text)
        }
        #expect(seen.before?.isUp == false)
        #expect(seen.before?.flags.contains(.loopback) == true)
        #expect(seen.sendBefore == ENETUNREACH)
        #expect(seen.after.name == "lo")
        #expect(seen.after.isUp)
        #expect(seen.after.hasCarrier)
        #expect(seen.after.hardwareType == 772)                   // ARPHRD_LOOPBACK
        #expect(seen.again == seen.after, "idempotent")
        #expect(seen.addresses.map(\.description) == ["127.0.0.1/8 (index \(seen.after.index))"])
        #expect(seen.addresses.first?.scope == RouteScope.host)
        #expect(seen.echo == "hello lo")
    }

    /// Policy rules as the tunnel's guard sets them: the local table moved
    /// from 0 to 1, rules at 0 by input link and destination, a blackhole;
    /// what `ip -4 rule show` then lists, and the same calls again.
    @Test(.enabled(if: IPTool.path != nil, IPTool.skipReason))
    func policyRulesAsIpSeesThem() async throws {
        let (listed, again, deletedTwice) = try await inNewNetworkNamespace { () throws -> (String, [Bool], Bool) in
            var nl = try Netlink()
            let local = RoutingRule.Action.lookup(table: RoutingRule.localTable)
            let destination = try IPv4CIDR(parsing: "10.78.0.1/32")
            let rules = [RoutingRule(priority: 1, action: local),
                         RoutingRule(priority: 0, inputInterface: "lo", action: local),
                         RoutingRule(priority: 0, inputInterface: "ssi0", action: local),
                         RoutingRule(priority: 0, destination: destination, action: .blackhole),
                         RoutingRule(priority: 40, inputInterface: "d9", action: .lookup(table: 1000))]
            try nl.addRule(rules[0])
            let deleted = try nl.deleteRule(RoutingRule(priority: 0, action: local))
            let deletedAgain = try nl.deleteRule(RoutingRule(priority: 0, action: local))
            for rule in rules.dropFirst() { try nl.addRule(rule) }
            let again = try rules.map { rule throws(SystemCallError) in try nl.addRule(rule) }
            return (try ip("-4", "rule", "show"), again, deleted && !deletedAgain)
        }
        #expect(deletedTwice, "the first delete finds the rule, the second nothing")
        #expect(again == [false, false, false, false, false], "each rule is there once")
        // ip(8) marks a rule whose input link does not exist "[detached]".
        let lines = listed.split(separator: "\n").map { $0.replacingOccurrences(of: "\t", with: " ")
            .replacingOccurrences(of: " [detached]", with: "").trimmingCharacters(in: .whitespaces) }
        #expect(lines == ["0: from all iif lo lookup local", "0: from all iif ssi0 lookup local",
                          "0: from all to 10.78.0.1 blackhole", "1: from all lookup local",
                          "40: from all iif d9 lookup 1000",
                          "32766: from all lookup main", "32767: from all lookup default"], "\(listed)")
        // Our own rendering says the same.
        #expect("\(RoutingRule(priority: 0, destination: try IPv4CIDR(parsing: "10.78.0.1/32"), action: .blackhole))"
                == "0: from all to 10.78.0.1 blackhole")
    }
}

/// Sends a datagram to itself over 127.0.0.1: the text that came back, or
/// the errno of the first call that failed.
func udpEcho(_ text: String) -> (text: String?, errno: Int32) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { return (nil, errno) }
    defer { close(fd) }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            bind(fd, p, length) == 0 && getsockname(fd, p, &length) == 0 ? 0 : -1
        }
    }
    if rc != 0 { return (nil, errno) }
    let bytes = Array(text.utf8)
    let sent = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            sendto(fd, bytes, bytes.count, 0, p, length)
        }
    }
    if sent < 0 { return (nil, errno) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = recv(fd, &buffer, buffer.count, 0)
    if n < 0 { return (nil, errno) }
    return (String(decoding: buffer[0..<n], as: UTF8.self), 0)
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
