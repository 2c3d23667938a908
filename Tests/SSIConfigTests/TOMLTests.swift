import Testing
@testable import SSIConfig

@Suite struct TOMLParserTests {
    func parse(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> TOMLTable {
        let (t, errors) = TOML.parse(text)
        #expect(errors.isEmpty, "\(errors)", sourceLocation: sourceLocation)
        return t
    }

    func errors(_ text: String) -> [TOMLError] { TOML.parse(text).errors }

    @Test func everySupportedConstructWithLines() throws {
        let text = """
            # a comment
            top = "level"   # trailing comment

            [a]
            basic = "tab\\there \\"q\\" \\\\ \\u00e9\\U0001F600"
            literal = 'C:\\path\\no "escapes"'
            int = 1_000
            neg = -42
            hex = 0xff
            oct = 0o755
            bin = 0b101
            yes = true
            no = false
            "quoted key" = 1
            'lit key' = 2
            dotted.key = "d"
            list = [
              "x",   # comment in an array
              "y",
            ]
            nested = [[1, 2], [3]]
            empty = []

            [a.b]
            deep = 1

            [[n]]
            k = 1

            [[n]]
            k = 2
            """
        let t = parse(text)
        #expect(t["top"]?.string == "level")
        #expect(t.entry("top")?.line == 2)
        let a = try #require(t["a"]?.table)
        #expect(a.line == 4)
        #expect(a["basic"]?.string == "tab\there \"q\" \\ é😀")
        #expect(a["literal"]?.string == #"C:\path\no "escapes""#)
        #expect(a["int"]?.integer == 1000)
        #expect(a["neg"]?.integer == -42)
        #expect(a["hex"]?.integer == 255)
        #expect(a["oct"]?.integer == 0o755)
        #expect(a["bin"]?.integer == 5)
        #expect(a["yes"]?.boolean == true)
        #expect(a["no"]?.boolean == false)
        #expect(a["quoted key"]?.integer == 1)
        #expect(a["lit key"]?.integer == 2)
        #expect(a["dotted"]?.table?["key"]?.string == "d")
        let list = try #require(a["list"]?.array)
        #expect(list.map(\.string) == ["x", "y"])
        #expect(list.map(\.line) == [18, 19])
        #expect(a.entry("list")?.line == 17)
        #expect(a["nested"]?.array?.map { $0.array?.count } == [2, 1])
        #expect(a["empty"]?.array?.isEmpty == true)
        #expect(a["b"]?.table?["deep"]?.integer == 1)
        #expect(a["b"]?.table?.line == 24)
        let n = try #require(t["n"]?.array)
        #expect(n.map { $0.table?["k"]?.integer } == [1, 2])
        #expect(n.map(\.line) == [27, 30])
        #expect(t.keys == ["top", "a", "n"])
    }

    @Test func crlfLineEndingsAndNoFinalNewline() {
        let t = parse("a = 1\r\nb = \"x\"\r\n[c]\r\nd = true")
        #expect(t["a"]?.integer == 1)
        #expect(t["b"]?.string == "x")
        #expect(t["c"]?.table?["d"]?.boolean == true)
        #expect(t["c"]?.table?.entry("d")?.line == 4)
    }

    @Test func integerLimits() {
        let t = parse("max = 9223372036854775807\nmin = -9223372036854775808\nplus = +7\nzero = 0")
        #expect(t["max"]?.integer == .max)
        #expect(t["min"]?.integer == .min)
        #expect(t["plus"]?.integer == 7)
        #expect(t["zero"]?.integer == 0)
    }

    @Test(arguments: [
        ("x = 1.5", "floats are not supported"),
        ("x = 1e3", "floats are not supported"),
        ("x = inf", "floats are not supported"),
        ("x = 1979-05-27", "dates and times are not supported"),
        ("x = 07:32:00", "dates and times are not supported"),
        ("x = { a = 1 }", "inline tables are not supported"),
        ("x = \"\"\"\nmulti\n\"\"\"", "multi-line strings"),
        ("x = '''\nmulti\n'''", "multi-line strings"),
        ("x = 9223372036854775808", "out of range"),
        ("x = 012", "leading zeros"),
        ("x = 1__0", "underscore"),
        ("x = _1", "underscore"),
        ("x = -0x10", "sign is not allowed"),
        ("x = \"open", "unterminated string"),
        ("x = \"bad \\q\"", "unknown escape"),
        ("x = \"\\u12\"", "needs 4 hexadecimal digits"),
        ("x = \"\\uD800\"", "not a Unicode scalar"),
        ("x = [1, 2", "not closed"),
        ("x = [1 2]", "expected , or ]"),
        ("x", "expected = after the key x"),
        ("x = ", "expected a value"),
        ("x = stop", "strings need quotes: \"stop\""),
        ("x = 10.77.0.1", "strings need quotes"),
        ("x = 52:54:00:00:00:01", "strings need quotes"),
        ("x = 10.77.0.0/24", "strings need quotes: \"10.77.0.0/24\""),
        ("x = /etc/ssi/authkey", "expected a value, found '/'"),
        ("x = 1 y = 2", "after the value"),
        ("[a", "expected ] to close"),
        ("[[a]", "expected ]] to close"),
        ("[a] x = 1", "after the table header"),
        ("= 1", "expected a key"),
        ("a.=1", "expected a key"),
    ])
    func rejectsWithClearError(text: String, expected: String) {
        let e = errors(text)
        #expect(e.count == 1, "\(e)")
        let first = e.first.map { $0.message + ($0.hint.map { "; " + $0 } ?? "") } ?? ""
        #expect(first.contains(expected), "\(first)")
        #expect(e.first?.line == 1)
    }

    @Test func structureErrorsNameBothLines() {
        var e = errors("a = 1\nb = 2\na = 3")
        #expect(e.count == 1)
        #expect(e.first?.line == 3)
        #expect(e.first?.message == "a is set twice (first at line 1)")

        e = errors("[t]\nx = 1\n\n[t]\nx = 2")
        #expect(e.count == 1, "the keys of a refused header go nowhere: \(e)")
        #expect(e.first?.line == 4)
        #expect(e.first?.message.contains("defined twice (first at line 1)") == true)

        let (t, dup) = TOML.parse("a = 1\na = 2\nb = 3")
        #expect(dup.count == 1)
        #expect(t["a"]?.integer == 1)
        #expect(t["b"]?.integer == 3, "the line after a duplicate is read")

        e = errors("t = 1\n[t]")
        #expect(e.first?.line == 2)
        #expect(e.first?.message.contains("already an integer (line 1)") == true)

        e = errors("[t]\n[[t]]")
        #expect(e.first?.message.contains("already a table (line 1)") == true)

        e = errors("[[t]]\n[t]")
        #expect(e.first?.message.contains("already an array of tables") == true)

        e = errors("[a]\nb.c = 1\n[a.b]\n")
        #expect(e.first?.line == 3, "a table made by dotted keys cannot get a header later")

        e = errors("[a.b]\nx = 1\n[a]\ny = 2")
        #expect(e.isEmpty, "a super-table may be defined after its sub-table: \(e)")
    }

    @Test func collectsEveryErrorAndRecoversAfterMultiLineArrays() {
        let text = """
            a = 1.5
            b = [
              "x",
              oops,
              "z",
            ]
            c = 2
            d = nope
            c = 3
            """
        let e = errors(text)
        #expect(e.map(\.line) == [1, 4, 8, 9], "\(e)")
        // The parser got back in step after the broken array: c was read.
        #expect(TOML.parse(text).table["c"]?.integer == 2)
    }

    @Test func controlCharactersAreRejected() {
        #expect(errors("x = \"a\u{01}b\"").first?.message.contains("control character U+0001") == true)
        #expect(errors("# bell \u{07}\nx = 1").first?.line == 1)
    }
}
