import Testing
import Foundation
import SSICore
import SSILinux
@testable import SSIInitramfs

@Suite(.enabled(if: HostKernel.version != nil, "\(HostKernel.skipReason)"))
struct ImageBuilderTests {
    func spec(_ modules: [String] = ["virtio_blk", "ext4"]) -> ImageSpec {
        var s = ImageSpec(kernelVersion: HostKernel.version!, moduleDirectory: HostKernel.directory,
                          modules: modules, ssiBinary: "/bin/ls")
        s.loadAtBoot = ["ext4"]
        s.mtime = 1_700_000_000
        s.threads = 2
        return s
    }

    @Test func imageHoldsInitLibrariesModulesAndIndexes() throws {
        let dir = TempDir()
        let out = dir.file("initrd.img")
        let report = try ImageBuilder.build(spec(), output: out, force: false)
        #expect(report.bytes == (try FileSystem.status(out).size))
        #expect(report.modules >= 4)   // ext4 + jbd2 + mbcache + virtio_blk + virtio ...
        let segments = try ImageReader.read(path: out, keepData: true)
        #expect(segments.count == 1)
        #expect(segments[0].format == .zstd)
        var byPath: [String: CpioEntry] = [:]
        for e in segments[0].entries { byPath[e.path] = e }
        let v = HostKernel.version!
        #expect(byPath["init"]?.linkTarget == "usr/bin/ssi")
        #expect(byPath["usr/bin/ssi"]?.isRegular == true)
        #expect(byPath["usr/bin/ssi"]!.header.mode & 0o777 == 0o755)
        #expect(byPath["lib"]?.linkTarget == "usr/lib")
        #expect(byPath["bin"]?.linkTarget == "usr/bin")
        #expect(byPath["dev/console"]?.header.rdevMajor == 5)
        // The ELF closure of /bin/ls: its loader and libc, symlinks kept.
        #expect(byPath["usr/lib64/ld-linux-x86-64.so.2"] != nil)
        #expect(byPath["usr/lib/x86_64-linux-gnu/libc.so.6"] != nil)
        #expect(byPath["usr/lib/x86_64-linux-gnu/libselinux.so.1"] != nil)
        // What ssi-init opens with dlopen, which no DT_NEEDED names, with
        // their own closure; a single-node image has no cluster library.
        #expect(byPath["usr/lib/x86_64-linux-gnu/libudev.so.1"] != nil, "libudev.so.1 in the image")
        // Modules load without libkmod, and so without what it brings.
        for soname in ["libkmod.so.2", "libcrypto.so.3", "libzstd.so.1", "liblzma.so.5"] {
            #expect(byPath["usr/lib/x86_64-linux-gnu/\(soname)"] == nil, "\(soname) not in the image")
        }
        for library in ImageSpec.clusterLibraries {
            #expect(byPath["usr/lib/x86_64-linux-gnu/\(library.soname)"] == nil, "\(library.soname) only in cluster images")
        }
        // Modules with their dependencies and the indexes.
        let mods = "usr/lib/modules/\(v)"
        for name in ["ext4", "jbd2", "mbcache", "virtio_blk"] {
            #expect(byPath.keys.contains { $0.hasPrefix(mods + "/kernel/") && $0.hasSuffix("/\(name).ko") }, "\(name).ko")
        }
        for index in ["modules.dep", "modules.alias", "modules.softdep", "modules.builtin", "modules.builtin.alias"] {
            #expect(byPath["\(mods)/\(index)"]?.isRegular == true, "\(index)")
        }
        #expect(byPath["etc/ssi/modules"]?.data == Array("ext4\n".utf8))
        #expect(String(decoding: byPath["etc/ssi/image"]!.data!, as: UTF8.self).contains("kernel=\(v)"))
        // Directories first (every parent before its children), then the
        // modules, then the rest, each in byte order; fixed mtime, root-owned.
        let entries = segments[0].entries
        func sorted(_ e: [CpioEntry]) -> [String] {
            e.map(\.path).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        }
        let dirs = entries.filter(\.isDirectory)
        let others = entries.filter { !$0.isDirectory }
        let modules = others.filter { $0.path.hasPrefix("usr/lib/modules/") }
        let rest = others.filter { !$0.path.hasPrefix("usr/lib/modules/") }
        let expected = sorted(dirs) + sorted(modules) + sorted(rest)
        #expect(entries.map(\.path) == expected)
        let leading = entries.prefix(dirs.count).filter { !$0.isDirectory }
        #expect(leading.isEmpty)
        #expect(segments[0].entries.allSatisfy { $0.header.mtime == 1_700_000_000 && $0.header.uid == 0 })
    }

