#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIInitramfs
import SSIConfig
import SSITrust
import SSIClusterFS
import SSIMembership
import SSITools

struct MkinitrdCommand {
    static let command = CLICommand(
        "mkinitrd",
        abstract: "Build the initramfs that brings a node into the cluster.",
        discussion: """
            The image holds ssi (as /init), the kernel modules asked for with their \
            dependency closure and firmware, text indexes for them (depmod's format), busybox for the \
            emergency shell when it is installed, and any --install'ed programs with \
            their shared libraries. Builds are reproducible: the same inputs give \
            byte-identical images (SOURCE_DATE_EPOCH sets the timestamps, else 0).
            """,
        options: [
            .value("output", short: "o", "file", help: "Where to write the image."),
            .value("kver", short: "k", "version", help: "Kernel version (default: the running kernel)."),
            .value("kmoddir", "dir", help: "Kernel module directory (default: /lib/modules/VERSION)."),
            .repeated("add-modules", "a,b", help: "Modules or aliases to add, comma separated; repeatable."),
            .repeated("force-modules", "a,b", help: "Modules to carry and always load at boot, comma separated; repeatable."),
            .flag("no-default-modules", help: "Carry only the modules named with --add-modules and --force-modules."),
            .repeated("install", "path", help: "Host programs or files to add, with their shared libraries.", upToNextOption: true),
            .value("config", "file", help: "Cluster configuration: the image joins that cluster at boot (corosync, key, agents)."),
            .value("authkey", "file", help: "The cluster key to carry (default: the config's [cluster] authkey); a --netboot image carries none."),
            .value("compress", "method", help: "zstd, gzip, xz or none.", default: Self.defaultCompression),
            .integer("compress-level", "n", as: Int32.self, help: "Compression level (default: per method)."),
            .integer("threads", "n", as: Int.self, help: "Compression threads (default: the CPUs online)."),
            .value("ssi-binary", "file", help: "The ssi binary to use as /init (default: this one)."),
            .value("busybox", "file", help: "busybox for the emergency shell (default: /usr/bin/busybox if installed)."),
            .flag("no-busybox", help: "No emergency shell in the image."),
            .flag("force", help: "Replace an existing output file."),
            .flag("quiet", short: "q", help: "Print nothing but errors."),
            .value("netboot", "dir", help: "Write what the CFS init node serves to network-booting nodes into this folder (needs --config): the image, the kernel, iPXE's boot script and dnsmasq's DHCP hosts; a running ssi-netboot dnsmasq re-reads them; on the running init node, new nodes' private copies are seeded from its disk. The image holds no secret: diskless nodes prove their identity to the init node's key server for the cluster key."),
            .value("kernel-image", "file", help: "The kernel --netboot serves (default: /boot/vmlinuz-VERSION)."),
            .value("list", "image", help: "List the contents of an image (any generator's) and exit."),
            .flag("pack-binary", help: "Pack this ssi binary (or --ssi-binary) once, at zstd level 19, into an archive in DIR/../lib/ssi/ for a binary in DIR (the package ships /usr/lib/ssi/ssi-BUILDID-SIZE.cpio.zst), and exit. zstd images of that binary then append the archive instead of compressing it again: smaller images, faster builds."),
            .flag("update", short: "u", help: "(Re)build the ssi image /boot/ssi-initrd.img-VERSION of the kernel given with -k (-k all: every kernel under /lib/modules; default: the running kernel), with /etc/ssi/cluster.conf when it exists (the Debian package's kernel hooks run this)."),
        ]) { try MkinitrdCommand($0).run() }

    static let defaultCompression = "zstd"

    var output: String?
    var kver: String?
    var kmoddir: String?
    var addModules: [String]
    var forceModules: [String]
    var noDefaultModules: Bool
    var installs: [String]
    var config: String?
    var authkey: String?
    var compress: String
    var compressLevel: Int32?
    var threads: Int?
    var ssiBinary: String?
    var busybox: String?
    var noBusybox: Bool
    var force: Bool
    var quiet: Bool
    var netboot: String?
    var kernelImage: String?
    var listImage: String?
    var update: Bool
    var packBinary: Bool

