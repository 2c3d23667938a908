#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// What an image is built from.
public struct ImageSpec: Sendable {
    public var kernelVersion: String
    public var moduleDirectory: String
    /// Modules (or aliases) to carry, with their dependency closure.
    public var modules: [String]
    /// Modules ssi-init always loads at boot (also carried). The others
    /// load when a device or a file system asks for them.
    public var loadAtBoot: [String] = []
    /// Extra host files (with their ELF closure).
    public var installs: [String] = []
    /// The multi-call binary that becomes /init.
    public var ssiBinary: String
    /// `ssiBinary` packed on its own (`BinaryArchive`): a zstd image
    /// appends this archive instead of compressing the binary again.
    public var binaryArchive: String?
    /// A static busybox for the emergency shell, if any.
    public var busybox: String?
    public var compression: Compression = .zstd
    public var compressionLevel: Int32?
    public var threads: Int = 0
    /// Seconds since the epoch for every entry (SOURCE_DATE_EPOCH).
    public var mtime: UInt32 = 0
    /// The cluster daemons and their configuration, when the image is
    /// built for a cluster (`--config`).
    public var cluster: ClusterPayload?

    public init(kernelVersion: String, moduleDirectory: String, modules: [String], ssiBinary: String) {
        self.kernelVersion = kernelVersion
        self.moduleDirectory = moduleDirectory
        self.modules = modules
        self.ssiBinary = ssiBinary
    }

    /// The modules an image carries unless told otherwise: enough to boot a
    /// virtio qemu guest or a common server from a local disk, and the
    /// cluster file systems and their network.
    public static let defaultModules = [
        "virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console",
        "ahci", "nvme", "sd_mod",
        "ext4", "nfsv4", "gfs2", "dlm", "configfs",
    ]

    /// What ssi-init loads with dlopen in every image: the device scan.
    /// Modules are loaded without libkmod (`ModuleLoader`), which would
    /// bring libcrypto, liblzma and libzstd (5.7 MB) into every image.
    public static let bootLibraries: [LazyLibrary] = [.udev]
    /// What a cluster image adds, for ssi-init's membership step and the
    /// agents it leaves running (in the image and in the daemons' root):
    /// libmount for the cluster mounts they apply.
    public static let clusterLibraries: [LazyLibrary] = LazyLibrary.corosync + [.sodium, .mount]
    /// What the agents load in the daemons' root after the hand-off: the
    /// cluster's libraries (the process agent loads the modules criu needs
    /// with `ModuleLoader` too).
    public static let agentLibraries: [LazyLibrary] = clusterLibraries

    /// Multi-call names the image links to the ssi binary.
    public static let appletNames = ["ssi-init", "ssi-mkinitrd"]
}

/// What a cluster node's image carries besides the boot essentials:
/// corosync with the plugins it loads at run time, its configuration and
/// key, and the cluster configuration itself. ssi-init runs the daemons
/// chrooted in a copy of exactly these files (and the ssi binary's), listed
/// in /etc/ssi/agents.list, so that they outlive the initramfs.
public struct ClusterPayload: Sendable {
    /// Host programs and dlopen()ed plugins the daemons need.
    public var daemons: [String]
    /// Image path -> (bytes, mode): corosync.conf, cluster.conf.
    public var files: [String: (bytes: [UInt8], permissions: UInt32)]
    /// corosync's authkey, placed at /etc/corosync/authkey mode 0400.
    public var authkey: [UInt8]?
    /// Image path -> link target: multi-call names of the ssi binary the
    /// daemons run (fence_ssi).
    public var links: [String: String]
    /// The caller checked that the cluster configuration holds no fence
    /// credentials (a served image; an image with the key sealed and no
    /// password in [fence] but as @NAME), so that file and dlm.conf are
    /// public there.
    public var configIsPublic: Bool
    /// Image paths ssi-init writes before it makes the daemons' root (the
    /// key and fence secrets it receives or opens): listed for the copy.
    public var atBoot: [String]

