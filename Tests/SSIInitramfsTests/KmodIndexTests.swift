import Testing
import Foundation
import SSICore
import SSILinux
@testable import SSIInitramfs

/// The index writer is checked by the real reader: libkmod opens a module
/// directory holding only our files.
@Suite struct KmodIndexTests {
    func moduleDirectory(_ build: (TempDir) throws -> Void) rethrows -> TempDir {
        let dir = TempDir()
        try build(dir)
        return dir
    }

    func write(_ w: KmodIndexWriter, _ path: String) throws {
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
    }

    @Test func libkmodReadsOurIndexes() throws {
        let dir = try moduleDirectory { d in
            let dep = KmodIndexWriter()
            dep.insert(key: "virtio_blk", value: "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko")
            dep.insert(key: "virtio_ring", value: "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko")
            dep.insert(key: "virtio", value: "kernel/drivers/virtio/virtio.ko:")
            dep.insert(key: "ext4", value: "kernel/fs/ext4/ext4.ko:")
            try write(dep, d.file("modules.dep.bin"))
            let alias = KmodIndexWriter()
            alias.insert(key: "virtio:d00000002v*", value: "virtio_blk")
            alias.insert(key: "fs_ext4", value: "ext4")
            alias.insert(key: "ext3", value: "ext4")
            try write(alias, d.file("modules.alias.bin"))
            let builtin = KmodIndexWriter()
            builtin.insert(key: "unix", value: "")
            try write(builtin, d.file("modules.builtin.bin"))
            try write(KmodIndexWriter(), d.file("modules.symbols.bin"))
            // libkmod stats every dependency's file while it resolves them.
            for ko in ["kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio/virtio_ring.ko",
                       "kernel/drivers/virtio/virtio.ko", "kernel/fs/ext4/ext4.ko"] {
                try FileSystem.makeDirectories(dirname(of: d.file(ko)))
                try Data().write(to: URL(fileURLWithPath: d.file(ko)))
            }
        }
        let ctx = try KmodContext(directory: dir.path, useSystemConfig: false)

        guard case .modules(let blk) = try ctx.lookup("virtio_blk") else {
            Issue.record("virtio_blk not found")
            return
        }
        #expect(blk.map(\.name) == ["virtio_blk"])
        #expect(blk[0].path == dir.path + "/kernel/drivers/block/virtio_blk.ko")
        let deps = ctx.dependencies(of: blk[0]).hard.map(\.name)
        #expect(Set(deps) == ["virtio_ring", "virtio"])

        // Wildcard alias, as a device's modalias is matched.
        guard case .modules(let byAlias) = try ctx.lookup("virtio:d00000002v00001AF4") else {
            Issue.record("modalias lookup failed")
            return
        }
        #expect(byAlias.map(\.name) == ["virtio_blk"])
        // libkmod normalizes '-' to '_' in the query, as our writer does.
        guard case .modules(let fs) = try ctx.lookup("fs-ext4") else {
            Issue.record("fs-ext4 not found")
            return
        }
        #expect(fs.map(\.name) == ["ext4"])
        #expect(try ctx.lookup("unix") == .builtin)
        #expect(try ctx.lookup("no_such_module") == .notFound)
    }

    @Test func valuesKeepPriorityOrderAndNoDuplicates() {
        let w = KmodIndexWriter()
        w.insert(key: "a", value: "late", priority: 9)
        w.insert(key: "a", value: "early", priority: 1)
        w.insert(key: "a", value: "early", priority: 1)
        #expect(w.count == 2)
        let bytes = w.serialized()
        #expect(Array(bytes[0..<8]) == [0xB0, 0x07, 0xF4, 0x57, 0x00, 0x02, 0x00, 0x01])
        let text = String(decoding: bytes, as: UTF8.self)
        let early = text.range(of: "early")!, late = text.range(of: "late")!
        #expect(early.lowerBound < late.lowerBound)
    }

    @Test func aliasNormalization() {
        #expect(normalizeAlias("fs-ext4") == "fs_ext4")
        #expect(normalizeAlias("pci:v*d*sv*sd*bc01sc[0-9]*") == "pci:v*d*sv*sd*bc01sc[0-9]*")
        #expect(moduleName(fromPath: "kernel/drivers/nvme/host/nvme-core.ko") == "nvme_core")
        #expect(moduleName(fromPath: "x/y.ko.zst") == "y")
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
