#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// `ssi-swapon` / `ssi-swapoff`: util-linux's command lines; a node
/// activates only its own swap. A swap area belongs to the node whose
/// `[[node]] swap` (cluster.conf) or fstab `node=N` names it; with a
/// cluster running, a swap area that belongs to another node, or that
/// another member has active (shared disks), is refused with the owner named.
public struct SwapTool {
    /// util-linux's tables: swapon "ahd::efo:p:svVL:U:T:" (2.39's, which
    /// added -T/--fstab to 2.38's) and its longopts in order; swapoff
    /// "ahvVL:U:". swapon's -o requires its list, --options takes it glued.
    public static let swaponOptions = GetOpt([
        .init("p", "priority", .required), .init("d", "discard", .optional), .init("e", "ifexists"),
        .init("o", "options", .required, longArgument: .optional), .init("s", "summary"), .init("f", "fixpgsz"),
        .init("a", "all"), .init("h", "help"), .init("v", "verbose"), .init("V", "version"),
        .init(nil, "show", .optional), .init(nil, "output-all"), .init(nil, "noheadings"), .init(nil, "raw"),
        .init(nil, "bytes"), .init("T", "fstab", .required), .init("L", nil, .required), .init("U", nil, .required),
    ])
    public static let swapoffOptions = GetOpt([
        .init("a", "all"), .init("h", "help"), .init("v", "verbose"), .init("V", "version"),
        .init("L", nil, .required), .init("U", nil, .required),
    ])

    static let swaponHelp = """
         -a, --all                enable every swap line of fstab (and, in a cluster, this node's areas)
         -d, --discard[=<policy>] discard freed pages (once or pages)
         -e, --ifexists           say nothing of a device that is not there
         -f, --fixpgsz            accepted; the header is not rewritten
         -o, --options <list>     fstab-style options: pri=, discard, nofail
         -p, --priority <prio>    the area's priority (-1 to 32767)
         -s, --summary            the active areas (deprecated, as util-linux)
         -T, --fstab <path>       another fstab (util-linux 2.39's)
         -L <label>               the area with this label
         -U <uuid>                the area with this UUID
         -v, --verbose            say what is being done
             --show[=<columns>]   the active areas as a table
             --output-all         every column
             --noheadings         no heading line
             --raw                raw output
             --bytes              sizes in bytes
         -h, --help               this text
         -V, --version            the version
        Columns: \(columns.joined(separator: ", "))

        """
    static let swapoffHelp = """
         -a, --all                disable every active area, then fstab's
         -L <label>               the area with this label
         -U <uuid>                the area with this UUID
         -v, --verbose            say what is being done
         -h, --help               this text
         -V, --version            the version

        """

    /// swapon --show's columns (util-linux's names).
    public static let columns = ["NAME", "TYPE", "SIZE", "USED", "PRIO", "UUID", "LABEL"]

    public let program: String
    public let output: Output
    public let off: Bool
    /// Where the configuration and fstab are (tests point elsewhere).
    public var configPath = ClusterConfig.defaultPath
    public var stateDirectory = ClusterView.defaultDirectory

    public init(program: String, off: Bool, output: Output = .standard) {
        self.program = program
        self.off = off
        self.output = output
    }

    var name: String { basename(of: program) }

    /// How util-linux names a spec in "cannot find the device for ...":
    /// -L and -U values bare, a LABEL=/UUID= operand as given.
    final class ShownSpecs: @unchecked Sendable { var names: [String: String] = [:] }
    let shown = ShownSpecs()
    var shownSpecs: [String: String] {
        get { shown.names }
        nonmutating set { shown.names = newValue }
    }

    /// strerror(3)'s text alone, as util-linux prints it (no errno name).
    static func strerror(_ code: Int32) -> String { String(cString: Glibc.strerror(code)) }

