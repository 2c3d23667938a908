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
        let applier = ClusterMountApplier(localAddress: config.clusterAddress(node).description, network: config.clusterNetwork.description,
                                          targetPrefix: newRoot)
        let members = Set(((try? ClusterView.load())?.nodes ?? []).filter { $0.state != .down }.map(\.number))
        for m in Boot.mountsBeforeHandOff(table, config: config, me: node, members: members) {
            do throws(SSIError) {
                try applier.mount(m.entry, role: m.role, serverAddress: m.server)
                log.info("cluster-mounts", "mounted \(m.entry.target) (node=\(m.entry.rule))")
            } catch {
                log.warning("cluster-mounts", "\(error.message); the membership agent retries after the hand-off")
            }
        }
    }

    /// One cluster mount this node makes before the hand-off.
    struct HandOffMount: Equatable {
        var entry: ClusterMount
        var role: ClusterMount.Role
        /// The owner's address, for a mount of another node's export.
        var server: String?
    }

    /// Which entries of the table this node mounts before the hand-off,
    /// in the table's order: those every node mounts itself, and those
    /// another node exports when that node is a member now (not down in
    /// the agent's view) and in this configuration. Its own exports wait
    /// for the agent, as does everything left out here.
    static func mountsBeforeHandOff(_ table: [ClusterMount], config: ClusterConfig, me: ClusterConfig.Node,
                                    members: Set<UInt32>) -> [HandOffMount] {
        var mounts: [HandOffMount] = []
        for e in table {
            let role = e.role(on: UInt32(me.number))
            switch role {
            case .mountAndExport:
                continue
            case .mountItself:
                mounts.append(HandOffMount(entry: e, role: role, server: nil))
            case .mountFrom(let owner):
                guard members.contains(owner), let n = config.node(number: Int(owner)) else { continue }
                mounts.append(HandOffMount(entry: e, role: role, server: config.clusterAddress(n).description))
            }
        }
        return mounts
    }

    /// What to do with this node's `[[node]] swap`: the device to swap on,
    /// or the warning that says why there is none.
    enum SwapChoice: Equatable {
        case use(path: String)
        case skip(warning: String)
    }

    static func swapChoice(_ spec: String, devices: [BlockDevice]) -> SwapChoice {
        let want: DeviceSpec
        do throws(SSIError) { want = try DeviceSpec(parsing: spec, field: "swap") } catch {
            return .skip(warning: error.message)
        }
        guard let dev = devices.first(where: { want.matches($0) }) else {
            return .skip(warning: "this node's swap \(spec) (cluster.conf) is not on any disk here: no swap")
        }
        guard dev.type == "swap" else {
            return .skip(warning: "\(dev.path) (\(spec)) holds no swap signature (\(dev.type ?? "nothing")): not used; mkswap it")
        }
        return .use(path: dev.path)
    }

    private func swapOn(_ spec: String) {
        switch Boot.swapChoice(spec, devices: BlockDevices.scan()) {
        case .skip(let warning):
            log.warning("swap", warning)
        case .use(let path):
            do {
                try Swap.on(path)
                log.info("swap", "swapping on \(path) (\(spec))")
            } catch {
                log.warning("swap", "\(error.description)")
            }
        }
    }
}
