import XCTest

final class CronPlaceholder: XCTestCase {}
