#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// A node's identity from its TPM 2.0 (DESIGN-NOTES.md, "Node identity",
/// "A TPM 2.0 derives the key"). The TPM makes a keyed-hash (HMAC) primary key under its
/// owner hierarchy: a primary key is derived from the hierarchy's seed and
/// the template, so the same TPM gives the same key at every boot, nothing
/// is stored (not on a disk, not in the TPM's NV memory), and a cleared or
/// replaced TPM gives another. The node key's 32-byte seed is that key's
/// HMAC of a fixed label; the HMAC key itself never leaves the TPM.
///
/// Three commands, written here (TPM 2.0 Library, Part 3) rather than
/// through tpm2-tss: its ESAPI brings five libraries (1.1 MB) and a
/// package dependency into every image that may meet a TPM, for three
/// commands of a few dozen bytes. tpm2-tools checks the result in the tests.
public final class TPM {
    /// The kernel's resource manager: transient objects belong to the open
    /// file and are flushed when it closes, so an interrupted boot leaks
    /// nothing into the TPM.
    public static let device = "/dev/tpmrm0"
    /// What the node key's seed is the HMAC of.
    public static let label = Array("ssi node identity v1".utf8)

    let fd: Int32
    let name: String

    /// Opens the TPM at `path`.
    public convenience init(path: String = TPM.device) throws(SSIError) {
        let fd: Int32
        do throws(SystemCallError) {
            fd = try syscall("open \(path)") { open(path, O_RDWR | O_CLOEXEC | O_NOCTTY) }
        } catch {
            var hint = "is the TPM enabled in the firmware, and its driver (tpm_tis, tpm_crb) in the image?"
            if error.errno == ENOENT, access("/dev/tpm0", F_OK) == 0 {
                hint = "/dev/tpm0 without /dev/tpmrm0 is a TPM 1.2: ssi needs TPM 2.0, or a key medium ([identity] device)"
            }
            throw SSIError("identity", "the TPM: \(error.description)", hint: hint)
        }
        self.init(fd: fd, name: path)
    }

    /// Takes `fd` (a TPM device, or in tests a stream to swtpm), closed
    /// with this object.
    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    deinit { close(fd) }

    /// The node key's seed from this TPM (see the type's comment).
    public func identitySeed() throws(SSIError) -> [UInt8] {
        let handle = try TPMCodec.createdHandle(transact(TPMCodec.createPrimaryHMAC(), "CreatePrimary"))
        // Flushed either way (and by the resource manager at close).
        defer { _ = try? transact(TPMCodec.flushContext(handle), "FlushContext") }
        return try TPMCodec.digest(transact(TPMCodec.hmac(handle: handle, data: TPM.label), "HMAC"))
    }

    /// One command and its whole response, each wait bounded; a TPM that
    /// asks to be asked again (RETRY, YIELDED, TESTING) is, a few times.
    func transact(_ command: [UInt8], _ what: String) throws(SSIError) -> [UInt8] {
        var tries = 0
        while true {
            let response = try exchange(command, what)
            let code = TPMCodec.responseCode(response)
            if let code, TPMCodec.retryable.contains(code), tries < 10 {
                tries += 1
                Process.sleep(milliseconds: 100)
                continue
            }
            return response
        }
    }

    private func exchange(_ command: [UInt8], _ what: String) throws(SSIError) -> [UInt8] {
        func io<T>(_ body: () throws(SystemCallError) -> T) throws(SSIError) -> T {
            do throws(SystemCallError) { return try body() } catch {
                throw SSIError("identity", "the TPM (\(name)), \(what): \(error.description)")
            }
        }
        try io { () throws(SystemCallError) in try writeAll(fd, command, name: name) }
        // A device gives the whole response to one read; a stream may take
        // several. The header says how long it is.
        var response: [UInt8] = []
        var expected = TPMCodec.headerSize
        while response.count < expected {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard pollRetrying(&p, timeoutMs: 30_000) > 0 else {
                throw SSIError("identity", "the TPM (\(name)) did not answer \(what) within 30 s")
            }
            var buffer = [UInt8](repeating: 0, count: TPMCodec.maxResponse)
            let n = try io { () throws(SystemCallError) in
                try syscall("read \(name)") { buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            }
            guard n > 0 else { throw SSIError("identity", "the TPM (\(name)) closed during \(what)") }
            response += buffer.prefix(n)
            if response.count >= TPMCodec.headerSize {
                expected = Int(TPMCodec.uint32(response, at: 2))
                guard expected >= TPMCodec.headerSize, expected <= TPMCodec.maxResponse, response.count <= expected else {
                    throw SSIError("identity", "the TPM (\(name)) answered \(what) with a response of \(expected) bytes")
                }
            }
        }
        return response
    }
}

/// The bytes of the three commands and what their responses hold: one
/// codec, pure, tested byte for byte and fuzzed.
public enum TPMCodec {
    static let headerSize = 10
    /// TPM 2.0's largest response (the PC Client's buffer).
    static let maxResponse = 4096

