import Foundation
import Testing
import SSICore
import SSILinux
import SSITestSupport
@testable import SSIInitramfs

/// The libraries ssi opens with dlopen (CSSILazy): the names it asks for
/// are the ones the headers it compiled against belong to, the binary does
/// not link them, the package depends on them by name, and images carry
/// them.
@Suite struct LazyLibraryTests {
    static let libraryDirectory = "/usr/lib/x86_64-linux-gnu"

    @Test("each soname is the DT_SONAME of the -dev package's library we compile against",
          arguments: LazyLibrary.allCases)
    func sonameMatchesTheDevelopmentLibrary(_ library: LazyLibrary) throws {
        // libkmod.so.2 -> libkmod.so: the link the -dev package ships.
        let dev = Self.libraryDirectory + "/" + library.soname.prefix { $0 != "." } + ".so"
        #expect(FileManager.default.fileExists(atPath: dev), "\(dev): its -dev package is a build dependency")
        let info = try #require(try ELF.read(try FileSystem.realPath(dev)))
        #expect(info.soname == library.soname, "\(dev) is \(info.soname ?? "(no DT_SONAME)"); ssi_lazy.c asks for \(library.soname)")
    }

    @Test("each loads, and is then marked loaded", arguments: LazyLibrary.allCases)
    func loads(_ library: LazyLibrary) throws {
        try library.load()
        #expect(library.isLoaded)
        try library.load()   // a second time is a no-op
    }

    @Test("the ssi binary links none of them, so a local command loads none",
          .enabled(if: BuiltBinary.ssi != nil, "no ssi binary: set SSI_BIN or run swift build first"))
    func binaryDoesNotLinkThem() throws {
        let info = try #require(try ELF.read(BuiltBinary.ssi!))
        #expect(info.needed.contains("libblkid.so.1"), "the check reads the right file: \(info.needed)")
        for library in LazyLibrary.allCases {
            #expect(!info.needed.contains(library.soname), "\(library.soname) is linked: \(info.needed)")
        }
    }

