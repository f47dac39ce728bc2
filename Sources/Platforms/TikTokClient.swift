import Foundation

/// Settings of the TikTok Marketing API client; every field has the production default except the credentials.
public struct TikTokConfiguration: Sendable {
    /// API root, ending in `/open_api/v1.3/`. Default: `https://business-api.tiktok.com/open_api/v1.3/`.
    public var baseURL: URL
    /// The developer app id.
    public var appId: String
    /// The developer app secret; never logged, scrubbed from every error message.
    public var secret: String
    /// Records per page for lists and reports, at most 1000. Default 1000.
    public var pageSize: Int
    /// Longest DAY report window in days (TikTok's limit is 30). Default 30.
    public var maxReportDays: Int
    /// Per-request timeout. Default 30 s.
    public var requestTimeout: Duration
    /// Tries of one GET whose response is damaged (not JSON, cut short, not the documented shape), 1...10, before
    /// the error is thrown for the job to retry. Default 3.
    public var responseTries: Int
    /// Wait before the second try of a damaged response, doubled before each later try (0...30 s). Default 250 ms.
    public var responseRetryDelay: Duration

    public init(
        baseURL: URL = URL(string: "https://business-api.tiktok.com/open_api/v1.3/")!,
        appId: String, secret: String, pageSize: Int = 1000, maxReportDays: Int = 30,
        requestTimeout: Duration = .seconds(30), responseTries: Int = 3,
        responseRetryDelay: Duration = .milliseconds(250)
    ) {
        self.baseURL = baseURL
        self.appId = appId
        self.secret = secret
        self.pageSize = max(1, min(pageSize, 1000))
        self.maxReportDays = max(1, min(maxReportDays, 30))
        self.requestTimeout = requestTimeout
        self.responseTries = max(1, min(responseTries, 10))
        self.responseRetryDelay = max(.zero, min(responseRetryDelay, .seconds(30)))
    }
}

/// TikTok Marketing API v1.3 client: OAuth, advertisers, campaigns, ad groups, ads and daily integrated reports.
///
/// Reads only (GET), apart from the two OAuth token POSTs. Every request for an advertiser first passes the rate
/// limiter. Report windows are split to 30 days and halved on code 40067 ("query too large") down to one day.
public struct TikTokClient: AdPlatformClient {
    public let platform = AdPlatform.tiktok
    public let configuration: TikTokConfiguration
    private let transport: any PlatformTransport
    private let rateLimiter: any RequestRateLimiter
    private let logger: PlatformLogger

    /// The metrics requested from `report/integrated/get/`, mapped onto `DailyMetric`.
    static let reportMetrics = ["spend", "impressions", "clicks", "conversion", "total_purchase_value"]

    public init(
        configuration: TikTokConfiguration, transport: any PlatformTransport = URLSessionTransport(),
        rateLimiter: any RequestRateLimiter = UnlimitedRateLimiter(), logger: PlatformLogger = .disabled
    ) {
        self.configuration = configuration
        self.transport = transport
        self.rateLimiter = rateLimiter
        self.logger = logger
    }

    // MARK: OAuth

    public func exchangeAuthorizationCode(_ code: String) async throws -> OAuthTokens {
        let body = JSONValue.object([
            ("app_id", .string(configuration.appId)), ("secret", .string(configuration.secret)),
            ("auth_code", .string(code)),
        ])
        return try await tokenRequest(path: "oauth2/access_token/", body: body, secrets: [code])
    }

    public func refreshTokens(_ refreshToken: String) async throws -> OAuthTokens {
        let body = JSONValue.object([
            ("app_id", .string(configuration.appId)), ("secret", .string(configuration.secret)),
            ("refresh_token", .string(refreshToken)), ("grant_type", .string("refresh_token")),
        ])
        return try await tokenRequest(path: "oauth2/refresh_token/", body: body, secrets: [refreshToken])
    }

