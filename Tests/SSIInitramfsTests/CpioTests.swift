import Testing
import SSICore
@testable import SSIInitramfs

@Suite struct CpioTests {
    func archive(_ build: (CpioWriter) throws -> Void) throws -> [UInt8] {
        let sink = MemorySink()
        let w = CpioWriter(sink: sink, mtime: 1_700_000_000)
        try build(w)
        try w.finish()
        return sink.bytes
    }

    @Test func headerLayoutIsNewc() throws {
        let bytes = try archive { try $0.file("a", permissions: 0o644, contents: [1, 2, 3]) }
        // 110-byte header, "a\0" padded to 4 from offset 110 -> 112, 3 data
        // bytes padded to 116, then the trailer entry.
        #expect(Array(bytes[0..<6]) == Array("070701".utf8))
        let header = String(decoding: bytes[0..<110], as: UTF8.self)
        #expect(header.hasPrefix("07070100000001000081A4"))   // ino 1, mode 0100644
        #expect(String(decoding: bytes[54..<62], as: UTF8.self) == "00000003")  // filesize
        #expect(String(decoding: bytes[46..<54], as: UTF8.self) == "6553F100")  // mtime
        #expect(Array(bytes[112..<115]) == [1, 2, 3])
        #expect(bytes.count % 4 == 0)
        #expect(String(decoding: bytes[116..<122], as: UTF8.self) == "070701")
        #expect(String(decoding: bytes[(116 + 110)..<(116 + 120)], as: UTF8.self) == "TRAILER!!!")
    }

    @Test func roundTripEveryKind() throws {
        let bytes = try archive { w in
            try w.directory("etc", permissions: 0o755)
            try w.file("etc/hostname", permissions: 0o644, contents: Array("node1\n".utf8))
            try w.symlink("init", target: "usr/bin/ssi")
            try w.characterDevice("dev/console", permissions: 0o600, major: 5, minor: 1)
            try w.file("empty", permissions: 0o600, contents: [])
        }
        let (entries, end) = try CpioReader.readArchive(bytes, keepData: true, source: "test")
        #expect(end == bytes.count)
        #expect(entries.map(\.path) == ["etc", "etc/hostname", "init", "dev/console", "empty"])
        #expect(entries[0].isDirectory)
        #expect(entries[1].data == Array("node1\n".utf8))
        #expect(entries[2].linkTarget == "usr/bin/ssi")
        #expect(entries[3].header.rdevMajor == 5 && entries[3].header.rdevMinor == 1)
        #expect(entries[4].size == 0)
        #expect(Set(entries.map(\.header.inode)).count == entries.count)
    }

