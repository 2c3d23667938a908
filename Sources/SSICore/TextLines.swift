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
