import Foundation
import Testing
import SSITestSupport
import SSICore
import SSIConfig
@testable import SSITrust

/// The key made from 32 zero bytes: RFC 8032's published public key for
/// that seed, so the derivation is checked against an outside value.
let zeroSeedPublic = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="

func scratch(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "ssi-trust-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Suite struct NodeKeyTests {
    @Test func seedGivesTheKnownPublicKeyAndFingerprintFormat() throws {
        let key = try NodeKey(seed: [UInt8](repeating: 0, count: 32))
        #expect(key.identity.description == "ed25519:" + zeroSeedPublic)
        let fp = key.identity.fingerprint
        #expect(fp.hasPrefix("SHA256:") && fp.count == 7 + 43 && !fp.hasSuffix("="), "\(fp)")
        #expect(PublicIdentity(key.identity.description) == key.identity)
        #expect(throws: SSIError.self) { try NodeKey(seed: [1, 2, 3]) }
    }

    @Test func signaturesAndSealsBelongToOneKey() throws {
        let a = NodeKey.generate(), b = NodeKey.generate()
        #expect(a.identity != b.identity)
        let message = Array("challenge".utf8)
        let sig = a.sign(message)
        #expect(a.identity.verify(signature: sig, of: message))
        #expect(!b.identity.verify(signature: sig, of: message))
        #expect(!a.identity.verify(signature: sig, of: Array("challengE".utf8)))
        #expect(!a.identity.verify(signature: Array(sig.dropLast()), of: message))
        let sealed = try #require(a.identity.seal(Array("the cluster key".utf8)))
        #expect(a.open(sealed: sealed) == Array("the cluster key".utf8))
        #expect(b.open(sealed: sealed) == nil, "sealed to a, b cannot open it")
        var changed = sealed
        changed[changed.count - 1] ^= 1
        #expect(a.open(sealed: changed) == nil)
        #expect(a.open(sealed: [1, 2]) == nil)
    }

    @Test func base64IsStrict() {
        #expect(Base64.decode("AAEC") == [0, 1, 2])
        #expect(Base64.decode("AAEC!") == nil, "trailing garbage")
        #expect(Base64.decode("AAE") == nil, "missing padding")
        #expect(PublicIdentity("ed25519:AAEC") == nil, "not 32 bytes")
        #expect(PublicIdentity("rsa:" + zeroSeedPublic) == nil)
        #expect(Base64.encode([0, 1, 2]) == "AAEC")
    }
}

@Suite struct NodeKeyFileTests {
    @Test func textRoundTripsAndBlankIsBlank() throws {
        let key = NodeKey.generate()
        guard case .key(let back) = try NodeKeyFile.parse(Array(NodeKeyFile.text(key).utf8), source: "k") else {
            Issue.record("not parsed"); return
        }
        #expect(back.identity == key.identity && back.seed == key.seed)
        // A medium: the text then NULs; CRLF line ends are read too.
        let padded = Array(NodeKeyFile.text(key).replacingOccurrences(of: "\n", with: "\r\n").utf8) + [UInt8](repeating: 0, count: 3000)
        guard case .key(let again) = try NodeKeyFile.parse(padded, source: "/dev/vdb") else { Issue.record("padded"); return }
        #expect(again.identity == key.identity)
        guard case .blank = try NodeKeyFile.parse([UInt8](repeating: 0, count: 4096), source: "/dev/vdb") else {
            Issue.record("zeros are blank"); return
        }
        guard case .blank = try NodeKeyFile.parse([], source: "f") else { Issue.record("empty is blank"); return }
    }

    @Test func errorsNameTheMediumAndLine() throws {
        func message(_ text: String) -> String {
            do { _ = try NodeKeyFile.parse(Array(text.utf8), source: "/dev/vdb"); return "parsed" } catch { return error.description }
        }
        #expect(message("hello\n").contains("/dev/vdb line 1: expected \"ssi node identity v1\""))
        #expect(message("ssi node identity v1\nseed AAEC\n").contains("/dev/vdb line 2: the seed is 32 bytes"))
        #expect(message("ssi node identity v1\nfoo bar\n").contains("line 2: unknown line"))
        #expect(message("ssi node identity v1\n").contains("no seed line"))
        let a = NodeKey.generate(), b = NodeKey.generate()
        let mixed = "ssi node identity v1\nseed \(Base64.encode(a.seed))\npublic \(b.identity)\n"
        #expect(message(mixed).contains("does not belong to the seed"))
        #expect(message("ssi node identity v1\n\u{1b}[2J\n").contains("\\u001B"), "control characters are escaped")
    }

