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
    /// The stand-in asks for input (direction `in`). `waiting`: a
    /// terminal's process sleeps in a read of it right now (not only the
    /// stand-in asking ahead), so that home, where its job is in the
    /// background, stops the job with SIGTTIN as the kernel would have
    /// (sent as a field only when set: a peer before it sends none).
    case read(waiting: Bool)
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
    /// A terminal's stand-in tells home the keys that make signals there
    /// (direction `out`, acked like data): whether the pty's ISIG is on,
    /// and its VINTR, VQUIT and VSUSP characters. Home's terminal makes
    /// the signals itself with them (to its foreground group: the deputy,
    /// which forwards them), so that job control works as if the process
    /// never left; a program that turns ISIG off gets the keys as bytes.
    case keys(SignalKeys)

    struct SignalKeys: Equatable, Sendable {
        var isig: Bool
        var intr: UInt8
        var quit: UInt8
        var susp: UInt8

        /// termios offsets of c_cc (x86_64 glibc): VINTR 0, VQUIT 1, VSUSP 10.
        init(_ t: termios) {
            isig = t.c_lflag & tcflag_t(ISIG) != 0
            var cc = t.c_cc
            (intr, quit, susp) = withUnsafeBytes(of: &cc) { ($0[Int(VINTR)], $0[Int(VQUIT)], $0[Int(VSUSP)]) }
        }

        init(isig: Bool, intr: UInt8, quit: UInt8, susp: UInt8) {
            self.isig = isig
            self.intr = intr
            self.quit = quit
            self.susp = susp
        }

        /// `t` (home's raw mode) with these keys making signals.
        func applied(to t: termios) -> termios {
            var out = t
            if isig { out.c_lflag |= tcflag_t(ISIG) } else { out.c_lflag &= ~tcflag_t(ISIG) }
            withUnsafeMutableBytes(of: &out.c_cc) { cc in
                cc[Int(VINTR)] = intr
                cc[Int(VQUIT)] = quit
                cc[Int(VSUSP)] = susp
            }
            return out
        }
    }

    struct Window: Equatable, Sendable {
        var rows: UInt16
        var cols: UInt16
    }

    func encode() -> Fields {
        switch self {
        case .attached(let w): Fields("attached", w.map { [("rows", String($0.rows)), ("cols", String($0.cols))] } ?? [])
        case .read(let waiting): Fields("read", waiting ? [("waiting", "1")] : [])
        case .close: Fields("close")
        case .winsize(let w): Fields("winsize", [("rows", String(w.rows)), ("cols", String(w.cols))])
        case .size: Fields("size")
        case .keys(let k): Fields("keys", [("isig", k.isig ? "1" : "0"), ("intr", String(k.intr)), ("quit", String(k.quit)),
                                           ("susp", String(k.susp))])
        }
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> RelayMessage {
        let d = FieldReader(f)
        switch f.op {
        case "attached":
            // Both or neither.
            if f["rows"] == nil && f["cols"] == nil { return .attached(window: nil) }
            return .attached(window: Window(rows: try d.number("rows"), cols: try d.number("cols")))
        case "read": return .read(waiting: f["waiting"] == nil ? false : try d.flag("waiting"))
        case "close": return .close
        case "winsize": return .winsize(Window(rows: try d.number("rows"), cols: try d.number("cols")))
        case "size": return .size
        case "keys":
            return .keys(SignalKeys(isig: try d.flag("isig"), intr: try d.number("intr"), quit: try d.number("quit"), susp: try d.number("susp")))
        default: throw .unknownOp(f.op)
        }
    }
}
