#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// The dynamic-linking facts of one ELF file, read from its headers with
/// pread (we never run ldd: it executes the binary, and cannot look at a
/// foreign architecture or a file that is not executable here).
public struct ELFDynamicInfo: Sendable, Equatable {
    /// PT_INTERP: the program interpreter (the dynamic loader).
    public var interpreter: String?
    /// DT_NEEDED, in order.
    public var needed: [String] = []
    public var rpath: [String] = []
    public var runpath: [String] = []
    public var is64Bit: Bool
    public var machine: UInt16
}

public enum ELF {
    /// nil when the file is not ELF (a script, data). Throws for an ELF
    /// file we cannot parse, naming it.
    public static func read(_ path: String) throws(SSIError) -> ELFDynamicInfo? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SSIError("elf", "cannot open \(path): \(errnoDescription(errno))") }
        defer { close(fd) }
        let file = PReader(fd: fd, path: path)
        let ident = try file.bytes(at: 0, count: 16, allowShort: true)
        guard ident.count == 16, ident[0] == 0x7f, ident[1] == UInt8(ascii: "E"),
              ident[2] == UInt8(ascii: "L"), ident[3] == UInt8(ascii: "F") else { return nil }
        let is64 = ident[4] == 2
        guard ident[5] == 1 else {
            throw SSIError("elf", "\(path): big-endian ELF is not supported")
        }
        let ehdr = try file.bytes(at: 0, count: is64 ? 64 : 52)
        let machine = ehdr.u16(18)
        let phoff = is64 ? Int(ehdr.u64(32)) : Int(ehdr.u32(28))
        let phentsize = Int(ehdr.u16(is64 ? 54 : 42))
        let phnum = Int(ehdr.u16(is64 ? 56 : 44))
        var info = ELFDynamicInfo(is64Bit: is64, machine: machine)
        guard phnum > 0 else { return info }   // relocatable object
        let phdrs = try file.bytes(at: phoff, count: phentsize * phnum)

        struct Segment { var type: UInt32; var offset: Int; var vaddr: UInt64; var filesz: Int }
        var segments: [Segment] = []
        for i in 0..<phnum {
            let b = i * phentsize
            if is64 {
                segments.append(Segment(type: phdrs.u32(b), offset: Int(phdrs.u64(b + 8)),
                                        vaddr: phdrs.u64(b + 16), filesz: Int(phdrs.u64(b + 32))))
            } else {
                segments.append(Segment(type: phdrs.u32(b), offset: Int(phdrs.u32(b + 4)),
                                        vaddr: UInt64(phdrs.u32(b + 8)), filesz: Int(phdrs.u32(b + 16))))
            }
        }
        let PT_LOAD: UInt32 = 1, PT_DYNAMIC: UInt32 = 2, PT_INTERP: UInt32 = 3
        if let interp = segments.first(where: { $0.type == PT_INTERP }) {
            info.interpreter = try file.cString(at: interp.offset, max: interp.filesz)
        }
        guard let dynamic = segments.first(where: { $0.type == PT_DYNAMIC }) else { return info }
        let dyn = try file.bytes(at: dynamic.offset, count: dynamic.filesz)
        let entSize = is64 ? 16 : 8
        var strtabAddr: UInt64?
        var needed: [UInt64] = [], rpath: [UInt64] = [], runpath: [UInt64] = []
        var i = 0
        while i + entSize <= dyn.count {
            let tag = is64 ? Int64(bitPattern: dyn.u64(i)) : Int64(Int32(bitPattern: dyn.u32(i)))
            let val = is64 ? dyn.u64(i + 8) : UInt64(dyn.u32(i + 4))
            switch tag {
            case 0: i = dyn.count; continue        // DT_NULL
            case 1: needed.append(val)             // DT_NEEDED
            case 5: strtabAddr = val               // DT_STRTAB
            case 15: rpath.append(val)             // DT_RPATH
            case 29: runpath.append(val)           // DT_RUNPATH
            default: break
            }
            i += entSize
        }
        guard let strtabAddr else {
            if needed.isEmpty { return info }
            throw SSIError("elf", "\(path): has DT_NEEDED entries but no string table")
        }
        // DT_STRTAB is a virtual address; find the file offset through the
        // PT_LOAD segment that maps it.
        guard let load = segments.first(where: {
            $0.type == PT_LOAD && strtabAddr >= $0.vaddr && strtabAddr < $0.vaddr + UInt64($0.filesz)
        }) else {
            throw SSIError("elf", "\(path): string table address 0x\(String(strtabAddr, radix: 16)) is outside every loaded segment")
        }
        let strtab = load.offset + Int(strtabAddr - load.vaddr)
        func str(_ off: UInt64) throws(SSIError) -> String { try file.cString(at: strtab + Int(off), max: 4096) }
        for n in needed { info.needed.append(try str(n)) }
        for r in rpath { info.rpath += try str(r).split(separator: ":").map(String.init) }
        for r in runpath { info.runpath += try str(r).split(separator: ":").map(String.init) }
        return info
    }
}

private struct PReader {
    let fd: Int32
    let path: String

    func bytes(at offset: Int, count: Int, allowShort: Bool = false) throws(SSIError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, count - got, off_t(offset + got)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SSIError("elf", "reading \(path): \(errnoDescription(errno))")
            }
            if n == 0 { break }
            got += n
        }
        if got < count {
            if allowShort { return Array(buf[0..<got]) }
            throw SSIError("elf", "\(path) is truncated (wanted \(count) bytes at \(offset))")
        }
        return buf
    }

    func cString(at offset: Int, max: Int) throws(SSIError) -> String {
        let b = try bytes(at: offset, count: Swift.max(1, max), allowShort: true)
        let end = b.firstIndex(of: 0) ?? b.count
        return String(decoding: b[0..<end], as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    func u16(_ o: Int) -> UInt16 { UInt16(self[o]) | UInt16(self[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 {
        UInt32(self[o]) | UInt32(self[o + 1]) << 8 | UInt32(self[o + 2]) << 16 | UInt32(self[o + 3]) << 24
    }
    func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
}