    public init(daemons: [String], files: [String: (bytes: [UInt8], permissions: UInt32)], authkey: [UInt8]?,
                links: [String: String] = [:], configIsPublic: Bool = false, atBoot: [String] = []) {
        self.daemons = daemons
        self.files = files
        self.authkey = authkey
        self.links = links
        self.configIsPublic = configIsPublic
        self.atBoot = atBoot
    }

    /// The payload holds a secret (the key, or a file only root may read,
    /// like a configuration with fence passwords): the image must not be
    /// readable by anyone else either.
    public var holdsSecrets: Bool {
        authkey != nil || files.contains { isSecret($0.key) || $0.value.permissions & 0o077 == 0 }
    }

    /// Image paths that hold secrets whatever mode the caller gave them:
    /// the key, the fence secrets, and the cluster configuration and
    /// dlm.conf unless `configIsPublic` (a fence password in the clear is
    /// in both). They are written for root alone.
    public static let secretPaths: Set<String> = ["etc/corosync/authkey", "etc/ssi/cluster.conf", "etc/dlm/dlm.conf", "etc/ssi/fence-secrets"]

    func isSecret(_ path: String) -> Bool {
        let p = ImageTree.normalize(path)
        return Self.secretPaths.contains(p) && !(configIsPublic && (p == "etc/ssi/cluster.conf" || p == "etc/dlm/dlm.conf"))
    }

    /// The mode a payload file is written with: a secret loses every
    /// group and other bit.
    func permissions(of path: String, _ requested: UInt32) -> UInt32 {
        isSecret(path) ? requested & ~0o077 : requested
    }
}

public struct ImageReport: Sendable {
    public var output: String
    public var compression: Compression
    public var bytes: Int
    public var uncompressedBytes: Int
    public var entries: Int
    public var modules: Int
    public var builtinRequested: [String]
    public var firmware: Int
    public var missingFirmware: [String]
    /// The image carries a secret (the cluster key, fence passwords) and
    /// was written mode 0600.
    public var holdsSecrets: Bool
    /// The packed binary's archive the image appended, if any.
    public var packedBinary: String?
    public var seconds: Double
}

public enum ImageBuilder {
    /// Resolves everything first (modules, ELF closures), so that bad input
    /// fails before a byte is written; then streams the archive to a
    /// temporary file beside `output` and renames it into place. A failure
    /// at any point leaves `output` as it was.
    public static func build(_ spec: ImageSpec, output: String, force: Bool) throws(SSIError) -> ImageReport {
        let started = Process.now()
        if FileSystem.exists(output) && !force {
            throw SSIError("mkinitrd", "\(output) already exists", hint: "pass --force to replace it")
        }
        let outDir = dirname(of: output)
        guard FileSystem.isDirectory(outDir) else {
            throw SSIError("mkinitrd", "cannot write \(output): directory \(outDir) does not exist")
        }

        var tree = try skeleton(spec)
        var names = spec.modules
        for m in spec.loadAtBoot where !names.contains(m) { names.append(m) }
        let modules = try ModuleSet.resolve(names: names, kernelVersion: spec.kernelVersion,
                                            directory: spec.moduleDirectory)
        try modules.install(into: &tree, loadAtBoot: spec.loadAtBoot.filter { !modules.builtin.contains($0) })
        var installer = try HostInstaller(tree: tree)
        try installer.install(spec.ssiBinary, as: "usr/bin/ssi", permissions: 0o755)
        try installer.installLoaded(ImageSpec.bootLibraries.map(\.soname), by: spec.ssiBinary)
        if let bb = spec.busybox {
            try installer.install(bb, as: "usr/bin/busybox", permissions: 0o755)
        }
        for path in spec.installs {
            guard path.hasPrefix("/") else {
                throw SSIError("mkinitrd", "--install \(path): give an absolute path")
            }
            try installer.install(path)
        }
        tree = installer.tree
        try tree.add("init", .symlink(target: "usr/bin/ssi"))
        for name in ImageSpec.appletNames {
            try tree.add("usr/sbin/\(name)", .symlink(target: "../bin/ssi"))
        }
        if spec.busybox != nil, tree.node("usr/bin/sh") == nil {
            try tree.add("usr/bin/sh", .symlink(target: "busybox"))
        }
        if let cluster = spec.cluster {
            try addCluster(cluster, spec: spec, to: &tree)
        }
        let info = "kernel=\(spec.kernelVersion)\ncompression=\(spec.compression.rawValue)\nmodules=\(modules.modules.count)\n"
        try tree.add("etc/ssi/image", .data(Array(info.utf8), permissions: 0o644))

        let packed = spec.compression == .zstd ? spec.binaryArchive : nil
        let bytes = try writeAtomically(tree, spec: spec, output: output, mode: imageMode(spec), appending: packed)
        return ImageReport(output: output, compression: spec.compression, bytes: bytes,
                           uncompressedBytes: tree.payloadBytes, entries: tree.nodes.count,
                           modules: modules.modules.count, builtinRequested: modules.builtin,
                           firmware: modules.firmware.count, missingFirmware: modules.missingFirmware,
                           holdsSecrets: spec.cluster?.holdsSecrets == true, packedBinary: packed,
                           seconds: Process.now() - started)
    }