    @Test func twoBuildsAreByteIdentical() throws {
        let dir = TempDir()
        _ = try ImageBuilder.build(spec(), output: dir.file("a"), force: false)
        var s = spec()
        s.threads = 1   // a different worker count must not change the bytes
        _ = try ImageBuilder.build(s, output: dir.file("b"), force: false)
        #expect(try FileSystem.readFile(dir.file("a")) == (try FileSystem.readFile(dir.file("b"))))
    }

    /// The image's module indexes resolve like the host's depmod-made
    /// ones: the load order ssi-init's loader reads from the image is the
    /// real modprobe's on the host, and aliases resolve the same.
    @Test(.enabled(if: FileSystem.exists("/usr/sbin/modprobe") || FileSystem.exists("/sbin/modprobe"), "needs kmod's modprobe"))
    func imageIndexesResolveLikeModprobe() throws {
        let dir = TempDir()
        var s = spec(["nfsv4", "ext4", "gfs2", "virtio_blk"])
        s.compression = .none
        _ = try ImageBuilder.build(s, output: dir.file("img"), force: false)
        let root = dir.file("root")
        try FileSystem.makeDirectories(root)
        for e in try ImageReader.read(path: dir.file("img"), keepData: true)[0].entries {
            let p = root + "/" + e.path
            if e.isDirectory { try FileSystem.makeDirectories(p) }
            if e.isRegular { try Data(e.data!).write(to: URL(fileURLWithPath: p)) }
            if e.isSymlink { try FileSystem.symlink(target: e.linkTarget!, at: p) }
        }
        let modprobe = FileSystem.exists("/usr/sbin/modprobe") ? "/usr/sbin/modprobe" : "/sbin/modprobe"
        let v = HostKernel.version!
        let index = try ModuleIndex.read(directory: root + "/usr/lib/modules/\(v)")
        for module in ["nfsv4", "fs-nfs4", "ext4", "gfs2", "virtio:d00000002v00001AF4"] {
            let host = try runHost([modprobe, "-S", v, "--ignore-install", "--show-depends", module])
            // Each module once (modprobe prints a shared dependency again).
            var theirs: [String] = []
            for line in host.output.split(separator: "\n") where line.hasPrefix("insmod ") {
                let name = moduleName(fromPath: String(line.split(separator: " ")[1]))
                if !theirs.contains(name) { theirs.append(name) }
            }
            guard case .modules(let found) = index.lookup(module) else {
                Issue.record("\(module) not in the image's index")
                continue
            }
            var ours: [String] = []
            for m in found { for step in index.loadOrder(m) where !ours.contains(step.name) { ours.append(step.name) } }
            #expect(ours == theirs, "\(module)")
            // Every module the order names is in the image, where the index says.
            for name in ours {
                #expect(FileSystem.exists(root + "/usr/lib/modules/\(v)/" + index.modules[name]!.path), "\(name)")
            }
        }
    }

