import Foundation
import Platforms
import Postgres
import Privacy

/// A connection row with its tokens decrypted.
public struct StoredConnection: Sendable {
    public var id: Int64
    public var organizationID: Int64
    public var platform: AdPlatform
    /// `active`, `needs_reauth` or `disconnected`.
    public var status: String
    /// The decrypted tokens with their expiry times; nil when the row holds no access token.
    public var tokens: OAuthTokens?
    /// Key id of the stored ciphertexts.
    public var keyID: String?
    /// How many times the tokens were written or wiped (sql/067): a refresh or a grant error computed from these
    /// tokens may store or mark only while the row still has this generation.
    public var tokenGeneration: Int64 = 0
}

/// Why a stored connection could not be used. Safe to log: it never contains token text.
public struct ConnectionStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notFound
        case invalidRow
        case undecryptable
    }
    public var code: Code
    public var connectionID: Int64
    public var message: String
    public var description: String { "connection \(connectionID): \(message)" }
}

/// Reads and writes a connection's OAuth tokens, sealed by the ``TokenVault`` and bound to their row and column.
///
/// Associated data: `ad_connections:<id>:access_token` and `ad_connections:<id>:refresh_token`, so a ciphertext
/// copied to another row or column fails to open. Writes always seal under the ring's active key.
public struct ConnectionStore: Sendable {
    public let vault: TokenVault

    public init(vault: TokenVault) { self.vault = vault }

    /// Associated data of a connection's token column (`access_token` or `refresh_token`).
    public static func associatedData(connectionID: Int64, column: String) -> String {
        TokenVault.associatedData(table: "ad_connections", rowID: String(connectionID), column: column)
    }

    /// Inserts an active connection with sealed tokens, due for its first sync now.
    ///
    /// The row is inserted first so its id can be bound into the ciphertexts, then updated, in one transaction.
    /// - Returns: the new connection id.
    public func create(
        organizationID: Int64, platform: AdPlatform, tokens: OAuthTokens, scopes: [String] = [],
        on connection: PGConnection
    ) async throws -> Int64 {
        try await connection.transaction { c in
            let rows = try await c.query(
                """
                INSERT INTO nexcomet.ad_connections (organization_id, platform, scopes)
                VALUES (\(organizationID), \(platform.rawValue), \(scopes)::text[]) RETURNING id
                """)
            let id: Int64 = try rows.first!.decode(0)
            try await saveTokens(id, tokens, on: c)
            return id
        }
    }

    /// Loads a connection and opens its tokens.
    ///
    /// - Parameter forUpdate: lock the row (`FOR UPDATE`) inside the caller's transaction.
    /// - Throws: ``ConnectionStoreError`` (`.notFound`, `.undecryptable` wrapping the vault's reason).
    public func load(_ id: Int64, on connection: PGConnection, forUpdate: Bool = false) async throws
        -> StoredConnection
    {
        let rows = try await connection.query(
            """
            SELECT organization_id, platform, status, access_token_ciphertext, refresh_token_ciphertext,
                   token_key_id, access_token_expires_at, refresh_token_expires_at, token_generation
              FROM nexcomet.ad_connections WHERE id = \(id) \(unsafeSQL: forUpdate ? "FOR UPDATE" : "")
            """)
        guard let row = rows.first else {
            throw ConnectionStoreError(code: .notFound, connectionID: id, message: "no such connection")
        }
        guard let platform = AdPlatform(rawValue: try row.decode(1)) else {
            throw ConnectionStoreError(code: .invalidRow, connectionID: id, message: "unknown platform")
        }
        var stored = StoredConnection(
            id: id, organizationID: try row.decode(0), platform: platform, status: try row.decode(2), tokens: nil,
            keyID: try row.decode(5), tokenGeneration: try row.decode(8))
        guard let accessText = row.text(3) else { return stored }
        let access = try open(accessText, id: id, column: "access_token")
        let refresh = try row.text(4).map { try open($0, id: id, column: "refresh_token") }
        stored.tokens = OAuthTokens(
            accessToken: access, refreshToken: refresh, accessTokenExpiresAt: try row.decode(6),
            refreshTokenExpiresAt: try row.decode(7))
        return stored
    }

    /// Seals and stores tokens (under the active key), their expiry times, clears `refresh_enqueued_at` and advances
    /// the token generation.
    ///
    /// A nil refresh token keeps the stored one (Snap may omit it on refresh); a nil refresh expiry keeps the
    /// stored expiry likewise. Unconditional: for tokens that replace whatever is stored (a new grant). A refresh
    /// stores with ``saveRefreshedTokens(_:_:replacing:on:)`` instead.
    public func saveTokens(_ id: Int64, _ tokens: OAuthTokens, on connection: PGConnection) async throws {
        guard try await write(id, tokens, ifGeneration: nil, on: connection) != nil else {
            throw ConnectionStoreError(
                code: .notFound, connectionID: id, message: "no such connection, or it was disconnected")
        }
    }

