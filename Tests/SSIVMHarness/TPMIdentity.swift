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
    /// A file's bytes, read through the console 384 bytes at a time (as
    /// base64, 512 characters in 8 lines), each piece checked against the
    /// guest's own SHA-256 of it and read again, up to five times, when
    /// the console mangled it. A busy host's console doubles bytes often
    /// enough that a 4 KiB file read whole failed three tries in a CI run.
    public func readFile(_ path: String, timeout: Duration = .seconds(60)) async throws -> Data {
        let piece = 384
        var data = Data()
        // Until a short piece (the end); at most 1.5 MiB.
        for index in 0..<4096 {
            var got: Data?
            var last = ""
            for _ in 1...5 where got == nil {
                let out = try await run("dd if=\(path) bs=\(piece) skip=\(index) count=1 2>/dev/null > /tmp/.ssi-piece && "
                                        + "sha256sum < /tmp/.ssi-piece | cut -c1-64 && base64 -w 64 /tmp/.ssi-piece", timeout: timeout).output
                var lines = out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                guard !lines.isEmpty else { last = "no output"; continue }
                let sum = lines.removeFirst()
                guard let bytes = Data(base64Encoded: lines.joined()) else {
                    last = "not base64: \(lines.joined().prefix(100))"
                    continue
                }
                let tmp = NSTemporaryDirectory() + "ssi-read-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                try bytes.write(to: URL(fileURLWithPath: tmp))
                defer { try? FileManager.default.removeItem(atPath: tmp) }
                let here = try Command.run(["sha256sum", tmp]).stdout.split(separator: " ").first.map(String.init) ?? ""
                if here == sum { got = bytes } else { last = "SHA-256 \(here) here, \(sum) on \(name)" }
            }
            guard let got else {
                throw HarnessError("reading \(path) from \(name) through the console: bytes \(index * piece) to \(index * piece + piece - 1) "
                                   + "failed five times: \(last)")
            }
            data.append(got)
            if got.count < piece { return data }
        }
        throw HarnessError("reading \(path) from \(name) through the console: more than 1.5 MiB")
    }
}

extension VMHost {
    /// Whether the file at `path` (an image, a whole disk) holds `needle`
    /// anywhere: memchr for its first byte, memcmp for the rest, over the
    /// file mapped, so a 2 GiB disk takes seconds even in a debug build
    /// (Glibc's module does not export memmem).
    public static func file(_ path: String, contains needle: Data) throws -> Bool {
        data(try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped), contains: needle)
    }

    /// Whether `data` holds `needle` anywhere (memchr and memcmp).
    public static func data(_ data: Data, contains needle: Data) -> Bool {
        firstOffset(of: needle, in: data) { _ in true } != nil
    }

    /// The first offset of `needle` in `data` for which `accept` says yes
    /// (memchr and memcmp, as above: a debug build's own loop over a
    /// 48 MB image's files took five minutes of the CFS test).
    public static func firstOffset(of needle: Data, in data: Data, where accept: (Int) -> Bool) -> Int? {
        guard let first = needle.first else { return 0 }
        return data.withUnsafeBytes { hay in
            needle.withUnsafeBytes { n in
                guard let base = hay.baseAddress, hay.count >= n.count else { return nil }
                var at = 0
                let last = hay.count - n.count
                while at <= last {
                    guard let hit = memchr(base + at, Int32(first), last - at + 1) else { return nil }
                    let offset = base.distance(to: UnsafeRawPointer(hit))
                    if memcmp(base + offset, n.baseAddress!, n.count) == 0 && accept(offset) { return offset }
                    at = offset + 1
                }
                return nil
            }
        }
    }

    /// Whether `data` holds a node key file's seed line: "seed ", 43
    /// base64 characters, "=" and a newline (32 bytes in base64).
    public static func holdsSeedLine(_ data: Data) -> Bool {
        let base64 = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        return firstOffset(of: Data("seed ".utf8), in: data) { at in
            let value = data.startIndex + at + 5
            guard value + 45 <= data.endIndex else { return false }
            return data[value..<(value + 43)].allSatisfy { base64.contains($0) } && data[value + 43] == UInt8(ascii: "=")
                && data[value + 44] == UInt8(ascii: "\n")
        } != nil
    }
}
