import Foundation
import HTTP

/// TikTok Marketing API v1.3 under `/open_api/v1.3/`: HTTP 200 envelopes whose `code` tells the outcome.
extension Sandbox {
    static let tiktokBase = "/open_api/v1.3"

    func registerTikTok(_ router: Router) {
        let b = Self.tiktokBase
        router.add("POST", b + "/oauth2/access_token/") { [self] req in
            await tiktokGuard(req, account: nil, isOAuth: true) { tiktokExchange(req) }
        }
        router.add("POST", b + "/oauth2/refresh_token/") { [self] req in
            await tiktokGuard(req, account: nil, isOAuth: true) { tiktokRefresh(req) }
        }
        router.add("POST", b + "/oauth2/revoke_token/") { [self] req in
            await tiktokGuard(req, account: nil, isOAuth: true) { tiktokRevoke(req) }
        }
        router.add("GET", b + "/oauth2/advertiser/get/") { [self] req in
            await tiktokGuard(req, account: nil) { tiktokAdvertiserGet(req) }
        }
        router.add("GET", b + "/advertiser/info/") { [self] req in
            let ids = Self.idList(req.query["advertiser_ids"])
            return await tiktokGuard(req, account: ids?.first) { tiktokAdvertiserInfo(req, ids) }
        }
        for level in SandboxLevel.allCases {
            router.add("GET", b + "/\(level.rawValue)/get/") { [self] req in
                await tiktokGuard(req, account: req.query["advertiser_id"]) { tiktokEntities(req, level) }
            }
        }
        router.add("GET", b + "/report/integrated/get/") { [self] req in
            await tiktokGuard(req, account: req.query["advertiser_id"], isReport: true) { tiktokReport(req) }
        }
    }

    // MARK: Envelopes

    func tiktokOK(_ data: String) -> HTTPResponse {
        .json(
            JSONText.object([
                ("code", "0"), ("message", JSONText.string("OK")), ("request_id", JSONText.string(nextRequestID())),
                ("data", data),
            ]))
    }

    func tiktokError(_ code: Int, _ message: String, http: Int = 200) -> HTTPResponse {
        .json(
            JSONText.object([
                ("code", "\(code)"), ("message", JSONText.string(message)),
                ("request_id", JSONText.string(nextRequestID())), ("data", "{}"),
            ]), status: http)
    }

    /// Refuses an authorized API request over the app QPS limit (`SandboxConfig.tiktokAppQPS`), else counts the
    /// request, applies any injected fault, else runs `body`.
    private func tiktokGuard(
        _ req: HTTPRequest, account: String?, isOAuth: Bool = false, isReport: Bool = false,
        _ body: () -> HTTPResponse
    ) async -> HTTPResponse {
        if !isOAuth, case .ok = checkToken(req.headers["Access-Token"], .tiktok),
            let over = admitAppQPS(.tiktok)
        {
            // ad-apis.md A5: over the app QPS TikTok answers HTTP 200 with code 40100 (its message names the QPS and
            // the limit, like "Advertiser (...)'s QPS (21) reaches QPS limit 20").
            return tiktokError(40100, "App's QPS (\(over.qps)) reaches QPS limit \(over.limit)")
        }
        switch admit(
            .tiktok, account: account, path: req.path, query: req.rawQuery, isOAuth: isOAuth, isReport: isReport)
        {
        case nil:
            return body()
        case .slow:
            try? await Task.sleep(for: slowDelay())
            return body()
        case .truncatedBody:
            var r = body()
            r.truncatedBodyLength = r.body.count / 2
            return r
        case .malformedJSON:
            return .json("{\"code\":0,\"message\":\"OK\",\"data\":{\"list\":[{\"campaign_id\":7000000000000000001,}")
        case .truncatedJSON:
            return FaultKind.cutInHalf(body())
        case .htmlBody:
            return FaultKind.htmlPage
        case .wrongShape:
            return .json(
                JSONText.object([
                    ("code", "0"), ("message", JSONText.string("OK")),
                    ("request_id", JSONText.string(nextRequestID())), ("data", "{\"list\":\"unavailable\"}"),
                ]))
        case .rateLimit:
            return tiktokError(40100, "Too many requests. Please retry in some time.")
        case .serverError:
            switch nextServerErrorTurn() % 3 {
            case 0: return tiktokError(50000, "System error")
            case 1: return .text("Internal Server Error", status: 500)
            default: return .text("Service Unavailable", status: 503)
            }
        case .queryTooLarge:
            return tiktokError(40067, "Your query is too large")
        case .expiredToken:
            return tiktokError(40102, "Access token has expired.")
        case .revokedToken:
            return tiktokError(40105, "Access token is incorrect or has been revoked.")
        }
    }

