import ArgumentParser

/// ssi-cluster: shows and changes the cluster.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show and change the cluster: configuration, keys, members.",
        subcommands: [StatusCommand.self, NodeNumCommand.self, ClusterConfigCommand.self, ClusterKeygenCommand.self,
                      AgentCommand.self, ClusterReloadCommand.self, ClusterRootCommand.self,
                      MountApplyCommand.self, ClusterPSCommand.self, ProcAgentCommand.self])
}
