import Foundation

/// SplitMix64: small, fast, and the same sequence on every platform for a given seed.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A stable hash of several values, so a metric depends only on its key, never on iteration order.
    static func hash(_ parts: UInt64...) -> UInt64 {
        var h: UInt64 = 0x1234_5678_9ABC_DEF1
        for p in parts { h = mix(h ^ mix(p &+ 0x9E37_79B9_7F4A_7C15)) }
        return h
    }

    mutating func uuid() -> String {
        let a = next()
        let b = next()
        let hex = String(format: "%016llx%016llx", a, b)
        var chars = Array(hex)
        chars[12] = "4"
        chars[16] = ["8", "9", "a", "b"][Int(b >> 60) & 3]
        let s = String(chars)
        func part(_ from: Int, _ to: Int) -> Substring {
            s[s.index(s.startIndex, offsetBy: from)..<s.index(s.startIndex, offsetBy: to)]
        }
        return "\(part(0, 8))-\(part(8, 12))-\(part(12, 16))-\(part(16, 20))-\(part(20, 32))"
    }
}

/// A calendar date without a time zone, stored as days since 1970-01-01 (proleptic Gregorian).
struct CivilDay: Hashable, Comparable, Sendable, CustomStringConvertible {
    var day: Int

    init(day: Int) { self.day = day }

    init(year: Int, month: Int, dayOfMonth: Int) {
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + dayOfMonth - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        day = era * 146_097 + doe - 719_468
    }

