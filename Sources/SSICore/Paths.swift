// Path arithmetic on strings, shared by every module (the config module
// sits below SSILinux, so it lives here).

/// The directory part of a path, like dirname(1): "/a/b" -> "/a", "a" -> ".".
public func dirname(of path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    guard let slash = p.lastIndex(of: "/") else { return "." }
    if slash == p.startIndex { return "/" }
    return String(p[..<slash])
}

/// The last component, like basename(1).
public func basename(of path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    guard let slash = p.lastIndex(of: "/") else { return String(p) }
    return String(p[p.index(after: slash)...])
}
