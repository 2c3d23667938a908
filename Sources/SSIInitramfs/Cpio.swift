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

/// Parses newc archives from bytes.
public struct CpioReader {
    /// Reads one archive starting at `start`, up to and including its
    /// trailer. Returns the entries and the offset just past the trailer
    /// (or the end of the bytes, for an archive without one).
    public static func readArchive(_ bytes: [UInt8], from start: Int = 0, keepData: Bool,
                                   source: String) throws(SSIError) -> (entries: [CpioEntry], end: Int) {
        var entries: [CpioEntry] = []
        var pos = start
        while pos < bytes.count {
            guard pos + 110 <= bytes.count,
                  bytes[pos..<(pos + 6)].elementsEqual(Cpio.magic) || bytes[pos..<(pos + 6)].elementsEqual(Cpio.magicCRC)
            else {
                throw SSIError("cpio", "\(source): no cpio header at byte \(pos)")
            }
            var f: [UInt32] = []
            for i in 0..<13 {
                guard let v = parseHex8(bytes, pos + 6 + i * 8) else {
                    throw SSIError("cpio", "\(source): corrupt header at byte \(pos)")
                }
                f.append(v)
            }
            let nameSize = Int(f[11])
            let nameStart = pos + 110
            guard nameSize > 0, nameStart + nameSize <= bytes.count else {
                throw SSIError("cpio", "\(source): truncated name at byte \(pos)")
            }
            let name = String(decoding: bytes[nameStart..<(nameStart + nameSize - 1)], as: UTF8.self)
            let dataStart = (nameStart + nameSize + 3) & ~3
            let size = Int(f[6])
            guard dataStart + size <= bytes.count else {
                throw SSIError("cpio", "\(source): \(name) is truncated (\(size) bytes declared)")
            }
            pos = (dataStart + size + 3) & ~3
            if name == Cpio.trailer { return (entries, min(pos, bytes.count)) }
            var header = CpioHeader(inode: f[0], mode: f[1], nlink: f[4], mtime: f[5], fileSize: f[6],
                                    rdevMajor: f[9], rdevMinor: f[10], name: name)
            header.uid = f[2]
            header.gid = f[3]
            var entry = CpioEntry(header: header)
            if entry.isSymlink {
                entry.linkTarget = String(decoding: bytes[dataStart..<(dataStart + size)], as: UTF8.self)
            } else if keepData && entry.isRegular {
                entry.data = Array(bytes[dataStart..<(dataStart + size)])
            }
            entries.append(entry)
        }
        return (entries, bytes.count)
    }
}

private func parseHex8(_ b: [UInt8], _ s: Int) -> UInt32? {
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
