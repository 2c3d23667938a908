#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import CSSIShim

/// A regular file attached to a loop device, for making a file system
/// image: the device detaches itself once closed and unmounted
/// (LO_FLAGS_AUTOCLEAR), so a failure on the way leaves nothing behind.
public final class LoopDevice {
    public let path: String
    private let device: Descriptor

    public init(attaching file: String) throws(SystemCallError) {
        var number: Int32 = -1
        let fd = ssi_loop_attach(file, &number)
        guard fd >= 0 else { let lastErrno = errno; throw SystemCallError("attach \(file) to a loop device", errno: lastErrno) }
        self.device = Descriptor(owning: fd)
        self.path = "/dev/loop\(number)"
    }
}
