import Foundation
import HTTP
import XCTest

@testable import Platforms

/// Snapchat client over real HTTP against scripted fixture routes (literal examples from the API reference).
final class SnapchatClientTests: XCTestCase {
    private let account = AdAccount(
        platform: .snapchat, id: "8adc3db7-8148-4fbf-999c-8d2266369d74", name: "Acme", currency: "EUR",
        timeZone: "America/Los_Angeles")
    private let token = "snap-access-SECRET-1"

    private func session(refresh: String? = "snap-refresh-SECRET-1", expiresIn: TimeInterval? = 1800) -> TokenSession {
        TokenSession(
            tokens: OAuthTokens(
                accessToken: token, refreshToken: refresh,
                accessTokenExpiresAt: expiresIn.map { Date().addingTimeInterval($0) }))
    }

    func testCodeExchangeSendsFormAndHonoursExpiresIn() async throws {
        let server = try FixtureServer()
        server.router.add("POST", "/login/oauth2/access_token") { _ in SnapFixture.token("snap-new", expiresIn: 1800) }
        let before = Date()
        let tokens = try await makeSnapClient(server).exchangeAuthorizationCode("snap-auth-0")
        await server.stop()
        XCTAssertEqual(tokens.accessToken, "snap-new")
        XCTAssertEqual(tokens.refreshToken, "snap-refresh-2")
        XCTAssertEqual(tokens.scope, "snapchat-marketing-api")
        let expiry = try XCTUnwrap(tokens.accessTokenExpiresAt).timeIntervalSince(before)
        XCTAssertGreaterThanOrEqual(expiry, 1800)
        XCTAssertLessThan(expiry, 1810)
        let request = server.requests[0]
        XCTAssertEqual(request.headers["content-type"], "application/x-www-form-urlencoded")
        let form = URLEncoding.decodeForm(request.body)
        XCTAssertEqual(form["grant_type"], "authorization_code")
        XCTAssertEqual(form["code"], "snap-auth-0")
        XCTAssertEqual(form["client_id"], "snap-client")
        XCTAssertEqual(form["client_secret"], "snap-client-secret-XYZ")
        XCTAssertEqual(form["redirect_uri"], "https://example.com/cb")
    }

