import ArgumentParser
import SSITools

struct SSICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssi",
        abstract: "Boot-time cluster bring-up toolkit (single system image).",
        discussion: """
            One binary for every command: run it as `ssi COMMAND ...`, or through a \
            link named after the command (ssi-mkinitrd, ssi-init).
            """,
        version: SSIVersion.string,
        // The applet table's order; its man pages and completions follow.
        subcommands: Applet.all.compactMap { parserCommand($0.command) })

    /// The argument parser's command for an applet: the whole command, or
    /// the help, man page and completions of one with its own command line.
    static func parserCommand(_ command: Applet.Command) -> (any ParsableCommand.Type)? {
        switch command {
        case .mkinitrd: MkinitrdCommand.self
        case .initProgram: InitCommand.self
        case .cluster: ClusterCommand.self
        case .mount: MountDocCommand.self
        case .umount: UmountDocCommand.self
        case .swapon: SwaponDocCommand.self
        case .swapoff: SwapoffDocCommand.self
        case .fsck: FsckDocCommand.self
        case .divert: DivertCommand.self
        case .migrate: MigrateDocCommand.self
        case .onnode: OnnodeDocCommand.self
        case .wherePID: WherePIDDocCommand.self
        case .fence: nil  // fence_ssi: a fence agent's key=value stdin, no subcommand
        }
    }
}

enum SSIVersion {
    static let string = "0.1.0"
}