    /// Resolves the `Access-Token` header to a connection, or the error envelope to send.
    private func tiktokAuth(_ req: HTTPRequest) -> Answer<Int> {
        switch checkToken(req.headers["Access-Token"], .tiktok) {
        case .ok(let c): return .success(c)
        case .missing: return .failure(tiktokError(40104, "Access token is null, please check your access token."))
        case .unknown, .revoked:
            return .failure(tiktokError(40105, "Access token is incorrect or has been revoked."))
        case .expired: return .failure(tiktokError(40102, "Access token has expired."))
        }
    }

    /// The advertiser, when the token's grant covers it.
    private func tiktokAdvertiser(_ req: HTTPRequest, connection: Int, id: String?) -> Answer<Account> {
        guard let id, !id.isEmpty else {
            return .failure(tiktokError(40002, "advertiser_id: Missing data for required field."))
        }
        guard let acct = world.accounts[id], acct.platform == .tiktok, acct.connection == connection else {
            return .failure(tiktokError(40001, "No permission to operate advertiser_id \(id)."))
        }
        return .success(acct)
    }

    // MARK: OAuth

    private func tiktokExchange(_ req: HTTPRequest) -> HTTPResponse {
        guard let body = JSONValue.parse(req.bodyText) else { return tiktokError(40002, "Invalid JSON body.") }
        guard let appID = body["app_id"]?.text, !appID.isEmpty, let secret = body["secret"]?.text, !secret.isEmpty
        else { return tiktokError(40002, "app_id and secret are required.") }
        guard let code = body["auth_code"]?.text,
            let conn = world.connections.first(where: { $0.platform == .tiktok && $0.authCode == code })
        else { return tiktokError(40110, "auth_code is invalid or expired.") }
        let (access, refresh) = issueTokens(.tiktok, conn.index)
        return tiktokOK(tokenData(access, refresh, conn))
    }

    private func tiktokRefresh(_ req: HTTPRequest) -> HTTPResponse {
        guard let body = JSONValue.parse(req.bodyText) else { return tiktokError(40002, "Invalid JSON body.") }
        guard body["app_id"]?.text?.isEmpty == false, body["secret"]?.text?.isEmpty == false else {
            return tiktokError(40002, "app_id and secret are required.")
        }
        let token = body["refresh_token"]?.text
        guard case .ok(let index) = checkToken(token, .tiktok, kind: .refresh),
            let conn = world.connection(.tiktok, index)
        else { return tiktokError(40107, "Refresh token is invalid.") }
        // Refresh tokens rotate: the old one stops working.
        revoke(token: token!)
        let (access, refresh) = issueTokens(.tiktok, index)
        return tiktokOK(tokenData(access, refresh, conn))
    }

    /// `oauth2/revoke_token/` (`{app_id, secret, access_token}`): the grant ends, every token of the connection
    /// stops working (as when the advertiser removes the app); the revocation is recorded for tests.
    private func tiktokRevoke(_ req: HTTPRequest) -> HTTPResponse {
        guard let body = JSONValue.parse(req.bodyText) else { return tiktokError(40002, "Invalid JSON body.") }
        guard body["app_id"]?.text?.isEmpty == false, body["secret"]?.text?.isEmpty == false else {
            return tiktokError(40002, "app_id and secret are required.")
        }
        let token = body["access_token"]?.text
        let index: Int
        switch checkToken(token, .tiktok) {
        case .ok(let c): index = c
        case .expired:
            guard let c = state.withLock({ $0.tokens[token!]?.connection }) else {
                return tiktokError(40105, "Access token is incorrect or has been revoked.")
            }
            index = c
        case .missing: return tiktokError(40104, "Access token is null, please check your access token.")
        case .unknown, .revoked: return tiktokError(40105, "Access token is incorrect or has been revoked.")
        }
        revokeConnection(.tiktok, index)
        state.withLock { $0.revokedGrants.append(SandboxRevocation(platform: .tiktok, connection: index)) }
        return tiktokOK("{}")
    }