    /// util-linux swapon's exit codes: 0, 1 usage, 255 (-1) failure;
    /// swapoff's: 4 swapoff failed, 16 usage, 32/64 with --all.
    public func run(_ args: [String]) -> Int32 {
        let p: GetOpt.Parsed
        do {
            p = try (off ? Self.swapoffOptions : Self.swaponOptions).parse(args, program: program)
        } catch {
            return output.usage(error.message, program: program, code: off ? 16 : 1)
        }
        let keys = Set(p.options.map(\.key))
        if keys.contains("help") {
            output.out("\nUsage:\n \(name) [options] [<spec>]\n\n"
                + (off ? "Disable devices for paging and swapping.\n" : "Enable this node's devices for paging and swapping.\n")
                + "\nOptions (util-linux \(off ? "swapoff" : "swapon")'s; see \(off ? "swapoff" : "swapon")(8)):\n"
                + (off ? Self.swapoffHelp : Self.swaponHelp)
                + "\nA swap area belongs to the node whose cluster.conf swap or fstab node=N names it;\n"
                + "another node's swap, or one another member has active, is refused.\n")
            return 0
        }
        if keys.contains("version") {
            output.out("\(name) from ssi")
            return 0
        }
        var table = Table()
        if !off {
            // util-linux checks these values as it meets them, before doing anything.
            for o in p.options {
                switch o.key {
                case "summary": return show(summary: true, table)
                case "priority":
                    let text = o.value ?? ""
                    guard let n = Int16(text) else {
                        let range = Int(text) != nil || text.allSatisfy(\.isNumber) && !text.isEmpty ? ": Numerical result out of range" : ""
                        return output.fail("failed to parse priority: '\(text)'\(range)", program: program, code: 1)
                    }
                    _ = n
                case "discard":
                    // util-linux: "-d=once" and "-donce" alike; once and pages
                    // are the kernel's two policies (ssi asks for both).
                    if let v = o.value {
                        let policy = v.hasPrefix("=") ? String(v.dropFirst()) : v
                        guard policy == "once" || policy == "pages" else {
                            return output.fail("unsupported discard policy: \(policy)", program: program, code: 1)
                        }
                    }
                case "show":
                    table.show = true
                    if let list = o.value {
                        var columns: [String] = []
                        for c in list.split(separator: ",", omittingEmptySubsequences: false) {
                            guard let name = Self.columns.first(where: { $0.lowercased() == c.lowercased() }) else {
                                // util-linux: an empty list fails without a word.
                                if c.isEmpty { return 1 }
                                return output.fail("unknown column: \(c)", program: program, code: 1)
                            }
                            columns.append(name)
                        }
                        table.columns = columns
                    }
                case "output-all": table.columns = Self.columns
                case "noheadings": table.headings = false
                case "raw": table.raw = true
                case "bytes": table.bytes = true
                default: break
                }
            }
            // No area named: util-linux's swapon shows the table.
            if table.show || (!keys.contains("all") && !keys.contains("L") && !keys.contains("U") && p.operands.isEmpty) {
                return show(summary: false, table)
            }
            if keys.contains("ifexists") && !keys.contains("all") {
                return output.usage("\(name): bad usage", program: program, code: 1)
            }
        }
        var specs = p.operands
        for o in p.options where o.key == "L" { specs.append("LABEL=" + (o.value ?? "")); shownSpecs["LABEL=" + (o.value ?? "")] = o.value ?? "" }
        for o in p.options where o.key == "U" { specs.append("UUID=" + (o.value ?? "")); shownSpecs["UUID=" + (o.value ?? "")] = o.value ?? "" }
        let fstabPath = p.last("fstab")
        var priority = p.last("priority").flatMap { Int16($0) }.map { Int32($0) }
        var discard = keys.contains("discard")
        // util-linux: -o's pri= and discard apply too, and -o wins over -p.
        for o in p.options where o.key == "options" {
            let list = o.value ?? ""
            if let v = MountOptions.value(of: "pri", in: list), let n = Int16(v) { priority = Int32(n) }
            if MountOptions.value(of: "discard", in: list) != nil { discard = true }
        }
        let ifExists = keys.contains("ifexists")
        let verbose = keys.contains("verbose")
        let owners = SwapOwners(configPath: configPath, fstab: fstabPath)
        let view = ClusterLink.current(directory: stateDirectory).flatMap { _ in try? ClusterView.load(directory: stateDirectory) }
        var status: Int32 = 0
        var ok = 0
        var failed = 0
        if keys.contains("all") {
            for e in owners.parseErrors { output.error("\(name): \(e.file): parse error at line \(e.line) -- ignored") }
        }
        if keys.contains("all") && off {
            // util-linux: every active area of this kernel (/proc/swaps, the
            // last first; a node's kernel has only its own), then, quietly,
            // each line of fstab's (noauto too) and the configuration's that
            // was not active at the start (libmount reads /proc/swaps once):
            // swapoff -a twice is no error, and -v names what it tried.
            let active = activeSwaps()
            let wasActive = Set(active.map(\.path))
            for s in active.reversed() {
                if swapoff(s.path, ifExists: false, quiet: true, verbose: verbose) == 0 { ok += 1 } else { failed += 1 }
            }
            // A cluster node: its own areas and fstab's unassigned ones
            // (another node's are not its to try), as for swapon -a.
            let mine = view == nil ? owners.fstab : owners.areas(for: view?.localNode ?? owners.localNode)
            var tried = Set<String>()
            for a in mine where tried.insert(a.spec).inserted && !(resolve(a.spec).map { wasActive.contains($0.path) } ?? false) {
                _ = swapoff(a.spec, ifExists: true, quiet: true, verbose: verbose)
            }
            return failed == 0 ? 0 : ok == 0 ? 32 : 64
        }
        if keys.contains("all") {
            // A cluster node: its own areas and fstab's unassigned ones.
            // No cluster: fstab's lines, node= dropped (as mount -a does).
            let mine = view == nil ? owners.fstab : owners.areas(for: view?.localNode ?? owners.localNode)
            let active = Set(activeSwaps().map(\.path))
            for a in mine {
                // util-linux's order: noauto first, then an unresolvable
                // spec, then an active area; -v says why a line is passed over.
                if a.noAuto {
                    if verbose { output.error("\(name): \(a.spec): noauto option -- ignored") }
                    continue
                }
                if let dev = resolve(a.spec), active.contains(dev.path) {
                    if verbose { output.error("\(name): \(dev.path): already active -- ignored") }
                    continue
                }
                // util-linux: a missing area is an error unless nofail or -e.
                let r = swapon(a.spec, priority: a.priority ?? priority, discard: discard, owners: owners, view: view,
                               ifExists: a.noFail || ifExists, verbose: verbose)
                if r == 0 { ok += 1 } else { failed += 1 }
            }
            return failed > 0 ? 255 : 0
        }
        if specs.isEmpty {
            return output.usage("\(name): bad usage", program: program, code: off ? 16 : 1)
        }
        for s in specs {
            let r = off ? swapoff(s, ifExists: ifExists, quiet: false, verbose: verbose)
                        : swapon(s, priority: priority, discard: discard, owners: owners, view: view, ifExists: ifExists, verbose: verbose)
            if r != 0 { status = r }
        }
        return status
    }

