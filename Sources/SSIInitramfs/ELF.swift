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
    /// DT_SONAME: the name a library is loaded by ("libkmod.so.2").
    public var soname: String?
    /// NT_GNU_BUILD_ID: the linker's hash of the file's contents, which
    /// names a packed binary archive (`BinaryArchive`).
    public var buildID: [UInt8]?
    public var is64Bit: Bool
    public var machine: UInt16
}

public enum ELF {
    /// Bounds on what a header may make us read: far above any real file
    /// (libc's dynamic section is under 1 KiB, its program headers under
    /// 1 KiB), so a corrupt or hostile header is an error, not a huge
    /// allocation.
    static let maxProgramHeaders = 1 << 20
    static let maxDynamicSection = 1 << 20
    static let maxNotes = 1 << 16
    static let maxString = 4096
    /// DT_NEEDED, DT_RPATH and DT_RUNPATH entries together: each is a
    /// string of up to 4 KiB kept in memory (real programs have tens).
    static let maxNames = 1024

    /// nil when the file is not ELF (a script, data). Throws for an ELF
    /// file we cannot parse, naming it. Only a regular file is read: the
    /// open does not block on a FIFO, which is refused after it.
    public static func read(_ path: String) throws(SSIError) -> ELFDynamicInfo? {
        let shown = printableName(path)
        let file: Descriptor
        do throws(SystemCallError) { file = try Descriptor(open: path, O_RDONLY | O_NONBLOCK | O_NOCTTY) } catch {
            throw SSIError("elf", "cannot open \(shown): \(errnoDescription(error.errno))")
        }
        let fd = file.rawValue
        let st: FileSystem.Status
        do { st = try FileSystem.fstatus(fd) } catch { throw SSIError("elf", "\(shown): \(error.description)") }
        guard st.kind == .regular else {
            throw SSIError("elf", "\(shown) is not a regular file", hint: "install programs and libraries, not devices or FIFOs")
        }
        return try parse(FileBytes(fd: fd, name: shown, size: st.size), name: shown)
    }

    /// The same from bytes in memory (tests, fuzzing).
    public static func parse(bytes: [UInt8], name: String) throws(SSIError) -> ELFDynamicInfo? {
        try parse(MemoryBytes(bytes: bytes, name: printableName(name)), name: printableName(name))
    }

    /// The descriptor of the GNU build-id note among `notes` (a PT_NOTE
    /// segment's bytes: namesz, descsz, type, then name and descriptor,
    /// each padded to 4 bytes), or nil. A malformed note ends the search.
    static func buildID(in notes: [UInt8]) -> [UInt8]? {
        var i = 0
        while i + 12 <= notes.count {
            let namesz = Int(notes.u32(i)), descsz = Int(notes.u32(i + 4)), type = notes.u32(i + 8)
            let name = i + 12, desc = name + (namesz + 3) & ~3
            guard namesz <= notes.count, descsz <= notes.count, desc + descsz <= notes.count else { return nil }
            let NT_GNU_BUILD_ID: UInt32 = 3
            if type == NT_GNU_BUILD_ID && namesz == 4 && Array(notes[name..<name + 4]) == [0x47, 0x4e, 0x55, 0] && descsz > 0 {
                return Array(notes[desc..<desc + descsz])
            }
            i = desc + (descsz + 3) & ~3
        }
        return nil
    }

