import Foundation
import HTTP

/// A failure the sandbox can inject into API responses.
public enum FaultKind: String, Sendable, CaseIterable {
    /// TikTok: HTTP 200 with code 40100. Snap: HTTP 429 with `X-Rate-Limit-*` and `Retry-After`.
    case rateLimit = "rate_limit"
    /// TikTok: HTTP 500, HTTP 503 or HTTP 200 with code 50000 (in turn). Snap: HTTP 500 or 503.
    case serverError = "server_error"
    /// Delays the response by `FaultConfig.slowDelay`, then answers normally.
    case slow
    /// HTTP 200 with a body that is not valid JSON.
    case malformedJSON = "malformed_json"
    /// Declares the full `Content-Length`, sends half the body, closes the connection.
    case truncatedBody = "truncated_body"
    /// TikTok reports only: code 40067 "Your query is too large".
    case queryTooLarge = "query_too_large"
    /// TikTok code 40102 / Snap HTTP 401, whatever the token's real state.
    case expiredToken = "expired_token"
    /// TikTok code 40105 / Snap HTTP 401, whatever the token's real state.
    case revokedToken = "revoked_token"
    /// HTTP 200 with the real body cut in half and a `Content-Length` matching the cut (a proxy relaying a
    /// dropped upstream): the transfer completes, the JSON ends early.
    case truncatedJSON = "truncated_json"
    /// HTTP 200 with a `text/html` page instead of JSON (a gateway's or captive portal's page).
    case htmlBody = "html_body"
    /// HTTP 200 with valid JSON that claims success but is not the documented shape (TikTok `data.list` is a
    /// string; Snap has no entity or stats list).
    case wrongShape = "wrong_shape"
}

extension FaultKind {
    /// The faults that damage an HTTP 200 body (what a client should retry on the request itself).
    public static let damagedBodies: [FaultKind] = [
        .malformedJSON, .truncatedBody, .truncatedJSON, .htmlBody, .wrongShape,
    ]

    /// `response` with its body cut in half and its `Content-Length` (set by the server from the body) matching.
    static func cutInHalf(_ response: HTTPResponse) -> HTTPResponse {
        var r = response
        r.body = Array(r.body.prefix(r.body.count / 2))
        return r
    }

    /// The HTML page of `html_body`.
    static let htmlPage = HTTPResponse.text(
        "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>\n",
        contentType: "text/html; charset=utf-8")
}

/// A targeted fault: fires for matching requests, optionally only `count` times.
public struct FaultRule: Sendable, Equatable {
    /// What to inject.
    public var kind: FaultKind
    /// Only requests to this API (nil: both).
    public var platform: SandboxPlatform?
    /// Only requests for this advertiser / ad account id (nil: any).
    public var account: String?
    /// Only requests whose path contains this text (nil: any). Needed to target the OAuth endpoints,
    /// which probabilistic faults never touch.
    public var pathContains: String?
    /// Only requests whose raw (percent-encoded) query string contains this text (nil: any), e.g.
    /// `AUCTION_ADVERTISER` or `granularity=TOTAL` for the account-totals requests.
    public var queryContains: String?
    /// How many times to fire (nil: every matching request).
    public var count: Int?

    /// Creates a rule; nil filters match everything.
    public init(
        kind: FaultKind, platform: SandboxPlatform? = nil, account: String? = nil, pathContains: String? = nil,
        queryContains: String? = nil, count: Int? = nil
    ) {
        self.queryContains = queryContains
        self.kind = kind
        self.platform = platform
        self.account = account
        self.pathContains = pathContains
        self.count = count
    }
}

/// Fault injection settings: seeded probabilities per kind, plus targeted rules checked first.
///
/// Probabilities apply to API requests only (not OAuth token endpoints, not `/_sandbox/`); each request
/// draws from a PRNG seeded by the sandbox seed, so a run with the same request order sees the same faults.
public struct FaultConfig: Sendable, Equatable {
    /// Probability in 0...1 per kind (default: none).
    public var probabilities: [FaultKind: Double]
    /// Delay of the `slow` fault (default 500 ms).
    public var slowDelay: Duration
    /// Targeted rules, first match wins (default: none).
    public var rules: [FaultRule]

    /// Creates a fault configuration; the default injects nothing.
    public init(
        probabilities: [FaultKind: Double] = [:], slowDelay: Duration = .milliseconds(500), rules: [FaultRule] = []
    ) {
        self.probabilities = probabilities
        self.slowDelay = slowDelay
        self.rules = rules
    }

