import ArgumentParser

struct SSICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssi",
        abstract: "Boot-time cluster bring-up toolkit (single system image).",
        discussion: """
            One binary for every command: run it as `ssi COMMAND ...`, or through a \
            link named after the command (ssi-mkinitrd, ssi-init).
            """,
        version: SSIVersion.string,
        subcommands: [MkinitrdCommand.self, InitCommand.self, ClusterCommand.self, MountDocCommand.self, UmountDocCommand.self,
                      SwaponDocCommand.self, SwapoffDocCommand.self, FsckDocCommand.self, DivertCommand.self,
                      MigrateDocCommand.self, OnnodeDocCommand.self, WherePIDDocCommand.self])
}

enum SSIVersion {
    static let string = "0.1.0"
}