    init(_ v: CLIValues) {
        output = v.string("output")
        kver = v.string("kver")
        kmoddir = v.string("kmoddir")
        addModules = v.strings("add-modules")
        forceModules = v.strings("force-modules")
        noDefaultModules = v.flag("no-default-modules")
        installs = v.strings("install")
        config = v.string("config")
        authkey = v.string("authkey")
        compress = v.string("compress") ?? Self.defaultCompression
        compressLevel = v.integer("compress-level")
        threads = v.integer("threads")
        ssiBinary = v.string("ssi-binary")
        busybox = v.string("busybox")
        noBusybox = v.flag("no-busybox")
        force = v.flag("force")
        quiet = v.flag("quiet")
        netboot = v.string("netboot")
        kernelImage = v.string("kernel-image")
        listImage = v.string("list")
        update = v.flag("update")
        packBinary = v.flag("pack-binary")
    }

    func run() throws {
        do {
            if let listImage {
                try list(listImage)
                return
            }
            if update {
                try updateImages()
                return
            }
            if packBinary {
                try pack()
                return
            }
            try build()
        } catch {
            printError(tool: "ssi-mkinitrd", error)
            throw ExitCode(1)
        }
    }

    func build() throws(SSIError) {
        let kernel = kver ?? Process.kernelRelease()
        let moduleDir = kmoddir ?? "/lib/modules/\(kernel)"
        guard FileSystem.isDirectory(moduleDir) else {
            let installed = (try? FileSystem.list("/lib/modules"))?.sorted() ?? []
            throw SSIError("mkinitrd", "kernel module directory \(moduleDir) not found",
                           hint: installed.isEmpty
                               ? "install a kernel (linux-image-amd64) or pass --kmoddir"
                               : "pass --kver with one of: \(installed.joined(separator: ", "))")
        }
        guard let method = Compression(rawValue: compress) else {
            throw SSIError("mkinitrd", "--compress \(compress): unknown method",
                           hint: "use one of: \(Compression.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        func names(_ lists: [String]) -> [String] {
            lists.flatMap { $0.split(separator: ",").map { String($0).trimmed() } }.filter { !$0.isEmpty }
        }
        var modules = noDefaultModules ? [] : ImageSpec.defaultModules
        for m in names(addModules) where !modules.contains(m) { modules.append(m) }

        let binary = try binaryPath()
        var spec = ImageSpec(kernelVersion: kernel, moduleDirectory: moduleDir, modules: modules, ssiBinary: binary)
        spec.binaryArchive = BinaryArchive.find(for: binary)
        spec.loadAtBoot = names(forceModules)
        spec.installs = installs.flatMap { $0.split(separator: " ").map(String.init) }
        spec.compression = method
        spec.compressionLevel = compressLevel
        spec.threads = threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if !noBusybox {
            if let busybox {
                guard FileSystem.isExecutableFile(busybox) else {
                    throw SSIError("mkinitrd", "--busybox \(busybox) is not an executable file")
                }
                spec.busybox = busybox
            } else {
                spec.busybox = ["/usr/bin/busybox", "/bin/busybox"].first(where: FileSystem.isExecutableFile)
            }
        }
        spec.mtime = try Self.sourceDateEpoch()
        var cluster: ClusterConfig? = nil
        if let config {
            let cfg = try ClusterConfig.load(path: config)
            cluster = cfg
            spec.cluster = try clusterPayload(cfg, path: config, served: netboot != nil)
            // The CFS init node's kernel NFS server: ssi-init loads it before
            // the hand-off, so the root need not carry the modules.
            if case .cfs = cfg.root, !spec.modules.contains("nfsd") {
                spec.modules.append("nfsd")
            }
            // [tunnel]: ssi-init brings WireGuard up before corosync.
            if cfg.tunnel != nil, !spec.modules.contains("wireguard") {
                spec.modules.append("wireguard")
            }
            // A served image's node, or one that opens its sealed key, may
            // take its identity from its TPM: the drivers, where the kernel
            // has them as modules (Debian's are built in; the coldplug
            // loads a module by its ACPI alias).
            if netboot != nil || spec.cluster?.authkey == nil {
                for driver in ["tpm_tis", "tpm_crb"] where !spec.modules.contains(driver) { spec.modules.append(driver) }
            }
        } else if authkey != nil {
            throw SSIError("mkinitrd", "--authkey needs --config", hint: "the key belongs to a cluster configuration")
        }
        var out = output ?? "/boot/initrd.img-\(kernel)"
        var netbootFiles: NetbootWriter? = nil
        if let netboot {
            guard let cfg = cluster else {
                throw SSIError("mkinitrd", "--netboot needs --config", hint: "the network-booted nodes join the cluster it describes")
            }
            guard output == nil else {
                throw SSIError("mkinitrd", "--netboot writes \(netboot)/\(CFSFiles.imageName); drop -o")
            }
            let writer = try NetbootWriter(directory: netboot, config: cfg,
                                           kernelImage: kernelImage ?? "/boot/vmlinuz-\(kernel)")
            out = writer.imagePath
            netbootFiles = writer
        } else if kernelImage != nil {
            throw SSIError("mkinitrd", "--kernel-image is for --netboot")
        }
        let report = try ImageBuilder.build(spec, output: out, force: force || netbootFiles != nil)
        if let netbootFiles {
            let notes = try netbootFiles.finish(holdsSecrets: report.holdsSecrets)
            if !quiet { for n in notes { print("  " + n) } }
            if let cfg = cluster, let seeded = try seedPrivateCopiesOnInitNode(cfg), !quiet, !seeded.isEmpty {
                print("  seeded the private copies of nodes added since this init node booted: \(seeded.joined(separator: " "))")
            }
        }
        if !quiet {
            print(summary(report))
            if !report.builtinRequested.isEmpty {
                print("  built into \(kernel), nothing to carry: \(report.builtinRequested.joined(separator: ", "))")
            }
            // A netboot image's mode was said above (0640 for dnsmasq's TFTP,
            // or why not): one line about one file.
            if report.holdsSecrets && netbootFiles == nil {
                print("  the image holds the cluster key and the configuration's secrets: written mode 0600, keep it that way")
            }
            if !report.missingFirmware.isEmpty {
                print("  firmware declared but not installed on this host (\(report.missingFirmware.count)): "
                      + report.missingFirmware.prefix(5).joined(separator: ", ")
                      + (report.missingFirmware.count > 5 ? ", ..." : ""))
            }
        }
    }

    /// On the running CFS init node (its cluster view says so), the private
    /// copies of the other nodes that do not exist yet, from its local
    /// disk, as ssi-init does at the init node's boot: a node added to the
    /// configuration since then would otherwise copy them over the network
    /// at its first boot (a Debian /var is 125 MB: minutes through the
    /// tunnel under TCG). nil when this is not the running init node.
    func seedPrivateCopiesOnInitNode(_ cfg: ClusterConfig) throws(SSIError) -> [String]? {
        guard case .cfs(let cfs) = cfg.root, let view = try? ClusterView.load(), view.localNode == UInt32(cfs.server) else { return nil }
        return try NodePrivatePaths.seedOthers(cfg, server: cfs.server, root: "")
    }

    /// -u: the image of each selected kernel, at its fixed path, replaced;
    /// a kernel that fails does not stop the others, and each failure
    /// names its kernel.
    func updateImages() throws(SSIError) {
        let conflicts = [("-o/--output", output != nil), ("--netboot", netboot != nil),
                         ("--kernel-image", kernelImage != nil), ("--kmoddir", kmoddir != nil)]
        for (flag, given) in conflicts where given {
            throw SSIError("mkinitrd", "-u writes \(ImageUpdate.imagePath(kernel: "VERSION")) for each kernel; \(flag) does not go with it",
                           hint: "drop \(flag), or build without -u")
        }
        let kernels = try ImageUpdate.kernels(for: kver, running: Process.kernelRelease())
        let configPath = config ?? (FileSystem.exists(ClusterConfig.defaultPath) ? ClusterConfig.defaultPath : nil)
        var failed: [String] = []
        for kernel in kernels {
            var one = self
            one.update = false
            one.kver = kernel
            one.output = ImageUpdate.imagePath(kernel: kernel)
            one.force = true
            one.config = configPath
            do {
                try one.build()
            } catch {
                printError(tool: "ssi-mkinitrd", SSIError(error.step, "-u: kernel \(kernel): \(error.message)", hint: error.hint))
                failed.append(kernel)
            }
        }
        guard failed.isEmpty else {
            throw SSIError("mkinitrd", "-u: no new image for kernel \(failed.joined(separator: ", ")) (the errors above say why)",
                           hint: "fix what they name, then run ssi-mkinitrd -u -k \(failed.count == 1 ? failed[0] : "all")")
        }
    }

    /// corosync and what it loads at run time, its configuration generated
    /// from the cluster configuration (refused, with every problem listed,
    /// when invalid), and the key.
    ///
    /// A served image (`served`, --netboot) holds no secret: no key (a
    /// node proves its identity to the init node's key server and receives
    /// it at boot) and no fence credentials; it carries the enrolled
    /// identities (public), so that a node can check the init node's answer.
    func clusterPayload(_ cfg: ClusterConfig, path: String, served: Bool) throws(SSIError) -> ClusterPayload {
        var key: [UInt8]? = nil
        var sealed: SealedKeys? = nil
        if served {
            if authkey != nil {
                throw SSIError("mkinitrd", "--authkey does not go with --netboot: a served image holds no key",
                               hint: "diskless nodes receive the key from the init node's key server after proving their identity")
            }
            if cfg.holdsFenceCredentials {
                throw SSIError("mkinitrd", "\(cfg.file): a served image would carry [fence]'s credentials (fence passwords), and "
                               + "anyone on the cluster network can fetch it",
                               hint: "a CFS root does not fence: remove [fence] and fence_args from the configuration the init node serves, "
                               + "or write its passwords as key=@NAME, their values in [fence] secrets' file")
            }
            guard FileSystem.exists(cfg.identity.known) else {
                throw SSIError("mkinitrd", "\(cfg.identity.known) does not exist: a node booted from the served image checks the "
                               + "init node's identity there before it takes the cluster key",
                               hint: "ssi cluster node key new -o \(cfg.identity.key); ssi cluster node enroll \(cfg.cfsServer?.name ?? "NAME") --key \(cfg.identity.key)")
            }
        } else if authkey == nil, FileSystem.exists(cfg.identity.sealed) {
            // The key sealed to the enrolled identities, not the key: the
            // node opens its own line at boot (DESIGN-NOTES.md, "Keys at rest").
            sealed = try checkedSealedKeys(cfg)
        } else {
            key = try AuthKey.read(path: authkey ?? cfg.cluster.authkey)
        }
        let corosync = "/usr/sbin/corosync"
        guard FileSystem.isExecutableFile(corosync) else {
            throw SSIError("mkinitrd", "\(corosync) is not installed", hint: "apt-get install corosync")
        }
        // knet loads its crypto backend with dlopen: no ELF reference
        // leads to it, so it is named here.
        var daemons = [corosync]
        let plugins = ["/usr/lib/x86_64-linux-gnu/kronosnet", "/usr/lib/kronosnet", "/usr/lib64/kronosnet"]
            .map { $0 + "/crypto_openssl.so" }.filter(FileSystem.exists)
        guard let plugin = plugins.first else {
            throw SSIError("mkinitrd", "knet's crypto_openssl.so plugin was not found",
                           hint: "apt-get install libknet1 (it comes with corosync)")
        }
        daemons.append(plugin)
        // glibc opens libgcc_s with dlopen when a thread exits
        // (pthread_exit unwinds with it): without it corosync's clean
        // exit aborted ("libgcc_s.so.1 must be installed for pthread_exit
        // to work"), seen when the power-off hook stopped it.
        let libgcc = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64"]
            .map { $0 + "/libgcc_s.so.1" }.filter(FileSystem.exists)
        guard let gcc = libgcc.first else {
            throw SSIError("mkinitrd", "libgcc_s.so.1 was not found", hint: "apt-get install libgcc-s1")
        }
        daemons.append(gcc)
        // Configured agents: their programs and files join the daemons'.
        for agent in cfg.agents {
            for path in [agent.command[0]] + agent.files where !daemons.contains(path) {
                guard FileSystem.exists(path) else {
                    throw SSIError("mkinitrd", "\(cfg.file):\(agent.line): agent \(agent.name): \(path) is not on this machine",
                                   hint: "install it, or fix the [[agent]] entry")
                }
                daemons.append(path)
            }
        }
        // The configuration's own reader: bounded, like the parse that
        // just read it (a file that grew since is refused, not followed).
        let text = try ConfigFiles.readBytes(path, what: "cluster config")
        var files: [String: (bytes: [UInt8], permissions: UInt32)] = [
            "etc/corosync/corosync.conf": (Array(cfg.corosyncConf(keyfile: "/etc/corosync/authkey").utf8), 0o644),
            // Root's only: it holds the fence agents' passwords ([fence]
            // args, fence_args) and names the key; nothing that is not
            // root reads the image's copy.
            "etc/ssi/cluster.conf": (text, served || (key == nil && !cfg.holdsFenceCredentials) ? 0o644 : 0o600),
        ]
        if let sealed {
            files[String(cfg.identity.sealed.dropFirst())] = (Array(sealed.text.utf8), 0o644)
        }
        if FileSystem.exists(cfg.identity.known) {
            let known = try KnownIdentities.load(cfg.identity.known)
            files[String(cfg.identity.known.dropFirst())] = (Array(known.text.utf8), 0o644)
        } else if cfg.tunnel != nil {
            throw SSIError("mkinitrd", "\(cfg.identity.known) does not exist: with [tunnel], a node's peers are the enrolled identities",
                           hint: "ssi cluster node key new -o \(cfg.identity.key); ssi cluster node enroll \(cfg.cfsServer?.name ?? "NAME") --key \(cfg.identity.key)")
        }
        // The CFS init node keeps its node key in a file on its disk: with
        // [tunnel] (its tunnel key) or a sealed cluster key (what opens
        // it), needed before the root is mounted, so its own image carries
        // it. A served image never does; nor does a gfs2 image, which every
        // node boots: there each node's key is its own (its line,
        // [identity] device, its TPM).
        if case .cfs = cfg.root, cfg.tunnel != nil || sealed != nil, !served, FileSystem.exists(cfg.identity.key) {
            guard case .key(let nodeKey) = try NodeKeyFile.read(cfg.identity.key) else {
                throw SSIError("mkinitrd", "\(cfg.identity.key) holds no node key, and the init node's image needs it",
                               hint: "ssi cluster node key new -o \(cfg.identity.key), then enroll it (ssi cluster node enroll NAME --key \(cfg.identity.key))")
            }
            files[String(cfg.identity.key.dropFirst())] = (Array(NodeKeyFile.text(nodeKey).utf8), 0o400)
        }
        var links: [String: String] = [:]
        if case .gfs2 = cfg.root {
            try addDLM(cfg, daemons: &daemons, files: &files, links: &links)
        }
        // [fence] arguments written @NAME: their values come with the key,
        // sealed with it, or, in an image that carries the key itself,
        // beside it (root's alone).
        var atBoot: [String] = []
        if let fence = cfg.fence, !cfg.fenceSecretNames.isEmpty {
            if key == nil {
                atBoot.append(String(FenceSecrets.runtimePath.dropFirst()))
            } else {
                let secrets = try FenceSecrets.load(fence.secrets)
                _ = try cfg.dlmConf(secrets: secrets, source: fence.secrets)
                files[String(FenceSecrets.runtimePath.dropFirst())] = (Array(secrets.text.utf8), 0o400)
            }
        }
        return ClusterPayload(daemons: daemons, files: files, authkey: key, links: links,
                              configIsPublic: served || (key == nil && !cfg.holdsFenceCredentials), atBoot: atBoot)
    }

    /// The sealed keys an image for nodes with a disk carries, checked
    /// against the enrolled identities: a line sealed to an identity that
    /// was replaced since would stop that node's boot, so it is refused
    /// here; a configured node without a line is named (it cannot boot
    /// this image until it is enrolled and the key sealed again).
    func checkedSealedKeys(_ cfg: ClusterConfig) throws(SSIError) -> SealedKeys {
        let sealed = try SealedKeys.load(cfg.identity.sealed)
        let known = try KnownIdentities.load(cfg.identity.known)
        for box in sealed.boxes {
            guard let enrolled = known.identity(of: box.name) else {
                throw SSIError("mkinitrd", "\(cfg.identity.sealed) line \(box.line): \(box.name) is no longer enrolled in \(cfg.identity.known), "
                               + "but the cluster key is still sealed to it",
                               hint: "seal it again for the enrolled nodes: ssi cluster key seal --config \(cfg.file)")
            }
            guard enrolled.fingerprint == box.fingerprint else {
                throw SSIError("mkinitrd", "\(cfg.identity.sealed) line \(box.line): sealed to \(box.name) as \(box.fingerprint), "
                               + "but \(box.name) is enrolled as \(enrolled.fingerprint) now: it could not open its key",
                               hint: "seal it again: ssi cluster key seal --config \(cfg.file)")
            }
        }
        // Diskless nodes get the key from the key server: no line needed.
        let without = cfg.nodes.filter { $0.role != .diskless && sealed.box(of: $0.name) == nil }.map(\.name)
        if !without.isEmpty && !quiet {
            print("  no cluster key is sealed to \(without.joined(separator: ", ")) in \(cfg.identity.sealed): "
                  + "\(without.count == 1 ? "it" : "they") cannot boot this image until enrolled and sealed (ssi cluster key seal)")
        }
        return sealed
    }

    /// A gfs2 root: dlm_controld and dlm_tool (ssi-init waits on dlm's
    /// state), the fence agent and its files, and dlm.conf. They run in
    /// the agents root, like corosync, and outlive the initramfs.
    func addDLM(_ cfg: ClusterConfig, daemons: inout [String], files: inout [String: (bytes: [UInt8], permissions: UInt32)],
                links: inout [String: String]) throws(SSIError) {
        for program in ["/usr/sbin/dlm_controld", "/usr/sbin/dlm_tool"] {
            guard FileSystem.isExecutableFile(program) else {
                throw SSIError("mkinitrd", "\(program) is not installed; a gfs2 root needs the DLM's daemon",
                               hint: "apt-get install dlm-controld")
            }
            daemons.append(program)
        }
        guard let fence = cfg.fence else {
            throw SSIError("mkinitrd", "\(cfg.file): a gfs2 root needs [fence]")
        }
        if fence.agent == ClusterConfig.Fence.builtinAgent {
            links[String(fence.agent.dropFirst())] = "../bin/ssi"
        } else {
            guard FileSystem.isExecutableFile(fence.agent) else {
                throw SSIError("mkinitrd", "\(cfg.file): [fence] agent \(fence.agent) is not an executable file on this machine",
                               hint: "install it (fence-agents has fence_ipmilan, fence_scsi, ...), or fix [fence] agent")
            }
            daemons.append(fence.agent)
        }
        for f in fence.files where !daemons.contains(f) {
            guard FileSystem.exists(f) else {
                throw SSIError("mkinitrd", "\(cfg.file): [fence] files: \(f) is not on this machine")
            }
            daemons.append(f)
        }
        // dlm.conf carries the fence agent's arguments (passwords): root's only.
        files["etc/dlm/dlm.conf"] = (Array(cfg.dlmConf().utf8), 0o600)
    }

    func summary(_ r: ImageReport) -> String {
        "ssi-mkinitrd: wrote \(r.output): \(mib(r.bytes)) \(r.compression.rawValue)"
            + " (\(mib(r.uncompressedBytes)) unpacked), \(r.entries) entries, \(r.modules) modules,"
            + " \(r.firmware) firmware files, \(String(format3(r.seconds))) s"
            + (r.packedBinary.map { "; ssi from its packed archive \($0)" } ?? "")
    }

    /// The binary that becomes /init: --ssi-binary, else this one.
    func binaryPath() throws(SSIError) -> String {
        if let ssiBinary, !ssiBinary.isEmpty { return ssiBinary }
        return try FileSystem.realPathOrThrow("/proc/self/exe")
    }

    /// Every entry's timestamp: SOURCE_DATE_EPOCH, else 0.
    static func sourceDateEpoch() throws(SSIError) -> UInt32 {
        guard let epoch = getenv("SOURCE_DATE_EPOCH") else { return 0 }
        let text = String(cString: epoch)
        guard let v = UInt32(text) else {
            throw SSIError("mkinitrd", "SOURCE_DATE_EPOCH=\(text) is not a number of seconds")
        }
        return v
    }

    /// --pack-binary.
    func pack() throws(SSIError) {
        let binary = try binaryPath()
        guard FileSystem.isExecutableFile(binary) else {
            throw SSIError("mkinitrd", "--ssi-binary \(binary) is not an executable file")
        }
        let mtime = try Self.sourceDateEpoch()
        if let path = BinaryArchive.find(for: binary) {
            if !quiet { print("ssi-mkinitrd: \(binary) is packed already: \(path)") }
            return
        }
        let started = Process.now()
        let path = try BinaryArchive.pack(binary, threads: threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), mtime: mtime)
        if !quiet {
            let size = (try? FileSystem.status(path).size) ?? 0
            print("ssi-mkinitrd: packed \(binary) into \(path): \(mib(size)) zstd level \(BinaryArchive.level), \(String(format3(Process.now() - started))) s")
        }
    }