    func testOrganizationsAndAdAccounts() async throws {
        let server = try FixtureServer()
        let base = server.base
        server.router.add("GET", "/v1/me/organizations") { request in
            SnapFixture.page(
                [#"{"id":"org-1","name":"Org","type":"ENTERPRISE","state":"ACTIVE"}"#], root: "organizations",
                item: "organization", request: request, base: base)
        }
        server.router.add("GET", "/v1/organizations/:org/adaccounts") { request in
            SnapFixture.page(
                [
                    #"{"id":"acc-1","name":"A","status":"ACTIVE","organization_id":"org-1","currency":"EUR","timezone":"Europe/Paris","updated_at":"2024-01-15T10:00:00.000Z"}"#,
                    #"{"id":"acc-2","name":"B","status":"ACTIVE","organization_id":"org-1","currency":"JPY","timezone":"Asia/Tokyo"}"#,
                ], root: "adaccounts", item: "adaccount", request: request, base: base)
        }
        let accounts = try await makeSnapClient(server).adAccounts(session: session())
        await server.stop()
        XCTAssertEqual(accounts.map(\.id), ["acc-1", "acc-2"])
        XCTAssertEqual(accounts.map(\.currency), ["EUR", "JPY"])
        XCTAssertEqual(accounts.map(\.timeZone), ["Europe/Paris", "Asia/Tokyo"])
        XCTAssertEqual(accounts[0].organizationId, "org-1")
        XCTAssertEqual(server.requests.map(\.path), ["/v1/me/organizations", "/v1/organizations/org-1/adaccounts"])
        XCTAssertEqual(server.requests[0].headers["authorization"], "Bearer \(token)")
    }

    func testPaginationAtZeroOneFullAndFullPlusOne() async throws {
        for (count, expectedRequests) in [(0, 1), (1, 1), (50, 1), (51, 2), (120, 3)] {
            let server = try FixtureServer()
            let base = server.base
            let items = (0..<count).map {
                #"{"id":"sq-\#($0)","name":"squad \#($0)","campaign_id":"c-1","status":"\#($0 % 3 == 0 ? "PAUSED" : "ACTIVE")"}"#
            }
            server.router.add("GET", "/v1/adaccounts/:id/adsquads") { request in
                SnapFixture.page(items, root: "adsquads", item: "adsquad", request: request, base: base)
            }
            let squads = try await makeSnapClient(server, pageSize: 50).adGroups(account: account, session: session())
            await server.stop()
            XCTAssertEqual(squads.map(\.id), (0..<count).map { "sq-\($0)" }, "count \(count)")
            XCTAssertEqual(server.requests.count, expectedRequests, "requests for \(count)")
            XCTAssertEqual(server.requests.first?.query["limit"], "50")
            XCTAssertEqual(squads.first?.parentId, count > 0 ? "c-1" : nil)
        }
    }

    func testPausedAndDeletedEntitiesAreKept() async throws {
        let server = try FixtureServer()
        let base = server.base
        server.router.add("GET", "/v1/adaccounts/:id/ads") { request in
            SnapFixture.page(
                [
                    #"{"id":"ad-1","name":"a","ad_squad_id":"sq-1","status":"ACTIVE","review_status":"APPROVED","updated_at":"2024-01-15T10:00:00.000Z"}"#,
                    #"{"id":"ad-2","name":"b","ad_squad_id":"sq-1","status":"PAUSED"}"#,
                    #"{"id":"ad-3","name":"c","ad_squad_id":"sq-2","status":"DELETED"}"#,
                ], root: "ads", item: "ad", request: request, base: base)
        }
        let ads = try await makeSnapClient(server).ads(account: account, session: session())
        await server.stop()
        XCTAssertEqual(ads.map(\.status), ["ACTIVE", "PAUSED", "DELETED"])
        XCTAssertEqual(ads.map(\.isDeleted), [false, false, true])
        XCTAssertEqual(ads.map(\.parentId), ["sq-1", "sq-1", "sq-2"])
        XCTAssertEqual(server.requests[0].path, "/v1/adaccounts/\(account.id)/ads")
    }

    func testReferenceStatsResponseWithMicroCurrency() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/v1/adaccounts/:id/stats") { _ in
            // ad-apis.md B4 literal.
            .json(
                #"{"request_status":"SUCCESS","request_id":"f2cba857","timeseries_stats":[{"sub_request_status":"SUCCESS","timeseries_stat":{"id":"417d0269-...","type":"AD","granularity":"DAY","start_time":"2022-06-25T00:00:00.000-07:00","end_time":"2022-06-29T00:00:00.000-07:00","finalized_data_end_time":"2022-06-30T00:00:00.000-07:00","timeseries":[{"start_time":"2022-06-25T00:00:00.000-07:00","end_time":"2022-06-26T00:00:00.000-07:00","stats":{"impressions":0,"swipes":0,"spend":0,"conversion_purchases":0}}]}}]}"#
            )
        }
        let window = DateWindow(first: date("2022-06-25"), last: date("2022-06-28"))
        let rows = try await makeSnapClient(server).dailyMetrics(
            .ad, account: account, window: window, session: session())
        await server.stop()
        XCTAssertEqual(
            rows,
            [
                DailyMetric(
                    platform: .snapchat, accountId: account.id, level: .ad, entityId: "417d0269-...",
                    date: date("2022-06-25"), currency: "EUR", spend: 0, impressions: 0, clicks: 0, conversions: 0,
                    conversionValue: nil, isFinal: true)
            ])
        let query = server.requests[0].query
        XCTAssertEqual(query["start_time"], "2022-06-25T00:00:00-07:00")
        XCTAssertEqual(query["end_time"], "2022-06-29T00:00:00-07:00")
        XCTAssertEqual(query["breakdown"], "ad")
        XCTAssertEqual(query["swipe_up_attribution_window"], "28_DAY")
        XCTAssertEqual(query["view_attribution_window"], "1_DAY")
        XCTAssertEqual(query["fields"], "impressions,swipes,spend,conversion_purchases,conversion_purchases_value")
    }

    func testBreakdownStatsAcrossDSTAndWindowLimit() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/v1/adaccounts/:id/stats") { request in
            let zone = TimeZone(identifier: "America/Los_Angeles")!
            let start = LocalDate(parsing: request.query["start_time"]!)!
            let end = LocalDate(parsing: request.query["end_time"]!)!
            let days = (0..<start.days(to: end)).map { offset -> String in
                let day = start.adding(days: offset)
                return
                    #"{"start_time":"\#(day.midnightISO8601(in: zone))","end_time":"\#(day.adding(days: 1).midnightISO8601(in: zone))","stats":{"impressions":10,"swipes":2,"spend":1234567,"conversion_purchases":1,"conversion_purchases_value":9990000}}"#
            }
            let entity =
                #"{"id":"camp-1","type":"CAMPAIGN","granularity":"DAY","timeseries":[\#(days.joined(separator: ","))]}"#
            return .json(
                #"{"request_status":"SUCCESS","request_id":"r","timeseries_stats":[{"sub_request_status":"SUCCESS","timeseries_stat":{"id":"acc","type":"AD_ACCOUNT","granularity":"DAY","breakdown_stats":{"campaign":[\#(entity)]}}}]}"#
            )
        }
        let window = DateWindow(first: date("2024-02-15"), last: date("2024-04-10"))
        let rows = try await makeSnapClient(server).dailyMetrics(
            .campaign, account: account, window: window, session: session())
        await server.stop()
        XCTAssertEqual(rows.count, 56)
        XCTAssertEqual(rows.map(\.date), (0..<56).map { date("2024-02-15").adding(days: $0) })
        XCTAssertEqual(rows[0].spend, Decimal(string: "1.234567")!)
        XCTAssertEqual(rows[0].conversionValue, Decimal(string: "9.99")!)
        XCTAssertEqual(rows[0].clicks, 2)
        XCTAssertEqual(rows.reduce(Decimal(0)) { $0 + $1.spend }, Decimal(string: "69.135752")!)
        let windows = server.requests.map { "\($0.query["start_time"]!) \($0.query["end_time"]!)" }
        XCTAssertEqual(
            windows,
            [
                "2024-02-15T00:00:00-08:00 2024-03-17T00:00:00-07:00",
                "2024-03-17T00:00:00-07:00 2024-04-11T00:00:00-07:00",
            ])
        XCTAssertEqual(server.requests[0].query["breakdown"], "campaign")
    }

    func testExpiredTokenIsRefreshedOnceAndTheCallSucceeds() async throws {
        let server = try FixtureServer()
        let base = server.base
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { request in
            guard request.headers["Authorization"] == "Bearer snap-fresh" else {
                return SnapFixture.error(401, code: "E0001", message: "Token expired")
            }
            return SnapFixture.page(
                [#"{"id":"c-1","name":"c","status":"ACTIVE"}"#], root: "campaigns",
                item: "campaign", request: request, base: base)
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in SnapFixture.token("snap-fresh") }
        let persisted = LockedBox<[OAuthTokens]>([])
        let session = TokenSession(
            tokens: OAuthTokens(
                accessToken: token, refreshToken: "snap-refresh-SECRET-1",
                accessTokenExpiresAt: Date().addingTimeInterval(1000))
        ) { tokens in persisted.withLock { $0.append(tokens) } }
        let campaigns = try await makeSnapClient(server).campaigns(account: account, session: session)
        await server.stop()
        XCTAssertEqual(campaigns.map(\.id), ["c-1"])
        XCTAssertEqual(server.requests.map(\.method), ["GET", "POST", "GET"])
        let form = URLEncoding.decodeForm(server.requests[1].body)
        XCTAssertEqual(form["grant_type"], "refresh_token")
        XCTAssertEqual(form["refresh_token"], "snap-refresh-SECRET-1")
        XCTAssertEqual(persisted.current.map(\.accessToken), ["snap-fresh"])
        XCTAssertEqual(persisted.current.first?.refreshToken, "snap-refresh-2")
        let refreshCount = await session.refreshCount
        XCTAssertEqual(refreshCount, 1)
    }

    func testTokenPastExpiresInIsRefreshedBeforeTheCall() async throws {
        let server = try FixtureServer()
        let base = server.base
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { request in
            SnapFixture.page([], root: "campaigns", item: "campaign", request: request, base: base)
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in SnapFixture.token("snap-fresh") }
        _ = try await makeSnapClient(server).campaigns(account: account, session: session(expiresIn: -5))
        await server.stop()
        XCTAssertEqual(server.requests.map(\.method), ["POST", "GET"])
        XCTAssertEqual(server.requests[1].headers["authorization"], "Bearer snap-fresh")
    }

    func testConcurrentCallsShareOneRefresh() async throws {
        let server = try FixtureServer()
        let base = server.base
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { request in
            guard request.headers["Authorization"] == "Bearer snap-fresh" else {
                return SnapFixture.error(401, code: "E0001", message: "Token expired")
            }
            return SnapFixture.page([], root: "campaigns", item: "campaign", request: request, base: base)
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in
            try? await Task.sleep(for: .milliseconds(100))
            return SnapFixture.token("snap-fresh")
        }
        let client = makeSnapClient(server)
        let shared = session()
        let account = self.account
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 {
                group.addTask { _ = try await client.campaigns(account: account, session: shared) }
            }
            try await group.waitForAll()
        }
        await server.stop()
        XCTAssertEqual(server.requests.filter { $0.method == "POST" }.count, 1)
    }

    func testRevokedTokenNeedsReauthorizationWithoutRetryStorm() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { _ in
            SnapFixture.error(401, code: "E0001", message: "Invalid token snap-access-SECRET-1")
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in
            .json(#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#, status: 400)
        }
        let client = makeSnapClient(server)
        let error = await expectPlatformError {
            _ = try await client.campaigns(account: self.account, session: self.session())
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .reauthorizationRequired)
        XCTAssertEqual(error?.apiCode, "invalid_grant")
        XCTAssertEqual(server.requests.map(\.method), ["GET", "POST"])
        let text = "\(error!)"
        for secret in [token, "snap-refresh-SECRET-1", "snap-client-secret-XYZ"] {
            XCTAssertFalse(text.contains(secret))
        }
    }

    func testUnauthorizedAgainAfterRefreshNeedsReauthorization() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { _ in
            SnapFixture.error(401, code: "E0001", message: "Unauthorized snap-fresh")
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in SnapFixture.token("snap-fresh") }
        let client = makeSnapClient(server)
        let error = await expectPlatformError {
            _ = try await client.campaigns(account: self.account, session: self.session())
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .reauthorizationRequired)
        XCTAssertEqual(server.requests.map(\.method), ["GET", "POST", "GET"])
        XCTAssertFalse("\(error!)".contains("snap-fresh"))
    }

    func testFaultsMapToErrorClassesWithoutLeakingSecrets() async throws {
        let server = try FixtureServer()
        let mode = LockedBox("")
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { _ in
            switch mode.current {
            case "429":
                var response = SnapFixture.error(429, code: "E1000", message: "Too many requests")
                response.headers["X-Rate-Limit-Limit"] = "100"
                response.headers["X-Rate-Limit-Remaining"] = "0"
                response.headers["X-Rate-Limit-Reset"] = "4"
                return response
            case "429retry":
                var response = SnapFixture.error(429, code: "E1000", message: "Too many requests")
                response.headers["Retry-After"] = "2"
                return response
            case "500": return SnapFixture.error(500, code: "E5000", message: "Internal")
            case "503": return .text("unavailable", status: 503)
            case "400": return SnapFixture.error(400, code: "E1008", message: "end must be after start")
            case "403":
                return SnapFixture.error(
                    403, code: "E3002", message: "None of the requested actions [READ_AD] can be authorized")
            case "404": return SnapFixture.error(404, code: "E3003", message: "Resource can not be found")
            case "malformed": return .json(#"{"request_status":"SUCCESS","campaigns":{"a":1}}"#)
            case "badjson": return .json(#"{"request_status":"SUCC"#.replacingOccurrences(of: "SUCC", with: "SU\u{01}"))
            case "truncated":
                var response = HTTPResponse.json(#"{"request_status":"SUCCESS","campaigns":[]}"#)
                response.truncatedBodyLength = 5
                return response
            case "error-status": return .json(#"{"request_status":"ERROR","debug_message":"nope"}"#)
            default: return .json("{}")
            }
        }
        let client = makeSnapClient(server)
        let expected: [(String, PlatformError.Kind)] = [
            ("429", .rateLimited(retryAfter: .seconds(4))), ("429retry", .rateLimited(retryAfter: .seconds(2))),
            ("500", .transient), ("503", .transient), ("400", .permanent), ("403", .permanent), ("404", .permanent),
            ("malformed", .malformedResponse), ("badjson", .transient), ("truncated", .transient),
            ("error-status", .permanent),
        ]
        // Damaged responses (wrong shape, not JSON, cut short) are tried 3 times on the request; answers are not.
        let damaged: Set<String> = ["malformed", "badjson", "truncated"]
        for (fault, kind) in expected {
            mode.withLock { $0 = fault }
            let error = await expectPlatformError {
                _ = try await client.campaigns(account: self.account, session: self.session())
            }
            XCTAssertEqual(error?.kind, kind, fault)
            let text = error.map { "\($0)" } ?? ""
            XCTAssertTrue(text.contains("/v1/adaccounts/\(account.id)/campaigns"), text)
            for secret in [token, "snap-refresh-SECRET-1", "snap-client-secret-XYZ"] {
                XCTAssertFalse(text.contains(secret), "\(fault) leaked: \(text)")
            }
        }
        await server.stop()
        XCTAssertEqual(
            server.requests.count, expected.count + 2 * damaged.count,
            "one request per well-formed answer, three per damaged response")
    }

    func testNextLinkToAnotherHostIsRefused() async throws {
        let server = try FixtureServer()
        server.router.add("GET", "/v1/adaccounts/:id/campaigns") { _ in
            .json(
                #"{"request_status":"SUCCESS","campaigns":[],"paging":{"next_link":"https://evil.example.com/v1/x?cursor=1"}}"#
            )
        }
        let client = makeSnapClient(server)
        let error = await expectPlatformError {
            _ = try await client.campaigns(account: self.account, session: self.session())
        }
        await server.stop()
        XCTAssertEqual(error?.kind, .permanent, "a link off the configured host is refused, not retried")
        XCTAssertEqual(server.requests.count, 1)
    }
}

final class SnapStatsParsingTests: XCTestCase {
    private let account = AdAccount(platform: .snapchat, id: "acc", name: "a", currency: "USD", timeZone: "UTC")

    private func rows(_ json: String) throws -> [DailyMetric] {
        try SnapchatClient.statsRows(
            JSONValue.parse(json), level: .ad, breakdown: "ad", account: account, endpoint: "/v1/adaccounts/acc/stats")
    }

    func testAccountSeriesWithoutBreakdownGivesNoEntityRows() throws {
        let json =
            #"{"request_status":"SUCCESS","timeseries_stats":[{"sub_request_status":"SUCCESS","timeseries_stat":{"id":"acc","type":"AD_ACCOUNT","timeseries":[{"start_time":"2024-01-01T00:00:00.000Z","stats":{"spend":1}}]}}]}"#
        XCTAssertEqual(try rows(json), [])
        XCTAssertEqual(try rows(#"{"timeseries_stats":[{"timeseries_stat":{"breakdown_stats":{}}}]}"#), [])
    }

    /// A day is final when it ends at or before `finalized_data_end_time` (account-local midnight); without the
    /// field Snap says nothing and the writer falls back to the lookback.
    func testFinalizedDataEndTimeMarksFinalDays() throws {
        func json(_ finalized: String) -> String {
            #"{"timeseries_stats":[{"sub_request_status":"SUCCESS","timeseries_stat":{"type":"AD_ACCOUNT","#
                + finalized
                + #""breakdown_stats":{"ad":[{"id":"a","timeseries":["#
                + #"{"start_time":"2024-03-08T00:00:00.000-08:00","stats":{"spend":1000000}},"#
                + #"{"start_time":"2024-03-09T00:00:00.000-08:00","stats":{"spend":1000000}},"#
                + #"{"start_time":"2024-03-10T00:00:00.000-08:00","stats":{"spend":1000000}}]}]}}}]}"#
        }
        let marked = try rows(json(#""finalized_data_end_time":"2024-03-10T00:00:00.000-08:00","#))
        XCTAssertEqual(marked.map(\.isFinal), [true, true, false])
        XCTAssertEqual(try rows(json("")).map(\.isFinal), [nil, nil, nil])
        XCTAssertThrowsError(try rows(json(#""finalized_data_end_time":17,"#))) { error in
            XCTAssertEqual((error as? PlatformError)?.kind, .malformedResponse)
        }
    }

    func testFailedSubRequestAndBadShapesAreErrors() {
        XCTAssertThrowsError(try rows(#"{"timeseries_stats":[{"sub_request_status":"ERROR"}]}"#)) { error in
            XCTAssertEqual((error as? PlatformError)?.kind, .permanent)
        }
        for bad in [
            #"{"x":1}"#, #"{"timeseries_stats":[{}]}"#,
            #"{"timeseries_stats":[{"timeseries_stat":{"breakdown_stats":{"ad":{}}}}]}"#,
            #"{"timeseries_stats":[{"timeseries_stat":{"breakdown_stats":{"ad":[{"id":"a","timeseries":[{"start_time":"x"}]}]}}}]}"#,
            #"{"timeseries_stats":[{"timeseries_stat":{"breakdown_stats":{"ad":[{"id":"a","timeseries":[{"start_time":"2024-01-01T00:00:00Z","stats":{"spend":"lots"}}]}]}}}]}"#,
        ] {
            XCTAssertThrowsError(try rows(bad), bad) { error in
                XCTAssertEqual((error as? PlatformError)?.kind, .malformedResponse, bad)
            }
        }
    }
}
