import Testing
import Foundation
import SSICore
import SSILinux
@testable import SSIInitramfs

/// The packed binary (`BinaryArchive`): packed once, found by build id and
/// size, appended by zstd images in place of the binary.
@Suite(.enabled(if: HostKernel.version != nil, "\(HostKernel.skipReason)"))
struct BinaryArchiveTests {
    /// A copy of a host program in DIR/bin, so that its archive goes to
    /// DIR/lib/ssi and nothing is written outside the test's folder.
    func binary(in dir: TempDir, from host: String = "/bin/ls", as name: String = "ssi") throws -> String {
        try FileSystem.makeDirectories(dir.file("bin"))
        let path = dir.file("bin/" + name)
        try FileSystem.copyFile(host, to: path, mode: 0o755)
        return path
    }

    func spec(_ binary: String) -> ImageSpec {
        var s = ImageSpec(kernelVersion: HostKernel.version!, moduleDirectory: HostKernel.directory,
                          modules: ["virtio_blk"], ssiBinary: binary)
        s.mtime = 1_700_000_000
        s.threads = 2
        return s
    }

    @Test func packedBinaryIsAppendedInPlaceOfTheCompressedOne() throws {
        let dir = TempDir()
        let ssi = try binary(in: dir)
        #expect(BinaryArchive.find(for: ssi) == nil, "nothing packed yet")
        let packed = try BinaryArchive.pack(ssi, threads: 2, mtime: 1_700_000_000)
        let size = try FileSystem.status(ssi).size
        #expect(packed.hasPrefix(dir.file("lib/ssi/ssi-")) && packed.hasSuffix("-\(size).cpio.zst"), "\(packed)")
        #expect(BinaryArchive.find(for: ssi) == packed)

        var s = spec(ssi)
        s.binaryArchive = packed
        let out = dir.file("with.img")
        let report = try ImageBuilder.build(s, output: out, force: false)
        #expect(report.packedBinary == packed)
        let segments = try ImageReader.read(path: out, keepData: true)
        let all = segments.flatMap(\.entries)
        let copies = all.filter { $0.path == "usr/bin/ssi" }
        #expect(copies.count == 1, "the binary once, from the archive: \(segments.map { $0.entries.map(\.path) })")
        #expect(copies.first?.data == (try FileSystem.readFile(ssi)))
        #expect(copies.first.map { $0.header.mode & 0o777 } == 0o755)
        // The main archive still has everything else: /init, the loader.
        #expect(all.contains { $0.path == "init" && $0.linkTarget == "usr/bin/ssi" })
        #expect(all.contains { $0.path == "usr/lib/x86_64-linux-gnu/libc.so.6" })
        // The image ends with the archive's bytes, as packed.
        let image = try FileSystem.readFile(out), archive = try FileSystem.readFile(packed)
        #expect(Array(image.suffix(archive.count)) == archive)

        // The same build without the archive has the binary in the main
        // archive; its unpacked contents are the same.
        let plain = dir.file("plain.img")
        _ = try ImageBuilder.build(spec(ssi), output: plain, force: false)
        let plainEntries = try ImageReader.read(path: plain, keepData: true).flatMap(\.entries)
        #expect(Set(plainEntries.map(\.path)) == Set(all.map(\.path)))
        #expect(plainEntries.first { $0.path == "usr/bin/ssi" }?.data == copies.first?.data)
    }

    @Test func otherCompressionsCompressTheBinary() throws {
        let dir = TempDir()
        let ssi = try binary(in: dir)
        var s = spec(ssi)
        s.binaryArchive = try BinaryArchive.pack(ssi, threads: 1, mtime: 0)
        s.compression = .gzip
        let out = dir.file("gz.img")
        let report = try ImageBuilder.build(s, output: out, force: false)
        #expect(report.packedBinary == nil, "a kernel without zstd must unpack a gzip image whole")
        let segments = try ImageReader.read(path: out, keepData: false)
        #expect(segments.count == 1 && segments[0].format == .gzip)
        #expect(segments[0].entries.contains { $0.path == "usr/bin/ssi" })
    }

    @Test func anotherBinaryHasNoArchiveAndPackingItRemovesTheOldOne() throws {
        let dir = TempDir()
        let ssi = try binary(in: dir)
        let old = try BinaryArchive.pack(ssi, threads: 1, mtime: 0)
        // A binary that changed (here it grew a byte) is not the packed one.
        let grown = try FileSystem.readFile(ssi) + [0]
        try Data(grown).write(to: URL(fileURLWithPath: ssi))
        #expect(BinaryArchive.find(for: ssi) == nil)
        // Another program in its place: packed anew, the old archive gone.
        try FileSystem.unlink(ssi)
        try FileSystem.copyFile("/bin/cat", to: ssi, mode: 0o755)
        let new = try BinaryArchive.pack(ssi, threads: 1, mtime: 0)
        #expect(new != old)
        #expect(!FileSystem.exists(old))
        #expect(try FileSystem.list(dir.file("lib/ssi")) == [basename(of: new)])
    }

    @Test func aFileWithoutBuildIDIsRefusedByName() throws {
        let dir = TempDir()
        try FileSystem.makeDirectories(dir.file("bin"))
        let script = dir.file("bin/ssi")
        try FileSystem.writeFile(script, "#!/bin/sh\n", mode: 0o755)
        #expect(BinaryArchive.find(for: script) == nil)
        #expect {
            try BinaryArchive.pack(script, threads: 1, mtime: 0)
        } throws: { error in
            let text = (error as? SSIError)?.description ?? ""
            return text.contains(script) && text.contains("no build id")
        }
        let left = (try? FileSystem.list(dir.file("lib/ssi"))) ?? []
        #expect(left.isEmpty)
    }

    /// The note parser over exact bytes: a GNU build-id note after another
    /// note, and notes that lie about their sizes.
    @Test func buildIDNoteIsFoundAmongNotes() {
        func note(_ name: [UInt8], _ type: UInt32, _ desc: [UInt8]) -> [UInt8] {
            func le(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }
            func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }
            return le(UInt32(name.count)) + le(UInt32(desc.count)) + le(type) + padded(name) + padded(desc)
        }
        let gnu: [UInt8] = [0x47, 0x4e, 0x55, 0]
        let id: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01]
        let abi = note(gnu, 1, [0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        #expect(ELF.buildID(in: abi + note(gnu, 3, id)) == id)
        #expect(ELF.buildID(in: note(Array("Go\0\0".utf8), 3, id)) == nil, "another vendor's type 3")
        #expect(ELF.buildID(in: abi) == nil)
        var lying = note(gnu, 3, id)
        lying[4] = 0xff   // descsz far beyond the segment
        #expect(ELF.buildID(in: lying) == nil)
        #expect(ELF.buildID(in: Array(note(gnu, 3, id).prefix(14))) == nil)
        #expect(ELF.buildID(in: []) == nil)
    }

    @Test func hostProgramsHaveTheirBuildID() throws {
        let info = try #require(try ELF.read("/bin/ls"))
        let id = try #require(info.buildID)
        #expect(id.count == 20, "Debian links with --build-id=sha1")
    }
}
