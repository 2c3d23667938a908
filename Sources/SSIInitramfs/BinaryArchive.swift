#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// The ssi binary packed once, at zstd's level 19, into a cpio archive of
/// its own that every later zstd image appends as is (the kernel unpacks
/// concatenated archives, each compressed on its own).
///
/// Why: the binary is a third of what an image carries and the same in
/// every image, but it was compressed again, at level 3, by every build.
/// Packed once when the package is built it is 22% smaller (3.3 MB
/// instead of 4.3) and costs a build no compression at all
/// (DESIGN-NOTES.md, "The packed binary"; BENCHMARKS.md, "Image").
///
/// The archive sits in `DIR/../lib/ssi/` for a binary in `DIR`
/// (/usr/sbin/ssi: /usr/lib/ssi/), named by the binary's build id and
/// size: the linker's hash of the file's contents says the archive holds
/// exactly this binary, without reading 10 MB at every build. A binary
/// with no archive (a development build, another --ssi-binary) is
/// compressed into the image as before.
public enum BinaryArchive {
    public static let level: Int32 = 19

    /// Where `binary`'s archive lives.
    public static func directory(for binary: String) -> String {
        dirname(of: dirname(of: binary)) + "/lib/ssi"
    }

    static func name(buildID: [UInt8], size: Int) -> String {
        "ssi-" + buildID.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() + "-\(size).cpio.zst"
    }

    /// The expected path of `binary`'s archive, or nil when the binary has
    /// no build id (it cannot have one).
    public static func path(for binary: String) -> String? {
        guard let info = try? ELF.read(binary), let id = info.buildID,
              let size = try? FileSystem.status(binary, followSymlinks: true).size else { return nil }
        return directory(for: binary) + "/" + name(buildID: id, size: size)
    }

    /// `binary`'s archive when it was packed and still looks like a zstd
    /// stream; nil otherwise (the image then compresses the binary).
    public static func find(for binary: String) -> String? {
        guard let path = path(for: binary),
              let file = try? Descriptor(open: path, O_RDONLY | O_NONBLOCK | O_NOCTTY),
              (try? FileSystem.fstatus(file.rawValue).kind) == .regular else { return nil }
        var head = [UInt8](repeating: 0, count: 4)
        let n = head.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, 4, 0) }
        return n == 4 && head == zstdMagic ? path : nil
    }

    static let zstdMagic: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd]

    /// Packs `binary` as `usr/bin/ssi` (mode 0755, `mtime`), writing the
    /// archive atomically, and removes the archives of other binaries
    /// beside it. Returns its path.
    @discardableResult
    public static func pack(_ binary: String, threads: Int, mtime: UInt32) throws(SSIError) -> String {
        guard let path = path(for: binary) else {
            throw SSIError("mkinitrd", "--pack-binary: \(printableName(binary)) has no build id (an ELF note the linker writes with --build-id)",
                           hint: "build it with scripts/build, whose link writes one")
        }
        let dir = directory(for: binary)
        do throws(SystemCallError) { try FileSystem.makeDirectories(dir, mode: 0o755) } catch {
            throw SSIError("mkinitrd", "--pack-binary: cannot create \(dir): \(error.description)")
        }
        var tree = ImageTree()
        let size: Int
        do { size = try FileSystem.status(binary, followSymlinks: true).size } catch {
            throw SSIError("mkinitrd", "--pack-binary: \(binary): \(error.description)")
        }
        try tree.add("usr/bin/ssi", .hostFile(source: binary, permissions: 0o755, size: size))
        let target: AtomicFile
        do throws(SystemCallError) { target = try AtomicFile(path, mode: 0o644, replace: true) } catch {
            throw SSIError("mkinitrd", "--pack-binary: cannot write \(path): \(error.description)")
        }
        let file = FileSink(fd: target.fd, name: target.temporaryPath)
        let sink = BufferedSink(try Compression.zstd.sink(into: file, level: level, threads: threads))
        let cpio = CpioWriter(sink: sink, mtime: mtime)
        try ImageBuilder.stream(tree, into: cpio)
        try cpio.finish()
        try sink.finish()
        do throws(SystemCallError) { try target.commit() } catch {
            throw SSIError("mkinitrd", "--pack-binary: cannot write \(path): \(error.description)")
        }
        let keep = basename(of: path)
        for old in (try? FileSystem.list(dir)) ?? [] where old != keep && old.hasPrefix("ssi-") && old.hasSuffix(".cpio.zst") {
            try? FileSystem.unlink(dir + "/" + old)
        }
        return path
    }
}