    @Test("debian/control depends on each library's package by name (dpkg-shlibdeps cannot see a dlopen)")
    func packageDependsOnThem() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let control = try String(contentsOf: root.appendingPathComponent("debian/control"), encoding: .utf8)
        let binary = try #require(control.range(of: "\nPackage: ssi\n")).upperBound
        let stanza = control[binary...]
        let depends = try #require(stanza.split(separator: "\n", omittingEmptySubsequences: false)
            .drop { !$0.hasPrefix("Depends:") }
            .prefix { $0.hasPrefix("Depends:") || $0.hasPrefix(" ") }
            .joined(separator: " ") as String?)
        for library in LazyLibrary.allCases {
            #expect(depends.contains(" \(library.package),") || depends.hasSuffix(" \(library.package)"),
                    "\(library.package) missing from: \(depends)")
        }
    }

    /// Runs `script` with sh in a private mount namespace (its bind
    /// mounts over the host's libraries go with it); its stdout and stderr.
    static func inPrivateMountNamespace(_ script: String) throws -> (stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-m", "--propagation", "private", "sh", "-c", script]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read before waiting: a full pipe would hold the script up.
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (stdout, stderr)
    }

    @Test("a library that cannot be loaded is an error naming it and its package; commands that do not need it run",
          .enabled(if: BuiltBinary.ssi != nil && getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
                   "needs root, unshare and a built ssi"))
    func missingLibraryIsNamed() throws {
        // In a private mount namespace, /dev/null over libcpg: dlopen fails
        // the way it does for a removed or broken package.
        let ssi = BuiltBinary.ssi!
        let gz = NSTemporaryDirectory() + "ssi-lazy-\(getpid()).gz"
        defer { try? FileManager.default.removeItem(atPath: gz) }
        let script = "echo x | gzip > \(gz) && "
            + "mount --bind /dev/null \(Self.libraryDirectory)/libcpg.so.4 && mount --bind /dev/null \(Self.libraryDirectory)/libz.so.1 && "
            + "\(ssi) mount -V; echo \"mount=$?\"; \(ssi) cluster status; echo \"status=$?\"; "
            + "\(ssi) mkinitrd --list \(gz); echo \"list=$?\""
        let (stdout, stderr) = try Self.inPrivateMountNamespace(script)
        #expect(stdout.contains("ssi-mount from ssi") && stdout.contains("mount=0"), "mount needs no corosync: \(stdout) \(stderr)")
        #expect(stderr.contains("cannot load libcpg.so.4") && stderr.contains("install the package libcpg4"), "\(stderr)")
        #expect(stdout.contains("status=1"), "an error exit, not a signal: \(stdout)")
        // A decompressor whose init threw ends nothing on its way out.
        #expect(stderr.contains("cannot load libz.so.1") && stderr.contains("install the package zlib1g"), "\(stderr)")
        #expect(stdout.contains("list=1"), "an error exit, not 127 from a stub: \(stdout)")
    }

    @Test("without libmount, mount says so and exits 2, and fsck -A stops naming it instead of reading no fstab",
          .enabled(if: BuiltBinary.ssi != nil && getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
                   "needs root, unshare and a built ssi"))
    func missingLibMountIsNamed() throws {
        let ssi = BuiltBinary.ssi!
        let dir = NSTemporaryDirectory() + "ssi-nomount-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = "mount --bind /dev/null \(Self.libraryDirectory)/libmount.so.1 && "
            + "\(ssi) mount -t tmpfs t \(dir); echo \"mount=$?\"; "
            + "FSTAB_FILE=/etc/fstab \(ssi) fsck -A -N; echo \"fsck=$?\""
        let (stdout, stderr) = try Self.inPrivateMountNamespace(script)
        #expect(stdout.contains("mount=2"), "mount's system-error exit: \(stdout) \(stderr)")
        #expect(stderr.contains("cannot load libmount.so.1") && stderr.contains("libmount1"), "\(stderr)")
        #expect(stdout.contains("fsck=127") && !stderr.contains("failed to parse fstab"), "\(stdout) \(stderr)")
        #expect(stderr.contains("libmount.so.1") && stderr.contains("install the package libmount1"), "\(stderr)")
    }

    @Test("a cluster image carries corosync's client libraries and libsodium, and lists them for the daemons' root")
    func clusterImageCarriesThem() throws {
        var spec = ImageSpec(kernelVersion: "0", moduleDirectory: "/nonexistent", modules: [], ssiBinary: "/bin/true")
        let payload = ClusterPayload(daemons: [], files: [:], authkey: nil)
        spec.cluster = payload
        var tree = ImageTree()
        try ImageBuilder.addCluster(payload, spec: spec, to: &tree)
        let list = String(decoding: try #require(Self.data(tree.node("etc/ssi/agents.list"))), as: UTF8.self)
        for library in ImageSpec.clusterLibraries {
            let path = "usr/lib/x86_64-linux-gnu/\(library.soname)"
            #expect(tree.node(path) != nil, "\(path) in the image")
        }
        // The cluster's libraries go into the daemons' root too.
        for library in ImageSpec.agentLibraries {
            let path = "usr/lib/x86_64-linux-gnu/\(library.soname)"
            #expect(list.contains(path + "\n"), "\(path) in the daemons' root: \(list)")
        }
        // The process agent loads criu's modules without libkmod.
        #expect(!ImageSpec.agentLibraries.contains(.kmod))
        #expect(!list.contains("libkmod") && !list.contains("libcrypto"), "\(list)")
        // corosync's own dependencies come with them (libcpg -> libqb).
        #expect(list.contains("usr/lib/x86_64-linux-gnu/libqb.so.100\n"), "\(list)")
    }

    static func data(_ node: ImageTree.Node?) -> [UInt8]? {
        if case .data(let bytes, _)? = node { return bytes }
        return nil
    }
}