    /// Images without secrets are world-readable like the distro's own;
    /// one that holds a secret is root's alone.
    static func imageMode(_ spec: ImageSpec) -> mode_t {
        spec.cluster?.holdsSecrets == true ? 0o600 : 0o644
    }

    static func addCluster(_ cluster: ClusterPayload, spec: ImageSpec, to tree: inout ImageTree) throws(SSIError) {
        // The daemons' closure, computed on its own so it can be listed.
        var closure = try HostInstaller(tree: ImageTree())
        try closure.install(spec.ssiBinary, as: "usr/bin/ssi", permissions: 0o755)
        try closure.installLoaded(ImageSpec.agentLibraries.map(\.soname), by: spec.ssiBinary)
        var main = try HostInstaller(tree: tree)
        try main.installLoaded(ImageSpec.clusterLibraries.map(\.soname), by: spec.ssiBinary)
        for daemon in cluster.daemons {
            try closure.install(daemon)
            try main.install(daemon)
        }
        tree = main.tree
        var listed: [String] = []
        for (path, node) in closure.tree.nodes {
            switch node {
            case .hostFile, .symlink: listed.append(path)
            default: break
            }
        }
        var files = cluster.files
        if let key = cluster.authkey { files["etc/corosync/authkey"] = (key, 0o400) }
        for (path, f) in files {
            try tree.add(path, .data(f.bytes, permissions: cluster.permissions(of: path, f.permissions)))
            listed.append(ImageTree.normalize(path))
        }
        // An image without the key (served, or with the key sealed):
        // ssi-init receives or opens it before the daemons' root is made,
        // and copies it there too.
        if cluster.authkey == nil { listed.append("etc/corosync/authkey") }
        listed += cluster.atBoot.map(ImageTree.normalize)
        for (path, target) in cluster.links where tree.node(path) == nil {
            try tree.add(path, .symlink(target: target))
            listed.append(ImageTree.normalize(path))
        }
        // The merged-/usr links are made by ssi-init, not copied.
        listed = listed.filter { HostInstaller.mergedUsrLinks[$0] == nil }.sorted()
        try tree.add("etc/ssi/agents.list", .data(Array(listed.map { $0 + "\n" }.joined().utf8), permissions: 0o644))
    }

    /// The directories and nodes every image has before anything is added.
    static func skeleton(_ spec: ImageSpec) throws(SSIError) -> ImageTree {
        var tree = ImageTree()
        for d in ["dev", "proc", "sys", "run", "tmp", "sysroot", "etc/ssi", "root", "var"] {
            try tree.add(d, .directory(permissions: d == "tmp" ? 0o1777 : (d == "root" ? 0o700 : 0o755)))
        }
        // The kernel opens /dev/console for PID 1 before devtmpfs exists.
        try tree.add("dev/console", .characterDevice(permissions: 0o600, major: 5, minor: 1))
        try tree.add("dev/null", .characterDevice(permissions: 0o666, major: 1, minor: 3))
        return tree
    }

