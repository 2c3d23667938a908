#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership

/// `ssi-fsck`: util-linux fsck's command line and exit codes (the OR of
/// the checkers'; 8 operational error, 16 usage); runs `fsck.TYPE`. With a
/// cluster running, a file system that any other member has mounted is
/// refused with the nodes named, and the check holds the cluster lock
/// "fsck:UUID" so that two nodes never check one device at once (the
/// second waits, and says for whom).
public struct FsckTool {
    public let program: String
    public let output: Output
    public var stateDirectory = ClusterView.defaultDirectory

    public init(program: String, output: Output = .standard) {
        self.program = program
        self.output = output
    }

    var name: String { basename(of: program) }

    /// What the command line says: fsck's own options, and what goes to
    /// the checker (options fsck does not know, and all after "--").
    public struct Invocation: Sendable, Equatable {
        public var all = false
        public var skipRoot = false
        public var skipMounted = false
        public var dryRun = false
        public var noTitle = false
        public var verbose = false
        public var serialize = false
        public var types: String?
        public var progressFD: String?
        public var checkerOptions: [String] = []
        public var devices: [String] = []
    }

    public static func parse(_ args: [String]) throws(GetOpt.Failure) -> Invocation {
        var v = Invocation()
        var i = 0
        var afterDashes = false
        while i < args.count {
            let a = args[i]
            i += 1
            if afterDashes { v.checkerOptions.append(a); continue }
            if a == "--" { afterDashes = true; continue }
            guard a.hasPrefix("-"), a.count > 1 else {
                v.devices.append(a)
                continue
            }
            var passthrough = ""
            var chars = Array(a.dropFirst())
            var j = 0
            while j < chars.count {
                let c = chars[j]
                j += 1
                switch c {
                case "A": v.all = true
                case "R": v.skipRoot = true
                case "M": v.skipMounted = true
                case "N": v.dryRun = true
                case "T": v.noTitle = true
                case "V": v.verbose = true
                case "s": v.serialize = true
                case "P", "l": break
                case "C", "r":
                    // An optional fd, glued or the next word if numeric.
                    let rest = String(chars[j...])
                    if !rest.isEmpty { if c == "C" { v.progressFD = rest }; j = chars.count }
                    else if i < args.count, Int(args[i]) != nil { if c == "C" { v.progressFD = args[i] }; i += 1 }
                    else if c == "C" { v.progressFD = "" }
                case "t":
                    let rest = String(chars[j...])
                    if !rest.isEmpty { v.types = rest; j = chars.count }
                    else if i < args.count { v.types = args[i]; i += 1 }
                    else { throw GetOpt.Failure(message: "option requires an argument -- 't'") }
                default:
                    passthrough.append(c)
                }
            }
            chars = []
            if !passthrough.isEmpty { v.checkerOptions.append("-" + passthrough) }
        }
        return v
    }

    public func run(_ args: [String]) -> Int32 {
        let inv: Invocation
        do { inv = try Self.parse(args) } catch {
            output.error("\(name): \(error.message)")
            output.error("Try '\(name) --help' for more information.")
            return 16
        }
        if args.contains("--help") || args.contains("-h") && inv.devices.isEmpty {
            output.out("\nUsage:\n \(name) [options] -- [fs-options] [<filesystem> ...]\n\n"
                + "Check and repair a Linux filesystem; in a cluster, never one another member has mounted,\n"
                + "and never on two nodes at once.\n")
            return 0
        }
        if !inv.noTitle { output.out("\(name) from ssi (util-linux compatible)") }
        var targets: [(spec: String, type: String?)] = inv.devices.map { ($0, inv.types) }
        if inv.all {
            guard let table = try? FstabTable(path: nil) else {
                output.error("\(name): cannot read /etc/fstab")
                return 8
            }
            let entries = table.entries.filter { $0.passNumber > 0 && !(inv.skipRoot && $0.target == "/") }
                .filter { inv.types == nil || FstabTable.matches($0, types: inv.types, options: nil) }
                .sorted { $0.passNumber < $1.passNumber }
            targets = entries.map { ($0.source, $0.type.isEmpty || $0.type == "auto" ? nil : $0.type) }
        }
        let cluster = ClusterLink.current(directory: stateDirectory)
        var status: Int32 = 0
        for t in targets {
            status |= check(t.spec, type: t.type, inv, cluster: cluster)
        }
        return status
    }

