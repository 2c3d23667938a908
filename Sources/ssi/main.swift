#if canImport(Glibc)
import Glibc
#endif
import SSILinux
import SSIBoot

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
default:
    SSICommand.main(Array(arguments.dropFirst()))
}
