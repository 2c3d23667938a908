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

    /// The fstab `-A` reads: $FSTAB_FILE, as util-linux's fsck takes it,
    /// else libmount's default (/etc/fstab, or $LIBMOUNT_FSTAB).
    public var fstabFile: String?

    public init(program: String, output: Output = .standard) {
        self.program = program
        self.output = output
        fstabFile = getenv("FSTAB_FILE").map { String(cString: $0) }
    }

    var name: String { basename(of: program) }

    /// What the command line says: fsck's own options, and what goes to
    /// the checker (options fsck does not know, words that are not
    /// devices, and all after "--").
    public struct Invocation: Sendable, Equatable {
        public var help = false
        public var version = false
        public var all = false
        public var skipRoot = false
        public var skipMounted = false
        public var dryRun = false
        public var noTitle = false
        public var verbose = false
        public var serialize = false
        public var types: String?
        /// -C: "" without a descriptor, else its number.
        public var progressFD: String?
        public var checkerOptions: [String] = []
        public var devices: [String] = []
    }

    /// A usage error (exit 16) or too many words (exit 8), util-linux's words.
    public struct CommandLineError: Error, Sendable, Equatable {
        public var message: String
        public var code: Int32
    }

    /// util-linux fsck's bounds on devices and checker words (MAX_DEVICES, MAX_ARGS).
    public static let maxDevices = 32
    public static let maxArguments = 32

    /// util-linux's fsck does not use getopt: its parse_argv(), rule for
    /// rule. A word starting with "/" (before "--") or holding "=" is a
    /// device; other words not starting with "-" go to the checker; in a
    /// "-..." word each letter is fsck's or the checker's; "-C" and "-r"
    /// take a descriptor glued or as the next word, "-t" its list once.
    public static func parse(_ args: [String]) throws(CommandLineError) -> Invocation {
        var v = Invocation()
        var forChecker = false
        var i = 0
        func device(_ word: String) throws(CommandLineError) {
            guard v.devices.count < maxDevices else { throw CommandLineError(message: "too many devices", code: 8) }
            v.devices.append(word)
        }
        func checker(_ word: String) throws(CommandLineError) {
            guard v.checkerOptions.count < maxArguments else { throw CommandLineError(message: "too many arguments", code: 8) }
            v.checkerOptions.append(word)
        }
        while i < args.count {
            let a = args[i]
            i += 1
            if !forChecker && a == "--help" { v.help = true; return v }
            if !forChecker && a == "--version" { v.version = true; return v }
            if (a.hasPrefix("/") && !forChecker) || a.contains("=") {
                try device(a)
                continue
            }
            if !a.hasPrefix("-") || forChecker {
                try checker(a)
                continue
            }
            var passthrough = ""
            let chars = Array(a.unicodeScalars.dropFirst())
            var j = 0
            letters: while j < chars.count {
                let c = chars[j]
                j += 1
                if forChecker { passthrough.unicodeScalars.append(c); continue }
                // What follows the letter, for the three that take it: made
                // only for them, once a word (a long word of letters stays linear).
                var rest: String { String(String.UnicodeScalarView(chars[j...])) }
                switch c {
                case "A": v.all = true
                case "R": v.skipRoot = true
                case "M": v.skipMounted = true
                case "N": v.dryRun = true
                case "T": v.noTitle = true
                case "V": v.verbose = true
                case "s": v.serialize = true
                case "P", "l": break
                case "C":
                    // A bad glued descriptor means 0 and the letters go on.
                    v.progressFD = "0"
                    if j < chars.count {
                        // An int has at most 11 characters: "-CCCC..." stays linear.
                        if chars.count - j <= 11, let fd = descriptor(rest) { v.progressFD = String(fd); break letters }
                    } else if i < args.count, !args[i].hasPrefix("-") {
                        if let fd = descriptor(args[i]) { v.progressFD = String(fd); i += 1; break letters }
                    } else {
                        v.progressFD = ""
                    }
                case "r":
                    // Statistics are not written; the descriptor is still
                    // checked, as util-linux does.
                    let word: String? = j < chars.count ? rest : i < args.count && args[i].first.map({ ("0"..."9").contains($0) }) == true ? args[i] : nil
                    if let word {
                        guard UInt32(word) != nil else {
                            throw CommandLineError(message: "invalid argument of -r: '\(word)'", code: 16)
                        }
                        if j == chars.count { i += 1 }
                        break letters
                    }
                case "t":
                    guard v.types == nil else { throw CommandLineError(message: "option '-t' may be specified only once", code: 16) }
                    if j < chars.count { v.types = rest }
                    else if i < args.count { v.types = args[i]; i += 1 }
                    else { throw CommandLineError(message: "option '-t' requires an argument", code: 16) }
                    break letters
                case "-": forChecker = true
                case "?": v.help = true; return v
                default: passthrough.unicodeScalars.append(c)
                }
            }
            if !passthrough.isEmpty { try checker("-" + passthrough) }
        }
        return v
    }

    /// util-linux's string_to_int: a non-negative int, else nil.
    static func descriptor(_ s: String) -> Int32? {
        guard let n = Int32(s), n >= 0 else { return nil }
        return n
    }

    public func run(_ args: [String]) -> Int32 {
        let inv: Invocation
        do { inv = try Self.parse(args) } catch {
            // util-linux's errx(): no "Try --help" line.
            return output.fail(error.message, program: program, code: error.code)
        }
        if inv.help {
            output.out("\nUsage:\n \(name) [options] -- [fs-options] [<filesystem> ...]\n\n"
                + "Check and repair a Linux filesystem; in a cluster, never one another member has mounted,\n"
                + "and never on two nodes at once.\n")
            return 0
        }
        if inv.version {
            output.out("\(name) from ssi (util-linux compatible)")
            return 0
        }
        if !inv.noTitle { output.out("\(name) from ssi (util-linux compatible)") }
        var targets: [(spec: String, type: String?, mountPoint: String?, pass: Int)] = inv.devices.map { ($0, inv.types, nil, 0) }
        var serial = inv.serialize
        // util-linux: no file system named and no -A checks fstab's all
        // the same, one at a time ("equivalent to -As").
        if inv.all || inv.devices.isEmpty {
            if inv.verbose { output.out("Checking all file systems.") }
            // As util-linux: a missing fstab is an empty one; one that
            // cannot be read is said, and nothing is checked.
            let path = fstabFile.flatMap { $0.isEmpty ? nil : $0 }
            var entries: [FstabTable.Entry] = []
            do throws(SystemCallError) { entries = try FstabTable(path: path).entries } catch {
                if FileSystem.exists(path ?? "/etc/fstab") { output.error("\(name): \(path ?? "/etc/fstab"): failed to parse fstab") }
            }
            // A nofail line whose device is not there is passed over, as
            // util-linux does (a boot-time fsck -A must not fail on it).
            entries = entries.filter { $0.passNumber > 0 && !(inv.skipRoot && $0.target == "/") }
                .filter { MountOptions.value(of: "nofail", in: $0.options) == nil || deviceExists($0.source) }
                .filter { inv.types == nil || FstabTable.matches($0, types: inv.types, options: nil) }
                .sorted { $0.passNumber < $1.passNumber }
            targets = entries.map { ($0.source, $0.type.isEmpty || $0.type == "auto" ? nil : $0.type, $0.target, Int($0.passNumber)) }
            if !inv.all { serial = true }
        }
        let cluster = ClusterLink.current(directory: stateDirectory)
        var status: Int32 = 0
        var lastPass = -1
        var instance = 1
        for t in targets {
            // The number in the dry-run line is util-linux's count of
            // checkers running at once: devices named on the command line
            // run side by side (1, 2, ...); with -s one at a time (1). For
            // fstab's lines it waits while another checker runs on the
            // same disk, which it cannot tell for files and missing
            // devices, and this fsck checks one at a time anyway: 1.
            instance = serial || t.pass > 0 || t.pass != lastPass ? 1 : instance + 1
            lastPass = t.pass
            status |= check(t.spec, type: t.type, inv, cluster: cluster, mountPoint: t.mountPoint, instance: instance)
        }
        return status
    }

    func deviceExists(_ spec: String) -> Bool {
        if spec.hasPrefix("/") { return FileSystem.exists(spec) }
        guard let want = try? DeviceSpec(parsing: spec, field: "fsck") else { return false }
        return BlockDevices.scan().contains { want.matches($0) }
    }

    /// `mountPoint`: the fstab line's, which util-linux's dry-run and
    /// verbose lines name instead of the device.
    /// `instance`: which checker of its pass this is, for the dry-run line.
    func check(_ spec: String, type: String?, _ inv: Invocation, cluster: ClusterLink?, mountPoint: String? = nil, instance: Int = 1) -> Int32 {
        var dev: BlockDevice?
        if spec.hasPrefix("/") {
            dev = FileSystem.exists(spec) ? BlockDevices.probe(spec) : nil
        } else if let want = try? DeviceSpec(parsing: spec, field: "fsck") {
            dev = BlockDevices.scan().first { want.matches($0) }
        }
        guard let dev else {
            // util-linux: a device named by path whose type is known (the
            // fstab line's, -t) goes to its checker all the same, which
            // says what is wrong; -N prints its line.
            // With no type it is fsck.ext2's, util-linux's default.
            if spec.hasPrefix("/") {
                let t = type?.split(separator: ",").first.map(String.init) ?? ""
                return runChecker(fsType: t.isEmpty || t == "auto" ? "ext2" : t, device: spec, inv, mountPoint: mountPoint, instance: instance)
            }
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
                    let answer = try AgentClient.exchange(fd, .lock(name: "fsck:\(uuid)"), timeoutMs: 24 * 3600 * 1000) { line in
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
        return runChecker(fsType: fsType, device: dev.path, inv, mountPoint: mountPoint, instance: instance)
    }

    /// Runs (or with -N prints) fsck.TYPE on `device`.
    func runChecker(fsType: String, device: String, _ inv: Invocation, mountPoint: String?, instance: Int) -> Int32 {
        let checker = "fsck." + fsType
        guard let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map({ $0 + "/" + checker }).first(where: FileSystem.isExecutableFile) else {
            output.error("\(name): \(checker): not found")
            output.error("\(name): error 2 (No such file or directory) while executing \(checker) for \(device)")
            return 8
        }
        var argv = [checker]
        if let fd = inv.progressFD, fsType.hasPrefix("ext") { argv.append(fd.isEmpty ? "-C0" : "-C\(fd)") }
        argv += inv.checkerOptions + [device]
        if inv.dryRun || inv.verbose {
            // util-linux's dry-run line, its trailing space included.
            output.out("[\(path) (\(instance)) -- \(mountPoint ?? device)] " + argv.map { $0 + " " }.joined())
            if inv.dryRun { return 0 }
        }
        do {
            let pid = try Process.spawn(path, argv, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FSCK_FORCE_ALL_PARALLEL=0"])
            switch try Process.wait(for: pid) {
            case .exited(let code): return code
            case .signaled: return 8
            }
        } catch {
            output.error("\(name): error \(error.errno) (\(errnoDescription(error.errno))) while executing \(checker) for \(device)")
            return 8
        }
    }
}
