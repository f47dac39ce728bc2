import Foundation
import XCTest

@testable import Platforms

/// Answers every request with the body `next()` gives (HTTP 200, JSON content type), in memory: the fuzz tests
/// drive the clients' whole response decoding without sockets.
final class CannedTransport: PlatformTransport {
    private let body = LockedBox<[UInt8]>([])
    private let count = LockedBox(0)

    func set(_ bytes: [UInt8]) { body.withLock { $0 = bytes } }
    var requests: Int { count.current }

    func get(_ url: URL, headers: [String: String], timeout: Duration) async throws -> TransportResponse {
        count.withLock { $0 += 1 }
        return TransportResponse(status: 200, headers: ["Content-Type": "application/json"], body: body.current)
    }

    func postToken(_ request: OAuthTokenRequest, timeout: Duration) async throws -> TransportResponse {
        try await get(request.url, headers: [:], timeout: timeout)
    }
}

/// A deterministic PRNG (SplitMix64) so every run fuzzes the same inputs.
struct FuzzRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
}

/// Bounded-time fuzzing of the ad clients' response decoding: truncated, non-JSON, wrong types, huge numbers and
/// deep nesting. Every input ends in a result or a classified `PlatformError` (no crash, no trap, no hang, nothing
/// unclassified), each within a time bound, and the same seed gives the same inputs.
final class ResponseFuzzTests: XCTestCase {
    static let seed: UInt64 = 0x5EED_0010

