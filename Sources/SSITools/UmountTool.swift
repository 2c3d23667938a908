#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership

/// `ssi-umount`: util-linux umount's command line; a cluster mount's
/// target is unmounted on every member (the others first, the owner and
/// its export last), anything else here only, by libmount.
public struct UmountTool {
    /// util-linux 2.38's table ("aAcdfhilnqRrO:t:vVN:" and its longopts, in order).
    public static let getopt = GetOpt([
        .init("a", "all"), .init("A", "all-targets"), .init("d", "detach-loop"), .init(nil, "fake"), .init("f", "force"),
        .init("h", "help"), .init("i", "internal-only"), .init("l", "lazy"), .init("c", "no-canonicalize"),
        .init("n", "no-mtab"), .init("q", "quiet"), .init("r", "read-only"), .init("R", "recursive"),
        .init("O", "test-opts", .required), .init("t", "types", .required), .init("v", "verbose"),
        .init("V", "version"), .init("N", "namespace", .required),
    ])

    public let program: String
    public let output: Output

    public init(program: String, output: Output = .standard) {
        self.program = program
        self.output = output
    }

    public func run(_ args: [String]) -> Int32 {
        let name = basename(of: program)
        let p: GetOpt.Parsed
        do {
            p = try Self.getopt.parse(args, program: program)
        } catch {
            return output.usage(error.message, program: program, code: MountContext.ExitCode.usage)
        }
        let keys = Set(p.options.map(\.key))
        if keys.contains("help") {
            output.out("\nUsage:\n \(name) [-hV]\n \(name) -a [options]\n \(name) [options] <source> | <directory>\n\n"
                + "Unmount filesystems; a cluster mount (see ssi-mount) is unmounted on every node.\n")
            return 0
        }
        if keys.contains("version") {
            output.out("\(name) from ssi (libmount \(MountContext.libraryVersion))")
            return 0
        }
        if keys.contains("namespace") {
            return output.fail("--namespace is not supported by ssi-umount; run util-linux's umount "
                + "(\(SSIDiversion.divertedPath("/usr/bin/umount")) once diverted)", program: program, code: MountContext.ExitCode.usage)
        }
        let all = keys.contains("all")
        if all && !p.operands.isEmpty || !all && p.operands.isEmpty {
            return output.usage("\(name): bad usage", program: program, code: MountContext.ExitCode.usage)
        }
        let cluster = ClusterLink.current()
        var code: Int32 = 0
        for spec in p.operands {
            if let cluster, let entry = clusterEntry(spec, cluster: cluster) {
                code = max(code, cluster.umount(target: entry.target, program: program, output: output))
                continue
            }
            code = max(code, local(spec, p))
        }
        if all { code = local(nil, p) }
        return code
    }

    /// The cluster mount a umount operand names: its target, or its source
    /// on the node that owns it.
    func clusterEntry(_ spec: String, cluster: ClusterLink) -> ClusterMount? {
        let table = cluster.table()
        var path = spec
        if !path.hasPrefix("/"), !path.contains("=") {
            path = currentDirectory() + "/" + spec
        }
        return table.first { $0.target == path || $0.target == spec } ?? table.first { $0.source == spec }
    }

    func local(_ spec: String?, _ p: GetOpt.Parsed) -> Int32 {
        let name = basename(of: program)
        let cxt: MountContext
        do { cxt = try MountContext() } catch {
            output.error("\(name): \(error.description)")
            return MountContext.ExitCode.system
        }
        var types: String?
        var testOptions: String?
        for o in p.options {
            switch o.key {
            case "fake": cxt.setFake(true)
            case "internal-only": cxt.setNoHelpers(true)
            case "force": cxt.setForce(true)
            case "lazy": cxt.setLazy(true)
            case "no-mtab": cxt.setNoMtab(true)
            case "read-only": cxt.setReadOnlyUmount(true)
            case "no-canonicalize": cxt.setNoCanonicalize(true)
            case "verbose": cxt.setVerbose(true)
            case "types": types = o.value
            case "test-opts": testOptions = o.value
            default: break
            }
        }
        guard let spec else {
            // umount -a: every mount of the table, last first, by libmount.
            cxt.setTypePattern(types)
            cxt.setOptionsPattern(testOptions)
            return cxt.umountAll { target, outcome in
                if !outcome.message.isEmpty { output.error("\(name): \(target): \(outcome.message).") }
            }
        }
        cxt.target = spec
        let o = cxt.umount()
        if !o.message.isEmpty { output.error("\(name): \(spec): \(o.message).") }
        return o.exitCode
    }
}
