import Foundation
import HTTP
import XCTest

@testable import Sandbox

final class TikTokSandboxTests: SandboxTestCase {
    func testOAuthExchangeRefreshRotationAndBadCodes() async throws {
        let s = try makeSandbox()
        let url = s.tiktokBaseURL + "oauth2/access_token/"
        let r = try await client.send(
            "POST", url, headers: ["Content-Type": "application/json"],
            body: #"{"app_id":"app","secret":"shh","auth_code":"tiktok-auth-1"}"#)
        XCTAssertEqual(r.status, 200)
        let json = try XCTUnwrap(r.json)
        XCTAssertEqual(json["code"], .number("0"))
        let access = try XCTUnwrap(json["data"]?["access_token"]?.text)
        let refresh = try XCTUnwrap(json["data"]?["refresh_token"]?.text)
        let ids = try XCTUnwrap(json["data"]?["advertiser_ids"]?.arrayValue)
        XCTAssertEqual(ids.map(\.text), demo(s, .tiktok, 1).accountIDs.map { $0 })
        XCTAssertTrue(ids.allSatisfy { if case .string = $0 { true } else { false } }, "advertiser_ids are strings")

        let info = try await tiktok(
            s, "advertiser/info/", [("advertiser_ids", "[\"\(ids[0].text!)\"]")], token: access)
        XCTAssertEqual(info.json?["code"], .number("0"))
        XCTAssertNotNil(info.json?["data"]?["list"]?.arrayValue?.first?["currency"]?.text)

        let refreshURL = s.tiktokBaseURL + "oauth2/refresh_token/"
        let body = #"{"app_id":"app","secret":"shh","grant_type":"refresh_token","refresh_token":"\#(refresh)"}"#
        let refreshed = try await client.send("POST", refreshURL, body: body)
        XCTAssertEqual(refreshed.json?["code"], .number("0"))
        let newAccess = try XCTUnwrap(refreshed.json?["data"]?["access_token"]?.text)
        XCTAssertNotEqual(newAccess, access)
        let again = try await client.send("POST", refreshURL, body: body)
        XCTAssertEqual(again.json?["code"], .number("40107"), "refresh tokens rotate")

        let bad = try await client.send("POST", url, body: #"{"app_id":"app","secret":"shh","auth_code":"nope"}"#)
        XCTAssertEqual(bad.json?["code"], .number("40110"))
        XCTAssertEqual(bad.status, 200)
    }

    func testAuthEnforcement() async throws {
        let s = try makeSandbox()
        let mine = demo(s, .tiktok, 0)
        let other = demo(s, .tiktok, 1)
        let params = [("advertiser_id", mine.accountIDs[0]), ("page_size", "10")]
        let missing = try await tiktok(s, "campaign/get/", params, token: nil)
        XCTAssertEqual(missing.json?["code"], .number("40104"))
        let wrong = try await tiktok(s, "campaign/get/", params, token: "not-a-token")
        XCTAssertEqual(wrong.json?["code"], .number("40105"))
        let foreign = try await tiktok(s, "campaign/get/", params, token: other.accessToken)
        XCTAssertEqual(foreign.json?["code"], .number("40001"), "a token only reaches its own advertisers")
        let ok = try await tiktok(s, "campaign/get/", params, token: mine.accessToken)
        XCTAssertEqual(ok.json?["code"], .number("0"))
        s.revokeConnection(.tiktok, 0)
        let revoked = try await tiktok(s, "campaign/get/", params, token: mine.accessToken)
        XCTAssertEqual(revoked.json?["code"], .number("40105"))
        let stillOther = try await tiktok(
            s, "campaign/get/", [("advertiser_id", other.accountIDs[0])], token: other.accessToken)
        XCTAssertEqual(stillOther.json?["code"], .number("0"))
    }

    func testEntityPaginationDeletedFilterAndBigIDs() async throws {
        func config(_ seed: UInt64) -> SandboxConfig {
            SandboxConfig(
                seed: seed, tiktokConnections: 1, snapConnections: 0, accountsPerConnection: 1...1,
                campaignsPerAccount: 12...12, today: fixedToday)
        }
        // The first seed whose account has deleted campaigns (a pure function of the seed, so always the same).
        let seed = try XCTUnwrap(
            (UInt64(1)...100).first { seed in
                Sandbox(config: config(seed)).world.accounts.values.contains {
                    $0.campaigns.contains { $0.status == .deleted }
                }
            })
        let s = try makeSandbox(config(seed))
        let d = demo(s, .tiktok)
        let adv = d.accountIDs[0]
        let account = try XCTUnwrap(s.world.accounts[adv])
        let all = account.campaigns
        let visible = all.filter { $0.status != .deleted }
        XCTAssertTrue(all.contains { $0.status == .deleted }, "the chosen seed has deleted campaigns")

        func walk(pageSize: Int, filtering: String?) async throws -> [String] {
            var ids: [String] = []
            var page = 1
            while true {
                var p = [("advertiser_id", adv), ("page", "\(page)"), ("page_size", "\(pageSize)")]
                if let filtering { p.append(("filtering", filtering)) }
                let r = try await tiktok(s, "campaign/get/", p, token: d.accessToken)
                let data = try XCTUnwrap(r.json?["data"])
                ids += data["list"]?.arrayValue?.compactMap { $0["campaign_id"]?.text } ?? []
                let info = try XCTUnwrap(data["page_info"])
                XCTAssertEqual(info["page_size"]?.intValue, pageSize)
                if page >= info["total_page"]!.intValue! { break }
                page += 1
            }
            return ids
        }
        let defaultIDs = try await walk(pageSize: 5, filtering: nil)
        XCTAssertEqual(defaultIDs, visible.map(\.id), "deleted campaigns are hidden by default")
        let allIDs = try await walk(pageSize: 1, filtering: #"{"secondary_status":"CAMPAIGN_STATUS_ALL"}"#)
        XCTAssertEqual(allIDs, all.map(\.id))
        XCTAssertTrue(allIDs.allSatisfy { UInt64($0)! > 1 << 53 }, "ids exceed 2^53")

        let raw = try await tiktok(
            s, "campaign/get/", [("advertiser_id", adv), ("page_size", "1000")], token: d.accessToken)
        XCTAssertTrue(raw.text.contains("\"campaign_id\":\(visible[0].id),"), "campaign ids are bare JSON numbers")
        let ads = try await tiktok(s, "ad/get/", [("advertiser_id", adv)], token: d.accessToken)
        XCTAssertTrue(ads.text.contains("\"ad_id\":\""), "ad ids are JSON strings")

        let tooBig = try await tiktok(
            s, "campaign/get/", [("advertiser_id", adv), ("page_size", "1001")], token: d.accessToken)
        XCTAssertEqual(tooBig.json?["code"], .number("40002"))
        let beyond = try await tiktok(
            s, "campaign/get/", [("advertiser_id", adv), ("page", "99"), ("page_size", "10")], token: d.accessToken)
        XCTAssertEqual(beyond.json?["data"]?["list"], .array([]))
    }

    func testReportWindowLimitShapeAndDash() async throws {
        let s = try makeSandbox()
        let d = demo(s, .tiktok)
        let adv = d.accountIDs[0]
        func report(_ start: String, _ end: String, level: String = "AUCTION_AD", dim: String = "ad_id") async throws
            -> Reply
        {
            try await tiktok(
                s, "report/integrated/get/",
                [
                    ("advertiser_id", adv), ("service_type", "AUCTION"), ("report_type", "BASIC"),
                    ("data_level", level), ("dimensions", "[\"\(dim)\",\"stat_time_day\"]"),
                    (
                        "metrics",
                        #"["spend","impressions","clicks","conversion","cost_per_conversion","total_purchase_value"]"#
                    ),
                    ("start_date", start), ("end_date", end), ("page_size", "1000"),
                ], token: d.accessToken)
        }
        let tooLarge = try await report("2026-02-01", "2026-03-03")
        XCTAssertEqual(tooLarge.json?["code"], .number("40067"))
        XCTAssertEqual(tooLarge.json?["message"]?.text, "Your query is too large")
        let ok = try await report("2026-02-01", "2026-03-02")
        XCTAssertEqual(ok.json?["code"], .number("0"), ok.text)
        let rows = try XCTUnwrap(ok.json?["data"]?["list"]?.arrayValue)
        XCTAssertFalse(rows.isEmpty)
        let first = rows[0]
        XCTAssertTrue(first["dimensions"]?["stat_time_day"]?.text?.hasSuffix(" 00:00:00") ?? false)
        XCTAssertNotNil(first["metrics"]?["spend"]?.text?.range(of: #"^\d+\.\d\d$"#, options: .regularExpression))
        XCTAssertTrue(
            rows.contains { $0["metrics"]?["cost_per_conversion"]?.text == "-" },
            "zero-conversion rows print '-'")
        let badLevel = try await report("2026-02-01", "2026-02-02", level: "AUCTION_AD", dim: "campaign_id")
        XCTAssertEqual(badLevel.json?["code"], .number("40002"))
    }

    func testReportsSumToGroundTruthAtEveryLevel() async throws {
        let s = try makeSandbox(SandboxConfig(tiktokConnections: 1, snapConnections: 0, days: 70, today: fixedToday))
        let d = demo(s, .tiktok)
        let adv = d.accountIDs[0]
        let truth = s.groundTruth(platform: .tiktok, account: adv)
        let firstDay = CivilDay(parsing: truth.map(\.date).min()![...])!
        let lastDay = CivilDay(parsing: truth.map(\.date).max()![...])!
        for (level, dim, truthLevel) in [
            ("AUCTION_AD", "ad_id", SandboxLevel.ad), ("AUCTION_ADGROUP", "adgroup_id", .adgroup),
            ("AUCTION_CAMPAIGN", "campaign_id", .campaign),
        ] {
            var got: [String: (Decimal, Int64, Int64)] = [:]
            var start = firstDay
            while start <= lastDay {
                let end = min(lastDay, start + 29)
                var page = 1
                while true {
                    let r = try await tiktok(
                        s, "report/integrated/get/",
                        [
                            ("advertiser_id", adv), ("report_type", "BASIC"), ("data_level", level),
                            ("dimensions", "[\"\(dim)\",\"stat_time_day\"]"),
                            ("metrics", #"["spend","impressions","conversion"]"#), ("start_date", "\(start)"),
                            ("end_date", "\(end)"), ("page", "\(page)"), ("page_size", "50"),
                        ], token: d.accessToken)
                    let data = try XCTUnwrap(r.json?["data"], r.text)
                    for row in data["list"]!.arrayValue! {
                        let key =
                            row["dimensions"]![dim]!.text! + "|" + row["dimensions"]!["stat_time_day"]!.text!.prefix(10)
                        got[key] = (
                            Decimal(string: row["metrics"]!["spend"]!.text!)!,
                            Int64(row["metrics"]!["impressions"]!.text!)!, Int64(row["metrics"]!["conversion"]!.text!)!
                        )
                    }
                    if page >= data["page_info"]!["total_page"]!.intValue! { break }
                    page += 1
                }
                start = end + 1
            }
            let expected = truth.filter { $0.level == truthLevel }
            XCTAssertGreaterThan(expected.count, 100, level)
            XCTAssertEqual(got.count, expected.count, level)
            for t in expected {
                let g = got["\(t.entityID)|\(t.date)"]
                XCTAssertEqual(g?.0, t.spend, "\(level) \(t.entityID) \(t.date)")
                XCTAssertEqual(g?.1, t.impressions)
                XCTAssertEqual(g?.2, t.conversions)
            }
        }
        let total = try XCTUnwrap(s.accountTotals(platform: .tiktok).first { $0.accountID == adv })
        let adRows = truth.filter { $0.level == .ad }
        XCTAssertEqual(adRows.reduce(Decimal(0)) { $0 + $1.spend }, total.spend)
        XCTAssertEqual(adRows.reduce(Int64(0)) { $0 + $1.conversions }, total.conversions)
    }

    /// A report without `stat_time_day` (reconciliation's account totals): one row per id for the whole range, at
    /// most 365 days (366 answers 40067), summing to the ground truth; the total-skew fault shifts the advertiser
    /// row of such a report; the request log tells it (`TOTAL`) from a daily report (`DAY`).
    func testReportWithoutStatTimeDayIsOneRowPerIDForUpTo365Days() async throws {
        let s = try makeSandbox(SandboxConfig(tiktokConnections: 1, snapConnections: 0, days: 70, today: fixedToday))
        let d = demo(s, .tiktok)
        let adv = d.accountIDs[0]
        let truth = s.groundTruth(platform: .tiktok, account: adv)
        let lastDay = CivilDay(parsing: truth.map(\.date).max()![...])!
        func report(_ level: String, _ dimensions: String, first: CivilDay, last: CivilDay) async throws -> Reply {
            try await tiktok(
                s, "report/integrated/get/",
                [
                    ("advertiser_id", adv), ("service_type", "AUCTION"), ("report_type", "BASIC"),
                    ("data_level", level), ("dimensions", dimensions),
                    ("metrics", #"["spend","impressions","conversion"]"#), ("start_date", "\(first)"),
                    ("end_date", "\(last)"), ("page_size", "1000"),
                ], token: d.accessToken)
        }
        // 365 days ending on the last day with data: the whole 70-day history and days before it without any.
        let first = lastDay - 364
        s.resetRequestCounts()
        let whole = try await report("AUCTION_ADVERTISER", #"["advertiser_id"]"#, first: first, last: lastDay)
        XCTAssertEqual(whole.json?["code"], .number("0"), whole.text)
        let rows = try XCTUnwrap(whole.json?["data"]?["list"]?.arrayValue, whole.text)
        XCTAssertEqual(rows.count, 1, "one row for the advertiser over the whole range")
        XCTAssertEqual(rows[0]["dimensions"]?["advertiser_id"]?.text, adv)
        XCTAssertNil(rows[0]["dimensions"]?["stat_time_day"], "no time dimension asked for")
        let ads = truth.filter { $0.level == .ad }
        XCTAssertEqual(Decimal(string: rows[0]["metrics"]?["spend"]?.text ?? ""), ads.reduce(0) { $0 + $1.spend })
        XCTAssertEqual(
            Int64(rows[0]["metrics"]?["impressions"]?.text ?? ""), ads.reduce(Int64(0)) { $0 + $1.impressions })
        XCTAssertEqual(
            Int64(rows[0]["metrics"]?["conversion"]?.text ?? ""), ads.reduce(Int64(0)) { $0 + $1.conversions })
        XCTAssertEqual(
            s.reportRequests(),
            [
                ReportRequest(
                    platform: .tiktok, accountID: adv, level: "AUCTION_ADVERTISER", granularity: "TOTAL",
                    first: "\(first)", last: "\(lastDay)")
            ])

        // Entity level without a day: one row per campaign with delivery, each its ground-truth sum.
        let campaigns = try await report("AUCTION_CAMPAIGN", #"["campaign_id"]"#, first: first, last: lastDay)
        var expected: [String: Decimal] = [:]
        for t in truth where t.level == .campaign { expected[t.entityID, default: 0] += t.spend }
        var got: [String: Decimal] = [:]
        for row in campaigns.json?["data"]?["list"]?.arrayValue ?? [] {
            let id = try XCTUnwrap(row["dimensions"]?["campaign_id"]?.text)
            XCTAssertNil(got[id], "campaign \(id) twice")
            got[id] = Decimal(string: row["metrics"]?["spend"]?.text ?? "")
        }
        XCTAssertEqual(got, expected.filter { $0.value != 0 })
        XCTAssertGreaterThan(got.count, 1)

        // 366 days: too large; a daily report keeps its 30-day limit.
        let tooLarge = try await report("AUCTION_ADVERTISER", #"["advertiser_id"]"#, first: first - 1, last: lastDay)
        XCTAssertEqual(tooLarge.json?["code"], .number("40067"), tooLarge.text)
        let dailyTooLarge = try await report(
            "AUCTION_ADVERTISER", #"["advertiser_id","stat_time_day"]"#, first: lastDay - 30, last: lastDay)
        XCTAssertEqual(dailyTooLarge.json?["code"], .number("40067"), dailyTooLarge.text)
        let daily = try await report(
            "AUCTION_ADVERTISER", #"["advertiser_id","stat_time_day"]"#, first: lastDay - 29, last: lastDay)
        XCTAssertEqual(daily.json?["code"], .number("0"), daily.text)
        XCTAssertEqual(s.reportRequests().last?.granularity, "DAY")
        let notADimension = try await report("AUCTION_ADVERTISER", #"["campaign_id"]"#, first: lastDay, last: lastDay)
        XCTAssertEqual(notADimension.json?["code"], .number("40002"), notADimension.text)

        // The total-skew fault applies to the whole-range row.
        s.skewAccountTotals(account: adv, spendCents: 250, times: 1)
        let skewed = try await report("AUCTION_ADVERTISER", #"["advertiser_id"]"#, first: first, last: lastDay)
        let skewedSpend = skewed.json?["data"]?["list"]?.arrayValue?.first?["metrics"]?["spend"]?.text ?? ""
        XCTAssertEqual(Decimal(string: skewedSpend), ads.reduce(0) { $0 + $1.spend } + Decimal(string: "2.50")!)
        let again = try await report("AUCTION_ADVERTISER", #"["advertiser_id"]"#, first: first, last: lastDay)
        XCTAssertEqual(
            again.json?["data"]?["list"]?.arrayValue?.first?["metrics"]?["spend"]?.text,
            rows[0]["metrics"]?["spend"]?.text)
    }

    func testAdvertiserInfoCoversDSTAndNonDSTZonesAndCurrencies() async throws {
        let s = try makeSandbox()
        var zones = Set<String>()
        var currencies = Set<String>()
        for c in s.connections() where c.platform == .tiktok {
            let ids = "[" + c.accountIDs.map { "\"\($0)\"" }.joined(separator: ",") + "]"
            let r = try await tiktok(s, "advertiser/info/", [("advertiser_ids", ids)], token: c.accessToken)
            for a in r.json?["data"]?["list"]?.arrayValue ?? [] {
                zones.insert(a["display_timezone"]!.text!)
                currencies.insert(a["currency"]!.text!)
            }
        }
        XCTAssertTrue(zones.isSuperset(of: ["America/Los_Angeles", "Europe/Paris", "Asia/Tokyo"]), "\(zones)")
        XCTAssertGreaterThanOrEqual(currencies.count, 3)
    }
}
