#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// Where archive bytes go: a file, through a compressor, through a buffer.
/// The image is streamed from the source files to the output file in one
/// pass; nothing holds the whole archive in memory.
public protocol ByteSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError)
    /// Flushes everything down to the file. No writes after it.
    func finish() throws(SSIError)
}

extension ByteSink {
    public func write(_ bytes: [UInt8]) throws(SSIError) {
        // withUnsafeBytes rethrows untyped errors; carry ours out by hand.
        let failure = bytes.withUnsafeBytes { raw -> SSIError? in
            do throws(SSIError) { try write(raw); return nil } catch { return error }
        }
        if let failure { throw failure }
    }
}

/// Writes to an open file descriptor the caller owns.
public final class FileSink: ByteSink {
    let fd: Int32
    let name: String
    public private(set) var bytesWritten = 0

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError) {
        do {
            try writeAll(fd, bytes, name: name)
        } catch {
            throw SSIError("write", error.description)
        }
        bytesWritten += bytes.count
    }

    public func finish() throws(SSIError) {}
}

/// Collects bytes in memory (tests, small archives).
public final class MemorySink: ByteSink {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public func write(_ raw: UnsafeRawBufferPointer) throws(SSIError) {
        bytes.append(contentsOf: raw)
    }
    public func finish() throws(SSIError) {}
}

/// Gathers the many small writes of cpio headers into large ones, so that a
/// compressor sees big blocks and the file sees few syscalls.
public final class BufferedSink: ByteSink {
    private let next: any ByteSink
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0

    public init(_ next: any ByteSink, capacity: Int = 1 << 20) {
        self.next = next
        self.buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError) {
        if bytes.count >= buffer.count {
            try flush()
            try next.write(bytes)
            return
        }
        if used + bytes.count > buffer.count { try flush() }
        UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + bytes.count)]).copyMemory(from: bytes)
        used += bytes.count
    }

    private func flush() throws(SSIError) {
        guard used > 0 else { return }
        try next.write(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
        used = 0
    }

    public func finish() throws(SSIError) {
        try flush()
        try next.finish()
    }
}
