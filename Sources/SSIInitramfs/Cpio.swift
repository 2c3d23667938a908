public import SSICore

/// The "newc" cpio format the kernel unpacks (Documentation/driver-api/
/// early-userspace/buffer-format.rst): a 110-byte ASCII header of 13 eight-
/// digit hex fields, the NUL-terminated name padded to 4 bytes, the data
/// padded to 4 bytes, and a final entry named "TRAILER!!!".
public enum Cpio {
    public static let magic = Array("070701".utf8)
    public static let magicCRC = Array("070702".utf8)
    public static let trailer = "TRAILER!!!"

    public static let typeMask: UInt32 = 0o170000
    public static let typeDirectory: UInt32 = 0o040000
    public static let typeRegular: UInt32 = 0o100000
    public static let typeSymlink: UInt32 = 0o120000
    public static let typeCharDevice: UInt32 = 0o020000
    public static let typeBlockDevice: UInt32 = 0o060000
}

/// Header fields of one entry.
public struct CpioHeader: Sendable, Equatable {
    public var inode: UInt32
    public var mode: UInt32          // type and permission bits
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var nlink: UInt32
    public var mtime: UInt32
    public var fileSize: UInt32
    public var rdevMajor: UInt32 = 0
    public var rdevMinor: UInt32 = 0
    public var name: String

    public init(inode: UInt32, mode: UInt32, nlink: UInt32, mtime: UInt32, fileSize: UInt32,
                rdevMajor: UInt32 = 0, rdevMinor: UInt32 = 0, name: String) {
        self.inode = inode
        self.mode = mode
        self.nlink = nlink
        self.mtime = mtime
        self.fileSize = fileSize
        self.rdevMajor = rdevMajor
        self.rdevMinor = rdevMinor
        self.name = name
    }

    /// The header and padded name as they go on the wire.
    public func encoded() -> [UInt8] {
        let nameBytes = Array(name.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(110 + nameBytes.count + 4)
        out.append(contentsOf: Cpio.magic)
        // ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check
        for field in [inode, mode, uid, gid, nlink, mtime, fileSize, 0, 0,
                      rdevMajor, rdevMinor, UInt32(nameBytes.count + 1), 0] {
            appendHex8(field, to: &out)
        }
        out.append(contentsOf: nameBytes)
        out.append(0)
        while out.count % 4 != 0 { out.append(0) }
        return out
    }
}

@inline(__always)
func appendHex8(_ v: UInt32, to out: inout [UInt8]) {
    let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
    var shift: UInt32 = 28
    for _ in 0..<8 {
        out.append(digits[Int((v >> shift) & 0xf)])
        shift &-= 4
    }
}

/// Streams a newc archive into a sink. The writer numbers inodes in the
/// order entries arrive, so the same entries in the same order give the
/// same bytes: reproducibility is the caller sorting its entries.
public final class CpioWriter {
    private let sink: any ByteSink
    private var nextInode: UInt32 = 1
    public let mtime: UInt32
    public private(set) var offset = 0
    public private(set) var entries = 0

    public init(sink: any ByteSink, mtime: UInt32) {
        self.sink = sink
        self.mtime = mtime
    }

    private func header(_ mode: UInt32, _ size: Int, _ name: String, nlink: UInt32 = 1,
                        major: UInt32 = 0, minor: UInt32 = 0) throws(SSIError) {
        guard size <= Int(UInt32.max) else {
            throw SSIError("cpio", "\(name) is \(size) bytes; newc cannot hold files over 4 GiB")
        }
        let h = CpioHeader(inode: nextInode, mode: mode, nlink: nlink, mtime: mtime,
                           fileSize: UInt32(size), rdevMajor: major, rdevMinor: minor, name: name)
        nextInode += 1
        let bytes = h.encoded()
        try sink.write(bytes)
        offset += bytes.count
        entries += 1
    }

    private func pad() throws(SSIError) {
        let rem = offset % 4
        if rem != 0 {
            let zeros = [UInt8](repeating: 0, count: 4 - rem)
            try sink.write(zeros)
            offset += zeros.count
        }
    }