    /// Stores tokens refreshed from the tokens of generation `generation`, only if the row still holds them.
    ///
    /// A reauthorization, another refresh or a wipe committed since then advanced the generation: the refreshed
    /// tokens came from a grant that is no longer the stored one and must not overwrite it (sql/067).
    /// - Returns: the new generation, or nil when the row moved on (or is disconnected, or gone); nothing written.
    public func saveRefreshedTokens(
        _ id: Int64, _ tokens: OAuthTokens, replacing generation: Int64, on connection: PGConnection
    ) async throws -> Int64? {
        try await write(id, tokens, ifGeneration: generation, on: connection)
    }

    private func write(_ id: Int64, _ tokens: OAuthTokens, ifGeneration generation: Int64?, on connection: PGConnection)
        async throws -> Int64?
    {
        let access = try vault.seal(
            tokens.accessToken, associatedData: Self.associatedData(connectionID: id, column: "access_token"))
        let refresh = try tokens.refreshToken.map {
            try vault.seal($0, associatedData: Self.associatedData(connectionID: id, column: "refresh_token"))
        }
        // A kept refresh ciphertext may be under an older key: its header names that key, so it still opens.
        // A disconnected connection's tokens were deleted on purpose: a refresh in flight must not bring them back.
        let rows = try await connection.query(
            """
            UPDATE nexcomet.ad_connections
               SET access_token_ciphertext = \(Bytea.encode(access))::bytea,
                   refresh_token_ciphertext = coalesce(\(refresh.map(Bytea.encode))::bytea, refresh_token_ciphertext),
                   token_key_id = \(vault.keyRing.activeKeyID),
                   access_token_expires_at = \(tokens.accessTokenExpiresAt),
                   refresh_token_expires_at = coalesce(\(tokens.refreshTokenExpiresAt), refresh_token_expires_at),
                   refresh_enqueued_at = NULL,
                   token_generation = token_generation + 1,
                   updated_at = now()
             WHERE id = \(id) AND status <> 'disconnected'
               AND (\(generation)::bigint IS NULL OR token_generation = \(generation)::bigint)
            RETURNING token_generation
            """)
        return try rows.first?.decode(0)
    }

    /// Outcome of ``rotateKeys(pool:batchSize:)``.
    public struct Rotation: Sendable {
        /// Connections whose tokens were resealed under the active key.
        public var resealed = 0
        /// Connections already under the active key (or without tokens).
        public var current = 0
        /// Connections that could not be opened, with a secret-free reason; left unchanged.
        public var failures: [(id: Int64, reason: String)] = []
    }

    /// Reseals every connection's tokens under the ring's active key, `batchSize` rows per transaction.
    ///
    /// Rows are visited in id order with keyset pagination and locked (`FOR UPDATE`) while resealed, so a token
    /// refresh running at the same time is not lost. A row that fails to open is reported and skipped.
    public func rotateKeys(pool: PGPool, batchSize: Int = 500) async throws -> Rotation {
        var result = Rotation()
        var after: Int64 = 0
        while true {
            let (last, batch) = try await pool.withTransaction { c -> (Int64?, Rotation) in
                var r = Rotation()
                let rows = try await c.query(
                    """
                    SELECT id, access_token_ciphertext, refresh_token_ciphertext FROM nexcomet.ad_connections
                     WHERE id > \(after) ORDER BY id LIMIT \(batchSize) FOR UPDATE
                    """)
                var last: Int64? = nil
                for row in rows {
                    let id: Int64 = try row.decode(0)
                    last = id
                    let sealed = [row.text(1), row.text(2)].map { $0.flatMap(Bytea.decode) }
                    let columns = ["access_token", "refresh_token"]
                    if sealed.allSatisfy({ $0 == nil || !vault.needsRotation($0!) }) {
                        r.current += 1
                        continue
                    }
                    do {
                        var fresh: [String?] = []
                        for (bytes, column) in zip(sealed, columns) {
                            fresh.append(
                                try bytes.map {
                                    Bytea.encode(
                                        try vault.reseal(
                                            $0, associatedData: Self.associatedData(connectionID: id, column: column)))
                                })
                        }
                        try await c.execute(
                            """
                            UPDATE nexcomet.ad_connections
                               SET access_token_ciphertext = \(fresh[0])::bytea,
                                   refresh_token_ciphertext = \(fresh[1])::bytea,
                                   token_key_id = \(vault.keyRing.activeKeyID), updated_at = now()
                             WHERE id = \(id)
                            """)
                        r.resealed += 1
                    } catch let e as TokenVaultError {
                        r.failures.append((id, e.description))
                    }
                }
                return (last, r)
            }
            result.resealed += batch.resealed
            result.current += batch.current
            result.failures += batch.failures
            guard let last, last != after else { break }
            after = last
        }
        return result
    }

    private func open(_ text: String, id: Int64, column: String) throws -> String {
        guard let bytes = Bytea.decode(text) else {
            throw ConnectionStoreError(code: .invalidRow, connectionID: id, message: "\(column) is not bytea hex")
        }
        do {
            return try vault.open(bytes, associatedData: Self.associatedData(connectionID: id, column: column))
        } catch let e as TokenVaultError {
            throw ConnectionStoreError(
                code: .undecryptable, connectionID: id, message: "\(column) cannot be decrypted: \(e)")
        }
    }
}

extension OAuthTokens {
    /// The longest token lifetime a grant may state (`expires_in`, `--expires-in`): ten years, in seconds.
    public static let longestLifetime = 315_360_000
}
