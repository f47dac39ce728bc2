import Foundation
import XCTest

@testable import Cron

/// Transitions used (tzdb):
/// - Europe/Paris: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
/// - America/Los_Angeles: 2026-03-08 02:00 PST -> 03:00 PDT (10:00Z); 2026-11-01 02:00 PDT -> 01:00 PST (09:00Z).
final class CronDaylightSavingTests: XCTestCase {
    private func fires(_ text: String, _ zone: TimeZone, _ from: String, _ through: String) -> [Date] {
        cron(text).fireTimes(from: instant(from), through: instant(through), in: zone)
    }

    /// Consecutive fires must be strictly increasing (no duplicate instants).
    private func assertStrictlyIncreasing(_ dates: [Date], file: StaticString = #filePath, line: UInt = #line) {
        for (earlier, later) in zip(dates, dates.dropFirst()) {
            XCTAssertLessThan(earlier, later, file: file, line: line)
        }
    }

    func testParisSpringForwardHourly() {
        let paris = zone("Europe/Paris")
        let result = fires("0 * * * *", paris, "2026-03-28T23:00:00+01:00", "2026-03-29T05:00:00+02:00")
        XCTAssertEqual(
            result.map { local($0, paris) },
            [
                "2026-03-28T23:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00",
                // 02:00 does not exist: that run lands on 03:00 and merges with the 03:00 run.
                "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00", "2026-03-29T05:00:00+02:00",
            ])
        assertStrictlyIncreasing(result)
        // In real time the schedule stays exactly hourly: the clock skipped an hour, the runs did not.
        for (earlier, later) in zip(result, result.dropFirst()) {
            XCTAssertEqual(later.timeIntervalSince(earlier), 3600)
        }
    }

