import Foundation
import HTTP
import XCTest

@testable import Platforms

/// TikTok client over real HTTP against scripted fixture routes (literal examples from the API reference).
final class TikTokClientTests: XCTestCase {
    private let account = AdAccount(
        platform: .tiktok, id: "7001035076276387841", name: "Acme", currency: "USD", timeZone: "America/Los_Angeles")
    private let token = "tt-access-token-SECRET-1"

    private func session(refresh: String? = nil) -> TokenSession {
        TokenSession(tokens: OAuthTokens(accessToken: token, refreshToken: refresh))
    }

    func testTokenExchangeSendsJSONAndReadsAdvertiserIds() async throws {
        let server = try FixtureServer()
        server.router.add("POST", "/open_api/v1.3/oauth2/access_token/") { _ in
            TikTokFixture.envelope(
                #"{"access_token":"tt-new-access","advertiser_ids":["7001035076276387841",7001035076276387843],"scope":[4,5]}"#
            )
        }
        let client = makeTikTokClient(server)
        let tokens = try await client.exchangeAuthorizationCode("tiktok-auth-0")
        await server.stop()
        XCTAssertEqual(tokens.accessToken, "tt-new-access")
        XCTAssertEqual(tokens.grantedAccountIds, ["7001035076276387841", "7001035076276387843"])
        XCTAssertNil(tokens.refreshToken)
        XCTAssertNil(tokens.accessTokenExpiresAt)
        let sent = try JSONValue.parse(server.requests[0].body)
        XCTAssertEqual(sent["auth_code"], .string("tiktok-auth-0"))
        XCTAssertEqual(sent["app_id"], .string("app-123"))
        XCTAssertEqual(sent["secret"], .string("tt-app-secret-XYZ"))
        XCTAssertEqual(server.requests[0].headers["content-type"], "application/json")
    }

