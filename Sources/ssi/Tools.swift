import SSITools

/// The util-linux drop-ins, by the name they were run as.
enum Tools {
    static let names: Set<String> = ["mount", "umount", "swapon", "swapoff", "fsck"]

    static func run(_ name: String, program: String, _ args: [String]) -> Int32 {
        switch name.hasPrefix("ssi-") ? String(name.dropFirst(4)) : name {
        case "mount": MountTool(program: program).run(args)
        case "umount": UmountTool(program: program).run(args)
        case "swapon": SwapTool(program: program, off: false).run(args)
        case "swapoff": SwapTool(program: program, off: true).run(args)
        case "fsck": FsckTool(program: program).run(args)
        default: 1
        }
    }
}
