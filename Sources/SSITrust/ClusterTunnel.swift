#if canImport(Glibc)
import Glibc
#endif
import CSodium
import Synchronization
public import SSICore
public import SSIConfig
public import SSILinux

/// The cluster's WireGuard network (`[tunnel]`; DESIGN-NOTES.md, "The
/// tunnel"). Its keys are the node identities themselves, converted to
/// X25519 (libsodium's birational map, as the cluster key is sealed to
/// them): a node's tunnel key is the key it already proves itself with,
/// and every node computes its peers' keys from the public identities
/// file. No key is made, stored or sent for the tunnel.
public enum ClusterTunnel {
    /// One peer per node of the configuration other than `me`: its
    /// identity's X25519 form, its cluster-network address as the
    /// endpoint, and its tunnel address alone as the allowed IPs (so a
    /// packet from a peer can only carry that peer's address).
    ///
    /// A node without an enrolled identity (or whose key is not a curve
    /// point) is named in `missing` and gets a stand-in key
    /// (`standInKey`): without a peer, every packet to its address fails
    /// at once with ENOKEY, and knet, which corosync sends with, spins on
    /// such errors (the CFS VM test saw the whole cluster lose its token
    /// when a configured node was not enrolled yet). With the stand-in,
    /// packets to it wait for a handshake no one can complete.
    public static func peers(config: ClusterConfig, known: KnownIdentities, me: Int)
        -> (peers: [WireGuardPeer], missing: [String])
    {
        guard let tunnel = config.tunnel else { return ([], []) }
        var peers: [WireGuardPeer] = [], missing: [String] = []
        for node in config.nodes where node.number != me {
            // The prefix was checked to hold every node number.
            guard let host = try? IPv4CIDR(tunnel.address(of: node.number), prefixLength: 32) else { continue }
            var key = known.identity(of: node.name).flatMap(publicKey)
            if key == nil {
                missing.append(node.name)
                key = standInKey(for: host.address)
            }
            peers.append(WireGuardPeer(publicKey: key!, endpoint: WireGuardEndpoint(node.address, port: UInt16(tunnel.port)),
                                       allowedIPs: [host]))
        }
        return (peers, missing)
    }

    private static let standIns = Mutex<[IPv4Address: [UInt8]]>([:])

    /// A public key whose private half nobody holds (made from a new
    /// random key, thrown away at once), one per tunnel address for the
    /// life of the process, so that a later sync sees no change.
    static func standInKey(for address: IPv4Address) -> [UInt8] {
        standIns.withLock { keys in
            if let k = keys[address] { return k }
            var k: [UInt8]?
            while k == nil { k = publicKey(NodeKey.generate().identity) }
            keys[address] = k
            return k!
        }
    }

    /// An identity's X25519 public key; nil if it is not a curve point.
    public static func publicKey(_ identity: PublicIdentity) -> [UInt8]? {
        _ = sodium_init()
        var x = [UInt8](repeating: 0, count: 32)
        guard crypto_sign_ed25519_pk_to_curve25519(&x, identity.key) == 0 else { return nil }
        return x
    }

    /// Brings up (or brings back to the configuration) the tunnel link:
    /// creates it if missing, sets the node's private key, the port and
    /// exactly `peers`, its address, its MTU, and up. `underlay`: the
    /// cluster network's interface, whose MTU less WireGuard's overhead is
    /// the tunnel's (8920 on a jumbo network, where the kernel's default
    /// 1420 would split every packet in six). Returns the device as the
    /// kernel reports it (its public key must be this node's identity's)
    /// and the MTU set.
    @discardableResult
    public static func up(config: ClusterConfig, key: NodeKey, me: Int, peers: [WireGuardPeer], underlay: String) throws(SSIError) -> (device: WireGuardDevice, mtu: Int) {
        guard let tunnel = config.tunnel else { throw SSIError("tunnel", "\(config.file) has no [tunnel] section") }
        let name = ClusterConfig.Tunnel.interface
        let address = tunnel.address(of: me)
        do {
            var rt = try Netlink()
            let link = try rt.link(named: name) ?? rt.addLink(named: name, kind: "wireguard")
            var wg = try Netlink.generic()
            try wg.setWireGuard(name, privateKey: key.tunnelPrivateKey, listenPort: UInt16(tunnel.port),
                                peers: peers, replacePeers: true)
            let has = try rt.addresses(of: link.index).contains { $0.address.address == address }
            if !has { try rt.addAddress(address, prefixLength: tunnel.prefix.prefixLength, to: link.index) }
            var mtu = link.mtu
            if let lower = try rt.link(named: underlay) {
                mtu = ClusterConfig.Tunnel.mtu(onLink: lower.mtu)
                if mtu != link.mtu { try rt.setMTU(link.index, mtu) }
            }
            try rt.setUp(link.index)
            let device = try wg.wireGuardDevice(name)
            guard device.publicKey == publicKey(key.identity) else {
                throw SSIError("tunnel", "\(name)'s public key is not this node's identity's (the kernel reports another key)")
            }
            return (device, mtu)
        } catch let error as SSIError {
            throw error
        } catch let error as SystemCallError {
            throw SSIError("tunnel", error.description,
                           hint: error.errno == ENOENT ? "the image needs the wireguard module (ssi-mkinitrd adds it with [tunnel])" : nil)
        } catch {
            throw SSIError("tunnel", "\(error)")
        }
    }

