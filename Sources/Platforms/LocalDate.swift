import Foundation

/// A calendar date with no time zone: an ad account's local day, as both APIs report metrics.
///
/// Ordering is chronological; `description` is `YYYY-MM-DD`, the form both APIs and the metrics table use.
public struct LocalDate: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let year: Int
    public let month: Int
    public let day: Int

    /// Creates a date, or nil when the fields do not name a real Gregorian day.
    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month),
            (1...LocalDate.daysInMonth(year: year, month: month)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`, ignoring anything after the tenth character (`"2024-09-03 00:00:00"` from TikTok,
    /// `"2022-06-25T00:00:00.000-07:00"` from Snap both give their local calendar day).
    public init?(parsing text: some StringProtocol) {
        let utf8 = Array(text.utf8.prefix(10))
        guard utf8.count == 10, utf8[4] == UInt8(ascii: "-"), utf8[7] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in utf8[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let y = number(0..<4), let m = number(5..<7), let d = number(8..<10) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    public var description: String {
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }

    public static func < (lhs: LocalDate, rhs: LocalDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }

    /// The date `days` later (earlier when negative).
    public func adding(days: Int) -> LocalDate {
        LocalDate(dayNumber: dayNumber + days)
    }

    /// Whole days from `self` to `other` (positive when `other` is later).
    public func days(to other: LocalDate) -> Int { other.dayNumber - dayNumber }

    /// The local calendar day of `instant` in `timeZone`.
    public init(_ instant: Date, in timeZone: TimeZone) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month, .day], from: instant)
        self.init(year: parts.year!, month: parts.month!, day: parts.day!)!
    }

    /// The instant this day starts in `timeZone` (local midnight; on a day whose midnight is skipped by a DST jump,
    /// the first instant of the day).
    public func startOfDay(in timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let components = DateComponents(year: year, month: month, day: day, hour: 0, minute: 0, second: 0)
        let approx = calendar.date(from: components)!
        return calendar.startOfDay(for: approx)
    }

    /// ISO 8601 text of this day's local midnight with the zone's offset in force at that instant,
    /// e.g. `2024-03-10T00:00:00-08:00` for America/Los_Angeles. Snap requires exactly this alignment.
    public func midnightISO8601(in timeZone: TimeZone) -> String {
        let instant = startOfDay(in: timeZone)
        let offset = timeZone.secondsFromGMT(for: instant)
        let sign = offset < 0 ? "-" : "+"
        let magnitude = abs(offset)
        func pad(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute, .second], from: instant)
        return "\(self)T\(pad(parts.hour!)):\(pad(parts.minute!)):\(pad(parts.second!))"
            + "\(sign)\(pad(magnitude / 3600)):\(pad(magnitude % 3600 / 60))"
    }

    // Days since 0000-03-01 in the proleptic Gregorian calendar (H. Hinnant's days_from_civil).
    var dayNumber: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe
    }

    init(dayNumber: Int) {
        let era = (dayNumber >= 0 ? dayNumber : dayNumber - 146096) / 146097
        let doe = dayNumber - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        self.year = y
        self.month = m
        self.day = d
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// An inclusive range of account-local days, `first ... last`.
public struct DateWindow: Sendable, Hashable, CustomStringConvertible {
    public let first: LocalDate
    public let last: LocalDate

    /// Creates a window; `first` must not be after `last`.
    public init(first: LocalDate, last: LocalDate) {
        precondition(first <= last, "DateWindow first must not be after last")
        self.first = first
        self.last = last
    }

    /// Number of days in the window, at least 1.
    public var dayCount: Int { first.days(to: last) + 1 }

    public var description: String { "\(first)..\(last)" }

    /// Splits the window into consecutive windows of at most `maxDays` days each, in order.
    public func split(maxDays: Int) -> [DateWindow] {
        precondition(maxDays >= 1)
        var result: [DateWindow] = []
        var start = first
        while start <= last {
            let end = min(start.adding(days: maxDays - 1), last)
            result.append(DateWindow(first: start, last: end))
            start = end.adding(days: 1)
        }
        return result
    }
}
