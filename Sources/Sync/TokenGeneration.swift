import Foundation
import Platforms
import Postgres

/// The token generation (sql/067) a job's platform requests use: the one it loaded, advanced by the job's own
/// refreshes. A refresh result is stored only while the row still holds this generation, and a grant error marks
/// the connection `needs_reauth` only for it, so tokens a reauthorization (or another job) stored meanwhile are
/// neither overwritten nor wiped.
actor TokenGeneration {
    private(set) var value: Int64

    init(_ value: Int64) { self.value = value }

    /// Stores `fresh`, refreshed from this generation's tokens, and advances to the stored generation.
    ///
    /// A job's ``Platforms/TokenSession`` persists its refreshes through this (`onRefresh`), so the session only
    /// goes on with tokens that are stored.
    /// - Throws: ``TokenRefreshConflict`` when the row moved on (reauthorized, refreshed elsewhere, wiped or
    ///   disconnected): nothing is written, and the job is retried with the stored tokens.
    func store(_ fresh: OAuthTokens, connectionID: Int64, store: ConnectionStore, pool: PGPool) async throws {
        let from = value
        let stored = try await pool.withConnection { c in
            try await store.saveRefreshedTokens(connectionID, fresh, replacing: from, on: c)
        }
        guard let stored else {
            throw TokenRefreshConflict(
                connectionID: connectionID,
                message: "the connection's tokens changed during the refresh; the refreshed tokens were not stored")
        }
        value = stored
    }
}
