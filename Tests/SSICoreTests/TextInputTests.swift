import SSITestSupport
import Testing
@testable import SSICore

@Suite struct PrintableTests {
    @Test func controlCharactersAreEscaped() {
        #expect(printable("node1") == "node1")
        #expect(printable("a\u{1B}[2Jb") == "a\\u001B[2Jb")
        #expect(printable("one\ntwo\r\tend") == "one\\ntwo\\r\\tend")
        #expect(printable("\u{7F}\u{9B}\u{0}") == "\\u007F\\u009B\\u0000")
        // Text that reads backwards on a terminal, and Unicode line breaks.
        #expect(printable("a\u{202E}b\u{2028}c") == "a\\u202Eb\\u2028c")
        // Not escaped: backslashes, and ordinary non-ASCII text.
        #expect(printable("C:\\dir é ü 日本") == "C:\\dir é ü 日本")
        // "\r\n" is one Character but two escapes.
        #expect(printable("x\r\ny") == "x\\r\\ny")
    }

    @Test func printableFuzz() {
        Fuzz.run("printable", seeds: Fuzz.seeds(["plain", "esc\u{1B}[0m", "bidi\u{202E}x\r\n"]),
                 iterations: Fuzz.iterations(default: 1000)) { bytes in
            let p = printable(String(decoding: bytes, as: UTF8.self))
            let raw = p.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{202E}" }
            #expect(!raw, "\(p)")
        }
    }
}

@Suite struct TextLinesTests {
    @Test func lfAndCrlfGiveTheSameLines() {
        #expect(textLines("a\nb\n") == ["a", "b", ""])
        #expect(textLines("a\r\nb\r\n") == ["a", "b", ""])
        #expect(textLines("a\r\nb\nc") == ["a", "b", "c"])
        #expect(textLines("") == [""])
        // Only a CR before LF ends a line; a lone CR stays in it.
        #expect(textLines("a\rb\n") == ["a\rb", ""])
        #expect(textLines("é\r\n日本\r\n").map(String.init) == ["é", "日本", ""])
    }
}

@Suite struct LinesTests {
    /// What every reader of files, tools' output and peers' messages uses
    /// (it was `split(separator: "\n")` in 30 places: a CRLF text was one line).
    @Test func crlfSplitsLikeLF() {
        #expect("a\r\nb\r\n\r\nc".lines() == ["a", "b", "c"])
        #expect("a\r\nb\r\n\r\nc".lines(omittingEmpty: false) == ["a", "b", "", "c"])
        #expect("one".lines() == ["one"] && "".lines().isEmpty)
        let sub = "x\ny\r\nz"[...]
        #expect(sub.lines() == ["x", "y", "z"])
        // A CR not before an LF stays: it is data, escaped when printed.
        #expect("a\rb\n".lines() == ["a\rb"])
    }
}

@Suite struct KernelCommandLineInputTests {
    /// "\r\n" is one Character: a CRLF line glued its last two words.
    @Test func everyKernelSpaceSeparates() {
        let c = KernelCommandLine("root=/dev/vda\r\nro\tquiet\u{0B}rootwait=5\u{0C}ssi.node=2\r")
        #expect(c.words == ["root=/dev/vda", "ro", "quiet", "rootwait=5", "ssi.node=2"])
        #expect(KernelCommandLine("a=\"x\r\ny\" b").value("a") == "x\r\ny", "quoted spaces stay")
    }

    /// Mutated command lines: the parser returns, no word is empty or holds
    /// an unquoted separator, and value/values/has agree with the words.
    @Test func kernelCommandLineFuzz() {
        let seeds = Fuzz.seeds([
            "BOOT_IMAGE=/vmlinuz root=\"LABEL=my root\" ro quiet rootwait=10 ssi.node=3 -- init args\n",
            "root=UUID=1234 rootdelay=99999999999999999999 ssi.break=root,pre-pivot ssi.timeout=-1\r\n",
        ])
        Fuzz.run("kernel-cmdline", seeds: seeds, iterations: Fuzz.iterations(default: 1000)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            let c = KernelCommandLine(text)
            if !text.contains("\"") {
                // One #expect on a plain Bool: the macro's capture of a
                // closure expression is slow in a loop of thousands.
                let bad = c.words.first { w in w.isEmpty || w.unicodeScalars.contains { $0 == " " || ("\t"..."\r").contains($0) } }
                #expect(bad == nil, "\(bad ?? "")")
            }
            for key in ["root", "ssi.node", "rootwait"] {
                if let v = c.value(key) { #expect(c.words.contains("\(key)=\(v)")) }
                _ = c.values(key)
            }
            #expect(!c.words.contains("--"))
        }
    }
}

@Suite struct AddressInputTests {
    @Test func signsAreNotHexDigits() {
        #expect(throws: AddressParseError.self) { try MACAddress(parsing: "52:54:00:+a:cd:01") }
        #expect(throws: AddressParseError.self) { try MACAddress(parsing: "52:54:00:-a:cd:01") }
        #expect((try? MACAddress(parsing: "52:54:00:0A:cd:01"))?.description == "52:54:00:0a:cd:01")
    }

    @Test func inputIsEscapedInTheMessage() {
        do {
            _ = try IPv4Address(parsing: "10.0.0.1\u{1B}[2J")
            Issue.record("accepted")
        } catch {
            #expect(!error.description.unicodeScalars.contains("\u{1B}"), "\(error)")
            #expect(error.description.contains("\\u001B[2J"))
        }
    }

    /// Mutated addresses, networks and MACs: parsed or refused, and what is
    /// parsed prints back as text that parses to the same value.
    @Test func networkAddressesFuzz() {
        let seeds = Fuzz.seeds(["10.77.0.1", "10.77.0.0/24", "192.168.1.255/32", "52:54:00:ab:cd:01", "52-54-00-AB-CD-01"])
        Fuzz.run("addresses", seeds: seeds, iterations: Fuzz.iterations(default: 1000)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            if let a = try? IPv4Address(parsing: text) { #expect(a.description == text) }
            if let c = try? IPv4CIDR(parsing: text) { #expect((try? IPv4CIDR(parsing: c.description)) == c) }
            if let n = try? IPv4CIDR(parsingNetwork: text) { #expect(n.network == n && n.broadcast.map(n.contains) ?? true) }
            if let m = try? MACAddress(parsing: text) { #expect(m.bytes.count == 6 && (try? MACAddress(parsing: m.description)) == m) }
        }
    }
}

@Suite struct LogLineTests {
    /// A kmsg record must stay one line, CRLF included.
    @Test func newlinesOfEveryKindBecomeSpaces() {
        #expect("a\nb\r\nc\rd".replacingNewlines() == "a b  c d")
    }
}
