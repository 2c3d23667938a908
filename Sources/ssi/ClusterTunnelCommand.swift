#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSITools
import SSITrust

/// `ssi cluster tunnel`: the node's WireGuard link as the kernel has it,
/// each peer named by the node whose tunnel address it carries, as
/// `wg show` would print it (without wireguard-tools on the node).
struct ClusterTunnelCommand {
    static let command = CLICommand(
        "tunnel",
        abstract: "Show this node's cluster tunnel ([tunnel]): its address, key and peers, with their last handshake and traffic.",
        discussion: """
            Each peer is a node of the configuration, keyed by its enrolled identity; a node \
            without an enrolled identity has none. Exit status 1 when the configuration has \
            no [tunnel] or the link is not up.
            """,
        options: [
            .value("config", "file", help: "The cluster config.", default: ClusterConfig.defaultPath),
        ]) { try ClusterTunnelCommand($0).run() }

    var config: String
    init(_ v: CLIValues) { config = v.string("config") ?? ClusterConfig.defaultPath }

    func run() throws {
        do throws(SSIError) {
            let cfg = try ClusterConfig.load(path: config)
            guard let tunnel = cfg.tunnel else {
                throw SSIError("tunnel", "\(config) has no [tunnel] section: the cluster's traffic uses the cluster network itself")
            }
            let device: WireGuardDevice
            do {
                var wg = try Netlink.generic()
                device = try wg.wireGuardDevice(ClusterConfig.Tunnel.interface)
            } catch {
                throw SSIError("tunnel", error.description, hint: "is this node booted with [tunnel] (ssi-init brings \(ClusterConfig.Tunnel.interface) up)?")
            }
            let now = Int64(time(nil))
            // Public: tells an enrolled node's peer from a stand-in.
            let known = try? KnownIdentities.load(cfg.identity.known)
            print(Self.render(device, config: cfg, tunnel: tunnel, known: known, now: now), terminator: "")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    /// One line for the link, one per peer; a peer whose key is no enrolled
    /// identity's is a stand-in (ClusterTunnel.peers, .sync), said so.
    static func render(_ device: WireGuardDevice, config: ClusterConfig, tunnel: ClusterConfig.Tunnel,
                       known: KnownIdentities?, now: Int64) -> String {
        var byAddress: [IPv4Address: ClusterConfig.Node] = [:]
        for n in config.nodes { byAddress[tunnel.address(of: n.number)] = n }
        let key = device.publicKey.map { Base64.encode($0) } ?? "-"
        var out = "\(device.name): port \(device.listenPort), public key \(key), \(device.peers.count) peer\(device.peers.count == 1 ? "" : "s")\n"
        // Every enrolled node's tunnel key: a peer holding none is a stand-in.
        let enrolledKeys = Set((known?.entries ?? []).compactMap { ClusterTunnel.publicKey($0.identity) })
        for p in device.peers {
            let node = p.allowedIPs.first.flatMap { byAddress[$0.address] }
            let handshake = p.lastHandshakeSeconds == 0 ? "no handshake yet" : "handshake \(max(0, now - p.lastHandshakeSeconds)) s ago"
            let standIn = known != nil && !enrolledKeys.contains(p.publicKey)
            let why = node == nil ? "not in the configuration" : "not enrolled"
            out += "  \(node?.name ?? "?") \(p.allowedIPs.map(\.description).joined(separator: ",")) at \(p.endpoint?.description ?? "-"): "
                + (standIn ? "\(why) (a stand-in key: nothing passes), " : "")
                + "\(handshake), received \(p.receivedBytes) B, sent \(p.sentBytes) B\n"
        }
        return out
    }
}