    @Test func filesAreRootsAloneAndNotReplacedByAccident() throws {
        let dir = try scratch("keyfile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/node.key"
        let key = NodeKey.generate()
        try NodeKeyFile.write(key, to: path, force: false)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o400)
        guard case .key(let read) = try NodeKeyFile.read(path) else { Issue.record("not read"); return }
        #expect(read.identity == key.identity)
        #expect(throws: SSIError.self) { try NodeKeyFile.write(NodeKey.generate(), to: path, force: false) }
        try NodeKeyFile.write(NodeKey.generate(), to: path, force: true)
        chmod(path, 0o644)
        do {
            _ = try NodeKeyFile.read(path)
            Issue.record("a key others can read is refused")
        } catch {
            #expect(error.description.contains("mode 644") && error.hint == "chmod 0400 \(path)", "\(error)")
        }
        do {
            _ = try NodeKeyFile.read(dir + "/missing")
            Issue.record("missing")
        } catch {
            #expect(error.description.contains("missing") && error.hint?.contains("key medium") == true)
        }
        #expect(throws: SSIError.self) { try NodeKeyFile.read(dir) }
    }

    @Test func keyFileFuzz() {
        let seeds = Fuzz.seeds([NodeKeyFile.text(NodeKey.generate()), "ssi node identity v1\nseed AAEC\n", ""])
        Fuzz.run("node-key", seeds: seeds, iterations: Fuzz.iterations(default: 800)) { bytes in
            _ = try NodeKeyFile.parse(bytes, source: "fuzz")
        }
    }
}

@Suite struct KnownIdentitiesTests {
    @Test func editsKeepEveryOtherLine() throws {
        let a = NodeKey.generate().identity, b = NodeKey.generate().identity, c = NodeKey.generate().identity
        let text = "# enrolled nodes\nnode1 \(a)  # the init node\n\nnode2 \(b)\n"
        var known = try KnownIdentities.parse(text, source: "ids")
        #expect(known.identity(of: "node1") == a && known.identity(of: "node2") == b && known.identity(of: "node3") == nil)
        known.set("node2", c)
        known.set("node3", a)
        #expect(known.text == "# enrolled nodes\nnode1 \(a)  # the init node\n\nnode2 \(c)\nnode3 \(a)\n")
        let removed = known.remove("node1"), again = known.remove("node1")
        #expect(removed && !again)
        #expect(known.text == "# enrolled nodes\n\nnode2 \(c)\nnode3 \(a)\n")
        let reread = try KnownIdentities.parse(known.text, source: "ids")
        #expect(reread.identity(of: "node2") == c && reread.entries.map(\.line) == [3, 4])
    }

    @Test func errorsNameTheLine() {
        let a = NodeKey.generate().identity
        func message(_ text: String) -> String {
            do { _ = try KnownIdentities.parse(text, source: "/etc/ssi/identities"); return "parsed" } catch { return error.description }
        }
        #expect(message("node1 \(a)\nnode1 \(a)\n").contains("/etc/ssi/identities line 2: node1 is also on line 1"))
        #expect(message("\nnode1\n").contains("line 2: expected \"NAME ed25519:KEY\""))
        #expect(message("node1 ed25519:xyz\n").contains("line 1:"))
        #expect(message("no/de \(a)\n").contains("not a node name"))
        #expect(message("node1 \(a)\r\nnode2 \(a)\r\n") == "parsed", "CRLF lines")
    }

    @Test func missingFileIsEmpty() throws {
        #expect(try KnownIdentities.load("/nonexistent/identities").entries.isEmpty)
    }

    @Test func knownIdentitiesFuzz() {
        let a = NodeKey.generate().identity
        Fuzz.run("known-identities", seeds: Fuzz.seeds(["node1 \(a)\n# c\nnode2 \(a) # x\n"]),
                 iterations: Fuzz.iterations(default: 800)) { bytes in
            _ = try KnownIdentities.parse(String(decoding: bytes, as: UTF8.self), source: "fuzz")
        }
    }
}