    static let tiktokReport = #"""
        {"code":0,"message":"OK","request_id":"r","data":{"list":[
        {"dimensions":{"campaign_id":"7000000000000000001","stat_time_day":"2026-10-01 00:00:00"},
         "metrics":{"spend":"12.34","impressions":"1000","clicks":"17","conversion":"3","total_purchase_value":"99.90"}},
        {"dimensions":{"campaign_id":7000000000000000002,"stat_time_day":"2026-10-02 00:00:00"},
         "metrics":{"spend":"-","impressions":"0","clicks":"0","conversion":"0","total_purchase_value":"0"}}],
        "page_info":{"page":1,"page_size":1000,"total_number":2,"total_page":1}}}
        """#

    static let snapStats = #"""
        {"request_status":"SUCCESS","request_id":"r","timeseries_stats":[{"sub_request_status":"SUCCESS",
        "timeseries_stat":{"id":"acc-1","type":"AD_ACCOUNT","granularity":"DAY",
        "finalized_data_end_time":"2026-10-02T00:00:00.000+02:00","breakdown_stats":{"campaign":[
        {"id":"c-1","type":"CAMPAIGN","timeseries":[{"start_time":"2026-10-01T00:00:00.000+02:00",
        "end_time":"2026-10-02T00:00:00.000+02:00","stats":{"impressions":1000,"swipes":17,"spend":12340000,
        "conversion_purchases":3,"conversion_purchases_value":99900000}}]}]}}}]}
        """#

    /// Values that must never trap a numeric conversion or take unbounded time.
    static let hostileValues = [
        "1e999999999", "-1e999999999", "1e-999999999", String(repeating: "9", count: 5000),
        "-" + String(repeating: "9", count: 400), "9223372036854775808", "-9223372036854775809",
        "18446744073709551616", "0.000000000000000000000000000000000000000000000001", "1.5e308", "-0", "1E+2",
        #""1e400""#, #""99999999999999999999999999999999999999999""#, #""NaN""#, #""Infinity""#, #""-""#, #""""#,
        "true", "null", "[]", "{}", #""12,5""#, #"" 7 ""#, #""0x10""#, #""1_000""#,
    ]

    /// The mutations of one valid body: truncations, byte flips, substituted values, non-JSON and deep nesting.
    static func inputs(from valid: String, random: inout FuzzRandom) -> [(String, [UInt8])] {
        let bytes = Array(valid.utf8)
        var out: [(String, [UInt8])] = []
        // Every truncation of the valid body.
        for cut in 0..<bytes.count { out.append(("truncated at \(cut)", Array(bytes[..<cut]))) }
        // Random byte flips and deletions.
        for i in 0..<300 {
            var mutated = bytes
            for _ in 0...random.below(4) {
                let at = random.below(mutated.count)
                if random.below(2) == 0 {
                    mutated[at] = UInt8(truncatingIfNeeded: random.next())
                } else {
                    mutated.remove(at: at)
                }
            }
            out.append(("flip \(i)", mutated))
        }
        // Each number or string value replaced by a hostile one (wrong types, huge numbers).
        let valueStarts = bytes.indices.filter { i in
            i > 0 && (bytes[i - 1] == UInt8(ascii: ":") || bytes[i - 1] == UInt8(ascii: "["))
                && bytes[i] != UInt8(ascii: "{") && bytes[i] != UInt8(ascii: "[")
        }
        for start in valueStarts {
            var end = start
            if bytes[start] == UInt8(ascii: "\"") {
                end += 1
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
                end += 1
            } else {
                while end < bytes.count,
                    ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]")].contains(bytes[end])
                {
                    end += 1
                }
            }
            for value in hostileValues where random.below(3) == 0 {
                let replaced = Array(bytes[..<start]) + Array(value.utf8) + Array(bytes[end...])
                out.append(("value at \(start) = \(value.prefix(20))", replaced))
            }
        }
        // Non-JSON and oddities.
        for text in [
            "", " ", "<html><body>502</body></html>", "null", "[]", "\"OK\"", "0", "{}", "{\"code\":\"0\"}",
            "\u{FEFF}" + valid, valid + "garbage", valid + valid, "{\"code\":0,\"data\":null}",
            "{\"request_status\":\"SUCCESS\"}", "{\"code\":1e999999,\"data\":{}}",
        ] {
            out.append(("text \(text.prefix(20))", Array(text.utf8)))
        }
        out.append(("invalid UTF-8", [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D]))
        // Deep nesting: far past the parser's limit, as arrays, objects and inside the real envelope.
        for depth in [127, 128, 129, 10_000, 200_000] {
            out.append(("arrays \(depth)", Array(String(repeating: "[", count: depth).utf8)))
            let closed = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            out.append(("closed arrays \(depth)", Array(closed.utf8)))
            out.append(("objects \(depth)", Array(String(repeating: "{\"a\":", count: depth).utf8)))
        }
        let nested = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let deepInData = valid.replacingOccurrences(of: "\"page_info\"", with: "\"x\":\(nested),\"page_info\"")
        out.append(("nested in data", Array(deepInData.utf8)))
        return out
    }

    /// Runs one client call per input and checks its outcome and time.
    func fuzz(
        _ platform: AdPlatform, valid: String, seed: UInt64,
        call: @escaping @Sendable (CannedTransport) async throws -> [DailyMetric]
    ) async throws -> (ok: Int, failed: [String: Int]) {
        var random = FuzzRandom(state: seed)
        let cases = Self.inputs(from: valid, random: &random)
        XCTAssertGreaterThan(cases.count, 500)
        let transport = CannedTransport()
        var ok = 0
        var failed: [String: Int] = [:]
        let clock = ContinuousClock()
        let total = clock.now
        for (label, bytes) in cases {
            transport.set(bytes)
            let started = clock.now
            do {
                _ = try await call(transport)
                ok += 1
            } catch let error as PlatformError {
                failed[error.kindName, default: 0] += 1
                if (try? JSONValue.parse(bytes)) == nil {
                    // A body that does not parse is a delivery fault, whatever its damage.
                    XCTAssertEqual(error.kind, .transient, "\(platform) \(label): \(error)")
                } else if error.kind == .transient {
                    XCTFail("\(platform) \(label): JSON classified as a damaged body: \(error)")
                }
                XCTAssertFalse("\(error)".contains("fuzz-token"), "\(platform) \(label)")
            } catch {
                XCTFail("\(platform) \(label): unclassified \(type(of: error)): \(error)")
            }
            XCTAssertLessThan(clock.now - started, .seconds(2), "\(platform) \(label) took too long")
        }
        XCTAssertLessThan(clock.now - total, .seconds(60), "\(platform): the whole fuzz run is bounded")
        return (ok, failed)
    }

    func testTikTokReportDecodingSurvivesFuzzedBodies() async throws {
        let result = try await fuzz(.tiktok, valid: Self.tiktokReport, seed: Self.seed) { transport in
            let client = TikTokClient(
                configuration: TikTokConfiguration(
                    baseURL: URL(string: "http://127.0.0.1:9/open_api/v1.3/")!, appId: "a", secret: "fuzz-secret",
                    responseTries: 1),
                transport: transport)
            let account = AdAccount(
                platform: .tiktok, id: "1", name: "", currency: "USD", timeZone: "America/Los_Angeles")
            return try await client.dailyMetrics(
                .campaign, account: account, window: DateWindow(first: date("2026-10-01"), last: date("2026-10-02")),
                session: TokenSession(tokens: OAuthTokens(accessToken: "fuzz-token")))
        }
        XCTAssertGreaterThan(result.ok, 0, "some mutations stay valid: \(result)")
        XCTAssertGreaterThan(result.failed["transient", default: 0], 0, "\(result)")
        XCTAssertGreaterThan(result.failed["malformed_response", default: 0], 0, "\(result)")
    }

    func testSnapStatsDecodingSurvivesFuzzedBodies() async throws {
        let result = try await fuzz(.snapchat, valid: Self.snapStats, seed: Self.seed ^ 1) { transport in
            let client = SnapchatClient(
                configuration: SnapchatConfiguration(
                    apiBaseURL: URL(string: "http://127.0.0.1:9/v1/")!,
                    tokenURL: URL(string: "http://127.0.0.1:9/login/oauth2/access_token")!, clientId: "c",
                    clientSecret: "fuzz-secret", responseTries: 1),
                transport: transport)
            let account = AdAccount(
                platform: .snapchat, id: "acc-1", name: "", currency: "EUR", timeZone: "Europe/Paris")
            return try await client.dailyMetrics(
                .campaign, account: account, window: DateWindow(first: date("2026-10-01"), last: date("2026-10-01")),
                session: TokenSession(tokens: OAuthTokens(accessToken: "fuzz-token")))
        }
        XCTAssertGreaterThan(result.ok, 0, "\(result)")
        XCTAssertGreaterThan(result.failed["transient", default: 0], 0, "\(result)")
        XCTAssertGreaterThan(result.failed["malformed_response", default: 0], 0, "\(result)")
    }

    /// The same seed yields byte-identical inputs (the fuzz run is reproducible).
    func testFuzzInputsAreDeterministic() {
        var a = FuzzRandom(state: Self.seed)
        var b = FuzzRandom(state: Self.seed)
        let first = Self.inputs(from: Self.tiktokReport, random: &a).map(\.1)
        let second = Self.inputs(from: Self.tiktokReport, random: &b).map(\.1)
        XCTAssertEqual(first, second)
    }

    /// The parser's nesting limit: 128 levels parse, 129 and a million are a classified error at the limit's
    /// offset, never a stack overflow, and fast.
    func testNestingIsBoundedWithoutRecursionBlowup() throws {
        let ok = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        XCTAssertNoThrow(try JSONValue.parse(ok))
        for depth in [129, 1_000_000] {
            let clock = ContinuousClock()
            let started = clock.now
            let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            do {
                _ = try JSONValue.parse(text)
                XCTFail("parsed \(depth) levels")
            } catch {
                XCTAssertEqual(error.offset, 128, "\(depth)")
                XCTAssertTrue(error.reason.contains("nesting"), "\(error)")
            }
            XCTAssertLessThan(clock.now - started, .seconds(2))
        }
    }
}
