#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux
import CZstd
import CZlib
import CLzma

/// Reading compressed images back, as a stream: a decompressor is a
/// `ByteSource` that pulls compressed bytes from another source and hands
/// out plain bytes a chunk at a time. Three things no input may do to it:
/// make it hold the whole output (it never does: the caller takes chunks),
/// make it run without end (the total output is bounded, `limit`), or pass
/// for complete when it was cut (a stream that ends inside a frame, member
/// or block is an error that says where).
public enum Decompress {
    /// The most a compressed stream may unpack to: 4 GiB, above any real
    /// initramfs (the kernel unpacks it into RAM; newc cannot even hold a
    /// file of 4 GiB) and reached by a bomb in a few seconds, not minutes.
    public static let defaultLimit = 4 << 30

    /// A source of the plain bytes of the `format` stream in `input`,
    /// concatenated frames/members included. `offset` is where the stream
    /// starts in `source` (the file), for errors.
    public static func source(_ input: any ByteSource, format: ArchiveFormat, source: String, offset: Int = 0,
                              limit: Int = defaultLimit) throws(SSIError) -> any ByteSource {
        let codec: any StreamCodec
        switch format {
        case .zstd: codec = try ZstdCodec()
        case .gzip: codec = try GzipCodec()
        case .xz: codec = try XzCodec()
        case .cpio: return input
        default:
            throw SSIError("list", "\(source): \(format.rawValue)-compressed archives are not supported",
                           hint: "ssi-mkinitrd reads zstd, gzip, xz and uncompressed images")
        }
        return DecompressingSource(input: input, codec: codec, format: format, source: source,
                                   offset: offset, limit: limit)
    }

    /// Decompresses every frame/member from `input` and returns the bytes
    /// (tests and small inputs; images are read through `source`).
    public static func all(_ input: ArraySlice<UInt8>, format: ArchiveFormat, source: String,
                           limit: Int = defaultLimit) throws(SSIError) -> [UInt8] {
        let plain = try Self.source(MemorySource(input), format: format, source: source, limit: limit)
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try plain.read(into: &chunk)
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
        }
    }
}

/// One step of a decoder: what it took, what it gave, and whether a
/// frame (zstd), member (gzip) or stream (xz) just ended.
struct CodecStep {
    enum Outcome { case progress, endOfUnit, failed(String) }
    var consumed: Int
    var produced: Int
    var outcome: Outcome
}

/// The library behind a format, driven by `DecompressingSource`.
protocol StreamCodec: AnyObject {
    /// "frame", "member", "stream": what a truncation ends inside of.
    var unit: String { get }
    /// What is missing when the input ends inside a unit.
    var missing: String { get }
    func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, inputEnded: Bool) -> CodecStep
    /// Ready for the next unit after one ended.
    func reset() throws(SSIError)
}

/// Drives a codec over a source: input buffering, the output bound, the
/// zero padding some tools put between concatenated units, and telling a
/// truncated stream from a finished one.
final class DecompressingSource: ByteSource {
    private let input: any ByteSource
    private let codec: any StreamCodec
    private let format: ArchiveFormat
    private let source: String
    private let start: Int
    private let limit: Int
    private var inBuffer = [UInt8](repeating: 0, count: 1 << 17)
    private var inPos = 0
    private var inEnd = 0
    private var inputEnded = false
    /// Compressed bytes consumed so far (the offset of errors).
    private var consumed = 0
    private var produced = 0
    /// Between units: the stream may end here, or zero padding follow.
    private var atBoundary = true
    private var unitsEnded = 0

    init(input: any ByteSource, codec: any StreamCodec, format: ArchiveFormat, source: String, offset: Int, limit: Int) {
        self.input = input
        self.codec = codec
        self.format = format
        self.source = source
        self.start = offset
        self.limit = limit
    }

    private var position: Int { start + consumed }

