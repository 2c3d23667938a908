import Testing
import Foundation

/// The classes of defect issue 14 removed stay removed: each rule is a
/// pattern that must appear in Sources only where the layer keeps it.
/// A new hand-written EINTR loop, raw poll, second spawn path or trap on
/// input fails here, with the file and line to change.
@Suite struct LayerRulesTests {
    static let sources: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources")

    /// Every Swift line of Sources, with where it is.
    static func lines() throws -> [(file: String, line: Int, text: String)] {
        var out: [(String, Int, String)] = []
        let walker = FileManager.default.enumerator(atPath: sources.path)
        while let rel = walker?.nextObject() as? String {
            guard rel.hasSuffix(".swift") else { continue }
            let text = try String(contentsOf: sources.appendingPathComponent(rel), encoding: .utf8)
            for (k, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = l.trimmingCharacters(in: .whitespaces)
                if code.hasPrefix("//") { continue }
                out.append((rel, k + 1, String(l)))
            }
        }
        return out
    }

    struct Rule: CustomTestStringConvertible, Sendable {
        let what: String
        let pattern: String
        /// Files (paths under Sources) where the pattern belongs.
        let allowed: Set<String>
        var testDescription: String { what }
    }

    static let rules: [Rule] = [
        Rule(what: "EINTR is retried in SSICore's syscall/attempt/pollRetrying only",
             pattern: #"\bEINTR\b"#,
             allowed: ["SSICore/Syscall.swift", "SSICore/Errno+Describe.swift",
                       // nanosleep's remaining time; libudev's NULL-with-errno answer
                       "SSILinux/Process.swift", "SSILinux/Udev.swift"]),
        Rule(what: "no raw poll(2): pollRetrying keeps the deadline through signals",
             pattern: #"(?<![\w.])poll\(&"#,
             allowed: ["SSICore/Syscall.swift"]),
        Rule(what: "one spawn (ssi_spawn): no posix_spawn, and fork only in the supervisor",
             pattern: #"\bposix_spawn|\bfork\(\)"#,
             allowed: ["SSIMembership/AgentSupervisor.swift"]),
        Rule(what: "errno is read at the call, never inside a message",
             pattern: #"errnoDescription\(errno\)"#,
             allowed: ["SSICore/SSIError.swift"]),
        Rule(what: "no trap on input: no precondition, fatalError or try!",
             pattern: #"\bprecondition\(|\bfatalError\(|\btry!"#,
             allowed: []),
        Rule(what: "one path arithmetic (SSICore/Paths.swift)",
             pattern: #"func (dirname|basename|directory|baseName)\((of |_ path)"#,
             allowed: ["SSICore/Paths.swift"]),
        Rule(what: "one atomic file writer (SSICore/IO.swift)",
             pattern: #"\bmkstemp\("#,
             allowed: ["SSICore/IO.swift"]),
    ]

    @Test(arguments: rules)
    func rule(_ rule: Rule) throws {
        let regex = try NSRegularExpression(pattern: rule.pattern)
        let all = try Self.lines()
        #expect(all.count > 10_000, "Sources were found at \(Self.sources.path)")
        let hits = all.filter { l in
            !rule.allowed.contains(l.file)
                && regex.firstMatch(in: l.text, range: NSRange(l.text.startIndex..., in: l.text)) != nil
        }
        #expect(hits.isEmpty, "\(rule.what): \(hits.map { "\($0.file):\($0.line): \($0.text.trimmingCharacters(in: .whitespaces))" }.joined(separator: "\n"))")
    }
}
