import Foundation

/// Strict conversions from JSON literal text to the normalized value types, with no `Double` on the way.
enum Values {
    /// True for `-?digits(.digits)?([eE][+-]?digits)?`, the only shapes accepted as money or counts.
    static func isDecimalLiteral(_ text: Substring) -> Bool {
        var bytes = text.utf8[...]
        if bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        func digits() -> Int {
            var n = 0
            while let b = bytes.first, b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") {
                bytes = bytes.dropFirst()
                n += 1
            }
            return n
        }
        let integer = digits()
        var fraction = 0
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            fraction = digits()
        }
        guard integer + fraction > 0 else { return false }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
            guard digits() > 0 else { return false }
        }
        return bytes.isEmpty
    }

    /// The literal of a metric value: a JSON number's text or a string's content; nil for absent, null, `""`, `"-"`.
    static func metricLiteral(_ value: JSONValue?) -> Substring?? {
        switch value {
        case nil, .null?: return .some(nil)
        case .number(let text)?: return .some(Substring(text))
        case .string(let text)?:
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed == "-" || trimmed == "--" { return .some(nil) }
            return .some(Substring(trimmed))
        default: return nil
        }
    }

    /// Parses a decimal amount exactly from its literal text; returns `.some(nil)` for an empty metric and `nil`
    /// when the value is not a number at all (the caller reports a malformed response).
    static func decimal(_ value: JSONValue?) -> Decimal?? {
        guard let literal = metricLiteral(value) else { return nil }
        guard let text = literal else { return .some(nil) }
        let cleaned = text.hasPrefix("+") ? text.dropFirst() : text
        guard isDecimalLiteral(cleaned),
            let decimal = Decimal(string: String(cleaned), locale: Locale(identifier: "en_US_POSIX"))
        else { return nil }
        return .some(decimal)
    }

    /// Parses an integer count; accepts an integral decimal literal such as `"12.0"`.
    static func int64(_ value: JSONValue?) -> Int64?? {
        guard let literal = metricLiteral(value) else { return nil }
        guard let text = literal else { return .some(nil) }
        if let exact = Int64(text) { return .some(exact) }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 2, parts[1].allSatisfy({ $0 == "0" }), let whole = Int64(parts[0]) { return .some(whole) }
        return nil
    }

    /// `micros / 1_000_000`, exact: only the decimal exponent moves.
    static func fromMicros(_ micros: Decimal) -> Decimal {
        Decimal(sign: micros < 0 ? .minus : .plus, exponent: -6, significand: micros.magnitude)
    }
}
