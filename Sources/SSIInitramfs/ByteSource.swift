#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// Where image bytes come from when an image is read back: a file, a
/// buffer, a decompressor. Reading is pulled in chunks, so that listing an
/// image holds a chunk at a time, never the whole (decompressed) image.
public protocol ByteSource: AnyObject {
    /// Fills up to `buffer.count` bytes; 0 only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int
}

extension ByteSource {
    /// Fills `array` from `at` to its end, as `read(into:)` does
    /// (withUnsafeMutableBytes does not carry a typed error out by itself).
    func read(into array: inout [UInt8], at: Int = 0) throws(SSIError) -> Int {
        let result = array.withUnsafeMutableBytes { raw -> Result<Int, SSIError> in
            do throws(SSIError) {
                return .success(try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[at...])))
            } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// An image file opened for reading: only a regular file, and never more
/// than the size it had when opened. A FIFO, a character device
/// (/dev/zero) or a socket would be read forever; they are refused at
/// open, which does not block (O_NONBLOCK) even on a FIFO with no writer.
public final class ImageFile: ByteSource {
    private let file: Descriptor
    public let path: String
    public let size: Int
    private var remaining: Int

    /// `limit`: the largest file accepted; no initramfs comes near it.
    public init(path: String, limit: Int) throws(SSIError) {
        let shown = printableName(path)
        let file: Descriptor
        do throws(SystemCallError) { file = try Descriptor(open: path, O_RDONLY | O_NONBLOCK | O_NOCTTY) } catch {
            throw SSIError("list", "cannot read \(shown): \(errnoDescription(error.errno))")
        }
        let st: FileSystem.Status
        do { st = try FileSystem.fstatus(file.rawValue) } catch {
            throw SSIError("list", "cannot read \(shown): \(error.description)")
        }
        guard st.kind == .regular else {
            throw SSIError("list", "\(shown) is \(Self.article(st.kind)), not an image file",
                           hint: "give the path of an initramfs image (a regular file); save a stream to a file first")
        }
        guard st.size <= limit else {
            throw SSIError("list", "\(shown) is \(st.size) bytes, more than the \(limit >> 20) MiB an initramfs can be",
                           hint: "this is not an initramfs image")
        }
        self.file = file
        self.path = path
        self.size = st.size
        self.remaining = st.size
    }

    static func article(_ kind: FileSystem.Kind) -> String {
        switch kind {
        case .regular: return "a regular file"
        case .directory: return "a directory"
        case .symlink: return "a symbolic link"
        case .characterDevice: return "a character device"
        case .blockDevice: return "a block device"
        case .fifo: return "a FIFO"
        case .socket: return "a socket"
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        let want = min(buffer.count, remaining)
        guard want > 0 else { return 0 }
        let n: Int
        do {
            n = try syscall("read") { Glibc.read(file.rawValue, buffer.baseAddress, want) }
        } catch {
            throw SSIError("list", "reading \(printableName(path)): \(errnoDescription(error.errno))")
        }
        // A file that shrank while read ends early: what follows in the
        // reader reports it as truncated.
        remaining = n == 0 ? 0 : remaining - n
        return n
    }
}

/// Bytes already in memory (tests, the `[UInt8]` entry points).
public final class MemorySource: ByteSource {
    private let bytes: ArraySlice<UInt8>
    private var pos: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.pos = bytes.startIndex
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        let n = min(buffer.count, bytes.endIndex - pos)
        guard n > 0 else { return 0 }
        bytes[pos..<(pos + n)].withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
        pos += n
        return n
    }
}

/// A buffered reader over a source that knows how far it has read: the
/// cpio parser's view of an (uncompressed) stream. It is itself a source,
/// so a decompressor can take over the rest of a file after the bytes
/// that were looked at to detect the format.
public final class ByteReader: ByteSource {
    private let source: any ByteSource
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var ended = false
    /// Bytes consumed so far, plus the offset the reader started at.
    public private(set) var offset: Int

    public init(_ source: any ByteSource, offset: Int = 0, capacity: Int = 1 << 16) {
        self.source = source
        self.offset = offset
        self.buffer = [UInt8](repeating: 0, count: max(capacity, 256))
    }

    /// Buffered bytes, refilled when empty; false at the end.
    private func fill() throws(SSIError) -> Bool {
        if start < end { return true }
        if ended { return false }
        start = 0
        end = 0
        let n = try readSource(into: 0, count: buffer.count)
        if n == 0 { ended = true }
        end = n
        return n > 0
    }

    private func readSource(into at: Int, count: Int) throws(SSIError) -> Int {
        let result = buffer.withUnsafeMutableBytes { raw -> Result<Int, SSIError> in
            do throws(SSIError) {
                return .success(try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[at..<(at + count)])))
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Up to `count` bytes (at most the buffer's capacity) without
    /// consuming them; fewer only at the end.
    public func peek(_ count: Int) throws(SSIError) -> ArraySlice<UInt8> {
        let count = min(count, buffer.count)
        if end - start < count && !ended {
            // Move what is left to the front, then fill behind it.
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    raw.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: end - start)
                }
                end -= start
                start = 0
            }
            while end - start < count && !ended {
                let n = try readSource(into: end, count: buffer.count - end)
                if n == 0 { ended = true }
                end += n
            }
        }
        return buffer[start..<min(end, start + count)]
    }

    public var atEnd: Bool {
        get throws(SSIError) { try !fill() }
    }

    /// Exactly `count` bytes, or fewer at the end. The result grows as
    /// bytes arrive: a size read from the input never allocates by itself.
    public func read(_ count: Int) throws(SSIError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(count, buffer.count))
        while out.count < count, try fill() {
            let n = min(count - out.count, end - start)
            out.append(contentsOf: buffer[start..<(start + n)])
            start += n
            offset += n
        }
        return out
    }

    /// Skips up to `count` bytes; returns how many were there.
    @discardableResult
    public func skip(_ count: Int) throws(SSIError) -> Int {
        var skipped = 0
        while skipped < count, try fill() {
            let n = min(count - skipped, end - start)
            start += n
            offset += n
            skipped += n
        }
        return skipped
    }

    /// Skips zero bytes (the padding between concatenated archives).
    public func skipZeros() throws(SSIError) {
        while try fill() {
            while start < end && buffer[start] == 0 {
                start += 1
                offset += 1
            }
            if start < end { return }
        }
    }

    public func read(into out: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        if start < end {
            let n = min(out.count, end - start)
            buffer.withUnsafeBytes { raw in out.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: n) }
            start += n
            offset += n
            return n
        }
        if ended { return 0 }
        // Nothing buffered: read straight into the caller's buffer.
        let n = try source.read(into: out)
        if n == 0 { ended = true }
        offset += n
        return n
    }
}

/// A name from an image or a file, fit to print on a terminal: control
/// characters (C0, DEL and C1, which includes the one-byte CSI) escaped as
/// SSICore's `printable` does, and a backslash doubled, so that the text
/// "\u001B" in a name can be told from ESC. Bytes that were not UTF-8 were
/// already decoded as U+FFFD, which prints as itself.
public func printableName<S: StringProtocol>(_ name: S) -> String { printable(name, escapingBackslash: true) }
