import Foundation
import XCTest

@testable import Cron

final class CronScheduleTests: XCTestCase {
    func testNextIsStrictlyAfter() {
        let hourly = cron("0 * * * *")
        let fire = instant("2026-01-05T10:00:00Z")
        XCTAssertEqual(local(hourly.next(after: fire, in: utc), utc), "2026-01-05T11:00:00Z")
        XCTAssertEqual(
            local(hourly.next(after: fire.addingTimeInterval(-0.25), in: utc), utc), "2026-01-05T10:00:00Z")
        XCTAssertEqual(
            local(hourly.next(after: fire.addingTimeInterval(0.25), in: utc), utc), "2026-01-05T11:00:00Z")
        XCTAssertEqual(local(hourly.next(after: instant("2026-12-31T23:30:00Z"), in: utc), utc), "2027-01-01T00:00:00Z")
    }

    func testFireTimesBoundsAreInclusiveAndLimited() {
        let every = cron("*/10 * * * *")
        let from = instant("2026-01-05T10:00:00Z")
        let through = instant("2026-01-05T10:30:00Z")
        XCTAssertEqual(every.fireTimes(from: from, through: through, in: utc).count, 4)
        XCTAssertEqual(
            every.fireTimes(from: from, through: through, in: utc, limit: 2).map { local($0, utc) },
            ["2026-01-05T10:00:00Z", "2026-01-05T10:10:00Z"])
        XCTAssertEqual(every.fireTimes(from: through, through: from, in: utc), [])
        XCTAssertEqual(every.fireTimes(from: from, through: through, in: utc, limit: 0), [])
        XCTAssertEqual(
            cron("* * * * *").fireTimes(from: from, through: from.addingTimeInterval(86_400 * 30), in: utc).count,
            10_000)
    }

