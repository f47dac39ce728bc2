import Foundation
import Platforms
import Postgres
import Privacy
import Queue

/// What the sync handlers share: the key ring, the platform clients and the settings.
public struct SyncEnvironment: Sendable {
    /// The key ring, or why there is none (reported as a failed job, so noop-only workers still start).
    public var keyRing: Result<KeyRing, SyncConfigurationError>
    public var clients: PlatformClientProvider
    public var settings: SyncSettings

    public init(
        keyRing: Result<KeyRing, SyncConfigurationError>, clients: PlatformClientProvider,
        settings: SyncSettings = SyncSettings()
    ) {
        self.keyRing = keyRing
        self.clients = clients
        self.settings = settings
    }

    /// Key ring from `NEXJOBS_TOKEN_KEYS`, clients from ``PlatformClientProvider/fromEnvironment(_:logger:)``,
    /// settings from ``SyncSettings/fromEnvironment(_:)``.
    public static func fromEnvironment(
        _ env: [String: String] = ProcessInfo.processInfo.environment, logger: PlatformLogger = .disabled
    ) -> SyncEnvironment {
        let ring: Result<KeyRing, SyncConfigurationError>
        do {
            ring = .success(try KeyRing.fromEnvironment(environment: env))
        } catch {
            ring = .failure(SyncConfigurationError("\(error)"))
        }
        return SyncEnvironment(
            keyRing: ring, clients: .fromEnvironment(env, logger: logger), settings: .fromEnvironment(env))
    }

    /// The token store, or a ``JobDiscard`` naming the configuration problem.
    func store() throws -> ConnectionStore {
        switch keyRing {
        case .success(let ring): return ConnectionStore(vault: TokenVault(keyRing: ring))
        case .failure(let e): throw JobDiscard(e.description)
        }
    }

    /// The platform client, or a ``JobDiscard`` naming the configuration problem.
    func client(_ platform: AdPlatform, pool: PGPool) throws -> any AdPlatformClient {
        do {
            return try clients.client(for: platform, pool: pool)
        } catch let e as SyncConfigurationError {
            throw JobDiscard(e.description)
        }
    }
}
