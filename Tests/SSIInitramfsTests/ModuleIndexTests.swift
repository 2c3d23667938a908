import Testing
import Foundation
import SSICore
@testable import SSILinux
import SSITestSupport
@testable import SSIInitramfs

/// The image's module indexes (depmod's text format) and ssi-init's loader
/// over them: parsing, lookups as libkmod does them, the load order as
/// modprobe gives it, and the real host's files against the real modprobe.
@Suite struct ModuleIndexTests {
    static let dep = """
        kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
        kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
        kernel/drivers/virtio/virtio.ko:
        kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko
        kernel/fs/jbd2/jbd2.ko:
        kernel/lib/crc16.ko:
        kernel/crypto/crc32c_generic.ko:
        kernel/drivers/nvme/host/nvme-core.ko:

        """
    static let alias = """
        # Aliases extracted from modules themselves.
        alias virtio:d00000002v* virtio_blk
        alias fs-ext4 ext4
        alias ext3 ext4
        alias crc32c crc32c_generic
        alias pci:v*d*sv*sd*bc01sc[0-9]* nvme-core
        alias of:N*T*Cvendor,a b* virtio

        """
    static let softdep = "# Soft dependencies\nsoftdep ext4 pre: crc32c\n"
    static let builtin = "kernel/net/unix/unix.ko\nkernel/drivers/base/firmware_class.ko\n"
    static let builtinAlias = "alias fs-tmpfs tmpfs\n"

