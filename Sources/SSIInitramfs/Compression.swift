#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux
import CZstd
import CZlib
import CLzma

/// The compressions an initramfs can use that Debian's kernel unpacks and
/// that we write in-process through the libraries (never by spawning a
/// program).
public enum Compression: String, CaseIterable, Sendable {
    case zstd, gzip, xz, none

    /// Default levels: chosen in BENCHMARKS.md for the best size/time trade
    /// on 2 cores; `--compress-level` overrides.
    public var defaultLevel: Int32 {
        switch self {
        case .zstd: return 3
        case .gzip: return 6
        case .xz: return 6
        case .none: return 0
        }
    }

    /// A sink that compresses into `next`.
    public func sink(into next: any ByteSink, level: Int32?, threads: Int) throws(SSIError) -> any ByteSink {
        switch self {
        case .zstd: return try ZstdSink(next: next, level: level ?? defaultLevel, threads: threads)
        case .gzip: return try GzipSink(next: next, level: level ?? defaultLevel)
        case .xz: return try XzSink(next: next, level: level ?? defaultLevel)
        case .none: return next
        }
    }
}

private let chunkSize = 1 << 20

final class ZstdSink: ByteSink {
    /// 8 MiB, for every level: the ultra levels' 128 MiB would make the
    /// booting kernel allocate that much to unpack the image.
    static let windowLog: Int32 = 23
    private let next: any ByteSink
    private let cctx: OpaquePointer
    private var out = [UInt8](repeating: 0, count: chunkSize)

    init(next: any ByteSink, level: Int32, threads: Int) throws(SSIError) {
        try LazyLibrary.zstd.load()
        guard let cctx = ZSTD_createCCtx() else { throw SSIError("zstd", "cannot create a compression context") }
        self.cctx = cctx
        self.next = next
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "level \(level)")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
        // Long-distance matching over an 8 MiB window: kernel modules
        // repeat each other's strings and code far apart in the archive,
        // beyond level 3's 2 MiB window. 4% smaller at the same speed
        // (BENCHMARKS.md, "Image"); the kernel's unzstd takes windows far
        // larger, and 8 MiB is also what level 19 uses.
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, Self.windowLog), "window")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1), "long-distance matching")
        // Worker threads change speed, not bytes: zstd's multithreaded
        // output is the same for any worker count >= 1, so images stay
        // reproducible across machines. A libzstd built without threads
        // refuses the parameter; compress on one thread then.
        if threads > 0 {
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, Int32(threads))
        }
    }

    deinit { ZSTD_freeCCtx(cctx) }

    private func check(_ rc: Int, _ what: String) throws(SSIError) {
        if ZSTD_isError(rc) != 0 {
            throw SSIError("zstd", "\(what): \(String(cString: ZSTD_getErrorName(rc)))")
        }
    }

    private func pump(_ input: UnsafeRawBufferPointer, _ mode: ZSTD_EndDirective) throws(SSIError) {
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while true {
            let (rc, produced) = out.withUnsafeMutableBytes { o -> (Int, Int) in
                var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let rc = ZSTD_compressStream2(cctx, &outBuf, &inBuf, mode)
                return (rc, outBuf.pos)
            }
            try check(rc, "compress")
            if produced > 0 { try next.write(Array(out[0..<produced])) }
            let done = mode == ZSTD_e_end ? rc == 0 : inBuf.pos == inBuf.size
            if done { return }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError) {
        try pump(bytes, ZSTD_e_continue)
    }

    func finish() throws(SSIError) {
        try pump(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end)
        try next.finish()
    }
}

final class GzipSink: ByteSink {
    private let next: any ByteSink
    private var stream = z_stream()
    private var out = [UInt8](repeating: 0, count: chunkSize)

    init(next: any ByteSink, level: Int32) throws(SSIError) {
        self.next = next
        try LazyLibrary.zlib.load()
        // windowBits 15 + 16: a gzip header (mtime 0, so reproducible).
        let rc = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw SSIError("gzip", "deflateInit failed (\(rc))") }
    }

    // An init that threw before the library loaded left nothing to end.
    deinit { if LazyLibrary.zlib.isLoaded { deflateEnd(&stream) } }

    private func pump(_ input: UnsafeRawBufferPointer, flush: Int32) throws(SSIError) {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        while true {
            let (rc, produced) = out.withUnsafeMutableBytes { o -> (Int32, Int) in
                stream.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(o.count)
                let rc = deflate(&stream, flush)
                return (rc, o.count - Int(stream.avail_out))
            }
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw SSIError("gzip", "deflate failed (\(rc))")
            }
            if produced > 0 { try next.write(Array(out[0..<produced])) }
            if flush == Z_FINISH ? rc == Z_STREAM_END : stream.avail_in == 0 { return }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError) { try pump(bytes, flush: Z_NO_FLUSH) }

    func finish() throws(SSIError) {
        try pump(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
        try next.finish()
    }
}

final class XzSink: ByteSink {
    private let next: any ByteSink
    private var stream = lzma_stream()
    private var out = [UInt8](repeating: 0, count: chunkSize)

    init(next: any ByteSink, level: Int32) throws(SSIError) {
        self.next = next
        try LazyLibrary.lzma.load()
        // The kernel's XZ decoder verifies CRC32 or nothing: never CRC64.
        let rc = lzma_easy_encoder(&stream, UInt32(level), LZMA_CHECK_CRC32)
        guard rc == LZMA_OK else { throw SSIError("xz", "encoder init failed (\(rc.rawValue))") }
    }

    deinit { if LazyLibrary.lzma.isLoaded { lzma_end(&stream) } }

    private func pump(_ input: UnsafeRawBufferPointer, action: lzma_action) throws(SSIError) {
        stream.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        while true {
            let (rc, produced) = out.withUnsafeMutableBytes { o -> (lzma_ret, Int) in
                stream.next_out = o.baseAddress!.assumingMemoryBound(to: UInt8.self)
                stream.avail_out = o.count
                let rc = lzma_code(&stream, action)
                return (rc, o.count - stream.avail_out)
            }
            guard rc == LZMA_OK || rc == LZMA_STREAM_END else {
                throw SSIError("xz", "compression failed (\(rc.rawValue))")
            }
            if produced > 0 { try next.write(Array(out[0..<produced])) }
            if action == LZMA_FINISH ? rc == LZMA_STREAM_END : stream.avail_in == 0 { return }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SSIError) { try pump(bytes, action: LZMA_RUN) }

    func finish() throws(SSIError) {
        try pump(UnsafeRawBufferPointer(start: nil, count: 0), action: LZMA_FINISH)
        try next.finish()
    }
}

// MARK: - Reading images back

/// What the bytes at the start of a buffer are.
public enum ArchiveFormat: String, Sendable {
    case cpio, zstd, gzip, xz, lzma, bzip2, lz4, lzo, unknown

    public static func detect(_ b: ArraySlice<UInt8>) -> ArchiveFormat {
        func starts(_ m: [UInt8]) -> Bool { b.count >= m.count && b.prefix(m.count).elementsEqual(m) }
        if starts(Cpio.magic) || starts(Cpio.magicCRC) { return .cpio }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        if starts([0x1F, 0x8B]) { return .gzip }
        if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .xz }
        if starts([0x5D, 0x00, 0x00]) { return .lzma }
        if starts([0x42, 0x5A, 0x68]) { return .bzip2 }
        if starts([0x02, 0x21, 0x4C, 0x18]) { return .lz4 }
        if starts([0x89, 0x4C, 0x5A, 0x4F]) { return .lzo }
        return .unknown
    }
}

