import Foundation
import Platforms
import Postgres
import Privacy
import Sync

/// `nexjobs orgs add NAME --plan free|pro|enterprise`: creates an organization and prints its id.
func orgsCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: ["plan"], flags: [])
    if a.wantsHelp || a.positionals.first != "add" {
        print(
            """
            Usage: nexjobs orgs add NAME [--plan free|pro|enterprise]      (NAME: 1...200 bytes)

            Creates an organization (plan default: free) and prints its id. The plan sets how far back a first
            sync backfills (free 7 days, pro 90, enterprise 365; see NEXJOBS_SYNC_RETENTION_*).
            """)
        return a.wantsHelp ? Exit.ok : Exit.usage
    }
    guard a.positionals.count == 2 else { throw UsageError("orgs add takes one NAME") }
    _ = try CheckedInput.text(a.positionals[1], name: "NAME", bytes: 1...200)
    let plan = a.options["plan"] ?? "free"
    guard ["free", "pro", "enterprise"].contains(plan) else {
        throw UsageError("--plan must be free, pro or enterprise")
    }
    let pool = try openPool(maxConnections: 1)
    let id: Int64 = try await pool.query(
        "INSERT INTO nexcomet.organizations (name, plan) VALUES (\(a.positionals[1]), \(plan)) RETURNING id"
    ).first!.decode(0)
    print(id)
    return Exit.ok
}

