public import SSICore
import CSSIShim

/// swapon(2) and swapoff(2).
public enum Swap {
    /// `priority` nil: the kernel's default (negative, decreasing).
    public static func on(_ path: String, priority: Int32? = nil, discard: Bool = false) throws(SystemCallError) {
        try syscall("swapon \(path)") { ssi_swapon(path, priority ?? -1, discard ? 1 : 0) }
    }

    public static func off(_ path: String) throws(SystemCallError) {
        try syscall("swapoff \(path)") { ssi_swapoff(path) }
    }
}