    // MARK: swapon

    func swapon(_ spec: String, priority: Int32?, discard: Bool = false, owners: SwapOwners, view: ClusterView?, ifExists: Bool, verbose: Bool) -> Int32 {
        guard let dev = resolve(spec) else {
            if ifExists { return 0 }
            if spec.contains("=") {
                output.error("\(name): cannot find the device for \(shownSpecs[spec] ?? spec)")
            } else {
                output.error("\(name): cannot open \(spec): No such file or directory")
            }
            return 255
        }
        // util-linux's checks before the header, in its order and words.
        var st = stat()
        if stat(dev.path, &st) == 0 {
            let mode = UInt32(st.st_mode)
            let regular = mode & UInt32(S_IFMT) == UInt32(S_IFREG)
            let mask: UInt32 = mode & UInt32(S_IFMT) == UInt32(S_IFBLK) ? 0o7007 : 0o7077
            func octal(_ v: UInt32) -> String { let t = String(v, radix: 8); return String(repeating: "0", count: max(0, 4 - t.count)) + t }
            if mode & mask != 0 {
                output.error("\(name): \(dev.path): insecure permissions \(octal(mode & 0o7777)), \(octal(~mask & 0o666)) suggested.")
            }
            if regular && st.st_uid != 0 {
                output.error("\(name): \(dev.path): insecure file owner \(st.st_uid), 0 (root) suggested.")
            }
            if regular && Int64(st.st_blocks) * 512 < Int64(st.st_size) {
                output.error("\(name): \(dev.path): skipping - it appears to have holes.")
                return 255
            }
        }
        guard dev.type == "swap" else {
            output.error("\(name): \(dev.path): read swap header failed")
            return 255
        }
        if let view {
            let me = view.localNode
            if let uuid = dev.uuid {
                let users = view.members(using: uuid, as: "s").filter { $0.number != me }
                if let u = users.first {
                    output.error("\(name): \(spec): swap area UUID=\(uuid) is active on node \(u.number) (\(u.name)): "
                        + "two nodes must never swap on one area")
                    return 255
                }
            }
            if let owner = owners.owner(of: dev), owner.node != me {
                let n = view.nodes.first { $0.number == owner.node }
                output.error("\(name): \(spec): belongs to node \(owner.node)\(n.map { " (\($0.name))" } ?? "") (\(owner.source)); "
                    + "a node swaps only on its own area")
                return 255
            }
        }
        if verbose {
            // util-linux's two lines, on stderr (warnx).
            output.error("\(name): \(dev.path): found signature [pagesize=\(getpagesize()), signature=swap]")
            if let sizes = Self.sizes(dev.path) {
                output.error("\(name): \(dev.path): pagesize=\(getpagesize()), swapsize=\(sizes.swap), devsize=\(sizes.device)")
            }
        }
        do {
            try Swap.on(dev.path, priority: priority, discard: discard)
        } catch {
            if error.errno == EBUSY && ifExists { return 0 }
            output.error("\(name): \(dev.path): swapon failed: \(Self.strerror(error.errno))")
            return 255
        }
        if verbose { output.out("\(name) \(dev.path)") }
        return 0
    }

