/// A parsed five-field cron expression: `minute hour day-of-month month day-of-week`.
///
/// Syntax (Vixie cron):
/// - Each field is a comma-separated list of items. An item is `*`, a value `v`, or a range `a-b`,
///   optionally followed by a step `/n` (`*/15`, `1-30/5`). A step after a single value (`5/15`) means
///   "from that value to the end of the field's range" (the cronie extension).
/// - Ranges: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12, day-of-week 0-7 (0 and 7 are Sunday).
/// - Names, case-insensitive: months `JAN`...`DEC`, days `SUN`...`SAT`; they work in ranges (`MON-FRI`).
///   `SUN` as the end of a range means 7, so `FRI-SUN` is Friday to Sunday. A range must not run backwards.
/// - Macros: `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
///   `@reboot` is not a schedule and is rejected.
///
/// Day matching follows Vixie cron: if the day-of-month or the day-of-week field starts with `*`
/// (including `*/n`), a day must match both fields; otherwise, when both are restricted, a day matches
/// if EITHER matches (`0 0 1,15 * MON` fires on the 1st, the 15th and every Monday).
///
/// An expression whose day-of-month and month fields never name a real date (`0 0 30 2 *`) is rejected
/// with ``CronExpressionError/Code/neverFires``: a schedule that silently never runs is worse than an error.
/// February 29 is allowed; it fires in leap years only.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text the expression was parsed from, trimmed.
    public let text: String

    let minutes: BitSet
    let hours: BitSet
    let daysOfMonth: BitSet
    let months: BitSet
    /// Days of week with Sunday as 0; a parsed 7 is folded into 0.
    let daysOfWeek: BitSet
    let dayOfMonthIsStar: Bool
    let dayOfWeekIsStar: Bool

    /// Parses `text`.
    ///
    /// - Throws: ``CronExpressionError`` naming the bad field and value.
    public init(_ text: String) throws {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else {
            throw CronExpressionError(code: .empty, field: nil, value: text, reason: "the expression is empty")
        }
        self.text = trimmed
        let expanded: String
        if trimmed.hasPrefix("@") {
            guard let macro = Self.macros[trimmed.lowercased()] else {
                throw CronExpressionError(
                    code: .unknownMacro, field: nil, value: trimmed,
                    reason: "unknown macro; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually")
            }
            expanded = macro
        } else {
            expanded = trimmed
        }
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw CronExpressionError(
                code: .wrongFieldCount, field: nil, value: trimmed,
                reason: "expected 5 fields (minute hour day-of-month month day-of-week), found \(fields.count)")
        }
        minutes = try FieldSpec.minute.parse(fields[0])
        hours = try FieldSpec.hour.parse(fields[1])
        daysOfMonth = try FieldSpec.dayOfMonth.parse(fields[2])
        months = try FieldSpec.month.parse(fields[3])
        var dow = try FieldSpec.dayOfWeek.parse(fields[4])
        if dow.contains(7) {
            dow.remove(7)
            dow.insert(0)
        }
        daysOfWeek = dow
        dayOfMonthIsStar = fields[2].hasPrefix("*")
        dayOfWeekIsStar = fields[4].hasPrefix("*")

        if requiresBothDayFields && !hasRealDate {
            throw CronExpressionError(
                code: .neverFires, field: .dayOfMonth, value: fields[2],
                reason: "no selected month has such a day (month field '\(fields[3])'), so the schedule never fires")
        }
    }

    public var description: String { text }

    /// Two expressions are equal when they fire at the same times, whatever their spelling
    /// (`@daily` equals `0 0 * * *`, `0 0 * * 7` equals `0 0 * * SUN`).
    public static func == (lhs: CronExpression, rhs: CronExpression) -> Bool {
        lhs.minutes == rhs.minutes && lhs.hours == rhs.hours && lhs.daysOfMonth == rhs.daysOfMonth
            && lhs.months == rhs.months && lhs.daysOfWeek == rhs.daysOfWeek
            && lhs.requiresBothDayFields == rhs.requiresBothDayFields
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(minutes)
        hasher.combine(hours)
        hasher.combine(daysOfMonth)
        hasher.combine(months)
        hasher.combine(daysOfWeek)
        hasher.combine(requiresBothDayFields)
    }

    /// True when a day must match both day fields (Vixie: either field starts with `*`).
    var requiresBothDayFields: Bool { dayOfMonthIsStar || dayOfWeekIsStar }

    /// Whether the day fields accept a calendar day.
    ///
    /// - Parameters:
    ///   - day: day of month, 1-31.
    ///   - weekday: 0 (Sunday) to 6.
    func dayMatches(day: Int, weekday: Int) -> Bool {
        if requiresBothDayFields {
            return daysOfMonth.contains(day) && daysOfWeek.contains(weekday)
        }
        return daysOfMonth.contains(day) || daysOfWeek.contains(weekday)
    }

    /// Whether some selected month has a selected day of month (February counted with 29 days).
    private var hasRealDate: Bool {
        let longest = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        for month in 1...12 where months.contains(month) {
            for day in 1...longest[month] where daysOfMonth.contains(day) {
                return true
            }
        }
        return false
    }

    private static let macros: [String: String] = [
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
    ]
}

