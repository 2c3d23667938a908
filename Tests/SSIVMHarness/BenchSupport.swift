// What the VM benchmarks (bench/*) share: durations as seconds, number
// formatting, and their command lines (--ssi PATH plus options of their own).

import Foundation

public enum Bench {
    public static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    public static func format(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

    /// The median (0 for none).
    public static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Runs a benchmark's body: a failure prints "failed: ..." and exits 1.
    public static func run(_ body: @Sendable () async throws -> Void) async {
        do {
            try await body()
        } catch {
            print("failed: \(error)")
            exit(1)
        }
    }

    /// The option `name` (parsed by `arguments`) as a whole number of at
    /// least `minimum`; anything else exits 2 saying what it takes.
    public static func number(_ values: [String: String], _ name: String, atLeast minimum: Int = 1,
                              takes: String = "a number") -> Int {
        guard let v = values[name].flatMap({ Int($0) }), v >= minimum else { fail("--\(name) takes \(takes)") }
        return v
    }

    /// Parses `--ssi PATH` and the options in `values` (`--name VALUE`,
    /// stored by name); prints `usage` and exits 2 on anything else, or
    /// when the VM tests could not run here. Returns the ssi binary.
    public static func arguments(usage: String, values: inout [String: String]) -> String {
        var ssi = VMHost.packageRoot + "/.build/release/ssi"
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            if a == "--ssi", let v = args.popFirst() {
                ssi = v
            } else if a.hasPrefix("--"), values[String(a.dropFirst(2))] != nil, let v = args.popFirst() {
                values[String(a.dropFirst(2))] = v
            } else {
                fail("usage: \(usage)")
            }
        }
        if let reason = VMHost.skipReason { fail("cannot run: \(reason)") }
        guard FileManager.default.isExecutableFile(atPath: ssi) else { fail("no ssi binary at \(ssi): run scripts/build") }
        return ssi
    }

    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(2)
    }
}