    /// Streams the listing: lines are printed as entries are read, and an
    /// error after some of them still exits 1 (a truncated image lists
    /// what it has, then says where it ends).
    func list(_ path: String) throws(SSIError) {
        try ImageReader.list(path: path) { line in print(line, terminator: "") }
    }
}

/// "ssi-mkinitrd: modules: unknown module ..."; the step is left out when
/// it only repeats the tool's name.
func printError(tool: String, _ e: SSIError) {
    let text = e.step == "mkinitrd" ? String(e.description.dropFirst(e.step.count + 2)) : e.description
    // Several problems (a configuration check): each FILE:LINE on a line
    // of its own, under one line that says what refused them.
    if text.contains("\n") {
        let step = e.step == "mkinitrd" ? "" : "\(e.step): "
        writeAll(2, "\(tool): \(step)refused:\n" + String(text.dropFirst(step.count)) + "\n")
        return
    }
    writeAll(2, "\(tool): \(text)\n")
}

func mib(_ bytes: Int) -> String {
    format3(Double(bytes) / 1048576.0, digits: 1) + " MiB"
}

func format3(_ v: Double, digits: Int = 2) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (v * scale).rounded() / scale
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    }
    return s
}

extension String {
    func trimmed() -> String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

extension FileSystem {
    static func realPathOrThrow(_ path: String) throws(SSIError) -> String {
        do { return try realPath(path) } catch { throw SSIError("mkinitrd", error.description) }
    }
}
