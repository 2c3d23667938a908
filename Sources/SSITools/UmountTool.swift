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

    static let optionsHelp = """
         -a, --all               unmount every file system in the mount table
         -A, --all-targets       unmount every mount of the device the operand names
         -c, --no-canonicalize   use the paths as given, without resolving them
         -d, --detach-loop       detach the loop device too
             --fake              dry run; skip the umount(2) syscall
         -f, --force             force the unmount (an unreachable NFS server)
         -i, --internal-only     do not call a /sbin/umount.<type> helper
         -n, --no-mtab           don't write to /etc/mtab
         -l, --lazy              detach now, clean up once no longer busy
         -O, --test-opts <list>  with -a, only file systems with these options
         -q, --quiet             say nothing of what is not mounted
         -r, --read-only         remount read-only when the unmount fails
         -R, --recursive         unmount the mount and everything under it
         -t, --types <list>      with -a, only file systems of these types
         -v, --verbose           say what is being done
         -N, --namespace <ns>    unmount in another mount namespace (a pid or a file)
         -h, --help              this text
         -V, --version           the version

        """

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
                + "Unmount filesystems; a cluster mount (see ssi-mount) is unmounted on every node.\n\n"
                + "Options (util-linux umount's; see umount(8)):\n" + Self.optionsHelp)
            return 0
        }
        if let failed = output.loadLibMount(program: program) { return failed }
        if keys.contains("version") {
            output.out("\(name) from ssi (libmount \(MountContext.libraryVersion))")
            return 0
        }
        // -N: libmount unmounts in the other namespace; -R and -A walk
        // this one's mount tree, so they are refused with it.
        if keys.contains("namespace") && (keys.contains("recursive") || keys.contains("all-targets")) {
            return output.fail("--namespace with --recursive or --all-targets is not supported by ssi-umount; run util-linux's umount "
                + "(\(SSIDiversion.divertedPath("/usr/bin/umount")) once diverted)", program: program, code: MountContext.ExitCode.usage)
        }
        let all = keys.contains("all")
        if all && !p.operands.isEmpty || !all && p.operands.isEmpty {
            return output.usage("\(name): bad usage", program: program, code: MountContext.ExitCode.usage)
        }
        if keys.contains("recursive") && keys.contains("read-only") {
            return output.fail("mutually exclusive arguments: --recursive --read-only", program: program, code: MountContext.ExitCode.usage)
        }
        // Another namespace's mounts are not the cluster's.
        let cluster = keys.contains("namespace") ? nil : ClusterLink.current()
        // util-linux adds the operands' exit codes up (32 + 0 + 32 = 64).
        var code: Int32 = 0
        for spec in p.operands {
            if let cluster, let entry = clusterEntry(spec, cluster: cluster) {
                code &+= cluster.umount(target: entry.target, program: program, output: output)
                continue
            }
            if keys.contains("all-targets") {
                code &+= allTargets(spec, p, recursive: keys.contains("recursive"))
            } else if keys.contains("recursive") {
                code &+= recursive(spec, p)
            } else {
                code &+= local(spec, p)
            }
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

    /// umount -R, as util-linux's umount_recursive: the last mount on the
    /// target, what is mounted over it first, then its children from the
    /// last, each one only if still mounted; the first failure stops.
    func recursive(_ spec: String, _ p: GetOpt.Parsed) -> Int32 {
        let tree = Mount.tree()
        guard let top = tree.last(where: { $0.entry.mountPoint == Self.canonical(spec) }) else {
            return notMounted(spec, p)
        }
        return recurse(top, tree, p)
    }

    private func recurse(_ fs: Mount.TreeEntry, _ tree: [Mount.TreeEntry], _ p: GetOpt.Parsed) -> Int32 {
        let over = tree.last { $0.parent == fs.id && $0.entry.mountPoint == fs.entry.mountPoint }
        if let over {
            let rc = recurse(over, tree, p)
            if rc != 0 { return rc }
        }
        for child in tree.reversed() where child.parent == fs.id && child.id != over?.id {
            let rc = recurse(child, tree, p)
            if rc != 0 { return rc }
        }
        return stillMounted(fs) ? local(fs.entry.mountPoint, p) : 0
    }

    /// umount -A, as util-linux's umount_alltargets: every mount of the
    /// device the operand names (bind mounts included), last first.
    func allTargets(_ spec: String, _ p: GetOpt.Parsed, recursive: Bool) -> Int32 {
        let tree = Mount.tree()
        let path = Self.canonical(spec)
        // An image file names the loop devices it backs (util-linux too).
        let loops = Set(Self.loopDevices(backing: path))
        guard let named = tree.last(where: { $0.entry.mountPoint == path })
                ?? tree.last(where: { $0.entry.source == spec || $0.entry.source == path || loops.contains($0.entry.source) }) else {
            return notMounted(spec, p)
        }
        for fs in tree.reversed() where fs.entry.device == named.entry.device {
            let rc = recursive ? recurse(fs, Mount.tree(), p) : (stillMounted(fs) ? local(fs.entry.mountPoint, p) : 0)
            if rc != 0 { return rc }
        }
        return 0
    }

    private func stillMounted(_ fs: Mount.TreeEntry) -> Bool {
        Mount.tree().contains { $0.id == fs.id }
    }

    /// util-linux's words for an operand that names no mount.
    private func notMounted(_ spec: String, _ p: GetOpt.Parsed) -> Int32 {
        if !p.options.contains(where: { $0.key == "quiet" }) {
            output.error("\(basename(of: program)): \(spec): \(access(spec, F_OK) == 0 ? "not mounted" : "not found")")
        }
        return MountContext.ExitCode.usage
    }

    /// The loop devices whose backing file is `file` (a regular file's
    /// full path), from sysfs.
    static func loopDevices(backing file: String, sys: String = "/sys/block") -> [String] {
        guard let st = try? FileSystem.status(file, followSymlinks: true), st.kind == .regular else { return [] }
        return ((try? FileSystem.list(sys)) ?? []).filter { $0.hasPrefix("loop") }.sorted().filter { dev in
            (try? FileSystem.readText("\(sys)/\(dev)/loop/backing_file"))?.lines().first.map(String.init) == file
        }.map { "/dev/" + $0 }
    }

    /// The path as the mount table has it (symlinks resolved); as given
    /// when it cannot be resolved.
    static func canonical(_ spec: String) -> String {
        (try? FileSystem.realPath(spec)) ?? spec
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
            case "detach-loop": cxt.setLoopDelete(true)
            case "types": types = o.value
            case "test-opts": testOptions = o.value
            case "namespace":
                // util-linux: a pid is its /proc/PID/ns/mnt; exit 2 when
                // it cannot be entered.
                do { try cxt.setTargetNamespace(o.value ?? "") } catch {
                    output.error("\(name): \(error.call): \(String(cString: strerror(error.errno)))")
                    return MountContext.ExitCode.system
                }
            default: break
            }
        }
        guard let spec else {
            // umount -a: every mount of the table, last first, by libmount.
            cxt.setTypePattern(types)
            cxt.setOptionsPattern(testOptions)
            let verbose = p.options.contains { $0.key == "verbose" }
            return cxt.umountAll { target, outcome in
                func pad(_ s: String) -> String { s.count >= 25 ? s : s + String(repeating: " ", count: 25 - s.count) }
                guard let outcome else {
                    if verbose { output.out(pad(target) + ": ignored") }
                    return
                }
                if !outcome.message.isEmpty { output.error("\(name): \(target): \(outcome.message).") }
                if outcome.exitCode == 0 && verbose { output.out(pad(target) + ": successfully unmounted") }
            }
        }
        cxt.target = spec
        let o = cxt.umount()
        // util-linux names the target as libmount resolved it.
        let target = cxt.target ?? spec
        // -q: no "not mounted" (util-linux's only use of it).
        let quietNotMounted = p.options.contains(where: { $0.key == "quiet" }) && o.message == "not mounted"
        if !o.message.isEmpty && !quietNotMounted { output.error("\(name): \(target): \(o.message).") }
        if o.exitCode == 0 && cxt.mounted && p.options.contains(where: { $0.key == "verbose" }) {
            output.error("\(name): \(target)" + (cxt.source.map { " (\($0))" } ?? "") + " unmounted")
        }
        return o.exitCode
    }
}
