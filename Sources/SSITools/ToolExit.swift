import SSICore
import SSILinux

// The one error-to-exit path of the util-linux drop-ins: every tool says
// what went wrong as util-linux's does and returns the code util-linux
// would exit with; main() only exits with it.
extension Output {
    /// A usage error: the message (getopt's, argv[0] first, or "NAME: what"),
    /// then util-linux's errtryhelp() line. Returns `code`, the tool's usage
    /// exit code (mount, umount, swapon 1; swapoff, fsck 16).
    public func usage(_ message: String, program: String, code: Int32) -> Int32 {
        error(message)
        error("Try '\(basename(of: program).escapedForTerminal) --help' for more information.")
        return code
    }

    /// util-linux's warnx(): "NAME: message", NAME argv[0]'s last component;
    /// control characters of names from outside escaped. Returns `code`.
    public func fail(_ message: String, program: String, code: Int32) -> Int32 {
        error("\(basename(of: program).escapedForTerminal): \(message.escapedForTerminal)")
        return code
    }

    /// mount and umount load libmount before anything else: without it
    /// every path fails the same way, naming dlopen's cause and the
    /// package, with mount(8)'s system-error exit (2), instead of a stub's
    /// 127 at whichever call came first.
    func loadLibMount(program: String) -> Int32? {
        do throws(SSIError) { try LazyLibrary.mount.load() } catch {
            return fail("\(error.message); \(error.hint ?? "")", program: program, code: MountContext.ExitCode.system)
        }
        return nil
    }
}
