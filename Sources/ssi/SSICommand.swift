import SSITools

/// `ssi`: the root of the command tree (SSITools/CommandLine parses it).
enum SSICommand {
    static let root = CLICommand(
        "ssi",
        abstract: "Boot-time cluster bring-up toolkit (single system image).",
        discussion: """
            One binary for every command: run it as `ssi COMMAND ...`, or through a \
            link named after the command (ssi-mkinitrd, ssi-init).
            """,
        // The applet table's order; its man pages and completions follow.
        subcommands: Applet.all.compactMap { command(for: $0.command) })

    static let program = CLIProgram(root: root, version: SSIVersion.string)

    /// `args` without argv[0].
    static func main(_ args: [String]) -> Never {
        program.main(args)
    }

    /// The command tree's command for an applet: the whole command, or
    /// the help, man page and completions of one with its own command line.
    static func command(for command: Applet.Command) -> CLICommand? {
        switch command {
        case .mkinitrd: MkinitrdCommand.command
        case .initProgram: InitCommand.command
        case .cluster: ClusterCommand.command
        case .mount: ToolDocCommands.mount
        case .umount: ToolDocCommands.umount
        case .swapon: ToolDocCommands.swapon
        case .swapoff: ToolDocCommands.swapoff
        case .fsck: ToolDocCommands.fsck
        case .divert: DivertCommand.command
        case .migrate: ProcDocCommands.migrate
        case .onnode: ProcDocCommands.onnode
        case .wherePID: ProcDocCommands.wherePID
        case .kill: ProcDocCommands.kill
        case .loadlevel: ProcDocCommands.loadlevel
        case .ll: ProcDocCommands.ll
        case .loads: ProcDocCommands.loads
        case .onall: ProcDocCommands.onall
        case .clusterNodeNum: ProcDocCommands.clusterNodeNum
        case .clusterList: nil  // argv[0] only: `ssi cluster` is ssi's own command group
        case .fence, .deputy: nil  // fence_ssi: a fence agent's key=value stdin; the deputy: exec'd by the agent
        }
    }
}

enum SSIVersion {
    static let string = "0.1.0"
}