    static func parse(_ file: some RandomAccessBytes, name path: String) throws(SSIError) -> ELFDynamicInfo? {
        func corrupt(_ what: String) -> SSIError {
            SSIError("elf", "\(path): corrupt ELF header: \(what)", hint: "the file is damaged; reinstall its package")
        }
        func int(_ v: UInt64, _ field: String) throws(SSIError) -> Int {
            guard let i = Int(exactly: v), i <= file.size else { throw corrupt("\(field) \(v) is beyond the file's \(file.size) bytes") }
            return i
        }
        let ident = try file.bytes(at: 0, count: 16, allowShort: true)
        guard ident.count == 16, ident[0] == 0x7f, ident[1] == UInt8(ascii: "E"),
              ident[2] == UInt8(ascii: "L"), ident[3] == UInt8(ascii: "F") else { return nil }
        guard ident[4] == 1 || ident[4] == 2 else { throw corrupt("class \(ident[4]) is neither 32- nor 64-bit") }
        let is64 = ident[4] == 2
        guard ident[5] == 1 else {
            throw SSIError("elf", "\(path): big-endian ELF is not supported")
        }
        let ehdr = try file.bytes(at: 0, count: is64 ? 64 : 52)
        let machine = ehdr.u16(18)
        let phoff = try int(is64 ? ehdr.u64(32) : UInt64(ehdr.u32(28)), "e_phoff")
        let phentsize = Int(ehdr.u16(is64 ? 54 : 42))
        let phnum = Int(ehdr.u16(is64 ? 56 : 44))
        var info = ELFDynamicInfo(is64Bit: is64, machine: machine)
        guard phnum > 0 else { return info }   // relocatable object
        // Each entry is read up to its p_filesz field (offset 32 or 16,
        // 8 or 4 bytes wide): smaller entries would be read past.
        guard phentsize >= (is64 ? 40 : 20) else { throw corrupt("e_phentsize \(phentsize) is too small") }
        let phBytes = phentsize * phnum   // both 16-bit: no overflow
        guard phBytes <= maxProgramHeaders else { throw corrupt("\(phnum) program headers of \(phentsize) bytes") }
        let phdrs = try file.bytes(at: phoff, count: phBytes)

        var segments: [ELFSegment] = []
        for i in 0..<phnum {
            let b = i * phentsize
            let type = phdrs.u32(b)
            let (offset, vaddr, filesz) = is64
                ? (phdrs.u64(b + 8), phdrs.u64(b + 16), phdrs.u64(b + 32))
                : (UInt64(phdrs.u32(b + 4)), UInt64(phdrs.u32(b + 8)), UInt64(phdrs.u32(b + 16)))
            // Segments we never read (GNU_STACK...) may say anything; the
            // ones we read must lie in the file. Notes are optional: one
            // that does not is passed over (no build id, nothing more).
            let PT_LOAD: UInt32 = 1, PT_DYNAMIC: UInt32 = 2, PT_INTERP: UInt32 = 3, PT_NOTE: UInt32 = 4
            if type == PT_NOTE {
                if let off = Int(exactly: offset), let size = Int(exactly: filesz),
                   off <= file.size, size <= file.size - off {
                    segments.append(ELFSegment(type: type, offset: off, vaddr: vaddr, filesz: size))
                }
                continue
            }
            guard type == PT_LOAD || type == PT_DYNAMIC || type == PT_INTERP else { continue }
            let off = try int(offset, "p_offset"), size = try int(filesz, "p_filesz")
            guard off + size <= file.size else { throw corrupt("segment \(i) (\(off)+\(size)) is beyond the file's \(file.size) bytes") }
            guard vaddr.addingReportingOverflow(filesz).overflow == false else { throw corrupt("segment \(i) wraps the address space") }
            segments.append(ELFSegment(type: type, offset: off, vaddr: vaddr, filesz: size))
        }
        let PT_LOAD: UInt32 = 1, PT_DYNAMIC: UInt32 = 2, PT_INTERP: UInt32 = 3, PT_NOTE: UInt32 = 4
        for note in segments where note.type == PT_NOTE && note.filesz <= maxNotes && info.buildID == nil {
            info.buildID = buildID(in: try file.bytes(at: note.offset, count: note.filesz))
        }
        if let interp = segments.first(where: { $0.type == PT_INTERP }) {
            info.interpreter = try file.cString(at: interp.offset, max: min(interp.filesz, maxString))
        }
        guard let dynamic = segments.first(where: { $0.type == PT_DYNAMIC }) else { return info }
        guard dynamic.filesz <= maxDynamicSection else {
            throw corrupt("a dynamic section of \(dynamic.filesz) bytes (at most \(maxDynamicSection))")
        }
        let dyn = try file.bytes(at: dynamic.offset, count: dynamic.filesz)
        let entSize = is64 ? 16 : 8
        var strtabAddr: UInt64?
        var needed: [UInt64] = [], rpath: [UInt64] = [], runpath: [UInt64] = []
        var soname: UInt64?
        var i = 0
        while i + entSize <= dyn.count {
            let tag = is64 ? Int64(bitPattern: dyn.u64(i)) : Int64(Int32(bitPattern: dyn.u32(i)))
            let val = is64 ? dyn.u64(i + 8) : UInt64(dyn.u32(i + 4))
            switch tag {
            case 0: i = dyn.count; continue        // DT_NULL
            case 1: needed.append(val)             // DT_NEEDED
            case 5: strtabAddr = val               // DT_STRTAB
            case 14: soname = val                  // DT_SONAME
            case 15: rpath.append(val)             // DT_RPATH
            case 29: runpath.append(val)           // DT_RUNPATH
            default: break
            }
            i += entSize
        }
        guard needed.count + rpath.count + runpath.count <= maxNames else {
            throw corrupt("\(needed.count) DT_NEEDED and \(rpath.count + runpath.count) search path entries (at most \(maxNames))")
        }
        guard let strtabAddr else {
            if needed.isEmpty && rpath.isEmpty && runpath.isEmpty && soname == nil { return info }
            // Name what is there: an object with only a DT_SONAME (no
            // DT_NEEDED) used to be told it had DT_NEEDED entries.
            let what = [needed.isEmpty ? nil : "DT_NEEDED", soname == nil ? nil : "DT_SONAME",
                        rpath.isEmpty && runpath.isEmpty ? nil : "search path"].compactMap { $0 }
            throw SSIError("elf", "\(path): has \(what.joined(separator: ", ")) entries but no string table (DT_STRTAB)")
        }
        // DT_STRTAB is a virtual address; find the file offset through the
        // PT_LOAD segment that maps it.
        guard let load = segments.first(where: {
            $0.type == PT_LOAD && strtabAddr >= $0.vaddr && strtabAddr - $0.vaddr < UInt64($0.filesz)
        }) else {
            throw SSIError("elf", "\(path): string table address 0x\(String(strtabAddr, radix: 16)) is outside every loaded segment")
        }
        // Inside the segment, which lies inside the file: no overflow.
        let strtab = load.offset + Int(strtabAddr - load.vaddr)
        func str(_ off: UInt64) throws(SSIError) -> String {
            guard off < UInt64(file.size - strtab) else { throw corrupt("a string offset \(off) is beyond the file") }
            return try file.cString(at: strtab + Int(off), max: maxString)
        }
        for n in needed { info.needed.append(try str(n)) }
        for r in rpath { info.rpath += try str(r).split(separator: ":").map(String.init) }
        for r in runpath { info.runpath += try str(r).split(separator: ":").map(String.init) }
        if let soname { info.soname = try str(soname) }
        return info
    }
}