    private func tokenData(_ access: String, _ refresh: String, _ conn: Connection) -> String {
        JSONText.object([
            ("access_token", JSONText.string(access)),
            ("advertiser_ids", JSONText.array(conn.accountIDs.map(JSONText.string))),
            ("scope", "[1,2,3,4]"),
            ("token_type", JSONText.string("Bearer")),
            ("refresh_token", JSONText.string(refresh)),
            ("refresh_token_expire_in", "31536000"),
        ])
    }

    // MARK: Accounts and entities

    private func tiktokAdvertiserGet(_ req: HTTPRequest) -> HTTPResponse {
        let connection: Int
        switch tiktokAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        guard req.query["app_id"]?.isEmpty == false, req.query["secret"]?.isEmpty == false else {
            return tiktokError(40002, "app_id and secret are required.")
        }
        let list = world.connection(.tiktok, connection)!.accountIDs.map { id in
            JSONText.object([("advertiser_id", id), ("advertiser_name", JSONText.string(world.accounts[id]!.name))])
        }
        return tiktokOK(JSONText.object([("list", JSONText.array(list))]))
    }

    private func tiktokAdvertiserInfo(_ req: HTTPRequest, _ ids: [String]?) -> HTTPResponse {
        let connection: Int
        switch tiktokAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        guard let ids, !ids.isEmpty else {
            return tiktokError(40002, "advertiser_ids: Missing data for required field.")
        }
        guard ids.count <= 100 else { return tiktokError(40002, "advertiser_ids: Longer than maximum length 100.") }
        var list: [String] = []
        for id in ids {
            switch tiktokAdvertiser(req, connection: connection, id: id) {
            case .failure(let r): return r
            case .success(let a):
                list.append(
                    JSONText.object([
                        ("advertiser_id", a.id), ("name", JSONText.string(a.name)),
                        ("currency", JSONText.string(a.currency)),
                        ("timezone", JSONText.string(Self.etcZone(a.timezone, world.baseNow))),
                        ("display_timezone", JSONText.string(a.timezoneID)),
                        ("status", JSONText.string("STATUS_ENABLE")), ("create_time", "\(a.createdUnix)"),
                        ("balance", "1000.00"), ("country", JSONText.string("US")),
                    ]))
            }
        }
        return tiktokOK(JSONText.object([("list", JSONText.array(list))]))
    }

    /// `Etc/GMT+8` style name for the zone's standard offset (note the inverted sign of the Etc names).
    static func etcZone(_ tz: TimeZone, _ at: Int) -> String {
        let hours = Zone.offset(tz, at: at) / 3600
        if hours == 0 { return "Etc/GMT" }
        return hours > 0 ? "Etc/GMT-\(hours)" : "Etc/GMT+\(-hours)"
    }

    private func tiktokPaging(_ req: HTTPRequest) -> Answer<(page: Int, size: Int)> {
        let page = req.query["page"].map { Int($0) } ?? 1
        let size = req.query["page_size"].map { Int($0) } ?? 10
        guard let page, page >= 1 else {
            return .failure(tiktokError(40002, "page: Must be greater than or equal to 1."))
        }
        guard let size, (1...1000).contains(size) else {
            return .failure(tiktokError(40002, "page_size: Must be between 1 and 1000."))
        }
        return .success((page, size))
    }

    private func pageInfo(page: Int, size: Int, total: Int) -> String {
        JSONText.object([
            ("page", "\(page)"), ("page_size", "\(size)"), ("total_number", "\(total)"),
            ("total_page", "\((total + size - 1) / size)"),
        ])
    }

