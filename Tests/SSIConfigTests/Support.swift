import Foundation
import Testing
import SSITestSupport
@testable import SSIConfig
import SSICore

/// A valid 3-node cfs config; tests change one thing and look for the
/// problem it causes.
let baseCFS = """
    [cluster]
    name = "ssi"

    [network]
    prefix = "10.77.0.0/24"

    [root]
    type = "cfs"
    server = 1

    [[node]]
    number = 1
    name = "node1"
    mac = "52:54:00:00:00:01"
    address = "10.77.0.1"
    role = "init"

    [[node]]
    number = 2
    name = "node2"
    mac = "52:54:00:00:00:02"
    address = "10.77.0.2"
    role = "diskless"

    [[node]]
    number = 3
    name = "node3"
    mac = "52:54:00:00:00:03"
    address = "10.77.0.3"
    role = "diskless"

    """

let baseGFS2 = SampleConfigs.gfs2

/// `text` with the `occurrence`-th (1-based) `old` replaced by `new`.
func replacing(_ old: String, with new: String, in text: String, occurrence: Int = 1) -> String {
    var searchStart = text.startIndex
    var n = 0
    while let r = text.range(of: old, range: searchStart..<text.endIndex) {
        n += 1
        if n == occurrence {
            return text.replacingCharacters(in: r, with: new)
        }
        searchStart = r.upperBound
    }
    Issue.record("\(old) occurs fewer than \(occurrence) times")
    return text
}

/// The 1-based line of the `occurrence`-th line containing `needle`.
func line(of needle: String, in text: String, occurrence: Int = 1) -> Int {
    var n = 0
    for (k, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where l.contains(needle) {
        n += 1
        if n == occurrence { return k + 1 }
    }
    Issue.record("\(needle) occurs fewer than \(occurrence) times")
    return -1
}

func problems(_ text: String, file: String = "test.conf") -> [ConfigProblem] {
    ClusterConfig.check(text: text, file: file).problems
}

func valid(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> ClusterConfig {
    let (config, problems) = ClusterConfig.check(text: text, file: "test.conf")
    #expect(problems.isEmpty, "\(problems.map(\.description).joined(separator: "\n"))", sourceLocation: sourceLocation)
    return try #require(config, sourceLocation: sourceLocation)
}

/// Expects exactly one problem, at `line`, about `field`, whose text
/// contains every string in `contains`; its printed form must start with
/// `test.conf:LINE: FIELD: `.
func expectOneProblem(_ text: String, line: Int, field: String, _ contains: String...,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    let ps = problems(text)
    #expect(ps.count == 1, "\(ps.map(\.description).joined(separator: "\n"))", sourceLocation: sourceLocation)
    guard let p = ps.first else { return }
    #expect(p.line == line, "\(p)", sourceLocation: sourceLocation)
    #expect(p.field == field, "\(p)", sourceLocation: sourceLocation)
    let prefix = line > 0 ? "test.conf:\(line): " : "test.conf: "
    #expect(p.description.hasPrefix(prefix + (field.isEmpty ? "" : field + ": ")), "\(p)", sourceLocation: sourceLocation)
    for c in contains {
        #expect(p.description.contains(c), "\(p) lacks \"\(c)\"", sourceLocation: sourceLocation)
    }
}

/// A temporary directory, removed at the end of the test.
struct TempDir: ~Copyable {
    let path: String
    init() throws {
        let base = FileManager.default.temporaryDirectory.path + "/ssiconfig-test-XXXXXX"
        var template = Array(base.utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw CocoaError(.fileWriteUnknown) }
        path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The repository's configs/ directory.
let configsDirectory: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("configs").path
}()
