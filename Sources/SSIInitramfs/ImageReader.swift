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

    public static func read(path: String, keepData: Bool = false) throws(SSIError) -> [Segment] {
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path) } catch {
            throw SSIError("list", "cannot read \(path): \(errnoDescription(error.errno))")
        }
        return try read(bytes: bytes, source: path, keepData: keepData)
    }

    public static func read(bytes: [UInt8], source: String, keepData: Bool) throws(SSIError) -> [Segment] {
        var segments: [Segment] = []
        var pos = 0
        while true {
            while pos < bytes.count && bytes[pos] == 0 { pos += 1 }   // padding
            if pos >= bytes.count { break }
            let format = ArchiveFormat.detect(bytes[pos...])
            switch format {
            case .cpio:
                let (entries, end) = try CpioReader.readArchive(bytes, from: pos, keepData: keepData, source: source)
                segments.append(Segment(format: .cpio, offset: pos, entries: entries))
                pos = end
            case .unknown:
                throw SSIError("list", "\(source): unrecognized data at byte \(pos)",
                               hint: "not a cpio archive nor a zstd, gzip or xz stream")
            default:
                // A compressed stream runs to the end of the image; inside
                // it there may be several archives again.
                let plain = try Decompress.all(bytes[pos...], format: format, source: source)
                var inner = 0
                while inner < plain.count {
                    let (entries, end) = try CpioReader.readArchive(plain, from: inner, keepData: keepData,
                                                                    source: "\(source) (\(format.rawValue))")
                    segments.append(Segment(format: format, offset: pos, entries: entries))
                    inner = end
                    while inner < plain.count && plain[inner] == 0 { inner += 1 }
                }
                pos = bytes.count
            }
        }
        if segments.isEmpty { throw SSIError("list", "\(source) is empty") }
        return segments
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