    private static func time(_ unix: Int) -> String {
        let day = CivilDay(day: unix / 86_400)
        let s = unix % 86_400
        return String(format: "%@ %02d:%02d:%02d", day.description, s / 3600, s / 60 % 60, s % 60)
    }

    // tiktokEntities and tiktokReport open alike (auth, advertiser, paging): each step answers with its own
    // documented error, and a shared helper returning three results would read worse than the three switches.
    private func tiktokEntities(_ req: HTTPRequest, _ level: SandboxLevel) -> HTTPResponse {
        let connection: Int
        switch tiktokAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        let account: Account
        switch tiktokAdvertiser(req, connection: connection, id: req.query["advertiser_id"]) {
        case .failure(let r): return r
        case .success(let a): account = a
        }
        let paging: (page: Int, size: Int)
        switch tiktokPaging(req) {
        case .failure(let r): return r
        case .success(let p): paging = p
        }
        let prefix = level == .campaign ? "CAMPAIGN" : level == .adgroup ? "ADGROUP" : "AD"
        var statusFilter: String?
        var idFilter: [String: Set<String>] = [:]
        if let raw = req.query["filtering"] {
            guard let f = JSONValue.parse(raw), case .object(let o) = f else {
                return tiktokError(40002, "filtering: Not a valid JSON object.")
            }
            statusFilter = o["secondary_status"]?.text
            for key in ["campaign_ids", "adgroup_ids", "ad_ids"] {
                if let list = o[key] {
                    guard let items = list.arrayValue?.compactMap(\.text) else {
                        return tiktokError(40002, "filtering.\(key): Not a valid list.")
                    }
                    idFilter[key] = Set(items)
                }
            }
        }
        var requested: Set<String>?
        if let raw = req.query["fields"] {
            guard let items = Self.idList(raw) else { return tiktokError(40002, "fields: Not a valid list.") }
            requested = Set(items)
        }

        func status(_ s: EntityStatus) -> (String, String) {
            switch s {
            case .active:
                return ("ENABLE", level == .campaign ? "CAMPAIGN_STATUS_ENABLE" : "\(prefix)_STATUS_DELIVERY_OK")
            case .paused: return ("DISABLE", "\(prefix)_STATUS_DISABLE")
            case .deleted: return ("DISABLE", "\(prefix)_STATUS_DELETE")
            }
        }
        func keep(_ s: EntityStatus, _ ids: [String: String]) -> Bool {
            let secondary = status(s).1
            switch statusFilter {
            case nil: if s == .deleted { return false }
            case "\(prefix)_STATUS_ALL": break
            case let f?: if f != secondary { return false }
            }
            for (key, set) in idFilter {
                guard let v = ids[key], set.contains(v) else { return false }
            }
            return true
        }
        let created = account.createdUnix + 86_400
        var records: [[(String, String)]] = []
        for c in account.campaigns {
            if level == .campaign {
                guard keep(c.status, ["campaign_ids": c.id]) else { continue }
                let (op, sec) = status(c.status)
                records.append([
                    ("campaign_id", c.id), ("campaign_name", JSONText.string(c.name)), ("advertiser_id", account.id),
                    ("budget", centsText(c.budgetCents)), ("budget_mode", JSONText.string("BUDGET_MODE_DAY")),
                    ("operation_status", JSONText.string(op)), ("secondary_status", JSONText.string(sec)),
                    ("objective_type", JSONText.string(c.objective)),
                    ("create_time", JSONText.string(Self.time(created))),
                    ("modify_time", JSONText.string(Self.time(created + 3600))),
                ])
                continue
            }
            for g in c.adGroups {
                if level == .adgroup {
                    guard keep(g.status, ["campaign_ids": c.id, "adgroup_ids": g.id]) else { continue }
                    let (op, sec) = status(g.status)
                    records.append([
                        ("adgroup_id", g.id), ("adgroup_name", JSONText.string(g.name)), ("campaign_id", c.id),
                        ("advertiser_id", JSONText.string(account.id)), ("budget", centsText(g.budgetCents)),
                        ("budget_mode", JSONText.string("BUDGET_MODE_DAY")),
                        ("operation_status", JSONText.string(op)), ("secondary_status", JSONText.string(sec)),
                        ("create_time", JSONText.string(Self.time(created))),
                        ("modify_time", JSONText.string(Self.time(created + 7200))),
                    ])
                    continue
                }
                for ad in g.ads where !isHiddenFromLists(ad.id) {
                    guard keep(ad.status, ["campaign_ids": c.id, "adgroup_ids": g.id, "ad_ids": ad.id]) else {
                        continue
                    }
                    let (op, sec) = status(ad.status)
                    records.append([
                        ("ad_id", JSONText.string(ad.id)), ("ad_name", JSONText.string(ad.name)),
                        ("adgroup_id", g.id), ("campaign_id", JSONText.string(c.id)), ("advertiser_id", account.id),
                        ("operation_status", JSONText.string(op)), ("secondary_status", JSONText.string(sec)),
                        ("create_time", JSONText.string(Self.time(created))),
                        ("modify_time", JSONText.string(Self.time(created + 10800))),
                    ])
                }
            }
        }
        if let requested {
            let known = Set(records.first?.map(\.0) ?? [])
            if let bad = requested.first(where: { !known.isEmpty && !known.contains($0) }) {
                return tiktokError(40002, "fields: Invalid field \(bad).")
            }
            records = records.map { $0.filter { requested.contains($0.0) } }
        }
        let start = (paging.page - 1) * paging.size
        let slice = start < records.count ? Array(records[start..<min(records.count, start + paging.size)]) : []
        return tiktokOK(
            JSONText.object([
                ("list", JSONText.array(slice.map(JSONText.object))),
                ("page_info", pageInfo(page: paging.page, size: paging.size, total: records.count)),
            ]))
    }

