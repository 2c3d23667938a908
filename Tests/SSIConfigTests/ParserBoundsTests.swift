import Foundation
import SSITestSupport
import Testing
@testable import SSIConfig
import SSICore

/// Input that used to crash, hang or mislead the parsers of cluster
/// configuration: each test is one class of it.
@Suite struct TOMLBoundsTests {
    func errors(_ text: String) -> [TOMLError] { TOML.parse(text).errors }

    /// Seconds `body` takes.
    func seconds(_ body: () -> Void) -> Double {
        let d = ContinuousClock().measure(body)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// 100 000 nested arrays overflowed the stack (parseValue and
    /// parseArray call each other).
    @Test func deeplyNestedArraysAreAnErrorNotAStackOverflow() {
        let depth = 100_000
        let text = "ok = 1\nx = " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "\ny = nope\n"
        let (doc, e) = TOML.parse(text)
        #expect(e.count == 2, "\(e)")
        #expect(e.first?.line == 2)
        #expect(e.first?.message.contains("nested more than \(TOML.maxNesting) deep") == true)
        #expect(e.last?.line == 3, "recovery skips the whole nested array, then reads on")
        #expect(doc["ok"]?.integer == 1)
    }

    @Test func nestingUpToTheBoundIsAccepted() {
        let n = TOML.maxNesting
        let ok = "x = " + String(repeating: "[", count: n) + "1" + String(repeating: "]", count: n)
        #expect(errors(ok).isEmpty)
        let over = "x = " + String(repeating: "[", count: n + 1) + "1" + String(repeating: "]", count: n + 1)
        #expect(errors(over).count == 1)
        // Nested across lines, the error names the line of the deepest [.
        let lines = "x = [\n" + String(repeating: "[\n", count: n) + "]\n"
        #expect(errors(lines).first?.line == n + 1)
    }

    /// A header of 20 000 dotted keys took tens of seconds (the path so far
    /// was joined at every level), and a deep dotted key made a tree that
    /// overflowed the stack when it was frozen.
    @Test(arguments: ["[" + String(repeating: "a.", count: 20_000) + "b]\n",
                      String(repeating: "a.", count: 20_000) + "b = 1\n",
                      "[[" + String(repeating: "a.", count: 20_000) + "b]]\n"])
    func deepDottedKeysAreBoundedAndLinear(text: String) {
        var e: [TOMLError] = []
        let t = seconds { e = errors("ok = 1\n" + text + "y = nope\n") }
        #expect(t < 1, "took \(t) s")
        #expect(e.map(\.line) == [2, 3], "\(e)")
        #expect(e.first?.message.contains("more than \(TOML.maxNesting) keys") == true)
    }

    @Test func dottedKeysUpToTheBoundAreAccepted() {
        let n = TOML.maxNesting
        let header = (1...n).map { "k\($0)" }.joined(separator: ".")
        let (doc, e) = TOML.parse("[\(header)]\n\(header) = 1\n")
        #expect(e.isEmpty, "\(e)")
        var t = doc
        for k in 1...n { t = t["k\(k)"]?.table ?? TOMLTable(line: -1) }
        #expect(t.line == 1, "the header's table, \(n) deep")
        #expect(errors("[\(header).one_more]\n").count == 1)
    }

    /// Work linear in the file: at twice these sizes each of these took 30 to
    /// 60 s before (measured); quadratic, so about a quarter of that here.
    @Test(arguments: ["array of tables", "long unknown keys", "MAC list", "agents"])
    func bigDocumentsAreCheckedInLinearTime(kind: String) {
        let text: String
        switch kind {
        case "array of tables":
            // [[header]] copied the whole array of tables to append one.
            text = String(repeating: "[[node]]\n", count: 25_000)
        case "long unknown keys":
            // Each unknown key's edit distance to every known key.
            text = (0..<150).map { "\"\($0)\(String(repeating: "k", count: 10_000))\" = 1\n" }.joined()
        case "MAC list":
            // A node's MAC list searched for each MAC.
            text = "[[node]]\nmac = [" + (0..<15_000).map { "\"52:54:00:\(hex2($0 >> 8)):\(hex2($0 & 255)):01\"" }.joined(separator: ",") + "]\n"
        default:
            // Agents' names searched for each agent.
            text = (0..<10_000).map { "[[agent]]\nname = \"a\($0)\"\n" }.joined()
        }
        var found: [ConfigProblem] = []
        let t = seconds { found = ClusterConfig.check(text: text, file: "big.conf").problems }
        #expect(t < 3, "took \(t) s")
        #expect(!found.isEmpty)
    }

    /// A backslash at the end of a line ate the newline without counting it:
    /// every later line number was one too small, and the recovery then
    /// skipped the next line, hiding its error.
    @Test func lineEndingBackslashKeepsLineNumbers() {
        let text = "a = \"x\\\nb = nope\nc = nope\n[t]\nt = 1\nt = 2\n"
        let e = errors(text)
        #expect(e.map(\.line) == [1, 2, 3, 6], "\(e)")
        #expect(e.first?.message.contains("backslash ends the line") == true)
        // The same in a CRLF file, and inside a string that recovery skips.
        #expect(errors(text.replacingOccurrences(of: "\n", with: "\r\n")).map(\.line) == [1, 2, 3, 6])
        #expect(errors("a = [ oops, \"x\\\n]\nb = nope\n").map(\.line) == [1, 3])
    }

    @Test func integersAtAndBeyondTheEdges() {
        let (doc, e) = TOML.parse("a = 9223372036854775807\nb = -9223372036854775808\nc = 0x7fffffffffffffff\n")
        #expect(e.isEmpty)
        #expect(doc["a"]?.integer == Int64.max && doc["b"]?.integer == Int64.min && doc["c"]?.integer == Int64.max)
        for bad in ["9223372036854775808", "-9223372036854775809", "0xffffffffffffffffff", "99999999999999999999999999",
                    "0x", "-0x1", "1__0", "_1", "1_", "+", "-", "0b2", "1e99999", "00"] {
            #expect(errors("a = \(bad)").count == 1, "\(bad)")
        }
    }

    /// A CRLF file is the same document with the same lines.
    @Test func crlfDocumentsReadAsLF() throws {
        let lf = try String(contentsOfFile: configsDirectory + "/cfs-3node.conf", encoding: .utf8)
        let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
        let a = TOML.parse(lf), b = TOML.parse(crlf)
        #expect(a.errors.isEmpty && b.errors.isEmpty, "\(b.errors)")
        #expect(a.table == b.table)
        let broken = "a = 1\nb = nope\n[t]\nc = 1.5\n"
        #expect(errors(broken.replacingOccurrences(of: "\n", with: "\r\n")).map(\.line) == errors(broken).map(\.line))
        #expect(errors(broken).map(\.line) == [2, 4])
    }

    /// Keys and values are echoed in problems: escapes in them are printed
    /// as escapes, and a newline cannot split one problem into two lines.
    @Test func controlCharactersInNamesAreEscapedInProblems() {
        // A key the decoder reports, and a syntax error the parser reports.
        let printed = problems("\"\\u001B[2J\\nfake.conf:1: all good\" = 1\n").map(\.description)
            + problems("x = 1\u{1B}[31m\n").map(\.description)
        #expect(printed.count >= 2, "\(printed)")
        for p in printed {
            #expect(!p.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "\(p)")
        }
        #expect(printed.contains { $0.contains("\\u001B[2J\\nfake.conf") }, "\(printed)")
    }

    /// Mutants of the example configs and of small documents through the
    /// TOML parser: it returns, every error has a line inside the file, and
    /// a second parse gives the same result.
    @Test func tomlParserFuzz() throws {
        let seeds = try exampleSeeds() + Fuzz.seeds([
            "a = [[1, 2], [\"x\", 'y'], []]\nb.c.d = true\n[e.f]\n[[g]]\nh = 0x1F\n",
            "x = \"esc \\u00e9 \\\\ \\\" \\n\" # c\r\ny = -9223372036854775808\r\n",
            "z = " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
            "[" + String(repeating: "a.", count: 40) + "b]\n",
        ])
        Fuzz.run("toml", seeds: seeds, iterations: Fuzz.iterations(default: 1000)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            let lines = textLines(text).count
            let (doc, e) = TOML.parse(text)
            for err in e { #expect(err.line >= 1 && err.line <= lines, "line \(err.line) of \(lines)") }
            #expect(TOML.parse(text).table == doc)
        }
    }

    /// The whole `ssi cluster config check` path on mutants of the example
    /// configs: problems, never a trap, and every problem printable.
    @Test func configCheckFuzz() throws {
        let seeds = try exampleSeeds()
        Fuzz.run("config-check", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            let (config, found) = ClusterConfig.check(text: text, file: "fuzz.conf")
            #expect((config == nil) == !found.isEmpty)
            for p in found {
                #expect(!p.description.unicodeScalars.contains { $0 == "\n" || $0 == "\u{1B}" }, "\(p)")
            }
        }
    }

    func exampleSeeds() throws -> [[UInt8]] {
        try ["cfs-3node.conf", "gfs2-3node.conf"].map {
            Array(try String(contentsOfFile: configsDirectory + "/" + $0, encoding: .utf8).utf8)
        }
    }
}

func hex2(_ n: Int) -> String {
    let h = String(n, radix: 16)
    return h.count == 1 ? "0" + h : h
}

@Suite struct ClustertabInputTests {
    let tab = "# OpenSSI clustertab\n1\t10.77.0.1\t52:54:00:00:00:01\tP\t1\t/dev/hda1\n2\t10.77.0.2\t52:54:00:00:00:02\tP\t0\n"

    /// "\r\n" is one Character: the file was one line, "no nodes".
    @Test func crlfClustertabIsReadAsLF() throws {
        let crlf = tab.replacingOccurrences(of: "\n", with: "\r\n")
        let entries = try Clustertab.parse(text: crlf, file: "clustertab")
        #expect(entries.map(\.number) == [1, 2])
        #expect(entries.map(\.line) == [2, 3])
        #expect(entries[0].bootDevice == "/dev/hda1", "no CR left on the last field")
        let conv = try Clustertab.convert(text: crlf, file: "clustertab", clusterName: "ssi", prefix: "10.77.0.0/24")
        #expect(conv.entries.count == 2)
        // Errors name the right line in a CRLF file too.
        #expect(throws: SSIError.self) { try Clustertab.parse(text: crlf + "3\t10.77.0.3\tnot-a-mac\r\n", file: "ct") }
        do {
            _ = try Clustertab.parse(text: crlf + "3\t10.77.0.3\tnot-a-mac\r\n", file: "ct")
        } catch {
            #expect(error.message.hasPrefix("ct:4: field 3"), "\(error.message)")
        }
    }

    @Test func controlCharactersInFieldsAreEscaped() {
        do {
            _ = try Clustertab.parse(text: tab + "x\u{1B}[2J\t10.77.0.3\t52:54:00:00:00:03\n", file: "ct")
            Issue.record("a bad node number was accepted")
        } catch {
            #expect(error.message.contains("x\\u001B[2J"), "\(error.message)")
            #expect(!error.message.unicodeScalars.contains("\u{1B}"))
        }
    }

    @Test func clustertabFuzz() throws {
        let example = try String(contentsOfFile: configsDirectory + "/clustertab.example", encoding: .utf8)
        let seeds = Fuzz.seeds([example, tab, tab.replacingOccurrences(of: "\n", with: "\r\n")])
        Fuzz.run("clustertab", seeds: seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let entries = try Clustertab.parse(text: text, file: "ct")
                #expect(!entries.isEmpty && entries.contains(where: \.initNode))
                _ = try Clustertab.convert(text: text, file: "ct")
            } catch {
                #expect(!"\(error)".unicodeScalars.contains("\u{1B}"))
            }
        }
    }
}

@Suite struct ClustertabConversionTests {
    /// The file name and the fields land in comments of the generated
    /// config: a newline in them wrote a line of config, a control
    /// character made the generated config invalid.
    @Test func namesInGeneratedCommentsAreEscaped() throws {
        let tab = "1\t10.77.0.1\t52:54:00:00:00:01\tP\t1\t/dev/sda\u{0B}1\n2\t10.77.0.2\t52:54:00:00:00:02\tE\u{1B}\t0\n"
        let conv = try Clustertab.convert(text: tab, file: "ct\n[evil]\nx = 1", clusterName: "ssi", prefix: "10.77.0.0/24")
        #expect(!conv.text.contains("\n[evil]"))
        #expect(conv.text.contains("ct\\n[evil]\\nx = 1"))
        #expect(conv.text.contains("boot device /dev/sda\\u000B1"))
        #expect(!conv.text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
    }
}

@Suite struct ConfigFileKindTests {
    /// A FIFO with no writer kept `ssi cluster config check` waiting in
    /// open(2) forever; /dev/zero is cut at the size bound.
    @Test func pipesAndDirectoriesAreRefusedAtOnce() throws {
        let dir = try TempDir()
        let fifo = dir.path + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: SSIError.self) { try ConfigFiles.readBytes(fifo, what: "cluster config") }
        #expect(throws: SSIError.self) { try ConfigFiles.readBytes(dir.path, what: "cluster config") }
        do {
            _ = try ConfigFiles.readBytes("/dev/zero", what: "cluster config")
            Issue.record("/dev/zero was read to the end")
        } catch {
            #expect(error.message.contains("larger than 16 MiB"), "\(error)")
        }
        let file = dir.path + "/c.conf"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x = 1\n".utf8)))
        #expect(try ConfigFiles.readBytes(file, what: "cluster config") == Array("x = 1\n".utf8))
    }
}
