import SSICore
import SSILinux

/// What the cmdline step yields: the parsed kernel command line, and our
/// own argv and environment as the kernel gave them. Their leftover words
/// ("single", "emergency") and key=value pairs are for the real init,
/// which gets them unchanged at the hand-off.
struct KernelArguments: Equatable {
    var params: BootParameters
    var argv: [String] = []
    var environment: [String] = []

    /// /proc/self/cmdline: NUL-terminated words, empty ones kept (an empty
    /// argument is an argument).
    static func argv(fromProcCmdline raw: [UInt8]) -> [String] {
        raw.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
    }

    /// /proc/self/environ: NUL-separated KEY=VALUE entries.
    static func environment(fromProcEnviron raw: [UInt8]) -> [String] {
        raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The real init's argv: ours with argv[0] replaced by its path.
    func initArguments() -> [String] {
        var args = argv
        if args.isEmpty { args = [params.initPath] } else { args[0] = params.initPath }
        return args
    }
}

extension Boot {
    func readCommandLine() throws(SSIError) -> KernelArguments {
        let text: String
        do { text = try FileSystem.readText("/proc/cmdline") } catch {
            throw SSIError("cmdline", "cannot read /proc/cmdline: \(error)")
        }
        var args = KernelArguments(params: try BootParameters(KernelCommandLine(text)))
        for w in args.params.warnings { log.warning("cmdline", w) }
        if let raw = try? FileSystem.readFile("/proc/self/cmdline") {
            args.argv = KernelArguments.argv(fromProcCmdline: raw)
        }
        if let raw = try? FileSystem.readFile("/proc/self/environ") {
            args.environment = KernelArguments.environment(fromProcEnviron: raw)
        }
        return args
    }
}