    @Test func existingOutputNeedsForceAndStaysUntouched() throws {
        let dir = TempDir()
        let out = dir.file("initrd.img")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: out))
        #expect {
            try ImageBuilder.build(spec(), output: out, force: false)
        } throws: { e in
            let m = (e as? SSIError)?.description ?? ""
            return m.contains(out) && m.contains("already exists") && m.contains("--force")
        }
        #expect(try FileSystem.readText(out) == "precious")
        _ = try ImageBuilder.build(spec(), output: out, force: true)
        #expect(try FileSystem.readText(out) != "precious")
    }

    @Test func unknownModuleFailsBeforeWritingAnything() throws {
        let dir = TempDir()
        #expect {
            try ImageBuilder.build(spec(["ext4", "no_such_driver"]), output: dir.file("img"), force: false)
        } throws: { e in
            let m = (e as? SSIError)?.description ?? ""
            return m.contains("unknown module or alias 'no_such_driver'") && m.contains(HostKernel.version!)
        }
        #expect(try FileSystem.list(dir.path).isEmpty)
    }

    @Test func badInstallsAreNamed() throws {
        let dir = TempDir()
        var s = spec()
        s.installs = ["/usr/bin/no-such-program"]
        #expect {
            try ImageBuilder.build(s, output: dir.file("img"), force: false)
        } throws: { ($0 as? SSIError)?.description.contains("/usr/bin/no-such-program not found") == true }
        s.installs = ["relative/path"]
        #expect {
            try ImageBuilder.build(s, output: dir.file("img"), force: false)
        } throws: { ($0 as? SSIError)?.description.contains("absolute path") == true }
        #expect(try FileSystem.list(dir.path).isEmpty)
    }

    @Test func missingOutputDirectoryIsNamed() throws {
        #expect {
            try ImageBuilder.build(spec(), output: "/nonexistent-dir/initrd.img", force: false)
        } throws: { ($0 as? SSIError)?.description.contains("directory /nonexistent-dir does not exist") == true }
    }

    @Test(.enabled(if: FileSystem.exists("/usr/bin/cpio"), "needs GNU cpio to cross-check the archive"))
    func gnuCpioReadsOurArchive() throws {
        let dir = TempDir()
        var s = spec()
        s.compression = .none
        _ = try ImageBuilder.build(s, output: dir.file("img"), force: false)
        let listed = try runHost(["/usr/bin/cpio", "-t", "--quiet", "-F", dir.file("img")])
        #expect(listed.status == 0)
        let names = Set(listed.output.split(separator: "\n").map(String.init))
        #expect(names.contains("init"))
        #expect(names.contains("usr/bin/ssi"))
        #expect(names.contains("dev/console"))
    }
}

@Suite struct ELFTests {
    @Test func readsInterpreterAndNeeded() throws {
        let info = try #require(try ELF.read("/bin/ls"))
        #expect(info.is64Bit)
        #expect(info.machine == 62)   // x86-64
        #expect(info.interpreter?.hasSuffix("ld-linux-x86-64.so.2") == true)
        #expect(info.needed.contains("libc.so.6"))
    }

    @Test func nonELFIsNil() throws {
        let dir = TempDir()
        try Data("#!/bin/sh\necho hi\n".utf8).write(to: URL(fileURLWithPath: dir.file("s")))
        #expect(try ELF.read(dir.file("s")) == nil)
        #expect(throws: SSIError.self) { try ELF.read(dir.file("missing")) }
    }

    @Test func scriptsBringTheirInterpreter() throws {
        let dir = TempDir()
        let script = dir.file("hello")
        try Data("#!/bin/sh\necho hi\n".utf8).write(to: URL(fileURLWithPath: script))
        var inst = try HostInstaller(tree: ImageTree())
        try inst.install(script, as: "usr/bin/hello")
        #expect(inst.tree.node("usr/bin/hello") != nil)
        // /bin/sh is a symlink to dash on Debian: link kept, target added.
        #expect(inst.tree.node("usr/bin/sh") != nil)
        #expect(inst.tree.node("usr/lib/x86_64-linux-gnu/libc.so.6") != nil)
    }

    @Test func mergedUsrMapping() {
        #expect(HostInstaller.imagePath(forHost: "/lib/x86_64-linux-gnu/libc.so.6") == "usr/lib/x86_64-linux-gnu/libc.so.6")
        #expect(HostInstaller.imagePath(forHost: "/sbin/mount.nfs") == "usr/sbin/mount.nfs")
        #expect(HostInstaller.imagePath(forHost: "/usr/bin/ls") == "usr/bin/ls")
        #expect(HostInstaller.imagePath(forHost: "/etc/ssi/x") == "etc/ssi/x")
        #expect(HostInstaller.imagePath(forHost: "/library/x") == "library/x")
    }

    @Test func treeRejectsClashes() throws {
        var t = ImageTree()
        try t.add("usr/bin/x", .data([1], permissions: 0o644))
        try t.add("usr/bin/x", .data([1], permissions: 0o644))   // same: fine
        #expect(throws: SSIError.self) { try t.add("usr/bin/x", .symlink(target: "y")) }
        try t.add("bin", .symlink(target: "usr/bin"))
        #expect(throws: SSIError.self) { try t.add("bin/z", .data([], permissions: 0o644)) }
        #expect(t.node("usr") == .directory(permissions: 0o755))
    }
}
