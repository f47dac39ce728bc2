import Foundation
import HTTP
import XCTest

@testable import Sandbox

struct NoLosAngelesAccount: Error {}

final class SnapSandboxTests: SandboxTestCase {
    private func laAccount(_ s: Sandbox) throws -> (SandboxConnectionInfo, Account) {
        for c in s.connections() where c.platform == .snapchat {
            for id in c.accountIDs where s.world.accounts[id]!.timezoneID == "America/Los_Angeles" {
                return (c, s.world.accounts[id]!)
            }
        }
        // Unreachable: the first Snap account is always in Los Angeles (time zones are assigned in turn).
        throw NoLosAngelesAccount()
    }

    func testOAuthBothGrantsExpiryAndRefresh() async throws {
        let s = try makeSandbox(SandboxConfig(snapAccessTokenTTL: .seconds(600), today: fixedToday))
        let form = "grant_type=authorization_code&client_id=cid&client_secret=sec&code=snap-auth-2&redirect_uri=x"
        let r = try await client.send(
            "POST", s.snapOAuthURL, headers: ["Content-Type": "application/x-www-form-urlencoded"], body: form)
        XCTAssertEqual(r.status, 200, r.text)
        let json = try XCTUnwrap(r.json)
        XCTAssertEqual(json["expires_in"], .number("600"))
        XCTAssertEqual(json["token_type"]?.text, "Bearer")
        let access = try XCTUnwrap(json["access_token"]?.text)
        let refresh = try XCTUnwrap(json["refresh_token"]?.text)
        let me = try await snap(s, "me", token: access)
        XCTAssertEqual(me.status, 200)
        XCTAssertEqual(me.json?["request_status"]?.text, "SUCCESS")

        s.expireSnapTokens(connection: 2)
        let expired = try await snap(s, "me", token: access)
        XCTAssertEqual(expired.status, 401)
        XCTAssertEqual(expired.json?["request_status"]?.text, "ERROR")

        let refreshed = try await client.send(
            "POST", s.snapOAuthURL,
            body: "grant_type=refresh_token&client_id=cid&client_secret=sec&refresh_token=\(refresh)")
        let newAccess = try XCTUnwrap(refreshed.json?["access_token"]?.text)
        let hoisted1 = try await snap(s, "me", token: newAccess)
        XCTAssertEqual(hoisted1.status, 200)

        let badCode = try await client.send(
            "POST", s.snapOAuthURL, body: "grant_type=authorization_code&client_id=c&client_secret=s&code=zzz")
        XCTAssertEqual(badCode.status, 400)
        XCTAssertEqual(badCode.json?["error"]?.text, "invalid_grant")
        let noAuth = try await snap(s, "me", token: nil)
        XCTAssertEqual(noAuth.status, 401)
    }