    @Test func streamedFileMustMatchItsSize() throws {
        let sink = MemorySink()
        let w = CpioWriter(sink: sink, mtime: 0)
        #expect {
            try w.file("x", permissions: 0o644, size: 10) { (s) throws(SSIError) -> Int in
                try s.write([1, 2, 3])
                return 3
            }
        } throws: { ($0 as? SSIError)?.message.contains("changed while it was read") == true }
    }

    @Test func concatenatedArchivesWithPadding() throws {
        var bytes = try archive { try $0.file("kernel/x86/microcode/GenuineIntel.bin", permissions: 0o644, contents: [9]) }
        bytes += [UInt8](repeating: 0, count: 512 - bytes.count % 512)
        bytes += try archive { try $0.file("init", permissions: 0o755, contents: [1]) }
        let segments = try ImageReader.read(bytes: bytes, source: "test", keepData: false)
        #expect(segments.count == 2)
        #expect(segments[0].entries.map(\.path) == ["kernel/x86/microcode/GenuineIntel.bin"])
        #expect(segments[1].entries.map(\.path) == ["init"])
    }

    /// The common real-world layout: an uncompressed early-microcode cpio,
    /// padding, then the compressed main archive.
    @Test(arguments: [Compression.zstd, .gzip, .xz])
    func earlyCpioThenCompressedArchive(_ method: Compression) throws {
        var bytes = try archive { try $0.file("kernel/x86/microcode/AuthenticAMD.bin", permissions: 0o644, contents: [7]) }
        bytes += [UInt8](repeating: 0, count: 512 - bytes.count % 512)
        let main = try archive { w in
            try w.directory("usr", permissions: 0o755)
            try w.symlink("init", target: "usr/bin/ssi")
        }
        let out = MemorySink()
        let s = try method.sink(into: out, level: nil, threads: 1)
        try s.write(main)
        try s.finish()
        bytes += out.bytes
        let segments = try ImageReader.read(bytes: bytes, source: "img", keepData: false)
        #expect(segments.map(\.format) == [.cpio, ArchiveFormat(rawValue: method.rawValue)!])
        #expect(segments[1].entries.map(\.path) == ["usr", "init"])
        #expect(segments[1].offset == 512)
    }

    @Test func corruptDataIsNamed() throws {
        var bytes = try archive { try $0.file("a", permissions: 0o644, contents: [1]) }
        bytes[10] = UInt8(ascii: "z")
        #expect {
            try CpioReader.readArchive(bytes, keepData: false, source: "img")
        } throws: { ($0 as? SSIError)?.message.contains("img: corrupt header at byte 0") == true }
        #expect(throws: SSIError.self) {
            try CpioReader.readArchive(Array(bytes[0..<50]), keepData: false, source: "img")
        }
    }

    @Test func modeStrings() {
        #expect(ImageReader.modeString(0o100644) == "-rw-r--r--")
        #expect(ImageReader.modeString(0o040755) == "drwxr-xr-x")
        #expect(ImageReader.modeString(0o120777) == "lrwxrwxrwx")
        #expect(ImageReader.modeString(0o020600) == "crw-------")
    }
}

@Suite struct CompressionTests {
    func payload() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        var bytes = Array("initramfs ".utf8).flatMap { Array(repeating: $0, count: 300) }
        for _ in 0..<50_000 { bytes.append(UInt8.random(in: 0...255, using: &rng)) }
        return bytes
    }

    @Test(arguments: [Compression.zstd, .gzip, .xz, .none])
    func roundTrip(_ method: Compression) throws {
        let data = payload()
        let out = MemorySink()
        let sink = try method.sink(into: out, level: nil, threads: 2)
        // Many small writes, like cpio headers.
        var i = 0
        while i < data.count {
            let n = min(777, data.count - i)
            try sink.write(Array(data[i..<(i + n)]))
            i += n
        }
        try sink.finish()
        let format = ArchiveFormat.detect(out.bytes[...])
        switch method {
        case .zstd: #expect(format == .zstd)
        case .gzip: #expect(format == .gzip)
        case .xz: #expect(format == .xz)
        case .none: #expect(out.bytes == data)
        }
        if method != .none {
            #expect(out.bytes.count < data.count)
            #expect(try Decompress.all(out.bytes[...], format: format, source: "t") == data)
        }
    }

    @Test func concatenatedStreamsDecompressWhole() throws {
        for method in [Compression.zstd, .gzip, .xz] {
            var all: [UInt8] = []
            for part in ["first ", "second"] {
                let out = MemorySink()
                let s = try method.sink(into: out, level: 1, threads: 0)
                try s.write(Array(part.utf8))
                try s.finish()
                all += out.bytes
            }
            let plain = try Decompress.all(all[...], format: ArchiveFormat.detect(all[...]), source: "t")
            #expect(String(decoding: plain, as: UTF8.self) == "first second", "\(method)")
        }
    }

    @Test func truncatedStreamIsAnError() throws {
        let out = MemorySink()
        let s = try Compression.gzip.sink(into: out, level: 6, threads: 0)
        try s.write(payload())
        try s.finish()
        let cut = out.bytes[0..<(out.bytes.count / 2)]
        #expect(throws: SSIError.self) { try Decompress.all(cut, format: .gzip, source: "t") }
    }

    @Test func unsupportedFormatsAreNamed() {
        #expect(ArchiveFormat.detect([0x02, 0x21, 0x4C, 0x18, 0][...]) == .lz4)
        #expect {
            try Decompress.all([0x02, 0x21, 0x4C, 0x18][...], format: .lz4, source: "img")
        } throws: { ($0 as? SSIError)?.message.contains("lz4-compressed") == true }
    }
}