    func check(_ spec: String, type: String?, _ inv: Invocation, cluster: ClusterLink?) -> Int32 {
        var dev: BlockDevice?
        if spec.hasPrefix("/") {
            dev = FileSystem.exists(spec) ? BlockDevices.probe(spec) : nil
        } else if let want = try? DeviceSpec(parsing: spec, field: "fsck") {
            dev = BlockDevices.scan().first { want.matches($0) }
        }
        guard let dev else {
            output.error("\(name): \(spec): no such device (Possibly non-existent device?)")
            return 8
        }
        let fsType = type?.split(separator: ",").first.map(String.init) ?? dev.type ?? ""
        guard !fsType.isEmpty else {
            output.error("\(name): \(dev.path): no file system found (blkid); give its type with -t")
            return 8
        }
        if inv.skipMounted && Mount.entries().contains(where: { $0.source == dev.path }) { return 0 }
        var lockFD: Int32 = -1
        defer { if lockFD >= 0 { close(lockFD) } }
        if let cluster, let view = try? ClusterView.load(directory: cluster.directory) {
            let me = view.localNode
            var users: [NodeRecord] = []
            if let uuid = dev.uuid { users += view.members(using: uuid, as: "m") }
            if fsType == "gfs2", let table = dev.label { users += view.members(mounting: table) }
            users = users.filter { $0.number != me }
            if !users.isEmpty {
                let list = Set(users.map { "node \($0.number) (\($0.name))" }).sorted().joined(separator: ", ")
                output.error("\(name): \(dev.path): mounted on \(list): not checked; unmount it there first")
                return 8
            }
            if let uuid = dev.uuid, !inv.dryRun {
                guard let fd = AgentClient.connect(directory: cluster.directory) else {
                    output.error("\(name): \(dev.path): the membership agent is not answering: not checked without the cluster lock")
                    return 8
                }
                lockFD = fd
                do {
                    let answer = try AgentClient.exchange(fd, "lock fsck:\(uuid)", timeoutMs: 24 * 3600 * 1000) { line in
                        output.out("\(name): \(dev.path): \(line); waiting for the cluster lock fsck:\(uuid)")
                    }
                    guard answer.code == 0 else {
                        output.error("\(name): \(dev.path): cluster lock refused: \(answer.lines.joined(separator: "; "))")
                        return 8
                    }
                } catch {
                    output.error("\(name): \(dev.path): \(error.description)")
                    return 8
                }
            }
        }
        let checker = "fsck." + fsType
        guard let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map({ $0 + "/" + checker }).first(where: FileSystem.isExecutableFile) else {
            output.error("\(name): \(checker): not found")
            output.error("\(name): error 2 (No such file or directory) while executing \(checker) for \(dev.path)")
            return 8
        }
        var argv = [checker]
        if let fd = inv.progressFD, fsType.hasPrefix("ext") { argv.append(fd.isEmpty ? "-C0" : "-C\(fd)") }
        argv += inv.checkerOptions + [dev.path]
        if inv.dryRun || inv.verbose {
            // util-linux's dry-run line, its trailing space included.
            output.out("[\(path) (1) -- \(dev.path)] " + argv.map { $0 + " " }.joined())
            if inv.dryRun { return 0 }
        }
        do {
            let pid = try Process.spawn(path, argv, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FSCK_FORCE_ALL_PARALLEL=0"])
            switch try Process.wait(for: pid) {
            case .exited(let code): return code
            case .signaled: return 8
            }
        } catch {
            output.error("\(name): error \(error.errno) (\(errnoDescription(error.errno))) while executing \(checker) for \(dev.path)")
            return 8
        }
    }
}