    public func directory(_ name: String, permissions: UInt32 = 0o755) throws(SSIError) {
        try header(Cpio.typeDirectory | permissions, 0, name, nlink: 2)
    }

    public func symlink(_ name: String, target: String) throws(SSIError) {
        let t = Array(target.utf8)
        try header(Cpio.typeSymlink | 0o777, t.count, name)
        try sink.write(t)
        offset += t.count
        try pad()
    }

    public func characterDevice(_ name: String, permissions: UInt32, major: UInt32, minor: UInt32) throws(SSIError) {
        try header(Cpio.typeCharDevice | permissions, 0, name, major: major, minor: minor)
    }

    public func file(_ name: String, permissions: UInt32, contents: [UInt8]) throws(SSIError) {
        try header(Cpio.typeRegular | permissions, contents.count, name)
        try sink.write(contents)
        offset += contents.count
        try pad()
    }

    /// A regular file whose `size` bytes the caller streams through
    /// `body`, which gets the sink; it must write exactly `size` bytes.
    public func file(_ name: String, permissions: UInt32, size: Int,
                     body: (any ByteSink) throws(SSIError) -> Int) throws(SSIError) {
        try header(Cpio.typeRegular | permissions, size, name)
        let written = try body(sink)
        guard written == size else {
            throw SSIError("cpio", "\(name) changed while it was read (\(written) of \(size) bytes)",
                           hint: "run again when nothing is writing to it")
        }
        offset += written
        try pad()
    }

    /// Writes the trailer. The sink is not finished: the caller may append
    /// another archive, as the kernel accepts concatenated ones.
    public func finish() throws(SSIError) {
        try header(0, 0, Cpio.trailer)
    }
}

/// One entry read back from an archive.
public struct CpioEntry: Sendable, Equatable {
    public var header: CpioHeader
    /// Symlink target, for symlinks.
    public var linkTarget: String?
    /// The file's bytes (only kept when the reader is asked to).
    public var data: [UInt8]?

    public var path: String { header.name }
    public var size: Int { Int(header.fileSize) }
    public var isDirectory: Bool { header.mode & Cpio.typeMask == Cpio.typeDirectory }
    public var isSymlink: Bool { header.mode & Cpio.typeMask == Cpio.typeSymlink }
    public var isRegular: Bool { header.mode & Cpio.typeMask == Cpio.typeRegular }
}

/// Parses newc archives, streamed from a reader. Every header field is
/// checked before it is used: eight hex digits each, a name of 1 to 4096
/// bytes (the kernel's PATH_MAX) ending in NUL, a symlink target of at most
/// 4096 bytes; file data is skipped, or kept a chunk at a time when asked,
/// so a size read from the archive never allocates by itself. An archive
/// must end with its TRAILER!!! entry: one that does not was cut short,
/// and the kernel would boot whatever part of it arrived.
public struct CpioReader {
    /// The longest name or symlink target, NUL included for names.
    public static let maxPath = 4096
    static let fieldNames = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
                             "rdevmajor", "rdevminor", "namesize", "check"]

