// A strict subset of TOML 1.0, parsed by hand.
//
// Why not TOMLKit: it wraps the C++ toml++ library, which would ride in
// every initramfs (this module is linked into PID 1), and its errors do not
// carry the line of every value. The cluster config needs only a small part
// of TOML, and every error must name FILE:LINE.
//
// Supported: comments; `[table]` and `[[array.of.tables]]` headers; bare,
// quoted and dotted keys; basic ("...") and literal ('...') strings;
// integers (decimal, 0x, 0o, 0b, with `_` between digits); booleans; arrays
// (nested, spanning lines, trailing comma). Rejected, with an error that
// names the line: multi-line strings, floats, dates and times, inline
// tables. Every value, key and table remembers its line.
//
// Bounds: the parser and the tree it builds are recursive, so nesting is
// bounded (`TOML.maxNesting` arrays in arrays, and as many keys in one dotted
// key or header); a deeper document is an error that names the line, never
// a stack overflow. Every step is linear in the input.

/// A parsed TOML value with the line (1-based) where it starts.
public struct TOMLValue: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case boolean(Bool)
        case array([TOMLValue])
        case table(TOMLTable)
    }

    public var kind: Kind
    public var line: Int

    public init(_ kind: Kind, line: Int) {
        self.kind = kind
        self.line = line
    }

    /// "a string", "an integer" ... for messages.
    public var typeName: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .boolean: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    public var string: String? { if case .string(let s) = kind { return s }; return nil }
    public var integer: Int64? { if case .integer(let i) = kind { return i }; return nil }
    public var boolean: Bool? { if case .boolean(let b) = kind { return b }; return nil }
    public var array: [TOMLValue]? { if case .array(let a) = kind { return a }; return nil }
    public var table: TOMLTable? { if case .table(let t) = kind { return t }; return nil }
}

/// A table: its keys in file order, each with the line of its key.
public struct TOMLTable: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        /// The line of the key (for a table: of its header or dotted key).
        public var line: Int
        public var value: TOMLValue
    }

    /// The line of the table's header; 0 for the document itself.
    public var line: Int
    public private(set) var entries: [Entry] = []

    public init(line: Int, entries: [Entry] = []) {
        self.line = line
        self.entries = entries
    }

    public subscript(key: String) -> TOMLValue? {
        entries.first(where: { $0.key == key })?.value
    }

    public func entry(_ key: String) -> Entry? {
        entries.first(where: { $0.key == key })
    }

    public var keys: [String] { entries.map(\.key) }
}

/// One syntax or structure error in a TOML document.
public struct TOMLError: Error, Sendable, Equatable {
    public var line: Int
    public var message: String
    public var hint: String?

    public init(line: Int, _ message: String, hint: String? = nil) {
        self.line = line
        self.message = message
        self.hint = hint
    }
}

public enum TOML {
    /// The deepest array nesting, and the most keys in one dotted key or
    /// table header. A table is then at most 2 × this deep (a header's keys,
    /// then a dotted key's), which a thread's stack holds with room to spare.
    /// A cluster config needs 3.
    public static let maxNesting = 32

    /// Parses a whole document. Errors are collected, not thrown one at a
    /// time: after a syntax error the parser skips to the end of the
    /// statement (the line, or the end of an array that spans lines) and
    /// goes on, so one run reports every problem.
    public static func parse(_ text: String) -> (table: TOMLTable, errors: [TOMLError]) {
        var parser = TOMLParser(text)
        parser.parseDocument()
        return (parser.root.freeze(), parser.errors)
    }
}

// MARK: - Building

/// The document under construction. Classes, because headers and dotted
/// keys mutate tables deep inside the tree.
final class TableNode {
    enum Origin { case document, header, implicit, dotted, arrayElement }

    enum Item {
        case value(TOMLValue)
        case table(TableNode)
        case tables(TableList)
    }

    /// The elements of an array of tables, in a class so that a [[header]]
    /// appends in place: appending to an array held in the dictionary
    /// copied it, and 100 000 [[node]] headers took minutes.
    final class TableList {
        var nodes: [TableNode]
        init(_ nodes: [TableNode]) { self.nodes = nodes }
    }

    var line: Int
    var origin: Origin
    var order: [String] = []
    var items: [String: (line: Int, item: Item)] = [:]

    init(line: Int, origin: Origin) {
        self.line = line
        self.origin = origin
    }

    func set(_ key: String, line: Int, _ item: Item) {
        if items[key] == nil { order.append(key) }
        items[key] = (line, item)
    }