    func testShortTTLExpiresByTheClock() async throws {
        let s = try makeSandbox(SandboxConfig(snapAccessTokenTTL: .milliseconds(200), today: fixedToday))
        let d = demo(s, .snapchat)
        let deadline = Date().addingTimeInterval(5)
        var status = 200
        while Date() < deadline {
            status = try await snap(s, "me", token: d.accessToken).status
            if status == 401 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertEqual(status, 401, "token outlived its TTL")
    }

    func testHierarchyAndPagination() async throws {
        let s = try makeSandbox(
            SandboxConfig(
                tiktokConnections: 0, snapConnections: 2, accountsPerConnection: 1...1, campaignsPerAccount: 101...101,
                adGroupsPerCampaign: 1...1, adsPerAdGroup: 1...1, today: fixedToday))
        let d = demo(s, .snapchat)
        let orgs = try await snap(s, "me/organizations", token: d.accessToken)
        let org = try XCTUnwrap(orgs.json?["organizations"]?.arrayValue?.first?["organization"])
        XCTAssertEqual(org["id"]?.text, d.organizationID)
        let accounts = try await snap(s, "organizations/\(d.organizationID)/adaccounts", token: d.accessToken)
        let acct = try XCTUnwrap(accounts.json?["adaccounts"]?.arrayValue?.first?["adaccount"])
        XCTAssertEqual(acct["id"]?.text, d.accountIDs[0])
        XCTAssertNotNil(acct["timezone"]?.text)
        XCTAssertNotNil(acct["currency"]?.text)

        var url: String? = "adaccounts/\(d.accountIDs[0])/campaigns?limit=50"
        var ids: [String] = []
        var pages = 0
        while let next = url {
            let r = try await snap(s, next, token: d.accessToken)
            XCTAssertEqual(r.status, 200, r.text)
            let items = try XCTUnwrap(r.json?["campaigns"]?.arrayValue)
            XCTAssertTrue(items.allSatisfy { $0["sub_request_status"]?.text == "SUCCESS" })
            ids += items.compactMap { $0["campaign"]?["id"]?.text }
            url = r.json?["paging"]?["next_link"]?.text
            if let u = url { XCTAssertTrue(u.hasPrefix(s.baseURL + "/v1/"), u) }
            pages += 1
        }
        XCTAssertEqual(pages, 3, "101 campaigns at limit 50: 50 + 50 + 1")
        XCTAssertEqual(ids, s.world.accounts[d.accountIDs[0]]!.campaigns.map(\.id))
        XCTAssertTrue(ids.allSatisfy { UUID(uuidString: $0) != nil })

        let badLimit = try await snap(s, "adaccounts/\(d.accountIDs[0])/campaigns?limit=49", token: d.accessToken)
        XCTAssertEqual(badLimit.status, 400)
        let other = demo(s, .snapchat, 1)
        let forbidden = try await snap(s, "adaccounts/\(other.accountIDs[0])/ads", token: d.accessToken)
        XCTAssertEqual(forbidden.status, 403)
        XCTAssertTrue(forbidden.text.contains("None of the requested actions"))
        let missing = try await snap(s, "adaccounts/\(UUID().uuidString.lowercased())/ads", token: d.accessToken)
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(missing.json?["error_code"]?.text, "E3003")
        let squads = try await snap(s, "adaccounts/\(d.accountIDs[0])/adsquads", token: d.accessToken)
        XCTAssertEqual(squads.json?["adsquads"]?.arrayValue?.count, 101)
        let ads = try await snap(s, "adaccounts/\(d.accountIDs[0])/ads", token: d.accessToken)
        XCTAssertNotNil(ads.json?["ads"]?.arrayValue?.first?["ad"]?["ad_squad_id"]?.text)
    }

    func testStatsAlignmentWindowDSTAndMicroCurrency() async throws {
        let s = try makeSandbox()
        let (conn, acct) = try laAccount(s)
        let ad = acct.allAds[0]
        func stats(_ path: String, _ start: String, _ end: String, fields: String = "impressions,swipes,spend,conversion_purchases")
            async throws -> Reply
        {
            try await snap(
                s, "\(path)/stats?" + query([
                    ("granularity", "DAY"), ("fields", fields), ("start_time", start), ("end_time", end),
                    ("swipe_up_attribution_window", "28_DAY"), ("view_attribution_window", "1_DAY"),
                ]), token: conn.accessToken)
        }
        let misaligned = try await stats("ads/\(ad.id)", "2026-03-01T00:00:00Z", "2026-03-05T00:00:00Z")
        XCTAssertEqual(misaligned.status, 400)
        XCTAssertEqual(
            misaligned.json?["debug_message"]?.text,
            "Unsupported Stats Query: Timeseries queries with DAY granularity must have a start time that is the start of day (00:00:00) for the account's timezone. This account's timezone is: America/Los_Angeles"
        )
        let tooLong = try await stats("ads/\(ad.id)", "2026-01-01T00:00:00-08:00", "2026-02-02T00:00:00-08:00")
        XCTAssertEqual(tooLong.status, 400)
        let backwards = try await stats("ads/\(ad.id)", "2026-03-05T00:00:00-08:00", "2026-03-01T00:00:00-08:00")
        XCTAssertEqual(backwards.json?["error_code"]?.text, "E1008")
        let acctNonSpend = try await stats("adaccounts/\(acct.id)", "2026-03-01T00:00:00-08:00", "2026-03-05T00:00:00-08:00")
        XCTAssertEqual(acctNonSpend.status, 400, "ad account stats serve spend only")

        // Across the 2026-03-08 change: PST midnight to PDT midnight.
        let r = try await stats("ads/\(ad.id)", "2026-03-06T00:00:00-08:00", "2026-03-10T00:00:00-07:00")
        XCTAssertEqual(r.status, 200, r.text)
        let stat = try XCTUnwrap(r.json?["timeseries_stats"]?.arrayValue?.first?["timeseries_stat"])
        XCTAssertEqual(stat["type"]?.text, "AD")
        XCTAssertNotNil(stat["finalized_data_end_time"]?.text)
        let series = try XCTUnwrap(stat["timeseries"]?.arrayValue)
        XCTAssertEqual(series.map { $0["start_time"]!.text! }, [
            "2026-03-06T00:00:00.000-08:00", "2026-03-07T00:00:00.000-08:00", "2026-03-08T00:00:00.000-08:00",
            "2026-03-09T00:00:00.000-07:00",
        ])
        for (i, entry) in series.enumerated() {
            let day = "2026-03-0\(6 + i)"
            let truth = s.groundTruth(platform: .snapchat, account: acct.id, from: day, to: day)
                .first { $0.level == .ad && $0.entityID == ad.id }
            let micro = Decimal(string: entry["stats"]!["spend"]!.text!)!
            XCTAssertEqual(micro / 1_000_000, truth?.spend ?? 0, "spend is micro-currency")
            XCTAssertEqual(entry["stats"]?["swipes"]?.intValue.map(Int64.init), truth?.clicks ?? 0)
        }
    }

    func testStatsSumToGroundTruthWithBreakdown() async throws {
        let s = try makeSandbox(SandboxConfig(tiktokConnections: 0, snapConnections: 1, days: 40, today: fixedToday))
        let conn = demo(s, .snapchat)
        let acct = s.world.accounts[conn.accountIDs[0]]!
        let truth = s.groundTruth(platform: .snapchat, account: acct.id)
        let first = CivilDay(parsing: truth.map(\.date).min()![...])!
        let today = s.localToday(acct)
        var got: [String: (Decimal, Int64)] = [:]
        var start = first
        while start <= today {
            let end = min(today + 1, start + 31)
            let tz = acct.timezone
            let r = try await snap(
                s, "adaccounts/\(acct.id)/stats?" + query([
                    ("granularity", "DAY"), ("breakdown", "ad"),
                    ("fields", "spend,conversion_purchases,conversion_purchases_value"),
                    ("start_time", Zone.snapTimestamp(tz, Zone.midnight(tz, start))),
                    ("end_time", Zone.snapTimestamp(tz, Zone.midnight(tz, end))),
                ]), token: conn.accessToken)
            XCTAssertEqual(r.status, 200, r.text)
            let stat = try XCTUnwrap(r.json?["timeseries_stats"]?.arrayValue?.first?["timeseries_stat"])
            for ad in stat["breakdown_stats"]?["ad"]?.arrayValue ?? [] {
                for e in ad["timeseries"]!.arrayValue! {
                    let micro = Decimal(string: e["stats"]!["spend"]!.text!)!
                    let conv = Int64(e["stats"]!["conversion_purchases"]!.intValue!)
                    if micro == 0 && conv == 0 { continue }
                    got["\(ad["id"]!.text!)|\(e["start_time"]!.text!.prefix(10))"] = (micro / 1_000_000, conv)
                }
            }
            start = end
        }
        let adTruth = truth.filter { $0.level == .ad }
        XCTAssertGreaterThan(adTruth.count, 30)
        XCTAssertEqual(got.count, adTruth.count)
        for t in adTruth {
            XCTAssertEqual(got["\(t.entityID)|\(t.date)"]?.0, t.spend, "\(t.entityID) \(t.date)")
            XCTAssertEqual(got["\(t.entityID)|\(t.date)"]?.1, t.conversions)
        }
    }
}
