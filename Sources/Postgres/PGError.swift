/// An error from the PostgreSQL layer, safe to log.
///
/// `description` names the kind of failure, the SQLSTATE and the server's primary message; it never contains
/// a password or bound parameter values. The server's detail line, which may quote row values, is only in
/// `debugDescription`.
public struct PGError: Error, CustomStringConvertible, CustomDebugStringConvertible, Sendable {
    /// The kind of failure; extensible without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public static let connectionFailed = Code(raw: "connection failed")
        public static let connectionClosed = Code(raw: "connection closed")
        public static let server = Code(raw: "server error")
        public static let decoding = Code(raw: "decoding error")
        public static let copyFailed = Code(raw: "COPY failed")
        public static let poolTimeout = Code(raw: "connection pool timeout")
        public static let poolClosed = Code(raw: "connection pool closed")
        public var description: String { raw }
    }

    public var code: Code
    /// Five-character SQLSTATE when the server sent one (e.g. `23505`).
    public var sqlState: String?
    /// Primary message (server's, or ours for client-side failures).
    public var message: String
    /// Server detail; may quote data, so only shown by `debugDescription`.
    public var detail: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil, detail: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
    }

    public var description: String {
        if let sqlState { return "PostgreSQL \(code) [\(sqlState)]: \(message)" }
        return "PostgreSQL \(code): \(message)"
    }

    public var debugDescription: String {
        var text = description
        if let detail { text += " (detail: \(detail))" }
        return text
    }

    /// True when the connection that produced this error can no longer be used.
    public var isConnectionLoss: Bool {
        if code == .connectionFailed || code == .connectionClosed { return true }
        // Class 08: connection exception; 57P01..57P03: admin shutdown, crash shutdown, cannot connect now.
        if let s = sqlState, s.hasPrefix("08") || s == "57P01" || s == "57P02" || s == "57P03" { return true }
        return false
    }

    /// SQLSTATE 23505.
    public var isUniqueViolation: Bool { sqlState == "23505" }
}
