#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// The cluster part of the boot, for images built with --config: find
/// which node this is, bring up the cluster network, start corosync and
/// the membership agent, and wait for quorum.
final class ClusterState {
    var config: ClusterConfig?
    var node: ClusterConfig.Node?
    var corosync: pid_t?
    var stage = BootStage()
    /// The cluster interface's name, once the network step configured it.
    var interface: String?
    /// Which root this node mounted.
    var root: RootKind?
    enum RootKind { case local, cfsServer, cfsClient, gfs2 }
    /// dlm_controld, for a gfs2 root.
    var dlm: pid_t?
    /// Configured agents already started (a retried step skips them).
    var agents: [String: pid_t] = [:]
}

extension Boot {
    static let clusterConfigPath = "/etc/ssi/cluster.conf"

    func bootCluster() {
        guard FileSystem.exists(Boot.clusterConfigPath) else { return }
        step("network") { () throws(SSIError) in try setUpNetwork() }
        step("membership") { () throws(SSIError) in try joinCluster() }
    }

    func setUpNetwork() throws(SSIError) {
        let config = try ClusterConfig.load(path: Boot.clusterConfigPath)
        cluster.config = config
        cluster.stage.set("network")
        var nl: Netlink
        do { nl = try Netlink() } catch { throw SSIError("network", error.description) }
        do {
            try nl.bringUpLoopback()
            let links = try nl.links().filter { !$0.flags.contains(.loopback) }
            let seen = links.map { "\($0.name) \($0.mac.map { $0.description } ?? "no MAC")" }.joined(separator: ", ")
            // Which node is this: ssi.node=N, else the node whose MAC one
            // of our interfaces has.
            let node: ClusterConfig.Node
            var how: String
            if let n = params.node {
                guard let found = config.node(number: n) else {
                    throw SSIError("network", "ssi.node=\(n) is not in \(Boot.clusterConfigPath) (nodes: \(config.nodes.map { String($0.number) }.joined(separator: ", ")))")
                }
                node = found
                how = "ssi.node=\(n)"
            } else {
                guard let found = config.nodeForAnyMAC(links.compactMap(\.mac)) else {
                    throw SSIError("network", "no node in \(Boot.clusterConfigPath) has a MAC address of this machine (interfaces: \(seen.isEmpty ? "none" : seen))",
                                   hint: "add this machine's MAC to its [[node]], or boot with ssi.node=N")
                }
                node = found
                how = "by MAC"
            }
            cluster.node = node
            // The interface: by name if configured, else by the node's MAC.
            var link: NetworkLink?
            if let name = config.network.interface {
                link = try nl.link(named: name)
            } else {
                for mac in node.macs where link == nil { link = try nl.link(withMAC: mac) }
            }
            guard let link else {
                let wanted = config.network.interface ?? node.macs.map(\.description).joined(separator: " or ")
                throw SSIError("network", "node \(node.number) (\(node.name)): no interface \(wanted) on this machine (interfaces: \(seen.isEmpty ? "none" : seen))",
                               hint: "check the image has the NIC's driver (--add-modules) and the MAC in the configuration")
            }
            cluster.interface = link.name
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
            log.info("network", "this is node \(node.number) (\(node.name), \(how)); \(link.name) \(node.address)/\(config.network.prefix.prefixLength) up")
        } catch let e as SSIError {
            throw e
        } catch {
            throw SSIError("network", "\(error)")
        }
    }

    /// The distro's own corosync.service must not start a second corosync
    /// beside ours (it would fail on the running one's lock file). A
    /// runtime mask in /run/systemd/system, which moves into the new root
    /// with /run, outranks /etc and /lib and vanishes at the next boot.
    func maskDistroCorosync() {
        maskForBoot(["corosync.service"])
    }

    func joinCluster() throws(SSIError) {
        guard let config = cluster.config, let node = cluster.node else {
            throw SSIError("membership", "the network step did not finish")
        }
        if cluster.corosync == nil {
            let started = Process.now()
            maskDistroCorosync()
            // configfs must be mounted before the agents root binds /sys.
            if case .gfs2 = config.root { try prepareDLMKernel() }
            try AgentsRoot.prepare()
            log.info("membership", "agents root ready in \(Int((Process.now() - started) * 1000)) ms")
            cluster.stage.set("membership")
            cluster.corosync = try startAgent(Boot.corosyncAgent)
        }
        let quorum = try connect(corosync: cluster.corosync!, timeout: 30)
        if cluster.stage.agent == nil {
            cluster.stage.agent = try startAgent(Boot.membershipAgent)
        }
        if cluster.agents[Boot.processAgent.name] == nil {
            cluster.agents[Boot.processAgent.name] = try startAgent(Boot.processAgent)
        }
        for agent in config.agents where cluster.agents[agent.name] == nil {
            cluster.agents[agent.name] = try startAgent(agent)
        }
        var names: [UInt32: String] = [:]
        for n in config.nodes { names[UInt32(n.number)] = n.name }
        let wait = params.quorumWait ?? config.quorum.bootWaitSeconds
        switch try waitForQuorum(quorum, seconds: wait, names: names) {
        case .quorate:
            cluster.stage.set("joined")
            return
        case .timedOut(let seen, let members):
            let policy = config.onTimeout(for: node)
            var why = "no quorum after \(wait) s (\(seen))"
            if let server = config.cfsServer, server.number != node.number, !members.contains(UInt32(server.number)) {
                why += "; the init node \(server.name) (\(server.address)), which serves this node's root, is not among them"
            }
            if policy == .continue {
                log.warning("membership", "\(why); going on without quorum (on_timeout = continue for \(node.name))")
                cluster.stage.set("joined")
                return
            }
            throw SSIError("membership", why,
                           hint: "check that the other nodes are up and on the cluster network, and that they share this node's authkey (a node with another key cannot decrypt cluster traffic and stays alone); ssi.quorum_wait=N waits longer")
        }
    }
}