    static let tagNoSessions: UInt16 = 0x8001, tagSessions: UInt16 = 0x8002
    static let ccCreatePrimary: UInt32 = 0x131, ccHMAC: UInt32 = 0x155, ccFlushContext: UInt32 = 0x165
    static let ownerHierarchy: UInt32 = 0x4000_0001
    /// The password session, with the empty password (the owner
    /// hierarchy's own, untouched on a fresh TPM).
    static let passwordSession: UInt32 = 0x4000_0009
    static let algKeyedHash: UInt16 = 0x0008, algSHA256: UInt16 = 0x000B, algHMAC: UInt16 = 0x0005
    /// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | sign:
    /// a key that never leaves this TPM, made by it, used without a
    /// password and so kept out of the dictionary-attack count.
    static let hmacKeyAttributes: UInt32 = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 10 | 1 << 18
    /// RETRY, YIELDED, TESTING: warnings that mean "ask again".
    static let retryable: Set<UInt32> = [0x922, 0x908, 0x90A]

    /// CreatePrimary(owner) of the HMAC-SHA256 key ssi derives from.
    public static func createPrimaryHMAC() -> [UInt8] {
        var publicArea: [UInt8] = []
        put16(&publicArea, algKeyedHash)
        put16(&publicArea, algSHA256)              // nameAlg
        put32(&publicArea, hmacKeyAttributes)
        put16(&publicArea, 0)                      // authPolicy: none
        put16(&publicArea, algHMAC)                // scheme
        put16(&publicArea, algSHA256)              //   its hash
        put16(&publicArea, 0)                      // unique: empty
        var parameters: [UInt8] = []
        put16(&parameters, 4)                      // inSensitive: an empty
        put16(&parameters, 0)                      //   userAuth and
        put16(&parameters, 0)                      //   data (the TPM makes the key)
        put16(&parameters, UInt16(publicArea.count))
        parameters += publicArea
        put16(&parameters, 0)                      // outsideInfo
        put32(&parameters, 0)                      // creationPCR: none
        return command(ccCreatePrimary, handle: ownerHierarchy, parameters: parameters)
    }

    /// HMAC(handle, data) with the key's own hash (SHA-256).
    public static func hmac(handle: UInt32, data: [UInt8]) -> [UInt8] {
        var parameters: [UInt8] = []
        put16(&parameters, UInt16(data.count))
        parameters += data
        put16(&parameters, algSHA256)
        return command(ccHMAC, handle: handle, parameters: parameters)
    }

    public static func flushContext(_ handle: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        put16(&bytes, tagNoSessions)
        put32(&bytes, 14)
        put32(&bytes, ccFlushContext)
        put32(&bytes, handle)
        return bytes
    }

    /// A command with one handle authorized by the password session.
    static func command(_ code: UInt32, handle: UInt32, parameters: [UInt8]) -> [UInt8] {
        var auth: [UInt8] = []
        put32(&auth, passwordSession)
        put16(&auth, 0)                            // nonce
        auth.append(0)                             // session attributes
        put16(&auth, 0)                            // the empty password
        var bytes: [UInt8] = []
        put16(&bytes, tagSessions)
        put32(&bytes, UInt32(headerSize + 4 + 4 + auth.count + parameters.count))
        put32(&bytes, code)
        put32(&bytes, handle)
        put32(&bytes, UInt32(auth.count))
        return bytes + auth + parameters
    }