    /// `quiet`: -a's, which says nothing of a failure but ENOMEM's.
    func swapoff(_ spec: String, ifExists: Bool, quiet: Bool, verbose: Bool) -> Int32 {
        let device = resolve(spec)
        if device == nil, spec.contains("="), !spec.hasPrefix("/") {
            if ifExists || quiet { return 0 }
            output.error("\(name): cannot find the device for \(shownSpecs[spec] ?? spec)")
            return 255
        }
        let path = device?.path ?? spec
        if verbose { output.out("\(name) \(path)") }
        do {
            try Swap.off(path)
        } catch {
            if ifExists && (error.errno == ENOENT || error.errno == EINVAL) { return 0 }
            if quiet && error.errno != ENOMEM { return 4 }
            output.error("\(name): \(path): swapoff failed: \(Self.strerror(error.errno))")
            return 4
        }
        return 0
    }

    /// The area's size as its swap header says ((last_page + 1) pages)
    /// and the device's or file's; nil when either cannot be read.
    static func sizes(_ path: String) -> (swap: UInt64, device: UInt64)? {
        guard let file = try? Descriptor(open: path, O_RDONLY) else { return nil }
        let fd = file.rawValue
        var header = [UInt8](repeating: 0, count: 8)
        guard header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 8, 1024) }) == 8 else { return nil }
        let end = lseek(fd, 0, SEEK_END)
        guard end > 0 else { return nil }
        func u32(_ at: Int, swapped: Bool) -> UInt32 {
            let v = header[at..<at + 4].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            return swapped ? v.byteSwapped : v
        }
        // Version 1, in this machine's order or the other.
        let swapped = u32(0, swapped: false) != 1
        guard u32(0, swapped: swapped) == 1 else { return nil }
        return ((UInt64(u32(4, swapped: swapped)) + 1) * UInt64(getpagesize()), UInt64(end))
    }

    func resolve(_ spec: String) -> BlockDevice? {
        if spec.hasPrefix("/") {
            guard FileSystem.exists(spec) else { return nil }
            return BlockDevices.probe(spec)
        }
        // A relative path ("sw", "./sw"): util-linux takes it from the
        // working directory, and the kernel lists it by its full path.
        if !spec.contains("="), FileSystem.exists(spec), let full = try? FileSystem.realPath(spec) {
            return BlockDevices.probe(full)
        }
        guard let want = try? DeviceSpec(parsing: spec, field: "swap") else { return nil }
        return BlockDevices.scan().first { want.matches($0) }
    }

    func isActive(_ spec: String) -> Bool {
        guard let dev = resolve(spec) else { return false }
        return activeSwaps().contains { $0.path == dev.path }
    }

    func activeSwaps() -> [(path: String, type: String, size: String, used: String, priority: String)] {
        let text = (try? FileSystem.readText("/proc/swaps")) ?? ""
        return text.lines().dropFirst().compactMap { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            return f.count >= 5 ? (f[0], f[1], f[2], f[3], f[4]) : nil
        }
    }

    /// --show's table: which columns, and how.
    struct Table {
        var show = false
        var columns = ["NAME", "TYPE", "SIZE", "USED", "PRIO"]
        var headings = true
        var raw = false
        var bytes = false
    }

    /// -s prints /proc/swaps as util-linux does; --show its table (sizes
    /// in KiB units as the kernel gives them, converted like lsblk).
    func show(summary: Bool, _ table: Table) -> Int32 {
        let swaps = activeSwaps()
        if summary {
            // util-linux prints nothing, not even the header, with no swap.
            guard !swaps.isEmpty else { return 0 }
            if let text = try? FileSystem.readText("/proc/swaps") { output.out(String(text.dropLast(text.hasSuffix("\n") ? 1 : 0))) }
            return 0
        }
        guard !swaps.isEmpty else { return 0 }
        func size(_ kib: String) -> String {
            guard let k = UInt64(kib) else { return kib }
            let (b, overflow) = k.multipliedReportingOverflow(by: 1024)
            if table.bytes { return overflow ? kib : String(b) }
            var v = Double(k) * 1024
            let units = ["B", "K", "M", "G", "T", "P", "E"]
            var i = 0
            while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
            let rounded = (v * 10).rounded() / 10
            return rounded == rounded.rounded() ? "\(Int(rounded))\(units[i])" : "\(rounded)\(units[i])"
        }
        let rows = swaps.map { s -> [String] in
            let dev = table.columns.contains("UUID") || table.columns.contains("LABEL") ? BlockDevices.probe(s.path) : nil
            return table.columns.map { c in
                switch c {
                case "NAME": s.path
                case "TYPE": s.type
                case "SIZE": size(s.size)
                case "USED": size(s.used)
                case "PRIO": s.priority
                case "UUID": dev?.uuid ?? ""
                default: dev?.label ?? ""
                }
            }.map(\.escapedForTerminal)
        }
        let all = (table.headings ? [table.columns] : []) + rows
        if table.raw {
            for r in all { output.out(r.joined(separator: " ")) }
            return 0
        }
        // As libsmartcols lays it out: a column is as wide as its widest
        // cell or its heading, printed or not (--noheadings keeps the
        // widths); a left-aligned last column is not padded, but an empty
        // last cell keeps the space before it.
        let widths = table.columns.indices.map { c in ([table.columns] + rows).map { $0[c].count }.max() ?? 0 }
        let rightAligned: Set<String> = ["SIZE", "USED", "PRIO"]
        let last = table.columns.count - 1
        for r in all {
            var cells: [String] = []
            for (c, cell) in r.enumerated() {
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                if rightAligned.contains(table.columns[c]) { cells.append(pad + cell) }
                else { cells.append(c == last ? cell : cell + pad) }
            }
            output.out(cells.joined(separator: " "))
        }
        return 0
    }
}

