#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIBoot
import SSITools
import SSIProcess
import CSSIShim

// ONE binary for every command. As PID 1 it is ssi-init before anything
// else runs: with no /proc yet, CommandLine.arguments is empty, so the
// init path must not look at it.
if getpid() == 1 {
    // systemd-shutdown's exec of /shutdown in the exit root (ExitRoot):
    // the path the kernel executed, which needs no /proc.
    if let execfn = ssi_exec_path(), String(cString: execfn) == "/shutdown" {
        ShutdownProgram.run(arguments: ShutdownProgram.arguments())
    }
    InitProgram.run()
}

let arguments = CommandLine.arguments
let invokedAs = basename(of: arguments.first ?? "ssi")

// A leveled program's wrapper (ssi-ll): a link in /run/ssi/ll named after
// the program (cc, gcc, ...), so argv[0] is the program's name; the path
// the kernel executed (AT_EXECFN) tells it apart.
if let execfn = ssi_exec_path(), String(cString: execfn).hasPrefix(ProcTools.levelDirectory + "/") {
    exit(ProcTools(program: invokedAs).leveledExec(arguments))
}

// The applet table (SSITools/Applets.swift) says what each name runs:
// argv[0] first (ssi-mount, onnode, /init), then `ssi NAME ...` for the
// commands with their own command lines (util-linux's, OpenSSI's), and
// the command tree (SSICommand.swift, parsed by SSITools/CommandLine) for the rest.
if let applet = Applet.named(invokedAs) {
    // argv[0] as given: getopt's messages print it whole, as util-linux's do.
    Tools.run(applet, program: arguments[0], invokedAs: invokedAs, Array(arguments.dropFirst()))
} else if arguments.count > 1, let applet = Applet.subcommand(arguments[1]), applet.ownCommandLine {
    Tools.run(applet, program: applet.program, invokedAs: applet.program, Array(arguments.dropFirst(2)))
} else {
    SSICommand.main(Array(arguments.dropFirst()))
}