    /// The response code of a response with a whole header; nil otherwise.
    static func responseCode(_ response: [UInt8]) -> UInt32? {
        response.count >= headerSize ? uint32(response, at: 6) : nil
    }

    /// The new object's handle from CreatePrimary's response.
    public static func createdHandle(_ response: [UInt8]) throws(SSIError) -> UInt32 {
        try check(response, "CreatePrimary")
        guard response.count >= headerSize + 4 else { throw malformed("CreatePrimary", "no handle") }
        return uint32(response, at: headerSize)
    }

    /// The 32-byte HMAC from HMAC's response.
    public static func digest(_ response: [UInt8]) throws(SSIError) -> [UInt8] {
        try check(response, "HMAC")
        // parameterSize, then TPM2B_DIGEST.
        guard response.count >= headerSize + 6 else { throw malformed("HMAC", "no digest") }
        let size = Int(uint16(response, at: headerSize + 4))
        let start = headerSize + 6
        guard size == 32, response.count >= start + size else {
            throw malformed("HMAC", "a digest of \(size) bytes where SHA-256's 32 were asked")
        }
        return Array(response[start..<start + size])
    }

    /// A whole, successful response; else an error naming what the TPM said.
    static func check(_ response: [UInt8], _ what: String) throws(SSIError) {
        guard response.count >= headerSize else { throw malformed(what, "\(response.count) bytes, shorter than a header") }
        let tag = uint16(response, at: 0), size = uint32(response, at: 2)
        guard tag == tagNoSessions || tag == tagSessions, Int(size) == response.count else {
            throw malformed(what, "tag 0x\(String(tag, radix: 16)), size \(size) for \(response.count) bytes")
        }
        let code = uint32(response, at: 6)
        guard code == 0 else {
            throw SSIError("identity", "the TPM refused \(what): \(describe(code))", hint: hint(code))
        }
    }

    /// TPM_RC values as the specification names them (Part 2, 6.6).
    public static func describe(_ code: UInt32) -> String {
        let hex = "0x" + String(code, radix: 16)
        if code & 0x80 != 0 {
            // Format 1: an error about a handle, session or parameter.
            let names: [UInt32: String] = [0x85: "HIERARCHY (the owner hierarchy is disabled)",
                                           0x8E: "AUTH_FAIL (the owner hierarchy has a password)",
                                           0xA2: "BAD_AUTH (the owner hierarchy has a password)",
                                           0x83: "ATTRIBUTES", 0x96: "SCHEME", 0x82: "HASH", 0x84: "VALUE"]
            return "TPM_RC_" + (names[0x80 | code & 0x3F] ?? "error \(String(0x80 | code & 0x3F, radix: 16))") + " (\(hex))"
        }
        let names: [UInt32: String] = [0x100: "INITIALIZE (the TPM was not started)", 0x101: "FAILURE (the TPM is in failure mode)",
                                        0x921: "LOCKOUT (dictionary-attack lockout)", 0x902: "OBJECT_MEMORY (no room for the key)",
                                        0x922: "RETRY", 0x908: "YIELDED", 0x90A: "TESTING"]
        return "TPM_RC_" + (names[code] ?? "\(hex)") + (names[code] == nil ? "" : " (\(hex))")
    }

    static func hint(_ code: UInt32) -> String? {
        switch code & 0x80 != 0 ? 0x80 | code & 0x3F : code {
        case 0x8E, 0xA2:
            return "ssi uses the owner hierarchy without a password; clear it (tpm2_changeauth -c owner -p OLD) or use a key medium ([identity] device)"
        case 0x85:
            return "enable the owner hierarchy in the firmware's TPM settings, or use a key medium ([identity] device)"
        case 0x921:
            return "the TPM is in lockout; wait, or reset it (tpm2_dictionarylockout -c)"
        default:
            return nil
        }
    }

    static func malformed(_ what: String, _ why: String) -> SSIError {
        SSIError("identity", "the TPM's answer to \(what) is malformed: \(why)")
    }

    static func put16(_ bytes: inout [UInt8], _ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func put32(_ bytes: inout [UInt8], _ v: UInt32) {
        bytes += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }
    static func uint16(_ b: [UInt8], at i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
    static func uint32(_ b: [UInt8], at i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
}
