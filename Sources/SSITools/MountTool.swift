#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership

/// `ssi-mount`: util-linux mount's command line, libmount's work, and
/// OpenSSI's `node=` on top: with a cluster running (a membership agent
/// listens on this node), a mount with `node=` (or of a local block device,
/// which means `node=<this node>`) is done on every member through the
/// agents; without one, `node=` is dropped and it is util-linux mount.
public struct MountTool {
    /// util-linux 2.38's table ("aBcfFhilL:m::Mno:O:rRsU:vVwt:T:N:" and
    /// its longopts, in their order: it decides what an ambiguous prefix lists).
    public static let getopt = GetOpt([
        .init("a", "all"), .init("f", "fake"), .init("T", "fstab", .required), .init("F", "fork"), .init("h", "help"),
        .init("n", "no-mtab"), .init("r", "read-only", aliases: ["ro"]), .init("v", "verbose"), .init("V", "version"),
        .init("w", "read-write", aliases: ["rw"]), .init("o", "options", .required), .init("O", "test-opts", .required),
        .init("t", "types", .required), .init("U", "uuid", .required), .init("L", "label", .required),
        .init("B", "bind"), .init("M", "move"), .init("R", "rbind"),
        .init(nil, "make-shared"), .init(nil, "make-slave"), .init(nil, "make-private"), .init(nil, "make-unbindable"),
        .init(nil, "make-rshared"), .init(nil, "make-rslave"), .init(nil, "make-rprivate"), .init(nil, "make-runbindable"),
        .init("m", "mkdir", .optional), .init("c", "no-canonicalize"), .init("i", "internal-only"), .init("l", "show-labels"),
        .init(nil, "target", .required), .init(nil, "target-prefix", .required), .init(nil, "source", .required),
        .init(nil, "options-mode", .required), .init(nil, "options-source", .required), .init(nil, "options-source-force"),
        .init("N", "namespace", .required), .init("s", nil),
    ])

    /// What the command line asks for.
    public struct Invocation: Sendable, Equatable {
        public var all = false
        public var fake = false
        public var fork = false
        public var noMtab = false
        public var verbose = false
        public var sloppy = false
        public var noCanonicalize = false
        public var showLabels = false
        /// The source came from -L or -U: util-linux gives libmount the
        /// value quoted (LABEL="x"), which its error repeats.
        public var quotedTag = false
        public var help = false
        /// -i: no /sbin/mount.TYPE helper.
        public var internalOnly = false
        public var version = false
        public var bind = false
        public var rbind = false
        public var move = false
        /// --make-*: a propagation change of the one target.
        public var propagation = false
        public var options: [String] = []
        public var testOptions: String?
        public var types: String?
        public var fstab: String?
        public var source: String?
        public var target: String?
        public var namespace: String?
        /// --options-mode's MNT_OMODE_* bit (ignore, append, prepend, replace).
        public var optionsMode: Int32 = 0
        /// --options-source's bits (fstab, mtab, disable), --options-source-force's.
        public var optionsSource: Int32 = 0
        public var optionsSourceForce = false
        public var targetPrefix: String?

        /// util-linux's mask for mnt_context_set_optsmode: 0 when none of
        /// the three options was given; else a missing mode is prepend and
        /// a missing source is fstab and mtab.
        public var optionsModeMask: Int32 {
            var mask = optionsMode | optionsSource | (optionsSourceForce ? MountContext.OptionsMode.force : 0)
            guard mask != 0 else { return 0 }
            if optionsMode == 0 { mask |= MountContext.OptionsMode.prepend }
            if optionsSource == 0 { mask |= MountContext.OptionsMode.fstab | MountContext.OptionsMode.mtab }
            return mask
        }

        /// What libmount alone must do: the options' sources and modes, a
        /// target prefix or another namespace are not a cluster mount's,
        /// and fstab's line is libmount's to find and merge.
        public var libmountOnly: Bool { optionsModeMask != 0 || targetPrefix != nil || namespace != nil }

        public var optionString: String? {
            options.isEmpty ? nil : options.joined(separator: ",")
        }
    }

