/// The lines of a text file, LF or CRLF: split at each LF byte, and a CR
/// before it dropped. Splitting a String on the Character "\n" does not do
/// this: Swift reads "\r\n" as ONE Character, so a CRLF file (written on
/// Windows, or pasted through a web form) was one long line. A final LF
/// gives a last empty line, so that `lines[k]` is line k + 1 of the file.
public func textLines(_ text: String) -> [Substring] {
    text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
        // A UTF-8 slice cut at LF or CR bytes is always on a scalar boundary.
        Substring(line.last == UInt8(ascii: "\r") ? line.dropLast() : line)
    }
}

extension StringProtocol {
    /// `textLines`, for text that is split into lines anywhere: a file, a
    /// tool's output, a peer's message. `omittingEmpty` (the default, as
    /// `split` does) drops empty lines. Use this, never `split(separator:
    /// "\n")`, which leaves a CRLF text one line.
    public func lines(omittingEmpty: Bool = true) -> [Substring] {
        let all = textLines(String(self))
        return omittingEmpty ? all.filter { !$0.isEmpty } : all
    }
}