    func testParisSpringForwardDailyInTheGapFiresAtEndOfGap() {
        let paris = zone("Europe/Paris")
        let result = fires("30 2 * * *", paris, "2026-03-27T00:00:00+01:00", "2026-03-31T00:00:00+02:00")
        XCTAssertEqual(
            result.map { local($0, paris) },
            [
                "2026-03-27T02:30:00+01:00", "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ])
        let paris0330 = cron("30 3 * * *")
        XCTAssertEqual(
            local(paris0330.next(after: instant("2026-03-29T00:00:00+01:00"), in: paris), paris),
            "2026-03-29T03:30:00+02:00")
    }

    func testSeveralTimesInsideTheGapFireOnce() {
        let paris = zone("Europe/Paris")
        let result = fires("*/20 * * * *", paris, "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00")
        XCTAssertEqual(
            result.map { local($0, paris) },
            [
                "2026-03-29T01:40:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:20:00+02:00",
            ])
        // next() from inside the merged fire does not return the merged instant again.
        let merged = instant("2026-03-29T03:00:00+02:00")
        XCTAssertEqual(local(cron("*/20 * * * *").next(after: merged, in: paris), paris), "2026-03-29T03:20:00+02:00")
    }

    func testParisFallBackHourlyFiresRepeatedHourOnce() {
        let paris = zone("Europe/Paris")
        let result = fires("0 * * * *", paris, "2026-10-25T00:00:00+02:00", "2026-10-25T05:00:00+01:00")
        XCTAssertEqual(
            result.map { local($0, paris) },
            [
                "2026-10-25T00:00:00+02:00", "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                // 02:00 +01:00 (the second 02:00) does not fire.
                "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00", "2026-10-25T05:00:00+01:00",
            ])
        assertStrictlyIncreasing(result)
        let gaps = zip(result, result.dropFirst()).map { $1.timeIntervalSince($0) }
        XCTAssertEqual(gaps, [3600, 3600, 7200, 3600, 3600])
    }

    func testParisFallBackDailyInTheRepeatedHourFiresAtFirstOccurrence() {
        let paris = zone("Europe/Paris")
        let result = fires("30 2 * * *", paris, "2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00+01:00")
        XCTAssertEqual(
            result.map { local($0, paris) },
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"])
        // Asked during the second pass of 02:xx, the next run is tomorrow, not the repeat.
        let expression = cron("30 2 * * *")
        XCTAssertEqual(
            local(expression.next(after: instant("2026-10-25T02:10:00+01:00"), in: paris), paris),
            "2026-10-26T02:30:00+01:00")
        XCTAssertEqual(
            local(cron("*/30 * * * *").next(after: instant("2026-10-25T02:15:00+01:00"), in: paris), paris),
            "2026-10-25T03:00:00+01:00")
    }

    func testLosAngelesSpringForward() {
        let losAngeles = zone("America/Los_Angeles")
        let hourly = fires("0 * * * *", losAngeles, "2026-03-08T00:00:00-08:00", "2026-03-08T04:00:00-07:00")
        XCTAssertEqual(
            hourly.map { local($0, losAngeles) },
            [
                "2026-03-08T00:00:00-08:00", "2026-03-08T01:00:00-08:00",
                "2026-03-08T03:00:00-07:00", "2026-03-08T04:00:00-07:00",
            ])
        assertStrictlyIncreasing(hourly)
        let daily = fires("15 2 * * *", losAngeles, "2026-03-07T00:00:00-08:00", "2026-03-09T12:00:00-07:00")
        XCTAssertEqual(
            daily.map { local($0, losAngeles) },
            ["2026-03-07T02:15:00-08:00", "2026-03-08T03:00:00-07:00", "2026-03-09T02:15:00-07:00"])
        let midnight = fires("@daily", losAngeles, "2026-03-07T00:00:00-08:00", "2026-03-09T00:00:00-07:00")
        XCTAssertEqual(
            midnight.map { local($0, losAngeles) },
            ["2026-03-07T00:00:00-08:00", "2026-03-08T00:00:00-08:00", "2026-03-09T00:00:00-07:00"])
    }

    func testLosAngelesFallBack() {
        let losAngeles = zone("America/Los_Angeles")
        let hourly = fires("0 * * * *", losAngeles, "2026-11-01T00:00:00-07:00", "2026-11-01T03:00:00-08:00")
        XCTAssertEqual(
            hourly.map { local($0, losAngeles) },
            [
                "2026-11-01T00:00:00-07:00", "2026-11-01T01:00:00-07:00",
                "2026-11-01T02:00:00-08:00", "2026-11-01T03:00:00-08:00",
            ])
        let gaps = zip(hourly, hourly.dropFirst()).map { $1.timeIntervalSince($0) }
        XCTAssertEqual(gaps, [3600, 7200, 3600])
        let daily = fires("30 1 * * *", losAngeles, "2026-10-31T00:00:00-07:00", "2026-11-02T12:00:00-08:00")
        XCTAssertEqual(
            daily.map { local($0, losAngeles) },
            ["2026-10-31T01:30:00-07:00", "2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"])
    }

    /// Over a whole year of hourly fires, each DST day behaves as documented and no other day is touched.
    func testHourlyOverAYearHasOnlyTheDocumentedIrregularities() {
        for (identifier, fallBackGap) in [("Europe/Paris", "2026-10-25"), ("America/Los_Angeles", "2026-11-01")] {
            let timeZone = zone(identifier)
            let result = cron("0 * * * *").fireTimes(
                from: instant("2026-01-01T00:00:00Z"), through: instant("2026-12-31T23:00:00Z"), in: timeZone)
            assertStrictlyIncreasing(result)
            var irregular: [String] = []
            for (earlier, later) in zip(result, result.dropFirst()) where later.timeIntervalSince(earlier) != 3600 {
                irregular.append(
                    String(local(earlier, timeZone).prefix(10)) + " +\(Int(later.timeIntervalSince(earlier)))")
            }
            XCTAssertEqual(irregular, ["\(fallBackGap) +7200"], identifier)
            // 365 days of 24 hours, minus the one repeated hour that fires once.
            XCTAssertEqual(result.count, 365 * 24 - 1, identifier)
        }
    }

    func testLatestFireAcrossTransitions() {
        let losAngeles = zone("America/Los_Angeles")
        // 01:45 PDT (first pass) is earlier than 01:30 PST (second pass): it is the latest fire.
        XCTAssertEqual(
            local(
                cron("45 1 * * *").latestFire(atOrBefore: instant("2026-11-01T01:30:00-08:00"), in: losAngeles),
                losAngeles),
            "2026-11-01T01:45:00-07:00")
        // The nonexistent 02:30 fired at 03:00 PDT.
        XCTAssertEqual(
            local(
                cron("30 2 * * *").latestFire(atOrBefore: instant("2026-03-08T03:10:00-07:00"), in: losAngeles),
                losAngeles),
            "2026-03-08T03:00:00-07:00")
        XCTAssertEqual(
            local(
                cron("30 2 * * *").latestFire(
                    atOrBefore: instant("2026-03-08T02:59:00-08:00").addingTimeInterval(60), in: losAngeles), losAngeles
            ),
            "2026-03-08T03:00:00-07:00")
        let paris = zone("Europe/Paris")
        XCTAssertEqual(
            local(cron("0 * * * *").latestFire(atOrBefore: instant("2026-10-25T02:59:00+01:00"), in: paris), paris),
            "2026-10-25T02:00:00+02:00")
    }

    /// latestFire and next agree with fireTimes around every transition, minute by minute.
    func testLatestFireAndNextAreConsistentAroundTransitions() {
        for (identifier, day) in [
            ("Europe/Paris", "2026-03-29T00:00:00Z"), ("Europe/Paris", "2026-10-25T00:00:00Z"),
            ("America/Los_Angeles", "2026-03-08T08:00:00Z"), ("America/Los_Angeles", "2026-11-01T07:00:00Z"),
        ] {
            let timeZone = zone(identifier)
            for text in ["*/20 * * * *", "30 2 * * *", "0 1,2,3 * * *"] {
                let expression = cron(text)
                let start = instant(day)
                let all = expression.fireTimes(
                    from: start.addingTimeInterval(-86_400), through: start.addingTimeInterval(2 * 86_400), in: timeZone
                )
                var probe = start
                while probe < start.addingTimeInterval(5 * 3600) {
                    let expectedLatest = all.last { $0 <= probe }
                    let expectedNext = all.first { $0 > probe }
                    XCTAssertEqual(
                        expression.latestFire(atOrBefore: probe, in: timeZone), expectedLatest,
                        "\(text) \(identifier) \(probe)")
                    XCTAssertEqual(
                        expression.next(after: probe, in: timeZone), expectedNext, "\(text) \(identifier) \(probe)")
                    probe.addTimeInterval(300)
                }
            }
        }
    }

    /// Samoa skipped 2011-12-30 entirely (-10:00 to +14:00): the whole day is a gap, so a noon schedule runs
    /// once at the first instant after it, then resumes.
    func testAWholeSkippedDay() {
        let apia = zone("Pacific/Apia")
        let result = fires("0 12 * * *", apia, "2011-12-29T00:00:00-10:00", "2012-01-01T23:00:00+14:00")
        XCTAssertEqual(
            result.map { local($0, apia) },
            [
                "2011-12-29T12:00:00-10:00", "2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00",
                "2012-01-01T12:00:00+14:00",
            ])
        XCTAssertEqual(
            local(cron("0 12 * * *").latestFire(atOrBefore: instant("2011-12-31T06:00:00+14:00"), in: apia), apia),
            "2011-12-31T00:00:00+14:00")
    }

    func testFixedOffsetAndOtherZones() {
        let tokyo = zone("Asia/Tokyo")
        XCTAssertEqual(
            local(cron("0 9 * * *").next(after: instant("2026-01-05T00:30:00Z"), in: tokyo), tokyo),
            "2026-01-06T09:00:00+09:00")
        let kathmandu = zone("Asia/Kathmandu")
        XCTAssertEqual(
            local(cron("0 0 * * *").next(after: instant("2026-01-05T00:00:00Z"), in: kathmandu), kathmandu),
            "2026-01-06T00:00:00+05:45")
    }
}
