import Foundation

/// The ssi binary the tests that run it use: SSI_BIN (scripts/test sets
/// it to the release build), else this package's debug build.
public enum BuiltBinary {
    public static let ssi: String? = {
        if let b = ProcessInfo.processInfo.environment["SSI_BIN"], FileManager.default.isExecutableFile(atPath: b) { return b }
        let debug = FileManager.default.currentDirectoryPath + "/.build/debug/ssi"
        return FileManager.default.isExecutableFile(atPath: debug) ? debug : nil
    }()
}
