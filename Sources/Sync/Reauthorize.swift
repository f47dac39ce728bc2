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
    /// The connection's organization is deleted (`deleted`) or its processing restricted (a `restrict` or
    /// `object` request): no tokens are stored for it (privacy policy sections 7 to 9).
    case organizationUnavailable(deleted: Bool)
}

extension ConnectionStore {
    /// Replaces the tokens of an existing connection after the user authorized the app again (issue 14).
    ///
    /// In one transaction, the organization row share-locked and then the connection row locked (the erasure's lock
    /// order): refuses a deleted or restricted organization (nothing changed), else seals and stores the new
    /// tokens (a refresh token absent from the new grant clears the old one: it belonged to the revoked grant),
    /// advances the token generation (sql/067) and clears any token-refresh lease, so a refresh or a sync session
    /// that started from the old tokens cannot store its result over the new ones, nor mark the connection
    /// `needs_reauth` for a failure of the old grant. It sets the status back to `active`, clears `last_error`,
    /// marks the open `reauth_required` notification sent, and makes the connection due now. The connection keeps
    /// its id, so its ad-account rows, metrics and sync history stay as they are: the next sync writes into the
    /// same rows (nothing is counted twice, unlike a second `connections add`).
    public func reauthorize(_ id: Int64, tokens: OAuthTokens, on c: PGConnection) async throws -> ReauthorizeOutcome {
        try await c.transaction { c in try await reauthorize(id, tokens: tokens, inTransaction: c) }
    }

    /// ``reauthorize(_:tokens:on:)`` inside a transaction the caller opened (and commits or rolls back), so that
    /// other writes share its fate (the webhook's replay record).
    public func reauthorize(_ id: Int64, tokens: OAuthTokens, inTransaction c: PGConnection) async throws
        -> ReauthorizeOutcome
    {
        let vault = self.vault
        guard
            let org: Int64 = try await c.query(
                "SELECT organization_id FROM nexcomet.ad_connections WHERE id = \(id)"
            ).first?.decode(0)
        else { return .notFound }
        let o = try await c.query(
            """
            SELECT deleted_at IS NOT NULL, processing_restricted FROM nexcomet.organizations
             WHERE id = \(org) FOR SHARE
            """)
        let rows = try await c.query("SELECT status FROM nexcomet.ad_connections WHERE id = \(id) FOR UPDATE")
        guard let row = rows.first else { return .notFound }
        let status: String = try row.decode(0)
        guard status != "disconnected" else { return .disconnected }
        let deleted = try o.first?.decode(0) as Bool? ?? true
        let restricted = try o.first?.decode(1) as Bool? ?? false
        guard !deleted, !restricted else { return .organizationUnavailable(deleted: deleted) }
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
                   refresh_enqueued_at = NULL, token_generation = token_generation + 1,
                   token_refresh_lease_owner = NULL, token_refresh_lease_until = NULL,
                   status = 'active', last_error = NULL, next_sync_at = now(), updated_at = now()
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
