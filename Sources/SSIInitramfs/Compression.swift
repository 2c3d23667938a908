#if canImport(Glibc)
import Glibc
#endif
public import SSICore
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
    private let next: any ByteSink
    private let cctx: OpaquePointer
    private var out = [UInt8](repeating: 0, count: chunkSize)

    init(next: any ByteSink, level: Int32, threads: Int) throws(SSIError) {
        guard let cctx = ZSTD_createCCtx() else { throw SSIError("zstd", "cannot create a compression context") }
        self.cctx = cctx
        self.next = next
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "level \(level)")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1), "checksum")
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
        // windowBits 15 + 16: a gzip header (mtime 0, so reproducible).
        let rc = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw SSIError("gzip", "deflateInit failed (\(rc))") }
    }

    deinit { deflateEnd(&stream) }

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
        // The kernel's XZ decoder verifies CRC32 or nothing: never CRC64.
        let rc = lzma_easy_encoder(&stream, UInt32(level), LZMA_CHECK_CRC32)
        guard rc == LZMA_OK else { throw SSIError("xz", "encoder init failed (\(rc.rawValue))") }
    }

    deinit { lzma_end(&stream) }

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

public enum Decompress {
    /// Decompresses every frame/member from `input` (concatenated streams
    /// included) and returns the bytes.
    public static func all(_ input: ArraySlice<UInt8>, format: ArchiveFormat, source: String) throws(SSIError) -> [UInt8] {
        switch format {
        case .zstd: return try zstd(input, source)
        case .gzip: return try gzip(input, source)
        case .xz: return try xz(input, source)
        case .cpio: return Array(input)
        default:
            throw SSIError("list", "\(source): \(format.rawValue)-compressed archives are not supported",
                           hint: "ssi-mkinitrd reads zstd, gzip, xz and uncompressed images")
        }
    }

    static func zstd(_ input: ArraySlice<UInt8>, _ source: String) throws(SSIError) -> [UInt8] {
        guard let dctx = ZSTD_createDCtx() else { throw SSIError("zstd", "cannot create a context") }
        defer { ZSTD_freeDCtx(dctx) }
        var result: [UInt8] = []
        var out = [UInt8](repeating: 0, count: chunkSize)
        var failure: String?
        input.withUnsafeBytes { inRaw in
            var inBuf = ZSTD_inBuffer(src: inRaw.baseAddress, size: inRaw.count, pos: 0)
            while inBuf.pos < inBuf.size {
                let (rc, produced) = out.withUnsafeMutableBytes { o -> (Int, Int) in
                    var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                    let rc = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                    return (rc, outBuf.pos)
                }
                if ZSTD_isError(rc) != 0 {
                    failure = String(cString: ZSTD_getErrorName(rc))
                    return
                }
                result.append(contentsOf: out[0..<produced])
                if rc == 0 {
                    // End of a frame: skip the zero padding some tools put
                    // between concatenated frames.
                    while inBuf.pos < inBuf.size && inRaw[inBuf.pos] == 0 { inBuf.pos += 1 }
                } else if produced == 0 && inBuf.pos == inBuf.size {
                    failure = "truncated zstd frame"
                    return
                }
            }
        }
        if let failure { throw SSIError("zstd", "\(source): \(failure)") }
        return result
    }

    static func gzip(_ input: ArraySlice<UInt8>, _ source: String) throws(SSIError) -> [UInt8] {
        var result: [UInt8] = []
        var out = [UInt8](repeating: 0, count: chunkSize)
        var failure: String?
        input.withUnsafeBytes { inRaw in
            var pos = 0
            // One z_stream per gzip member: concatenated members are legal.
            while pos < inRaw.count {
                if inRaw[pos] == 0 { pos += 1; continue }
                var strm = z_stream()
                guard inflateInit2_(&strm, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                    failure = "inflateInit failed"
                    return
                }
                defer { inflateEnd(&strm) }
                strm.next_in = UnsafeMutablePointer(mutating: (inRaw.baseAddress! + pos).assumingMemoryBound(to: Bytef.self))
                strm.avail_in = uInt(inRaw.count - pos)
                while true {
                    let (rc, produced) = out.withUnsafeMutableBytes { o -> (Int32, Int) in
                        strm.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
                        strm.avail_out = uInt(o.count)
                        let rc = inflate(&strm, Z_NO_FLUSH)
                        return (rc, o.count - Int(strm.avail_out))
                    }
                    result.append(contentsOf: out[0..<produced])
                    if rc == Z_STREAM_END { break }
                    if rc != Z_OK {
                        failure = "corrupt gzip data (\(rc))"
                        return
                    }
                    if strm.avail_in == 0 && produced == 0 {
                        failure = "truncated gzip data"
                        return
                    }
                }
                pos = inRaw.count - Int(strm.avail_in)
            }
        }
        if let failure { throw SSIError("gzip", "\(source): \(failure)") }
        return result
    }

    static func xz(_ input: ArraySlice<UInt8>, _ source: String) throws(SSIError) -> [UInt8] {
        var strm = lzma_stream()
        guard lzma_stream_decoder(&strm, UInt64.max, 0x08 /* LZMA_CONCATENATED: a macro Swift does not import */) == LZMA_OK else {
            throw SSIError("xz", "decoder init failed")
        }
        defer { lzma_end(&strm) }
        var result: [UInt8] = []
        var out = [UInt8](repeating: 0, count: chunkSize)
        var failure: String?
        input.withUnsafeBytes { inRaw in
            strm.next_in = inRaw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            strm.avail_in = inRaw.count
            while true {
                let action = strm.avail_in == 0 ? LZMA_FINISH : LZMA_RUN
                let (rc, produced) = out.withUnsafeMutableBytes { o -> (lzma_ret, Int) in
                    strm.next_out = o.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    strm.avail_out = o.count
                    let rc = lzma_code(&strm, action)
                    return (rc, o.count - strm.avail_out)
                }
                result.append(contentsOf: out[0..<produced])
                if rc == LZMA_STREAM_END { return }
                if rc != LZMA_OK {
                    failure = "corrupt xz data (\(rc.rawValue))"
                    return
                }
            }
        }
        if let failure { throw SSIError("xz", "\(source): \(failure)") }
        return result
    }
}
