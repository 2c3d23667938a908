#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore
import CSSIShim

public enum Mount {
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt
        public init(rawValue: UInt) { self.rawValue = rawValue }
        public static let readOnly = Flags(rawValue: UInt(MS_RDONLY))
        public static let noSuid = Flags(rawValue: UInt(MS_NOSUID))
        public static let noDev = Flags(rawValue: UInt(MS_NODEV))
        public static let noExec = Flags(rawValue: UInt(MS_NOEXEC))
        public static let move = Flags(rawValue: UInt(MS_MOVE))
        public static let bind = Flags(rawValue: UInt(MS_BIND))
        public static let recursive = Flags(rawValue: UInt(MS_REC))
        public static let remount = Flags(rawValue: UInt(MS_REMOUNT))
    }

    public static func mount(
        source: String, target: String, type: String?, flags: Flags = [], data: String? = nil
    ) throws(SystemCallError) {
        let what = "mount \(source) on \(target)" + (type.map { " (\($0))" } ?? "")
        try syscall(what) {
            Glibc.mount(source, target, type, flags.rawValue, data)
        }
    }

    /// mount(2) in a child process, waited for at most `timeoutMs`: for
    /// network file systems, whose mount can block while the server is
    /// silent. Throws ETIMEDOUT when the wait ran out (the child is killed).
    public static func mountBounded(
        source: String, target: String, type: String, flags: Flags = [], data: String?, timeoutMs: Int32
    ) throws(SystemCallError) {
        let rc = ssi_mount_bounded(source, target, type, flags.rawValue, data, timeoutMs)
        if rc != 0 {
            throw SystemCallError("mount \(source) on \(target) (\(type))", errno: rc)
        }
    }

    /// mount --move: the whole mount (and what is under it) to a new place.
    public static func move(_ from: String, to: String) throws(SystemCallError) {
        try syscall("move mount \(from) to \(to)") {
            Glibc.mount(from, to, nil, UInt(MS_MOVE), nil)
        }
    }

    public static func unmount(_ target: String, detach: Bool = false) throws(SystemCallError) {
        try syscall("umount \(target)") { umount2(target, detach ? Int32(MNT_DETACH) : 0) }
    }

    /// umount2(2) in a child process, waited for at most `timeoutMs`: the
    /// file system's own shutdown (GFS2 leaving its lockspace, which waits
    /// for dlm_controld) runs in the child as the last reference goes.
    /// Throws ETIMEDOUT when the wait ran out; the child is killed and not
    /// waited for.
    public static func unmountBounded(_ target: String, detach: Bool, timeoutMs: Int32) throws(SystemCallError) {
        let rc = ssi_umount_bounded(target, detach ? Int32(MNT_DETACH) : 0, timeoutMs)
        if rc != 0 {
            throw SystemCallError("umount \(target)", errno: rc)
        }
    }

    /// True if `path` is a mount point: its device differs from its parent's.
    public static func isMountPoint(_ path: String) -> Bool {
        guard let me = try? FileSystem.status(path, followSymlinks: true),
              let parent = try? FileSystem.status(path == "/" ? "/" : path + "/..", followSymlinks: true)
        else { return false }
        return me.device != parent.device || path == "/"
    }

    /// One line of /proc/self/mountinfo: what is mounted where.
    public struct Entry: Sendable, Equatable {
        /// "MAJOR:MINOR" of the mounted device (st_dev).
        public var device: String
        public var mountPoint: String
        public var type: String
        /// What was mounted ("/dev/vdb", "server:/path", "tmpfs").
        public var source: String = ""
    }

    /// This process's mounts, in mount order (a later one at the same
    /// place covers an earlier one).
    /// `path`: another process's table, such as /proc/1/mountinfo (paths
    /// relative to that process's root).
    public static func entries(path: String = "/proc/self/mountinfo") -> [Entry] {
        parseMountInfo((try? FileSystem.readText(path)) ?? "")
    }

    static func parseMountInfo(_ text: String) -> [Entry] {
        text.lines().compactMap { line in
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
            let halves = line.split(separator: " - ", maxSplits: 1)
            let f = halves[0].split(separator: " ")
            let tail = halves.count == 2 ? halves[1].split(separator: " ") : []
            guard f.count > 4, let type = tail.first else { return nil }
            return Entry(device: String(f[2]), mountPoint: unescapeMountField(String(f[4])), type: String(type),
                         source: tail.count > 1 ? unescapeMountField(String(tail[1])) : "")
        }
    }

    /// A mountinfo line with its place in the tree: umount -R and -A walk
    /// a mount's children and the other mounts of its device.
    public struct TreeEntry: Sendable, Equatable {
        public var id: Int
        public var parent: Int
        public var entry: Entry
    }

    /// This process's mounts with their ids and parents, in mount order.
    public static func tree(path: String = "/proc/self/mountinfo") -> [TreeEntry] {
        parseMountTree((try? FileSystem.readText(path)) ?? "")
    }

    static func parseMountTree(_ text: String) -> [TreeEntry] {
        text.lines().compactMap { line in
            let f = line.split(separator: " ", maxSplits: 2)
            guard f.count > 2, let id = Int(f[0]), let parent = Int(f[1]), let entry = parseMountInfo(String(line)).first else { return nil }
            return TreeEntry(id: id, parent: parent, entry: entry)
        }
    }

    /// Mount points listed in /proc/self/mounts, in mount order.
    public static func mountPoints() -> [String] {
        guard let text = try? FileSystem.readText("/proc/self/mounts") else { return [] }
        return text.lines().compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 1 ? unescapeMountField(String(fields[1])) : nil
        }
    }
}

/// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
public func unescapeMountField(_ s: String) -> String {
    guard s.contains("\\") else { return s }
    var out: [UInt8] = []
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "\\"), i + 3 < b.count + 0,
           let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
            out.append(v)
            i += 4
        } else {
            out.append(b[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}
