// Seeded mutation fuzzing shared by every parser's fuzz test.
//
// Each parser test takes a few valid seed inputs, mutates them with a
// deterministic generator and feeds every mutant to the parser: the parser
// must return or throw, never trap, and must finish within its bounds. The
// normal `swift test` run does a few hundred iterations per parser (seconds);
// `SSI_FUZZ_ITERATIONS=N` (bench/fuzz) runs longer, and `SSI_FUZZ_SEED=S`
// replays a run. A failing input is written to $TMPDIR so it can be replayed.

import Foundation

/// SplitMix64: small, fast, and the same sequence on every machine.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum Fuzz {
    /// Iterations for one parser: `default` in the normal test run, or
    /// SSI_FUZZ_ITERATIONS when set (the longer run of bench/fuzz).
    public static func iterations(default count: Int) -> Int {
        if let s = ProcessInfo.processInfo.environment["SSI_FUZZ_ITERATIONS"], let n = Int(s), n > 0 { return n }
        return count
    }

    /// The run's seed: SSI_FUZZ_SEED, else a fixed one so that a failure
    /// in CI is the same failure on a developer's machine.
    public static var seed: UInt64 {
        if let s = ProcessInfo.processInfo.environment["SSI_FUZZ_SEED"], let n = UInt64(s) { return n }
        return 0x5551_5F46_555A_5A31
    }

    /// Bytes that break parsers: separators, quotes, escapes, NUL, CR/LF,
    /// high bytes, terminal escapes.
    static let interestingBytes: [UInt8] = [
        0x00, 0x0A, 0x0D, 0x09, 0x20, 0x22, 0x27, 0x5C, 0x3D, 0x2C, 0x2E, 0x5B, 0x5D, 0x7B, 0x7D,
        0x23, 0x3A, 0x2F, 0x2D, 0x2B, 0x30, 0x39, 0x1B, 0x7F, 0x80, 0xC3, 0xFF, 0xFE,
    ]
    /// Numbers at the edges of every width, as text.
    static let interestingNumbers: [String] = [
        "0", "-1", "1", "127", "128", "255", "256", "32767", "65535", "65536", "2147483647", "2147483648",
        "4294967295", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "18446744073709551615", "99999999999999999999999999", "0x7fffffff", "1e308",
    ]

    /// One mutant of `input`: one to four of flip, insert, delete, duplicate,
    /// splice-with-another-seed, interesting byte/number, long repeat.
    public static func mutate(_ input: [UInt8], seeds: [[UInt8]], using rng: inout SeededGenerator) -> [UInt8] {
        var data = input
        let rounds = Int.random(in: 1...4, using: &rng)
        for _ in 0..<rounds {
            let pos = data.isEmpty ? 0 : Int.random(in: 0..<data.count, using: &rng)
            switch Int.random(in: 0..<9, using: &rng) {
            case 0 where !data.isEmpty:
                data[pos] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1:
                data.insert(interestingBytes.randomElement(using: &rng)!, at: min(pos, data.count))
            case 2 where !data.isEmpty:
                let n = min(data.count - pos, Int.random(in: 1...16, using: &rng))
                data.removeSubrange(pos..<(pos + n))
            case 3 where !data.isEmpty:
                let n = min(data.count - pos, Int.random(in: 1...64, using: &rng))
                data.insert(contentsOf: data[pos..<(pos + n)], at: pos)
            case 4:
                if let other = seeds.randomElement(using: &rng), !other.isEmpty {
                    let from = Int.random(in: 0..<other.count, using: &rng)
                    let n = min(other.count - from, Int.random(in: 1...128, using: &rng))
                    data.insert(contentsOf: other[from..<(from + n)], at: min(pos, data.count))
                }
            case 5:
                let number = Array(interestingNumbers.randomElement(using: &rng)!.utf8)
                data.insert(contentsOf: number, at: min(pos, data.count))
            case 6 where !data.isEmpty:
                // A long run of one byte: nesting, long names, long values.
                let byte = Bool.random(using: &rng) ? data[pos] : interestingBytes.randomElement(using: &rng)!
                data.insert(contentsOf: repeatElement(byte, count: Int.random(in: 64...4096, using: &rng)), at: pos)
            case 7 where !data.isEmpty:
                data[pos] = interestingBytes.randomElement(using: &rng)!
            default:
                if !data.isEmpty { data.removeSubrange(pos...) }  // truncation
            }
        }
        return data
    }

    /// Feeds `iterations` mutants of the seeds (and the seeds themselves)
    /// to `body`. `body` returns normally or throws; either is fine. An
    /// input is saved before it is tried, so a trap leaves it on disk.
    public static func run(_ name: String, seeds: [[UInt8]], iterations: Int,
                           _ body: ([UInt8]) throws -> Void) {
        var rng = SeededGenerator(seed: seed ^ UInt64(truncatingIfNeeded: name.utf8.reduce(5381) { ($0 &* 33) &+ Int($1) }))
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let crashFile = "\(tmp)/ssi-fuzz-\(name)-last-input"
        for s in seeds { try? body(s) }
        for _ in 0..<iterations {
            let base = seeds.randomElement(using: &rng) ?? []
            let input = mutate(base, seeds: seeds, using: &rng)
            _ = FileManager.default.createFile(atPath: crashFile, contents: Data(input))
            _ = try? body(input)
        }
        try? FileManager.default.removeItem(atPath: crashFile)
    }

    /// Text seeds as bytes.
    public static func seeds(_ texts: [String]) -> [[UInt8]] { texts.map { Array($0.utf8) } }
}
