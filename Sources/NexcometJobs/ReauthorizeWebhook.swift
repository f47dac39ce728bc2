import Foundation
import HTTP
import Platforms
import Postgres
import Privacy
import Sync

/// `POST /webhooks/reauthorized`: the Nexcomet app tells NexJobs that the user authorized the app again.
///
/// Signed exactly like `/webhooks/resync` (``WebService/signatureRefusal(_:)``). Body:
/// `{"connection_id": N, "sealed_tokens": "<base64>"}`. Tokens never travel in plaintext: `sealed_tokens` is the
/// token document `{"access_token": "...", "refresh_token": "...", "expires_in": 1800}` (refresh_token and
/// expires_in optional) sealed with ``Privacy/TokenVault`` under a key of the shared `NEXJOBS_TOKEN_KEYS` ring
/// (AES-256-GCM, the key id in its header) with associated data
/// ``Sync/ConnectionStore/reauthorizeAssociatedData(connectionID:)``, so a sealed document captured from one
/// request does not open for another connection. Why not "the app writes the tokens itself and only names the
/// connection": NexJobs stays the only writer of the token columns (one sealing format, one row lock against a
/// refresh in flight).
///
/// Replays: the signature's 5-minute timestamp window alone does not stop them (a captured request stays valid for
/// those minutes and would restore the tokens it carried, undoing a later rotation, and set the connection active
/// again). So each accepted delivery is recorded in `nexjobs.webhook_deliveries` (sql/066), keyed by the SHA-256 of
/// its signed message `<timestamp>.<body>`, in the same transaction as the token change: the same request again
/// answers 409 "already processed" and changes nothing, while a refused or failed request records nothing and may
/// be retried. Rows are kept until a window past their timestamp's validity, then deleted by a later delivery.
/// The signature covers the timestamp and body but not the path: this body replayed to `/webhooks/resync` is
/// accepted there as a resync of the same connection (harmless: it only enqueues that connection's sync, at most
/// one pending). The scheme stays as it is because the Nexcomet app already signs this way.
///
/// The accepted request runs ``Sync/ConnectionStore/reauthorize(_:tokens:inTransaction:)``, the path of
/// `nexjobs connections reauthorize`: 200 `{"connection_id": N, "was_needs_reauth": true|false}`.
/// Errors: 503 webhooks or token keys not configured, 401 signature, 400 body or sealed tokens that do not open
/// (the reason is not detailed), 404 unknown connection, 409 disconnected connection or deleted or restricted
/// organization (nothing changed), 409 already processed (a replay). Tokens are never logged.
extension WebService {
    func reauthorized(_ request: HTTPRequest) async -> HTTPResponse {
        func refuse(_ status: Int, _ message: String) -> HTTPResponse { webhookRefusal(status, message, request) }
        if let (status, message) = signatureRefusal(request) { return refuse(status, message) }
        guard let store = tokenStore else { return refuse(503, "token keys are not configured (NEXJOBS_TOKEN_KEYS)") }
        struct Body: Decodable {
            var connection_id: RowID
            var sealed_tokens: String
        }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(request.body)), body.connection_id.value > 0,
            let sealed = Data(base64Encoded: body.sealed_tokens)
        else {
            return refuse(400, "body must be {\"connection_id\": N, \"sealed_tokens\": \"<base64>\"}")
        }
        let id = body.connection_id.value
        struct Document: Decodable {
            var access_token: String
            var refresh_token: String?
            var expires_in: Int?
        }
        guard
            let plain = try? store.vault.open(
                Array(sealed), associatedData: ConnectionStore.reauthorizeAssociatedData(connectionID: id)),
            let doc = try? JSONDecoder().decode(Document.self, from: Data(plain.utf8)), !doc.access_token.isEmpty,
            (doc.expires_in ?? 1) > 0, (doc.expires_in ?? 1) <= 10 * 365 * 86_400
        else { return refuse(400, "sealed_tokens do not open for this connection or are not a token document") }
        var tokens = OAuthTokens(
            accessToken: doc.access_token, refreshToken: doc.refresh_token.flatMap { $0.isEmpty ? nil : $0 })
        if let seconds = doc.expires_in { tokens.accessTokenExpiresAt = now().addingTimeInterval(Double(seconds)) }
        // The signature check passed, so the header is a plain number of seconds.
        let stamp = request.headers["X-Nexjobs-Timestamp"] ?? ""
        let digest = sha256(Array((stamp + ".").utf8) + request.body)
        let validUntil = Date(timeIntervalSince1970: Double(stamp) ?? 0).addingTimeInterval(maxSkew)
        /// Rolls the transaction back (no delivery recorded) when the reauthorization did not happen.
        struct NotApplied: Error { var outcome: ReauthorizeOutcome }
        do {
            let outcome: ReauthorizeOutcome?
            do {
                outcome = try await pool.withTransaction { c -> ReauthorizeOutcome? in
                    // Rows a whole window past their validity: no server whose clock is within `maxSkew` of the
                    // database's accepts their request any more.
                    try await c.execute(
                        """
                        DELETE FROM nexjobs.webhook_deliveries
                         WHERE expires_at < now() - \(maxSkew)::float8 * interval '1 second'
                        """)
                    // A concurrent identical delivery holds this key until it commits (then: replay) or rolls
                    // back (then: this one goes on).
                    let fresh = try await c.query(
                        """
                        INSERT INTO nexjobs.webhook_deliveries (webhook, digest, expires_at)
                        VALUES ('reauthorized', decode(\(hexEncode(digest)), 'hex'), \(validUntil))
                        ON CONFLICT (webhook, digest) DO NOTHING RETURNING 1
                        """)
                    guard !fresh.isEmpty else { return nil }
                    let outcome = try await store.reauthorize(id, tokens: tokens, inTransaction: c)
                    guard case .reauthorized = outcome else { throw NotApplied(outcome: outcome) }
                    return outcome
                }
            } catch let e as NotApplied { outcome = e.outcome }
            switch outcome {
            case nil: return refuse(409, "already processed: this signed request was accepted before")
            case .notFound: return refuse(404, "connection \(id) does not exist")
            case .disconnected: return refuse(409, "connection \(id) was disconnected")
            case .organizationUnavailable(let deleted):
                return refuse(409, "connection \(id) belongs to a \(deleted ? "deleted" : "restricted") organization")
            case .reauthorized(let was):
                logger.info("webhook reauthorized", ("connection_id", String(id)), ("was_needs_reauth", "\(was)"))
                return .json(#"{"connection_id":\#(id),"was_needs_reauth":\#(was)}"#)
            }
        } catch {
            logger.warning("webhook failed", ("error", "\(type(of: error))"))
            return .json(#"{"error":"database unavailable"}"#, status: 503)
        }
    }

    /// Why a webhook request is refused before its body is read (status and reason), or nil when its timestamp
    /// and signature are valid. Shared by every webhook.
    func signatureRefusal(_ request: HTTPRequest) -> (Int, String)? {
        guard let secret = webhookSecret else { return (503, "webhooks are disabled") }
        guard let stamp = request.headers["X-Nexjobs-Timestamp"], let seconds = Double(stamp),
            stamp.allSatisfy(\.isNumber)
        else { return (401, "missing or malformed X-Nexjobs-Timestamp (Unix seconds)") }
        guard abs(now().timeIntervalSince1970 - seconds) <= maxSkew else {
            return (401, "X-Nexjobs-Timestamp is more than \(Int(maxSkew)) s away from now")
        }
        guard let given = request.headers["X-Nexjobs-Signature"], given.hasPrefix("sha256="),
            constantTimeEquals(
                Array(given.utf8), Array(Self.signature(secret: secret, timestamp: stamp, body: request.body).utf8))
        else { return (401, "missing or wrong X-Nexjobs-Signature") }
        return nil
    }
}