    /// Parses `YYYY-MM-DD` strictly.
    init?(parsing text: Substring) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1...12).contains(m), d >= 1,
            d <= CivilDay.daysIn(year: y, month: m)
        else { return nil }
        self.init(year: y, month: m, dayOfMonth: d)
    }

    var components: (year: Int, month: Int, day: Int) {
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    var description: String {
        let (y, m, d) = components
        return String(format: "%04d-%02d-%02d", y, m, d)
    }

    static func < (a: CivilDay, b: CivilDay) -> Bool { a.day < b.day }
    static func + (a: CivilDay, n: Int) -> CivilDay { CivilDay(day: a.day + n) }
    static func - (a: CivilDay, n: Int) -> CivilDay { CivilDay(day: a.day - n) }

    static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// Time-zone arithmetic for account-local days.
enum Zone {
    static func offset(_ tz: TimeZone, at unixSeconds: Int) -> Int {
        tz.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(unixSeconds)))
    }

    /// The account-local calendar day containing the instant.
    static func localDay(_ tz: TimeZone, at unixSeconds: Int) -> CivilDay {
        let local = unixSeconds + offset(tz, at: unixSeconds)
        return CivilDay(day: Int((Double(local) / 86_400).rounded(.down)))
    }

    /// The instant of local midnight starting `day`.
    static func midnight(_ tz: TimeZone, _ day: CivilDay) -> Int {
        var guess = day.day * 86_400 - offset(tz, at: day.day * 86_400)
        guess = day.day * 86_400 - offset(tz, at: guess)
        return guess
    }

    /// ISO 8601 with milliseconds and the zone's offset at that instant, as Snap writes it.
    static func snapTimestamp(_ tz: TimeZone, _ unixSeconds: Int) -> String {
        let off = offset(tz, at: unixSeconds)
        let local = unixSeconds + off
        let day = CivilDay(day: Int((Double(local) / 86_400).rounded(.down)))
        let secs = local - day.day * 86_400
        let sign = off < 0 ? "-" : "+"
        let a = abs(off)
        return String(
            format: "%@T%02d:%02d:%02d.000%@%02d:%02d", day.description, secs / 3600, secs / 60 % 60, secs % 60, sign,
            a / 3600, a / 60 % 60)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM|±HHMM)`; no offset means UTC.
    static func parseISO(_ text: String) -> Int? {
        let t = Array(text.utf8)
        guard t.count >= 19, t[10] == UInt8(ascii: "T") || t[10] == UInt8(ascii: " "),
            let day = CivilDay(parsing: text.prefix(10)[...])
        else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? {
            guard b <= t.count else { return nil }
            return Int(String(decoding: t[a..<b], as: UTF8.self))
        }
        guard t[13] == UInt8(ascii: ":"), t[16] == UInt8(ascii: ":"), let h = num(11, 13), let m = num(14, 16),
            let s = num(17, 19), h < 24, m < 60, s < 61
        else { return nil }
        var i = 19
        if i < t.count && t[i] == UInt8(ascii: ".") {
            i += 1
            while i < t.count && t[i] >= 48 && t[i] <= 57 { i += 1 }
        }
        var offset = 0
        if i < t.count {
            if t[i] == UInt8(ascii: "Z") {
                i += 1
            } else if t[i] == UInt8(ascii: "+") || t[i] == UInt8(ascii: "-") {
                let sign = t[i] == UInt8(ascii: "-") ? -1 : 1
                guard let oh = num(i + 1, i + 3) else { return nil }
                var j = i + 3
                if j < t.count && t[j] == UInt8(ascii: ":") { j += 1 }
                guard let om = num(j, j + 2) else { return nil }
                offset = sign * (oh * 3600 + om * 60)
                i = j + 2
            } else {
                return nil
            }
        }
        guard i == t.count else { return nil }
        return day.day * 86_400 + h * 3600 + m * 60 + s - offset
    }
}

/// Builds JSON text by hand so ids and money keep their exact digits.
enum JSONText {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    static func array(_ items: [String]) -> String {
        "[" + items.joined(separator: ",") + "]"
    }
}

/// A parsed JSON value whose numbers keep their source text (so ids above 2^53 survive).
indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Strings as-is, numbers as their digits; nil otherwise.
    var text: String? {
        switch self {
        case .string(let s): return s
        case .number(let n): return n
        default: return nil
        }
    }

    var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var doubleValue: Double? {
        switch self {
        case .number(let n), .string(let n): return Double(n)
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case .number(let n), .string(let n): return Int(n)
        default: return nil
        }
    }

    var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    static func parse(_ text: String) -> JSONValue? {
        var p = Parser(bytes: Array(text.utf8))
        guard let v = p.value() else { return nil }
        p.skipSpace()
        return p.i == p.bytes.count ? v : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0
        var depth = 0

        mutating func skipSpace() {
            while i < bytes.count, [32, 9, 10, 13].contains(bytes[i]) { i += 1 }
        }

        mutating func value() -> JSONValue? {
            skipSpace()
            guard i < bytes.count, depth < 64 else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                depth += 1
                defer { depth -= 1 }
                var o: [String: JSONValue] = [:]
                skipSpace()
                if i < bytes.count && bytes[i] == UInt8(ascii: "}") {
                    i += 1
                    return .object(o)
                }
                while true {
                    skipSpace()
                    guard let k = string() else { return nil }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value() else { return nil }
                    o[k] = v
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") {
                        i += 1
                        continue
                    }
                    if bytes[i] == UInt8(ascii: "}") {
                        i += 1
                        return .object(o)
                    }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                depth += 1
                defer { depth -= 1 }
                var a: [JSONValue] = []
                skipSpace()
                if i < bytes.count && bytes[i] == UInt8(ascii: "]") {
                    i += 1
                    return .array(a)
                }
                while true {
                    guard let v = value() else { return nil }
                    a.append(v)
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") {
                        i += 1
                        continue
                    }
                    if bytes[i] == UInt8(ascii: "]") {
                        i += 1
                        return .array(a)
                    }
                    return nil
                }
            case UInt8(ascii: "\""):
                return string().map { .string($0) }
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            default:
                let start = i
                while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
                guard i > start else { return nil }
                let n = String(decoding: bytes[start..<i], as: UTF8.self)
                return Double(n) == nil ? nil : .number(n)
            }
        }

        mutating func literal(_ word: String, _ v: JSONValue) -> JSONValue? {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { return nil }
            i += w.count
            return v
        }

        mutating func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let c = bytes[i]
                i += 1
                if c == UInt8(ascii: "\"") { return String(validating: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i < bytes.count else { return nil }
                    let e = bytes[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "u"):
                        guard i + 4 <= bytes.count,
                            let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16)
                        else { return nil }
                        i += 4
                        out += Array(String(Unicode.Scalar(v) ?? "\u{FFFD}").utf8)
                    default: out.append(e)
                    }
                } else {
                    out.append(c)
                }
            }
            return nil
        }
    }
}

extension Decimal {
    /// Minor units (cents) to a decimal amount with exactly two fraction digits in text.
    static func fromCents(_ cents: Int64) -> Decimal {
        Decimal(cents) / 100
    }
}

/// Formats cents as `123.45` (always two decimals, as TikTok does).
func centsText(_ cents: Int64) -> String {
    let sign = cents < 0 ? "-" : ""
    let a = abs(cents)
    return "\(sign)\(a / 100).\(a % 100 < 10 ? "0" : "")\(a % 100)"
}