/// `nexjobs connections add|list`.
func connectionsCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args, valued: ["org", "platform", "expires-in", "refresh-expires-in", "scopes"], flags: [])
    let help = """
        Usage: nexjobs connections add --org ID --platform tiktok|snapchat [--expires-in SECONDS]
                                       [--refresh-expires-in SECONDS] [--scopes a,b]  < tokens
               nexjobs connections reauthorize ID [--expires-in SECONDS] [--refresh-expires-in SECONDS]  < tokens
               nexjobs connections list [--org ID]

        ID: 1...9223372036854775807; --expires-in, --refresh-expires-in and expires_in: 1...315360000 seconds
        (ten years); --scopes: at most 1000 bytes.

        add: stores an OAuth grant for an organization. Tokens are read from STDIN, never from arguments
        (arguments are visible to every user of the machine): either JSON {"access_token": "...",
        "refresh_token": "...", "expires_in": 3600} (refresh_token and expires_in optional; a TikTok token
        response {"code": 0, "data": {...}} is accepted as is, so an OAuth response can be piped in), or the
        access token on the first line and the refresh token on the second. They are sealed with the active key of
        NEXJOBS_TOKEN_KEYS (AES-256-GCM, bound to the row) before they reach the database. --expires-in
        overrides expires_in. The connection is active and due for its first sync at once. Prints its id.

        reauthorize: replaces the tokens of connection ID after the user authorized the app again (tokens on
        STDIN as for add). The connection becomes active and due at once; its ad accounts, metrics and sync history
        are kept, so nothing is counted twice. A token refresh or sync still running with the old tokens cannot
        overwrite the new ones. Exit 3 (nothing changed) when ID does not exist, was disconnected, or belongs to a
        deleted organization or one whose processing is restricted.

        list: one line per connection: id, organization, platform, status, key id, access token expiry,
        last sync, ad accounts, and reconciliation of the accounts' latest syncs (ok, resynced, skipped, or
        mismatch:N accounts whose totals still differ from the stored sums). Never prints tokens.
        """
    if a.wantsHelp {
        print(help)
        return Exit.ok
    }
    switch a.positionals.first {
    case "add":
        guard a.positionals.count == 1 else { throw UsageError("connections add takes no positional arguments") }
        guard let orgText = a.options["org"] else { throw UsageError("--org ID is required") }
        let org = try databaseID(orgText, name: "--org")
        guard let platform = a.options["platform"].flatMap(AdPlatform.init(rawValue:)) else {
            throw UsageError("--platform must be tiktok or snapchat")
        }
        let (ring, tokens) = try keyRingAndTokensFromStdin(a)
        let scopes = (try a.text("scopes", bytes: 0...1000) ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let pool = try openPool(maxConnections: 1)
        let store = ConnectionStore(vault: TokenVault(keyRing: ring))
        let exists: Bool = try await pool.query(
            "SELECT EXISTS (SELECT 1 FROM nexcomet.organizations WHERE id = \(org) AND deleted_at IS NULL)"
        ).first!.decode(0)
        guard exists else {
            printErr("error: organization \(org) does not exist")
            return Exit.notFound
        }
        let id = try await pool.withConnection { c in
            try await store.create(organizationID: org, platform: platform, tokens: tokens, scopes: scopes, on: c)
        }
        print(id)
        return Exit.ok
    case "reauthorize":
        guard a.positionals.count == 2 else {
            throw UsageError("connections reauthorize takes one connection id (a positive integer)")
        }
        let id = try databaseID(a.positionals[1], name: "connection id")
        let (ring, tokens) = try keyRingAndTokensFromStdin(a)
        let pool = try openPool(maxConnections: 1)
        let store = ConnectionStore(vault: TokenVault(keyRing: ring))
        let outcome = try await pool.withConnection { c in try await store.reauthorize(id, tokens: tokens, on: c) }
        switch outcome {
        case .reauthorized:
            print(id)
            return Exit.ok
        case .notFound:
            printErr("error: connection \(id) does not exist")
            return Exit.notFound
        case .disconnected:
            printErr("error: connection \(id) was disconnected; store a new grant with connections add")
            return Exit.notFound
        case .organizationUnavailable(let deleted):
            printErr(
                "error: connection \(id) belongs to a \(deleted ? "deleted" : "restricted") organization;"
                    + " nothing changed")
            return Exit.notFound
        }
    case "list":
        let org = try a.options["org"].map { text -> Int64 in
            try databaseID(text, name: "--org")
        }
        let pool = try openPool(maxConnections: 1)
        let rows = try await pool.query(
            """
            SELECT c.id, c.organization_id, c.platform, c.status, coalesce(c.token_key_id, '-'),
                   coalesce(to_char(c.access_token_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '-'),
                   coalesce(to_char(c.last_synced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '-'),
                   (SELECT count(*) FROM nexcomet.ad_accounts a WHERE a.connection_id = c.id),
                   (SELECT CASE WHEN count(*) FILTER (WHERE r.reconcile_status = 'mismatch') > 0
                                THEN 'mismatch:' || count(*) FILTER (WHERE r.reconcile_status = 'mismatch')
                                ELSE coalesce(max(r.reconcile_status), '-') END
                      FROM nexcomet.ad_accounts a
                      CROSS JOIN LATERAL (SELECT reconcile_status FROM nexcomet.sync_runs s
                                           WHERE s.ad_account_id = a.id AND s.outcome = 'succeeded'
                                           ORDER BY s.id DESC LIMIT 1) r
                     WHERE a.connection_id = c.id)
              FROM nexcomet.ad_connections c
             WHERE \(org)::bigint IS NULL OR c.organization_id = \(org)::bigint
             ORDER BY c.id
            """)
        print("ID\tORG\tPLATFORM\tSTATUS\tKEY\tEXPIRES\tLAST_SYNC\tACCOUNTS\tRECONCILE")
        for r in rows {
            print((0..<9).map { r.text($0) ?? "-" }.joined(separator: "\t"))
        }
        return Exit.ok
    default:
        print(help)
        return Exit.usage
    }
}