    /// `POST /open_api/v1.3/oauth2/revoke_token/` with JSON `{app_id, secret, access_token}`: invalidates the
    /// advertiser grant ("The advertiser access token does not expire. If you want to invalidate the token, use
    /// /oauth2/revoke_token/", TikTok Marketing API authorization guide,
    /// https://business-api.tiktok.com/portal/docs?id=1738373164380162; the body as two independent third-party
    /// connectors send it, one citing TikTok's "Revoke a long-term access token" page,
    /// business-api.tiktok.com/portal/docs/revoke-a-long-term-access-token/v1.3, which our search index does not
    /// hold). A token TikTok already rejects (40104,
    /// 40105: empty, invalid or revoked) counts as revoked.
    public func revokeAccessToken(_ accessToken: String) async throws -> Bool {
        let path = "oauth2/revoke_token/"
        guard let url = QueryString.url(base: configuration.baseURL, path: path, query: []) else {
            throw PlatformError(.permanent, platform: .tiktok, endpoint: path, message: "invalid base URL")
        }
        let endpoint = QueryString.path(of: url)
        let body = JSONValue.object([
            ("app_id", .string(configuration.appId)), ("secret", .string(configuration.secret)),
            ("access_token", .string(accessToken)),
        ])
        let request = OAuthTokenRequest(url: url, contentType: "application/json", body: Array(body.jsonText.utf8))
        let response: TransportResponse
        do {
            response = try await transport.postToken(request, timeout: configuration.requestTimeout)
        } catch {
            throw Self.transportFailure(error, endpoint: endpoint)
        }
        do {
            _ = try envelopeData(
                response, endpoint: endpoint,
                scrubber: SecretScrubber(secrets: [configuration.secret, accessToken]))
        } catch let e as PlatformError where e.apiCode == "40104" || e.apiCode == "40105" {
            return true
        }
        return true
    }

    private func tokenRequest(path: String, body: JSONValue, secrets: [String]) async throws -> OAuthTokens {
        do {
            return try await postTokenRequest(path: path, body: body, secrets: secrets)
        } catch var error as PlatformError {
            error.fromTokenRequest = true
            throw error
        }
    }

    private func postTokenRequest(path: String, body: JSONValue, secrets: [String]) async throws -> OAuthTokens {
        guard let url = QueryString.url(base: configuration.baseURL, path: path, query: []) else {
            throw PlatformError(.permanent, platform: .tiktok, endpoint: path, message: "invalid base URL")
        }
        let endpoint = QueryString.path(of: url)
        let scrubber = SecretScrubber(secrets: [configuration.secret] + secrets)
        let request = OAuthTokenRequest(
            url: url, contentType: "application/json", body: Array(body.jsonText.utf8))
        let response: TransportResponse
        do {
            response = try await transport.postToken(request, timeout: configuration.requestTimeout)
        } catch {
            throw Self.transportFailure(error, endpoint: endpoint)
        }
        let data: JSONValue
        do {
            data = try envelopeData(response, endpoint: endpoint, scrubber: scrubber)
        } catch let error as PlatformError {
            // A rejected code or refresh token cannot be fixed by retrying: the user must authorize again.
            switch error.kind {
            case .permanent, .accessTokenExpired:
                var reauth = error
                reauth.kind = .reauthorizationRequired
                throw reauth
            default: throw error
            }
        }
        guard let access = data["access_token"]?.stringValue, !access.isEmpty else {
            throw PlatformError(
                .malformedResponse, platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                message: "token response without data.access_token")
        }
        let now = Date()
        func seconds(_ keys: [String]) -> Date? {
            for key in keys {
                if case .some(.some(let value)) = Values.int64(data[key]), value > 0 {
                    return now.addingTimeInterval(TimeInterval(value))
                }
            }
            return nil
        }
        let scope = data["scope"]?.arrayValue?.compactMap(\.idText).joined(separator: ",")
        return OAuthTokens(
            accessToken: access,
            refreshToken: data["refresh_token"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 },
            accessTokenExpiresAt: seconds(["access_token_expire_in", "expires_in"]),
            refreshTokenExpiresAt: seconds(["refresh_token_expire_in", "refresh_token_expires_in"]),
            grantedAccountIds: data["advertiser_ids"]?.arrayValue?.compactMap(\.idText) ?? [],
            scope: scope)
    }

