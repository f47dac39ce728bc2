import Foundation
import HTTP
import Postgres
import Privacy

/// A logged-in operator's session.
struct ConsoleSession: Sendable {
    /// Short prefix of SHA-256(login token): who did it, in the audit log, without the token.
    var operatorName: String
    /// The form token of this session: HMAC-SHA256(session id, "nexjobs-console-csrf") in hex. A form from another
    /// (older) session carries another value and is refused.
    var csrf: String
}

/// Operator access to the console.
///
/// - Tokens come from `NEXJOBS_CONSOLE_TOKENS` (comma-separated, each at least 16 characters) and are kept only as
///   SHA-256 hashes, compared in constant time (every hash is compared, match or not).
/// - A login creates a random 256-bit session id, sent as cookie `nexjobs_session` (HttpOnly, SameSite=Strict,
///   Path=/, Secure behind TLS: `X-Forwarded-Proto: https` or `NEXJOBS_CONSOLE_SECURE_COOKIE=1`). The server
///   stores only SHA-256(id) in `nexjobs.console_sessions` with its expiry (default 12 h), so sessions survive a
///   restart and work across several `serve` processes.
public struct ConsoleAccess: Sendable {
    let tokenHashes: [[UInt8]]
    public var sessionLifetime: Duration = .seconds(12 * 3600)
    public var alwaysSecureCookie = false
    /// Least time between two login attempts from one address (`NEXJOBS_CONSOLE_LOGIN_INTERVAL`, 100ms...1h, default
    /// 1s), shared by every `serve` process through `nexjobs.rate_limits` (key `console-login:<address>`). An attempt
    /// sooner is refused with 429 before its token is looked at, so guessing runs at one try per interval per
    /// address. Behind a reverse proxy every operator shares the proxy's address (and so the interval); forwarded
    /// headers are not trusted, they are the client's to write.
    public var loginInterval: Duration = .seconds(1)
    static let loginIntervalRange: ClosedRange<Duration> = .milliseconds(100)...(.seconds(3600))
    static let cookieName = "nexjobs_session"

    /// Nil when `NEXJOBS_CONSOLE_TOKENS` is unset or empty (the console then answers 503).
    public static func from(environment: [String: String]) throws -> ConsoleAccess? {
        // The other console settings are checked even when the console is off: a typo must not wait for the day
        // the tokens are set.
        let interval = try CheckedInput.environment(environment, "NEXJOBS_CONSOLE_LOGIN_INTERVAL") {
            try CheckedInput.duration($0, name: $1, range: loginIntervalRange)
        }
        let secure = environment["NEXJOBS_CONSOLE_SECURE_COOKIE"]
        if let secure, secure != "0" && secure != "1" {
            throw WebServiceError("NEXJOBS_CONSOLE_SECURE_COOKIE must be 0 or 1")
        }
        guard let text = environment["NEXJOBS_CONSOLE_TOKENS"], !text.isEmpty else { return nil }
        let tokens = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !tokens.isEmpty else { return nil }
        for t in tokens where t.utf8.count < 16 || t.utf8.count > 512 {
            throw WebServiceError("each NEXJOBS_CONSOLE_TOKENS token must be 16...512 characters")
        }
        var access = ConsoleAccess(tokens: tokens)
        if let interval { access.loginInterval = interval }
        access.alwaysSecureCookie = secure == "1"
        return access
    }

    public init(tokens: [String]) {
        tokenHashes = tokens.map { sha256($0) }
    }

    /// The operator name for a valid token, nil otherwise. Compares against every configured hash.
    func check(token: String) -> String? {
        let given = sha256(token)
        var match = false
        for h in tokenHashes where constantTimeEquals(h, given) { match = true }
        return match ? String(hexEncode(given).prefix(12)) : nil
    }

    /// Books this login attempt's slot for `address`; false (nothing booked) when the previous attempt from it was
    /// less than `loginInterval` ago. Returns the wait left in `retryAfter` seconds (at least 1) when refused.
    func admitLogin(from address: String, pool: PGPool) async throws -> (admitted: Bool, retryAfter: Int) {
        let key = "console-login:\(address.prefix(100))"
        let spacing = loginInterval.microsecondsSaturating
        let wait: Int64? = try await pool.query(
            "SELECT nexjobs.rate_limit_reserve_all(ARRAY[\(key)]::text[], ARRAY[\(spacing)]::bigint[], 0)"
        ).first?.decode(0)
        if wait != nil { return (true, 0) }
        let left: Double =
            try await pool.query(
                "SELECT greatest(0, extract(epoch FROM next_slot - now()))::float8 FROM nexjobs.rate_limits WHERE key = \(key)"
            ).first?.decode(0) ?? 1
        return (false, max(1, Int(left.rounded(.up))))
    }

    static func csrf(forSessionID id: [UInt8]) -> String {
        hexEncode(hmacSHA256(key: id, message: Array("nexjobs-console-csrf".utf8)))
    }

    /// Creates a session and returns the Set-Cookie value.
    func createSession(operatorName: String, request: HTTPRequest, pool: PGPool) async throws -> String {
        let id = try secureRandomBytes(32)
        let seconds = sessionLifetime.components.seconds
        try await pool.execute("DELETE FROM nexjobs.console_sessions WHERE expires_at < now()")
        try await pool.execute(
            """
            INSERT INTO nexjobs.console_sessions (id_hash, operator, expires_at)
            VALUES (decode(\(hexEncode(sha256(id))), 'hex'), \(operatorName), now() + \(seconds) * interval '1 second')
            """)
        return cookie(hexEncode(id), maxAge: Int(seconds), request: request)
    }

    func cookie(_ value: String, maxAge: Int, request: HTTPRequest) -> String {
        let secure = alwaysSecureCookie || request.headers["X-Forwarded-Proto"]?.lowercased() == "https"
        return
            "\(Self.cookieName)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict\(secure ? "; Secure" : "")"
    }

    /// The session id bytes from the request's cookie, if well-formed.
    static func sessionID(_ request: HTTPRequest) -> [UInt8]? {
        for header in request.headers.values(for: "Cookie") {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard kv.count == 2, kv[0] == cookieName else { continue }
                let hex = Array(kv[1].utf8)
                guard hex.count == 64 else { return nil }
                var bytes: [UInt8] = []
                var i = 0
                while i < 64 {
                    guard let v = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                    bytes.append(v)
                    i += 2
                }
                return bytes
            }
        }
        return nil
    }

    /// The live session of the request, nil when there is none or it expired.
    func session(_ request: HTTPRequest, pool: PGPool) async throws -> ConsoleSession? {
        guard let id = Self.sessionID(request) else { return nil }
        guard
            let row = try await pool.query(
                """
                SELECT operator FROM nexjobs.console_sessions
                 WHERE id_hash = decode(\(hexEncode(sha256(id))), 'hex') AND expires_at > now()
                """
            ).first
        else { return nil }
        return ConsoleSession(operatorName: try row.decode(0), csrf: Self.csrf(forSessionID: id))
    }

    func deleteSession(_ request: HTTPRequest, pool: PGPool) async throws {
        guard let id = Self.sessionID(request) else { return }
        try await pool.execute(
            "DELETE FROM nexjobs.console_sessions WHERE id_hash = decode(\(hexEncode(sha256(id))), 'hex')")
    }
}