private struct ELFSegment { var type: UInt32; var offset: Int; var vaddr: UInt64; var filesz: Int }

/// Reads at offsets of a file or a buffer, never past its size: a count
/// from a header is checked against the size before anything is allocated.
protocol RandomAccessBytes {
    var size: Int { get }
    var name: String { get }
    /// Bytes at `offset`, `offset` and `count` already within the size.
    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int
}

extension RandomAccessBytes {
    func bytes(at offset: Int, count: Int, allowShort: Bool = false) throws(SSIError) -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size else {
            throw SSIError("elf", "\(name) is truncated (wanted \(count) bytes at \(offset))")
        }
        let available = min(count, size - offset)
        if available < count && !allowShort {
            throw SSIError("elf", "\(name) is truncated (wanted \(count) bytes at \(offset))")
        }
        var buf = [UInt8](repeating: 0, count: available)
        let result = buf.withUnsafeMutableBytes { raw -> Result<Int, SSIError> in
            do throws(SSIError) { return .success(try copy(at: offset, into: raw)) } catch { return .failure(error) }
        }
        let got = try result.get()
        if got < count {
            if allowShort { return Array(buf[0..<got]) }
            throw SSIError("elf", "\(name) is truncated (wanted \(count) bytes at \(offset))")
        }
        return buf
    }

    func cString(at offset: Int, max: Int) throws(SSIError) -> String {
        let b = try bytes(at: offset, count: Swift.max(1, max), allowShort: true)
        let end = b.firstIndex(of: 0) ?? b.count
        return String(decoding: b[0..<end], as: UTF8.self)
    }
}

private struct FileBytes: RandomAccessBytes {
    let fd: Int32
    let name: String
    let size: Int

    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        var got = 0
        while got < buffer.count {
            let n: Int
            do {
                n = try syscall("pread") { pread(fd, buffer.baseAddress! + got, buffer.count - got, off_t(offset + got)) }
            } catch {
                throw SSIError("elf", "reading \(name): \(errnoDescription(error.errno))")
            }
            if n == 0 { break }
            got += n
        }
        return got
    }
}

private struct MemoryBytes: RandomAccessBytes {
    let bytes: [UInt8]
    let name: String
    var size: Int { bytes.count }

    func copy(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(SSIError) -> Int {
        let n = min(buffer.count, bytes.count - offset)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        return n
    }
}

extension Array where Element == UInt8 {
    func u16(_ o: Int) -> UInt16 { UInt16(self[o]) | UInt16(self[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 {
        UInt32(self[o]) | UInt32(self[o + 1]) << 8 | UInt32(self[o + 2]) << 16 | UInt32(self[o + 3]) << 24
    }
    func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
}