    /// The policy rules that make the node's tunnel address reachable only
    /// through the tunnel (or from the node itself): Linux takes a packet
    /// for any of its addresses on any link (the weak host model), so a
    /// machine on the cluster network that routes the tunnel's addresses
    /// over eth0 would reach the sockets bound to them, and rp_filter
    /// cannot stop it (it checks the source). The local table is moved to
    /// priority 1, and at 0 the node's own packets (iif lo) and the
    /// tunnel's look it up, while anything else for the tunnel address is
    /// dropped unanswered. In this order: local lookups never stop.
    public static func guardRules(address: IPv4Address, interface: String) -> (add: [RoutingRule], remove: RoutingRule) {
        let local = RoutingRule.Action.lookup(table: RoutingRule.localTable)
        return ([RoutingRule(priority: 1, action: local),
                 RoutingRule(priority: 0, inputInterface: "lo", action: local),
                 RoutingRule(priority: 0, inputInterface: interface, action: local),
                 RoutingRule(priority: 0, destination: IPv4CIDR(unchecked: address, prefixLength: 32), action: .blackhole)],
                RoutingRule(priority: 0, action: local))
    }

    /// Installs `guardRules` (once: the moved local rule says it is done).
    /// Returns false when they were there already.
    @discardableResult
    public static func guardAddress(_ address: IPv4Address, interface: String = ClusterConfig.Tunnel.interface) throws(SSIError) -> Bool {
        let rules = guardRules(address: address, interface: interface)
        do throws(SystemCallError) {
            var rt = try Netlink()
            guard try rt.addRule(rules.add[0]) else { return false }
            // Before the rules at 0 exist: the kernel deletes the first
            // rule at 0 that matches, and only the original one is there.
            try rt.deleteRule(rules.remove)
            for rule in rules.add.dropFirst() { try rt.addRule(rule) }
            return true
        } catch {
            throw SSIError("tunnel", error.description, hint: "the kernel needs policy routing (CONFIG_IP_MULTIPLE_TABLES, in Debian's)")
        }
    }

    /// Makes the link's peers `peers` (the running cluster's: a node
    /// enrolled, removed, or dropped from the configuration), without
    /// touching its key. A node's key that is not wanted any more is
    /// removed, and its address given a stand-in (`standInKey`): nothing
    /// passes to or from it, and corosync, which may still send to it
    /// until its own reload, gets no ENOKEY to spin on (see `peers`).
    /// Only what differs is sent: a peer that stays keeps its session
    /// (replacing the whole list would drop every session and cost each
    /// peer a new handshake). Returns how many keys were added and removed.
    @discardableResult
    public static func sync(peers wantedPeers: [WireGuardPeer]) throws(SSIError) -> (added: Int, removed: Int) {
        let name = ClusterConfig.Tunnel.interface
        do {
            var wg = try Netlink.generic()
            let current = try wg.wireGuardDevice(name).peers
            var peers = wantedPeers
            let covered = Set(wantedPeers.flatMap(\.allowedIPs))
            for p in current where !wantedPeers.contains(where: { $0.publicKey == p.publicKey }) {
                for a in p.allowedIPs where !covered.contains(a) && a.prefixLength == 32 {
                    peers.append(WireGuardPeer(publicKey: standInKey(for: a.address), endpoint: p.endpoint, allowedIPs: [a]))
                }
            }
            let wanted = Set(peers.map(\.publicKey))
            let gone = current.map(\.publicKey).filter { !wanted.contains($0) }
            let changed = peers.filter { p in
                !current.contains { $0.publicKey == p.publicKey && $0.allowedIPs == p.allowedIPs && $0.endpoint == p.endpoint }
            }
            try wg.removeWireGuardPeers(name, publicKeys: gone)
            if !changed.isEmpty {
                try wg.setWireGuard(name, privateKey: nil, listenPort: nil, peers: changed, replacePeers: false)
            }
            let known = Set(current.map(\.publicKey))
            return (changed.filter { !known.contains($0.publicKey) }.count, gone.count)
        } catch {
            throw SSIError("tunnel", error.description,
                           hint: error.errno == ENODEV ? "this node has no \(name) link: it booted without [tunnel] (reboot it to join the tunnel)" : nil)
        }
    }
}

extension ClusterTunnel {
    /// Takes the keys of nodes that are not in the configuration any more
    /// (other than `me`) out of the tunnel, their addresses left to
    /// stand-ins (`sync`): what a reload can do before the identities are
    /// known.
    @discardableResult
    public static func prune(config: ClusterConfig, me: Int) throws(SSIError) -> (added: Int, removed: Int) {
        guard let tunnel = config.tunnel else { return (0, 0) }
        let wanted = Set(config.nodes.filter { $0.number != me }.map { tunnel.address(of: $0.number) })
        let current: [WireGuardPeer]
        do {
            var wg = try Netlink.generic()
            current = try wg.wireGuardDevice(ClusterConfig.Tunnel.interface).peers
        } catch {
            throw SSIError("tunnel", error.description)
        }
        return try sync(peers: current.filter { $0.allowedIPs.allSatisfy { $0.prefixLength == 32 && wanted.contains($0.address) } })
    }
}

extension NodeKey {
    /// The X25519 form of the node's secret key: its WireGuard private key.
    public var tunnelPrivateKey: [UInt8] {
        _ = sodium_init()
        var pk = [UInt8](repeating: 0, count: 32), sk = [UInt8](repeating: 0, count: 64)
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        var x = [UInt8](repeating: 0, count: 32)
        _ = crypto_sign_ed25519_sk_to_curve25519(&x, sk)
        return x
    }
}