    func directory() throws -> TempDir {
        let d = TempDir()
        for (name, text) in [("modules.dep", Self.dep), ("modules.alias", Self.alias), ("modules.softdep", Self.softdep),
                             ("modules.builtin", Self.builtin), ("modules.builtin.alias", Self.builtinAlias)] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: d.file(name)))
        }
        return d
    }

    @Test func lookupsAsLibkmodDoesThem() throws {
        let dir = try directory()
        let index = try ModuleIndex.read(directory: dir.path)
        #expect(index.modules.count == 8)
        #expect(index.lookup("virtio_blk") == .modules(["virtio_blk"]))
        #expect(index.lookup("virtio-blk") == .modules(["virtio_blk"]))
        // A device's modalias against the wildcard patterns.
        #expect(index.lookup("virtio:d00000002v00001AF4") == .modules(["virtio_blk"]))
        #expect(index.lookup("virtio:d00000001v00001AF4") == .notFound)
        // '-' counts as '_' on both sides, not inside brackets.
        #expect(index.lookup("fs-ext4") == .modules(["ext4"]))
        #expect(index.lookup("fs_ext4") == .modules(["ext4"]))
        #expect(index.lookup("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01") == .modules(["nvme_core"]))
        #expect(index.lookup("pci:v00008086d00002922sv00001AF4sd00001100bc01scxxi01") == .notFound)
        // An alias with a space in it: the module is the last word.
        #expect(index.lookup("of:NxTyCvendor,a bc") == .modules(["virtio"]))
        #expect(index.lookup("unix") == .builtin)
        #expect(index.lookup("fs-tmpfs") == .builtin)
        #expect(index.lookup("no_such_module") == .notFound)
    }

    @Test func loadOrderIsModprobes() throws {
        let dir = try directory()
        let index = try ModuleIndex.read(directory: dir.path)
        // Dependencies from the end of modules.dep's list, then the module.
        #expect(index.loadOrder("virtio_blk").map(\.name) == ["virtio", "virtio_ring", "virtio_blk"])
        let allRequired = index.loadOrder("virtio_blk").allSatisfy { $0.required }
        #expect(allRequired)
        // The module's softdeps pre just before it, looked up as aliases
        // ("crc32c"); a softdep is not required.
        #expect(index.loadOrder("ext4") == [.init(name: "crc16", required: true), .init(name: "jbd2", required: true),
                                            .init(name: "crc32c_generic", required: false), .init(name: "ext4", required: true)])
        #expect(index.loadOrder("nothing") == [])
    }

    @Test func damagedIndexesNameFileAndLine() throws {
        let d = try directory()
        try Data("kernel/a.ko: \nkernel/b.ko kernel/c.ko\n".utf8).write(to: URL(fileURLWithPath: d.file("modules.dep")))
        #expect { try ModuleIndex.read(directory: d.path) } throws: { e in
            let m = (e as? SSIError)?.description ?? ""
            return m.contains(d.file("modules.dep") + ":2") && m.contains("no ':'")
        }
        try Data(Self.dep.utf8).write(to: URL(fileURLWithPath: d.file("modules.dep")))
        try Data("alias x\n".utf8).write(to: URL(fileURLWithPath: d.file("modules.alias")))
        #expect { try ModuleIndex.read(directory: d.path) } throws: { e in
            ((e as? SSIError)?.description ?? "").contains(d.file("modules.alias") + ":1")
        }
        try Data(Self.alias.utf8).write(to: URL(fileURLWithPath: d.file("modules.alias")))
        // A name before "pre:" is ignored, as kmod does (Debian 12 ships
        // "softdep cifs gcm"); a line that is no softdep is not.
        try Data("softdep cifs gcm\nsoftdep ext4 pre: crc32c\n".utf8).write(to: URL(fileURLWithPath: d.file("modules.softdep")))
        let cifs = try ModuleIndex.read(directory: d.path).softdeps["cifs"]
        #expect(cifs.map { $0.pre.isEmpty && $0.post.isEmpty } == true)
        try Data("softdep ext4 pre: crc32c\nsoftdep\n".utf8).write(to: URL(fileURLWithPath: d.file("modules.softdep")))
        #expect { try ModuleIndex.read(directory: d.path) } throws: { e in
            ((e as? SSIError)?.description ?? "").contains(d.file("modules.softdep") + ":2")
        }
        let empty = TempDir()
        #expect { try ModuleIndex.read(directory: empty.path) } throws: { e in
            let m = (e as? SSIError)?.description ?? ""
            return m.contains(empty.file("modules.dep")) && m.contains("rebuild the image")
        }
    }

    /// The loader over a fake /sys/module, with the system call recorded:
    /// what is loaded is skipped, options come from the command line, the
    /// blacklist stops aliases only, and each failure says why.
    @Test func loaderInsertsInOrderWithOptions() throws {
        let d = try directory()
        for ko in ["kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                   "kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko", "kernel/crypto/crc32c_generic.ko"] {
            try FileSystem.makeDirectories(dirname(of: d.file(ko)))
            try Data(ko.utf8).write(to: URL(fileURLWithPath: d.file(ko)))
        }
        let sys = TempDir()
        try FileSystem.makeDirectories(sys.file("virtio"))
        try Data("live\n".utf8).write(to: URL(fileURLWithPath: sys.file("virtio/initstate")))
        final class Calls: @unchecked Sendable { var list: [(String, String)] = []; var fail: [String: Int32] = [:] }
        let calls = Calls()
        func loader(_ cmdline: String) throws -> ModuleLoader {
            try ModuleLoader(directory: d.path, commandLine: KernelCommandLine(cmdline), sysModule: sys.path) { fd, params, flags in
                var buf = [UInt8](repeating: 0, count: 256)
                let n = read(fd, &buf, 256)
                let name = moduleName(fromPath: String(decoding: buf[0..<max(0, n)], as: UTF8.self))
                calls.list.append((name, params))
                #expect(flags == 0)
                return calls.fail[name] ?? 0
            }
        }
        let l = try loader("quiet jbd2.debug=1 virtio-blk.queue_depth=4 ext4.x=\"a b\" modprobe.blacklist=crc32c_generic,nvme_core root=/dev/vda")
        #expect(try l.insertIfNeeded("virtio:d00000002v00001AF4"))
        #expect(calls.list.map(\.0) == ["virtio_ring", "virtio_blk"])
        #expect(calls.list.last?.1 == "queue_depth=4")
        calls.list = []
        // By name, a blacklisted softdep still comes (modprobe applies the
        // blacklist to aliases); options quoted again when they hold spaces.
        #expect(try l.insertIfNeeded("ext4"))
        #expect(calls.list.map(\.0) == ["crc16", "jbd2", "crc32c_generic", "ext4"])
        #expect(calls.list[1].1 == "debug=1")
        #expect(calls.list[3].1 == "x=\"a b\"")
        // Blacklisted as an alias: nothing matches.
        #expect(l.lookup("crc32c") == .notFound)
        #expect(l.lookup("crc32c_generic") == .modules(["crc32c_generic"]))
        let unixInserted = try l.insertIfNeeded("unix")
        #expect(!unixInserted)
        #expect { try l.insertIfNeeded("no_such") } throws: { e in
            ((e as? SSIError)?.description ?? "").contains("--add-modules no_such")
        }
        // A module the kernel already has (EEXIST) is success; a refusal
        // names its reason.
        calls.list = []
        calls.fail = ["crc16": EEXIST, "crc32c_generic": ENODEV]
        // A softdep that fails is passed over, as modprobe does.
        #expect(try l.insertIfNeeded("ext4"))
        #expect(calls.list.map(\.0) == ["crc16", "jbd2", "crc32c_generic", "ext4"])
        #expect(l.softdepFailures.count == 1 && l.softdepFailures[0].contains("crc32c_generic"))
        calls.list = []
        calls.fail = ["jbd2": ENOEXEC]
        #expect { try l.insertIfNeeded("ext4") } throws: { e in
            let m = (e as? SSIError)?.description ?? ""
            return m.contains("jbd2: insert failed: not a module for this kernel")
        }
        #expect(calls.list.map(\.0) == ["crc16", "jbd2"])
        // A module listed but missing from the directory.
        #expect(unlink(d.file("kernel/lib/crc16.ko")) == 0)
        calls.fail = [:]
        #expect { try l.insertIfNeeded("crc16") } throws: { e in
            ((e as? SSIError)?.description ?? "").contains("kernel/lib/crc16.ko")
        }
    }

    @Test func fuzzParsers() {
        let seeds = Fuzz.seeds([Self.dep, Self.alias, Self.softdep, Self.builtin])
        Fuzz.run("module-index", seeds: seeds, iterations: Fuzz.iterations(default: 1500)) { input in
            let text = String(decoding: input, as: UTF8.self)
            var index = ModuleIndex()
            try? index.parse(dep: text, file: "f")
            try? index.parse(softdep: text, file: "f")
            _ = try? ModuleIndex.parseAliases(text, file: "f")
            _ = index.lookup(text)
            for name in index.modules.keys.prefix(8) { _ = index.loadOrder(name) }
        }
        let lines = Fuzz.seeds(["a.b=1 modprobe.blacklist=x,y c-d.e=\"f g\" .x=1 x.=2 =.", "root=/dev/vda ro"])
        Fuzz.run("module-cmdline", seeds: lines, iterations: Fuzz.iterations(default: 1500)) { input in
            _ = ModuleLoader.commandLineOptions(KernelCommandLine(String(decoding: input, as: UTF8.self)))
        }
    }

    /// A softdep cycle (a pre: b, b pre: a) ends.
    @Test func softdepCycleEnds() throws {
        var index = ModuleIndex()
        try index.parse(dep: "a.ko:\nb.ko:\n", file: "d")
        try index.parse(softdep: "softdep a pre: b\nsoftdep b pre: a post: a\n", file: "s")
        #expect(index.loadOrder("a").map(\.name) == ["b", "a"])
    }

    /// The real thing: the host's own depmod-made text files, read by our
    /// index, give the real modprobe's load order and alias resolution.
    @Test(.enabled(if: HostKernel.version != nil && (FileSystem.exists("/usr/sbin/modprobe") || FileSystem.exists("/sbin/modprobe")),
                   "needs kmod's modprobe and a kernel's modules under /lib/modules"))
    func hostIndexesMatchModprobe() throws {
        let v = HostKernel.version!
        let index = try ModuleIndex.read(directory: HostKernel.directory)
        let modprobe = FileSystem.exists("/usr/sbin/modprobe") ? "/usr/sbin/modprobe" : "/sbin/modprobe"
        for module in ["ext4", "nfsv4", "gfs2", "virtio_blk", "nvme", "ahci", "sd_mod", "dlm", "xfs"] where index.modules[module] != nil {
            let host = try runHost([modprobe, "-S", v, "--ignore-install", "--show-depends", module])
            // modprobe prints a module again each time the probe list
            // meets it (a shared dependency); it inserts it once.
            var theirs: [String] = []
            for line in host.output.split(separator: "\n") where line.hasPrefix("insmod ") {
                let name = moduleName(fromPath: String(line.split(separator: " ")[1]))
                if !theirs.contains(name) { theirs.append(name) }
            }
            #expect(index.loadOrder(module).map(\.name) == theirs, "\(module)")
        }
        for alias in ["fs-ext4", "fs-nfs4", "virtio:d00000002v00001AF4", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"] {
            let host = try runHost([modprobe, "-S", v, "--resolve-alias", alias])
            let theirs = host.output.split(separator: "\n").map(String.init)
            guard case .modules(let ours) = index.lookup(alias) else {
                Issue.record("\(alias): not found by our index; modprobe says \(theirs)")
                continue
            }
            #expect(Set(ours) == Set(theirs), "\(alias)")
        }
    }
}

@Suite struct FirmwareTests {
    /// The kernel loader's search order: updates/VER, updates, VER, then
    /// the top, each with the compressed variants it can unpack.
    @Test func searchOrder() throws {
        let root = TempDir()
        func put(_ p: String) throws {
            try FileSystem.makeDirectories(dirname(of: root.file(p)))
            try Data([1]).write(to: URL(fileURLWithPath: root.file(p)))
        }
        try put("vendor/fw.bin")
        #expect(ModuleSet.findFirmware("vendor/fw.bin", kernelVersion: "6.1", root: root.path) == root.file("vendor/fw.bin"))
        try put("6.1/vendor/fw.bin.zst")
        #expect(ModuleSet.findFirmware("vendor/fw.bin", kernelVersion: "6.1", root: root.path) == root.file("6.1/vendor/fw.bin.zst"))
        try put("updates/vendor/fw.bin.xz")
        #expect(ModuleSet.findFirmware("vendor/fw.bin", kernelVersion: "6.1", root: root.path) == root.file("updates/vendor/fw.bin.xz"))
        #expect(ModuleSet.findFirmware("vendor/other.bin", kernelVersion: "6.1", root: root.path) == nil)
    }
}
