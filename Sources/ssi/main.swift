#if canImport(Glibc)
import Glibc
#endif
import SSILinux
import SSIBoot
import SSITools
import SSIProcess

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
case "ssi-migrate", "migrate":
    exit(ProcTools(program: invokedAs).migrate(Array(arguments.dropFirst())))
case "onnode":
    exit(ProcTools(program: invokedAs).onnode(Array(arguments.dropFirst())))
case "where_pid":
    exit(ProcTools(program: invokedAs).wherePID(Array(arguments.dropFirst())))
default:
    // Own command lines: `ssi migrate`, `ssi onnode`, `ssi where_pid`.
    if arguments.count > 1, ["migrate", "onnode", "where_pid"].contains(arguments[1]) {
        let tools = ProcTools(program: arguments[1] == "migrate" ? "ssi-migrate" : arguments[1])
        let rest = Array(arguments.dropFirst(2))
        exit(arguments[1] == "migrate" ? tools.migrate(rest) : arguments[1] == "onnode" ? tools.onnode(rest) : tools.wherePID(rest))
    }
    // `ssi mount ARGS` is ssi-mount: the tools have util-linux's own
    // command lines, not the argument parser's.
    if arguments.count > 1, Tools.names.contains(arguments[1]) {
        exit(Tools.run(arguments[1], program: "ssi-" + arguments[1], Array(arguments.dropFirst(2))))
    }
    SSICommand.main(Array(arguments.dropFirst()))
}
