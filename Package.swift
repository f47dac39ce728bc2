// swift-tools-version:6.0
// NexJobs: a PostgreSQL job queue and ad-platform sync workers.
// No Swift package dependencies (the design card says so): libpq and OpenSSL come in as system libraries.
import PackageDescription

let package = Package(
    name: "nexjobs",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nexjobs", targets: ["nexjobs"])
    ],
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        .target(name: "Logs"),
        .target(name: "Cron"),
        .target(name: "Queue", dependencies: ["Postgres", "Logs"]),
        .target(name: "HTTP"),
        .target(name: "Platforms", dependencies: ["Postgres", "Logs"]),
        .target(name: "Sandbox", dependencies: ["HTTP"], exclude: ["README.md"]),
        .target(name: "Privacy", dependencies: ["COpenSSL", "Postgres", "Queue"], exclude: ["CIPHERTEXT.md"]),
        .target(name: "Sync", dependencies: ["Platforms", "Queue", "Privacy", "Postgres"]),
        // The engine: knows nothing of Nexcomet (docs/ARCHITECTURE.md; Tests/ArchitectureTests enforces it).
        .target(name: "Runtime", dependencies: ["Queue", "Cron", "Postgres", "Logs"]),
        // The application: Nexcomet's handlers, registry, due work and web service, on the engine.
        .target(
            name: "NexcometJobs",
            dependencies: ["Runtime", "Queue", "Postgres", "Logs", "HTTP", "Sync", "Privacy", "Platforms"]),
        .executableTarget(
            name: "nexjobs",
            dependencies: [
                "NexcometJobs", "Runtime", "Sandbox", "Queue", "Postgres", "HTTP", "Logs", "Sync", "Privacy",
                "Platforms",
            ]),
        .executableTarget(
            name: "http-bench", dependencies: ["HTTP"], path: "bench/http", exclude: ["README.md", "run.sh"]),
        .executableTarget(
            name: "sync-bench", dependencies: ["Sync", "Sandbox", "Queue", "Postgres"], path: "bench/sync",
            exclude: ["README.md", "run.sh", "scale.sh"]),
        .executableTarget(
            name: "sync-scale", dependencies: ["Sync", "Sandbox", "Platforms", "Privacy", "Postgres"],
            path: "bench/sync-scale"),
        .executableTarget(
            name: "queue-bench", dependencies: ["Queue", "Postgres"], path: "bench/queue",
            exclude: ["README.md", "run.sh"]),
        // Test-only helpers: a fresh PostgreSQL database per test, built from NEXJOBS_TEST_DATABASE_URL.
        .target(name: "PGTestSupport", dependencies: ["Postgres", "Queue", "Logs"], path: "Tests/PGTestSupport"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "PGTestSupport"]),
        .testTarget(name: "QueueTests", dependencies: ["Queue", "Postgres", "PGTestSupport"]),
        .testTarget(name: "CronTests", dependencies: ["Cron"]),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP"]),
        .testTarget(name: "PlatformsTests", dependencies: ["Platforms", "Sandbox", "HTTP", "PGTestSupport"]),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox", "HTTP"]),
        .testTarget(name: "PrivacyTests", dependencies: ["Privacy", "PGTestSupport"]),
        .testTarget(
            name: "SyncTests", dependencies: ["Sync", "Privacy", "Sandbox", "Runtime", "NexcometJobs", "PGTestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "NexcometJobs", "Queue", "HTTP", "PGTestSupport"]),
        .testTarget(
            name: "SchedulerTests",
            dependencies: ["Runtime", "NexcometJobs", "Queue", "Cron", "Postgres", "Logs", "PGTestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["PGTestSupport", "Postgres"]),
        // Reads Sources/ and Package.swift: the module graph of docs/ARCHITECTURE.md, enforced.
        .testTarget(name: "ArchitectureTests"),
    ]
)
