import SSICore
import SSILinux
import SSIMembership
import SSIConfig
import SSITools

struct StatusCommand {
    static let command = CLICommand(
        "status",
        abstract: "Show the members, their states and roles, and quorum.",
        options: [
            .flag("json", help: "Print JSON for scripts."),
            .value("state-dir", "dir", help: "Where the membership agent keeps the view.", default: ClusterView.defaultDirectory),
        ]) { try StatusCommand($0).run() }

    var json: Bool
    var stateDirectory: String

    init(_ v: CLIValues) {
        json = v.flag("json")
        stateDirectory = v.string("state-dir") ?? ClusterView.defaultDirectory
    }

    func run() throws {
        do {
            let view = try currentView()
            let roles = ClusterRoles.load()
            print(json ? view.json(roles: roles) : view.statusText(roles: roles), terminator: json ? "\n" : "")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    /// The agent's view with live quorum figures from corosync. Without the
    /// agent, corosync's own membership (states are then only UP/DOWN).
    func currentView() throws(SSIError) -> ClusterView {
        // A missing library is its own error, not "corosync is not running".
        try LazyLibrary.load(LazyLibrary.corosync)
        let quorum: QuorumClient
        do {
            quorum = try QuorumClient()
        } catch {
            throw SSIError("status", "corosync is not running on this node (its IPC cannot be reached)",
                           hint: "boot the node with an image built with --config, or start corosync")
        }
        var view: ClusterView
        if let v = try? ClusterView.load(directory: stateDirectory) {
            view = v
        } else {
            view = ClusterView(clusterName: "", localNode: 0, quorate: false, expectedVotes: 0,
                               totalVotes: 0, quorum: 0, nodes: [])
            // corosync's own membership: votequorum knows each node's state.
            let cmap = try CmapClient()
            let votes = try? VotequorumClient()
            view.clusterName = cmap.string("totem.cluster_name") ?? ""
            view.localNode = cmap.uint32("runtime.votequorum.this_node_id") ?? 0
            for i in 0..<1024 {
                guard let id = cmap.uint32("nodelist.node.\(i).nodeid") else { break }
                let member = (try? votes?.info(node: id))??.state == 1
                view.nodes.append(NodeRecord(number: id, name: cmap.string("nodelist.node.\(i).name") ?? "",
                                             address: cmap.string("nodelist.node.\(i).ring0_addr") ?? "",
                                             state: member ? .up : .down, stage: ""))
            }
        }
        view.quorate = try quorum.refreshQuorate()
        if let info = try? VotequorumClient().info() {
            view.expectedVotes = info.expectedVotes
            view.totalVotes = info.totalVotes
            view.quorum = info.quorum
        }
        return view
    }
}

struct NodeNumCommand {
    static let command = CLICommand(
        "node-num",
        abstract: "Print this node's number (OpenSSI's clusternode_num).") { _ in try NodeNumCommand().run() }

    func run() throws {
        do {
            let cpg = try CPGClient(group: "ssi-node-num")
            print(try cpg.localNode())
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

struct AgentCommand {
    static let command = CLICommand(
        "agent",
        abstract: "Run the membership agent (started by ssi-init; stays after the hand-off).",
        options: [
            .value("state-dir", "dir", help: "Where to keep the cluster view.", default: ClusterView.defaultDirectory),
            .value("hooks", "dir", help: "Programs run when a node comes up or goes down.", default: defaultHooks),
        ]) { try AgentCommand($0).run() }

    static let defaultHooks = "/etc/ssi/hooks.d"

    var stateDirectory: String
    var hooksDirectory: String

    init(_ v: CLIValues) {
        stateDirectory = v.string("state-dir") ?? ClusterView.defaultDirectory
        hooksDirectory = v.string("hooks") ?? Self.defaultHooks
    }

    func run() throws {
        var options = MembershipAgent.Options()
        options.stateDirectory = stateDirectory
        options.hooksDirectory = hooksDirectory
        let agent = MembershipAgent(options: options) { line in writeAll(2, "ssi-cluster: \(line)\n") }
        do {
            try agent.run()
        } catch {
            printError(tool: "ssi-cluster agent", error)
            throw ExitCode(1)
        }
    }
}

/// Roles come from the cluster configuration (corosync does not know
/// them); no configuration, no roles.
enum ClusterRoles {
    static func load() -> [UInt32: String] {
        guard let config = try? ClusterConfig.load(path: ClusterConfig.defaultPath) else { return [:] }
        var roles: [UInt32: String] = [:]
        for n in config.nodes { roles[UInt32(n.number)] = n.role.rawValue }
        return roles
    }
}
