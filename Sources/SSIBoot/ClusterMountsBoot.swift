import SSICore
import SSILinux
import SSIConfig
import SSIMembership

extension Boot {
    /// The last steps in the initramfs of a cluster node: its own swap
    /// (`[[node]] swap`) on, and the cluster mount table that the other
    /// members' agents sent this node's agent mounted in the new root, so
    /// that the system starts with every cluster mount in place. A mount
    /// that fails is said and left to the agent, which retries after the
    /// hand-off; nothing here stops the boot. Mounts this node owns (it
    /// exports them) are the agent's too: exporting needs the distro's NFS
    /// server.
    func clusterMountsBeforeHandOff(_ identity: NodeIdentity, newRoot: String) {
        let config = identity.config, node = identity.node
        if let swap = node.swap {
            swapOn(swap)
        }
        let tablePath = ClusterView.defaultDirectory + "/" + ClusterMount.tableFile
        let table = ClusterMount.table(parsing: (try? FileSystem.readText(tablePath)) ?? "")
        guard !table.isEmpty else { return }
        let me = UInt32(node.number)
        let applier = ClusterMountApplier(localAddress: node.address.description, network: config.network.prefix.description,
                                          targetPrefix: newRoot)
        let members = Set(((try? ClusterView.load())?.nodes ?? []).filter { $0.state != .down }.map(\.number))
        for e in table {
            let role = e.role(on: me)
            var server: String?
            switch role {
            case .mountAndExport: continue
            case .mountItself: break
            case .mountFrom(let owner):
                guard members.contains(owner), let n = config.node(number: Int(owner)) else { continue }
                server = n.address.description
            }
            do throws(SSIError) {
                try applier.mount(e, role: role, serverAddress: server)
                log.info("cluster-mounts", "mounted \(e.target) (node=\(e.rule))")
            } catch {
                log.warning("cluster-mounts", "\(error.message); the membership agent retries after the hand-off")
            }
        }
    }

    private func swapOn(_ spec: String) {
        do throws(SSIError) {
            let want = try DeviceSpec(parsing: spec, field: "swap")
            guard let dev = BlockDevices.scan().first(where: { want.matches($0) }) else {
                log.warning("swap", "this node's swap \(spec) (cluster.conf) is not on any disk here: no swap")
                return
            }
            guard dev.type == "swap" else {
                log.warning("swap", "\(dev.path) (\(spec)) holds no swap signature (\(dev.type ?? "nothing")): not used; mkswap it")
                return
            }
            do {
                try Swap.on(dev.path)
                log.info("swap", "swapping on \(dev.path) (\(spec))")
            } catch {
                log.warning("swap", "\(error.description)")
            }
        } catch {
            log.warning("swap", error.message)
        }
    }
}
