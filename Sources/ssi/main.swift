#if canImport(Glibc)
import Glibc
#endif
import SSILinux
import SSIBoot
import SSITools

// ONE binary for every command. As PID 1 it is ssi-init before anything
// else runs: with no /proc yet, CommandLine.arguments is empty, so the
// init path must not look at it.
if getpid() == 1 {
    InitProgram.run()
}

let arguments = CommandLine.arguments
let invokedAs = basename(of: arguments.first ?? "ssi")

switch invokedAs {
case "init", "ssi-init":
    InitProgram.run()
case "ssi-mkinitrd", "mkinitrd":
    SSICommand.main(["mkinitrd"] + arguments.dropFirst())
case "fence_ssi":
    FenceAgent.run(Array(arguments.dropFirst()))
case "ssi-cluster":
    SSICommand.main(["cluster"] + arguments.dropFirst())
case "ssi-mount", "mount", "ssi-umount", "umount", "ssi-swapon", "swapon", "ssi-swapoff", "swapoff", "ssi-fsck", "fsck":
    exit(Tools.run(invokedAs, program: arguments[0], Array(arguments.dropFirst())))
default:
    // `ssi mount ARGS` is ssi-mount: the tools have util-linux's own
    // command lines, not the argument parser's.
    if arguments.count > 1, Tools.names.contains(arguments[1]) {
        exit(Tools.run(arguments[1], program: "ssi-" + arguments[1], Array(arguments.dropFirst(2))))
    }
    SSICommand.main(Array(arguments.dropFirst()))
}
