import SSITools

/// ssi-cluster: shows and changes the cluster.
enum ClusterCommand {
    static let command = CLICommand(
        "cluster",
        abstract: "Show and change the cluster: configuration, keys, members.",
        subcommands: [StatusCommand.command, NodeNumCommand.command, ClusterConfigCommand.command, ClusterKeygenCommand.command, ClusterKeyCommand.command,
                      AgentCommand.command, ClusterReloadCommand.command, ClusterRootCommand.command,
                      MountApplyCommand.command, ClusterPSCommand.command, ProcAgentCommand.command,
                      ClusterNodeCommand.command, KeyServerCommand.command, ClusterTunnelCommand.command,
                      ClusterShutdownCommand.command, ClusterRebootCommand.command])
}
