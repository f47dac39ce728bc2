import Foundation
import Runtime
import XCTest

/// Pure fire-time logic of schedule definitions (cron itself is covered by CronTests).
final class ScheduleSpecTests: XCTestCase {
    func testEveryFiresAtMultiplesOfTheIntervalSinceTheEpoch() throws {
        let spec = try ScheduleSpec("@every 2s", timeZone: "UTC")
        XCTAssertEqual(spec, .every(seconds: 2))
        let t = Date(timeIntervalSince1970: 1_000_001.7)
        XCTAssertEqual(spec.latestFire(atOrBefore: t), Date(timeIntervalSince1970: 1_000_000))
        XCTAssertEqual(spec.next(after: t), Date(timeIntervalSince1970: 1_000_002))
        // A fire time is its own latest fire, and the next one is strictly later.
        let exact = Date(timeIntervalSince1970: 1_000_002)
        XCTAssertEqual(spec.latestFire(atOrBefore: exact), exact)
        XCTAssertEqual(spec.next(after: exact), Date(timeIntervalSince1970: 1_000_004))
    }

    func testEveryAcceptsCompoundDurationsAndIgnoresTheTimeZone() throws {
        XCTAssertEqual(try ScheduleSpec("@every 1h30m", timeZone: "Not/AZone"), .every(seconds: 5400))
        XCTAssertEqual(try ScheduleSpec("  @every 5m ", timeZone: "UTC"), .every(seconds: 300))
    }

    func testEveryRejectsSubSecondAndGarbage() {
        for bad in ["@every", "@every 0s", "@every 500ms", "@every 1.5s", "@every soon"] {
            XCTAssertThrowsError(try ScheduleSpec(bad, timeZone: "UTC"), bad)
        }
    }

    func testCronIsReadInTheScheduleTimeZone() throws {
        let spec = try ScheduleSpec("0 9 * * *", timeZone: "Europe/Paris")
        // 2026-07-01 08:00 UTC = 10:00 Paris (CEST): the latest 09:00 Paris is 07:00 UTC that day.
        let t = Date(timeIntervalSince1970: 1_782_892_800)
        XCTAssertEqual(spec.latestFire(atOrBefore: t), Date(timeIntervalSince1970: 1_782_889_200))
        XCTAssertEqual(spec.next(after: t), Date(timeIntervalSince1970: 1_782_889_200 + 86_400))
    }

    func testUnknownTimeZoneAndBadCronAreRejectedWithTheValueNamed() {
        XCTAssertThrowsError(try ScheduleSpec("0 3 * * *", timeZone: "Mars/Olympus")) { e in
            XCTAssertTrue("\(e)".contains("Mars/Olympus"), "\(e)")
        }
        XCTAssertThrowsError(try ScheduleSpec("61 * * * *", timeZone: "UTC")) { e in
            XCTAssertTrue("\(e)".contains("61"), "\(e)")
        }
    }

    func testScheduleValidationChecksKindArgsAndMaintenanceKinds() {
        XCTAssertNoThrow(try Schedule(name: "a", cron: "@daily", kind: "retention_purge").validate())
        XCTAssertNoThrow(try Schedule(name: "m", cron: "@every 5s", kind: "nexjobs.rescue").validate())
        XCTAssertThrowsError(try Schedule(name: "a", cron: "@daily", kind: "nexjobs.vacuum").validate())
        XCTAssertThrowsError(try Schedule(name: "a", cron: "@daily", kind: "Bad Kind").validate())
        XCTAssertThrowsError(try Schedule(name: "a b", cron: "@daily", kind: "k").validate())
        XCTAssertThrowsError(try Schedule(name: "a", cron: "@daily", kind: "k", args: "[1]").validate())
        XCTAssertThrowsError(try Schedule(name: "a", cron: "@daily", kind: "k", args: "{").validate())
    }

    func testElectionOptionsMustLeaveRoomForTheSafetyMargin() {
        var o = LeaderElectionOptions()
        XCTAssertNoThrow(try o.validate())
        o.renewInterval = .seconds(9)
        XCTAssertThrowsError(try o.validate())
    }
}
