public import SSICore
import SSILinux

/// Reads an initramfs back, whatever the generator: one or more cpio
/// archives, each uncompressed or compressed (an early-microcode cpio in
/// front of a compressed main archive is the common case).
public enum ImageReader {
    public struct Segment: Sendable {
        public var format: ArchiveFormat
        public var offset: Int
        public var entries: [CpioEntry]
    }

    /// What a scan meets, in order.
    public enum Event {
        /// An archive starts: how it is stored, and where in the file.
        case archive(format: ArchiveFormat, offset: Int)
        case entry(CpioEntry)
        /// The archive just started ended with its trailer.
        case archiveEnd(entries: Int)
    }

    /// The largest image file read, and the most a compressed stream in
    /// it may unpack to.
    public static let defaultLimit = Decompress.defaultLimit

    /// Reads the image at `path` as a stream, handing each archive and
    /// entry to `visit` as it is read: memory stays a few chunks whatever
    /// the image holds. Only a regular file is read (a FIFO or /dev/zero
    /// would never end).
    public static func scan(path: String, keepData: Bool = false, limit: Int = defaultLimit,
                            visit: (Event) throws(SSIError) -> Void) throws(SSIError) {
        let file = try ImageFile(path: path, limit: limit)
        try scan(file, source: printableName(path), keepData: keepData, limit: limit, visit: visit)
    }

    /// The same over any source; `source` names it in errors.
    public static func scan(_ input: any ByteSource, source: String, keepData: Bool, limit: Int = defaultLimit,
                            visit: (Event) throws(SSIError) -> Void) throws(SSIError) {
        let reader = ByteReader(input)
        var archives = 0
        while true {
            try reader.skipZeros()   // padding between archives
            if try reader.atEnd { break }
            let pos = reader.offset
            let format = ArchiveFormat.detect(try reader.peek(8))
            switch format {
            case .cpio:
                archives += 1
                try visit(.archive(format: .cpio, offset: pos))
                var count = 0
                try CpioReader.readArchive(reader, keepData: keepData, source: source) { (e) throws(SSIError) in
                    count += 1
                    try visit(.entry(e))
                }
                try visit(.archiveEnd(entries: count))
            case .unknown:
                throw SSIError("list", "\(source): unrecognized data at byte \(pos)",
                               hint: "not a cpio archive nor a zstd, gzip or xz stream")
            default:
                // A compressed stream runs to the end of the image; inside
                // it there may be several archives again.
                let plain = ByteReader(try Decompress.source(reader, format: format, source: source,
                                                             offset: pos, limit: limit))
                let inner = "\(source) (\(format.rawValue) stream at byte \(pos), unpacked)"
                var inside = 0
                while true {
                    try plain.skipZeros()
                    if try plain.atEnd { break }
                    inside += 1
                    try visit(.archive(format: format, offset: pos))
                    var count = 0
                    try CpioReader.readArchive(plain, keepData: keepData, source: inner) { (e) throws(SSIError) in
                        count += 1
                        try visit(.entry(e))
                    }
                    try visit(.archiveEnd(entries: count))
                }
                if inside == 0 { throw SSIError("list", "\(source): the \(format.rawValue) stream at byte \(pos) holds no archive") }
                return
            }
        }
        if archives == 0 { throw SSIError("list", "\(source) is empty") }
    }

    /// Every archive with its entries, in memory (tests, small images).
    public static func read(path: String, keepData: Bool = false) throws(SSIError) -> [Segment] {
        var segments: [Segment] = []
        try scan(path: path, keepData: keepData) { (event) throws(SSIError) in collect(event, into: &segments) }
        return segments
    }

    public static func read(bytes: [UInt8], source: String, keepData: Bool) throws(SSIError) -> [Segment] {
        var segments: [Segment] = []
        try scan(MemorySource(bytes[...]), source: printableName(source), keepData: keepData) { (event) throws(SSIError) in
            collect(event, into: &segments)
        }
        return segments
    }

    private static func collect(_ event: Event, into segments: inout [Segment]) {
        switch event {
        case .archive(let format, let offset): segments.append(Segment(format: format, offset: offset, entries: []))
        case .entry(let e): segments[segments.count - 1].entries.append(e)
        case .archiveEnd: break
        }
    }

    /// `ssi-mkinitrd --list`: one line per entry, written as it is read
    /// (an image of a million entries is listed in constant memory), names
    /// and link targets with control characters escaped. An archive's
    /// entry count follows its entries, on a line that does not start with
    /// "# archive" (bench/initramfs-bench.sh counts those).
    public static func list(path: String, limit: Int = defaultLimit, write: (String) -> Void) throws(SSIError) {
        var index = 0
        try scan(path: path, limit: limit) { (event) throws(SSIError) in
            switch event {
            case .archive(let format, let offset):
                index += 1
                write("# archive \(index) at byte \(offset): \(format == .cpio ? "uncompressed" : format.rawValue)\n")
            case .entry(let e):
                let size = String(e.size)
                var line = modeString(e.header.mode) + " "
                    + String(repeating: " ", count: max(0, 10 - size.count)) + size + " " + printableName(e.path)
                if let t = e.linkTarget { line += " -> " + printableName(t) }
                write(line + "\n")
            case .archiveEnd(let count):
                write("# end of archive \(index): \(count) entries\n")
            }
        }
    }

    /// "drwxr-xr-x", "-rw-r--r--", "lrwxrwxrwx", "crw-------".
    public static func modeString(_ mode: UInt32) -> String {
        let type: Character
        switch mode & Cpio.typeMask {
        case Cpio.typeDirectory: type = "d"
        case Cpio.typeSymlink: type = "l"
        case Cpio.typeCharDevice: type = "c"
        case Cpio.typeBlockDevice: type = "b"
        case 0o010000: type = "p"
        case 0o140000: type = "s"
        default: type = "-"
        }
        var s = String(type)
        let chars: [Character] = ["r", "w", "x"]
        for i in 0..<9 {
            let bit = UInt32(1) << UInt32(8 - i)
            s.append(mode & bit != 0 ? chars[i % 3] : "-")
        }
        return s
    }
}