    private func refill() throws(SSIError) {
        guard inPos == inEnd, !inputEnded else { return }
        inPos = 0
        let n = try input.read(into: &inBuffer)
        inEnd = n
        if n == 0 { inputEnded = true }
    }

    private func failure(_ what: String) -> SSIError {
        SSIError("list", "\(source): \(format.rawValue) stream at byte \(start): \(what)",
                 hint: "the image is damaged or incomplete; rebuild or copy it again")
    }

    func read(into out: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        guard out.count > 0 else { return 0 }
        var idle = 0
        while true {
            try refill()
            if atBoundary {
                // Padding between units (or after the last one).
                while inPos < inEnd && inBuffer[inPos] == 0 { inPos += 1; consumed += 1 }
                if inPos == inEnd {
                    if inputEnded {
                        if unitsEnded == 0 { throw failure("no data") }
                        return 0
                    }
                    continue
                }
                if unitsEnded > 0 { try codec.reset() }
                atBoundary = false
            }
            let step = inBuffer.withUnsafeBytes { raw in
                codec.step(UnsafeRawBufferPointer(rebasing: raw[inPos..<inEnd]), out, inputEnded: inputEnded)
            }
            inPos += step.consumed
            consumed += step.consumed
            let (total, overflow) = produced.addingReportingOverflow(step.produced)
            guard !overflow, total <= limit else {
                throw SSIError("list", "\(source): \(format.rawValue) stream at byte \(start) unpacks to more than \(limit >> 20) MiB",
                               hint: "no initramfs is that large: this is not an image (a decompression bomb?)")
            }
            produced = total
            switch step.outcome {
            case .failed(let why):
                throw failure("corrupt at byte \(position): \(why)")
            case .endOfUnit:
                atBoundary = true
                unitsEnded += 1
            case .progress:
                break
            }
            if step.produced > 0 { return step.produced }
            if step.consumed > 0 || step.outcome.isEnd { idle = 0; continue }
            if inputEnded && inPos == inEnd {
                throw failure("truncated: the data ends at byte \(position) inside a \(format.rawValue) \(codec.unit) (\(codec.missing) missing)")
            }
            // Input left, room for output, and no progress: a library
            // that is stuck must not spin here forever.
            idle += 1
            if idle > 3 && inPos < inEnd { throw failure("the decoder makes no progress at byte \(position)") }
        }
    }
}

extension CodecStep.Outcome {
    var isEnd: Bool { if case .endOfUnit = self { return true } else { return false } }
}

final class ZstdCodec: StreamCodec {
    private let dctx: OpaquePointer
    let unit = "frame"
    let missing = "the rest of the frame and its checksum are"

    init() throws(SSIError) {
        try LazyLibrary.zstd.load()
        guard let dctx = ZSTD_createDCtx() else { throw SSIError("zstd", "cannot create a decompression context") }
        // The default window limit (128 MiB, ZSTD_WINDOWLOG_LIMIT_DEFAULT)
        // is kept: a frame that asks for more memory is refused.
        self.dctx = dctx
    }

    deinit { ZSTD_freeDCtx(dctx) }

    func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, inputEnded: Bool) -> CodecStep {
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var outBuf = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let rc = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
        if ZSTD_isError(rc) != 0 {
            return CodecStep(consumed: inBuf.pos, produced: outBuf.pos,
                             outcome: .failed(String(cString: ZSTD_getErrorName(rc))))
        }
        // rc 0: a frame ended and was flushed whole; the context starts
        // the next frame by itself.
        return CodecStep(consumed: inBuf.pos, produced: outBuf.pos, outcome: rc == 0 ? .endOfUnit : .progress)
    }

    func reset() throws(SSIError) {}
}

final class GzipCodec: StreamCodec {
    private var stream = z_stream()
    let unit = "member"
    let missing = "the rest of the deflate data and the CRC-32/size trailer are"

