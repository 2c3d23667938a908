#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// An rtnetlink (NETLINK_ROUTE) socket: what `ip link`, `ip addr` and
/// `ip route` do, for ssi-init, which configures the cluster interface as
/// PID 1 with no ip(8) in the image and no `ip=` autoconfiguration in the
/// Debian kernel.
///
/// Every request asks for an acknowledgement and waits for the reply with
/// its own sequence number, so a failure is reported by the operation that
/// caused it, in words: "add address 10.0.0.1/24 to eth0: File exists
/// (EEXIST)". When the kernel explains itself (extended ack), its sentence
/// is added: "add route 10.1.0.5/16 via 10.99.0.254 (kernel: Invalid prefix
/// for given prefix length): Invalid argument (EINVAL)".
///
/// Noncopyable: one owner, one close. Requests carry sequence numbers, so
/// the methods are `mutating`; open one with `var netlink = try Netlink()`.
/// A socket talks to the network namespace of the thread that opened it.
public struct Netlink: ~Copyable {
    private let descriptor: Descriptor
    private var fd: Int32 { descriptor.rawValue }
    /// The address the kernel gave the socket; its replies carry it.
    private let portID: UInt32
    private var sequence: UInt32 = 0
    private var buffer: [UInt8]
    /// Datagrams read so far: lets tests see a dump really came in parts.
    private(set) var datagramsReceived = 0

    /// One datagram. The kernel grows dump datagrams up to 32 KiB; a
    /// bigger single message (a link with hundreds of VFs) fails cleanly
    /// with EMSGSIZE instead of being cut.
    static let receiveBufferSize = 64 * 1024
    /// The longest wait for one reply datagram. The kernel answers
    /// rtnetlink in microseconds; this only stops a lost reply from
    /// hanging boot.
    static let replyTimeoutSeconds = 5
    /// Datagrams read for one request before giving up: a dump of a
    /// boot-time machine is a handful, a runaway one must not loop forever.
    static let maxDatagramsPerRequest = 16384
    /// Attempts at a dump the kernel reports as interrupted by a change.
    static let dumpAttempts = 5

    /// The main routing table (RT_TABLE_MAIN), where `ip route` looks.
    public static let mainTable: UInt32 = 254

    public init() throws(SystemCallError) { try self.init(protocol: NL.netlinkRoute) }

    /// A sock_diag socket (NETLINK_SOCK_DIAG): what `ss` asks, for the
    /// process agent (which unix sockets are connected to which).
    public static func socketDiagnostics() throws(SystemCallError) -> Netlink { try Netlink(protocol: NL.netlinkSockDiag) }