    // MARK: Reports

    static let tiktokMetrics: Set<String> = [
        "spend", "impressions", "clicks", "conversion", "cost_per_conversion", "total_purchase_value", "cpc", "cpm",
        "ctr", "video_play_actions",
    ]

    private func tiktokReport(_ req: HTTPRequest) -> HTTPResponse {
        let connection: Int
        switch tiktokAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        let account: Account
        switch tiktokAdvertiser(req, connection: connection, id: req.query["advertiser_id"]) {
        case .failure(let r): return r
        case .success(let a): account = a
        }
        let paging: (page: Int, size: Int)
        switch tiktokPaging(req) {
        case .failure(let r): return r
        case .success(let p): paging = p
        }
        guard (req.query["report_type"] ?? "BASIC") == "BASIC" else {
            return tiktokError(40002, "report_type: The sandbox serves BASIC reports only.")
        }
        guard (req.query["service_type"] ?? "AUCTION") == "AUCTION" else {
            return tiktokError(40002, "service_type: Must be one of AUCTION, RESERVATION.")
        }
        let idDimension: String
        switch req.query["data_level"] ?? "" {
        case "AUCTION_ADVERTISER": idDimension = "advertiser_id"
        case "AUCTION_CAMPAIGN": idDimension = "campaign_id"
        case "AUCTION_ADGROUP": idDimension = "adgroup_id"
        case "AUCTION_AD": idDimension = "ad_id"
        default:
            return tiktokError(
                40002, "data_level: Must be one of AUCTION_ADVERTISER, AUCTION_CAMPAIGN, AUCTION_ADGROUP, AUCTION_AD.")
        }
        guard let dimensions = Self.idList(req.query["dimensions"]), !dimensions.isEmpty else {
            return tiktokError(40002, "dimensions: Missing data for required field.")
        }
        if dimensions.contains("stat_time_hour") {
            return tiktokError(40002, "dimensions: stat_time_hour is not served by the sandbox.")
        }
        // With stat_time_day: one row per id and day, at most 30 days; without: one row per id for the whole
        // range, at most 365 days ("with stat_time_day at most 30 days, otherwise at most 365 days").
        let daily: Bool
        switch Set(dimensions) {
        case [idDimension, "stat_time_day"] where dimensions.count == 2: daily = true
        case [idDimension] where dimensions.count == 1: daily = false
        default: return tiktokError(40002, "dimensions: Invalid dimensions \(dimensions) for this data_level.")
        }
        let metricNames = Self.idList(req.query["metrics"]) ?? ["spend", "impressions", "clicks"]
        if let bad = metricNames.first(where: { !Self.tiktokMetrics.contains($0) }) {
            return tiktokError(40002, "metrics: Invalid metric \(bad).")
        }
        guard let startText = req.query["start_date"], let endText = req.query["end_date"],
            let start = CivilDay(parsing: startText[...]), let end = CivilDay(parsing: endText[...])
        else { return tiktokError(40002, "start_date/end_date: Must be dates in the form YYYY-MM-DD.") }
        guard start <= end else { return tiktokError(40002, "end_date must not be earlier than start_date.") }
        guard end.day - start.day + 1 <= (daily ? 30 : 365) else {
            return tiktokError(40067, "Your query is too large")
        }

        logReport(
            .tiktok, account: account.id, level: req.query["data_level"] ?? "", granularity: daily ? "DAY" : "TOTAL",
            first: start, last: end)
        let today = localToday(account)
        var rows: [(id: String, day: CivilDay, m: DayMetrics)] = []
        func collect(_ id: String, _ ads: [Ad]) {
            var total = DayMetrics()
            for d in start.day...end.day {
                let day = CivilDay(day: d)
                var sum = DayMetrics()
                for ad in ads { sum += metrics(account, ad, day, today: today) }
                if daily, !sum.isZero { rows.append((id, day, sum)) }
                total += sum
            }
            // The whole range's row (its day is unused); an id without delivery is left out, like an empty day.
            if !daily, !total.isZero { rows.append((id, start, total)) }
        }
        switch idDimension {
        case "advertiser_id": collect(account.id, account.allAds)
        case "campaign_id": for c in account.campaigns { collect(c.id, c.adGroups.flatMap(\.ads)) }
        case "adgroup_id": for g in account.allAdGroups { collect(g.id, g.ads) }
        default: for ad in account.allAds { collect(ad.id, [ad]) }
        }
        if idDimension == "advertiser_id", !rows.isEmpty, paging.page == 1 {
            rows[0].m.spendCents += takeTotalSkew(account.id)
        }
        let first = (paging.page - 1) * paging.size
        let slice = first < rows.count ? rows[first..<min(rows.count, first + paging.size)] : []
        let list = slice.map { row in
            JSONText.object([
                (
                    "dimensions",
                    JSONText.object(
                        [(idDimension, JSONText.string(row.id))]
                            + (daily ? [("stat_time_day", JSONText.string("\(row.day) 00:00:00"))] : []))
                ),
                ("metrics", JSONText.object(metricNames.map { ($0, JSONText.string(Self.metricText($0, row.m))) })),
            ])
        }
        return tiktokOK(
            JSONText.object([
                ("list", JSONText.array(list)),
                ("page_info", pageInfo(page: paging.page, size: paging.size, total: rows.count)),
            ]))
    }

