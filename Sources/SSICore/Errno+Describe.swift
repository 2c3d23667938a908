#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// "No such file or directory (ENOENT)": the text and the symbolic name, so
/// that a message is readable and still searchable.
public func errnoDescription(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    if let name = errnoNames[code] { return "\(text) (\(name))" }
    return "\(text) (errno \(code))"
}

private let errnoNames: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO",
    ENXIO: "ENXIO", E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF",
    ECHILD: "ECHILD", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
    EFAULT: "EFAULT", ENOTBLK: "ENOTBLK", EBUSY: "EBUSY", EEXIST: "EEXIST",
    EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
    EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE", ETXTBSY: "ETXTBSY",
    EFBIG: "EFBIG", ENOSPC: "ENOSPC", EROFS: "EROFS", EMLINK: "EMLINK",
    EPIPE: "EPIPE", ENAMETOOLONG: "ENAMETOOLONG", ENOSYS: "ENOSYS",
    ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP", ENOPKG: "ENOPKG",
    EOPNOTSUPP: "EOPNOTSUPP", ENOTCONN: "ENOTCONN", ETIMEDOUT: "ETIMEDOUT",
    ECONNREFUSED: "ECONNREFUSED", EHOSTUNREACH: "EHOSTUNREACH",
    EUCLEAN: "EUCLEAN", ENOKEY: "ENOKEY", EKEYREJECTED: "EKEYREJECTED",
    ENETUNREACH: "ENETUNREACH", ENETDOWN: "ENETDOWN", EBADMSG: "EBADMSG", ENOBUFS: "ENOBUFS",
    EMSGSIZE: "EMSGSIZE", EADDRNOTAVAIL: "EADDRNOTAVAIL", EADDRINUSE: "EADDRINUSE", EPROTO: "EPROTO",
    ENODATA: "ENODATA", ERANGE: "ERANGE",
]