/// A set of small non-negative integers (0-63), one bit each.
struct BitSet: Sendable, Hashable {
    private(set) var bits: UInt64 = 0

    func contains(_ value: Int) -> Bool {
        value >= 0 && value < 64 && bits & (1 << UInt64(value)) != 0
    }

    mutating func insert(_ value: Int) {
        bits |= 1 << UInt64(value)
    }

    mutating func remove(_ value: Int) {
        bits &= ~(1 << UInt64(value))
    }
}

/// How one field is spelled: its range and, for month and day-of-week, its names.
struct FieldSpec: Sendable {
    let field: CronExpressionError.Field
    let range: ClosedRange<Int>
    /// Upper-case three-letter names, mapped to their value.
    let names: [String: Int]

    static let minute = FieldSpec(field: .minute, range: 0...59, names: [:])
    static let hour = FieldSpec(field: .hour, range: 0...23, names: [:])
    static let dayOfMonth = FieldSpec(field: .dayOfMonth, range: 1...31, names: [:])
    static let month = FieldSpec(
        field: .month, range: 1...12,
        names: [
            "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
            "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
        ])
    static let dayOfWeek = FieldSpec(
        field: .dayOfWeek, range: 0...7,
        names: ["SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6])

    /// Parses a whole field (a comma-separated list).
    func parse(_ text: String) throws -> BitSet {
        var set = BitSet()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            try parseItem(String(item), into: &set)
        }
        return set
    }

    private func parseItem(_ item: String, into set: inout BitSet) throws {
        guard !item.isEmpty else {
            throw error(.invalidValue, item, "empty list item")
        }
        let parts = item.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else {
            throw error(.invalidStep, item, "more than one '/'")
        }
        var step = 1
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), parts[1].allSatisfy(\.isASCIIDigit) else {
                throw error(.invalidStep, item, "step '\(parts[1])' is not a positive number")
            }
            guard parsed > 0 else {
                throw error(.invalidStep, item, "step must be at least 1")
            }
            step = parsed
        }
        let base = parts[0]
        let lower: Int
        let upper: Int
        if base == "*" {
            lower = range.lowerBound
            upper = field == .dayOfWeek ? 6 : range.upperBound
        } else if let dash = base.firstIndex(of: "-") {
            let startText = String(base[..<dash])
            let endText = String(base[base.index(after: dash)...])
            lower = try value(startText, item: item)
            var end = try value(endText, item: item)
            if field == .dayOfWeek && end == 0 && endText.uppercased() == "SUN" && lower > 0 {
                end = 7
            }
            guard lower <= end else {
                throw error(.invalidRange, item, "range runs backwards (\(lower) > \(end))")
            }
            upper = end
        } else {
            lower = try value(base, item: item)
            upper = parts.count == 2 ? range.upperBound : lower
        }
        for value in stride(from: lower, through: upper, by: step) {
            set.insert(value)
        }
    }

    private func value(_ text: String, item: String) throws -> Int {
        if text.isEmpty {
            throw error(.invalidRange, item, "missing value in range")
        }
        if let named = names[text.uppercased()] {
            return named
        }
        guard text.allSatisfy(\.isASCIIDigit) else {
            let hint = names.isEmpty ? "expected a number" : "expected a number or a three-letter name"
            throw error(.invalidValue, item, "'\(text)' is not valid: \(hint)")
        }
        guard let number = Int(text), range.contains(number) else {
            throw error(
                .outOfRange, item, "\(text) is out of range \(range.lowerBound)-\(range.upperBound)")
        }
        return number
    }

    private func error(_ code: CronExpressionError.Code, _ value: String, _ reason: String) -> CronExpressionError {
        CronExpressionError(code: code, field: field, value: value, reason: reason)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { self >= "0" && self <= "9" }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
