import Testing
@testable import SSICore

/// The two escapings, each written once (Escaping.swift), with the exact
/// bytes the wire formats had before they were shared.
@Suite struct EscapingTests {
    @Test func backslashLinesAndRecords() {
        #expect(BackslashEscaping.lines.escape("a\\b\nc\td\r") == "a\\\\b\\nc\td\r")
        #expect(BackslashEscaping.records.escape("a\\b\nc\td\r") == "a\\\\b\\nc\\td\\r")
        // By scalar: a CRLF pair is two escapes, not one Character let through.
        #expect(BackslashEscaping.records.escape("x\r\ny") == "x\\r\\ny")
        for e in [BackslashEscaping.lines, .records] {
            for s in ["", "plain", "a\\b\nc\td\re\r\n", "\\n", "é\u{0}😀\\"] {
                #expect(e.unescape(e.escape(s)) == s)
            }
        }
        // A letter another escaping knows is that letter here.
        #expect(BackslashEscaping.lines.unescape("\\t") == "t")
        #expect(BackslashEscaping.records.unescape("\\t") == "\t")
        // A lone backslash at the end is kept, not dropped.
        #expect(BackslashEscaping.records.unescape("end\\") == "end\\")
    }

    @Test func percentWordsAndResources() {
        #expect(PercentEscaping.viewWords.escape("a b,c%d") == "a%20b%2Cc%25d")
        #expect(PercentEscaping.shipResources.escape("/tmp/a|b%c d") == "/tmp/a%7Cb%25c d")
        for e in [PercentEscaping.viewWords, .shipResources] {
            for s in ["", "plain", "a b,c|d%e", "é\n😀%", "%%%"] {
                #expect(e.unescape(e.escape(s), strict: true) == s)
            }
        }
        // A % that is no escape: kept, or refused when strict.
        #expect(PercentEscaping.viewWords.unescape("50%", strict: false) == "50%")
        #expect(PercentEscaping.shipResources.unescape("50%", strict: true) == nil)
        #expect(PercentEscaping.shipResources.unescape("%zz", strict: true) == nil)
        #expect(PercentEscaping.shipResources.unescape("%7c", strict: true) == "|")
    }
}