    /// Reads one archive from `reader`, up to and including its trailer,
    /// handing each entry to `visit`. `source` names the stream in errors
    /// ("img", "img (zstd stream at byte 512)"); offsets are the reader's.
    public static func readArchive(_ reader: ByteReader, keepData: Bool, source: String,
                                   visit: (CpioEntry) throws(SSIError) -> Void) throws(SSIError) {
        while true {
            let pos = reader.offset
            let raw = try reader.read(110)
            if raw.isEmpty {
                throw SSIError("cpio", "\(source): the archive ends at byte \(pos) without its \(Cpio.trailer) entry",
                               hint: "the image is truncated; rebuild or copy it again")
            }
            guard raw.count == 110 else {
                throw SSIError("cpio", "\(source): truncated header at byte \(pos) (\(raw.count) of 110 bytes)",
                               hint: "the image is truncated; rebuild or copy it again")
            }
            guard raw[0..<6].elementsEqual(Cpio.magic) || raw[0..<6].elementsEqual(Cpio.magicCRC) else {
                throw SSIError("cpio", "\(source): no cpio header at byte \(pos)",
                               hint: "a newc header starts with 070701 or 070702")
            }
            var f: [UInt32] = []
            for i in 0..<13 {
                guard let v = parseHex8(raw, 6 + i * 8) else {
                    throw SSIError("cpio", "\(source): corrupt header at byte \(pos): \(fieldNames[i]) is not 8 hex digits")
                }
                f.append(v)
            }
            let nameSize = Int(f[11])
            guard nameSize >= 1 && nameSize <= maxPath else {
                throw SSIError("cpio", "\(source): corrupt header at byte \(pos): namesize \(nameSize) is not between 1 and \(maxPath)")
            }
            let nameBytes = try reader.read(nameSize)
            guard nameBytes.count == nameSize else {
                throw SSIError("cpio", "\(source): truncated name at byte \(pos + 110)",
                               hint: "the image is truncated; rebuild or copy it again")
            }
            guard nameBytes[nameSize - 1] == 0 else {
                throw SSIError("cpio", "\(source): corrupt header at byte \(pos): the name is not NUL-terminated")
            }
            let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
            let shown = printableName(name)
            try pad(reader, source: source, what: "name of \(shown)", required: name != Cpio.trailer)
            let size = Int(f[6])
            var header = CpioHeader(inode: f[0], mode: f[1], nlink: f[4], mtime: f[5], fileSize: f[6],
                                    rdevMajor: f[9], rdevMinor: f[10], name: name)
            header.uid = f[2]
            header.gid = f[3]
            var entry = CpioEntry(header: header)
            let dataStart = reader.offset
            func truncated(_ got: Int) -> SSIError {
                SSIError("cpio", "\(source): \(shown) at byte \(pos) is truncated (\(size) bytes declared, \(got) present from byte \(dataStart))",
                         hint: "the image is truncated; rebuild or copy it again")
            }
            if entry.isSymlink && name != Cpio.trailer {
                guard size <= maxPath else {
                    throw SSIError("cpio", "\(source): symlink \(shown) at byte \(pos) has a \(size)-byte target (at most \(maxPath))")
                }
                let target = try reader.read(size)
                guard target.count == size else { throw truncated(target.count) }
                entry.linkTarget = String(decoding: target, as: UTF8.self)
            } else if keepData && entry.isRegular && name != Cpio.trailer {
                let data = try reader.read(size)
                guard data.count == size else { throw truncated(data.count) }
                entry.data = data
            } else {
                let got = try reader.skip(size)
                guard got == size else { throw truncated(got) }
            }
            if name == Cpio.trailer {
                // The kernel stops at the trailer; padding after it may be
                // cut at the end of a file.
                try pad(reader, source: source, what: "trailer", required: false)
                return
            }
            try pad(reader, source: source, what: "data of \(shown)", required: true)
            try visit(entry)
        }
    }

    /// Skips to the next multiple of 4 (offsets count from the start of
    /// the stream, as the kernel's do).
    private static func pad(_ reader: ByteReader, source: String, what: String, required: Bool) throws(SSIError) {
        let want = (4 - reader.offset % 4) % 4
        let got = try reader.skip(want)
        if got < want && required {
            throw SSIError("cpio", "\(source): the padding after the \(what) is cut at byte \(reader.offset)",
                           hint: "the image is truncated; rebuild or copy it again")
        }
    }

    /// Reads one archive from `bytes` starting at `start`. Returns the
    /// entries and the offset just past the trailer.
    public static func readArchive(_ bytes: [UInt8], from start: Int = 0, keepData: Bool,
                                   source: String) throws(SSIError) -> (entries: [CpioEntry], end: Int) {
        let from = min(max(start, 0), bytes.count)
        let reader = ByteReader(MemorySource(bytes[from...]), offset: from)
        var entries: [CpioEntry] = []
        try readArchive(reader, keepData: keepData, source: source) { (e) throws(SSIError) in entries.append(e) }
        return (entries, reader.offset)
    }
}

private func parseHex8(_ b: [UInt8], _ s: Int) -> UInt32? {
    guard s >= 0, s + 8 <= b.count else { return nil }
    var v: UInt32 = 0
    for i in s..<(s + 8) {
        let c = b[i]
        let d: UInt8
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
        default: return nil
        }
        v = v << 4 | UInt32(d)
    }
    return v
}