    /// `appending`: the packed binary's archive, which then follows the
    /// main archive in place of its usr/bin/ssi.
    static func writeAtomically(_ tree: ImageTree, spec: ImageSpec, output: String, mode: mode_t,
                                appending packed: String? = nil) throws(SSIError) -> Int {
        // Images without secrets are world-readable like the distro's own;
        // one that holds the cluster key is not.
        let target: AtomicFile
        do throws(SystemCallError) { target = try AtomicFile(output, mode: mode, replace: true) } catch {
            throw SSIError("mkinitrd", "cannot write \(output): \(error.description)", hint: "choose a writable place with -o")
        }
        let file = FileSink(fd: target.fd, name: target.temporaryPath)
        let compressed = try spec.compression.sink(into: file, level: spec.compressionLevel, threads: spec.threads)
        let sink = BufferedSink(compressed)
        let cpio = CpioWriter(sink: sink, mtime: spec.mtime)
        try stream(tree, into: cpio, skipping: packed == nil ? nil : "usr/bin/ssi")
        try cpio.finish()
        try sink.finish()
        if let packed { try copy(packed, to: file) }
        do throws(SystemCallError) { try target.commit() } catch {
            throw SSIError("mkinitrd", "cannot write \(output): \(error.description)")
        }
        return file.bytesWritten
    }

    /// Appends a file's bytes as they are (the packed binary's archive).
    static func copy(_ path: String, to sink: any ByteSink) throws(SSIError) {
        let file: Descriptor
        do throws(SystemCallError) { file = try Descriptor(open: path, O_RDONLY | O_NOCTTY) } catch {
            throw SSIError("mkinitrd", "cannot read \(printableName(path)): \(errnoDescription(error.errno))")
        }
        let fd = file.rawValue
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n: Int
            do throws(SystemCallError) {
                n = try syscall("read") { buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            } catch {
                throw SSIError("mkinitrd", "cannot read \(printableName(path)): \(errnoDescription(error.errno))")
            }
            if n == 0 { return }
            try sink.write(Array(buffer[0..<n]))
        }
    }

    /// Writes the tree in its archive order, streaming host files in chunks;
    /// `skipping` is left out (it comes in an archive of its own).
    public static func stream(_ tree: ImageTree, into cpio: CpioWriter, skipping: String? = nil) throws(SSIError) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for path in tree.archiveOrder where path != skipping {
            switch tree.nodes[path]! {
            case .directory(let perm):
                try cpio.directory(path, permissions: perm)
            case .symlink(let target):
                try cpio.symlink(path, target: target)
            case .characterDevice(let perm, let major, let minor):
                try cpio.characterDevice(path, permissions: perm, major: major, minor: minor)
            case .data(let bytes, let perm):
                try cpio.file(path, permissions: perm, contents: bytes)
            case .hostFile(let source, let perm, let size):
                try cpio.file(path, permissions: perm, size: size) { (sink) throws(SSIError) -> Int in
                    // O_NONBLOCK: a file replaced by a FIFO since it was
                    // resolved must not hang the build; it is refused below.
                    let file: Descriptor
                    do throws(SystemCallError) { file = try Descriptor(open: source, O_RDONLY | O_NONBLOCK | O_NOCTTY) } catch {
                        throw SSIError("mkinitrd", "cannot read \(printableName(source)): \(errnoDescription(error.errno))")
                    }
                    let fd = file.rawValue
                    guard (try? FileSystem.fstatus(fd).kind) == .regular else {
                        throw SSIError("mkinitrd", "\(printableName(source)) is no longer a regular file",
                                       hint: "run again when nothing is replacing it")
                    }
                    var total = 0
                    while total < size {
                        let want = min(buffer.count, size - total)
                        let n: Int
                        do throws(SystemCallError) {
                            n = try syscall("read") { buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) } }
                        } catch {
                            throw SSIError("mkinitrd", "cannot read \(printableName(source)): \(errnoDescription(error.errno))")
                        }
                        if n == 0 { break }
                        let failure = buffer.withUnsafeBytes { raw -> SSIError? in
                            do throws(SSIError) {
                                try sink.write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                                return nil
                            } catch { return error }
                        }
                        if let failure { throw failure }
                        total += n
                    }
                    return total
                }
            }
        }
    }
}
