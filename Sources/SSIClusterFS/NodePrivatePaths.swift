#if canImport(Glibc)
import Glibc
#endif
public import SSICore
public import SSIConfig
import SSILinux

/// Node-private paths on a shared root: OpenSSI's context-dependent links,
/// done with bind mounts. Node NAME keeps its own copy of each private
/// PATH at `DIRECTORY/NAME/PATH` on the shared root and sees it at PATH.
///
/// Two phases, because binding `/var` hides the shared `/var` a later
/// seed would copy: `seed` makes every missing copy first (from the shared
/// path, into a temporary name renamed into place, so a failed copy is
/// never mistaken for a finished one), then `bind` mounts them all.
public struct NodePrivatePaths: Sendable {
    /// Where the shared root is mounted ("/sysroot" in the initramfs).
    public let root: String
    /// `[private] directory`, absolute within the shared root.
    public let directory: String
    public let nodeName: String
    /// Absolute within the shared root, not nested (the config checks).
    public let paths: [String]

    public init(root: String, directory: String, nodeName: String, paths: [String]) {
        self.root = root
        self.directory = directory
        self.nodeName = nodeName
        self.paths = paths.sorted()
    }

    /// Every node's copies but the CFS server's own, made where missing,
    /// from the shared root mounted at `root` ("" on the running init
    /// node, "/sysroot" in its initramfs): "NAME:PATH" for each one made.
    public static func seedOthers(_ config: ClusterConfig, server: Int, root: String) throws(SSIError) -> [String] {
        var seeded: [String] = []
        for node in config.nodes where node.number != server {
            let privates = NodePrivatePaths(root: root, directory: config.privatePaths.directory, nodeName: node.name,
                                            paths: config.privatePaths(for: node))
            for (path, result) in try privates.seed() where result != .kept {
                seeded.append("\(node.name):\(path)")
            }
        }
        return seeded
    }

    /// The node's copy of `path`, within the shared root.
    public func copyPath(_ path: String) -> String { directory + "/" + nodeName + path }

    /// What `seed` did for one path.
    public enum Seeded: Sendable, Equatable {
        case kept, copied(entries: Int), created
    }

    /// Makes the node's copies that do not exist yet. `/etc/hostname` is
    /// (re)written with the node's name at every boot, `/etc/machine-id`
    /// gets a new random id once; other paths are copied from the shared
    /// root (an empty folder when the shared root has none).
    public func seed() throws(SSIError) -> [(path: String, result: Seeded)] {
        var results: [(String, Seeded)] = []
        do {
            try makeBase()
            for path in paths {
                let copy = root + copyPath(path)
                try FileSystem.makeDirectories(dirname(of: copy))
                switch path {
                case "/etc/hostname":
                    let existed = FileSystem.exists(copy)
                    try writeAtomically(copy, nodeName + "\n", mode: 0o644)
                    results.append((path, existed ? .kept : .created))
                case "/etc/machine-id":
                    if let text = try? FileSystem.readText(copy), text.count >= 32 {
                        results.append((path, .kept))
                    } else {
                        try writeAtomically(copy, try Self.newMachineID() + "\n", mode: 0o444)
                        results.append((path, .created))
                    }
                default:
                    if FileSystem.exists(copy) {
                        results.append((path, .kept))
                        continue
                    }
                    let shared = root + path
                    let temp = copy + ".ssi-seed-\(getpid())"
                    try? FileSystem.removeTree(temp)
                    if FileSystem.exists(shared) {
                        let n = try FileSystem.copyTree(shared, to: temp)
                        try FileSystem.rename(temp, copy)
                        results.append((path, .copied(entries: n)))
                    } else {
                        try FileSystem.makeDirectories(temp, mode: path == "/tmp" ? 0o1777 : 0o755)
                        if path == "/tmp" { chmod(temp, 0o1777) }
                        try FileSystem.rename(temp, copy)
                        results.append((path, .created))
                    }
                }
            }
        } catch {
            throw SSIError("private", "seeding \(nodeName)'s copies in \(root)\(directory): \(error.description)",
                           hint: "the shared root must be writable here: mounted read-write on the init node, exported rw,no_root_squash to the others")
        }
        return results
    }

    /// Binds every copy over its path. A path the shared root lacks is
    /// made there first (an empty file or folder, like the copy) to mount on.
    /// `mountDirectory` may mount a directory's copy another way (a CFS
    /// node: the copy over NFS with caching); given the copy's path on the
    /// shared root and the target, it returns false to have it bound.
    public func bind(mountDirectory: ((_ copy: String, _ target: String) -> Bool)? = nil) throws(SSIError) {
        for path in paths {
            let copy = root + copyPath(path)
            let target = root + path
            do {
                let st = try FileSystem.status(copy)
                if !FileSystem.exists(target) {
                    try FileSystem.makeDirectories(dirname(of: target))
                    if st.kind == .directory {
                        try FileSystem.makeDirectories(target)
                    } else {
                        try FileSystem.writeFile(target, "", mode: 0o644)
                    }
                }
                if st.kind == .directory, let mountDirectory, mountDirectory(copyPath(path), target) { continue }
                try Mount.mount(source: copy, target: target, type: nil, flags: [.bind])
            } catch {
                throw SSIError("private", "binding \(copyPath(path)) on \(path): \(error.description)")
            }
        }
    }

    private func makeBase() throws(SystemCallError) {
        let base = root + directory
        if !FileSystem.exists(base) {
            try FileSystem.makeDirectories(base)
            try? FileSystem.writeFile(base + "/README", """
                Node-private copies made by ssi (see [private] in /etc/ssi/cluster.conf).
                Node NAME sees NAME/PATH here at PATH: its own /var, /tmp, hostname and
                machine-id on a root every node shares. A node's first boot seeds its
                copies from the shared paths; remove a node's folder to reseed it.

                """)
        }
        try FileSystem.makeDirectories(base + "/" + nodeName)
    }

    private func writeAtomically(_ path: String, _ text: String, mode: mode_t) throws(SystemCallError) {
        try writeFileAtomically(path, Array(text.utf8), mode: mode, replace: true)
    }

    /// 128 random bits as 32 lowercase hex digits, machine-id(5)'s format.
    /// /dev/urandom rather than getrandom(2): early in boot the kernel's
    /// pool may not be ready, and a machine id needs uniqueness, not secrecy.
    static func newMachineID() throws(SystemCallError) -> String {
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open /dev/urandom", errno: errno) }
        defer { close(fd) }
        let bytes = try readExactly(fd, 16, name: "/dev/urandom")
        // A short read sets no errno: name it.
        guard bytes.count == 16 else { throw SystemCallError("read /dev/urandom", errno: EIO) }
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}