    init(protocol family: Int32) throws(SystemCallError) {
        let descriptor = Descriptor(owning: try syscall("open netlink socket") {
            socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), family)
        })
        let fd = descriptor.rawValue
        var one: Int32 = 1
        let intSize = socklen_t(MemoryLayout<Int32>.size)
        // Both best effort (Linux 4.12 and 4.3): extended acks give
        // error messages in words, capped acks stop the kernel echoing
        // each failed request back.
        _ = setsockopt(fd, NL.solNetlink, NL.optExtAck, &one, intSize)
        _ = setsockopt(fd, NL.solNetlink, NL.optCapAck, &one, intSize)
        var tv = timeval(tv_sec: Self.replyTimeoutSeconds, tv_usec: 0)
        try syscall("set netlink receive timeout") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        // struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; }:
        // pid 0 lets the kernel choose, no multicast groups.
        var address = sockaddr_storage()
        address.ss_family = sa_family_t(AF_NETLINK)
        let nlSize = socklen_t(12)
        try syscall("bind netlink socket") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, nlSize) }
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try syscall("getsockname netlink socket") {
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        self.portID = withUnsafeBytes(of: address) { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
        self.descriptor = descriptor
        self.buffer = [UInt8](repeating: 0, count: Self.receiveBufferSize)
    }

    // MARK: Unix sockets (sock_diag)

    /// SOCK_DIAG_BY_FAMILY for every unix socket, with its peer.
    static func unixPeersRequest() -> NetlinkRequest {
        var r = NetlinkRequest(type: NL.sockDiagByFamily, flags: NL.dump)
        r.append(UInt8(AF_UNIX))
        r.append(UInt8(0))
        r.append(UInt16(0))
        r.append(UInt32.max)                 // every state
        r.append(UInt32(0))                  // any inode
        r.append(NL.unixDiagShowPeer)
        r.append(UInt32.max)                 // no cookie
        r.append(UInt32.max)
        return r
    }

    /// One socket of the dump and its peer (nil: none), or nil when the
    /// message is too short to be one.
    static func unixPeer(_ m: NetlinkMessage) -> (inode: UInt32, peer: UInt32?)? {
        guard let inode = loadInteger(UInt32.self, m.payload, at: 4), m.payload.count >= NL.unixDiagMessageSize,
              let attributes = NetlinkAttributes(m.payload.dropFirst(NL.unixDiagMessageSize)) else { return nil }
        return (inode, attributes.u32(NL.unixDiagPeer))
    }

    /// Every connected unix socket of this network namespace, by inode,
    /// with the inode of its peer (what `ss -x` shows): a socketpair's
    /// two ends name each other. Needs the unix_diag module, which the
    /// kernel loads on the first request.
    public mutating func unixSocketPeers() throws(SystemCallError) -> [UInt32: UInt32] {
        var peers: [UInt32: UInt32] = [:]
        for m in try dump(Self.unixPeersRequest(), "list unix sockets") {
            guard let (inode, peer) = Self.unixPeer(m) else { throw SystemCallError("list unix sockets (malformed reply)", errno: EBADMSG) }
            if let peer, peer != 0 { peers[inode] = peer }
        }
        return peers
    }

    // MARK: Links

    /// Every link in the namespace (RTM_GETLINK dump), in index order.
    public mutating func links() throws(SystemCallError) -> [NetworkLink] {
        let messages = try dump(Self.linkRequest(type: NL.getLink, flags: NL.dump, index: 0), "list links")
        var links: [NetworkLink] = []
        for m in messages {
            guard let link = NetworkLink(m) else { throw SystemCallError("list links (malformed reply)", errno: EBADMSG) }
            links.append(link)
        }
        return links.sorted { $0.index < $1.index }
    }

    /// The link with this index, or nil if there is none.
    public mutating func link(index: Int32) throws(SystemCallError) -> NetworkLink? {
        // Index 0 would ask the kernel to look up by name (EINVAL without one).
        guard index > 0 else { return nil }
        return try getLink(Self.linkRequest(type: NL.getLink, flags: 0, index: index), "look up link index \(index)")
    }

    /// The link with this name, or nil if there is none.
    public mutating func link(named name: String) throws(SystemCallError) -> NetworkLink? {
        // IFNAMSIZ is 16 with the NUL; the kernel answers EINVAL for a
        // longer name, but "no such link" is the truth.
        guard !name.isEmpty, name.utf8.count < 16 else { return nil }
        var request = Self.linkRequest(type: NL.getLink, flags: 0, index: 0)
        request.attribute(NL.iflaIfname, string: name)
        return try getLink(request, "look up link \(name)")
    }

    /// The link with this hardware address. Bridges, bonds and VLANs take
    /// the MAC of a port, so several links can share one: the physical
    /// link (the one without a kind) wins, then the lowest index.
    public mutating func link(withMAC mac: MACAddress) throws(SystemCallError) -> NetworkLink? {
        try links().filter { $0.mac == mac }.min { a, b in
            if (a.kind == nil) != (b.kind == nil) { return a.kind == nil }
            return a.index < b.index
        }
    }

    public mutating func setUp(_ index: Int32) throws(SystemCallError) {
        try setFlags(index, up: true)
    }

    public mutating func setDown(_ index: Int32) throws(SystemCallError) {
        try setFlags(index, up: false)
    }

    /// Below 68 the kernel accepts the MTU on some links (dummy, ifb) but
    /// silently drops their whole IPv4 configuration, addresses included.
    public mutating func setMTU(_ index: Int32, _ mtu: Int) throws(SystemCallError) {
        guard let value = UInt32(exactly: mtu) else {
            throw SystemCallError("set mtu \(mtu) on \(linkLabel(index))", errno: EINVAL)
        }
        var request = Self.linkRequest(type: NL.newLink, flags: 0, index: index)
        request.attribute(NL.iflaMTU, u32: value)
        try perform(request, link: index) { "set mtu \(mtu) on \($0)" }
    }

    public mutating func setMACAddress(_ index: Int32, _ mac: MACAddress) throws(SystemCallError) {
        var request = Self.linkRequest(type: NL.newLink, flags: 0, index: index)
        request.attribute(NL.iflaAddress, mac.bytes)
        try perform(request, link: index) { "set MAC address \(mac) on \($0)" }
    }

    /// Creates a link of a kind that needs no further parameters ("dummy",
    /// "ifb", "bridge", "veth" with a kernel-named peer): what tests and
    /// `ip link add NAME type KIND` need. Fails with EEXIST if the name is
    /// taken and EOPNOTSUPP if the kernel has no such kind.
    @discardableResult
    public mutating func addLink(named name: String, kind: String) throws(SystemCallError) -> NetworkLink {
        let operation = "create \(kind) link \(name)"
        var request = Self.linkRequest(type: NL.newLink, flags: NL.create | NL.exclusive, index: 0)
        request.attribute(NL.iflaIfname, string: name)
        request.nested(NL.iflaLinkinfo) { $0.attribute(NL.iflaInfoKind, string: kind) }
        try perform(request, operation)
        guard let link = try link(named: name) else {
            throw SystemCallError("\(operation) (gone right after it was made)", errno: ENODEV)
        }
        return link
    }

    public mutating func deleteLink(_ index: Int32) throws(SystemCallError) {
        try perform(Self.linkRequest(type: NL.delLink, flags: 0, index: index), link: index) { "delete \($0)" }
    }

    /// Polls the link until it reports carrier (IFF_LOWER_UP) or `timeout`
    /// passes; true if it did. virtio-net has carrier as soon as it is up,
    /// a real NIC negotiates for a second or three. The link must be up:
    /// the kernel reports no carrier on a down link, however long one
    /// waits, so that is an error (ENETDOWN) rather than a timeout.
    public mutating func waitForCarrier(_ index: Int32, timeout: Duration) throws(SystemCallError) -> Bool {
        let (s, atto) = timeout.components
        let deadline = Process.now() + Double(s) + Double(atto) / 1e18
        // The deadline bounds the loop; the count bounds it too should the
        // clock misbehave (100 ms steps, an hour at most).
        for _ in 0..<36_000 {
            guard let link = try link(index: index) else {
                throw SystemCallError("wait for carrier on link index \(index)", errno: ENODEV)
            }
            if !link.isUp {
                throw SystemCallError("wait for carrier on \(link.name) (the link is down; set it up first)", errno: ENETDOWN)
            }
            if link.hasCarrier { return true }
            let left = deadline - Process.now()
            if left <= 0 { return false }
            Process.sleep(milliseconds: max(1, min(100, Int(left * 1000))))
        }
        return false
    }

    /// Sets `lo` up and makes sure it has 127.0.0.1/8, which the kernel
    /// adds itself when loopback comes up: corosync and everything that
    /// talks to itself over 127.0.0.1 needs it, and nothing else in an
    /// initramfs would bring it up. Returns the link as it is now.
    @discardableResult
    public mutating func bringUpLoopback() throws(SystemCallError) -> NetworkLink {
        var found = try link(named: "lo")
        if found == nil { found = try links().first { $0.flags.contains(.loopback) } }
        guard let lo = found else { throw SystemCallError("bring up loopback (no lo link)", errno: ENODEV) }
        if !lo.isUp { try setUp(lo.index) }
        if try !addresses(of: lo.index).contains(where: { $0.address.address == .loopback }) {
            try addAddress(.loopback, prefixLength: 8, to: lo.index)
        }
        return try link(index: lo.index) ?? lo
    }

    // MARK: Addresses

    /// Adds an IPv4 address (RTM_NEWADDR with IFA_LOCAL, IFA_ADDRESS and,
    /// below /31, IFA_BROADCAST, as `ip addr add A/N brd + dev D` does).
    /// Returns false if the address was already there with this prefix
    /// length: boot steps run again after an emergency shell, and the
    /// state they want is what counts. Other conflicts still throw.
    @discardableResult
    public mutating func addAddress(_ address: IPv4Address, prefixLength: Int, to index: Int32) throws(SystemCallError) -> Bool {
        let cidr: IPv4CIDR
        do {
            cidr = try IPv4CIDR(address, prefixLength: prefixLength)
        } catch {
            throw SystemCallError("add address \(address)/\(prefixLength) to \(linkLabel(index)) (\(error.reason))", errno: EINVAL)
        }
        return try addAddress(cidr, to: index)
    }

    @discardableResult
    public mutating func addAddress(_ cidr: IPv4CIDR, to index: Int32) throws(SystemCallError) -> Bool {
        var request = NetlinkRequest(type: NL.newAddr, flags: NL.create | NL.exclusive)
        request.append(NL.afInet)
        request.append(UInt8(cidr.prefixLength))
        request.append(UInt8(0))                                   // ifa_flags: the kernel sets PERMANENT
        request.append(cidr.address.isLoopback ? RouteScope.host : RouteScope.universe)
        request.append(UInt32(bitPattern: index))
        request.attribute(NL.ifaLocal, cidr.address.octets)
        request.attribute(NL.ifaAddress, cidr.address.octets)
        if let broadcast = cidr.broadcast { request.attribute(NL.ifaBroadcast, broadcast.octets) }
        do {
            try perform(request, link: index) { "add address \(cidr) to \($0)" }
            return true
        } catch where error.errno == EEXIST {
            if try addresses(of: index).contains(where: { $0.address == cidr }) { return false }
            throw error
        }
    }

    /// The IPv4 addresses (RTM_GETADDR dump), of one link or of all.
    public mutating func addresses(of index: Int32? = nil) throws(SystemCallError) -> [InterfaceAddress] {
        var request = NetlinkRequest(type: NL.getAddr, flags: NL.dump)
        request.append(NL.afInet)
        request.append([UInt8](repeating: 0, count: NL.ifaddrSize - 1))
        let operation = index.map { "list addresses of link index \($0)" } ?? "list addresses"
        var result: [InterfaceAddress] = []
        for m in try dump(request, operation) {
            guard let a = InterfaceAddress(m) else { throw SystemCallError("\(operation) (malformed reply)", errno: EBADMSG) }
            // Without NETLINK_GET_STRICT_CHK the kernel ignores a filter in
            // the request and sends all; filtering here works everywhere.
            if index == nil || a.index == index { result.append(a) }
        }
        return result
    }

    // MARK: Routes

    /// Adds a unicast route in the main table, protocol "boot", universe
    /// scope, like `ip route add DEST via GATEWAY [dev D]`. The gateway must
    /// be on a connected network (add the address first). Returns false if
    /// the same route was already there; a route to the same destination
    /// through another gateway still fails with EEXIST, naming the one in
    /// place.
    @discardableResult
    public mutating func addRoute(to destination: IPv4CIDR, via gateway: IPv4Address, device index: Int32? = nil) throws(SystemCallError) -> Bool {
        var request = NetlinkRequest(type: NL.newRoute, flags: NL.create | NL.exclusive)
        request.append(NL.afInet)
        request.append(UInt8(destination.prefixLength))
        request.append(UInt8(0))                                   // rtm_src_len
        request.append(UInt8(0))                                   // rtm_tos
        request.append(UInt8(Self.mainTable))
        request.append(RouteProtocol.boot.rawValue)
        request.append(RouteScope.universe)
        request.append(NL.rtnUnicast)
        request.append(UInt32(0))                                  // rtm_flags
        if destination.prefixLength > 0 { request.attribute(NL.rtaDst, destination.address.octets) }
        request.attribute(NL.rtaGateway, gateway.octets)
        if let index { request.attribute(NL.rtaOIF, u32: UInt32(bitPattern: index)) }
        let what = destination.prefixLength == 0 ? "add default route" : "add route \(destination)"
        do {
            try perform(request, link: index) { "\(what) via \(gateway)" + (index == nil ? "" : " dev \($0)") }
            return true
        } catch where error.errno == EEXIST {
            let existing = try routes().first {
                $0.destination == destination && $0.tos == 0 && ($0.metric ?? 0) == 0
            }
            guard let existing else { throw error }
            if existing.gateway == gateway && (index == nil || existing.outputIndex == index) { return false }
            var call = "\(what) via \(gateway) (the main table already has \(existing.isDefault ? "default" : "\(existing.destination)")"
            if let g = existing.gateway { call += " via \(g)" }
            if let i = existing.outputIndex { call += " dev \(linkLabel(i))" }
            throw SystemCallError(call + ")", errno: EEXIST)
        }
    }

    @discardableResult
    public mutating func addDefaultRoute(via gateway: IPv4Address, device index: Int32? = nil) throws(SystemCallError) -> Bool {
        try addRoute(to: .defaultRoute, via: gateway, device: index)
    }

    /// The IPv4 routes of one table (RTM_GETROUTE dump), main by default.
    public mutating func routes(table: UInt32 = Netlink.mainTable) throws(SystemCallError) -> [Route] {
        var request = NetlinkRequest(type: NL.getRoute, flags: NL.dump)
        request.append(NL.afInet)
        request.append([UInt8](repeating: 0, count: NL.rtmsgSize - 1))
        var result: [Route] = []
        for m in try dump(request, "list routes") {
            guard let r = Route(m) else { throw SystemCallError("list routes (malformed reply)", errno: EBADMSG) }
            if r.table == table { result.append(r) }
        }
        return result
    }

    // MARK: Rules

    /// RTM_NEWRULE or RTM_DELRULE for `rule`, as ip(8) sends it.
    static func ruleRequest(_ rule: RoutingRule, type: UInt16, flags: UInt16) -> NetlinkRequest {
        var request = NetlinkRequest(type: type, flags: flags)
        request.append(NL.afInet)
        request.append(UInt8(rule.destination?.prefixLength ?? 0))
        request.append(UInt8(0))                                   // src_len
        request.append(UInt8(0))                                   // tos
        switch rule.action {
        case .lookup(let table):
            request.append(UInt8(table < 256 ? table : 0))
            request.append([0, 0])                                 // res1, res2
            request.append(NL.frActToTable)
        case .blackhole:
            request.append([0, 0, 0])                              // table, res1, res2
            request.append(NL.frActBlackhole)
        }
        request.append(UInt32(0))                                  // flags
        request.attribute(NL.fraPriority, u32: rule.priority)
        if let name = rule.inputInterface { request.attribute(NL.fraIifname, string: name) }
        if let destination = rule.destination { request.attribute(NL.fraDst, destination.address.octets) }
        if case .lookup(let table) = rule.action { request.attribute(NL.fraTable, u32: table) }
        return request
    }

    /// Adds a policy rule (`ip rule add`); false if the same rule was
    /// already there.
    @discardableResult
    public mutating func addRule(_ rule: RoutingRule) throws(SystemCallError) -> Bool {
        do {
            try perform(Self.ruleRequest(rule, type: NL.newRule, flags: NL.create | NL.exclusive), "add rule \(rule)")
            return true
        } catch where error.errno == EEXIST {
            return false
        }
    }

    /// Deletes a policy rule (`ip rule del`); false if there was none.
    /// The kernel deletes the first rule that matches what is given: give
    /// the interface and destination the rule has.
    @discardableResult
    public mutating func deleteRule(_ rule: RoutingRule) throws(SystemCallError) -> Bool {
        do {
            try perform(Self.ruleRequest(rule, type: NL.delRule, flags: 0), "delete rule \(rule)")
            return true
        } catch where error.errno == ENOENT {
            return false
        }
    }

    // MARK: Requests and replies

    /// What a request failed with: the errno and the kernel's sentence.
    struct Failure: Error {
        var errno: Int32
        var kernelMessage: String?

        func named(_ operation: String) -> SystemCallError {
            SystemCallError(kernelMessage.map { "\(operation) (kernel: \($0))" } ?? operation, errno: errno)
        }
    }

    private static func linkRequest(type: UInt16, flags: UInt16, index: Int32) -> NetlinkRequest {
        var request = NetlinkRequest(type: type, flags: flags)
        request.append(NL.afUnspec)
        request.append(UInt8(0))                                   // pad
        request.append(UInt16(0))                                  // ifi_type
        request.append(index)
        request.append(UInt32(0))                                  // ifi_flags
        request.append(UInt32(0))                                  // ifi_change
        if type == NL.getLink {
            // Counters are most of a link message and nothing here reads them.
            request.attribute(NL.iflaExtMask, u32: NL.rtextFilterSkipStats)
        }
        return request
    }

    private mutating func setFlags(_ index: Int32, up: Bool) throws(SystemCallError) {
        var request = NetlinkRequest(type: NL.newLink, flags: 0)
        request.append(NL.afUnspec)
        request.append(UInt8(0))
        request.append(UInt16(0))
        request.append(index)
        request.append(up ? NetworkLink.Flags.up.rawValue : 0)     // ifi_flags
        request.append(NetworkLink.Flags.up.rawValue)              // ifi_change: only IFF_UP
        try perform(request, link: index) { "set \($0) \(up ? "up" : "down")" }
    }

    /// A link's name for a message, or "link index N" if it has none (or
    /// has gone). Only looked up when something failed.
    private mutating func linkLabel(_ index: Int32) -> String {
        (try? link(index: index))?.name ?? "link index \(index)"
    }

    private mutating func getLink(_ request: NetlinkRequest, _ operation: String) throws(SystemCallError) -> NetworkLink? {
        let messages: [NetlinkMessage]
        do {
            messages = try transact(request).messages
        } catch {
            if error.errno == ENODEV { return nil }
            throw error.named(operation)
        }
        guard messages.count == 1, let link = NetworkLink(messages[0]) else {
            throw SystemCallError("\(operation) (malformed reply)", errno: EBADMSG)
        }
        return link
    }

    /// A request that is about one link: a failure names the link, looked
    /// up only then ("set eth0 up"), or its index if it has gone.
    @discardableResult
    private mutating func perform(
        _ request: NetlinkRequest, link index: Int32?, _ operation: (String) -> String
    ) throws(SystemCallError) -> [NetlinkMessage] {
        do {
            return try transact(request).messages
        } catch {
            throw error.named(operation(index.map { linkLabel($0) } ?? ""))
        }
    }

    @discardableResult
    mutating func perform(_ request: NetlinkRequest, _ operation: String) throws(SystemCallError) -> [NetlinkMessage] {
        do {
            return try transact(request).messages
        } catch {
            throw error.named(operation)
        }
    }

    /// A dump, again if the kernel says a change interrupted it (the
    /// parts would not be one consistent view).
    mutating func dump(_ request: NetlinkRequest, _ operation: String) throws(SystemCallError) -> [NetlinkMessage] {
        for _ in 0..<Self.dumpAttempts {
            let reply: (messages: [NetlinkMessage], interrupted: Bool)
            do {
                reply = try transact(request)
            } catch {
                throw error.named(operation)
            }
            if !reply.interrupted { return reply.messages }
        }
        throw SystemCallError("\(operation) (interrupted by changes \(Self.dumpAttempts) times)", errno: EAGAIN)
    }

    /// Sends one request and reads its replies: for a dump, the messages up
    /// to NLMSG_DONE; otherwise any reply messages up to the ACK. Messages
    /// with another sequence number are late replies to an earlier request
    /// that timed out, and are skipped.
    private mutating func transact(_ request: NetlinkRequest) throws(Failure) -> (messages: [NetlinkMessage], interrupted: Bool) {
        sequence &+= 1
        if sequence == 0 { sequence = 1 }
        let expected = sequence
        let bytes = request.finished(sequence: expected)
        let isDump = request.isDump

        switch attempt({ bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }) {
        case .done(let sent): if sent != bytes.count { throw Failure(errno: EMSGSIZE) }
        case .wouldBlock: throw Failure(errno: EAGAIN)
        case .failed(let e): throw Failure(errno: e)
        }

        var collected: [NetlinkMessage] = []
        var interrupted = false
        for _ in 0..<Self.maxDatagramsPerRequest {
            let datagram = try receive()
            guard let messages = NetlinkMessage.split(datagram[...]) else { throw Failure(errno: EBADMSG) }
            for m in messages where m.sequence == expected && m.portID == portID {
                switch m.type {
                case NL.noop:
                    continue
                case NL.overrun:
                    throw Failure(errno: ENOBUFS)
                case NL.error:
                    guard let reply = NetlinkErrorReply(m) else { throw Failure(errno: EBADMSG) }
                    if reply.error < 0 { throw Failure(errno: -reply.error, kernelMessage: reply.kernelMessage) }
                    // An ACK ends a plain request; a dump ends at DONE.
                    if !isDump { return (collected, interrupted) }
                case NL.done:
                    if isDump {
                        // A dump that failed midway says so in DONE's payload.
                        if let code = loadInteger(Int32.self, m.payload, at: 0), code < 0 {
                            throw Failure(errno: -code)
                        }
                        return (collected, interrupted || m.flags & NL.dumpInterrupted != 0)
                    }
                default:
                    if m.flags & NL.dumpInterrupted != 0 { interrupted = true }
                    collected.append(m)
                }
            }
        }
        throw Failure(errno: ENOBUFS)
    }

    /// One datagram, copied out of the receive buffer.
    private mutating func receive() throws(Failure) -> [UInt8] {
        let fd = self.fd
        // MSG_TRUNC: the real length comes back even when it did not
        // fit, so a cut message is an error rather than garbage.
        switch attempt({ buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC)) } }) {
        case .done(let n):
            if n > buffer.count { throw Failure(errno: EMSGSIZE) }
            datagramsReceived += 1
            return Array(buffer[0..<n])
        // SO_RCVTIMEO expired.
        case .wouldBlock: throw Failure(errno: ETIMEDOUT)
        case .failed(let e): throw Failure(errno: e)
        }
    }
}
