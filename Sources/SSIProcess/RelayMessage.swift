#if canImport(Glibc)
import Glibc
#endif
import SSICore

/// The type-1 messages of a shipped channel's relay (docs/PROTOCOLS.md
/// 3.8), after its `attach` (a `PeerRequest`), with their encoder and
/// decoder. The bytes themselves travel as `data`, `eof`, `nodata` and
/// `ack` frames, not as fields.
enum RelayMessage: Equatable, Sendable {
    /// The home's answer to `attach`; a terminal's last known window size.
    case attached(window: Window?)
    /// The stand-in asks for input (direction `in`).
    case read
    /// The process closed its reading end of an input pipe (direction `in`).
    case close
    /// A terminal's new window size, before the answer to a `read` (or to
    /// a `size`).
    case winsize(Window)
    /// A terminal's stand-in asks for the window size alone (direction
    /// `in`), while it holds keys the process has not taken: home answers
    /// `winsize` if the size changed since it last told, then `nodata`,
    /// and reads nothing.
    case size

    struct Window: Equatable, Sendable {
        var rows: UInt16
        var cols: UInt16
    }

    func encode() -> Fields {
        switch self {
        case .attached(let w): Fields("attached", w.map { [("rows", String($0.rows)), ("cols", String($0.cols))] } ?? [])
        case .read: Fields("read")
        case .close: Fields("close")
        case .winsize(let w): Fields("winsize", [("rows", String(w.rows)), ("cols", String(w.cols))])
        case .size: Fields("size")
        }
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> RelayMessage {
        let d = FieldReader(f)
        switch f.op {
        case "attached":
            // Both or neither.
            if f["rows"] == nil && f["cols"] == nil { return .attached(window: nil) }
            return .attached(window: Window(rows: try d.number("rows"), cols: try d.number("cols")))
        case "read": return .read
        case "close": return .close
        case "winsize": return .winsize(Window(rows: try d.number("rows"), cols: try d.number("cols")))
        case "size": return .size
        default: throw .unknownOp(f.op)
        }
    }
}