    func testAdvertisersWithCurrencyAndTimezone() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/oauth2/advertiser/get/") { _ in
            TikTokFixture.envelope(
                #"{"list":[{"advertiser_id":7001035076276387841,"advertiser_name":"Acme"},{"advertiser_id":"7001035076276387843","advertiser_name":"Beta"}]}"#
            )
        }
        server.router.add("GET", "/open_api/v1.3/advertiser/info/") { _ in
            TikTokFixture.envelope(
                #"{"list":[{"advertiser_id":7001035076276387841,"name":"Acme","currency":"USD","timezone":"Etc/GMT+8","display_timezone":"America/Los_Angeles","status":"STATUS_ENABLE"},{"advertiser_id":"7001035076276387843","name":"Beta","currency":"JPY","timezone":"Asia/Tokyo","display_timezone":"","status":"STATUS_ENABLE"}]}"#
            )
        }
        let accounts = try await makeTikTokClient(server).adAccounts(session: session())
        await server.stop()
        XCTAssertEqual(accounts.map(\.id), ["7001035076276387841", "7001035076276387843"])
        XCTAssertEqual(accounts.map(\.currency), ["USD", "JPY"])
        XCTAssertEqual(accounts.map(\.timeZone), ["America/Los_Angeles", "Asia/Tokyo"])
        let info = server.requests(path: "/open_api/v1.3/advertiser/info/")[0]
        XCTAssertEqual(info.query["advertiser_ids"], #"["7001035076276387841","7001035076276387843"]"#)
        XCTAssertEqual(info.headers["access-token"], token)
    }

    func testReferenceCampaignRecordKeepsLargeIds() async throws {
        let server = try FixtureServer()
        // The literal campaign record of ad-apis.md A3, plus an id above 2^53 as a bare number and one as a string.
        let records = [
            #"{"campaign_id":123456789,"campaign_name":"Test Campaign","advertiser_id":872746382648,"budget":100.0,"budget_mode":"BUDGET_MODE_DAY","secondary_status":"CAMPAIGN_STATUS_ENABLE","objective_type":"TRAFFIC","create_time":"2024-01-01 00:00:00","modify_time":"2024-01-01 12:00:00"}"#,
            #"{"campaign_id":7001035076276387841,"campaign_name":"Big","secondary_status":"CAMPAIGN_STATUS_DELETE","operation_status":"DISABLE"}"#,
            #"{"campaign_id":"7001035076276387843","campaign_name":"Paused","secondary_status":"CAMPAIGN_STATUS_DISABLE"}"#,
        ]
        server.router.add("GET", "/open_api/v1.3/campaign/get/") { TikTokFixture.page(records, request: $0) }
        let campaigns = try await makeTikTokClient(server).campaigns(account: account, session: session())
        await server.stop()
        XCTAssertEqual(campaigns.map(\.id), ["123456789", "7001035076276387841", "7001035076276387843"])
        XCTAssertEqual(campaigns.map(\.isDeleted), [false, true, false])
        XCTAssertEqual(campaigns[0].name, "Test Campaign")
        XCTAssertEqual(campaigns[0].updatedAt, "2024-01-01 12:00:00")
        XCTAssertEqual(campaigns[2].status, "CAMPAIGN_STATUS_DISABLE")
        let query = server.requests[0].query
        XCTAssertEqual(query["filtering"], #"{"secondary_status":"CAMPAIGN_STATUS_ALL"}"#)
        XCTAssertEqual(query["advertiser_id"], "7001035076276387841")
        XCTAssertEqual(query["page_size"], "1000")
    }

    func testPaginationAtZeroOneFullAndFullPlusOne() async throws {
        for (count, expectedRequests) in [(0, 1), (1, 1), (3, 1), (4, 2), (7, 3)] {
            let server = try FixtureServer()
            let items = (0..<count).map {
                #"{"ad_id":\#(7_001_035_076_276_387_000 + $0),"ad_name":"ad \#($0)","adgroup_id":"9","campaign_id":"8","secondary_status":"AD_STATUS_DELIVERY_OK"}"#
            }
            server.router.add("GET", "/open_api/v1.3/ad/get/") { TikTokFixture.page(items, request: $0) }
            let ads = try await makeTikTokClient(server, pageSize: 3).ads(account: account, session: session())
            await server.stop()
            XCTAssertEqual(ads.count, count, "count \(count)")
            XCTAssertEqual(Set(ads.map(\.id)).count, count)
            XCTAssertEqual(ads.first?.parentId, count > 0 ? "9" : nil)
            XCTAssertEqual(server.requests.count, expectedRequests, "requests for \(count) items")
            XCTAssertEqual(server.requests.map { $0.query["page"] }, (1...expectedRequests).map { String($0) })
            XCTAssertEqual(server.requests[0].query["filtering"], #"{"secondary_status":"AD_STATUS_ALL"}"#)
        }
    }

    func testReferenceReportNormalizesMoneyDashesAndDates() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/report/integrated/get/") { _ in
            // ad-apis.md A4 literal, plus a row with "-" and an id above 2^53.
            .json(
                #"{"code":0,"message":"ok","data":{"list":[{"dimensions":{"stat_time_day":"2024-09-03 00:00:00","ad_id":"11111111"},"metrics":{"spend":"20.00","impressions":"5830","clicks":"69","conversion":"0","cost_per_conversion":"0.00","total_purchase_value":"0.00"}},{"dimensions":{"stat_time_day":"2024-09-04 00:00:00","ad_id":7001035076276387841},"metrics":{"spend":"0.10","impressions":"-","clicks":"-","conversion":"1.5","cost_per_conversion":"-","total_purchase_value":"-"}}],"page_info":{"total_number":2,"page":1,"page_size":1000,"total_page":1}}}"#
            )
        }
        let window = DateWindow(first: date("2024-09-03"), last: date("2024-09-04"))
        let rows = try await makeTikTokClient(server).dailyMetrics(
            .ad, account: account, window: window, session: session())
        await server.stop()
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(
            rows[0],
            DailyMetric(
                platform: .tiktok, accountId: account.id, level: .ad, entityId: "11111111", date: date("2024-09-03"),
                currency: "USD", spend: Decimal(string: "20.00")!, impressions: 5830, clicks: 69, conversions: 0,
                conversionValue: 0))
        XCTAssertEqual(rows[1].entityId, "7001035076276387841")
        XCTAssertEqual(rows[1].spend, Decimal(string: "0.1")!)
        XCTAssertNil(rows[1].impressions)
        XCTAssertNil(rows[1].conversionValue)
        XCTAssertEqual(rows[1].conversions, Decimal(string: "1.5")!)
        let query = server.requests[0].query
        XCTAssertEqual(query["data_level"], "AUCTION_AD")
        XCTAssertEqual(query["dimensions"], #"["ad_id","stat_time_day"]"#)
        XCTAssertEqual(query["start_date"], "2024-09-03")
        XCTAssertEqual(query["end_date"], "2024-09-04")
        XCTAssertEqual(query["service_type"], "AUCTION")
        XCTAssertEqual(query["report_type"], "BASIC")
    }

    func testReportWindowsSplitAt30DaysAcrossMonthEnds() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/report/integrated/get/") { TikTokFixture.page([], request: $0) }
        let window = DateWindow(first: date("2024-01-20"), last: date("2024-03-31"))
        _ = try await makeTikTokClient(server).dailyMetrics(
            .campaign, account: account, window: window, session: session())
        await server.stop()
        let ranges = server.requests.map { "\($0.query["start_date"]!)..\($0.query["end_date"]!)" }
        XCTAssertEqual(ranges, ["2024-01-20..2024-02-18", "2024-02-19..2024-03-19", "2024-03-20..2024-03-31"])
        XCTAssertEqual(server.requests[0].query["data_level"], "AUCTION_CAMPAIGN")
    }

    func testQueryTooLargeHalvesTheWindowDownToWhatIsAccepted() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/report/integrated/get/") { request in
            let first = LocalDate(parsing: request.query["start_date"]!)!
            let last = LocalDate(parsing: request.query["end_date"]!)!
            if first.days(to: last) + 1 > 7 { return TikTokFixture.error(40067, "Your query is too large") }
            let rows = (0...first.days(to: last)).map { offset in
                #"{"dimensions":{"adgroup_id":"5","stat_time_day":"\#(first.adding(days: offset)) 00:00:00"},"metrics":{"spend":"1.00","impressions":"1","clicks":"1","conversion":"0","total_purchase_value":"0"}}"#
            }
            return TikTokFixture.page(rows, request: request)
        }
        let window = DateWindow(first: date("2024-02-01"), last: date("2024-03-01"))
        let rows = try await makeTikTokClient(server).dailyMetrics(
            .adGroup, account: account, window: window, session: session())
        await server.stop()
        XCTAssertEqual(rows.map(\.date), (0..<30).map { date("2024-02-01").adding(days: $0) })
        XCTAssertEqual(rows.reduce(Decimal(0)) { $0 + $1.spend }, 30)
        let accepted = server.requests.filter {
            LocalDate(parsing: $0.query["start_date"]!)!.days(to: LocalDate(parsing: $0.query["end_date"]!)!) < 7
        }
        // 30 -> 15 + 15 -> (8 -> 4 + 4) + 7 each: six windows of at most 7 days are accepted.
        XCTAssertEqual(accepted.count, 6)
        XCTAssertEqual(server.requests.count, 1 + 2 + 4 + 4)
    }

    func testQueryTooLargeOnOneDayIsPermanent() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/report/integrated/get/") { _ in
            TikTokFixture.error(40067, "Your query is too large")
        }
        let client = makeTikTokClient(server)
        let window = DateWindow(first: date("2024-02-01"), last: date("2024-02-02"))
        let error = await expectPlatformError {
            _ = try await client.dailyMetrics(.ad, account: self.account, window: window, session: self.session())
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .permanent)
        XCTAssertEqual(error?.apiCode, "40067")
        XCTAssertEqual(server.requests.count, 2)  // the 2-day window, then its first day fails for good
    }

    func testExpiredTokenIsRefreshedOnceAndTheCallSucceeds() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/campaign/get/") { request in
            request.headers["Access-Token"] == "tt-fresh"
                ? TikTokFixture.page([#"{"campaign_id":"1","campaign_name":"c"}"#], request: request)
                : TikTokFixture.error(40102, "Access token has expired")
        }
        server.router.add("POST", "/open_api/v1.3/oauth2/refresh_token/") { _ in
            TikTokFixture.envelope(
                #"{"access_token":"tt-fresh","refresh_token":"tt-refresh-2","access_token_expire_in":86400,"refresh_token_expire_in":31536000}"#
            )
        }
        let persisted = LockedBox<[OAuthTokens]>([])
        let session = TokenSession(tokens: OAuthTokens(accessToken: token, refreshToken: "tt-refresh-1")) { tokens in
            persisted.withLock { $0.append(tokens) }
        }
        let campaigns = try await makeTikTokClient(server).campaigns(account: account, session: session)
        await server.stop()
        XCTAssertEqual(campaigns.map(\.id), ["1"])
        XCTAssertEqual(persisted.current.map(\.accessToken), ["tt-fresh"])
        XCTAssertEqual(persisted.current.first?.refreshToken, "tt-refresh-2")
        XCTAssertNotNil(persisted.current.first?.accessTokenExpiresAt)
        let refreshBody = try JSONValue.parse(server.requests(path: "/open_api/v1.3/oauth2/refresh_token/")[0].body)
        XCTAssertEqual(refreshBody["refresh_token"], .string("tt-refresh-1"))
        XCTAssertEqual(refreshBody["grant_type"], .string("refresh_token"))
        XCTAssertEqual(server.requests.map(\.method), ["GET", "POST", "GET"])
    }

    func testRevokedTokenNeedsReauthorizationWithoutRetries() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/campaign/get/") { _ in
            TikTokFixture.error(40105, "Access token is invalid: tt-access-token-SECRET-1")
        }
        let client = makeTikTokClient(server)
        let error = await expectPlatformError {
            _ = try await client.campaigns(account: self.account, session: self.session(refresh: "tt-refresh-1"))
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .reauthorizationRequired)
        XCTAssertEqual(server.requests.count, 1)
        XCTAssertFalse("\(error!)".contains(token))
        XCTAssertTrue("\(error!)".contains("/open_api/v1.3/campaign/get/"))
        XCTAssertTrue("\(error!)".contains("40105"))
    }

    func testExpiredTokenWithoutRefreshTokenNeedsReauthorization() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/ad/get/") { _ in TikTokFixture.error(40102, "expired") }
        let client = makeTikTokClient(server)
        let error = await expectPlatformError {
            _ = try await client.ads(account: self.account, session: self.session())
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .reauthorizationRequired)
        XCTAssertEqual(server.requests.count, 1)
    }

    func testFaultsMapToErrorClassesWithoutLeakingSecrets() async throws {
        let server = try FixtureServer()
        let mode = LockedBox("")
        server.router.add("GET", "/open_api/v1.3/oauth2/advertiser/get/") { _ in
            switch mode.current {
            case "40100": return TikTokFixture.error(40100, "Too many requests")
            case "61000": return TikTokFixture.error(61000, "Advertiser (1)'s QPS (21) reaches QPS limit 20")
            case "50000": return TikTokFixture.error(50000, "System error")
            case "51004": return TikTokFixture.error(51004, "timeout")
            case "40002": return TikTokFixture.error(40002, "secret tt-app-secret-XYZ is wrong")
            case "40130": return TikTokFixture.error(40130, "scope")
            case "40114": return TikTokFixture.error(40114, "advertiser logout")
            case "http503": return .text("unavailable", status: 503)
            case "http429":
                var response = HTTPResponse.text("slow down", status: 429)
                response.headers["Retry-After"] = "7"
                return response
            case "malformed": return .json(#"{"code":0,"message":"OK","data":{"list":"nope"}}"#)
            case "notjson": return .text("<html>oops</html>")
            case "truncated":
                var response = TikTokFixture.envelope(#"{"list":[]}"#)
                response.truncatedBodyLength = 10
                return response
            case "nocode": return .json(#"{"message":"OK"}"#)
            default: return TikTokFixture.envelope(#"{"list":[]}"#)
            }
        }
        let client = makeTikTokClient(server)
        let expected: [(String, PlatformError.Kind)] = [
            ("40100", .rateLimited(retryAfter: nil)), ("61000", .rateLimited(retryAfter: nil)),
            ("50000", .transient), ("51004", .transient), ("40002", .permanent),
            ("40130", .reauthorizationRequired), ("40114", .reauthorizationRequired), ("http503", .transient),
            ("http429", .rateLimited(retryAfter: .seconds(7))), ("malformed", .malformedResponse),
            ("notjson", .transient), ("truncated", .transient), ("nocode", .malformedResponse),
        ]
        // Damaged responses (wrong shape, not JSON, cut short) are tried 3 times on the request; answers are not.
        let damaged: Set<String> = ["malformed", "notjson", "truncated", "nocode"]
        for (fault, kind) in expected {
            mode.withLock { $0 = fault }
            let error = await expectPlatformError {
                _ = try await client.adAccounts(session: self.session(refresh: "tt-refresh-SECRET"))
            }
            XCTAssertEqual(error?.kind, kind, fault)
            let text = "\(error.map { "\($0)" } ?? "")"
            for secret in ["tt-app-secret-XYZ", token, "tt-refresh-SECRET"] {
                XCTAssertFalse(text.contains(secret), "\(fault) leaked a secret: \(text)")
            }
            XCTAssertTrue(text.contains("/open_api/v1.3/oauth2/advertiser/get/"), text)
        }
        await server.stop()
        XCTAssertEqual(
            server.requests.count, expected.count + 2 * damaged.count,
            "one request per well-formed answer, three per damaged response")
    }

    func testTimeoutIsTransient() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/open_api/v1.3/oauth2/advertiser/get/") { _ in
            try? await Task.sleep(for: .seconds(3))
            return TikTokFixture.envelope(#"{"list":[]}"#)
        }
        let client = TikTokClient(
            configuration: TikTokConfiguration(
                baseURL: server.tiktokBase, appId: "a", secret: "tt-app-secret-XYZ", requestTimeout: .milliseconds(300))
        )
        let error = await expectPlatformError { _ = try await client.adAccounts(session: self.session()) }
        await server.stop()
        XCTAssertEqual(error?.kind, .transient)
        XCTAssertFalse("\(error!)".contains("tt-app-secret-XYZ"))
    }

    func testConnectionRefusedIsTransient() async throws {
        let server = try FixtureServer()
        let base = server.tiktokBase
        await server.stop()
        let client = TikTokClient(configuration: TikTokConfiguration(baseURL: base, appId: "a", secret: "s3cr3t-value"))
        let error = await expectPlatformError { _ = try await client.adAccounts(session: self.session()) }
        XCTAssertEqual(error?.kind, .transient)
        XCTAssertFalse("\(error!)".contains("s3cr3t-value"))
    }
}
