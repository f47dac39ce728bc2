import Foundation

/// An input value outside its documented form or range. The message names the input (a flag, an environment
/// variable, a JSON field) and the accepted range, and is safe to print (it quotes at most 80 characters).
public struct InputError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The one checked parser for numbers, durations, dates and timestamps that come from outside (CLI flags,
/// environment variables, job and schedule args, HTTP control bodies). Nothing here traps: every conversion is
/// range-checked before it happens, and every failure is an `InputError` naming the input and its range.
public enum CheckedInput {
    /// Quotes at most 80 characters of a bad value for an error message.
    public static func quote(_ text: String) -> String {
        let cleaned = String(
            text.unicodeScalars.prefix(80).map { $0.properties.isWhitespace || $0.value >= 32 ? Character($0) : "?" })
        return "'" + cleaned + (text.unicodeScalars.count > 80 ? "...'" : "'")
    }

    /// A queue (or schedule) name: 1...128 of A-Z a-z 0-9 _ . : - (no `=`, `,` or space, so lists like
    /// `--queues a,b=8` stay unambiguous). The one definition every caller uses.
    public static func isQueueName(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count)
            && text.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x3A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
                    || c == 0x2E || c == 0x2D
            }
    }

    /// A queue name (``isQueueName(_:)``), or an `InputError` naming the input.
    public static func queueName(_ text: String, name: String) throws -> String {
        guard isQueueName(text) else {
            throw InputError("\(name) must be a queue name, 1-128 of A-Z a-z 0-9 _ . : -, got \(quote(text))")
        }
        return text
    }

    /// An integer in `range` (decimal digits with an optional sign; no exponent, no fraction).
    public static func integer<T: FixedWidthInteger>(_ text: String, name: String, range: ClosedRange<T>) throws
        -> T
    {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard let v = T(t, radix: 10), range.contains(v) else {
            throw InputError(
                "\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got \(quote(text))")
        }
        return v
    }

    /// A decimal fraction in `range` (digits with an optional sign and point; no exponent, inf or nan).
    public static func decimal(_ text: String, name: String, range: ClosedRange<Double>) throws -> Double {
        let t = text.trimmingCharacters(in: .whitespaces)
        let plain = t.range(of: #"^[+-]?([0-9]{1,15}(\.[0-9]{0,9})?|\.[0-9]{1,9})$"#, options: .regularExpression)
        guard plain != nil, let v = Double(t), v.isFinite, range.contains(v) else {
            throw InputError(
                "\(name) must be a number in \(range.lowerBound)...\(range.upperBound), got \(quote(text))")
        }
        return v
    }

    /// Longest duration any input may name: 100 years. Keeps every sum and conversion far from overflow.
    public static let longestDuration: Duration = .seconds(100 * 365 * 86_400)

    /// Parses `250ms`, `90s`, `5m`, `2h`, `1d`, `1h30m`, `1.5s`; a bare number means seconds. Units: ms, s, sec,
    /// secs, m, min, mins, h, hr, hrs, d, day, days. Returns nil for anything else, for exponents, `inf`, `nan`,
    /// negative values, and anything longer than `longestDuration`.
    public static func parseDuration(_ text: String) -> Duration? {
        let t = Array(text.trimmingCharacters(in: .whitespaces).unicodeScalars)
        guard !t.isEmpty, t.count <= 64 else { return nil }
        func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 48 && c.value <= 57 }
        func isLetter(_ c: Unicode.Scalar) -> Bool { (c.value | 0x20) >= 97 && (c.value | 0x20) <= 122 }
        var i = 0
        var totalMs: Double = 0
        var first = true
        while i < t.count {
            var number = ""
            while i < t.count, isDigit(t[i]) || t[i] == "." {
                number.unicodeScalars.append(t[i])
                i += 1
            }
            var unit = ""
            while i < t.count, isLetter(t[i]) {
                unit.unicodeScalars.append(t[i])
                i += 1
            }
            guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, number != ".",
                number.count <= 20, let v = Double(number), v.isFinite
            else { return nil }
            let scale: Double
            switch unit.lowercased() {
            case "":
                guard first, i == t.count else { return nil }
                scale = 1000
            case "ms": scale = 1
            case "s", "sec", "secs": scale = 1000
            case "m", "min", "mins": scale = 60_000
            case "h", "hr", "hrs": scale = 3_600_000
            case "d", "day", "days": scale = 86_400_000
            default: return nil
            }
            totalMs += v * scale
            guard totalMs.isFinite, totalMs <= Double(longestDuration.components.seconds) * 1000 else { return nil }
            first = false
        }
        return .milliseconds(Int64(totalMs.rounded()))
    }

    /// A duration (see `parseDuration`) in `range`.
    public static func duration(_ text: String, name: String, range: ClosedRange<Duration>) throws -> Duration {
        guard let d = parseDuration(text), range.contains(d) else {
            throw InputError(
                "\(name) must be a duration in \(describe(range.lowerBound))...\(describe(range.upperBound))"
                    + " (like 250ms, 90s, 5m, 2h, 1d), got \(quote(text))")
        }
        return d
    }

    /// `90s`, `15m`, `2h`, `7d`, `250ms`: the shortest exact form, for messages and docs.
    public static func describe(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms == 0 { return "0s" }
        if ms % 86_400_000 == 0 { return "\(ms / 86_400_000)d" }
        if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    /// Earliest and latest instants a timestamp input may name: 1970-01-01T00:00:00Z ... 9999-12-31T23:59:59Z.
    public static let timestampRange: ClosedRange<Date> =
        Date(timeIntervalSince1970: 0)...Date(timeIntervalSince1970: 253_402_300_799)

    /// An ISO 8601 timestamp (`2026-12-01T09:00:00Z`, `2026-12-01 09:00:00+02:00`, fractions allowed; no offset
    /// means UTC) that names a real calendar time inside `range`.
    public static func timestamp(_ text: String, name: String, range: ClosedRange<Date> = timestampRange) throws
        -> Date
    {
        guard text.utf8.count <= 64, let d = PGTimestamp.parse(text), d.timeIntervalSince1970.isFinite,
            range.contains(d)
        else {
            throw InputError(
                "\(name) must be an ISO 8601 timestamp like 2026-12-01T09:00:00Z between "
                    + "\(PGTimestamp.format(range.lowerBound)) and \(PGTimestamp.format(range.upperBound)), got \(quote(text))"
            )
        }
        return d
    }

    /// Text of at most `maxBytes` UTF-8 bytes, without NUL characters.
    public static func text(_ text: String, name: String, bytes: ClosedRange<Int>) throws -> String {
        guard bytes.contains(text.utf8.count), !text.utf8.contains(0) else {
            throw InputError(
                "\(name) must be \(bytes.lowerBound)...\(bytes.upperBound) bytes of text without NUL, "
                    + "got \(text.utf8.count) bytes")
        }
        return text
    }

    /// The value of an environment variable checked by `parse`, or nil when unset or empty.
    public static func environment<T>(_ env: [String: String], _ name: String, _ parse: (String, String) throws -> T)
        throws -> T?
    {
        guard let v = env[name], !v.isEmpty else { return nil }
        return try parse(v, name)
    }
}