/// Who owns which swap area: each node's `swap` in cluster.conf, and fstab
/// swap lines with `node=N`.
struct SwapOwners {
    struct Area {
        var spec: String
        var node: UInt32
        var source: String
        var priority: Int32?
        /// fstab's `nofail`: -a says nothing when it is missing.
        var noFail = false
        /// fstab's `noauto`: -a passes it over (saying so with -v); the
        /// line still names its owner, and swapoff -a still tries it.
        var noAuto = false
    }

    var areas: [Area] = []
    /// fstab swap lines without node=: any node may use them (util-linux's -a).
    var unassigned: [Area] = []
    /// Every fstab swap line, node= or not, in the file's order: what -a
    /// turns on with no cluster running (node= is dropped then, as by
    /// mount -a), noauto ones passed over.
    var fstab: [Area] = []
    var localNode: UInt32 = 0
    /// The fstab lines libmount passed over (util-linux's -a warns of each).
    var parseErrors: [(file: String, line: Int)] = []

    init(configPath: String, fstab: String?) {
        if let config = try? ClusterConfig.load(path: configPath) {
            for n in config.nodes {
                if let s = n.swap { areas.append(Area(spec: s, node: UInt32(n.number), source: "\(configPath): node \(n.number) swap")) }
            }
        }
        let fstabName = fstab ?? "/etc/fstab"
        if let table = try? FstabTable(path: fstab) {
            parseErrors = table.parseErrors
            for e in table.entries where e.type == "swap" {
                let noFail = MountOptions.value(of: "nofail", in: e.options) != nil
                let noAuto = MountOptions.value(of: "noauto", in: e.options) != nil
                let prio = MountOptions.value(of: "pri", in: e.options).flatMap { Int32($0) }
                self.fstab.append(Area(spec: e.source, node: 0, source: fstabName, priority: prio, noFail: noFail, noAuto: noAuto))
                guard let v = MountOptions.value(of: "node", in: e.options), let n = UInt32(v) else {
                    unassigned.append(Area(spec: e.source, node: 0, source: fstabName, priority: prio, noFail: noFail, noAuto: noAuto))
                    continue
                }
                areas.append(Area(spec: e.source, node: n, source: "\(fstabName): node=\(n)", priority: prio, noFail: noFail, noAuto: noAuto))
            }
        }
    }

    /// What `-a` activates on `node`: its own areas and the unassigned ones.
    func areas(for node: UInt32) -> [Area] { areas.filter { $0.node == node } + unassigned }

    /// The area's owner, matching by path, UUID or label.
    func owner(of dev: BlockDevice) -> Area? {
        areas.first { a in
            if a.spec == dev.path { return true }
            guard let spec = try? DeviceSpec(parsing: a.spec, field: "swap") else { return false }
            return spec.matches(dev)
        }
    }
}
