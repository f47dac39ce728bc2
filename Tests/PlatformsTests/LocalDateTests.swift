import Foundation
import XCTest

@testable import Platforms

final class LocalDateTests: XCTestCase {
    func testParsingAndArithmetic() {
        XCTAssertEqual(date("2024-09-03 00:00:00").description, "2024-09-03")
        XCTAssertEqual(date("2022-06-25T00:00:00.000-07:00").description, "2022-06-25")
        XCTAssertNil(LocalDate(parsing: "2023-02-29"))
        XCTAssertNil(LocalDate(parsing: "2024-13-01"))
        XCTAssertNil(LocalDate(parsing: "24-01-01"))
        XCTAssertEqual(date("2024-02-28").adding(days: 1), date("2024-02-29"))
        XCTAssertEqual(date("2023-12-31").adding(days: 1), date("2024-01-01"))
        XCTAssertEqual(date("2024-03-01").adding(days: -1), date("2024-02-29"))
        XCTAssertEqual(date("2024-01-01").days(to: date("2025-01-01")), 366)
        XCTAssertLessThan(date("2024-01-31"), date("2024-02-01"))
    }

    func testSplitAcrossMonthEndsAndYears() {
        let window = DateWindow(first: date("2024-01-15"), last: date("2024-03-20"))
        XCTAssertEqual(window.dayCount, 66)
        let parts = window.split(maxDays: 30)
        XCTAssertEqual(
            parts.map(\.description), ["2024-01-15..2024-02-13", "2024-02-14..2024-03-14", "2024-03-15..2024-03-20"])
        let snap = DateWindow(first: date("2023-12-01"), last: date("2024-01-31")).split(maxDays: 31)
        XCTAssertEqual(snap.map(\.description), ["2023-12-01..2023-12-31", "2024-01-01..2024-01-31"])
        XCTAssertEqual(DateWindow(first: date("2024-05-05"), last: date("2024-05-05")).split(maxDays: 30).count, 1)
        // Every day is covered exactly once.
        let days = parts.flatMap { p in (0..<p.dayCount).map { p.first.adding(days: $0) } }
        XCTAssertEqual(days.count, 66)
        XCTAssertEqual(Set(days).count, 66)
    }

    func testMidnightCarriesTheDSTOffsetOfEachDay() {
        let la = TimeZone(identifier: "America/Los_Angeles")!
        XCTAssertEqual(date("2024-03-10").midnightISO8601(in: la), "2024-03-10T00:00:00-08:00")
        XCTAssertEqual(date("2024-03-11").midnightISO8601(in: la), "2024-03-11T00:00:00-07:00")
        XCTAssertEqual(date("2024-11-03").midnightISO8601(in: la), "2024-11-03T00:00:00-07:00")
        XCTAssertEqual(date("2024-11-04").midnightISO8601(in: la), "2024-11-04T00:00:00-08:00")
        let paris = TimeZone(identifier: "Europe/Paris")!
        XCTAssertEqual(date("2024-03-31").midnightISO8601(in: paris), "2024-03-31T00:00:00+01:00")
        XCTAssertEqual(date("2024-04-01").midnightISO8601(in: paris), "2024-04-01T00:00:00+02:00")
        let tokyo = TimeZone(identifier: "Asia/Tokyo")!
        XCTAssertEqual(date("2024-07-01").midnightISO8601(in: tokyo), "2024-07-01T00:00:00+09:00")
        let kolkata = TimeZone(identifier: "Asia/Kolkata")!
        XCTAssertEqual(date("2024-07-01").midnightISO8601(in: kolkata), "2024-07-01T00:00:00+05:30")
    }

    func testSnapStatsQuerySpansTheDSTChange() {
        let la = TimeZone(identifier: "America/Los_Angeles")!
        let query = Dictionary(
            uniqueKeysWithValues: SnapchatClient.statsQuery(
                window: DateWindow(first: date("2024-03-10"), last: date("2024-03-10")), zone: la, breakdown: "ad",
                swipeUp: "28_DAY", view: "1_DAY", limit: 200))
        XCTAssertEqual(query["start_time"], "2024-03-10T00:00:00-08:00")
        XCTAssertEqual(query["end_time"], "2024-03-11T00:00:00-07:00")
        XCTAssertEqual(query["granularity"], "DAY")
        XCTAssertEqual(query["limit"], "200")
    }

    func testLocalDayOfAnInstant() {
        let instant = Date(timeIntervalSince1970: 1_710_061_200)  // 2024-03-10T09:00:00Z
        XCTAssertEqual(LocalDate(instant, in: TimeZone(identifier: "America/Los_Angeles")!), date("2024-03-10"))
        XCTAssertEqual(LocalDate(instant, in: TimeZone(identifier: "Asia/Tokyo")!), date("2024-03-10"))
        XCTAssertEqual(
            LocalDate(instant.addingTimeInterval(-10 * 3600), in: TimeZone(identifier: "UTC")!), date("2024-03-09"))
    }
}

final class RefreshTimingTests: XCTestCase {
    func testProactiveRefreshIsDueOnlyWhenNeeded() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let margin = Duration.seconds(60)
        XCTAssertTrue(
            SnapchatClient.refreshDue(expiry: now.addingTimeInterval(-1), lastRefresh: now, margin: margin, now: now))
        XCTAssertTrue(
            SnapchatClient.refreshDue(expiry: now.addingTimeInterval(30), lastRefresh: nil, margin: margin, now: now))
        XCTAssertFalse(
            SnapchatClient.refreshDue(expiry: now.addingTimeInterval(1800), lastRefresh: nil, margin: margin, now: now))
        // A token issued 1 s ago that lives 30 s: refreshing again would loop, the 401 path covers real expiry.
        XCTAssertFalse(
            SnapchatClient.refreshDue(
                expiry: now.addingTimeInterval(30), lastRefresh: now.addingTimeInterval(-1), margin: margin, now: now))
        XCTAssertTrue(
            SnapchatClient.refreshDue(
                expiry: now.addingTimeInterval(30), lastRefresh: now.addingTimeInterval(-120), margin: margin, now: now)
        )
    }
}
