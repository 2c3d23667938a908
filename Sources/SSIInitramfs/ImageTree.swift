public import SSICore
import SSILinux

/// Everything that goes into an image, keyed by its path inside the image
/// ("usr/bin/ssi", no leading slash, as the kernel's unpacker and the
/// other generators write them). Building the tree is cheap bookkeeping;
/// file contents are only read when the tree is streamed out.
public struct ImageTree: Sendable {
    public enum Node: Sendable, Equatable {
        case directory(permissions: UInt32)
        /// A file copied from the build host at write time.
        case hostFile(source: String, permissions: UInt32, size: Int)
        case data([UInt8], permissions: UInt32)
        case symlink(target: String)
        case characterDevice(permissions: UInt32, major: UInt32, minor: UInt32)
    }

    public private(set) var nodes: [String: Node] = [:]

    public init() {}

    public static func normalize(_ path: String) -> String {
        path.split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
    }

    /// Adds a node and any missing parent directories. Adding the same
    /// path twice is fine when both agree; a clash is an error naming both.
    public mutating func add(_ path: String, _ node: Node) throws(SSIError) {
        let p = ImageTree.normalize(path)
        guard !p.isEmpty else { return }
        try addParents(of: p)
        try put(p, node)
    }

    private mutating func addParents(of p: String) throws(SSIError) {
        var parent = ""
        for comp in p.split(separator: "/").dropLast() {
            parent = parent.isEmpty ? String(comp) : parent + "/" + comp
            switch nodes[parent] {
            case nil: nodes[parent] = .directory(permissions: 0o755)
            case .directory: break
            case .symlink(let t):
                throw SSIError("image", "cannot put /\(p) in the image: /\(parent) is a symlink to \(t) there",
                               hint: "name the path through its real directory")
            default:
                throw SSIError("image", "cannot put /\(p) in the image: /\(parent) is a file there")
            }
        }
    }

    private mutating func put(_ p: String, _ node: Node) throws(SSIError) {
        guard let old = nodes[p] else {
            nodes[p] = node
            return
        }
        switch (old, node) {
        case (.directory, .directory): return
        case (.hostFile(let a, _, _), .hostFile(let b, _, _)) where a == b: return
        default:
            if old == node { return }
            throw SSIError("image", "/\(p) was added twice with different contents (\(old.summary) and \(node.summary))")
        }
    }

    public func node(_ path: String) -> Node? { nodes[ImageTree.normalize(path)] }

    /// Paths in byte order: a parent sorts before its children, and the
    /// order (hence the archive) does not depend on how the tree was built.
    public var sortedPaths: [String] {
        nodes.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The order the archive is written in: every directory first (so each
    /// parent comes before its children, as the kernel needs), then the
    /// kernel modules, then the rest, each group in byte order. Not plain
    /// byte order because of compression: there the modules sit between
    /// busybox and libc, and busybox-static holds much of glibc, which
    /// then lies beyond the 8 MiB window; side by side the image is 4%
    /// smaller (BENCHMARKS.md, "Image").
    public var archiveOrder: [String] {
        var groups: [[String]] = [[], [], []]
        for p in sortedPaths {
            if case .directory = nodes[p]! { groups[0].append(p) }
            else { groups[p.hasPrefix("usr/lib/modules/") ? 1 : 2].append(p) }
        }
        return groups.flatMap { $0 }
    }

    public var fileCount: Int {
        nodes.values.filter { if case .directory = $0 { return false } else { return true } }.count
    }

    public var payloadBytes: Int {
        nodes.values.reduce(0) { sum, n in
            switch n {
            case .hostFile(_, _, let size): return sum + size
            case .data(let d, _): return sum + d.count
            default: return sum
            }
        }
    }
}

extension ImageTree.Node {
    var summary: String {
        switch self {
        case .directory: return "a directory"
        case .hostFile(let s, _, _): return "a copy of \(s)"
        case .data: return "generated data"
        case .symlink(let t): return "a symlink to \(t)"
        case .characterDevice(_, let ma, let mi): return "character device \(ma):\(mi)"
        }
    }
}
