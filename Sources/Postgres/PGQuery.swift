import Foundation

/// A SQL statement with its parameters, parameterized by construction.
///
/// Every interpolated value becomes a `$n` placeholder and a bind; the value never enters the SQL text.
/// Raw SQL must be spelled out: `"SELECT ... \(unsafeSQL: fragment)"` or `PGQuery(unsafeSQL:)`.
/// Parameters are sent in text format; cast them in SQL where the type is ambiguous (`$1::bigint[]`).
public struct PGQuery: Sendable, ExpressibleByStringInterpolation {
    public var sql: String
    public var binds: [String?]

    public init(unsafeSQL sql: String, binds: [String?] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.sql = value
        self.binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        self.sql = stringInterpolation.sql
        self.binds = stringInterpolation.binds
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) { sql += literal }

        public mutating func appendInterpolation<T: PGEncodable>(_ value: T) {
            binds.append(value.pgText)
            sql += "$\(binds.count)"
        }

        public mutating func appendInterpolation<T: PGEncodable>(_ value: T?) {
            binds.append(value?.pgText)
            sql += "$\(binds.count)"
        }

        /// Inserts SQL text verbatim. Only for fragments the program itself owns, never input.
        public mutating func appendInterpolation(unsafeSQL fragment: String) { sql += fragment }
    }
}

// MARK: - Encoding

/// A value that can be sent as a text-format parameter.
public protocol PGEncodable: Sendable {
    /// The PostgreSQL text representation, or nil for NULL.
    var pgText: String? { get }
}

extension String: PGEncodable { public var pgText: String? { self } }
extension Substring: PGEncodable { public var pgText: String? { String(self) } }
extension Int: PGEncodable { public var pgText: String? { String(self) } }
extension Int64: PGEncodable { public var pgText: String? { String(self) } }
extension Int32: PGEncodable { public var pgText: String? { String(self) } }
extension Int16: PGEncodable { public var pgText: String? { String(self) } }
extension Bool: PGEncodable { public var pgText: String? { self ? "t" : "f" } }
extension Double: PGEncodable { public var pgText: String? { String(self) } }
extension Decimal: PGEncodable {
    /// A plain `numeric` literal (`-12.34`, never an exponent), exact.
    ///
    /// Bulk writes format hundreds of thousands of amounts, and `description` costs about 0.85 µs each here; the
    /// common case (a significand that fits in 64 bits, a scale of 0 to 38) is formatted from the integer in
    /// about a sixth of that. The integer is checked to round-trip exactly, otherwise `description` is used.
    public var pgText: String? {
        let e = exponent
        guard !isNaN, e <= 0, e >= -38 else { return description }
        let s = significand
        let u = NSDecimalNumber(decimal: s).uint64Value
        guard Decimal(u) == s else { return description }
        var digits = String(u)
        let scale = -e
        if scale > 0 {
            if digits.utf8.count <= scale {
                digits = String(repeating: "0", count: scale - digits.utf8.count + 1) + digits
            }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -scale))
        }
        return isSignMinus && !isZero ? "-" + digits : digits
    }
}
extension UUID: PGEncodable { public var pgText: String? { uuidString.lowercased() } }
extension Date: PGEncodable {
    /// ISO 8601 in UTC with microseconds.
    public var pgText: String? { PGTimestamp.format(self) }
}
extension Duration: PGEncodable {
    /// An `interval` literal in microseconds; a duration beyond ±2^63 µs (about 292,000 years) saturates there
    /// instead of trapping (PostgreSQL's interval holds it).
    public var pgText: String? { "\(microsecondsSaturating) microseconds" }

    /// Whole microseconds, clamped to ±(2^63 - 1): no overflow trap for any duration.
    public var microsecondsSaturating: Int64 {
        let (s, atto) = components
        let (scaled, o1) = s.multipliedReportingOverflow(by: 1_000_000)
        let (micros, o2) = scaled.addingReportingOverflow(atto / 1_000_000_000_000)
        if o1 || o2 { return s < 0 ? -Int64.max : Int64.max }
        return micros
    }
}

/// A `jsonb`/`json` parameter given as JSON text.
public struct PGJSON: PGEncodable, Hashable {
    public var text: String
    public init(_ text: String) { self.text = text }
    public var pgText: String? { text }
}

extension Array: PGEncodable where Element: PGEncodable {
    /// A one-dimensional array literal; every element quoted, NULL for nil elements.
    public var pgText: String? {
        var out = "{"
        out.reserveCapacity(count * 8 + 2)
        for (i, element) in enumerated() {
            if i > 0 { out += "," }
            if let t = element.pgText {
                out += "\""
                for ch in t.unicodeScalars {
                    if ch == "\"" || ch == "\\" { out += "\\" }
                    out.unicodeScalars.append(ch)
                }
                out += "\""
            } else {
                out += "NULL"
            }
        }
        out += "}"
        return out
    }
}

extension Optional: PGEncodable where Wrapped: PGEncodable {
    public var pgText: String? { self.flatMap { $0.pgText } }
}

// MARK: - Decoding

/// A value that can be read from a text-format result column.
public protocol PGDecodable {
    init(pgText: String) throws
}

func decodeFailure(_ type: Any.Type, _ text: String) -> PGError {
    PGError(.decoding, "cannot decode \(type) from a \(text.utf8.count)-byte value")
}

extension String: PGDecodable { public init(pgText: String) { self = pgText } }

/// One parser for every integer width; a value out of range is a decoding error, not a wrap.
func decodeInteger<T: FixedWidthInteger>(_ text: String) throws -> T {
    guard let v = T(text) else { throw decodeFailure(T.self, text) }
    return v
}
extension Int: PGDecodable { public init(pgText: String) throws { self = try decodeInteger(pgText) } }
extension Int64: PGDecodable { public init(pgText: String) throws { self = try decodeInteger(pgText) } }
extension Int32: PGDecodable { public init(pgText: String) throws { self = try decodeInteger(pgText) } }
extension Int16: PGDecodable { public init(pgText: String) throws { self = try decodeInteger(pgText) } }
extension Double: PGDecodable {
    public init(pgText: String) throws {
        guard let v = Double(pgText) else { throw decodeFailure(Double.self, pgText) }
        self = v
    }
}
extension Bool: PGDecodable {
    public init(pgText: String) throws {
        switch pgText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw decodeFailure(Bool.self, pgText)
        }
    }
}
extension Decimal: PGDecodable {
    public init(pgText: String) throws {
        guard let v = Decimal(string: pgText, locale: Locale(identifier: "en_US_POSIX")) else {
            throw decodeFailure(Decimal.self, pgText)
        }
        self = v
    }
}
extension UUID: PGDecodable {
    public init(pgText: String) throws {
        guard let v = UUID(uuidString: pgText) else { throw decodeFailure(UUID.self, pgText) }
        self = v
    }
}
extension Date: PGDecodable {
    public init(pgText: String) throws {
        guard let v = PGTimestamp.parse(pgText) else { throw decodeFailure(Date.self, pgText) }
        self = v
    }
}
extension PGJSON: PGDecodable {
    public init(pgText: String) { self.text = pgText }
}
