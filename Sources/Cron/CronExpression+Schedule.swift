import Foundation

/// Fire-time computation.
///
/// Fire times are computed on the wall clock of the given IANA time zone, then mapped to instants:
/// - Daylight saving gap (clocks go forward): a wall time that does not exist fires at the first instant
///   after the gap, once. With a 02:00 -> 03:00 jump, `30 2 * * *` fires at 03:00 new time that day, and an
///   hourly `0 * * * *` fires at 01:00, 03:00, 04:00 (the 02:00 run lands on 03:00 and the two merge).
///   Several times inside one gap merge into that single fire.
/// - Daylight saving overlap (clocks go back): a wall time that occurs twice fires once, at its first
///   occurrence. With 02:00 -> 01:00, an hourly schedule fires at 01:00 (first) and next at 02:00, two real
///   hours later; the repeated 01:00 does not fire again.
///
/// Searches look at most about 400 years ahead or back (one full Gregorian cycle), which every valid
/// expression satisfies; they return `nil` only when the result falls outside that window or outside the
/// range of `Date`.
extension CronExpression {
    /// The first fire time strictly after `date`.
    ///
    /// - Parameters:
    ///   - date: the instant to search from; a fire exactly at `date` is not returned.
    ///   - timeZone: the schedule's time zone (an IANA zone such as `Europe/Paris`).
    /// - Returns: the fire instant, or `nil` if none exists in the search window.
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        firstFire(from: date, inclusive: false, in: timeZone)
    }

    /// The fire times in the closed interval `from...through`, in order, at most `limit` of them.
    ///
    /// - Parameters:
    ///   - from: start of the interval, inclusive.
    ///   - through: end of the interval, inclusive.
    ///   - timeZone: the schedule's time zone.
    ///   - limit: the most fire times to return (default 10 000), so an every-minute schedule over a long
    ///     interval cannot exhaust memory. The earliest `limit` fires are returned.
    public func fireTimes(from: Date, through: Date, in timeZone: TimeZone, limit: Int = 10_000) -> [Date] {
        var result: [Date] = []
        guard limit > 0, from <= through, var fire = firstFire(from: from, inclusive: true, in: timeZone) else {
            return result
        }
        while fire <= through {
            result.append(fire)
            guard result.count < limit, let following = next(after: fire, in: timeZone) else { break }
            fire = following
        }
        return result
    }

    /// The last fire time at or before `date`.
    ///
    /// A scheduler that was down uses it to run a missed schedule once: if
    /// `latestFire(atOrBefore: now)` is later than the last recorded run, the window was missed, and one run
    /// covers it however many fire times went by.
    ///
    /// - Returns: the fire instant, or `nil` if none exists in the search window.
    public func latestFire(atOrBefore date: Date, in timeZone: TimeZone) -> Date? {
        let time = date.timeIntervalSince1970
        guard let now = Self.wholeSeconds(time) else { return nil }
        let local = LocalTime(timeZone: timeZone)
        // Wall times somewhat after the wall time of `date` can map to earlier instants when `date` sits in
        // the second pass of a repeated hour, so start above it by the largest nearby offset change.
        let nearby = [now - 2 * Civil.secondsPerDay, now, now + 2 * Civil.secondsPerDay].map(local.offset(at:))
        let margin = (nearby.max() ?? 0) - (nearby.min() ?? 0) + 60
        let startWall = local.wall(of: now) + margin
        let startMinute = Civil.floorDivide(startWall, 60)
        var day = Civil.floorDivide(startMinute, 1440)
        let startHour = Int(Civil.floorModulo(startMinute, 1440) / 60)
        let startMinuteOfHour = Int(Civil.floorModulo(startMinute, 60))
        let lastDay = day - Self.searchDays
        var firstDay = true
        while day >= lastDay {
            let date = Civil.date(days: day)
            if !months.contains(date.month) {
                day = Civil.days(year: date.year, month: date.month, day: 1) - 1
                firstDay = false
                continue
            }
            if dayMatches(day: date.day, weekday: Civil.weekday(days: day)) {
                for hour in stride(from: firstDay ? startHour : 23, through: 0, by: -1) where hours.contains(hour) {
                    let top = firstDay && hour == startHour ? startMinuteOfHour : 59
                    for minute in stride(from: top, through: 0, by: -1) where minutes.contains(minute) {
                        let wall = day * Civil.secondsPerDay + Int64(hour * 3600 + minute * 60)
                        let instant = local.instant(ofWall: wall)
                        if TimeInterval(instant) <= time {
                            return Date(timeIntervalSince1970: TimeInterval(instant))
                        }
                    }
                }
            }
            day -= 1
            firstDay = false
        }
        return nil
    }

    /// About 400 years of days: the Gregorian calendar, weekdays included, repeats every 400 years.
    static let searchDays: Int64 = 146_097 + 366

    /// Whole seconds at or below `time`, or `nil` for values no calendar search can start from.
    private static func wholeSeconds(_ time: TimeInterval) -> Int64? {
        // Roughly ±3 million years: keeps Int64 arithmetic on wall seconds far from overflow.
        guard time.isFinite, abs(time) < 1e14 else { return nil }
        return Int64(time.rounded(.down))
    }

    /// The first fire time after `date` (or at it when `inclusive`).
    func firstFire(from date: Date, inclusive: Bool, in timeZone: TimeZone) -> Date? {
        let time = date.timeIntervalSince1970
        guard let now = Self.wholeSeconds(time) else { return nil }
        let local = LocalTime(timeZone: timeZone)
        // Wall times before the wall time of `date` map to instants at or before it (the mapping is monotonic).
        let startMinute = Civil.floorDivide(local.wall(of: now), 60)
        var day = Civil.floorDivide(startMinute, 1440)
        let startHour = Int(Civil.floorModulo(startMinute, 1440) / 60)
        let startMinuteOfHour = Int(Civil.floorModulo(startMinute, 60))
        let lastDay = day + Self.searchDays
        var firstDay = true
        while day <= lastDay {
            let date = Civil.date(days: day)
            if !months.contains(date.month) {
                let nextMonth = date.month == 12 ? (date.year + 1, 1) : (date.year, date.month + 1)
                day = Civil.days(year: nextMonth.0, month: nextMonth.1, day: 1)
                firstDay = false
                continue
            }
            if dayMatches(day: date.day, weekday: Civil.weekday(days: day)) {
                for hour in (firstDay ? startHour : 0)...23 where hours.contains(hour) {
                    let bottom = firstDay && hour == startHour ? startMinuteOfHour : 0
                    for minute in bottom...59 where minutes.contains(minute) {
                        let wall = day * Civil.secondsPerDay + Int64(hour * 3600 + minute * 60)
                        let instant = local.instant(ofWall: wall)
                        let fires = inclusive ? TimeInterval(instant) >= time : TimeInterval(instant) > time
                        if fires {
                            return Date(timeIntervalSince1970: TimeInterval(instant))
                        }
                    }
                }
            }
            day += 1
            firstDay = false
        }
        return nil
    }
}
