import Foundation
import Platforms
import XCTest

@testable import Sync

/// The lean call plan's level derivation: exact sums, and a refusal (nil) when an ad cannot be placed.
final class CallPlanTests: XCTestCase {
    let day = LocalDate(year: 2026, month: 3, day: 1)!

    func entity(_ level: ReportLevel, _ id: String, parent: String?) -> AdEntity {
        AdEntity(
            platform: .tiktok, accountId: "A", level: level, id: id, name: id, parentId: parent,
            campaignId: level == .campaign ? id : nil, status: "OK", isDeleted: false, updatedAt: nil)
    }

    func row(_ ad: String, spend: String, conversions: Decimal?, isFinal: Bool? = nil) -> DailyMetric {
        DailyMetric(
            platform: .tiktok, accountId: "A", level: .ad, entityId: ad, date: day, currency: "USD",
            spend: Decimal(string: spend)!, impressions: 10, clicks: nil, conversions: conversions,
            conversionValue: Decimal(string: "0.10"), isFinal: isFinal)
    }

    func testSumsAdRowsIntoAdGroupsAndCampaignsExactly() throws {
        let entities = [
            entity(.campaign, "c1", parent: nil), entity(.adGroup, "g1", parent: "c1"),
            entity(.adGroup, "g2", parent: "c1"), entity(.ad, "a1", parent: "g1"), entity(.ad, "a2", parent: "g1"),
            entity(.ad, "a3", parent: "g2"),
        ]
        let rows = [
            row("a1", spend: "0.10", conversions: 1, isFinal: true),
            row("a2", spend: "0.20", conversions: nil, isFinal: false),
            row("a3", spend: "1.005", conversions: 2, isFinal: true),
        ]
        let derived = try XCTUnwrap(LevelDerivation.derive(rows, entities: entities))
        let byKey = Dictionary(uniqueKeysWithValues: derived.map { ("\($0.level.rawValue)/\($0.entityId)", $0) })
        XCTAssertEqual(byKey.count, 3)
        XCTAssertEqual(byKey["ad_group/g1"]?.spend, Decimal(string: "0.30"))
        XCTAssertEqual(byKey["ad_group/g1"]?.conversions, 1, "an empty metric adds nothing, it does not blank the sum")
        XCTAssertEqual(byKey["ad_group/g1"]?.isFinal, false, "final only when every part is")
        XCTAssertNil(byKey["ad_group/g1"]?.clicks, "empty everywhere stays empty")
        XCTAssertEqual(byKey["ad_group/g2"]?.spend, Decimal(string: "1.005"))
        XCTAssertEqual(byKey["campaign/c1"]?.spend, Decimal(string: "1.305"))
        XCTAssertEqual(byKey["campaign/c1"]?.impressions, 30)
        XCTAssertEqual(byKey["campaign/c1"]?.conversions, 3)
        XCTAssertEqual(byKey["campaign/c1"]?.conversionValue, Decimal(string: "0.30"))
    }

    func testAnAdTheListsDoNotPlaceRefusesTheDerivation() {
        let entities = [entity(.campaign, "c1", parent: nil), entity(.adGroup, "g1", parent: "c1")]
        XCTAssertNil(LevelDerivation.derive([row("new-ad", spend: "1", conversions: 0)], entities: entities))
        let orphanGroup = [entity(.ad, "a1", parent: "g9")]
        XCTAssertNil(LevelDerivation.derive([row("a1", spend: "1", conversions: 0)], entities: orphanGroup))
    }

    /// Counts come from the platform's response: sums that overflow Int64 saturate instead of trapping (a trap is a
    /// signal that kills the worker), in the level derivation, the account totals and the reconciliation difference.
    func testCountSumsFromHostileResponsesSaturateInsteadOfTrapping() throws {
        let entities = [
            entity(.campaign, "c1", parent: nil), entity(.adGroup, "g1", parent: "c1"), entity(.ad, "a1", parent: "g1"),
            entity(.ad, "a2", parent: "g1"),
        ]
        var a1 = row("a1", spend: "1", conversions: 0)
        var a2 = row("a2", spend: "1", conversions: 0)
        a1.impressions = .max
        a2.impressions = 5
        a1.clicks = .min
        a2.clicks = -1
        let derived = try XCTUnwrap(LevelDerivation.derive([a1, a2], entities: entities))
        XCTAssertEqual(derived.first { $0.level == .campaign }?.impressions, .max)
        XCTAssertEqual(derived.first { $0.level == .adGroup }?.clicks, .min)

        var totals = AccountTotals(spend: 1, impressions: .max - 1, conversions: 0)
        totals += AccountTotals(spend: 2, impressions: 7, conversions: 1)
        XCTAssertEqual(totals, AccountTotals(spend: 3, impressions: .max, conversions: 1))
        XCTAssertEqual((AccountTotals(impressions: .min) + AccountTotals(impressions: -1)).impressions, .min)

        let r = Reconciliation(
            status: "mismatch", api: AccountTotals(impressions: .min), stored: AccountTotals(impressions: 10))
        XCTAssertTrue(r.differenceJSON?.contains(#""difference":{"spend":0,"impressions":\#(Int64.min)"#) ?? false)
    }
}
