import Foundation
import Synchronization

/// Structured logging: one line per event, logfmt or JSON, to standard error.
///
/// Chosen by environment: `NEXJOBS_LOG_FORMAT` = `logfmt` (default) or `json`; `NEXJOBS_LOG_LEVEL` = `debug`,
/// `info` (default), `warning`, `error`. Values are escaped; callers pass metadata, never secrets.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CustomStringConvertible {
        case debug = 0
        case info, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String { ["debug", "info", "warning", "error"][rawValue] }
        init?(name: String) {
            switch name.lowercased() {
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warning
            case "error": self = .error
            default: return nil
            }
        }
    }
    public enum Format: Sendable { case logfmt, json }

    public var label: String
    public var minimum: Level
    public var format: Format
    public var metadata: [(String, String)]
    let sink: Sink

    /// A sink writes whole lines; tests can capture them.
    public final class Sink: Sendable {
        let write: @Sendable (String) -> Void
        public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }
        public static let standardError = Sink { line in
            stderrLock.withLock { _ in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
    }

    public init(label: String, minimum: Level? = nil, format: Format? = nil, sink: Sink = .standardError) {
        let env = ProcessInfo.processInfo.environment
        self.label = label
        self.minimum = minimum ?? env["NEXJOBS_LOG_LEVEL"].flatMap(Level.init(name:)) ?? .info
        self.format = format ?? (env["NEXJOBS_LOG_FORMAT"]?.lowercased() == "json" ? .json : .logfmt)
        self.metadata = []
        self.sink = sink
    }

    /// A logger that adds fields to every line.
    public func with(_ fields: (String, String)...) -> Logger {
        var copy = self
        copy.metadata.append(contentsOf: fields)
        return copy
    }

    public func debug(_ event: @autoclosure () -> String, _ fields: (String, String)...) {
        log(.debug, event(), fields)
    }
    public func info(_ event: @autoclosure () -> String, _ fields: (String, String)...) { log(.info, event(), fields) }
    public func warning(_ event: @autoclosure () -> String, _ fields: (String, String)...) {
        log(.warning, event(), fields)
    }
    public func error(_ event: @autoclosure () -> String, _ fields: (String, String)...) {
        log(.error, event(), fields)
    }

    public func log(_ level: Level, _ event: @autoclosure () -> String, _ fields: [(String, String)]) {
        guard level >= minimum else { return }
        let all =
            [("ts", Logger.timestamp()), ("level", level.description), ("logger", label), ("msg", event())]
            + metadata + fields
        sink.write(format == .json ? Logger.json(all) : Logger.logfmt(all))
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = tv.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1,
            parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, Int(tv.tv_usec / 1000))
    }

    static func logfmt(_ fields: [(String, String)]) -> String {
        fields.map { key, value in
            let needsQuote = value.isEmpty || value.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0.isNewline }
            if !needsQuote { return "\(key)=\(value)" }
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
                of: "\"", with: "\\\""
            )
            .replacingOccurrences(of: "\n", with: "\\n")
            return "\(key)=\"\(escaped)\""
        }.joined(separator: " ")
    }

    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    static func json(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",") + "}"
    }
}

private let stderrLock = Mutex(())