    /// No faults.
    public static let none = FaultConfig()

    var json: String {
        let probs = FaultKind.allCases.compactMap { k in probabilities[k].map { (k.rawValue, "\($0)") } }
        let ms = slowDelay.components.seconds * 1000 + slowDelay.components.attoseconds / 1_000_000_000_000_000
        return JSONText.object([
            ("probabilities", JSONText.object(probs)),
            ("slow_delay_ms", "\(ms)"),
            (
                "rules",
                JSONText.array(
                    rules.map { r in
                        var f: [(String, String)] = [("kind", JSONText.string(r.kind.rawValue))]
                        if let p = r.platform { f.append(("platform", JSONText.string(p.rawValue))) }
                        if let a = r.account { f.append(("account", JSONText.string(a))) }
                        if let p = r.pathContains { f.append(("path_contains", JSONText.string(p))) }
                        if let q = r.queryContains { f.append(("query_contains", JSONText.string(q))) }
                        if let c = r.count { f.append(("count", "\(c)")) }
                        return JSONText.object(f)
                    })
            ),
        ])
    }

    /// Parses the JSON accepted by `POST /_sandbox/faults`; nil with a reason on bad input.
    static func parse(_ text: String) -> Result<FaultConfig, SandboxInputError> {
        guard let v = JSONValue.parse(text), case .object = v else {
            return .failure(SandboxInputError("body is not a JSON object"))
        }
        var config = FaultConfig()
        if case .object(let probs)? = v["probabilities"] {
            for (name, value) in probs {
                guard let kind = FaultKind(rawValue: name) else {
                    return .failure(SandboxInputError("unknown fault kind \(name)"))
                }
                guard let p = value.doubleValue, (0...1).contains(p) else {
                    return .failure(SandboxInputError("probability of \(name) must be in 0...1"))
                }
                config.probabilities[kind] = p
            }
        }
        if let raw = v["slow_delay_ms"] {
            guard let ms = raw.intValue, (0...600_000).contains(ms) else {
                return .failure(SandboxInputError("slow_delay_ms must be an integer in 0...600000"))
            }
            config.slowDelay = .milliseconds(ms)
        }
        for r in v["rules"]?.arrayValue ?? [] {
            guard let k = r["kind"]?.text, let kind = FaultKind(rawValue: k) else {
                return .failure(SandboxInputError("rule without a known kind"))
            }
            var rule = FaultRule(kind: kind)
            if let p = r["platform"]?.text {
                guard let platform = SandboxPlatform(rawValue: p == "snap" ? "snapchat" : p) else {
                    return .failure(SandboxInputError("unknown platform \(p)"))
                }
                rule.platform = platform
            }
            rule.account = r["account"]?.text
            rule.pathContains = r["path_contains"]?.text
            rule.queryContains = r["query_contains"]?.text
            if let raw = r["count"] {
                guard let n = raw.intValue, (0...1_000_000).contains(n) else {
                    return .failure(SandboxInputError("rule count must be an integer in 0...1000000"))
                }
                rule.count = n
            }
            config.rules.append(rule)
        }
        return .success(config)
    }
}

/// Decides faults for requests; lives inside the sandbox state lock.
struct FaultEngine {
    var config = FaultConfig()
    var rng: SplitMix64
    var serverErrorTurn = 0

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed ^ 0xFA17_FA17)
    }

    mutating func decide(
        platform: SandboxPlatform, account: String?, path: String, query: String = "", isOAuth: Bool, isReport: Bool
    ) -> FaultKind? {
        for i in config.rules.indices {
            let r = config.rules[i]
            if let p = r.platform, p != platform { continue }
            if let a = r.account, a != account { continue }
            if let q = r.queryContains, !query.contains(q) { continue }
            if let p = r.pathContains {
                if !path.contains(p) { continue }
            } else if isOAuth {
                continue
            }
            if r.kind == .queryTooLarge && !isReport { continue }
            if let c = r.count {
                if c <= 0 { continue }
                config.rules[i].count = c - 1
            }
            return r.kind
        }
        guard !isOAuth else { return nil }
        for kind in FaultKind.allCases {
            guard let p = config.probabilities[kind], p > 0 else { continue }
            let draw = Double(rng.next() >> 11) / Double(1 << 53)
            if draw < p && (kind != .queryTooLarge || isReport) { return kind }
        }
        return nil
    }
}

/// Bad input to a control endpoint, with a message safe to send back.
struct SandboxInputError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