    static func metricText(_ name: String, _ m: DayMetrics) -> String {
        func ratio(_ num: Int64, _ den: Int64, scale: Int64) -> String {
            den == 0 ? "-" : centsText((num * scale * 100 / den + 50) / 100)
        }
        switch name {
        case "spend": return centsText(m.spendCents)
        case "impressions": return "\(m.impressions)"
        case "clicks": return "\(m.clicks)"
        case "conversion": return "\(m.conversions)"
        case "cost_per_conversion": return ratio(m.spendCents, m.conversions, scale: 1)
        case "total_purchase_value": return centsText(m.valueCents)
        case "cpc": return ratio(m.spendCents, m.clicks, scale: 1)
        case "cpm": return ratio(m.spendCents, m.impressions, scale: 1000)
        case "ctr": return ratio(m.clicks * 100, m.impressions, scale: 100)
        case "video_play_actions": return "\(m.videoViews)"
        default: return "-"
        }
    }

    /// A JSON array of ids or names, strings or bare numbers (digits kept exactly); nil when not an array.
    static func idList(_ raw: String?) -> [String]? {
        guard let raw, let v = JSONValue.parse(raw), let items = v.arrayValue else { return nil }
        let texts = items.compactMap(\.text)
        return texts.count == items.count ? texts : nil
    }
}
