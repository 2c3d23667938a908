import SSITools

/// The util-linux drop-ins, by the name they were run as.
enum Tools {
    static let names: Set<String> = ["mount", "umount"]

    static func run(_ name: String, program: String, _ args: [String]) -> Int32 {
        switch name.hasPrefix("ssi-") ? String(name.dropFirst(4)) : name {
        case "mount": MountTool(program: program).run(args)
        case "umount": UmountTool(program: program).run(args)
        default: 1
        }
    }
}
