import Testing
import Foundation
import SSICore
import SSILinux
import SSITestSupport
@testable import SSIInitramfs

/// Reading images back must survive any file: no hang, no trap, bounded
/// memory and output, and every damaged stream an error that says where.
@Suite struct ImageReadingTests {
    func archive(_ build: (CpioWriter) throws -> Void) throws -> [UInt8] {
        let sink = MemorySink()
        let w = CpioWriter(sink: sink, mtime: 1_700_000_000)
        try build(w)
        try w.finish()
        return sink.bytes
    }

    func compress(_ bytes: [UInt8], _ method: Compression, level: Int32? = nil) throws -> [UInt8] {
        let out = MemorySink()
        let s = try method.sink(into: out, level: level, threads: 0)
        try s.write(bytes)
        try s.finish()
        return out.bytes
    }

    func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return (error as? SSIError)?.description ?? "\(error)" }
        return nil
    }

    /// Descriptors of this process open on `path` (by /proc/self/fd; a
    /// unique path keeps tests running alongside out of the count).
    func descriptors(openOn path: String) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == path }.count
    }

    // MARK: Finding 1: only regular files are read

    @Test(.timeLimit(.minutes(1)))
    func listRefusesFIFOsDevicesAndDirectories() throws {
        let dir = TempDir()
        let fifo = dir.file("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        // No writer: a plain open(2) of the FIFO would block here forever.
        let m = message { try ImageReader.list(path: fifo) { _ in } }
        #expect(m?.contains("\(fifo) is a FIFO, not an image file") == true, "\(m ?? "no error")")
        let z = message { try ImageReader.list(path: "/dev/zero") { _ in } }
        #expect(z?.contains("/dev/zero is a character device, not an image file") == true, "\(z ?? "no error")")
        let d = message { try ImageReader.list(path: dir.path) { _ in } }
        #expect(d?.contains("is a directory") == true, "\(d ?? "no error")")
        let e = message { _ = try ELF.read(fifo) }
        #expect(e?.contains("not a regular file") == true, "\(e ?? "no error")")
        // Refused after the open: the refusal closed it.
        #expect(descriptors(openOn: fifo) == 0)
    }

    @Test func fileLargerThanTheLimitIsRefusedBeforeReading() throws {
        let dir = TempDir()
        let path = dir.file("sparse")
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        #expect(ftruncate(fd, 64 << 20) == 0)   // sparse: no disk used
        close(fd)
        let m = message { try ImageReader.scan(path: path, limit: 1 << 20) { _ in } }
        #expect(m?.contains("more than the 1 MiB") == true, "\(m ?? "no error")")
        #expect(descriptors(openOn: path) == 0)
    }

    // MARK: Finding 2: output is bounded and streamed

    /// A cpio with one file of zeros: a few KiB compressed, `size` unpacked.
    func bomb(_ method: Compression, size: Int) throws -> [UInt8] {
        let out = MemorySink()
        let s = try method.sink(into: out, level: 1, threads: 0)
        let w = CpioWriter(sink: s, mtime: 0)
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        try w.file("zeros", permissions: 0o644, size: size) { (sink) throws(SSIError) -> Int in
            var n = 0
            while n < size { try sink.write(Array(chunk.prefix(size - n))); n += min(chunk.count, size - n) }
            return n
        }
        try w.finish()
        try s.finish()
        return out.bytes
    }

    @Test(arguments: [Compression.zstd, .gzip, .xz])
    func decompressionBombStopsAtTheLimit(_ method: Compression) throws {
        let bytes = try bomb(method, size: 16 << 20)
        #expect(bytes.count < 1 << 20)
        let m = message {
            try ImageReader.scan(MemorySource(bytes[...]), source: "bomb", keepData: false, limit: 4 << 20) { _ in }
        }
        #expect(m?.contains("bomb: \(method.rawValue) stream at byte 0 unpacks to more than 4 MiB") == true, "\(m ?? "no error")")
        // Under the limit it lists, streaming: the entry comes without its
        // data, which was skipped a chunk at a time.
        var sizes: [Int] = []
        try ImageReader.scan(MemorySource(bytes[...]), source: "bomb", keepData: false, limit: 32 << 20) { event in
            if case .entry(let e) = event { sizes.append(e.size); #expect(e.data == nil) }
        }
        #expect(sizes == [16 << 20])
        #expect(throws: SSIError.self) { try Decompress.all(bytes[...], format: ArchiveFormat.detect(bytes[...]), source: "b", limit: 1 << 20) }
    }

    // MARK: Finding 3: truncated and corrupt streams are errors

    @Test(arguments: [Compression.zstd, .gzip, .xz])
    func everyCutOfACompressedImageIsAnError(_ method: Compression) throws {
        let plain = try archive { w in
            try w.directory("etc", permissions: 0o755)
            try w.file("etc/hostname", permissions: 0o644, contents: Array(String(repeating: "node1 ", count: 2000).utf8))
        }
        let full = try compress(plain, method)
        #expect(try ImageReader.read(bytes: full, source: "img", keepData: false)[0].entries.count == 2)
        // Every cut in the last 64 bytes (zstd's and xz's checksums, gzip's
        // CRC and size) and a sample before.
        var cuts = Array(max(1, full.count - 64)..<full.count)
        cuts += stride(from: 1, to: full.count, by: max(1, full.count / 50))
        for cut in cuts {
            let m = message { _ = try ImageReader.read(bytes: Array(full[0..<cut]), source: "img", keepData: false) }
            #expect(m != nil, "\(method) cut at \(cut) of \(full.count) was accepted")
            #expect(m?.contains("img") == true)
        }
        // The reported case: zstd cut inside its 4-byte checksum.
        if method == .zstd {
            let m = message { _ = try ImageReader.read(bytes: Array(full.dropLast(2)), source: "img", keepData: false) }
            #expect(m?.contains("truncated: the data ends at byte \(full.count - 2) inside a zstd frame") == true, "\(m ?? "no error")")
        }
        var flipped = full
        flipped[flipped.count / 2] ^= 0x55
        #expect(message { _ = try ImageReader.read(bytes: flipped, source: "img", keepData: false) } != nil, "\(method) bit flip accepted")
    }

    // MARK: Finding 4: cpio trailer and header fields

    @Test func cpioWithoutTrailerIsAnError() throws {
        let bytes = try archive { try $0.file("init", permissions: 0o755, contents: [1, 2, 3]) }
        let withoutTrailer = Array(bytes[0..<(bytes.count - 124)])   // 110 + "TRAILER!!!\0" padded
        let m = message { _ = try ImageReader.read(bytes: withoutTrailer, source: "img", keepData: false) }
        #expect(m?.contains("img: the archive ends at byte \(withoutTrailer.count) without its TRAILER!!! entry") == true, "\(m ?? "no error")")
        // The same inside a compressed stream.
        let z = try compress(withoutTrailer, .zstd)
        let mz = message { _ = try ImageReader.read(bytes: z, source: "img", keepData: false) }
        #expect(mz?.contains("without its TRAILER!!! entry") == true, "\(mz ?? "no error")")
    }

    /// A header with one field replaced (offsets: 6 + 8 * field index).
    func header(field: Int, _ value: String, name: String = "a", data: [UInt8] = []) throws -> [UInt8] {
        var bytes = try archive { try $0.file(name, permissions: 0o644, contents: data) }
        let at = 6 + 8 * field
        bytes.replaceSubrange(at..<(at + 8), with: Array(value.utf8))
        return bytes
    }

    @Test func cpioHeaderFieldsAreChecked() throws {
        let cases: [([UInt8], String)] = [
            (try header(field: 11, "00000000"), "namesize 0 is not between 1 and 4096"),
            (try header(field: 11, "FFFFFFFF"), "namesize 4294967295 is not between 1 and 4096"),
            (try header(field: 11, "00000001"), "the name is not NUL-terminated"),
            (try header(field: 6, "FFFFFFFF"), "(4294967295 bytes declared"),
            (try header(field: 6, "0000001g"), "filesize is not 8 hex digits"),
            (try header(field: 1, "-0000001"), "mode is not 8 hex digits"),
        ]
        for (bytes, expected) in cases {
            let m = message { _ = try CpioReader.readArchive(bytes, keepData: true, source: "img") }
            #expect(m?.contains(expected) == true, "\(expected): \(m ?? "no error")")
        }
        let longLink = try archive { try $0.symlink("l", target: String(repeating: "x", count: 5000)) }
        let m = message { _ = try CpioReader.readArchive(longLink, keepData: false, source: "img") }
        #expect(m?.contains("has a 5000-byte target (at most 4096)") == true, "\(m ?? "no error")")
    }

    // MARK: Finding 5: names are escaped

    @Test func listedNamesAndErrorsEscapeControlCharacters() throws {
        let evil = "x\u{1B}]0;owned\u{07}\u{9B}2J\\"
        let bytes = try archive { w in
            try w.file(evil, permissions: 0o644, contents: [1])
            try w.symlink("link", target: "a\nb")
        }
        let dir = TempDir()
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file("img")))
        var out = ""
        try ImageReader.list(path: dir.file("img")) { out += $0 }
        #expect(out.contains(#"x\u001B]0;owned\u0007\u009B2J\\"#), "\(out)")
        #expect(out.contains(#"link -> a\nb"#), "\(out)")
        #expect(!out.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || ($0.value >= 0x7F && $0.value < 0xA0) })
        #expect(out.hasPrefix("# archive 1 at byte 0: uncompressed\n"))
        #expect(out.hasSuffix("# end of archive 1: 2 entries\n"))
        // An error naming the entry escapes it too.
        let cut = Array(bytes[0..<128])   // the name ends at 127, its one data byte is cut
        let m = message { _ = try CpioReader.readArchive(cut, keepData: false, source: "img") }
        #expect(m?.contains(#"x\u001B]0;owned"#) == true, "\(m ?? "no error")")
        #expect(m?.contains("\u{1B}") == false)
        #expect(printableName("plain/name.ko") == "plain/name.ko")
        #expect(printableName("é ü") == "é ü")
    }

    // MARK: Finding 6: secrets are root's

    @Test func secretFilesAreRootsAloneWhateverTheCallerAsked() throws {
        let payload = ClusterPayload(daemons: [], files: [
            "etc/ssi/cluster.conf": (Array("[fence]\nargs = \"passwd=x\"\n".utf8), 0o644),
            "etc/dlm/dlm.conf": (Array("device ssi x passwd=x\n".utf8), 0o644),
            "etc/corosync/corosync.conf": (Array("totem {}\n".utf8), 0o644),
        ], authkey: nil)
        #expect(payload.holdsSecrets)
        var spec = ImageSpec(kernelVersion: "0", moduleDirectory: "/nonexistent", modules: [], ssiBinary: "/bin/true")
        spec.cluster = payload
        #expect(ImageBuilder.imageMode(spec) == 0o600)
        var tree = ImageTree()
        try ImageBuilder.addCluster(payload, spec: spec, to: &tree)
        #expect(tree.node("etc/ssi/cluster.conf").map(permissions) == 0o600)
        #expect(tree.node("etc/dlm/dlm.conf").map(permissions) == 0o600)
        #expect(tree.node("etc/corosync/corosync.conf").map(permissions) == 0o644)
        // No secret: readable like the distro's images.
        spec.cluster = ClusterPayload(daemons: [], files: ["etc/motd": ([], 0o644)], authkey: nil)
        #expect(ImageBuilder.imageMode(spec) == 0o644)
        spec.cluster = ClusterPayload(daemons: [], files: [:], authkey: [1, 2, 3])
        #expect(ImageBuilder.imageMode(spec) == 0o600)
        // The key sealed and no fence credentials: the configuration is
        // public, the image too, and the daemons' root still lists the key
        // (ssi-init opens it into the initramfs before the copy).
        let sealed = ClusterPayload(daemons: [], files: [
            "etc/ssi/cluster.conf": (Array("[cluster]\n".utf8), 0o644),
            "etc/ssi/sealed-keys": (Array("node1 SHA256:x y\n".utf8), 0o644),
        ], authkey: nil, configIsPublic: true)
        #expect(!sealed.holdsSecrets)
        spec.cluster = sealed
        #expect(ImageBuilder.imageMode(spec) == 0o644)
        var sealedTree = ImageTree()
        try ImageBuilder.addCluster(sealed, spec: spec, to: &sealedTree)
        #expect(sealedTree.node("etc/ssi/cluster.conf").map(permissions) == 0o644)
        #expect(sealedTree.node("etc/corosync/authkey") == nil)
        if case .data(let list, _) = try #require(sealedTree.node("etc/ssi/agents.list")) {
            #expect(String(decoding: list, as: UTF8.self).split(separator: "\n").contains("etc/corosync/authkey"))
        } else {
            Issue.record("agents.list is not a file")
        }
        // dlm.conf follows the configuration (its passwords are @NAME
        // there); the fence secrets themselves are root's whatever asked.
        #expect(!ClusterPayload(daemons: [], files: ["etc/dlm/dlm.conf": ([], 0o644)], authkey: nil, configIsPublic: true).holdsSecrets)
        #expect(ClusterPayload(daemons: [], files: ["etc/ssi/fence-secrets": ([], 0o644)], authkey: nil, configIsPublic: true).holdsSecrets)
        #expect(ClusterPayload(daemons: [], files: ["etc/dlm/dlm.conf": ([], 0o644)], authkey: nil, configIsPublic: false).holdsSecrets)
    }

    func permissions(_ node: ImageTree.Node) -> UInt32? {
        if case .data(_, let p) = node { return p }
        return nil
    }

    @Test func imageWithSecretsIsWrittenMode0600() throws {
        let dir = TempDir()
        var tree = ImageTree()
        try tree.add("etc/ssi/cluster.conf", .data([1], permissions: 0o600))
        var spec = ImageSpec(kernelVersion: "0", moduleDirectory: "/nonexistent", modules: [], ssiBinary: "/bin/true")
        spec.compression = .none
        let out = dir.file("img")
        _ = try ImageBuilder.writeAtomically(tree, spec: spec, output: out, mode: 0o600)
        #expect(try FileSystem.status(out).mode == 0o600)
        let entries = try ImageReader.read(path: out, keepData: true)[0].entries
        #expect(entries.first { $0.path == "etc/ssi/cluster.conf" }?.header.mode == Cpio.typeRegular | 0o600)
    }

    // MARK: ELF headers are bounded

    /// A minimal 64-bit ELF: header, PT_LOAD + PT_DYNAMIC + PT_INTERP, a
    /// dynamic section (DT_NEEDED, DT_RUNPATH, DT_STRTAB) and its strings.
    static func tinyELF() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 64)
        b.replaceSubrange(0..<8, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])
        func put16(_ v: Int, _ at: Int) { b[at] = UInt8(v & 0xff); b[at + 1] = UInt8(v >> 8) }
        func put64(_ v: Int, _ at: Int) { for i in 0..<8 { b[at + i] = UInt8((v >> (8 * i)) & 0xff) } }
        put16(3, 16); put16(62, 18); put64(64, 32); put16(56, 54); put16(3, 56)
        let phStart = 64, dynAt = 64 + 3 * 56, strAt = dynAt + 4 * 16
        let strings = Array("\0libc.so.6\0$ORIGIN/../lib\0/lib64/ld-linux-x86-64.so.2\0".utf8)
        b += [UInt8](repeating: 0, count: 3 * 56 + 4 * 16)
        b += strings
        func phdr(_ i: Int, type: Int, offset: Int, size: Int) {
            let at = phStart + i * 56
            b[at] = UInt8(type)
            put64(offset, at + 8); put64(offset, at + 16); put64(size, at + 32)
        }
        phdr(0, type: 1, offset: 0, size: b.count)
        phdr(1, type: 2, offset: dynAt, size: 4 * 16)
        phdr(2, type: 3, offset: strAt + 26, size: 28)
        put64(1, dynAt); put64(1, dynAt + 8)            // DT_NEEDED "libc.so.6"
        put64(29, dynAt + 16); put64(11, dynAt + 24)    // DT_RUNPATH
        put64(5, dynAt + 32); put64(strAt, dynAt + 40)  // DT_STRTAB
        return b
    }

    @Test func tinyELFParsesAndCorruptHeadersAreErrors() throws {
        let elf = Self.tinyELF()
        let info = try #require(try ELF.parse(bytes: elf, name: "tiny"))
        #expect(info.needed == ["libc.so.6"])
        #expect(info.runpath == ["$ORIGIN/../lib"])
        #expect(info.interpreter == "/lib64/ld-linux-x86-64.so.2")
        var huge = elf
        for i in 0..<8 { huge[64 + 56 + 32 + i] = 0xff }   // PT_DYNAMIC p_filesz = 2^64-1
        #expect(message { _ = try ELF.parse(bytes: huge, name: "huge") }?.contains("p_filesz") == true)
        var phoff = elf
        for i in 0..<8 { phoff[32 + i] = 0xff }
        #expect(message { _ = try ELF.parse(bytes: phoff, name: "x") }?.contains("e_phoff") == true)
        var small = elf
        small[54] = 8                                   // e_phentsize 8
        #expect(message { _ = try ELF.parse(bytes: small, name: "x") }?.contains("e_phentsize 8 is too small") == true)
        // 1100 DT_NEEDED entries: each would keep a string of up to 4 KiB.
        var many = elf
        let dynAt = many.count
        for _ in 0..<1100 { many += [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0] }
        many += [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            many[64 + 56 + 8 + i] = UInt8(truncatingIfNeeded: dynAt >> (8 * i))
            many[64 + 56 + 32 + i] = UInt8(truncatingIfNeeded: (many.count - dynAt) >> (8 * i))
        }
        let m = message { _ = try ELF.parse(bytes: many, name: "many") }
        #expect(m?.contains("1100 DT_NEEDED") == true, "\(m ?? "no error")")
        #expect(try ELF.parse(bytes: Array("#!/bin/sh\n".utf8), name: "s") == nil)
        // No DT_STRTAB: the error names the entries that are there.
        var noStrtab = elf
        for i in 0..<16 { noStrtab[64 + 3 * 56 + 32 + i] = 0 }       // DT_STRTAB -> DT_NULL
        #expect(message { _ = try ELF.parse(bytes: noStrtab, name: "x") }?.contains("has DT_NEEDED, search path entries but no string table (DT_STRTAB)") == true)
        var sonameOnly = noStrtab
        for i in 0..<32 { sonameOnly[64 + 3 * 56 + i] = 0 }          // DT_NEEDED and DT_RUNPATH gone
        sonameOnly[64 + 3 * 56] = 14                                   // DT_SONAME
        let soname = message { _ = try ELF.parse(bytes: sonameOnly, name: "x") }
        #expect(soname?.contains("has DT_SONAME entries but no string table") == true, "\(soname ?? "no error")")
    }

    // MARK: Finding 7: fuzzing

    func noControlCharacters(_ error: any Error) -> Bool {
        let text = (error as? SSIError)?.description ?? ""
        return !text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || ($0.value >= 0x7F && $0.value < 0xA0) }
    }

    func cpioSeeds() throws -> [[UInt8]] {
        let one = try archive { w in
            try w.directory("etc", permissions: 0o755)
            try w.file("etc/hostname", permissions: 0o644, contents: Array("node1\n".utf8))
            try w.symlink("init", target: "usr/bin/ssi")
            try w.characterDevice("dev/console", permissions: 0o600, major: 5, minor: 1)
        }
        let two = try archive { try $0.file("kernel/x86/microcode/GenuineIntel.bin", permissions: 0o644, contents: [9]) }
        return [one, two + [0, 0, 0, 0] + one, []]
    }

    @Test func cpioReaderFuzz() throws {
        let seeds = try cpioSeeds()
        Fuzz.run("cpio", seeds: seeds, iterations: Fuzz.iterations(default: 2000)) { input in
            do {
                _ = try ImageReader.read(bytes: input, source: "fuzz", keepData: true)
            } catch {
                #expect(error is SSIError)
                #expect(noControlCharacters(error), "\(error)")
            }
        }
    }

    @Test(arguments: [Compression.zstd, .gzip, .xz])
    func decompressorFuzz(_ method: Compression) throws {
        let plain = try cpioSeeds()[0]
        let seeds = [try compress(plain, method), try compress(Array("small".utf8), method),
                     try compress(plain, method) + [0, 0, 0, 0] + (try compress(plain, method))]
        let format = ArchiveFormat(rawValue: method.rawValue)!
        Fuzz.run("decompress-\(method.rawValue)", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { input in
            do {
                _ = try Decompress.all(input[...], format: format, source: "fuzz", limit: 8 << 20)
                _ = try ImageReader.read(bytes: input, source: "fuzz", keepData: false)
            } catch {
                #expect(error is SSIError)
                #expect(noControlCharacters(error), "\(error)")
            }
        }
    }

    @Test func elfReaderFuzz() throws {
        var seeds = [Self.tinyELF()]
        if let real = try? FileSystem.readFile("/bin/true") {
            seeds.append(real)
            seeds.append(Array(real.prefix(4096)))   // the headers: where mutations matter
        }
        Fuzz.run("elf", seeds: seeds, iterations: Fuzz.iterations(default: 2000)) { input in
            do {
                _ = try ELF.parse(bytes: input, name: "fuzz")
            } catch {
                #expect(error is SSIError)
                #expect(noControlCharacters(error), "\(error)")
            }
        }
    }
}
