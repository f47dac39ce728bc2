import XCTest

final class PostgresPlaceholder: XCTestCase {}
