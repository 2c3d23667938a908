internal import CSSILazy
public import SSICore

/// A C library ssi loads with dlopen when a command first needs it, not at
/// start (CSSILazy): a local `ssi mount` loads no corosync, libsodium,
/// libkmod or compression library. Entry points call `load()` first so
/// that a missing library is an error that names it and its package.
public enum LazyLibrary: CaseIterable, Sendable {
    case kmod, udev, zstd, lzma, zlib, sodium, cpg, quorum, votequorum, cmap, mount

    /// corosync's client libraries, which the membership code uses together.
    public static let corosync: [LazyLibrary] = [.cpg, .quorum, .votequorum, .cmap]

    var index: Int32 {
        switch self {
        case .kmod: Int32(SSI_LIB_KMOD.rawValue)
        case .udev: Int32(SSI_LIB_UDEV.rawValue)
        case .zstd: Int32(SSI_LIB_ZSTD.rawValue)
        case .lzma: Int32(SSI_LIB_LZMA.rawValue)
        case .zlib: Int32(SSI_LIB_ZLIB.rawValue)
        case .sodium: Int32(SSI_LIB_SODIUM.rawValue)
        case .cpg: Int32(SSI_LIB_CPG.rawValue)
        case .quorum: Int32(SSI_LIB_QUORUM.rawValue)
        case .votequorum: Int32(SSI_LIB_VOTEQUORUM.rawValue)
        case .cmap: Int32(SSI_LIB_CMAP.rawValue)
        case .mount: Int32(SSI_LIB_MOUNT.rawValue)
        }
    }

    /// What dlopen is given: "libkmod.so.2".
    public var soname: String { String(cString: ssi_lazy_soname(index)) }
    /// The Debian package that ships it: "libkmod2".
    public var package: String { String(cString: ssi_lazy_package(index)) }
    /// Loaded by this process already.
    public var isLoaded: Bool { ssi_lazy_loaded(index) != 0 }

    /// Loads the library now (once per process).
    public func load() throws(SSIError) {
        var message = [CChar](repeating: 0, count: 512)
        guard ssi_lazy_load(index, &message, message.count) != 0 else { return }
        let cause = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw SSIError("library", "cannot load \(soname): \(cause)",
                       hint: "install the package \(package) (the ssi package depends on it)")
    }

    /// Loads each of `libraries`, stopping at the first that fails.
    public static func load(_ libraries: [LazyLibrary]) throws(SSIError) {
        for library in libraries { try library.load() }
    }
}