    // MARK: Accounts and entities

    public func adAccounts(session: TokenSession) async throws -> [AdAccount] {
        let ids = try await get(
            "oauth2/advertiser/get/",
            query: [("app_id", configuration.appId), ("secret", configuration.secret)],
            accountId: nil, session: session
        ) { granted in
            guard let list = granted["list"]?.arrayValue else {
                throw malformed("oauth2/advertiser/get/", "data.list missing")
            }
            return try list.map { item -> String in
                guard let id = item["advertiser_id"]?.idText else {
                    throw malformed("oauth2/advertiser/get/", "advertiser_id missing")
                }
                return id
            }
        }
        var accounts: [AdAccount] = []
        var start = 0
        while start < ids.count {
            let batch = Array(ids[start..<min(start + 100, ids.count)])
            start += 100
            let fields = ["advertiser_id", "name", "currency", "timezone", "display_timezone", "status"]
            accounts += try await get(
                "advertiser/info/",
                query: [("advertiser_ids", QueryString.jsonArray(batch)), ("fields", QueryString.jsonArray(fields))],
                accountId: nil, session: session
            ) { info in
                try (info["list"]?.arrayValue ?? []).map { item in
                    guard let id = item["advertiser_id"]?.idText, let currency = item["currency"]?.stringValue else {
                        throw malformed("advertiser/info/", "advertiser_id or currency missing")
                    }
                    guard let zone = Self.ianaZone(item) else {
                        throw malformed("advertiser/info/", "advertiser \(id) has no usable timezone")
                    }
                    return AdAccount(
                        platform: .tiktok, id: id, name: item["name"]?.stringValue ?? "", currency: currency,
                        timeZone: zone, status: item["status"]?.stringValue)
                }
            }
        }
        return accounts
    }

    /// `display_timezone` is the IANA region the advertiser chose (e.g. America/Los_Angeles); `timezone` may be a
    /// fixed `Etc/GMT+8`. Prefer the first when Foundation knows it.
    static func ianaZone(_ item: JSONValue) -> String? {
        for key in ["display_timezone", "timezone"] {
            if let name = item[key]?.stringValue, !name.isEmpty, TimeZone(identifier: name) != nil { return name }
        }
        return nil
    }

    public func entities(_ level: ReportLevel, account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
        let (path, prefix, idKey, nameKey): (String, String, String, String)
        switch level {
        case .campaign: (path, prefix, idKey, nameKey) = ("campaign/get/", "CAMPAIGN", "campaign_id", "campaign_name")
        case .adGroup: (path, prefix, idKey, nameKey) = ("adgroup/get/", "ADGROUP", "adgroup_id", "adgroup_name")
        case .ad: (path, prefix, idKey, nameKey) = ("ad/get/", "AD", "ad_id", "ad_name")
        }
        let filtering = JSONValue.object([("secondary_status", .string("\(prefix)_STATUS_ALL"))]).jsonText
        // Pages of `configuration.pageSize` (1000, the documented maximum: ad-apis.md A3 "Pagination"); a list that
        // shifted between two page requests is deduplicated (Dedup.swift).
        return try await paged(
            path, query: [("advertiser_id", account.id), ("filtering", filtering)], account: account, session: session
        ) { item in
            guard let id = item[idKey]?.idText else { throw malformed(path, "\(idKey) missing") }
            let secondary = item["secondary_status"]?.stringValue
            let operation = item["operation_status"]?.stringValue
            let status = secondary ?? operation ?? "UNKNOWN"
            let deleted = [secondary, operation].contains { $0?.contains("DELETE") == true }
            let parent: String?
            switch level {
            case .campaign: parent = nil
            case .adGroup: parent = item["campaign_id"]?.idText
            case .ad: parent = item["adgroup_id"]?.idText
            }
            return AdEntity(
                platform: .tiktok, accountId: account.id, level: level, id: id,
                name: item[nameKey]?.stringValue ?? "", parentId: parent,
                campaignId: level == .campaign ? id : item["campaign_id"]?.idText, status: status,
                isDeleted: deleted, updatedAt: item["modify_time"]?.stringValue)
        }.uniqueByID()
    }

