/// `s` in double quotes with `"`, `\`, and control characters escaped: valid
/// both as a TOML basic string and as a JSON string, the two formats we
/// write for people and scripts.
public func quotedString(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if c.value < 0x20 || c.value == 0x7f {
                let h = String(c.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out + "\""
}
