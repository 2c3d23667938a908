#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

extension Boot {
    /// Each node's processes get PIDs from their own range, so that a PID
    /// names one process in the whole cluster (OpenSSI's cluster-wide
    /// PIDs) and a migrated process finds its PID free on the target:
    /// pid_max goes to the kernel's limit (2^22) and the next PID of node
    /// N is N×65536, set through ns_last_pid (CONFIG_CHECKPOINT_RESTORE,
    /// which CRIU needs anyway). Node numbers 1..63 have a range; the
    /// kernel wraps back to 300 only after a node used its 65536 PIDs.
    static let pidRangeSize = 65536

    /// The last PID before node `node`'s range (what ns_last_pid gets),
    /// nil for a node with no range.
    static func pidRangeStart(node: Int) -> Int? {
        (1...63).contains(node) ? node * pidRangeSize : nil
    }

    func setPIDRange(node: Int) {
        guard let start = Self.pidRangeStart(node: node) else {
            log.warning("pids", "node \(node) has no PID range (nodes 1..63 do); its PIDs may clash with another node's")
            return
        }
        do throws(SystemCallError) {
            try FileSystem.writeFile("/proc/sys/kernel/pid_max", "4194304\n")
            try FileSystem.writeFile("/proc/sys/kernel/ns_last_pid", "\(start)\n")
            log.info("pids", "PIDs from \(start + 1) on (node \(node)'s range)")
        } catch {
            log.warning("pids", "cannot set node \(node)'s PID range: \(error.description)")
        }
    }
}