    // MARK: Reports

    public func dailyMetrics(
        _ level: ReportLevel, account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> [DailyMetric] {
        var rows: [DailyMetric] = []
        // Windows of up to 30 days, the documented maximum for `stat_time_day` (ad-apis.md A4 "Max range per
        // request: DAY 30 days"; a longer range answers 40067); pages of 1000 rows (A4 `page_size` <= 1000); the
        // metrics asked for are exactly the five stored (`reportMetrics`). No filter leaves out entity-days without
        // delivery: our references (ad-apis.md A4) name none for the integrated report, and whether TikTok returns
        // zero rows at all is not documented there (the sandbox leaves them out). Were they returned, they would
        // cost pages (1000 rows each), never correctness: the writer drops rows without activity.
        for part in window.split(maxDays: configuration.maxReportDays) {
            rows += try await report(level, account: account, window: part, session: session)
        }
        return rows.uniqueByEntityDay()
    }

    /// One report window; on 40067 the window is halved and each half fetched, down to a single day.
    private func report(
        _ level: ReportLevel, account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> [DailyMetric] {
        let (dataLevel, idKey): (String, String)
        switch level {
        case .campaign: (dataLevel, idKey) = ("AUCTION_CAMPAIGN", "campaign_id")
        case .adGroup: (dataLevel, idKey) = ("AUCTION_ADGROUP", "adgroup_id")
        case .ad: (dataLevel, idKey) = ("AUCTION_AD", "ad_id")
        }
        let path = "report/integrated/get/"
        let endpoint = endpointPath(path)
        return try await halvingWhenTooLarge("report", account: account, window: window, combine: { $0 + $1 }) {
            window in
            try await paged(
                path,
                query: [
                    ("advertiser_id", account.id), ("service_type", "AUCTION"), ("report_type", "BASIC"),
                    ("data_level", dataLevel), ("dimensions", QueryString.jsonArray([idKey, "stat_time_day"])),
                    ("metrics", QueryString.jsonArray(Self.reportMetrics)),
                    ("start_date", window.first.description), ("end_date", window.last.description),
                ], account: account, session: session
            ) { item in
                try Self.metricRow(item, level: level, idKey: idKey, account: account, endpoint: endpoint)
            }
        }
    }

    /// Runs `fetch` over `window`; on code 40067 ("Your query is too large", ad-apis.md A4) fetches each half
    /// instead, down to single days, and combines the halves. Shared by the daily reports and the account totals.
    private func halvingWhenTooLarge<T>(
        _ what: String, account: AdAccount, window: DateWindow, combine: (T, T) -> T,
        _ fetch: (DateWindow) async throws -> T
    ) async throws -> T {
        do {
            return try await fetch(window)
        } catch let error as PlatformError where error.apiCode == "40067" && window.dayCount > 1 {
            let firstHalf = (window.dayCount + 1) / 2
            logger.log(
                .info, "tiktok \(what) window too large, halving",
                ["advertiser_id": account.id, "window": window.description])
            let left = DateWindow(first: window.first, last: window.first.adding(days: firstHalf - 1))
            let right = DateWindow(first: window.first.adding(days: firstHalf), last: window.last)
            let a = try await halvingWhenTooLarge(what, account: account, window: left, combine: combine, fetch)
            let b = try await halvingWhenTooLarge(what, account: account, window: right, combine: combine, fetch)
            return combine(a, b)
        }
    }

    /// Longest window of one account-totals request: a report without `stat_time_day` may span at most 365 days
    /// ("with stat_time_day at most 30 days, otherwise at most 365 days": TikTok API for Business, Reporting,
    /// https://business-api.tiktok.com/portal/docs?id=1740302848100353, quoted by the Apache SeaTunnel TikTokAds
    /// connector docs, https://seatunnel.apache.org/zh-CN/docs/connectors/source/TikTokAds).
    public static let maxTotalsDays = 365

    /// Account totals from `data_level=AUCTION_ADVERTISER` (ad-apis.md A4), the advertiser's own aggregation, with
    /// `dimensions=["advertiser_id"]` only: one row for the whole range, so one request per sync for any window of
    /// up to ``maxTotalsDays`` days (a longer one, at most 3,660 days per job, in 365-day requests); a 40067 halves
    /// the window like the daily reports do.
    public func accountTotals(
        account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> AccountTotals {
        var totals = AccountTotals()
        for part in window.split(maxDays: Self.maxTotalsDays) {
            totals += try await totalsRequest(account: account, window: part, session: session)
        }
        return totals
    }

    /// One account-totals window; on 40067 the window is halved and each half fetched, down to a single day.
    private func totalsRequest(
        account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> AccountTotals {
        let path = "report/integrated/get/"
        return try await halvingWhenTooLarge("totals", account: account, window: window, combine: { $0 + $1 }) {
            window in
            let rows = try await paged(
                path,
                query: [
                    ("advertiser_id", account.id), ("service_type", "AUCTION"), ("report_type", "BASIC"),
                    ("data_level", "AUCTION_ADVERTISER"), ("dimensions", QueryString.jsonArray(["advertiser_id"])),
                    (
                        "metrics",
                        QueryString.jsonArray(["spend", "impressions", "conversion", "clicks", "total_purchase_value"])
                    ),
                    ("start_date", window.first.description), ("end_date", window.last.description),
                ], account: account, session: session
            ) { item -> AccountTotals in
                guard let metrics = item["metrics"] else { throw malformed(path, "report row without metrics") }
                guard let spend = Values.decimal(metrics["spend"]),
                    let impressions = Values.int64(metrics["impressions"]),
                    let conversions = Values.decimal(metrics["conversion"]),
                    let clicks = Values.int64(metrics["clicks"]),
                    let value = Values.decimal(metrics["total_purchase_value"])
                else { throw malformed(path, "advertiser totals are not numbers") }
                return AccountTotals(
                    spend: spend ?? 0, impressions: impressions ?? 0, conversions: conversions ?? 0,
                    clicks: clicks ?? 0, conversionValue: value ?? 0)
            }
            return rows.reduce(into: AccountTotals()) { $0 += $1 }
        }
    }

    /// Normalizes one `report/integrated/get/` list item.
    static func metricRow(
        _ item: JSONValue, level: ReportLevel, idKey: String, account: AdAccount, endpoint: String
    ) throws -> DailyMetric {
        func bad(_ why: String) -> PlatformError {
            PlatformError(.malformedResponse, platform: .tiktok, endpoint: endpoint, message: why)
        }
        guard let dimensions = item["dimensions"], let metrics = item["metrics"] else {
            throw bad("report row without dimensions/metrics")
        }
        guard let id = dimensions[idKey]?.idText else { throw bad("report row without dimensions.\(idKey)") }
        guard let dayText = dimensions["stat_time_day"]?.stringValue, let date = LocalDate(parsing: dayText) else {
            throw bad("report row without a valid stat_time_day")
        }
        func decimal(_ key: String) throws -> Decimal? {
            guard let value = Values.decimal(metrics[key]) else { throw bad("metric \(key) is not a number") }
            return value
        }
        func count(_ key: String) throws -> Int64? {
            guard let value = Values.int64(metrics[key]) else { throw bad("metric \(key) is not an integer") }
            return value
        }
        return DailyMetric(
            platform: .tiktok, accountId: account.id, level: level, entityId: id, date: date,
            currency: account.currency, spend: try decimal("spend") ?? 0, impressions: try count("impressions"),
            clicks: try count("clicks"), conversions: try decimal("conversion"),
            conversionValue: try decimal("total_purchase_value"))
    }

    // MARK: Requests

    /// Fetches every page of a list endpoint (`page` from 1 until `page_info.total_page`), each item decoded by
    /// `item` as part of its page's request (a page in the wrong shape is fetched again, not the whole list).
    private func paged<T: Sendable>(
        _ path: String, query: [(String, String)], account: AdAccount, session: TokenSession,
        item: @escaping (JSONValue) throws -> T
    ) async throws -> [T] {
        var all: [T] = []
        var page = 1
        while true {
            let (items, more) = try await get(
                path, query: query + [("page", String(page)), ("page_size", String(configuration.pageSize))],
                accountId: account.id, session: session
            ) { data -> ([T], Bool) in
                guard let list = data["list"]?.arrayValue else { throw malformed(path, "data.list missing") }
                let items = try list.map(item)
                guard let info = data["page_info"] else { return (items, false) }
                guard case .some(.some(let totalPages)) = Values.int64(info["total_page"]) else {
                    throw malformed(path, "page_info.total_page missing")
                }
                return (items, page < totalPages && !list.isEmpty)
            }
            all += items
            if !more { return all }
            page += 1
        }
    }

    /// One authorized GET whose envelope `data` is turned into a value by `decode`; a damaged response (not JSON,
    /// cut short, or failing `decode` with `malformedResponse`) is fetched again, per
    /// ``TikTokConfiguration/responseTries``.
    private func get<T>(
        _ path: String, query: [(String, String)], accountId: String?, session: TokenSession,
        decode: (JSONValue) throws -> T
    ) async throws -> T {
        let retry = ResponseRetry(tries: configuration.responseTries, delay: configuration.responseRetryDelay)
        return try await retry.run(platform: .tiktok, endpoint: endpointPath(path), logger: logger) {
            try decode(try await fetch(path, query: query, accountId: accountId, session: session))
        }
    }

    /// One authorized GET returning the envelope's `data`; refreshes and retries once on code 40102.
    private func fetch(
        _ path: String, query: [(String, String)], accountId: String?, session: TokenSession
    ) async throws -> JSONValue {
        guard let url = QueryString.url(base: configuration.baseURL, path: path, query: query) else {
            throw PlatformError(.permanent, platform: .tiktok, endpoint: path, message: "cannot build request URL")
        }
        var refreshed = false
        while true {
            let tokens = await session.tokens
            // Requests tied to no account (discovery) still take a slot under the app's limit.
            try await rateLimiter.acquire(platform: .tiktok, accountId: accountId)
            let scrubber = SecretScrubber(
                secrets: [configuration.secret, tokens.accessToken] + (tokens.refreshToken.map { [$0] } ?? []))
            let response: TransportResponse
            await session.countRequest()
            do {
                response = try await transport.get(
                    url, headers: ["Access-Token": tokens.accessToken], timeout: configuration.requestTimeout)
                await session.countResponse(status: response.status)
            } catch {
                await session.countResponse(status: nil)
                throw Self.transportFailure(error, endpoint: QueryString.path(of: url))
            }
            do {
                return try envelopeData(response, endpoint: QueryString.path(of: url), scrubber: scrubber)
            } catch let error as PlatformError where error.kind == .accessTokenExpired {
                guard !refreshed, tokens.refreshToken != nil else {
                    var reauth = error
                    reauth.kind = .reauthorizationRequired
                    reauth.message += refreshed ? " (again after a refresh)" : " (no refresh token held)"
                    throw reauth
                }
                refreshed = true
                logger.log(.info, "tiktok access token expired, refreshing", ["endpoint": QueryString.path(of: url)])
                do {
                    _ = try await session.refresh(replacing: tokens.accessToken) { try await refreshTokens($0) }
                } catch is RefreshUnavailable {
                    var reauth = error
                    reauth.kind = .reauthorizationRequired
                    throw reauth
                }
            }
        }
    }

    /// Checks HTTP status and the `code` of the envelope, returning `data`.
    private func envelopeData(
        _ response: TransportResponse, endpoint: String, scrubber: SecretScrubber
    ) throws -> JSONValue {
        let body: JSONValue
        do {
            body = try JSONValue.parse(response.body)
        } catch {
            if response.status != 200 {
                throw PlatformError(
                    Self.httpKind(response), platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                    message: "HTTP \(response.status) without a JSON body")
            }
            // TikTok answers every call, errors included, with HTTP 200 and the JSON envelope
            // {code, message, request_id, data} whose `code` decides success (ad-apis.md A2 "Base URLs and
            // envelope"; error codes in A5 "Errors and limits"; TikTok's own code list,
            // business-api.tiktok.com/portal/docs?id=1737172488964097, says the code takes precedence over the HTTP
            // status, and a non-200 status means the request never reached the API logic), so a 200 body
            // that does not parse (cut short with a matching Content-Length, an intermediary's HTML page) is a
            // delivery fault: transient, and retried on the request. A body shorter than its Content-Length never
            // gets here: the transport reports it (`TransportError.Reason.truncatedBody` / `.connectionLost`).
            throw PlatformError.unparseableBody(error, response: response, platform: .tiktok, endpoint: endpoint)
        }
        let message = scrubber.scrub(body["message"]?.stringValue ?? "")
        guard case .some(.some(let code)) = Values.int64(body["code"]) else {
            if response.status != 200 {
                throw PlatformError(
                    Self.httpKind(response), platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                    message: "HTTP \(response.status)")
            }
            throw PlatformError(
                .malformedResponse, platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                message: "response without a numeric code")
        }
        if code != 0 {
            var kind = ErrorClassifier.tiktok(code: Int(code))
            if case .rateLimited = kind {
                kind = .rateLimited(retryAfter: ErrorClassifier.retryAfter(headers: response.headers))
            }
            throw PlatformError(
                kind, platform: .tiktok, endpoint: endpoint, httpStatus: response.status, apiCode: String(code),
                message: message.isEmpty ? "TikTok error" : message)
        }
        if response.status != 200 {
            throw PlatformError(
                Self.httpKind(response), platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                message: "HTTP \(response.status) with code 0")
        }
        guard let data = body["data"], !data.isNull else {
            throw PlatformError(
                .malformedResponse, platform: .tiktok, endpoint: endpoint, httpStatus: response.status,
                message: "response without data")
        }
        return data
    }

    private static func httpKind(_ response: TransportResponse) -> PlatformError.Kind {
        switch response.status {
        case 429: return .rateLimited(retryAfter: ErrorClassifier.retryAfter(headers: response.headers))
        case 401: return .accessTokenExpired
        case 408, 500...599: return .transient
        default: return .permanent
        }
    }

    static func transportFailure(_ error: any Error, endpoint: String) -> any Error {
        PlatformError.transport(error, platform: .tiktok, endpoint: endpoint)
    }

    private func malformed(_ path: String, _ why: String) -> PlatformError {
        PlatformError(.malformedResponse, platform: .tiktok, endpoint: endpointPath(path), message: why)
    }

    /// The full API path of `path` under the configured base, as used in error messages.
    private func endpointPath(_ path: String) -> String {
        QueryString.url(base: configuration.baseURL, path: path, query: []).map(QueryString.path(of:)) ?? path
    }
}
