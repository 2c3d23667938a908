import SSICore
import SSILinux
import SSIBoot
import SSITools

struct InitCommand {
    static let command = CLICommand(
        "init",
        abstract: "PID 1 of the initramfs (ssi-init).",
        discussion: """
            The kernel runs it as /init. It reads root=, rootfstype=, rootflags=, ro/rw, \
            init=, rootwait=N, rootdelay=N, ssi.timeout=N and ssi.break=modules|root|pre-pivot \
            from the kernel command line. Outside PID 1, --explain shows how it would read \
            a command line.
            """,
        options: [
            .value("explain", "cmdline", help: "Show how a kernel command line is read (default: /proc/cmdline)."),
            .flag("explain-current", help: "Explain this machine's /proc/cmdline."),
        ]) { try InitCommand($0).run() }

    var explain: String?
    var explainCurrent: Bool

    init(_ v: CLIValues) {
        explain = v.string("explain")
        explainCurrent = v.flag("explain-current")
    }

    func run() throws {
        guard explain != nil || explainCurrent else {
            writeAll(2, "ssi-init: runs as PID 1 in the initramfs; use --explain CMDLINE to see how it reads a command line\n")
            throw ExitCode(2)
        }
        var text = explain ?? ""
        if explainCurrent { text = (try? FileSystem.readText("/proc/cmdline")) ?? "" }
        do {
            print(try BootParameters(KernelCommandLine(text)).explanation)
        } catch {
            printError(tool: "ssi-init", error)
            throw ExitCode(1)
        }
    }
}
