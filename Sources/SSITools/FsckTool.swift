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
        /// -r: each checker's statistics, on stdout or (a descriptor
        /// above 0) one line each on that descriptor.
        public var reportStats = false
        public var statsFD: Int32?
        public var checkerOptions: [String] = []
        public var devices: [String] = []
    }

    /// A usage error (exit 16) or too many words (exit 8), util-linux's words.
    public struct CommandLineError: Error, Sendable, Equatable {
        public var message: String
        public var code: Int32
        /// A second line of ours, printed as it is (the message may quote
        /// the command line, so it is escaped and kept to one line).
        public var secondLine: String? = nil
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
                    v.reportStats = true
                    let word: String? = j < chars.count ? rest : i < args.count && args[i].first.map({ ("0"..."9").contains($0) }) == true ? args[i] : nil
                    if let word {
                        guard let fd = UInt32(word), fd <= UInt32(Int32.max) else {
                            throw CommandLineError(message: "invalid argument of -r: '\(word)'", code: 16)
                        }
                        if fd > 0 { v.statsFD = Int32(fd) }
                        if j == chars.count { i += 1 }
                        break letters
                    }
                case "t":
                    guard v.types == nil else { throw CommandLineError(message: "option '-t' may be specified only once", code: 16) }
                    if j < chars.count { v.types = rest }
                    else if i < args.count { v.types = args[i]; i += 1 }
                    else { throw CommandLineError(message: "option '-t' requires an argument", code: 16) }
                    // util-linux compiles the list as it meets it.
                    _ = try TypeFilter(v.types ?? "")
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

    static let optionsHelp = """
         -A         check every file system of fstab ($FSTAB_FILE), pass by pass
         -C [<fd>]  progress bars (ext checkers), on <fd>
         -l         accepted (util-linux locks the disk)
         -M         do not check mounted file systems
         -N         print what would be run, run nothing
         -P         accepted (the root is checked with the others)
         -r [<fd>]  each checker's statistics, on <fd>
         -R         with -A, skip the root file system
         -s         one checker at a time
         -t <list>  the types to check: a list, all or none with "no" or "!",
                    and opts=<option> / noopts=<option> for fstab's options
         -T         no title line
         -V         say what is being done
         -?, --help this text
         --version  the version
        Words fsck does not know, and everything after "--", go to the checker.

        """

    /// util-linux's string_to_int: a non-negative int, else nil.
    static func descriptor(_ s: String) -> Int32? {
        guard let n = Int32(s), n >= 0 else { return nil }
        return n
    }

    public func run(_ args: [String]) -> Int32 {
        let inv: Invocation
        do { inv = try Self.parse(args) } catch {
            // util-linux's errx(): no "Try --help" line.
            let code = output.fail(error.message, program: program, code: error.code)
            if let second = error.secondLine { output.error(second) }
            return code
        }
        if inv.help {
            output.out("\nUsage:\n \(name) [options] -- [fs-options] [<filesystem> ...]\n\n"
                + "Check and repair a Linux filesystem; in a cluster, never one another member has mounted,\n"
                + "and never on two nodes at once.\n\nOptions (util-linux fsck's; see fsck(8)):\n" + Self.optionsHelp)
            return 0
        }
        if inv.version {
            output.out("\(name) from ssi (util-linux compatible)")
            return 0
        }
        // util-linux resolves a named tag while it reads the command line:
        // one that names no device ends the run before the title.
        for spec in inv.devices where !spec.hasPrefix("/") {
            if let want = try? DeviceSpec(parsing: spec, field: "fsck"), !BlockDevices.scan().contains(where: { want.matches($0) }) {
                output.error("\(name): couldn't find matching filesystem: \(spec)")
                return 8
            }
        }
        if !inv.noTitle { output.out("\(name) from ssi (util-linux compatible)") }
        // util-linux reads fstab on every run (a named device is looked up
        // in it): a missing one is an empty one; one that cannot be read is
        // said; each line libmount passes over is named.
        let fstabPath = fstabFile.flatMap { $0.isEmpty ? nil : $0 }
        var fstab: [FstabTable.Entry] = []
        do throws(SystemCallError) {
            let table = try FstabTable(path: fstabPath)
            for e in table.parseErrors { output.error("\(name): \(e.file): parse error at line \(e.line) -- ignored") }
            fstab = table.entries
        } catch {
            if FileSystem.exists(fstabPath ?? "/etc/fstab") { output.error("\(name): \(fstabPath ?? "/etc/fstab"): failed to parse fstab") }
        }
        let filter = (try? TypeFilter(inv.types ?? "")) ?? TypeFilter()
        // A named device is its fstab line's when it is that line's source
        // or mount point (the line's type and mount point go with it); it
        // still runs beside the others named (pass 0).
        var targets: [Target] = inv.devices.map { spec in
            if let e = fstab.first(where: { $0.source == spec }) ?? fstab.first(where: { $0.target == spec }) {
                return Target(spec: e.source, fstabType: e.type, mountPoint: e.target, pass: 0)
            }
            return Target(spec: spec, fstabType: nil, mountPoint: nil, pass: 0)
        }
        var serial = inv.serialize
        let fromFstab = inv.all || inv.devices.isEmpty
        // util-linux: no file system named and no -A checks fstab's all
        // the same, one at a time ("equivalent to -As").
        if fromFstab {
            var entries = fstab.filter { $0.passNumber > 0 }
            if inv.verbose {
                // util-linux's first scan: a source that is no block device
                // (an image file too) is "nonexistent", and a nofail one is
                // passed over.
                for e in entries where !deviceExists(e.source) {
                    output.out(MountOptions.value(of: "nofail", in: e.options) != nil
                        ? "\(e.source): skipping nonexistent device"
                        : "\(e.source): nonexistent device (\"nofail\" fstab option may be used to skip this device)")
                }
                output.out("Checking all file systems.")
            }
            entries = entries.filter { !(inv.skipRoot && $0.target == "/") }
                .filter { MountOptions.value(of: "nofail", in: $0.options) == nil || deviceExists($0.source) }
                .filter { filter.matches(type: $0.type, options: $0.options) }
                .sorted { $0.passNumber < $1.passNumber }
            targets = entries.map { Target(spec: $0.source, fstabType: $0.type, mountPoint: $0.target, pass: Int($0.passNumber)) }
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
            status |= check(t, inv, cluster: cluster, instance: instance, fromFstab: fromFstab)
        }
        return status
    }

    /// One file system to check: the device as named, and its fstab
    /// line's type and mount point when it has one.
    struct Target {
        var spec: String
        var fstabType: String?
        var mountPoint: String?
        var pass: Int
    }

    /// util-linux's device_exists(): a block device (an image file is
    /// not one), or a tag that names one.
    func deviceExists(_ spec: String) -> Bool {
        if spec.hasPrefix("/") {
            guard let st = try? FileSystem.status(spec, followSymlinks: true) else { return false }
            return st.kind == .blockDevice
        }
        guard let want = try? DeviceSpec(parsing: spec, field: "fsck") else { return false }
        return BlockDevices.scan().contains { want.matches($0) }
    }

    /// fsck -r's line for one checker, as util-linux prints it: on stdout
    /// "DEVICE: status N, rss KB, real S.U, user S.U, sys S.U", on a
    /// descriptor "DEVICE N KB S.U S.U S.U" (microseconds, six digits).
    static func statistics(device: String, status: Int32, maxRSS: Int, realMicros: Int64,
                           user: timeval, system: timeval, forDescriptor: Bool) -> String {
        func t(_ micros: Int64) -> String {
            let u = String(micros % 1_000_000)
            return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - u.count) + u
        }
        let real = t(max(0, realMicros))
        let u = t(Int64(user.tv_sec) * 1_000_000 + Int64(user.tv_usec))
        let s = t(Int64(system.tv_sec) * 1_000_000 + Int64(system.tv_usec))
        return forDescriptor ? "\(device) \(status) \(maxRSS) \(real) \(u) \(s)"
                             : "\(device): status \(status), rss \(maxRSS), real \(real), user \(u), sys \(s)"
    }

    func reportStats(device: String, status: Int32, usage: rusage, realMicros: Int64, fd: Int32?) {
        let line = Self.statistics(device: device, status: status, maxRSS: Int(usage.ru_maxrss), realMicros: realMicros,
                                   user: usage.ru_utime, system: usage.ru_stime, forDescriptor: fd != nil)
        guard let fd else { output.out(line); return }
        let bytes = Array((line + "\n").utf8)
        if bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) < 0 {
            output.error("\(name): cannot write the statistics to descriptor \(fd): \(String(cString: strerror(errno)))")
        }
    }

    /// util-linux's choice of checker: the fstab line's type (not "auto"),
    /// else what blkid finds on the device, else -t's when it is one plain
    /// type (no "no", "opts=" or "loop", no list), else ext2.
    static func checkerType(fstab: String?, probed: String?, option: String?) -> String {
        if let t = fstab?.split(separator: ",").first.map(String.init), !t.isEmpty, t != "auto" { return t }
        if let probed, !probed.isEmpty { return probed }
        if let o = option, !o.isEmpty, !o.hasPrefix("no"), !o.hasPrefix("opts="), !o.hasPrefix("loop"), !o.contains(",") { return o }
        return "ext2"
    }

    /// The types whose checker must be there (util-linux's really_wanted):
    /// for any other, a missing checker means nothing to check.
    static let checkerRequired: Set<String> = ["minix", "ext2", "ext3", "ext4", "ext4dev", "jfs", "reiserfs"]

    /// util-linux fsck's -t: a list of types, all or none negated ("no" or
    /// "!"), and "opts=OPT" / "noopts=OPT" (and "loop", opts=loop) that an
    /// fstab line's options must hold or must not.
    struct TypeFilter {
        var types: [String] = []
        var negated = false
        var options: [(option: String, negated: Bool)] = []

        init() {}

        init(_ list: String) throws(CommandLineError) {
            guard !list.isEmpty else { return }
            var first = true
            for word in list.split(separator: ",", omittingEmptySubsequences: true).map(String.init) {
                var w = Substring(word)
                var negate = false
                if w.hasPrefix("no") { w = w.dropFirst(2); negate = true } else if w.hasPrefix("!") { w = w.dropFirst(); negate = true }
                if w == "loop" {
                    options.append(("loop", negate))
                } else if w.hasPrefix("opts=") {
                    options.append((String(w.dropFirst(5)), negate))
                } else {
                    if first { negated = negate; first = false }
                    guard negate == negated else {
                        throw CommandLineError(message: "Either all or none of the filesystem types passed to -t must be prefixed",
                                               code: 16, secondLine: "with 'no' or '!'.")
                    }
                    types.append(String(w))
                }
            }
        }

        func matches(type: String, options lineOptions: String) -> Bool {
            let held = Set(lineOptions.split(separator: ",").map(String.init))
            for o in options where held.contains(o.option) == o.negated { return false }
            guard !types.isEmpty else { return true }
            return types.contains(type) != negated
        }
    }

    /// The target's fstab mount point, when it has one, is what
    /// util-linux's dry-run and verbose lines name instead of the device.
    /// `instance`: which checker of its pass this is, for the dry-run line.
    /// `fromFstab`: -A's (or no device named), which passes over a type
    /// whose checker is missing instead of failing.
    func check(_ t: Target, _ inv: Invocation, cluster: ClusterLink?, instance: Int = 1, fromFstab: Bool = false) -> Int32 {
        let spec = t.spec
        var dev: BlockDevice?
        if spec.hasPrefix("/") {
            dev = FileSystem.exists(spec) ? BlockDevices.probe(spec) : nil
        } else if let want = try? DeviceSpec(parsing: spec, field: "fsck") {
            dev = BlockDevices.scan().first { want.matches($0) }
        }
        let fsType = Self.checkerType(fstab: t.fstabType, probed: dev?.type, option: inv.types)
        guard let dev else {
            // util-linux: a device that is not there goes to its checker all
            // the same, named as given, and the checker says what is wrong;
            // -N prints its line.
            return runChecker(fsType: fsType, device: spec, inv, mountPoint: t.mountPoint, instance: instance, fromFstab: fromFstab)
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
        return runChecker(fsType: fsType, device: dev.path, inv, mountPoint: t.mountPoint, instance: instance, fromFstab: fromFstab)
    }

    /// Runs (or with -N prints) fsck.TYPE on `device`. A missing checker
    /// is an error only for the types that need one (util-linux's
    /// really_wanted), and for -A's lines only a warning.
    func runChecker(fsType: String, device: String, _ inv: Invocation, mountPoint: String?, instance: Int, fromFstab: Bool = false) -> Int32 {
        let checker = "fsck." + fsType
        guard let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map({ $0 + "/" + checker }).first(where: FileSystem.isExecutableFile) else {
            guard Self.checkerRequired.contains(fsType) else { return 0 }
            if fromFstab {
                output.error("\(name): cannot check \(device): \(checker) not found")
                return 0
            }
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
            var started = timespec()
            clock_gettime(CLOCK_MONOTONIC, &started)
            let pid = try Process.spawn(path, argv, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FSCK_FORCE_ALL_PARALLEL=0"])
            let (exit, usage) = try Process.waitWithUsage(for: pid)
            let code: Int32
            switch exit {
            case .exited(let c): code = c
            case .signaled: code = 8
            }
            if inv.reportStats {
                var ended = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ended)
                let realMicros = (Int64(ended.tv_sec) - Int64(started.tv_sec)) * 1_000_000 + (Int64(ended.tv_nsec) - Int64(started.tv_nsec)) / 1000
                reportStats(device: device, status: code, usage: usage, realMicros: realMicros, fd: inv.statsFD)
            }
            return code
        } catch {
            output.error("\(name): error \(error.errno) (\(errnoDescription(error.errno))) while executing \(checker) for \(device)")
            return 8
        }
    }
}
