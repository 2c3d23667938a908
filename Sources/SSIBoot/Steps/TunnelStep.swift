import SSICore
import SSILinux
import SSIConfig
import SSITrust

/// `[tunnel]`: the node's WireGuard link, keyed by its identity, before
/// corosync starts (part of the membership step) and so before the root
/// is mounted through it (DESIGN-NOTES.md, "The tunnel").
extension Boot {
    /// Brings the tunnel up when the configuration has one: the wireguard
    /// module, the link ssi0 with the node's key, a peer per enrolled
    /// node (from the image's identities; the root's copy after the root
    /// mount, see `syncTunnelPeers`), the node's tunnel address.
    func bringUpTunnel(_ identity: NodeIdentity, _ params: BootParameters, key fetched: NodeKey?) throws(SSIError) {
        let config = identity.config, node = identity.node
        guard let tunnel = config.tunnel else { return }
        let key: NodeKey
        if let fetched {
            key = fetched
        } else {
            // An image with the key in it: no key step ran.
            let source = try KeyPlan.diskNodeSource(config: config, node: node, params: params,
                                                    imageHasKeyFile: FileSystem.exists(config.identity.key))
            key = try loadNodeKey(source, enroll: false, node: node)
        }
        do throws(SSIError) { _ = try loadModule("wireguard") } catch {
            throw SSIError("tunnel", "\(error.message): [tunnel] needs the kernel's WireGuard",
                           hint: "rebuild the image with ssi-mkinitrd --config (it carries wireguard with [tunnel])")
        }
        let known = try KnownIdentities.load(config.identity.known)
        let (peers, missing) = ClusterTunnel.peers(config: config, known: known, me: node.number)
        let (_, mtu) = try ClusterTunnel.up(config: config, key: key, me: node.number, peers: peers, underlay: identity.interface)
        let address = tunnel.address(of: node.number)
        if try ClusterTunnel.guardAddress(address) {
            log.info("tunnel", "\(address) takes packets from \(ClusterConfig.Tunnel.interface) and this node only "
                     + "(policy rules at priority 0; the local table moved to 1)")
        }
        log.info("tunnel", "\(ClusterConfig.Tunnel.interface) \(config.clusterAddress(node))/\(tunnel.prefix.prefixLength) up, mtu \(mtu), "
                 + "UDP \(tunnel.port), keyed by \(key.identity.fingerprint); peers: "
                 + (peers.count == missing.count ? "none" : config.nodes.filter { $0.number != node.number && !missing.contains($0.name) }.map(\.name).joined(separator: ", "))
                 + (missing.isEmpty ? "" : "; not enrolled yet (a stand-in key, nothing passes): \(missing.joined(separator: ", "))"))
    }

    /// After the root mount: the peers from the root's identities (the
    /// init node's current file on a CFS root), which know nodes enrolled
    /// after the image was built.
    func syncTunnelPeers(_ identity: NodeIdentity, root: String) {
        let config = identity.config, node = identity.node
        guard config.tunnel != nil else { return }
        let path = root + config.identity.known
        guard FileSystem.exists(path) else { return }
        do throws(SSIError) {
            let known = try KnownIdentities.load(path)
            let (peers, _) = ClusterTunnel.peers(config: config, known: known, me: node.number)
            let change = try ClusterTunnel.sync(peers: peers)
            if change.added + change.removed > 0 {
                log.info("tunnel", "peers from the root's \(config.identity.known): \(change.added) added, \(change.removed) removed")
            }
        } catch {
            log.warning("tunnel", "\(error.message); the peers stay as the image gave them")
        }
    }
}
