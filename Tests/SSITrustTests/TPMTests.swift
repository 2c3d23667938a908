import Foundation
import Testing
import SSICore
import SSITestSupport
@testable import SSITrust

/// The TPM identity's three commands, byte for byte (TPM 2.0 Library,
/// Part 3), what their responses may hold, and the whole derivation on a
/// real software TPM (swtpm), checked against tpm2-tools.
@Suite struct TPMCodecTests {
    static func hex(_ s: String) -> [UInt8] {
        let digits = Array(s.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    @Test func createPrimaryIsAnOwnerHMACKeyTheTPMMakes() {
        let expected = Self.hex("""
            8002 00000039 00000131  40000001
            00000009 40000009 0000 00 0000
            0004 0000 0000
            0010 0008 000b 00040472 0000 0005 000b 0000
            0000 00000000
            """)
        #expect(TPMCodec.createPrimaryHMAC() == expected)
    }

    @Test func hmacAndFlushCommands() {
        #expect(TPMCodec.hmac(handle: 0x8000_0000, data: Array("abc".utf8))
                == Self.hex("8002 00000022 00000155 80000000 00000009 40000009 0000 00 0000 0003 616263 000b"))
        #expect(TPMCodec.flushContext(0x8000_0001) == Self.hex("8001 0000000e 00000165 80000001"))
    }

    @Test func responsesAreReadOrRefusedByName() throws {
        let handle = try TPMCodec.createdHandle(Self.hex("8002 00000012 00000000 80000002 00000000"))
        #expect(handle == 0x8000_0002)
        let digest = [UInt8](repeating: 0xAB, count: 32)
        let hmac = Self.hex("8002 00000035 00000000 00000022 0020") + digest + Self.hex("0000 01 0000")
        #expect(try TPMCodec.digest(hmac) == digest)

        func refusal(_ bytes: [UInt8]) -> String {
            do { _ = try TPMCodec.createdHandle(bytes); return "accepted" } catch { return error.description }
        }
        // An owner hierarchy with a password: BAD_AUTH on session 1.
        let badAuth = refusal(Self.hex("8001 0000000a 000009a2"))
        #expect(badAuth.contains("TPM_RC_BAD_AUTH") && badAuth.contains("without a password"), "\(badAuth)")
        let lockout = refusal(Self.hex("8001 0000000a 00000921"))
        #expect(lockout.contains("LOCKOUT") && lockout.contains("tpm2_dictionarylockout"), "\(lockout)")
        #expect(refusal(Self.hex("8001 0000000a 00000100")).contains("was not started"))
        #expect(refusal(Self.hex("8001 0000000b 00000000")).contains("malformed"), "size disagrees with the bytes")
        #expect(refusal(Self.hex("1234 0000000e 00000000 80000000")).contains("malformed"), "not a response tag")
        #expect(refusal(Self.hex("8001 0000000a 00000000")).contains("no handle"))
        let short = Self.hex("8002 00000016 00000000 00000022 0010") + [UInt8](repeating: 1, count: 4)
        #expect(throws: SSIError.self) { try TPMCodec.digest(short) }
    }

    @Test func responseParsersNeverTrap() {
        let seeds = [Self.hex("8002 00000012 00000000 80000002 00000000"),
                     Self.hex("8002 00000036 00000000 00000022 0020") + [UInt8](repeating: 7, count: 32) + Self.hex("0000 01 0000"),
                     Self.hex("8001 0000000a 000009a2")]
        Fuzz.run("tpm-response", seeds: seeds, iterations: Fuzz.iterations(default: 2000)) { bytes in
            _ = try? TPMCodec.createdHandle(bytes)
            _ = try? TPMCodec.digest(bytes)
            _ = TPMCodec.responseCode(bytes)
        }
    }

    @Test func everyResponseCodeIsDescribed() {
        for code: UInt32 in [0, 0x85, 0x1C5, 0x9A2, 0x100, 0x921, 0xFFFF_FFFF, 0x80] {
            #expect(TPMCodec.describe(code).hasPrefix("TPM_RC_"), "\(code)")
        }
    }
}

/// swtpm on loopback: the derivation on a real TPM 2.0 implementation
/// (libtpms, what qemu's guests get), and tpm2-tools' (tpm2-tss) own
/// CreatePrimary and HMAC of the same template and label.
@Suite(.serialized) struct SoftwareTPMTests {
    static let skip = SoftwareTPM.missing

    /// A connection to swtpm's command port, once it listens (bounded).
    /// swtpm serves one connection at a time: each is closed (the TPM
    /// object ends) before the next.
    func connect(_ tpm: SoftwareTPM) throws -> TPM {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = tpm.port.bigEndian
            sin.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc == 0 { return TPM(fd: fd, name: "swtpm 127.0.0.1:\(tpm.port)") }
            close(fd)
            usleep(50_000)
        }
        throw SSIError("test", "swtpm did not listen on \(tpm.port)")
    }

    func tempDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "ssi-tpm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        return dir
    }

    @Test(.enabled(if: skip == nil, Comment(rawValue: skip ?? "")))
    func theSameTPMGivesTheSameIdentityAndAnotherTPMAnother() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: [UInt8]
        do {
            let tpm = try SoftwareTPM(state: dir + "/state")
            first = try connect(tpm).identitySeed()
            #expect(first.count == 32)
            // Again on a new connection: nothing was left loaded, and the
            // key is the same.
            let again = try connect(tpm).identitySeed()
            #expect(again == first)
            // tpm2-tools (tpm2-tss's own marshalling) makes the same key
            // from the same template: the same HMAC.
            let tools = try tpm.toolsHMAC(of: TPM.label, in: dir)
            #expect(tools == first, "tpm2-tools: \(tools)")
        }
        // The same TPM after a power cycle (swtpm restarted on its state).
        do {
            let tpm = try SoftwareTPM(state: dir + "/state")
            let cycled = try connect(tpm).identitySeed()
            #expect(cycled == first)
        }
        // A new TPM (a replaced board): another identity.
        try FileManager.default.removeItem(atPath: dir + "/state")
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        let tpm = try SoftwareTPM(state: dir + "/state")
        let other = try connect(tpm).identitySeed()
        #expect(other != first && other.count == 32)
        // And the node key made from it signs, as the key exchange needs.
        let key = try NodeKey(seed: other)
        #expect(key.identity.verify(signature: key.sign([1, 2, 3]), of: [1, 2, 3]))
    }
}
