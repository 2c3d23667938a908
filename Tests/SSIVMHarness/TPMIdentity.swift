// A guest's TPM identity seen from the host, and files read back from a
// guest: what an administrator's machine does around the nodes.

import Foundation
import SSITestSupport

extension VMTest {
    /// The node key that the TPM whose state is `state` (a guest's swtpm)
    /// derives, computed on the host by tpm2-tools (tpm2-tss, not ssi's
    /// TPM code), written as a key file (mode 0400) for `ssi cluster node
    /// key show` or `enroll --key`. Made before the guest's swtpm starts
    /// on the same state, or after it stopped.
    public func tpmKeyFile(_ state: String) throws -> String {
        let work = path("tpm-work-" + (state as NSString).lastPathComponent)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let keyFile = work + "/node.key"
        try? FileManager.default.removeItem(atPath: keyFile)
        try SoftwareTPM.keyFileText(state: state, label: Array("ssi node identity v1".utf8), work: work)
            .write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o400)
        return keyFile
    }

    /// `ssi cluster node key show`'s `identity:` and `fingerprint:` of a key file.
    public func shownIdentity(_ keyFile: String, ssi: String) throws -> (identity: String, fingerprint: String) {
        let shown = try Command.run([ssi, "cluster", "node", "key", "show", keyFile]).stdout.split(separator: "\n")
        guard let identity = shown.first(where: { $0.hasPrefix("identity: ") })?.dropFirst(10),
              let fingerprint = shown.first(where: { $0.hasPrefix("fingerprint: ") })?.dropFirst(13) else {
            throw HarnessError("ssi cluster node key show \(keyFile) printed no identity: \(shown)")
        }
        return (String(identity), String(fingerprint))
    }
}

extension Guest {
    /// A file's bytes, read through the console: base64 in short lines,
    /// checked against the guest's own SHA-256 (a console has doubled a
    /// byte before); up to three tries.
    public func readFile(_ path: String, timeout: Duration = .seconds(60)) async throws -> Data {
        var last = ""
        for _ in 1...3 {
            let sum = try await run("sha256sum < \(path) | cut -d' ' -f1", timeout: timeout).output
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let text = try await run("base64 -w 64 \(path)", timeout: timeout).output
            if let data = Data(base64Encoded: text.filter { !$0.isWhitespace }) {
                let tmp = NSTemporaryDirectory() + "ssi-read-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                try data.write(to: URL(fileURLWithPath: tmp))
                defer { try? FileManager.default.removeItem(atPath: tmp) }
                let here = try Command.run(["sha256sum", tmp]).stdout.split(separator: " ").first.map(String.init) ?? ""
                if here == sum { return data }
                last = "SHA-256 \(here) here, \(sum) on \(name)"
            } else {
                last = "not base64: \(text.prefix(200))"
            }
        }
        throw HarnessError("reading \(path) from \(name) through the console failed three times: \(last)")
    }
}

extension VMHost {
    /// Whether the file at `path` (an image, a whole disk) holds `needle`
    /// anywhere: memchr for its first byte, memcmp for the rest, over the
    /// file mapped, so a 2 GiB disk takes seconds even in a debug build
    /// (Glibc's module does not export memmem).
    public static func file(_ path: String, contains needle: Data) throws -> Bool {
        guard let first = needle.first else { return true }
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        return data.withUnsafeBytes { hay in
            needle.withUnsafeBytes { n in
                guard let base = hay.baseAddress, hay.count >= n.count else { return false }
                var at = 0
                let last = hay.count - n.count
                while at <= last {
                    guard let hit = memchr(base + at, Int32(first), last - at + 1) else { return false }
                    let offset = base.distance(to: UnsafeRawPointer(hit))
                    if memcmp(base + offset, n.baseAddress!, n.count) == 0 { return true }
                    at = offset + 1
                }
                return false
            }
        }
    }
}
