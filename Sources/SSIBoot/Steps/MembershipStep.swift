#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// What the membership step yields: this node, joined (or let go on
/// without quorum by its policy), with corosync and the agents running.
struct Membership {
    let identity: NodeIdentity
    /// The daemons this boot started; the gfs2 root step adds dlm.
    let agents: StartedAgents
    /// The boot stage, told to the membership agent from now on.
    let stage: BootStage
}

/// The daemons the boot started, by agent name. A step retried from the
/// emergency shell starts only those that are not here; a reference, as
/// the processes it records are shared by every step after they start.
final class StartedAgents {
    private(set) var pids: [String: pid_t] = [:]

    subscript(_ name: String) -> pid_t? {
        get { pids[name] }
        set { pids[name] = newValue }
    }
}

/// The quorum decisions of the membership step: how long to wait, and
/// what a node does when the wait ends without quorum.
enum QuorumPolicy {
    /// What happens at the end of a boot wait without quorum.
    enum Timeout {
        /// on_timeout = continue: say so and go on without quorum.
        case goOn(warning: String)
        /// A cold start of the CFS init node: nothing is wrong, the others
        /// wait for it (said as information, not as a warning).
        case serve(note: String)
        /// on_timeout = stop: the step fails with this error, so the boot
        /// opens the emergency shell and retries the whole step (wait
        /// included) when it exits; with no shell in the image, it halts.
        case stop(SSIError)
    }

    /// ssi.quorum_wait= wins over [quorum] boot_wait_seconds; a cold
    /// start of the CFS init node (below) waits only for running nodes to
    /// rejoin.
    static func waitSeconds(_ params: BootParameters, _ config: ClusterConfig, node: ClusterConfig.Node) -> Int {
        if let given = params.quorumWait { return given }
        if isColdStartServer(config, node: node) { return min(rejoinSeconds(config), config.quorum.bootWaitSeconds) }
        return config.quorum.bootWaitSeconds
    }

    /// The CFS init node of a cluster whose other nodes are all diskless
    /// (and that goes on without quorum): none of them can boot before it
    /// serves their root, so waiting the whole boot wait for them only
    /// delays them. Nodes that were running (the init node rebooted under
    /// them) are corosync members and rejoin within a few token timeouts.
    static func isColdStartServer(_ config: ClusterConfig, node: ClusterConfig.Node) -> Bool {
        guard let server = config.cfsServer, server.number == node.number, config.onTimeout(for: node) == .continue else { return false }
        return config.nodes.allSatisfy { $0.number == node.number || $0.role == .diskless }
    }

    /// Two token timeouts and 5 s: a running member has rejoined by then.
    static func rejoinSeconds(_ config: ClusterConfig) -> Int {
        2 * ((config.cluster.tokenTimeoutMs + 999) / 1000) + 5
    }

    /// The node's on_timeout (its own, else [quorum]'s, else the root
    /// type's default: a gfs2 node and a CFS client stop, the CFS init node
    /// goes on). The message says what was seen and, on a CFS client,
    /// whether the init node that serves its root was among the members.
    static func onTimeout(_ config: ClusterConfig, node: ClusterConfig.Node, waited seconds: Int,
                          seen: String, members: [UInt32], coldStart: Bool = false) -> Timeout {
        var why = "no quorum after \(seconds) s (\(seen))"
        if coldStart {
            return .serve(note: "\(why); the other nodes are diskless and boot from this node's root: serving it "
                          + "(a node that was running would have rejoined by now)")
        }
        if let server = config.cfsServer, server.number != node.number, !members.contains(UInt32(server.number)) {
            why += "; the init node \(server.name) (\(config.clusterAddress(server))), which serves this node's root, is not among them"
        }
        if config.onTimeout(for: node) == .continue {
            return .goOn(warning: "\(why); going on without quorum (on_timeout = continue for \(node.name))")
        }
        return .stop(SSIError("membership", why,
                              hint: "check that the other nodes are up and on the cluster network, and that they share this node's authkey (a node with another key cannot decrypt cluster traffic and stays alone); ssi.quorum_wait=N waits longer"))
    }

    /// A gfs2 root needs the kernel's DLM (configfs mounted) before the
    /// agents root binds /sys, so that dlm_controld sees configfs there.
    static func needsDLMKernel(_ config: ClusterConfig) -> Bool {
        if case .gfs2 = config.root { return true }
        return false
    }