/// Parses tokens from STDIN: a JSON object or two lines. Error messages never echo the input.
func readTokens(_ data: Data) throws -> OAuthTokens {
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !text.isEmpty else { throw UsageError("no tokens on standard input") }
    if text.hasPrefix("{") {
        guard var object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw UsageError("standard input is not a JSON object")
        }
        // A TikTok token response as it arrives: {"code": 0, "data": {...}}.
        if object["access_token"] == nil, let data = object["data"] as? [String: Any] {
            guard (object["code"] as? NSNumber)?.intValue ?? 0 == 0 else {
                throw UsageError("the token response on standard input reports an error (code \(object["code"]!))")
            }
            object = data
        }
        guard let access = object["access_token"] as? String, !access.isEmpty else {
            throw UsageError("the JSON on standard input has no access_token string")
        }
        var tokens = OAuthTokens(accessToken: access, refreshToken: object["refresh_token"] as? String)
        // expires_in: whole seconds in 1...OAuthTokens.longestLifetime (ten years); anything else is refused.
        if let raw = object["expires_in"] {
            guard let n = raw as? NSNumber, !(raw is Bool), n.doubleValue.isFinite,
                n.doubleValue == n.doubleValue.rounded(), n.doubleValue >= 1,
                n.doubleValue <= Double(OAuthTokens.longestLifetime)
            else {
                throw UsageError(
                    "expires_in on standard input must be whole seconds in 1...\(OAuthTokens.longestLifetime)")
            }
            tokens.accessTokenExpiresAt = Date().addingTimeInterval(n.doubleValue)
        }
        return tokens
    }
    let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
    guard lines.count <= 2 else { throw UsageError("expected at most two lines: access token, refresh token") }
    return OAuthTokens(accessToken: lines[0], refreshToken: lines.count == 2 ? lines[1] : nil)
}

/// `nexjobs keys rotate [--batch N]`: reseals every stored token under the active key.
func keysCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: ["batch"], flags: [])
    if a.wantsHelp || a.positionals != ["rotate"] {
        print(
            """
            Usage: nexjobs keys rotate [--batch N]

            Re-encrypts every connection's tokens under the active (first) key of NEXJOBS_TOKEN_KEYS, N rows per
            transaction (default 500). Rotation: put the new key first (new:...,old:...), deploy, run this, then
            drop the old key. Rows already under the active key are left alone, so it is safe to run again.
            Exit 1 when a row cannot be decrypted (it is reported by id and left unchanged).
            """)
        return a.wantsHelp ? Exit.ok : Exit.usage
    }
    let batch = try a.int("batch", range: 1...100_000) ?? 500
    let ring: KeyRing
    do {
        ring = try KeyRing.fromEnvironment()
    } catch {
        throw UsageError("\(error)")
    }
    let pool = try openPool(maxConnections: 1)
    let result = try await ConnectionStore(vault: TokenVault(keyRing: ring)).rotateKeys(pool: pool, batchSize: batch)
    print("resealed \(result.resealed), already current \(result.current), failed \(result.failures.count)")
    for f in result.failures { printErr("connection \(f.id): \(f.reason)") }
    return result.failures.isEmpty ? Exit.ok : Exit.failure
}

/// The key ring (`NEXJOBS_TOKEN_KEYS`) and the tokens read from stdin, with the `--expires-in` /
/// `--refresh-expires-in` overrides (1...315360000 s): shared by `connections add` and `connections reauthorize`.
func keyRingAndTokensFromStdin(_ a: Arguments) throws -> (KeyRing, OAuthTokens) {
    let ring: KeyRing
    do {
        ring = try KeyRing.fromEnvironment()
    } catch {
        throw UsageError("\(error)")
    }
    var tokens = try readTokens(FileHandle.standardInput.readDataToEndOfFile())
    if let s = try a.int("expires-in", range: 1...OAuthTokens.longestLifetime) {
        tokens.accessTokenExpiresAt = Date().addingTimeInterval(Double(s))
    }
    if let s = try a.int("refresh-expires-in", range: 1...OAuthTokens.longestLifetime) {
        tokens.refreshTokenExpiresAt = Date().addingTimeInterval(Double(s))
    }
    return (ring, tokens)
}