    init() throws(SSIError) {
        try LazyLibrary.zlib.load()
        // windowBits 15 + 32: a gzip (or zlib) header, detected.
        guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw SSIError("gzip", "cannot start a decompressor (inflateInit failed)")
        }
    }

    // An init that threw before the library loaded left nothing to end.
    deinit { if LazyLibrary.zlib.isLoaded { inflateEnd(&stream) } }

    func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, inputEnded: Bool) -> CodecStep {
        // avail_in and avail_out are 32-bit: the driver's chunks are far
        // below that, but never hand zlib a count it would truncate.
        let inCount = min(input.count, Int(UInt32.max))
        let outCount = min(output.count, Int(UInt32.max))
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(inCount)
        stream.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(outCount)
        let rc = inflate(&stream, Z_NO_FLUSH)
        let consumed = inCount - Int(stream.avail_in)
        let produced = outCount - Int(stream.avail_out)
        switch rc {
        case Z_STREAM_END: return CodecStep(consumed: consumed, produced: produced, outcome: .endOfUnit)
        case Z_OK, Z_BUF_ERROR:
            // Z_BUF_ERROR: no progress without more input; the driver
            // calls it truncated when there is none.
            return CodecStep(consumed: consumed, produced: produced, outcome: .progress)
        default:
            let why = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
            return CodecStep(consumed: consumed, produced: produced, outcome: .failed(why))
        }
    }

    func reset() throws(SSIError) {
        guard inflateReset(&stream) == Z_OK else { throw SSIError("gzip", "cannot restart the decompressor") }
    }
}

final class XzCodec: StreamCodec {
    private var stream = lzma_stream()
    let unit = "stream"
    let missing = "its remaining blocks, index and footer are"
    /// The decoder's memory bound: xz -9's 64 MiB dictionary fits; a
    /// header asking for more is refused rather than allocated.
    static let memoryLimit: UInt64 = 256 << 20
    /// LZMA_CONCATENATED: a macro Swift does not import.
    static let concatenated: UInt32 = 0x08

    init() throws(SSIError) {
        try reset()
    }

    deinit { if LazyLibrary.lzma.isLoaded { lzma_end(&stream) } }

    func step(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, inputEnded: Bool) -> CodecStep {
        stream.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        stream.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.avail_out = output.count
        // LZMA_FINISH once the input has ended: the concatenated decoder
        // only reports the end of the last stream then.
        let rc = lzma_code(&stream, inputEnded ? LZMA_FINISH : LZMA_RUN)
        let consumed = input.count - stream.avail_in
        let produced = output.count - stream.avail_out
        switch rc {
        case LZMA_STREAM_END: return CodecStep(consumed: consumed, produced: produced, outcome: .endOfUnit)
        case LZMA_OK, LZMA_BUF_ERROR: return CodecStep(consumed: consumed, produced: produced, outcome: .progress)
        case LZMA_MEMLIMIT_ERROR:
            return CodecStep(consumed: consumed, produced: produced,
                             outcome: .failed("the stream needs more than \(Self.memoryLimit >> 20) MiB to decompress"))
        case LZMA_FORMAT_ERROR: return CodecStep(consumed: consumed, produced: produced, outcome: .failed("not xz data"))
        case LZMA_OPTIONS_ERROR: return CodecStep(consumed: consumed, produced: produced, outcome: .failed("unsupported xz options"))
        case LZMA_DATA_ERROR: return CodecStep(consumed: consumed, produced: produced, outcome: .failed("corrupt xz data"))
        default: return CodecStep(consumed: consumed, produced: produced, outcome: .failed("liblzma error \(rc.rawValue)"))
        }
    }

    func reset() throws(SSIError) {
        try LazyLibrary.lzma.load()
        guard lzma_stream_decoder(&stream, Self.memoryLimit, Self.concatenated) == LZMA_OK else {
            throw SSIError("xz", "cannot start a decompressor")
        }
    }
}
