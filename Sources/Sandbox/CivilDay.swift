import Foundation

// The sandbox keeps its own calendar and JSON code on purpose: it is an independent implementation of the two
// APIs that the clients in Sources/Platforms are tested against, so it shares no code with them (a bug in shared
// code would be invisible to the tests). Platforms' counterparts: LocalDate, JSONValue.

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