    /// Members this image's configuration does not have: the image is
    /// older than the configuration the cluster runs (a node added since it
    /// was built). On a GFS2 root that stops the boot: dlm learns a node's
    /// address from this configuration, and the root's mount waited forever
    /// for the member it could not reach (seen after `ssi cluster reboot`
    /// of a node whose image predated node 4). Elsewhere it is a warning.
    static func strangers(_ config: ClusterConfig, members: [UInt32]) -> SSIError? {
        let known = Set(config.nodes.map { UInt32($0.number) })
        let unknown = members.filter { !known.contains($0) }
        guard !unknown.isEmpty else { return nil }
        let list = unknown.map { "node \($0)" }.joined(separator: ", ")
        let mine = config.nodes.map { String($0.number) }.joined(separator: ", ")
        let what = needsDLMKernel(config) ? "dlm cannot reach \(unknown.count == 1 ? "it" : "them"), and the root's mount would wait for it forever"
            : "its name and address are unknown here"
        return SSIError("membership", "\(list) \(unknown.count == 1 ? "is a member" : "are members") of the cluster but not in this image's configuration "
                        + "(nodes \(mine)): the image is older than the configuration the cluster runs; \(what)",
                        hint: "rebuild the image from the current configuration (ssi-mkinitrd, or ssi-mkinitrd -u on a member) and boot it")
    }

    /// Node number to name, for the member lists in the waiting lines.
    static func names(_ config: ClusterConfig) -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for n in config.nodes { names[UInt32(n.number)] = n.name }
        return names
    }
}

extension Boot {
    /// The distro's own corosync.service must not start a second corosync
    /// beside ours (it would fail on the running one's lock file). A
    /// runtime mask in /run/systemd/system, which moves into the new root
    /// with /run, outranks /etc and /lib and vanishes at the next boot.
    func maskDistroCorosync() {
        maskForBoot(["corosync.service"])
    }

    /// The membership step: the agents root, corosync, the membership and
    /// process agents and the configured ones (each started once, whatever
    /// the retries), then the bounded wait for quorum.
    func joinCluster(_ identity: NodeIdentity, _ params: BootParameters, agents: StartedAgents) throws(SSIError) -> Membership {
        let config = identity.config, node = identity.node
        var stage = BootStage(agent: agents[Boot.membershipAgent.name])
        let corosync: pid_t
        if let pid = agents[Boot.corosyncAgent.name] {
            corosync = pid
        } else {
            let started = Process.now()
            maskDistroCorosync()
            // configfs must be mounted before the agents root binds /sys.
            if QuorumPolicy.needsDLMKernel(config) { try prepareDLMKernel() }
            let key = try fetchClusterKey(identity, params)
            try bringUpTunnel(identity, params, key: key)
            let dlmConf = try resolvedDLMConf(config)
            try AgentsRoot.prepare()
            if let dlmConf { try writeResolvedDLMConf(dlmConf) }
            log.info("membership", "agents root ready in \(Int((Process.now() - started) * 1000)) ms")
            stage.set("membership")
            corosync = try startAgent(Boot.corosyncAgent)
            agents[Boot.corosyncAgent.name] = corosync
        }
        let quorum = try connect(corosync: corosync, timeout: 30)
        if stage.agent == nil {
            stage.agent = try startAgent(Boot.membershipAgent)
            agents[Boot.membershipAgent.name] = stage.agent
        }
        if agents[Boot.processAgent.name] == nil {
            agents[Boot.processAgent.name] = try startAgent(Boot.processAgent)
        }
        for agent in config.agents where agents[agent.name] == nil {
            agents[agent.name] = try startAgent(agent)
        }
        let wait = QuorumPolicy.waitSeconds(params, config, node: node)
        let coldStart = params.quorumWait == nil && QuorumPolicy.isColdStartServer(config, node: node)
        switch try waitForQuorum(quorum, seconds: wait, names: QuorumPolicy.names(config)) {
        case .quorate(let members):
            if let stale = QuorumPolicy.strangers(config, members: members) {
                if QuorumPolicy.needsDLMKernel(config) { throw stale }
                log.warning("membership", stale.message + "; " + (stale.hint ?? ""))
            }
        case .timedOut(let seen, let members):
            switch QuorumPolicy.onTimeout(config, node: node, waited: wait, seen: seen, members: members, coldStart: coldStart) {
            case .serve(let note):
                log.info("membership", note)
            case .goOn(let warning):
                log.warning("membership", warning)
            case .stop(let error):
                throw error
            }
        }
        stage.set("joined")
        return Membership(identity: identity, agents: agents, stage: stage)
    }
}