    func freeze() -> TOMLTable {
        var entries: [TOMLTable.Entry] = []
        for key in order {
            guard let (keyLine, item) = items[key] else { continue }
            switch item {
            case .value(let v):
                entries.append(.init(key: key, line: keyLine, value: v))
            case .table(let node):
                entries.append(.init(key: key, line: keyLine, value: TOMLValue(.table(node.freeze()), line: node.line)))
            case .tables(let list):
                let values = list.nodes.map { TOMLValue(.table($0.freeze()), line: $0.line) }
                entries.append(.init(key: key, line: keyLine, value: TOMLValue(.array(values), line: keyLine)))
            }
        }
        return TOMLTable(line: line, entries: entries)
    }
}

struct TOMLParser {
    private let s: [Unicode.Scalar]
    private var i = 0
    private var line = 1
    /// How deep in arrays the value being parsed is, for error recovery.
    private var arrayDepth = 0

    let root = TableNode(line: 0, origin: .document)
    private var current: TableNode
    var errors: [TOMLError] = []

    init(_ text: String) {
        s = Array(text.unicodeScalars)
        current = root
    }

    // MARK: Scanning

    private var atEnd: Bool { i >= s.count }
    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        i + offset < s.count ? s[i + offset] : nil
    }

    private mutating func advance() {
        if s[i] == "\n" { line += 1 }
        i += 1
    }

    private mutating func skipSpaces() {
        while let c = peek(), c == " " || c == "\t" { i += 1 }
    }

    private func isNewline(at k: Int) -> Bool {
        k < s.count && (s[k] == "\n" || (s[k] == "\r" && k + 1 < s.count && s[k + 1] == "\n"))
    }

    /// Skips a comment up to (not including) the newline. Control
    /// characters other than tab are not allowed in comments.
    private mutating func skipComment() throws(TOMLError) {
        while let c = peek(), c != "\n" {
            if c == "\r" && peek(1) == "\n" { break }
            if isControl(c) && c != "\t" {
                throw TOMLError(line: line, "control character \(hex(c)) in a comment")
            }
            i += 1
        }
    }

    private mutating func consumeNewline() {
        if peek() == "\r" { i += 1 }
        if peek() == "\n" { advance() }
    }

    /// After a statement: spaces, an optional comment, then a newline or
    /// the end of the file.
    private mutating func expectEndOfLine(after what: String) throws(TOMLError) {
        skipSpaces()
        if peek() == "#" { try skipComment() }
        if atEnd { return }
        if isNewline(at: i) { consumeNewline(); return }
        throw TOMLError(line: line, "unexpected \(describe(peek()!)) after \(what)",
                        hint: "one key = value or [table] per line; a comment starts with #")
    }

    /// Whitespace, newlines and comments, inside arrays.
    private mutating func skipBlank() throws(TOMLError) {
        while let c = peek() {
            if c == " " || c == "\t" { i += 1 }
            else if isNewline(at: i) { consumeNewline() }
            else if c == "#" { try skipComment() }
            else { return }
        }
    }

    // MARK: Document

    mutating func parseDocument() {
        while !atEnd {
            skipSpaces()
            guard let c = peek() else { break }
            if isNewline(at: i) { consumeNewline(); continue }
            do throws(TOMLError) {
                if c == "#" {
                    try skipComment()
                } else if c == "[" {
                    try parseHeader()
                } else {
                    try parseKeyValue()
                }
            } catch {
                errors.append(error)
                recover()
            }
        }
    }

    /// Skips the rest of a broken statement: to the end of the line, or, in
    /// an array spanning lines, to the line where its brackets close.
    private mutating func recover() {
        var depth = arrayDepth
        arrayDepth = 0
        var quote: Unicode.Scalar? = nil
        while let c = peek() {
            if c == "\n" {
                quote = nil
                if depth <= 0 { advance(); return }
                advance()
                continue
            }
            if let q = quote {
                // An escaped character is skipped, but never a newline:
                // it ends the string and must be counted.
                if c == "\\" && q == "\"" && peek(1) != "\n" { i += 1 } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                while let d = peek(), d != "\n" { i += 1 }
                continue
            } else if c == "[" {
                depth += 1
            } else if c == "]" {
                depth -= 1
            }
            i += 1
        }
    }

    // MARK: Headers

    private mutating func parseHeader() throws(TOMLError) {
        let headerLine = line
        i += 1  // [
        let isArray = peek() == "["
        if isArray { i += 1 }
        skipSpaces()
        let path = try parseKeyPath()
        skipSpaces()
        guard peek() == "]" else {
            throw TOMLError(line: line, "expected ] to close the table header", hint: isArray ? "write [[name]]" : "write [name]")
        }
        i += 1
        if isArray {
            guard peek() == "]" else {
                throw TOMLError(line: line, "expected ]] to close the array-of-tables header [[\(path.joined(separator: "."))]]")
            }
            i += 1
        }
        let name = path.joined(separator: ".")
        // Structure errors are found before the end of the line is read,
        // so that recovery skips this line and not the next.
        try define(path, isArray: isArray, headerLine: headerLine, name: name)
        try expectEndOfLine(after: "the table header")
    }

    private mutating func define(_ path: [String], isArray: Bool, headerLine: Int, name: String) throws(TOMLError) {
        // Until the header is accepted, its keys go to a detached table, so
        // a bad header does not make its keys clash with another table's.
        current = TableNode(line: headerLine, origin: .header)

        // Walk to the parent of the last key.
        var table = root
        for (n, key) in path.dropLast().enumerated() {
            if let (_, item) = table.items[key] {
                switch item {
                case .table(let t): table = t
                case .tables(let ts): table = ts.nodes[ts.nodes.count - 1]
                case .value(let v):
                    // Joined here only: joining on every step was quadratic.
                    let sofar = path[0...n].joined(separator: ".")
                    throw TOMLError(line: headerLine, "[\(name)]: \(sofar) is already \(v.typeName) (line \(v.line)), not a table")
                }
            } else {
                let t = TableNode(line: headerLine, origin: .implicit)
                table.set(key, line: headerLine, .table(t))
                table = t
            }
        }
        let last = path[path.count - 1]
        if isArray {
            if let (_, item) = table.items[last] {
                switch item {
                case .tables(let ts):
                    let t = TableNode(line: headerLine, origin: .arrayElement)
                    ts.nodes.append(t)
                    current = t
                case .table(let t):
                    throw TOMLError(line: headerLine, "[[\(name)]]: \(name) is already a table (line \(t.line)), not an array of tables")
                case .value(let v):
                    throw TOMLError(line: headerLine, "[[\(name)]]: \(name) is already \(v.typeName) (line \(v.line))")
                }
            } else {
                let t = TableNode(line: headerLine, origin: .arrayElement)
                table.set(last, line: headerLine, .tables(TableNode.TableList([t])))
                current = t
            }
        } else {
            if let (_, item) = table.items[last] {
                switch item {
                case .table(let t) where t.origin == .implicit:
                    t.origin = .header
                    t.line = headerLine
                    current = t
                case .table(let t):
                    throw TOMLError(line: headerLine, "table [\(name)] is defined twice (first at line \(t.line))",
                                    hint: "merge the two sections")
                case .tables(let ts):
                    throw TOMLError(line: headerLine, "[\(name)]: \(name) is already an array of tables (line \(ts.nodes[0].line))",
                                    hint: "write [[\(name)]] to add an element")
                case .value(let v):
                    throw TOMLError(line: headerLine, "[\(name)]: \(name) is already \(v.typeName) (line \(v.line))")
                }
            } else {
                let t = TableNode(line: headerLine, origin: .header)
                table.set(last, line: headerLine, .table(t))
                current = t
            }
        }
    }

    // MARK: Keys

    private mutating func parseKeyPath() throws(TOMLError) -> [String] {
        let keyLine = line
        var path: [String] = [try parseKey()]
        while true {
            skipSpaces()
            guard peek() == "." else { return path }
            guard path.count < TOML.maxNesting else {
                throw TOMLError(line: keyLine, "a dotted key or table header of more than \(TOML.maxNesting) keys (\(path.prefix(3).joined(separator: ".")).…)",
                                hint: "use at most \(TOML.maxNesting) levels")
            }
            i += 1
            skipSpaces()
            path.append(try parseKey())
        }
    }

    private mutating func parseKey() throws(TOMLError) -> String {
        guard let c = peek(), !isNewline(at: i) else {
            throw TOMLError(line: line, "expected a key")
        }
        if c == "\"" {
            if peek(1) == "\"" && peek(2) == "\"" {
                throw TOMLError(line: line, "multi-line strings cannot be keys")
            }
            return try parseBasicString()
        }
        if c == "'" {
            if peek(1) == "'" && peek(2) == "'" {
                throw TOMLError(line: line, "multi-line strings cannot be keys")
            }
            return try parseLiteralString()
        }
        var key = ""
        while let d = peek(), isBareKeyChar(d) {
            key.unicodeScalars.append(d)
            i += 1
        }
        if key.isEmpty {
            throw TOMLError(line: line, "expected a key, found \(describe(c))",
                            hint: "bare keys are letters, digits, _ and -; quote anything else")
        }
        return key
    }

    private mutating func parseKeyValue() throws(TOMLError) {
        let keyLine = line
        let path = try parseKeyPath()
        skipSpaces()
        guard peek() == "=" else {
            if let c = peek(), !isNewline(at: i) {
                throw TOMLError(line: line, "expected = after the key \(path.joined(separator: ".")), found \(describe(c))")
            }
            throw TOMLError(line: line, "expected = after the key \(path.joined(separator: "."))", hint: "write key = value")
        }
        i += 1
        skipSpaces()
        let value = try parseValue()
        try insert(path, value, keyLine: keyLine)
        try expectEndOfLine(after: "the value")
    }

    private mutating func insert(_ path: [String], _ value: TOMLValue, keyLine: Int) throws(TOMLError) {
        let name = path.joined(separator: ".")
        var table = current
        for key in path.dropLast() {
            if let (_, item) = table.items[key] {
                switch item {
                case .table(let t) where t.origin == .dotted || t.origin == .implicit:
                    table = t
                case .table(let t):
                    throw TOMLError(line: keyLine, "\(name): \(key) is a table defined by a header (line \(t.line)); add the key in that section")
                case .tables(let ts):
                    throw TOMLError(line: keyLine, "\(name): \(key) is an array of tables (line \(ts.nodes[0].line))")
                case .value(let v):
                    throw TOMLError(line: keyLine, "\(name): \(key) is already \(v.typeName) (line \(v.line)), not a table")
                }
            } else {
                let t = TableNode(line: keyLine, origin: .dotted)
                table.set(key, line: keyLine, .table(t))
                table = t
            }
        }
        let last = path[path.count - 1]
        if let (firstLine, item) = table.items[last] {
            let what: String
            switch item {
            case .value: what = "is set twice (first at line \(firstLine))"
            case .table(let t): what = "is already a table (line \(t.line))"
            case .tables(let ts): what = "is already an array of tables (line \(ts.nodes[0].line))"
            }
            throw TOMLError(line: keyLine, "\(name) \(what)", hint: "keep one")
        }
        table.set(last, line: keyLine, .value(value))
    }

    // MARK: Values

    private mutating func parseValue() throws(TOMLError) -> TOMLValue {
        let valueLine = line
        guard let c = peek(), !isNewline(at: i) else {
            throw TOMLError(line: line, "expected a value after =")
        }
        switch c {
        case "\"":
            if peek(1) == "\"" && peek(2) == "\"" {
                let e = TOMLError(line: line, "multi-line strings (\"\"\") are not supported", hint: "use one line, with \\n for a newline")
                skipMultiLineString("\"")
                throw e
            }
            return TOMLValue(.string(try parseBasicString()), line: valueLine)
        case "'":
            if peek(1) == "'" && peek(2) == "'" {
                let e = TOMLError(line: line, "multi-line strings (''') are not supported", hint: "use one line")
                skipMultiLineString("'")
                throw e
            }
            return TOMLValue(.string(try parseLiteralString()), line: valueLine)
        case "[":
            return try parseArray()
        case "{":
            throw TOMLError(line: line, "inline tables are not supported", hint: "write a [table] or [[table]] section instead")
        default:
            break
        }
        // Everything else is a bare token: a boolean, a number, or a mistake.
        var token = ""
        while let d = peek(), isTokenChar(d) {
            token.unicodeScalars.append(d)
            i += 1
        }
        if token == "true" { return TOMLValue(.boolean(true), line: valueLine) }
        if token == "false" { return TOMLValue(.boolean(false), line: valueLine) }
        if token.isEmpty {
            throw TOMLError(line: line, "expected a value, found \(describe(c))",
                            hint: "a value is a \"string\", a number, true, false or an [array]")
        }
        // The whole bare word, for messages: 10.77.0.0/24 rather than 10.77.0.0.
        var word = token
        var k = i
        while k < s.count, !" \t\r\n#,]".unicodeScalars.contains(s[k]) {
            word.unicodeScalars.append(s[k])
            k += 1
        }
        if word != token {
            throw TOMLError(line: valueLine, "\(word) is not a value", hint: "strings need quotes: \"\(word)\"")
        }
        return TOMLValue(.integer(try parseInteger(token, line: valueLine)), line: valueLine)
    }

    /// Past the closing delimiter of a multi-line string we refuse, so
    /// that its lines are not read as statements.
    private mutating func skipMultiLineString(_ q: Unicode.Scalar) {
        i += 3
        while !atEnd {
            if s[i] == "\\" && q == "\"" {
                i += 1
                if !atEnd { advance() }
                continue
            }
            if s[i] == q && peek(1) == q && peek(2) == q {
                i += 3
                while peek() == q { i += 1 }
                return
            }
            advance()
        }
    }

    private func parseInteger(_ token: String, line: Int) throws(TOMLError) -> Int64 {
        if isFloat(token) {
            throw TOMLError(line: line, "floats are not supported (\(token))", hint: "use a whole number")
        }
        if isDateOrTime(token) {
            throw TOMLError(line: line, "dates and times are not supported (\(token))", hint: "quote it to make it a string")
        }
        var digits = Substring(token)
        var negative = false
        var radix = 10
        if digits.first == "+" || digits.first == "-" {
            negative = digits.first == "-"
            digits = digits.dropFirst()
        }
        if digits.hasPrefix("0x") || digits.hasPrefix("0o") || digits.hasPrefix("0b") {
            radix = digits.hasPrefix("0x") ? 16 : digits.hasPrefix("0o") ? 8 : 2
            digits = digits.dropFirst(2)
            if token.first == "+" || token.first == "-" {
                throw TOMLError(line: line, "\(token): a sign is not allowed on hexadecimal, octal or binary integers")
            }
        }
        let chars = Array(digits)
        guard !chars.isEmpty, chars.allSatisfy({ $0 == "_" || $0.hexDigitValue.map { $0 < radix } == true }) else {
            throw TOMLError(line: line, "\(token) is not a value", hint: "strings need quotes: \"\(token)\"")
        }
        // Underscores only between two digits.
        for (k, ch) in chars.enumerated() where ch == "_" {
            if k == 0 || k == chars.count - 1 || chars[k - 1] == "_" || chars[k + 1] == "_" {
                throw TOMLError(line: line, "\(token): an underscore must be between two digits")
            }
        }
        let clean = String(chars.filter { $0 != "_" })
        if radix == 10 && clean.count > 1 && clean.first == "0" {
            throw TOMLError(line: line, "\(token): leading zeros are not allowed", hint: "drop them, or write 0o\(clean.dropFirst()) for octal")
        }
        guard let magnitude = UInt64(clean, radix: radix),
              magnitude <= UInt64(Int64.max) + (negative ? 1 : 0) else {
            throw TOMLError(line: line, "\(token) is out of range for a 64-bit integer")
        }
        if negative {
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return Int64(magnitude)
    }

    /// [+-]digits(.digits)?([eE][+-]?digits)? with a fraction or an
    /// exponent, or inf/nan.
    private func isFloat(_ token: String) -> Bool {
        var t = Substring(token)
        if t.first == "+" || t.first == "-" { t = t.dropFirst() }
        if t == "inf" || t == "nan" { return true }
        func digits(_ x: inout Substring) -> Bool {
            let n = x.prefix(while: { $0.isASCII && ($0.isNumber || $0 == "_") })
            x = x.dropFirst(n.count)
            return !n.isEmpty
        }
        guard digits(&t) else { return false }
        var fractionOrExponent = false
        if t.first == "." {
            t = t.dropFirst()
            guard digits(&t) else { return false }
            fractionOrExponent = true
        }
        if t.first == "e" || t.first == "E" {
            t = t.dropFirst()
            if t.first == "+" || t.first == "-" { t = t.dropFirst() }
            guard digits(&t) else { return false }
            fractionOrExponent = true
        }
        return fractionOrExponent && t.isEmpty
    }

    /// 1979-05-27..., or 07:32:00 (optionally with a fraction).
    private func isDateOrTime(_ token: String) -> Bool {
        let t = Array(token)
        func d(_ k: Int) -> Bool { k < t.count && t[k].isASCII && t[k].isNumber }
        if t.count >= 10 && d(0) && d(1) && d(2) && d(3) && t[4] == "-" && d(5) && d(6) && t[7] == "-" && d(8) && d(9) {
            return true
        }
        if (t.count == 8 || (t.count > 8 && t[8] == ".")) && d(0) && d(1) && t[2] == ":" && d(3) && d(4) && t[5] == ":" && d(6) && d(7) {
            return true
        }
        return false
    }

    private mutating func parseArray() throws(TOMLError) -> TOMLValue {
        let arrayLine = line
        // parseValue and parseArray call each other: the depth bounds the
        // stack. Thrown before the [ is consumed, so recovery counts it.
        guard arrayDepth < TOML.maxNesting else {
            throw TOMLError(line: line, "arrays nested more than \(TOML.maxNesting) deep", hint: "use at most \(TOML.maxNesting) levels")
        }
        i += 1  // [
        arrayDepth += 1
        var elements: [TOMLValue] = []
        while true {
            try skipBlank()
            guard let c = peek() else {
                throw TOMLError(line: arrayLine, "the array that starts here is not closed", hint: "add ]")
            }
            if c == "]" { i += 1; break }
            elements.append(try parseValue())
            try skipBlank()
            guard let d = peek() else {
                throw TOMLError(line: arrayLine, "the array that starts here is not closed", hint: "add ]")
            }
            if d == "," { i += 1; continue }
            if d == "]" { i += 1; break }
            throw TOMLError(line: line, "expected , or ] in the array, found \(describe(d))")
        }
        arrayDepth -= 1
        return TOMLValue(.array(elements), line: arrayLine)
    }

    private mutating func parseBasicString() throws(TOMLError) -> String {
        i += 1  // "
        var out = String.UnicodeScalarView()
        while true {
            guard let c = peek(), !isNewline(at: i), c != "\n" else {
                throw TOMLError(line: line, "unterminated string", hint: "close it with \" on the same line")
            }
            i += 1
            if c == "\"" { return String(out) }
            if c == "\\" {
                // A line-ending backslash (TOML's line continuation) belongs
                // to multi-line strings only. The newline is left unread, so
                // that it is counted: consuming it here shifted every later
                // line number by one.
                guard let e = peek(), !isNewline(at: i), e != "\n" else {
                    throw TOMLError(line: line, "unterminated string: a backslash ends the line",
                                    hint: "close the string with \" on the same line; write \\n for a newline")
                }
                i += 1
                switch e {
                case "b": out.append("\u{08}")
                case "t": out.append("\t")
                case "n": out.append("\n")
                case "f": out.append("\u{0C}")
                case "r": out.append("\r")
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "u", "U":
                    let n = e == "u" ? 4 : 8
                    var hexText = ""
                    for _ in 0..<n {
                        guard let h = peek(), h.properties.isASCIIHexDigit else {
                            throw TOMLError(line: line, "\\\(e) needs \(n) hexadecimal digits")
                        }
                        hexText.unicodeScalars.append(h)
                        i += 1
                    }
                    guard let v = UInt32(hexText, radix: 16), let scalar = Unicode.Scalar(v) else {
                        throw TOMLError(line: line, "\\\(e)\(hexText) is not a Unicode scalar value")
                    }
                    out.append(scalar)
                default:
                    throw TOMLError(line: line, "unknown escape \\\(e) in a string",
                                    hint: "write \\\\ for a backslash, or use a 'literal string'")
                }
                continue
            }
            if isControl(c) && c != "\t" {
                throw TOMLError(line: line, "control character \(hex(c)) in a string", hint: "write it as an escape")
            }
            out.append(c)
        }
    }

    private mutating func parseLiteralString() throws(TOMLError) -> String {
        i += 1  // '
        var out = String.UnicodeScalarView()
        while true {
            guard let c = peek(), !isNewline(at: i), c != "\n" else {
                throw TOMLError(line: line, "unterminated string", hint: "close it with ' on the same line")
            }
            i += 1
            if c == "'" { return String(out) }
            if isControl(c) && c != "\t" {
                throw TOMLError(line: line, "control character \(hex(c)) in a string")
            }
            out.append(c)
        }
    }

    // MARK: Characters

    private func isBareKeyChar(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
    }

    private func isTokenChar(_ c: Unicode.Scalar) -> Bool {
        isBareKeyChar(c) || c == "+" || c == "." || c == ":"
    }

    private func isControl(_ c: Unicode.Scalar) -> Bool {
        c.value < 0x20 || c.value == 0x7f
    }

    private func hex(_ c: Unicode.Scalar) -> String {
        let h = String(c.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - h.count)) + h
    }

    private func describe(_ c: Unicode.Scalar) -> String {
        if isControl(c) { return hex(c) }
        return "'\(Character(c))'"
    }
}