    func testDayOfMonthOrDayOfWeekWhenBothRestricted() {
        // Friday 13th OR semantics: the 13th of each month and every Friday.
        let expression = cron("0 0 13 * FRI")
        let fires = expression.fireTimes(
            from: instant("2026-02-01T00:00:00Z"), through: instant("2026-02-28T00:00:00Z"), in: utc)
        XCTAssertEqual(
            fires.map { local($0, utc) },
            ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z", "2026-02-27T00:00:00Z"])
        let first = cron("0 0 1,15 * MON")
        XCTAssertEqual(
            first.fireTimes(from: instant("2026-06-01T00:00:00Z"), through: instant("2026-06-20T00:00:00Z"), in: utc)
                .map { local($0, utc) },
            ["2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z", "2026-06-15T00:00:00Z"])
    }

    func testStarredDayFieldMeansBothMustMatch() {
        // `*/10` starts with `*`: Vixie requires both fields, so only days 1, 11, 21, 31 that are Fridays.
        let expression = cron("0 0 */10 * FRI")
        let fires = expression.fireTimes(
            from: instant("2026-01-01T00:00:00Z"), through: instant("2026-12-31T00:00:00Z"), in: utc)
        XCTAssertFalse(fires.isEmpty)
        for fire in fires {
            let parts = Calendar.utc.dateComponents([.day, .weekday], from: fire)
            XCTAssertTrue([1, 11, 21, 31].contains(parts.day!), local(fire, utc))
            XCTAssertEqual(parts.weekday, 6, local(fire, utc))
        }
        // 2026-05-01 and 2026-12-11 are Fridays.
        XCTAssertEqual(local(fires.first, utc), "2026-05-01T00:00:00Z")
        XCTAssertTrue(fires.map { local($0, utc) }.contains("2026-12-11T00:00:00Z"))
        // Only the weekday restricted: every Friday.
        XCTAssertEqual(
            cron("0 0 * * FRI").fireTimes(
                from: instant("2026-01-01T00:00:00Z"), through: instant("2026-12-31T00:00:00Z"), in: utc
            ).count, 52)
    }

    func testThirtyFirstSkipsShortMonths() {
        let expression = cron("0 12 31 * *")
        let fires = expression.fireTimes(
            from: instant("2026-01-01T00:00:00Z"), through: instant("2026-12-31T23:59:00Z"), in: utc)
        XCTAssertEqual(
            fires.map { local($0, utc) },
            [
                "2026-01-31T12:00:00Z", "2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z", "2026-07-31T12:00:00Z",
                "2026-08-31T12:00:00Z", "2026-10-31T12:00:00Z", "2026-12-31T12:00:00Z",
            ])
        XCTAssertEqual(
            local(cron("0 0 30 * *").next(after: instant("2026-01-30T00:00:00Z"), in: utc), utc),
            "2026-03-30T00:00:00Z")
    }

    func testFebruary29OnlyInLeapYears() {
        let expression = cron("0 0 29 2 *")
        XCTAssertEqual(
            local(expression.next(after: instant("2025-01-01T00:00:00Z"), in: utc), utc), "2028-02-29T00:00:00Z")
        XCTAssertEqual(
            local(expression.next(after: instant("2028-02-29T00:00:00Z"), in: utc), utc), "2032-02-29T00:00:00Z")
        // 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
        XCTAssertEqual(
            local(expression.next(after: instant("2097-01-01T00:00:00Z"), in: utc), utc), "2104-02-29T00:00:00Z")
        XCTAssertEqual(
            local(expression.next(after: instant("1997-01-01T00:00:00Z"), in: utc), utc), "2000-02-29T00:00:00Z")
        XCTAssertEqual(
            local(expression.latestFire(atOrBefore: instant("2104-02-28T00:00:00Z"), in: utc), utc),
            "2096-02-29T00:00:00Z")
        // Feb 29 that is also a Sunday (`*` weekday step: both must match): 2032, then 2060.
        let sundays = cron("0 0 29 2 */7")
        XCTAssertEqual(
            local(sundays.next(after: instant("2026-01-01T00:00:00Z"), in: utc), utc), "2032-02-29T00:00:00Z")
        XCTAssertEqual(
            local(sundays.next(after: instant("2032-03-01T00:00:00Z"), in: utc), utc), "2060-02-29T00:00:00Z")
    }

    /// Cross-checks day matching and calendar arithmetic against Foundation's Calendar, day by day.
    func testDayLevelSchedulesAgreeWithCalendarOverFiveYears() {
        let expressions = [
            "0 0 * * *", "0 0 1 * *", "0 0 31 * *", "0 0 29 2 *", "0 0 * * 1-5", "0 0 13 * 5", "0 0 */3 * 0",
            "0 0 1-7 * MON", "0 0 L * *",
        ]
        let from = instant("2024-01-01T00:00:00Z")
        let through = instant("2028-12-31T23:59:59Z")
        for text in expressions {
            guard let expression = try? CronExpression(text) else {
                XCTAssertEqual(text, "0 0 L * *", "'\(text)' should parse")
                continue
            }
            var expected: [Date] = []
            var day = from
            while day <= through {
                let parts = Calendar.utc.dateComponents([.day, .month, .weekday], from: day)
                let domMatches = expression.daysOfMonth.contains(parts.day!)
                let dowMatches = expression.daysOfWeek.contains(parts.weekday! - 1)
                let both = text.split(separator: " ")[2].hasPrefix("*") || text.split(separator: " ")[4].hasPrefix("*")
                if expression.months.contains(parts.month!)
                    && (both ? domMatches && dowMatches : domMatches || dowMatches)
                {
                    expected.append(day)
                }
                day = Calendar.utc.date(byAdding: .day, value: 1, to: day)!
            }
            XCTAssertEqual(expression.fireTimes(from: from, through: through, in: utc), expected, text)
            XCTAssertFalse(expected.isEmpty, text)
        }
    }

    func testLatestFireAtOrBefore() {
        let hourly = cron("0 * * * *")
        XCTAssertEqual(
            local(hourly.latestFire(atOrBefore: instant("2026-01-05T10:30:00Z"), in: utc), utc), "2026-01-05T10:00:00Z")
        XCTAssertEqual(
            local(hourly.latestFire(atOrBefore: instant("2026-01-05T10:00:00Z"), in: utc), utc), "2026-01-05T10:00:00Z")
        XCTAssertEqual(
            local(hourly.latestFire(atOrBefore: instant("2026-01-01T00:00:00Z").addingTimeInterval(-1), in: utc), utc),
            "2025-12-31T23:00:00Z")
        let monthly = cron("@monthly")
        XCTAssertEqual(
            local(monthly.latestFire(atOrBefore: instant("2026-03-15T00:00:00Z"), in: utc), utc), "2026-03-01T00:00:00Z"
        )
        let yearly = cron("0 0 1 JAN *")
        XCTAssertEqual(
            local(yearly.latestFire(atOrBefore: instant("2026-12-31T00:00:00Z"), in: utc), utc), "2026-01-01T00:00:00Z")
    }

    /// The "run once for the missed window" use: many fires went by during downtime, one run covers them.
    func testLatestFireDetectsAMissedWindowOnce() {
        let everyFifteen = cron("*/15 * * * *")
        let lastRun = instant("2026-01-05T10:15:00Z")
        let now = instant("2026-01-05T13:07:00Z")
        let latest = everyFifteen.latestFire(atOrBefore: now, in: utc)!
        XCTAssertGreaterThan(latest, lastRun)
        XCTAssertEqual(local(latest, utc), "2026-01-05T13:00:00Z")
        XCTAssertEqual(local(everyFifteen.next(after: now, in: utc), utc), "2026-01-05T13:15:00Z")
        XCTAssertEqual(everyFifteen.latestFire(atOrBefore: lastRun.addingTimeInterval(60), in: utc), lastRun)
    }

    func testOutOfRangeDatesReturnNil() {
        XCTAssertNil(cron("* * * * *").next(after: Date(timeIntervalSince1970: .infinity), in: utc))
        XCTAssertNil(cron("* * * * *").latestFire(atOrBefore: Date(timeIntervalSince1970: .nan), in: utc))
    }
}

extension Calendar {
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        return calendar
    }()
}
