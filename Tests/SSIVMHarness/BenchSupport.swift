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
