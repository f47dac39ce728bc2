import Foundation
import Platforms
import Postgres
import Privacy

/// What ``ConnectionStore/reauthorize(_:tokens:on:)`` found.
public enum ReauthorizeOutcome: Sendable, Equatable {
    /// Tokens replaced; the connection is active and due for a sync now. `wasNeedsReauth`: it had been marked.
    case reauthorized(wasNeedsReauth: Bool)
    case notFound
    /// The connection was disconnected (its tokens deleted on purpose): a new grant is `connections add`.
    case disconnected
}

extension ConnectionStore {
    /// Replaces the tokens of an existing connection after the user authorized the app again (issue 14).
    ///
    /// In one transaction, the connection row locked: seals and stores the new tokens (a refresh token absent from
    /// the new grant clears the old one: it belonged to the revoked grant), sets the status back to `active`,
    /// clears `last_error`, marks the open `reauth_required` notification sent, and makes the connection due now.
    /// The connection keeps its id, so its ad-account rows, metrics and sync history stay as they are: the next
    /// sync writes into the same rows (nothing is counted twice, unlike a second `connections add`).
    public func reauthorize(_ id: Int64, tokens: OAuthTokens, on c: PGConnection) async throws -> ReauthorizeOutcome {
        try await c.transaction { c in try await reauthorize(id, tokens: tokens, inTransaction: c) }
    }

    /// ``reauthorize(_:tokens:on:)`` inside a transaction the caller opened (and commits or rolls back), so that
    /// other writes share its fate (the webhook's replay record).
    public func reauthorize(_ id: Int64, tokens: OAuthTokens, inTransaction c: PGConnection) async throws
        -> ReauthorizeOutcome
    {
        let vault = self.vault
        let rows = try await c.query("SELECT status FROM nexcomet.ad_connections WHERE id = \(id) FOR UPDATE")
        guard let row = rows.first else { return .notFound }
        let status: String = try row.decode(0)
        guard status != "disconnected" else { return .disconnected }
        let access = try vault.seal(
            tokens.accessToken, associatedData: Self.associatedData(connectionID: id, column: "access_token"))
        let refresh = try tokens.refreshToken.map {
            try vault.seal($0, associatedData: Self.associatedData(connectionID: id, column: "refresh_token"))
        }
        try await c.execute(
            """
            UPDATE nexcomet.ad_connections
               SET access_token_ciphertext = \(Bytea.encode(access))::bytea,
                   refresh_token_ciphertext = \(refresh.map(Bytea.encode))::bytea,
                   token_key_id = \(vault.keyRing.activeKeyID),
                   access_token_expires_at = \(tokens.accessTokenExpiresAt),
                   refresh_token_expires_at = \(tokens.refreshTokenExpiresAt),
                   refresh_enqueued_at = NULL, status = 'active', last_error = NULL, next_sync_at = now(),
                   updated_at = now()
             WHERE id = \(id)
            """)
        try await c.execute(
            """
            UPDATE nexcomet.notifications SET sent_at = now()
             WHERE connection_id = \(id) AND kind = 'reauth_required' AND sent_at IS NULL
            """)
        return .reauthorized(wasNeedsReauth: status == "needs_reauth")
    }

    /// Associated data of the sealed token document a `POST /webhooks/reauthorized` carries for connection `id`:
    /// a sealed document copied into a request for another connection does not open.
    public static func reauthorizeAssociatedData(connectionID: Int64) -> String {
        TokenVault.associatedData(table: "webhooks_reauthorized", rowID: String(connectionID), column: "tokens")
    }
}
