#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig

/// Which node this machine is, as the network step found it: what every
/// later cluster step takes instead of reading shared optional fields.
struct NodeIdentity: Equatable {
    var config: ClusterConfig
    var node: ClusterConfig.Node
    /// How the node was found, for the "this is node" line.
    var found: Found
    /// The cluster interface the network step configured.
    var interface: String

    enum Found: Equatable, CustomStringConvertible {
        /// `ssi.node=N` on the command line.
        case commandLine(Int)
        /// The node whose MAC one of this machine's interfaces has.
        case mac

        var description: String {
            switch self {
            case .commandLine(let n): return "ssi.node=\(n)"
            case .mac: return "by MAC"
            }
        }
    }

    /// The interfaces as the errors list them: "eth0 52:54:..., eth1 no MAC",
    /// or "none".
    static func describe(_ links: [NetworkLink]) -> String {
        let seen = links.map { "\($0.name) \($0.mac.map { $0.description } ?? "no MAC")" }.joined(separator: ", ")
        return seen.isEmpty ? "none" : seen
    }

    /// Which node this is: `ssi.node=N` if given (it must be in the
    /// configuration), else the first node in file order whose MAC one of
    /// `links` (the machine's interfaces but loopback) has. The errors name
    /// what was seen, so that the console alone says what to fix.
    static func identify(_ config: ClusterConfig, commandLineNode: Int?, links: [NetworkLink],
                         path: String = Boot.clusterConfigPath) throws(SSIError) -> (node: ClusterConfig.Node, found: Found) {
        if let n = commandLineNode {
            guard let found = config.node(number: n) else {
                throw SSIError("network", "ssi.node=\(n) is not in \(path) (nodes: \(config.nodes.map { String($0.number) }.joined(separator: ", ")))")
            }
            return (found, .commandLine(n))
        }
        guard let found = config.nodeForAnyMAC(links.compactMap(\.mac)) else {
            throw SSIError("network", "no node in \(path) has a MAC address of this machine (interfaces: \(describe(links)))",
                           hint: "add this machine's MAC to its [[node]], or boot with ssi.node=N")
        }
        return (found, .mac)
    }

    /// The error when the node's interface is not there: by name if
    /// [network] interface is set, else by the node's MACs.
    static func noInterface(_ config: ClusterConfig, _ node: ClusterConfig.Node, links: [NetworkLink]) -> SSIError {
        let wanted = config.network.interface ?? node.macs.map(\.description).joined(separator: " or ")
        return SSIError("network", "node \(node.number) (\(node.name)): no interface \(wanted) on this machine (interfaces: \(describe(links)))",
                        hint: "check the image has the NIC's driver (--add-modules) and the MAC in the configuration")
    }

    /// The line that ends the network step.
    var upLine: String {
        "this is node \(node.number) (\(node.name), \(found)); \(interface) \(node.address)/\(config.network.prefix.prefixLength) up"
            + (config.network.mtu.map { ", mtu \($0)" } ?? "")
    }
}

extension Boot {
    static let clusterConfigPath = "/etc/ssi/cluster.conf"

    /// The network step: load the configuration, find which node this is,
    /// and bring its cluster interface up by netlink (address, default
    /// route, hostname: corosync finds its own nodelist entry by name).
    func setUpNetwork(_ params: BootParameters) throws(SSIError) -> NodeIdentity {
        let config = try ClusterConfig.load(path: Boot.clusterConfigPath)
        BootStage().set("network")
        var nl: Netlink
        do { nl = try Netlink() } catch { throw SSIError("network", error.description) }
        do {
            try nl.bringUpLoopback()
            let links = try nl.links().filter { !$0.flags.contains(.loopback) }
            let (node, found) = try NodeIdentity.identify(config, commandLineNode: params.node, links: links)
            // The interface: by name if configured, else by the node's MAC.
            var link: NetworkLink?
            if let name = config.network.interface {
                link = try nl.link(named: name)
            } else {
                for mac in node.macs where link == nil { link = try nl.link(withMAC: mac) }
            }
            guard let link else { throw NodeIdentity.noInterface(config, node, links: links) }
            let identity = NodeIdentity(config: config, node: node, found: found, interface: link.name)
            // Before the link is up: a driver may reset it for a new MTU.
            if let mtu = config.network.mtu, mtu != link.mtu {
                do throws(SystemCallError) { try nl.setMTU(link.index, mtu) } catch {
                    throw SSIError("network", "\(error.description) ([network] mtu in \(config.file))",
                                   hint: "the NIC or its driver does not take that MTU; lower [network] mtu, or remove it to keep the link's \(link.mtu)")
                }
            }
            try nl.setUp(link.index)
            if try !nl.waitForCarrier(link.index, timeout: .seconds(10)) {
                log.warning("network", "\(link.name) has no carrier after 10 s (cable, switch port?); going on")
            }
            try nl.addAddress(node.address, prefixLength: config.network.prefix.prefixLength, to: link.index)
            if let gw = config.network.gateway {
                try nl.addDefaultRoute(via: gw, device: link.index)
            }
            // corosync finds its own node in the nodelist by name first.
            _ = node.name.withCString { sethostname($0, strlen($0)) }
            log.info("network", identity.upLine)
            return identity
        } catch let e as SSIError {
            throw e
        } catch {
            throw SSIError("network", "\(error)")
        }
    }
}
