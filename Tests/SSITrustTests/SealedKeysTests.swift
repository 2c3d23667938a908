import Foundation
import Testing
import SSICore
import SSITestSupport
@testable import SSITrust

/// The cluster key at rest: sealed to each enrolled identity, opened only
/// by that node's key, and every refusal says what to do about it.
@Suite struct SealedKeysTests {
    static let authkey = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    static let bundle = KeyBundle(files: [.init(path: "/etc/corosync/authkey", mode: 0o400, bytes: authkey)])

    func known(_ pairs: [(String, NodeKey)]) throws -> KnownIdentities {
        try KnownIdentities.parse(pairs.map { "\($0.0) \($0.1.identity)\n" }.joined(), source: "ids")
    }

    @Test func eachNodeOpensItsOwnLineAndNoOther() throws {
        let k1 = NodeKey.generate(), k2 = NodeKey.generate()
        let sealed = try SealedKeys.seal(Self.bundle, to: try known([("node1", k1), ("node2", k2)]))
        let reread = try SealedKeys.parse(sealed.text, source: "/etc/ssi/sealed-keys")
        #expect(reread.boxes.map(\.name) == ["node1", "node2"])
        #expect(reread.boxes.map(\.fingerprint) == [k1.identity.fingerprint, k2.identity.fingerprint])
        #expect(reread.boxes.map(\.line) == [3, 4], "two comment lines first")
        for (name, key) in [("node1", k1), ("node2", k2)] {
            let opened = try reread.open(for: name, with: key, source: "/etc/ssi/sealed-keys")
            #expect(opened.files.count == 1 && opened.files[0].path == "/etc/corosync/authkey")
            #expect(opened.files[0].bytes == Self.authkey && opened.files[0].mode == 0o400)
        }
        // The text holds no byte run of the key.
        let text = Array(sealed.text.utf8)
        #expect(!text.indices.contains { i in text[i...].starts(with: Self.authkey.prefix(16)) })
        #expect(!sealed.text.contains(Base64.encode(Self.authkey)))
    }

    @Test func refusalsSayWhatHappenedAndWhatToRun() throws {
        let k1 = NodeKey.generate(), k2 = NodeKey.generate(), replaced = NodeKey.generate()
        let sealed = try SealedKeys.seal(Self.bundle, to: try known([("node1", k1), ("node2", k2)]))
        func message(_ name: String, _ key: NodeKey) -> SSIError? {
            do { _ = try sealed.open(for: name, with: key, source: "/etc/ssi/sealed-keys"); return nil } catch { return error }
        }
        let changed = try #require(message("node2", replaced))
        #expect(changed.message.contains("/etc/ssi/sealed-keys line 4: node2's cluster key does not open: identity changed"))
        #expect(changed.message.contains("sealed to \(k2.identity.fingerprint), and this node is \(replaced.identity.fingerprint)"))
        #expect(changed.hint?.contains("ssi cluster node enroll node2 --replace --identity \(replaced.identity)") == true, "\(changed)")
        let missing = try #require(message("node3", k1))
        #expect(missing.message.contains("holds no cluster key sealed to node3"), "\(missing)")
        #expect(missing.hint?.contains("ssi cluster node enroll node3 --identity \(k1.identity)") == true
                && missing.hint?.contains("ssi cluster key seal") == true, "\(missing)")
        // A line whose box was swapped for another node's: its own
        // fingerprint, but it does not open.
        var text = sealed.text.split(separator: "\n").map(String.init)
        let box1 = text[2].split(separator: " ")[2], box2 = text[3].split(separator: " ")[2]
        text[3] = text[3].replacingOccurrences(of: box2, with: box1)
        let swapped = try SealedKeys.parse(text.joined(separator: "\n"), source: "s")
        do {
            _ = try swapped.open(for: "node2", with: k2, source: "s")
            Issue.record("a box sealed to node1 opened with node2's key")
        } catch {
            #expect(error.message.contains("names this identity, but it does not open with it"), "\(error)")
        }
    }

    @Test func parseErrorsNameTheLine() {
        let k = NodeKey.generate()
        let fp = k.identity.fingerprint, box = Base64.encode(k.identity.seal(Self.bundle.bytes)!)
        func message(_ text: String) -> String {
            do { _ = try SealedKeys.parse(text, source: "/etc/ssi/sealed-keys"); return "parsed" } catch { return error.description }
        }
        #expect(message("# c\n\nnode1 \(fp) \(box)\r\n") == "parsed")
        #expect(message("node1 \(fp) \(box)\nnode1 \(fp) \(box)\n").contains("line 2: node1 is also on line 1"))
        #expect(message("node1 \(fp)\n").contains("line 1: expected \"NAME SHA256:FINGERPRINT SEALED\", found 2 words"))
        #expect(message("node1 MD5:abc \(box)\n").contains("line 1: \"MD5:abc\" is not a SHA256: fingerprint"))
        #expect(message("node1 \(fp) AAAA\n").contains("line 1: node1's sealed key is not base64 of a sealed box"))
        #expect(message("no/de \(fp) \(box)\n").contains("not a node name"))
        #expect(message("node1 \(fp) " + String(repeating: "A", count: 9000) + "\n").contains("line 1: \(6 + fp.utf8.count + 1 + 9000) bytes, longer than any sealed key"))
    }

    @Test func aBundleOnlyNamesTheKeyWhateverWasSealed() throws {
        let k = NodeKey.generate()
        // Sealed by someone who can write the file: a path a node never
        // takes is refused at the open, with the line.
        let evil = KeyBundle(files: [.init(path: "/etc/shadow", mode: 0o400, bytes: [1])])
        let text = "node1 \(k.identity.fingerprint) \(Base64.encode(k.identity.seal(evil.bytes)!))\n"
        let sealed = try SealedKeys.parse(text, source: "s")
        #expect(throws: SSIError.self) { try sealed.open(for: "node1", with: k, source: "s") }
        do { _ = try sealed.open(for: "node1", with: k, source: "s") } catch {
            #expect(error.message.contains("s line 1: the key bundle names /etc/shadow"), "\(error)")
        }
    }

    @Test func sealedKeysFuzz() throws {
        let k = NodeKey.generate()
        let text = try SealedKeys.seal(Self.bundle, to: try known([("node1", k), ("node2", NodeKey.generate())])).text
        Fuzz.run("sealed-keys", seeds: Fuzz.seeds([text, "# only a comment\n", ""]), iterations: Fuzz.iterations(default: 800)) { bytes in
            let parsed = try SealedKeys.parse(String(decoding: bytes, as: UTF8.self), source: "fuzz")
            for box in parsed.boxes { _ = try? parsed.open(for: box.name, with: k, source: "fuzz") }
        }
    }
}
