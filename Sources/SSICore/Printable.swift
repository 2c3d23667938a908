/// `s` made safe to echo to a terminal or a log: control characters (C0,
/// DEL, C1) and the Unicode controls that reorder or hide text (bidi
/// overrides and isolates, line and paragraph separators) are written as
/// `\n`, `\t`, `\r` or `\u001B`-style escapes. Names read from files,
/// command lines and peers go through this before they are printed: an
/// escape sequence in a name must not move the cursor, recolour the console
/// or hide the rest of an error message, and a newline must not make one
/// problem look like two. A backslash is left as it is, so that paths and
/// hints that show an escape stay readable.
///
/// `keepingLineBreaks`: newline and tab pass (multi-line text such as an
/// agent's refusal). `escapingBackslash`: a backslash is doubled, so the
/// output is reversible (an image listing, where a name may itself hold
/// the text `\\u001B`). This is the one escaper of the project: ps's `?`
/// (procps' rule) is the only other way names are made printable.
public func printable<S: StringProtocol>(_ s: S, keepingLineBreaks: Bool = false, escapingBackslash: Bool = false) -> String {
    let escape = { (c: Unicode.Scalar) -> Bool in
        if keepingLineBreaks && (c == "\n" || c == "\t") { return false }
        return needsEscape(c) || (escapingBackslash && c == "\\")
    }
    // The common case, nothing to escape, costs one scan and no copy.
    guard s.unicodeScalars.contains(where: escape) else { return String(s) }
    var out = ""
    for c in s.unicodeScalars {
        guard escape(c) else { out.unicodeScalars.append(c); continue }
        switch c {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case "\\": out += "\\\\"
        default:
            let h = String(c.value, radix: 16, uppercase: true)
            out += "\\u" + String(repeating: "0", count: max(0, 4 - h.count)) + h
        }
    }
    return out
}

private func needsEscape(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0..<0x20, 0x7F...0x9F: return true
    case 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: return true
    default: return false
    }
}
