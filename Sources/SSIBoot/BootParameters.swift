public import SSICore
public import SSILinux

/// The steps where `ssi.break=` can stop the boot on purpose.
public enum BreakPoint: String, CaseIterable, Sendable {
    /// After the modules are loaded.
    case modules
    /// Before the root is mounted (mount it yourself at /sysroot and exit).
    case root
    /// After the root is mounted, just before switching to it.
    case prePivot = "pre-pivot"
}

/// What ssi-init takes from the kernel command line. Parsing is pure, so it
/// is unit tested; `ssi init --explain` prints it for a given line.
public struct BootParameters: Sendable, Equatable {
    public var root: DeviceSpec?
    public var rootFSType: String?
    public var rootFlags: String?
    public var readOnly = true
    public var initPath = "/sbin/init"
    public var breaks: Set<BreakPoint> = []
    /// Seconds to wait for the root device.
    public var rootTimeout = 30
    /// Seconds to sleep before looking for the root (kernel's rootdelay=).
    public var rootDelay = 0
    /// `ssi.node=N`: this machine's node number, instead of finding it by
    /// MAC address in the cluster configuration.
    public var node: Int?
    /// `ssi.quorum_wait=N`: seconds to wait for quorum, overriding the
    /// configuration's boot wait.
    public var quorumWait: Int?
    /// Problems that do not stop the boot (an unknown break point...).
    public var warnings: [String] = []

    /// ssi.root_wait=N: how long a CFS node waits for the init node's NFS
    /// server (default: the configuration's [root] wait_seconds).
    public var clusterRootWait: Int?

    /// ssi.identity=PATH: the medium holding this node's key (overrides
    /// the configuration's [identity] device).
    public var identityDevice: String?
    /// ssi.enroll: enrollment mode. A blank key medium gets a new key, and
    /// a node the init node does not know waits for the administrator to
    /// enroll it instead of stopping.
    public var enroll = false

    public init() {}

    public init(_ cmdline: KernelCommandLine) throws(SSIError) {
        if let r = cmdline.value("root") {
            root = try DeviceSpec(parsing: r, field: "root")
        }
        rootFSType = cmdline.value("rootfstype").flatMap { $0.isEmpty ? nil : $0 }
        rootFlags = cmdline.value("rootflags").flatMap { $0.isEmpty ? nil : $0 }
        // The kernel's rule: "ro" unless "rw", the last one winning.
        readOnly = cmdline.lastFlag(of: ["ro", "rw"]) != "rw"
        if let i = cmdline.value("init") {
            guard i.hasPrefix("/") else {
                throw SSIError("cmdline", "init=\(printable(i)) must be an absolute path", hint: "e.g. init=/lib/systemd/systemd")
            }
            initPath = i
        }
        if cmdline.has("ssi.break") { breaks.insert(.prePivot) }
        for b in cmdline.values("ssi.break") {
            if let p = BreakPoint(rawValue: b) {
                breaks.insert(p)
            } else {
                warnings.append("ssi.break=\(printable(b)) is not a step; known: \(BreakPoint.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        // rootwait=N (Linux 6.4+) and our own ssi.timeout=N bound the wait;
        // the later one on the line wins. A bare "rootwait" keeps our
        // bounded default: a boot that never ends helps nobody.
        for key in ["rootwait", "ssi.timeout"] {
            if let n = try Self.number(cmdline, key, in: Self.waitRange, unit: "seconds") { rootTimeout = n }
        }
        node = try Self.number(cmdline, "ssi.node", in: Self.nodeRange, unit: "a node number")
        quorumWait = try Self.number(cmdline, "ssi.quorum_wait", in: Self.waitRange, unit: "seconds")
        clusterRootWait = try Self.number(cmdline, "ssi.root_wait", in: 1...Self.waitRange.upperBound, unit: "seconds")
        if let n = try Self.number(cmdline, "rootdelay", in: Self.rootDelayRange, unit: "seconds") { rootDelay = n }
        if let d = cmdline.value("ssi.identity") {
            guard d == "tpm" || d.hasPrefix("/"), d.utf8.count <= 4096 else {
                throw SSIError("cmdline", "ssi.identity=\(printable(d)) must be \"tpm\" or an absolute path", hint: "e.g. ssi.identity=/dev/vdb")
            }
            identityDevice = d
        }
        enroll = cmdline.has("ssi.enroll")
    }

    /// Every wait on the command line: up to a day. The values become
    /// deadlines and milliseconds in PID 1, where an overflow is a kernel
    /// panic; a longer wait is a typo (the configuration's waits have the
    /// same bound).
    public static let waitRange = 0...86_400
    /// rootdelay= is a plain sleep before the root is looked for: an hour is
    /// already far more than any disk needs.
    public static let rootDelayRange = 0...3600
    /// As the configuration's node numbers.
    public static let nodeRange = 1...Int(Int32.max)

    /// The value of `key` as a whole number in `range`, nil when absent.
    /// Out of range (or not a number) is an error naming the parameter and
    /// the range, never a trap later.
    static func number(_ cmdline: KernelCommandLine, _ key: String, in range: ClosedRange<Int>, unit: String) throws(SSIError) -> Int? {
        guard let text = cmdline.value(key) else { return nil }
        guard let n = Int(text), range.contains(n) else {
            throw SSIError("cmdline", "\(key)=\(printable(text)) is not \(unit) in \(range.lowerBound)...\(range.upperBound)",
                           hint: key == "ssi.node" ? "node numbers start at 1" : "write \(key)=N with N in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    /// A multi-line description for `ssi init --explain`.
    public var explanation: String {
        var lines: [String] = []
        lines.append("root: \(root?.description ?? "(none: root= is missing)")")
        lines.append("rootfstype: \(rootFSType ?? "(from the device's superblock)")")
        lines.append("rootflags: \(rootFlags ?? "(none)")")
        lines.append("mount: \(readOnly ? "read-only" : "read-write")")
        lines.append("wait for root: \(rootTimeout) s" + (rootDelay > 0 ? " after \(rootDelay) s delay" : ""))
        lines.append("init: \(initPath)")
        lines.append("node: \(node.map { String($0) } ?? "(by MAC address, from the cluster configuration)")")
        if let quorumWait { lines.append("quorum wait: \(quorumWait) s") }
        if let clusterRootWait { lines.append("wait for the CFS server: \(clusterRootWait) s") }
        if let identityDevice { lines.append("identity: \(identityDevice)") }
        if enroll { lines.append("enrollment mode: a blank key medium gets a new key; an unknown node waits to be enrolled") }
        let b = BreakPoint.allCases.filter { breaks.contains($0) }.map(\.rawValue)
        lines.append("break at: \(b.isEmpty ? "(nowhere)" : b.joined(separator: ", "))")
        for w in warnings { lines.append("warning: \(w)") }
        // The values are the command line's: escaped, so that one cannot
        // drive the terminal or fake a line of this list.
        return lines.map { printable($0) }.joined(separator: "\n")
    }
}