    public static func parse(_ args: [String], program: String) throws(GetOpt.Failure) -> Invocation {
        let p = try getopt.parse(args, program: program)
        var v = Invocation()
        for o in p.options {
            let value = o.value ?? ""
            switch o.key {
            case "all": v.all = true
            case "bind": v.bind = true
            case "rbind": v.rbind = true
            case "move": v.move = true
            case "no-canonicalize": v.noCanonicalize = true
            case "fake": v.fake = true
            case "fork": v.fork = true
            case "help": v.help = true
            case "internal-only": v.internalOnly = true
            case "show-labels": v.showLabels = true
            case "label": v.source = "LABEL=" + value; v.quotedTag = true
            case "uuid": v.source = "UUID=" + value; v.quotedTag = true
            case "no-mtab": v.noMtab = true
            case "options": v.options.append(value)
            case "test-opts": v.testOptions = value
            // -r and -w are "ro" and "rw" in the option list where they
            // stand: `-r -o rw` mounts rw, `-w -o ro` ro, as util-linux.
            case "read-only": v.options.append("ro")
            case "read-write": v.options.append("rw")
            case "s": v.sloppy = true
            case "make-shared", "make-slave", "make-private", "make-unbindable",
                 "make-rshared", "make-rslave", "make-rprivate", "make-runbindable":
                // util-linux: the propagation flag as a mount option, which
                // libmount turns into its own mount(2) call.
                v.options.append(String(o.key.dropFirst("make-".count)))
                v.propagation = true
            case "mkdir":
                // util-linux: an alias of -o X-mount.mkdir[=MODE]; "-m=0700" too.
                let mode = o.value.map { $0.hasPrefix("=") ? String($0.dropFirst()) : $0 }
                v.options.append("X-mount.mkdir" + (mode.map { "=" + $0 } ?? ""))
            case "target-prefix": v.targetPrefix = value
            case "options-mode":
                let modes: [String: Int32] = ["ignore": MountContext.OptionsMode.ignore, "append": MountContext.OptionsMode.append,
                                              "prepend": MountContext.OptionsMode.prepend, "replace": MountContext.OptionsMode.replace]
                guard let mode = modes[value] else { throw GetOpt.Failure(message: "\(basename(of: program)): bad usage") }
                v.optionsMode = mode
            case "options-source":
                let sources: [String: Int32] = ["fstab": MountContext.OptionsMode.fstab, "mtab": MountContext.OptionsMode.mtab,
                                                "disable": MountContext.OptionsMode.noTables]
                var mask: Int32 = 0
                for word in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let bit = sources[String(word)] else { throw GetOpt.Failure(message: "\(basename(of: program)): bad usage") }
                    mask |= bit
                }
                v.optionsSource = mask
            case "options-source-force": v.optionsSourceForce = true
            case "verbose": v.verbose = true
            case "version": v.version = true
            case "types": v.types = value
            case "fstab": v.fstab = value
            case "source": v.source = value
            case "target": v.target = value
            case "namespace": v.namespace = value
            default: break
            }
        }
        // util-linux: "-o move" is --move (libmount knows no such option).
        if let list = v.optionString, MountOptions.value(of: "move", in: list) != nil {
            v.move = true
            let rest = MountOptions.removing("move", from: list)
            v.options = rest.isEmpty ? [] : [rest]
        }
        switch p.operands.count {
        case 0: break
        case 1:
            if v.source != nil { v.target = p.operands[0] }
            else if v.target != nil { v.source = p.operands[0] }
            else { v.target = p.operands[0] }  // libmount looks it up as a target, then a source
        case 2:
            v.source = p.operands[0]
            v.target = p.operands[1]
        default:
            throw GetOpt.Failure(message: "\(basename(of: program)): bad usage")
        }
        return v
    }

    public let program: String
    public let output: Output

    public init(program: String, output: Output = .standard) {
        self.program = program
        self.output = output
    }

    /// Runs `mount ARGS`; returns mount(8)'s exit code.
    public func run(_ args: [String]) -> Int32 {
        let short = basename(of: program)
        let inv: Invocation
        do {
            inv = try Self.parse(args, program: program)
        } catch {
            return output.usage(error.message, program: program, code: MountContext.ExitCode.usage)
        }
        if inv.help {
            output.out(Self.usage(short))
            return 0
        }
        if let failed = output.loadLibMount(program: program) { return failed }
        if inv.version {
            output.out("\(short) from ssi (libmount \(MountContext.libraryVersion))")
            return 0
        }
        // util-linux reads -T's file as it meets the option: one it cannot
        // parse (or read) stops everything.
        if let fstab = inv.fstab {
            guard let table = try? FstabTable(path: fstab) else {
                return output.fail("\(fstab): failed to parse", program: program, code: 1)
            }
            warnSkippedLines(table)
        }
        let cluster = ClusterLink.current()
        if inv.all { return mountAll(inv, cluster: cluster) }
        if inv.source == nil && inv.target == nil {
            return list(inv)
        }
        return mountOne(inv, cluster: cluster)
    }

    // MARK: one mount

    func mountOne(_ inv: Invocation, cluster: ClusterLink?) -> Int32 {
        // The fstab line, when one operand names it: its node= matters.
        var source = inv.source
        var target = inv.target
        var type = inv.types
        var options = inv.optionString ?? ""
        if source == nil || target == nil, let entry = fstabEntry(inv) {
            source = source ?? entry.source
            target = target ?? entry.target
            type = type ?? (entry.type.isEmpty ? nil : entry.type)
            options = [entry.options, options].filter { !$0.isEmpty }.joined(separator: ",")
        }
        let nodeValue = MountOptions.value(of: "node", in: options)
        if let nodeValue, cluster != nil {
            do { _ = try NodeRule(parsing: nodeValue) } catch {
                output.error("\(basename(of: program)): \(error.message)" + (error.hint.map { "; \($0)" } ?? ""))
                return MountContext.ExitCode.usage
            }
        }
        let plainOptions = MountOptions.removing("node", from: options)
        // Binds, moves, remounts and fake mounts are this node's business.
        let special = inv.bind || inv.rbind || inv.move || inv.fake || MountOptions.value(of: "remount", in: options) != nil
        if let cluster, !special, !inv.libmountOnly, let source, let target,
           let rule = clusterRule(nodeValue, source: source, cluster: cluster) {
            let entry = ClusterMount(id: "-", rule: rule, source: source, target: absolute(target), type: type ?? "",
                                     options: plainOptions)
            return cluster.mount(entry, tool: self, verbose: inv.verbose)
        }
        if nodeValue != nil && cluster == nil && inv.verbose {
            output.out("\(basename(of: program)): no cluster is running here: node= ignored")
        }
        let cxt: MountContext
        do { cxt = try MountContext() } catch { return fail(error.description) }
        configure(cxt, inv)
        if let failed = configureLibmountOnly(cxt, inv) { return failed }
        if let fstab = inv.fstab, let table = try? FstabTable(path: fstab) {
            stripNode(table)
            cxt.setFstab(table)
        } else if let table = try? FstabTable(path: nil) {
            stripNode(table)
            cxt.setFstab(table)
        }
        if inv.quotedTag, let src = inv.source, let eq = src.firstIndex(of: "=") {
            cxt.source = String(src[...eq]) + "\"" + String(src[src.index(after: eq)...]) + "\""
        } else {
            cxt.source = inv.source
        }
        cxt.target = inv.target
        // mount(8): for --bind, --rbind, --move (not remounts) and --make-*
        // fstab and the mount table are not consulted.
        if (inv.bind || inv.rbind || inv.move) && MountOptions.value(of: "remount", in: options) == nil || inv.propagation {
            cxt.setNoTables()
        }
        // util-linux: a -t starting with "no" is a pattern (the whole list
        // negated, the type then probed), not a list of types to try.
        if let t = inv.types, t.hasPrefix("no") { cxt.setTypePattern(t) } else { cxt.setType(inv.types) }
        let cliOptions = inv.optionString.map { MountOptions.removing("node", from: $0) }
        cxt.setOptions(cliOptions?.isEmpty == true ? nil : cliOptions)
        let outcome = cxt.mount()
        if outcome.exitCode == MountContext.ExitCode.success && inv.verbose && cxt.mounted {
            // mount(8)'s success_message().
            let name = basename(of: program)
            let src = cxt.source ?? "none"
            let tgt = cxt.target ?? ""
            if inv.move {
                output.out("\(name): \(src) moved to \(tgt).")
            } else if inv.bind || inv.rbind {
                output.out("\(name): \(src) bound on \(tgt).")
            } else if inv.propagation {
                // A mount and a propagation change together say both.
                if src != "none" { output.out("\(name): \(src) mounted on \(tgt).") }
                output.out("\(name): \(tgt) propagation flags changed.")
            } else {
                output.out("\(name): \(src) mounted on \(tgt).")
            }
        }
        return report(cxt, outcome)
    }

    /// The rule for a mount in the cluster: node= as given, else
    /// node=<this node> for a local block device, else none (a plain
    /// local mount: tmpfs, a network file system, a bind).
    func clusterRule(_ value: String?, source: String, cluster: ClusterLink) -> NodeRule? {
        if let value { return try? NodeRule(parsing: value) }
        if source.hasPrefix("UUID=") || source.hasPrefix("LABEL=") || source.hasPrefix("PARTUUID=") || source.hasPrefix("PARTLABEL=") {
            return .node(cluster.localNode)
        }
        if let st = try? FileSystem.status(source, followSymlinks: true), st.kind == .blockDevice {
            return .node(cluster.localNode)
        }
        return nil
    }

    func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let cwd = currentDirectory()
        return (cwd == "/" ? "" : cwd) + "/" + path
    }

    func fstabEntry(_ inv: Invocation) -> FstabTable.Entry? {
        guard let table = try? FstabTable(path: inv.fstab) else { return nil }
        if inv.fstab == nil { warnSkippedLines(table) }    // -T's were said when it was read
        let entries = table.entries
        if let t = inv.target {
            let abs = absolute(t)
            return entries.first { $0.target == abs || $0.target == t } ?? entries.first { $0.source == t }
        }
        if let s = inv.source { return entries.first { $0.source == s } }
        return nil
    }

    /// util-linux's warning for each fstab line libmount passed over,
    /// once per file read (the -T file when the option is met, /etc/fstab
    /// when a mount consults it).
    func warnSkippedLines(_ table: FstabTable) {
        for e in table.parseErrors {
            output.error("\(basename(of: program)): \(e.file): parse error at line \(e.line) -- ignored")
        }
    }

    /// node= means nothing to the kernel: it never reaches it.
    func stripNode(_ table: FstabTable) {
        table.editOptions { e in
            MountOptions.value(of: "node", in: e.options) == nil ? e.options : MountOptions.removing("node", from: e.options)
        }
    }

    /// -N, --target-prefix and the options' mode and sources, as
    /// util-linux gives them to libmount (before the --bind/--move rule,
    /// which overrides the mode). -N names a pid (its /proc/PID/ns/mnt)
    /// or a file; one that cannot be entered ends the run with exit 2.
    func configureLibmountOnly(_ cxt: MountContext, _ inv: Invocation) -> Int32? {
        if let ns = inv.namespace {
            do { try cxt.setTargetNamespace(ns) } catch {
                output.error("\(basename(of: program)): \(error.call): \(String(cString: strerror(error.errno)))")
                return MountContext.ExitCode.system
            }
        }
        if let prefix = inv.targetPrefix { cxt.setTargetPrefix(prefix) }
        if inv.optionsModeMask != 0 { cxt.setOptionsMode(inv.optionsModeMask) }
        return nil
    }

    func configure(_ cxt: MountContext, _ inv: Invocation) {
        cxt.setFake(inv.fake)
        cxt.setNoMtab(inv.noMtab)
        cxt.setVerbose(inv.verbose)
        cxt.setSloppy(inv.sloppy)
        cxt.setNoCanonicalize(inv.noCanonicalize)
        cxt.setFork(inv.fork)
        cxt.setNoHelpers(inv.internalOnly)
        var flags: UInt = 0
        if inv.bind { flags |= UInt(MS_BIND) }
        if inv.rbind { flags |= UInt(MS_BIND | MS_REC) }
        if inv.move { flags |= UInt(MS_MOVE) }
        if flags != 0 { cxt.addFlags(flags) }
    }

    /// mount(8)'s reporting: "TARGET: MESSAGE." and the dmesg hint after a
    /// failed system call.
    func report(_ cxt: MountContext, _ o: MountContext.Outcome) -> Int32 {
        if !o.message.isEmpty {
            let spec = cxt.target ?? cxt.source ?? "???"
            output.error("\(basename(of: program)): \(spec): \(o.message).")
            if cxt.syscallFailed {
                output.error("       dmesg(1) may have more information after failed mount system call.")
            }
        }
        return o.exitCode
    }

    func fail(_ message: String) -> Int32 {
        output.error("\(basename(of: program)): \(message)")
        return MountContext.ExitCode.system
    }

    // MARK: mount -a

    func mountAll(_ inv: Invocation, cluster: ClusterLink?) -> Int32 {
        let table: FstabTable
        do { table = try FstabTable(path: inv.fstab) } catch { return fail(error.description) }
        if inv.fstab == nil { warnSkippedLines(table) }
        var clusterEntries: [FstabTable.Entry] = []
        // Entries with node= are the cluster's (when one runs): libmount
        // skips them (noauto) and the agents mount them.
        table.editOptions { e in
            guard MountOptions.value(of: "node", in: e.options) != nil else { return e.options }
            if cluster != nil && MountOptions.value(of: "noauto", in: e.options) == nil
                && FstabTable.matches(e, types: inv.types, options: inv.testOptions) {
                clusterEntries.append(e)
                return MountOptions.removing("node", from: e.options) + ",noauto"
            }
            return MountOptions.removing("node", from: e.options)
        }
        let cxt: MountContext
        do { cxt = try MountContext() } catch { return fail(error.description) }
        configure(cxt, inv)
        if let failed = configureLibmountOnly(cxt, inv) { return failed }
        cxt.setFstab(table)
        cxt.setTypePattern(inv.types)
        cxt.setOptionsPattern(inv.testOptions)
        if let o = inv.optionString { cxt.setOptions(MountOptions.removing("node", from: o)) }
        var ok = 0
        var failed = 0
        let forked = cxt.mountAll { target, ignored, outcome in
            if clusterEntries.contains(where: { $0.target == target }) { return }
            if outcome != nil && cxt.isFork {
                // util-linux: the child mounts and says what went wrong;
                // the parent counts the children's exits below.
                if inv.verbose { output.out(pad(target) + ": mount successfully forked") }
            } else if let outcome {
                if outcome.exitCode == MountContext.ExitCode.success {
                    ok += 1
                    if inv.verbose && cxt.mounted { output.out(pad(target) + ": successfully mounted") }
                } else {
                    failed += 1
                    if !outcome.message.isEmpty { output.error("\(basename(of: program)): \(target): \(outcome.message).") }
                    if cxt.syscallFailed {
                        output.error("       dmesg(1) may have more information after failed mount system call.")
                    }
                }
            } else if inv.verbose {
                output.out(pad(target) + (ignored == 1 ? ": ignored" : ": already mounted"))
            }
        }
        if cxt.isFork {
            ok += Int(forked.children - forked.failed)
            failed += Int(forked.failed)
        }
        if let cluster {
            let mountedHere = Set(Mount.entries().map(\.mountPoint))
            let inTable = Set(cluster.table().map(\.target))
            for e in clusterEntries {
                if inTable.contains(e.target) && mountedHere.contains(e.target) {
                    if inv.verbose { output.out(pad(e.target) + ": already mounted") }
                    continue
                }
                guard let rule = try? NodeRule(parsing: MountOptions.value(of: "node", in: e.options) ?? "") else {
                    output.error("\(basename(of: program)): \(e.target): bad node= in fstab")
                    failed += 1
                    continue
                }
                let entry = ClusterMount(id: "-", rule: rule, source: e.source, target: e.target, type: e.type,
                                         options: MountOptions.removing("node", from: e.options))
                if cluster.mount(entry, tool: self, verbose: inv.verbose) == 0 { ok += 1 } else { failed += 1 }
            }
        }
        if failed == 0 { return MountContext.ExitCode.success }
        return ok == 0 ? MountContext.ExitCode.fail : MountContext.ExitCode.someOK
    }

    func pad(_ s: String) -> String { s.count >= 25 ? s : s + String(repeating: " ", count: 25 - s.count) }

    // MARK: listing

    func list(_ inv: Invocation) -> Int32 {
        for e in MountContext.mountedFileSystems() {
            if let t = inv.types, !FstabTable.matches(FstabTable.Entry(source: e.source, target: e.target, type: e.type, options: e.options), types: t, options: nil) {
                continue
            }
            var line = "\(Self.prettyPath(e.source)) on \(e.target) type \(e.type) (\(e.options))"
            // -l: util-linux adds the file system label of a device.
            if inv.showLabels, e.source.hasPrefix("/dev/"), let label = BlockDevices.probe(e.source)?.label, !label.isEmpty {
                line += " [\(label)]"
            }
            output.out(line)
        }
        return 0
    }

    /// libmount's mnt_pretty_path, as mount's listing shows a source: an
    /// autoclear loop device (`mount IMAGE DIR`) as its backing file,
    /// /dev/dm-N as /dev/mapper/NAME.
    static func prettyPath(_ source: String, sys: String = "/sys/block") -> String {
        guard source.hasPrefix("/dev/") else { return source }
        let dev = String(source.dropFirst(5))
        func read(_ path: String) -> String? {
            (try? FileSystem.readText(path)).map { String($0.lines().first ?? "") }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if dev.hasPrefix("loop"), !dev.contains("/"), read("\(sys)/\(dev)/loop/autoclear") == "1",
           let file = read("\(sys)/\(dev)/loop/backing_file") {
            return file
        }
        if dev.hasPrefix("dm-"), !dev.contains("/"), let name = read("\(sys)/\(dev)/dm/name") {
            return "/dev/mapper/" + name
        }
        return source
    }

    static func usage(_ name: String) -> String {
        """

        Usage:
         \(name) [-lhV]
         \(name) -a [options]
         \(name) [options] [--source] <source> | [--target] <directory>
         \(name) [options] <source> <directory>

        Mount a filesystem, on this node or, with a cluster running, on every node.

        Options (util-linux mount's; see mount(8)):
         -a, --all               mount all filesystems mentioned in fstab
         -f, --fake              dry run; skip the mount(2) syscall
         -F, --fork              fork off for each device (use with -a)
         -T, --fstab <path>      alternative file to /etc/fstab
         -n, --no-mtab           don't write to /etc/mtab
         -o, --options <list>    comma-separated list of mount options
         -O, --test-opts <list>  limit the set of filesystems (use with -a)
         -r, --read-only, --ro   mount the filesystem read-only (same as -o ro)
         -t, --types <list>      limit the set of filesystem types
         -v, --verbose           say what is being done
         -w, --rw, --read-write  mount the filesystem read-write (default)
         -B, --bind              mount a subtree somewhere else (same as -o bind)
         -M, --move              move a subtree to some other place
         -R, --rbind             mount a subtree and all submounts somewhere else
         -L, --label <label>     synonym for LABEL=<label>
         -U, --uuid <uuid>       synonym for UUID=<uuid>
         -c, --no-canonicalize   use the paths as given, without resolving them
         -i, --internal-only     do not call a /sbin/mount.<type> helper
         -l, --show-labels       with the listing, add each device's label
         -m, --mkdir[=<mode>]    create the mount point first (-o X-mount.mkdir)
         -N, --namespace <ns>    mount in another mount namespace (a pid or a file)
         -s                      tolerate options the file system does not know
             --source <src>      the operand is a source
             --target <dir>      the operand is a mount point
             --target-prefix <dir>  look for every mount point under <dir>
             --options-mode <mode>  ignore, append, prepend or replace the
                                 options fstab or the mount table give
             --options-source <list>  where those come from: fstab, mtab, disable
             --options-source-force  read them even when source and target are given
             --make-shared, --make-slave, --make-private, --make-unbindable
             --make-rshared, --make-rslave, --make-rprivate, --make-runbindable
                                 change the propagation of a mount (its subtree with r)
         -h, --help              this text
         -V, --version           the version

        Sources: a device path, LABEL=, UUID=, PARTLABEL=, PARTUUID=, ID=,
        a file (loop), <host>:<dir> (NFS), or a directory (--bind).

        Cluster options (OpenSSI's fstab semantics):
         -o node=N               node N mounts the device; every other member sees it at
                                 the same path over NFSv4 from node N (the default for a
                                 local block device: node=<this node>)
         -o node=*               every node mounts it itself
         -o node=N:M             N mounts it; M is recorded as its takeover node

        """
    }
}

/// Where the tools write: stdout/stderr, or captured (unit tests).
public struct Output: Sendable {
    public var out: @Sendable (String) -> Void
    public var error: @Sendable (String) -> Void

    public init(out: @escaping @Sendable (String) -> Void, error: @escaping @Sendable (String) -> Void) {
        self.out = out
        self.error = error
    }

    /// Errors name what came from outside (paths, labels, a peer's answer):
    /// control characters are escaped on their way to the terminal.
    public static let standard = Output(out: { writeAll(1, $0 + "\n") }, error: { writeAll(2, $0.escapedForTerminal + "\n") })
}

/// getcwd(3), "/" when it fails.
func currentDirectory() -> String {
    guard let p = getcwd(nil, 0) else { return "/" }
    defer { free(p) }
    return String(cString: p)
}
